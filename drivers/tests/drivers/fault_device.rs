//! The fault device: power-cut semantics, error injection, bit flips, torn writes, latency.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::blockdev::fault::{
    Fate, Fault, FaultConfig, FaultDevice, FaultRule, Latency, OpKind, PowerCutMode,
    PowerCutReport, Trigger,
};
use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::prng::SplitMix64;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::error::IoError;
use drivers::executor::{self, BackendChoice};

use crate::support::{pattern, reactor};

const DEVICE_BYTES: u64 = 1 << 20;
const SECTOR: usize = 512;

fn device(config: FaultConfig) -> FaultDevice {
    FaultDevice::new(Arc::new(MemoryDevice::new(DEVICE_BYTES, SECTOR as u32)), config)
}

fn seeded(seed: u64, rules: Vec<FaultRule>) -> FaultDevice {
    device(FaultConfig { seed, rules, ..Default::default() })
}

async fn write(dev: &FaultDevice, offset: u64, data: &[u8]) -> Result<(), IoError> {
    dev.write(IoBuf::from_slice(data), offset).await.0
}

async fn read(dev: &FaultDevice, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
    let (res, buf) = dev.read(IoBuf::zeroed(len), offset).await;
    res.map(|()| buf.to_vec())
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    reactor(BackendChoice::Epoll).expect("epoll reactor").block_on(f)
}

#[test]
fn flushed_writes_survive_every_mode() {
    for mode in [PowerCutMode::DropAll, PowerCutMode::TearRandom, PowerCutMode::KeepAll] {
        run(async {
            let dev = seeded(7, Vec::new());
            let a = pattern(1, 16384);
            let b = pattern(2, 8192);
            write(&dev, 0, &a).await.expect("write a");
            write(&dev, 65536, &b).await.expect("write b");
            dev.flush().await.expect("flush");
            assert_eq!(dev.unflushed_ops(), 0);
            let c = pattern(3, 16384);
            write(&dev, 8192, &c).await.expect("write c");
            write(&dev, 131072, &pattern(4, 4096)).await.expect("write d");
            dev.discard(65536 + 4096, 4096).await.expect("discard in b");
            assert_eq!(dev.unflushed_ops(), 3);
            assert_eq!(
                read(&dev, 8192, 16384).await.expect("read"),
                c,
                "unflushed writes are visible before the cut"
            );

            let report = dev.power_cut(mode).await.expect("power cut");
            assert_eq!(report.outcomes.len(), 3);
            dev.restart();
            // Flushed data not overwritten by an unflushed op is intact in every mode.
            assert_eq!(read(&dev, 0, 8192).await.expect("read"), a[..8192], "{mode:?}");
            assert_eq!(read(&dev, 65536, 4096).await.expect("read"), b[..4096], "{mode:?}");
            let image = read(&dev, 0, 262144).await.expect("read image");
            match mode {
                PowerCutMode::DropAll => {
                    assert!(report.outcomes.iter().all(|o| o.fate == Fate::Dropped));
                    assert_eq!(image[8192..16384], a[8192..], "c lost, a intact");
                    assert!(image[16384..24576].iter().all(|x| *x == 0));
                    assert_eq!(image[65536..73728], b[..], "the discard was lost");
                    assert!(image[131072..135168].iter().all(|x| *x == 0), "d lost");
                }
                PowerCutMode::KeepAll => {
                    assert!(report.outcomes.iter().all(|o| o.fate == Fate::Kept));
                    assert_eq!(image[8192..24576], c[..]);
                    assert!(image[69632..73728].iter().all(|x| *x == 0), "the discard was kept");
                    assert_eq!(image[131072..135168], pattern(4, 4096)[..]);
                }
                PowerCutMode::TearRandom => {}
            }
        });
    }
}

/// Everything a TearRandom run produced: the report, the device image, and what the test
/// wrote (in log order; `None` = write-zeroes).
struct TearRun {
    report: PowerCutReport,
    image: Vec<u8>,
    old: Vec<u8>,
    unflushed: Vec<(u64, usize, Option<Vec<u8>>)>,
}

