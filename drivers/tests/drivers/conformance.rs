//! Every block-device backend passes the same conformance checks.

use std::sync::Arc;

use drivers::blockdev::fault::{FaultConfig, FaultDevice};
use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::sync::SyncDevice;
use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::{open_device, Allocation, BlockDevice};
use drivers::buffer::IoBuf;
use drivers::error::IoError;
use drivers::executor::{self, BackendChoice, BackendKind};
use drivers::ops::FileRef;

use crate::support::{pattern, reactor, BACKENDS};

const DEVICE_BYTES: u64 = 4 << 20;
const UNIT: usize = 4096;

async fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> Vec<u8> {
    let (res, buf) = dev.read(IoBuf::zeroed(len), offset).await;
    res.unwrap_or_else(|e| panic!("{}: read {len} at {offset}: {e}", dev.info().name));
    buf.to_vec()
}

async fn write(dev: &dyn BlockDevice, offset: u64, data: &[u8]) {
    let (res, _) = dev.write(IoBuf::from_slice(data), offset).await;
    res.unwrap_or_else(|e| panic!("{}: write {} at {offset}: {e}", dev.info().name, data.len()));
}

/// Compares two byte strings, reporting the first difference instead of both dumps.
pub fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i}: {} != {}", got[i], want[i]);
    }
}

fn invalid<T: std::fmt::Debug>(res: &Result<T, IoError>, what: &str) {
    assert!(
        matches!(res, Err(IoError::InvalidInput(_))),
        "{what}: expected InvalidInput, got {res:?}"
    );
}

/// The contract of `BlockDevice` on a fresh device of at least 4 MiB.
pub async fn conformance(dev: &dyn BlockDevice) {
    let info = dev.info().clone();
    let block = info.logical_block_bytes as usize;
    assert!(block.is_power_of_two() && (512..=UNIT).contains(&block), "{info:?}");
    assert!((info.physical_block_bytes as usize).is_multiple_of(block), "{info:?}");
    assert!(
        info.size_bytes >= DEVICE_BYTES && info.size_bytes.is_multiple_of(block as u64),
        "{info:?}"
    );
    let size = info.size_bytes;

    // A fresh device reads as zeros.
    assert!(read(dev, 0, 2 * UNIT).await.iter().all(|b| *b == 0), "fresh device is zeroed");

    // Read after write, at the start, one block in, unaligned to 4 KiB, and the last bytes.
    for (i, offset) in
        [0, block as u64, 65536 + block as u64, size - 4 * UNIT as u64].into_iter().enumerate()
    {
        let data = pattern(100 + i as u64, 4 * UNIT);
        write(dev, offset, &data).await;
        same(&read(dev, offset, data.len()).await, &data, &format!("read after write at {offset}"));
    }

    // A pooled (registered) buffer in both directions.
    let pool = executor::buffer_pool();
    let mut pooled = pool.get().expect("pool buffer");
    pooled.set_len(2 * UNIT);
    pooled.copy_from_slice(&pattern(200, 2 * UNIT));
    let (res, pooled) = dev.write(pooled, 131072).await;
    res.expect("write from a pool buffer");
    let mut into_pool = pool.get().expect("pool buffer");
    into_pool.set_len(2 * UNIT);
    let (res, into_pool) = dev.read(into_pool, 131072).await;
    res.expect("read into a pool buffer");
    same(&into_pool, &pooled, "pool buffer round trip");

    // Discard and write-zeroes zero exactly their range.
    for (i, zero_op) in ["discard", "write_zeroes"].into_iter().enumerate() {
        let base = 262_144 + i as u64 * 65536;
        let data = pattern(300 + i as u64, 3 * UNIT);
        write(dev, base, &data).await;
        let res = if zero_op == "discard" {
            dev.discard(base + UNIT as u64, UNIT as u64).await
        } else {
            dev.write_zeroes(base + UNIT as u64, UNIT as u64).await
        };
        res.unwrap_or_else(|e| panic!("{zero_op}: {e}"));
        let mut expected = data.clone();
        expected[UNIT..2 * UNIT].fill(0);
        same(
            &read(dev, base, 3 * UNIT).await,
            &expected,
            &format!("{zero_op} zeroes only its range"),
        );
    }
    // Zeroing a range that spans several 64 KiB regions, partly written.
    write(dev, 1 << 20, &pattern(400, 8 * UNIT)).await;
    dev.write_zeroes((1 << 20) - 65536, 3 * 65536).await.expect("large write_zeroes");
    assert!(read(dev, (1 << 20) - 65536, 3 * 65536).await.iter().all(|b| *b == 0));

    dev.flush().await.expect("flush");

    // A durable write (RWF_DSYNC on files, write + flush by default) reads back like any other
    // and keeps the same bounds.
    let durable = pattern(410, 2 * UNIT);
    let (res, _) = dev.write_durable(IoBuf::from_slice(&durable), 3 << 20).await;
    res.expect("durable write");
    assert_eq!(read(dev, 3 << 20, 2 * UNIT).await, durable, "durable write read back");
    invalid(&dev.write_durable(IoBuf::zeroed(block), size).await.0, "durable write past the end");

    // Bounds and alignment.
    invalid(&dev.read(IoBuf::zeroed(block), 1).await.0, "read at an unaligned offset");
    invalid(&dev.write(IoBuf::zeroed(block + 1), 0).await.0, "write of an unaligned length");
    invalid(
        &dev.read(IoBuf::zeroed(2 * block), size - block as u64).await.0,
        "read across the end",
    );
    invalid(&dev.write(IoBuf::zeroed(block), size).await.0, "write past the end");
    invalid(&dev.discard(size - block as u64, 2 * block as u64).await, "discard across the end");
    invalid(
        &dev.write_zeroes(block as u64 / 2, block as u64).await,
        "write_zeroes at an unaligned offset",
    );
    invalid(&dev.write_zeroes(0, u64::MAX).await, "write_zeroes of an overflowing length");
    // The failed requests changed nothing.
    same(
        &read(dev, size - 4 * UNIT as u64, 4 * UNIT).await,
        &pattern(103, 4 * UNIT),
        "tail after failed requests",
    );
    allocation_contract(dev).await;
}

