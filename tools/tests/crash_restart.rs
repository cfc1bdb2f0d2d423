//! ferrited killed with SIGKILL during a verified write workload over iSCSI, restarted on the
//! same data directory: every write acknowledged with FUA, or acknowledged before a
//! successful SYNCHRONIZE CACHE, reads back exactly; no chunk is torn or holds another LBA's
//! data; every chunk holds a version that was actually written. A writer that cannot log in,
//! gets a status other than GOOD, loses its connection before the kill or panics fails the
//! test, and so does a round that acknowledged or checked too little to mean anything.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use target_iscsi::initiator::{Initiator, LoginOptions};

const IQN: &str = "iqn.2026-11.io.ferrite:crash";

/// Two shards, pool `tank` on a 1 GiB file, LUN 0 the volume `tank/crash`.
fn config() -> String {
    common::config(
        "shards = 2",
        &common::pool_table("tank", "tank0.img", "1G"),
        IQN,
        &common::volume_lun(0, "tank/crash", "256M"),
    )
}

const BLOCK: u32 = 512;
const CHUNK_BLOCKS: u32 = 16; // 8 KiB chunks: larger than a 4 KiB volume block, so tearing shows
const CHUNKS_PER_WRITER: u64 = 256;

/// A chunk's content: header (chunk LBA, writer, generation, checksum) repeated in every block.
fn stamp(lba: u64, generation: u64) -> Vec<u8> {
    let mut out = vec![0u8; (CHUNK_BLOCKS * BLOCK) as usize];
    for (i, block) in out.chunks_mut(BLOCK as usize).enumerate() {
        block[0..8].copy_from_slice(&lba.to_le_bytes());
        block[8..16].copy_from_slice(&generation.to_le_bytes());
        block[16..24].copy_from_slice(&(i as u64).to_le_bytes());
        let fill = (lba.wrapping_mul(31) ^ generation.wrapping_mul(0x9e37_79b9)) as u8;
        for b in &mut block[24..] {
            *b = fill;
        }
    }
    out
}

/// Decodes a chunk: Some(generation) when every block is a consistent stamp of `lba`;
/// Ok(None) when the chunk is all zeros (never written); Err describing a torn or foreign chunk.
fn check(lba: u64, data: &[u8]) -> Result<Option<u64>, String> {
    if data.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let generation = u64::from_le_bytes(data[8..16].try_into().map_err(|_| "short")?);
    if data != stamp(lba, generation).as_slice() {
        let first_lba = u64::from_le_bytes(data[0..8].try_into().map_err(|_| "short")?);
        return Err(format!("chunk at LBA {lba} is torn or foreign (first block says LBA {first_lba}, generation {generation})"));
    }
    Ok(Some(generation))
}

#[derive(Default, Clone)]
struct ChunkLog {
    /// Newest generation known durable (FUA ack, or ack before a successful SYNC CACHE).
    durable: Option<u64>,
    /// Every generation ever sent (acknowledged or in flight at the crash).
    issued: Vec<u64>,
    /// Acknowledged but not yet covered by a flush.
    acked_unflushed: Vec<u64>,
}

fn opts(isid: u8) -> LoginOptions {
    let mut o = LoginOptions::new("iqn.2026-11.io.ferrite:crash-tester", IQN);
    o.isid = [0x80, 0, 0, 0, 0, isid];
    o.timeout = Duration::from_secs(10);
    o
}

/// Acknowledged writes a writer must have made before the kill in every round: with fewer,
/// the round checked too little to mean anything.
const MIN_ACKED_WRITES: u64 = 20;
/// Chunks per round that must hold a durable write made in that round when they are read back.
const MIN_DURABLE_CHECKED: usize = 16;

/// Writes and flushes until the daemon dies. Returns the writes acknowledged with GOOD; an
/// error is a failure unless `killed` was already set when it happened (the daemon is
/// SIGKILLed only after `killed` is set, so an error seen before is not the kill's).
fn writer(
    addr: std::net::SocketAddr,
    id: u64,
    seed: u64,
    start_generation: u64,
    log: &Mutex<HashMap<u64, ChunkLog>>,
    killed: &AtomicBool,
) -> Result<u64, String> {
    let mut ini = Initiator::login(addr, &opts(10 + id as u8))
        .map_err(|e| format!("writer {id}: login failed: {e}"))?;
    let mut x = seed | 1;
    let mut generation = start_generation;
    let mut acked = 0u64;
    // Only a transport error can be the kill: a status is an answer from a live daemon.
    let died = |what: &str, e: &dyn std::fmt::Display, acked: u64| {
        if killed.load(Ordering::SeqCst) {
            Ok(acked)
        } else {
            Err(format!("writer {id}: {what} failed before the kill: {e}"))
        }
    };
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let chunk = id * CHUNKS_PER_WRITER + x % CHUNKS_PER_WRITER;
        let lba = chunk * u64::from(CHUNK_BLOCKS);
        generation += 1;
        let fua = x.is_multiple_of(5);
        log.lock().expect("log").entry(lba).or_default().issued.push(generation);
        match ini.write16(0, lba, BLOCK, &stamp(lba, generation), fua) {
            Ok(r) if r.status == 0 => {
                acked += 1;
                let mut l = log.lock().expect("log");
                let entry = l.entry(lba).or_default();
                if fua {
                    entry.durable = Some(generation);
                } else {
                    entry.acked_unflushed.push(generation);
                }
            }
            Ok(r) => return Err(format!("writer {id}: write of LBA {lba} answered {r:?}")),
            Err(e) => return died("write", &e, acked),
        }
        if x.is_multiple_of(17) {
            match ini.synchronize_cache(0) {
                Ok(r) if r.status == 0 => {
                    let mut l = log.lock().expect("log");
                    let mine = id * CHUNKS_PER_WRITER * u64::from(CHUNK_BLOCKS)
                        ..(id + 1) * CHUNKS_PER_WRITER * u64::from(CHUNK_BLOCKS);
                    for (_, entry) in l.iter_mut().filter(|(lba, _)| mine.contains(*lba)) {
                        // Only this writer's own acknowledgements certainly preceded its flush;
                        // the other writer's may have raced it.
                        if let Some(g) = entry.acked_unflushed.iter().max().copied() {
                            entry.durable = Some(entry.durable.map_or(g, |d| d.max(g)));
                        }
                        entry.acked_unflushed.clear();
                    }
                }
                Ok(r) => return Err(format!("writer {id}: SYNCHRONIZE CACHE answered {r:?}")),
                Err(e) => return died("SYNCHRONIZE CACHE", &e, acked),
            }
        }
    }
}