async fn tear_run(seed: u64) -> TearRun {
    let dev = seeded(seed, Vec::new());
    let old = pattern(seed ^ 0xa5, 524_288);
    write(&dev, 0, &old).await.expect("old image");
    dev.flush().await.expect("flush");
    let mut unflushed = Vec::new();
    // 48 non-overlapping 8-sector writes, then 16 overlapping writes and zeroings.
    for i in 0..48u64 {
        let data = pattern(seed.wrapping_add(1000 + i), 8 * SECTOR);
        write(&dev, i * 8192, &data).await.expect("write");
        unflushed.push((i * 8192, data.len(), Some(data)));
    }
    // The overlapping ones stay clear of the first 48 (which end at 47 * 8192 + 4096).
    let mut rng = SplitMix64::new(seed);
    for i in 0..16u64 {
        let offset = 409_600 + rng.below(200) * SECTOR as u64;
        let len = (1 + rng.below(24) as usize) * SECTOR;
        if i % 4 == 3 {
            dev.write_zeroes(offset, len as u64).await.expect("write_zeroes");
            unflushed.push((offset, len, None));
        } else {
            let data = pattern(seed.wrapping_add(2000 + i), len);
            write(&dev, offset, &data).await.expect("write");
            unflushed.push((offset, len, Some(data)));
        }
    }
    let report = dev.power_cut(PowerCutMode::TearRandom).await.expect("power cut");
    dev.restart();
    let image = read(&dev, 0, 524_288).await.expect("image");
    TearRun { report, image, old, unflushed }
}

#[test]
fn tear_random_is_sector_atomic_and_follows_the_seed() {
    let first = run(tear_run(42));
    assert_eq!(first.report.outcomes.len(), first.unflushed.len());
    let mut model = first.old.clone();
    let mut fates = [0usize; 3];
    for (i, (outcome, (offset, len, data))) in
        first.report.outcomes.iter().zip(&first.unflushed).enumerate()
    {
        assert_eq!(
            (outcome.offset_bytes, outcome.len_bytes),
            (*offset, *len as u64),
            "outcome {i} order"
        );
        let kept = match outcome.fate {
            Fate::Kept => {
                fates[0] += 1;
                *len
            }
            Fate::Dropped => {
                fates[1] += 1;
                0
            }
            Fate::Torn { kept_bytes } => {
                fates[2] += 1;
                assert!(
                    kept_bytes > 0 && kept_bytes < *len as u64,
                    "a tear keeps a strict, non-empty prefix"
                );
                assert_eq!(kept_bytes % SECTOR as u64, 0, "tears happen at sector boundaries");
                kept_bytes as usize
            }
        };
        let at = *offset as usize;
        match data {
            Some(d) => model[at..at + kept].copy_from_slice(&d[..kept]),
            None => model[at..at + kept].fill(0),
        }
        // The first 48 writes overlap nothing: check each of their sectors directly.
        if i < 48 {
            let new = data.as_ref().expect("write");
            for s in 0..len / SECTOR {
                let got = &first.image[at + s * SECTOR..at + (s + 1) * SECTOR];
                let is_new = got == &new[s * SECTOR..(s + 1) * SECTOR];
                let is_old = got == &first.old[at + s * SECTOR..at + (s + 1) * SECTOR];
                assert!(is_new || is_old, "write {i} sector {s} is neither old nor new data");
                assert_eq!(
                    is_new,
                    s * SECTOR < kept,
                    "write {i} sector {s} contradicts fate {:?}",
                    outcome.fate
                );
            }
        }
    }
    assert!(first.image == model, "the image equals the durable image plus the surviving prefixes");
    assert!(fates.iter().all(|n| *n > 0), "64 decisions include keeps, drops and tears: {fates:?}");

    let again = run(tear_run(42));
    assert_eq!(again.report, first.report, "same seed, same fates");
    assert!(again.image == first.image, "same seed, same image");
    let other = run(tear_run(43));
    assert_ne!(
        other.report.outcomes.iter().map(|o| o.fate).collect::<Vec<_>>(),
        first.report.outcomes.iter().map(|o| o.fate).collect::<Vec<_>>(),
        "another seed, other fates"
    );
}