/// `allocation`: a device that reports allocation shows a discarded range as a hole and a
/// written block as mapped; one that does not reports the whole range mapped; both refuse
/// misaligned and out-of-range queries.
async fn allocation_contract(dev: &dyn BlockDevice) {
    const REGION: u64 = 256 << 10;
    const CHUNK: u64 = 64 << 10;
    let size = dev.info().size_bytes;
    let start = size - REGION;
    dev.discard(start, REGION).await.expect("discard");
    write(dev, start + CHUNK, &pattern(104, UNIT)).await;
    dev.flush().await.expect("flush");
    let first = dev.allocation(start, REGION).await.expect("allocation");
    if !dev.reports_allocation() {
        assert_eq!(first, Allocation { mapped: true, run_bytes: REGION }, "everything mapped");
    } else {
        assert_eq!(first, Allocation { mapped: false, run_bytes: CHUNK }, "discarded run");
        let written = dev.allocation(start + CHUNK, REGION - CHUNK).await.expect("allocation");
        assert!(
            written.mapped && (UNIT as u64..=CHUNK).contains(&written.run_bytes),
            "written block: {written:?}"
        );
        let tail = dev.allocation(start + 2 * CHUNK, REGION - 2 * CHUNK).await.expect("tail");
        assert_eq!(tail, Allocation { mapped: false, run_bytes: REGION - 2 * CHUNK }, "tail hole");
    }
    invalid(&dev.allocation(start + 1, UNIT as u64).await, "allocation at an unaligned offset");
    invalid(&dev.allocation(size, UNIT as u64).await, "allocation past the end");
}

#[test]
fn memory_device_conforms() {
    let Some(r) = reactor(BackendChoice::Epoll) else { return };
    let dev = MemoryDevice::new(DEVICE_BYTES, 512);
    r.block_on(conformance(&dev));
    let dev4k = MemoryDevice::new(DEVICE_BYTES, 4096);
    r.block_on(conformance(&dev4k));
}