#[test]
fn sigkill_during_verified_writes_loses_no_durable_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<Mutex<HashMap<u64, ChunkLog>>> = Arc::default();
    let mut daemon = common::Daemon::start(dir.path(), &config(), &["--keepalive-secs", "0"]);
    let config_path = dir.path().join("ferrited.toml");
    let data_dir = dir.path().join("data");
    for round in 0..3u64 {
        let addr = daemon.portal;
        let killed = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2u64)
            .map(|id| {
                let (log, killed) = (Arc::clone(&log), Arc::clone(&killed));
                std::thread::spawn(move || {
                    writer(
                        addr,
                        id,
                        0x5eed + round * 7 + id,
                        round * 1_000_000 + id * 100_000,
                        &log,
                        &killed,
                    )
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700 + round * 300));
        killed.store(true, Ordering::SeqCst);
        daemon.kill();
        for (id, w) in writers.into_iter().enumerate() {
            let acked = match w.join() {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => panic!("round {round}: {e}"),
                Err(_) => panic!("round {round}: writer {id} panicked"),
            };
            println!("round {round}: writer {id}: {acked} writes acknowledged before the kill");
            assert!(
                acked >= MIN_ACKED_WRITES,
                "round {round}: writer {id} had only {acked} writes acknowledged before the kill \
                 (at least {MIN_ACKED_WRITES} needed for the round to test anything)"
            );
        }
        daemon = common::Daemon::start_args(
            &[
                "--config",
                config_path.to_str().expect("utf8"),
                "--data-dir",
                data_dir.to_str().expect("utf8"),
                "--keepalive-secs",
                "0",
            ],
            &[],
            addr,
        );
        let mut ini = Initiator::login(daemon.portal, &opts(1)).expect("login after restart");
        let snapshot = log.lock().expect("log").clone();
        let mut durable_checked = 0;
        // Chunks whose durable write was made in this round (earlier rounds' survivors are
        // checked too, but do not count towards the minimum).
        let mut durable_this_round = 0;
        for (lba, entry) in &snapshot {
            let r = ini.read16(0, *lba, BLOCK, CHUNK_BLOCKS).expect("read after restart");
            assert_eq!(r.status, 0, "read of LBA {lba} failed after restart: {r:?}");
            let found = check(*lba, &r.data).unwrap_or_else(|e| panic!("round {round}: {e}"));
            match (found, entry.durable) {
                (None, Some(d)) => panic!("round {round}: LBA {lba}: durable generation {d} lost (chunk reads as never written)"),
                (Some(g), Some(d)) => {
                    assert!(g >= d, "round {round}: LBA {lba}: generation {g} is older than durable generation {d}");
                    durable_checked += 1;
                    if d >= round * 1_000_000 {
                        durable_this_round += 1;
                    }
                }
                _ => {}
            }
            if let Some(g) = found {
                assert!(
                    entry.issued.contains(&g),
                    "round {round}: LBA {lba} holds generation {g}, which was never written there"
                );
            }
        }
        println!(
            "round {round}: {} chunks checked, {durable_checked} with a durable write, \
             {durable_this_round} written durably in this round",
            snapshot.len()
        );
        assert!(
            durable_this_round >= MIN_DURABLE_CHECKED,
            "round {round}: only {durable_this_round} chunks held a durable write of this round \
             to check (at least {MIN_DURABLE_CHECKED} needed)"
        );
        // What survived is now the baseline: a chunk's newest surviving generation is durable.
        let mut l = log.lock().expect("log");
        for (lba, entry) in l.iter_mut() {
            let r = ini.read16(0, *lba, BLOCK, CHUNK_BLOCKS).expect("re-read");
            assert_eq!(r.status, 0, "round {round}: re-read of LBA {lba} failed: {r:?}");
            entry.durable = check(*lba, &r.data).unwrap_or_else(|e| panic!("round {round}: {e}"));
            entry.acked_unflushed.clear();
        }
        drop(l);
        let r = ini.synchronize_cache(0).expect("SYNCHRONIZE CACHE after the check");
        assert_eq!(r.status, 0, "round {round}: SYNCHRONIZE CACHE after the check: {r:?}");
        ini.logout().expect("logout after the check");
    }
    assert!(daemon.stop(), "ferrited must exit cleanly on SIGTERM");
}