#[test]
fn io_fails_after_a_cut_until_restart() {
    run(async {
        let dev = seeded(1, Vec::new());
        write(&dev, 0, &pattern(5, 4096)).await.expect("write");
        dev.power_cut(PowerCutMode::KeepAll).await.expect("cut");
        assert!(dev.is_cut());
        assert_eq!(read(&dev, 0, 4096).await, Err(IoError::Injected));
        assert_eq!(write(&dev, 0, &[0u8; 512]).await, Err(IoError::Injected));
        assert_eq!(dev.flush().await, Err(IoError::Injected));
        assert_eq!(dev.discard(0, 512).await, Err(IoError::Injected));
        assert_eq!(dev.write_zeroes(0, 512).await, Err(IoError::Injected));
        assert_eq!(dev.stats().refused_after_cut, 5);
        dev.restart();
        assert_eq!(read(&dev, 0, 4096).await.expect("read after restart"), pattern(5, 4096));
        assert_eq!(dev.stats().power_cuts, 1);
    });
}

#[test]
fn unflushed_log_is_bounded_by_destaging_the_oldest() {
    run(async {
        let dev = device(FaultConfig { seed: 3, max_unflushed_ops: 4, ..Default::default() });
        for i in 0..10u64 {
            write(&dev, i * 4096, &pattern(i, 4096)).await.expect("write");
        }
        assert_eq!(dev.unflushed_ops(), 4);
        assert_eq!(dev.stats().destaged, 6);
        dev.power_cut(PowerCutMode::DropAll).await.expect("cut");
        dev.restart();
        for i in 0..10u64 {
            let got = read(&dev, i * 4096, 4096).await.expect("read");
            if i < 6 {
                assert_eq!(got, pattern(i, 4096), "write {i} was destaged by the bound");
            } else {
                assert!(got.iter().all(|b| *b == 0), "write {i} was still unflushed");
            }
        }
    });
}

#[test]
fn nth_write_and_reads_of_a_range_fail() {
    run(async {
        let rules = vec![
            FaultRule::new(OpKind::Write, Trigger::Nth(3), Fault::Error),
            FaultRule::new(
                OpKind::Read,
                Trigger::Overlaps { offset_bytes: 65536, len_bytes: 4096 },
                Fault::Error,
            ),
            FaultRule::new(OpKind::Flush, Trigger::Nth(1), Fault::Error),
        ];
        let dev = seeded(9, rules);
        write(&dev, 0, &pattern(1, 4096)).await.expect("write 1");
        write(&dev, 4096, &pattern(2, 4096)).await.expect("write 2");
        assert_eq!(
            write(&dev, 8192, &pattern(3, 4096)).await,
            Err(IoError::Injected),
            "the 3rd write fails"
        );
        write(&dev, 12288, &pattern(4, 4096)).await.expect("write 4");
        assert!(
            read(&dev, 8192, 4096).await.expect("read").iter().all(|b| *b == 0),
            "the failed write did nothing"
        );
        assert_eq!(read(&dev, 61440, 8192).await, Err(IoError::Injected), "overlapping read fails");
        assert_eq!(read(&dev, 69632, 4096).await.expect("adjacent read"), vec![0u8; 4096]);
        assert_eq!(dev.flush().await, Err(IoError::Injected), "the first flush fails");
        assert_eq!(dev.unflushed_ops(), 3, "a failed flush destages nothing");
        dev.flush().await.expect("second flush");
        assert_eq!(dev.unflushed_ops(), 0);
        let stats = dev.stats();
        assert_eq!(stats.errors_injected, 3);
        assert_eq!(stats.ops_of(OpKind::Write), 4);
    });
}