#[test]
fn fault_device_without_faults_conforms() {
    let Some(r) = reactor(BackendChoice::Epoll) else { return };
    let inner = Arc::new(MemoryDevice::new(DEVICE_BYTES, 512));
    let dev = FaultDevice::new(
        inner,
        FaultConfig { seed: 1, max_unflushed_ops: 8, ..Default::default() },
    );
    r.block_on(conformance(&dev));
    let stats = dev.stats();
    assert_eq!(stats.errors_injected + stats.bit_flips + stats.torn_writes, 0);
    assert!(stats.destaged > 0, "the bounded log and the flush destaged entries");
}

#[test]
fn file_devices_conform_on_both_backends() {
    for backend in BACKENDS {
        let Some(r) = reactor(backend) else { continue };
        let dir = tempfile::tempdir().expect("tempdir");
        r.block_on(async {
            let uring = UringDevice::create_file(&dir.path().join("uring.img"), DEVICE_BYTES)
                .expect("create");
            assert!(uring.is_direct(), "ext4/xfs temp dirs take O_DIRECT");
            conformance(&uring).await;
            let sync = SyncDevice::create_file(&dir.path().join("sync.img"), DEVICE_BYTES)
                .expect("create");
            conformance(&sync).await;
            std::fs::File::create(dir.path().join("auto.img"))
                .and_then(|f| f.set_len(DEVICE_BYTES))
                .expect("create file");
            let auto = open_device(&dir.path().join("auto.img"), BackendChoice::Auto)
                .expect("open_device");
            conformance(auto.as_ref()).await;
            let forced = open_device(&dir.path().join("auto.img"), BackendChoice::Uring);
            if executor::backend_kind() == BackendKind::Epoll {
                assert!(
                    matches!(forced, Err(IoError::Unsupported(_))),
                    "no io_uring device on an epoll shard"
                );
            } else {
                assert!(forced.is_ok());
            }
        });
    }
}

#[test]
fn file_geometry_is_probed() {
    let Some(r) = reactor(BackendChoice::Epoll) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("geo.img");
    r.block_on(async {
        let dev = UringDevice::create_file(&path, DEVICE_BYTES + 100).expect("create");
        let info = dev.info();
        assert_eq!(info.size_bytes % u64::from(info.logical_block_bytes), 0);
        assert!(info.size_bytes <= DEVICE_BYTES + 100 && info.size_bytes >= DEVICE_BYTES);
        assert!(info.physical_block_bytes >= 4096);
        assert!(info.supports_discard, "ext4/xfs punch holes");
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len(),
            DEVICE_BYTES + 100,
            "the probe changed nothing"
        );
        assert!(matches!(UringDevice::open(&dir.path().join("missing")), Err(IoError::NotFound)));
        assert!(UringDevice::open(dir.path()).is_err(), "a directory is not a device");
    });
}

#[test]
fn uring_device_registers_its_file_in_each_reactor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev =
        UringDevice::create_file(&dir.path().join("shared.img"), DEVICE_BYTES).expect("create");
    let data = pattern(500, 2 * UNIT);
    for (round, backend) in
        [BackendChoice::Uring, BackendChoice::Epoll, BackendChoice::Uring].into_iter().enumerate()
    {
        // A fresh reactor on the same thread must not reuse the slot of the previous ring.
        let Some(r) = reactor(backend) else { continue };
        r.block_on(async {
            let file = dev.file_ref();
            match executor::backend_kind() {
                BackendKind::Uring => {
                    assert!(matches!(file, FileRef::Fixed(_)), "round {round}: {file:?}");
                }
                BackendKind::Epoll => {
                    assert!(matches!(file, FileRef::Raw(_)), "round {round}: {file:?}");
                }
            }
            assert_eq!(dev.file_ref(), file, "one registration per reactor");
            if round == 0 {
                write(&dev, 8192, &data).await;
            }
            same(&read(&dev, 8192, data.len()).await, &data, &format!("round {round}"));
        });
    }
}