#[test]
fn probabilistic_errors_follow_the_seed() {
    let failures = |seed: u64| {
        run(async move {
            let rule = FaultRule::new(
                OpKind::Write,
                Trigger::Probability { per_million: 300_000 },
                Fault::Error,
            );
            let dev = seeded(seed, vec![rule]);
            let mut failed = Vec::new();
            for i in 0..200u64 {
                failed.push(write(&dev, (i % 64) * 4096, &[7u8; 4096]).await.is_err());
            }
            assert_eq!(dev.stats().errors_injected, failed.iter().filter(|f| **f).count() as u64);
            failed
        })
    };
    let a = failures(11);
    let count = a.iter().filter(|f| **f).count();
    assert!((30..=100).contains(&count), "about 30% of 200 writes fail, got {count}");
    assert_eq!(failures(11), a, "same seed, same failures");
    assert_ne!(failures(12), a, "another seed, other failures");
}

#[test]
fn bit_flips_on_read_and_on_write() {
    run(async {
        let rules = vec![
            FaultRule::new(
                OpKind::Read,
                Trigger::Overlaps { offset_bytes: 4096, len_bytes: 512 },
                Fault::FlipBit { offset_bytes: Some(4096 + 10), bit: Some(3) },
            ),
            FaultRule::new(
                OpKind::Write,
                Trigger::Nth(2),
                Fault::FlipBit { offset_bytes: None, bit: None },
            ),
        ];
        let dev = seeded(5, rules);
        let data = pattern(8, 8192);
        write(&dev, 0, &data).await.expect("write");
        let got = read(&dev, 0, 8192).await.expect("read");
        let diffs: Vec<usize> = (0..8192).filter(|i| got[*i] != data[*i]).collect();
        assert_eq!(diffs, vec![4096 + 10], "exactly the configured byte differs");
        assert_eq!(got[4106] ^ data[4106], 1 << 3, "in the configured bit");
        assert_eq!(
            read(&dev, 0, 4096).await.expect("read"),
            data[..4096],
            "reads not covering it are clean"
        );

        let second = pattern(9, 4096);
        let (res, returned) = dev.write(IoBuf::from_slice(&second), 16384).await;
        res.expect("write with a flip");
        assert_eq!(&returned[..], &second[..], "the caller's buffer is not touched");
        let stored = read(&dev, 16384, 4096).await.expect("read");
        let flipped: u32 = stored.iter().zip(&second).map(|(x, y)| (x ^ y).count_ones()).sum();
        assert_eq!(flipped, 1, "one bit of the stored data is flipped");
        assert_eq!(dev.stats().bit_flips, 2, "one read over the byte and one write");
    });
}

#[test]
fn torn_writes_land_a_prefix_of_sectors() {
    run(async {
        let rules = vec![
            FaultRule::new(OpKind::Write, Trigger::Nth(2), Fault::TornWrite { silent: false }),
            FaultRule::new(OpKind::Write, Trigger::Nth(3), Fault::TornWrite { silent: true }),
        ];
        let dev = seeded(21, rules);
        let old = pattern(30, 32768);
        write(&dev, 0, &old).await.expect("old data");
        let new = pattern(31, 32768);
        assert_eq!(
            write(&dev, 0, &new[..16384]).await,
            Err(IoError::Injected),
            "a reported torn write"
        );
        write(&dev, 16384, &new[16384..]).await.expect("a silent torn write reports success");
        let got = read(&dev, 0, 32768).await.expect("read");
        for half in 0..2 {
            let base = half * 16384;
            let sectors = 16384 / SECTOR;
            let prefix = (0..sectors)
                .take_while(|s| {
                    got[base + s * SECTOR..base + (s + 1) * SECTOR]
                        == new[base + s * SECTOR..base + (s + 1) * SECTOR]
                })
                .count();
            assert!(prefix < sectors, "half {half}: a torn write never lands entirely");
            assert_eq!(
                got[base + prefix * SECTOR..base + 16384],
                old[base + prefix * SECTOR..base + 16384],
                "half {half}: the tail keeps old data"
            );
        }
        assert_eq!(dev.stats().torn_writes, 2);
    });
}

#[test]
fn latency_lets_other_tasks_run() {
    run(async {
        let dev = device(FaultConfig { latency: Latency::Yields(4), ..Default::default() });
        let ran = Rc::new(Cell::new(false));
        let flag = Rc::clone(&ran);
        let _task = executor::spawn(async move { flag.set(true) });
        write(&dev, 0, &[1u8; 512]).await.expect("write");
        assert!(ran.get(), "the yields let the spawned task run during the write");

        let slow = device(FaultConfig {
            latency: Latency::Sleep(Duration::from_millis(10)),
            ..Default::default()
        });
        let start = Instant::now();
        slow.flush().await.expect("flush");
        assert!(start.elapsed() >= Duration::from_millis(10));
    });
}

#[test]
fn durable_writes_survive_a_cut_once_completed_and_in_flight_ones_meet_its_fate() {
    run(async {
        let dev = Rc::new(device(FaultConfig {
            seed: 11,
            latency: Latency::Yields(20),
            durable_writes: true,
            ..Default::default()
        }));
        assert!(dev.durable_writes());
        let a = pattern(1, 4096);
        let b = pattern(2, 4096);
        let c = pattern(3, 4096);
        // Completed durable write: durable without a flush.
        dev.write_durable(IoBuf::from_slice(&a), 0).await.0.expect("durable write a");
        // Plain write: volatile.
        write(&dev, 8192, &b).await.expect("write b");
        // Durable write still in flight at the cut.
        let in_flight = {
            let dev = Rc::clone(&dev);
            let c = c.clone();
            executor::spawn(async move { dev.write_durable(IoBuf::from_slice(&c), 16384).await.0 })
        };
        // Cut as soon as c is in the volatile log (it then stays in flight for 20 yields). The
        // cutter is a task, so it interleaves with c step by step.
        let cutter = {
            let dev = Rc::clone(&dev);
            executor::spawn(async move {
                while dev.unflushed_ops() < 3 {
                    executor::yield_now().await;
                }
                dev.power_cut(PowerCutMode::DropAll).await.expect("power cut");
            })
        };
        cutter.await;
        assert_eq!(in_flight.await, Err(IoError::Injected), "c was not acknowledged");
        dev.restart();
        assert_eq!(read(&dev, 0, 4096).await.expect("read"), a, "a completed: durable");
        assert!(read(&dev, 8192, 4096).await.expect("read").iter().all(|x| *x == 0), "b lost");
        assert!(read(&dev, 16384, 4096).await.expect("read").iter().all(|x| *x == 0), "c lost");
        assert_eq!(dev.stats().durable_writes, 1);
    });
}

#[test]
fn without_durable_writes_a_durable_write_writes_and_flushes() {
    run(async {
        let dev = device(FaultConfig { seed: 12, ..Default::default() });
        assert!(!dev.durable_writes());
        let b = pattern(2, 4096);
        write(&dev, 8192, &b).await.expect("write b");
        let a = pattern(1, 4096);
        dev.write_durable(IoBuf::from_slice(&a), 0).await.0.expect("durable write a");
        assert_eq!(dev.unflushed_ops(), 0, "the flush destaged every earlier write");
        dev.power_cut(PowerCutMode::DropAll).await.expect("power cut");
        dev.restart();
        assert_eq!(read(&dev, 0, 4096).await.expect("read"), a);
        assert_eq!(read(&dev, 8192, 4096).await.expect("read"), b);
    });
}

#[test]
fn disarmed_rules_do_not_fire() {
    run(async {
        let dev = seeded(13, vec![FaultRule::new(OpKind::Read, Trigger::Always, Fault::Error)]);
        dev.set_armed(false);
        read(&dev, 0, 512).await.expect("disarmed: read succeeds");
        dev.set_armed(true);
        assert_eq!(read(&dev, 0, 512).await, Err(IoError::Injected));
        assert_eq!(dev.faults_injected(), 1);
    });
}
