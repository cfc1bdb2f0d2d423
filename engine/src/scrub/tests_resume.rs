//! A scrub's record in the pool root: it survives export and import with its counters, goes on
//! from its cursor, and the pool's scrub service resumes and schedules scrubs.

use std::sync::Arc;
use std::time::Duration;

use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::executor;

use super::tests::{corrupt, data_block, reactor, write};
use super::walk::metadata_pointers;
use super::{ScrubState, ScrubStatus};
use crate::block_tree::FANOUT;
use crate::compress::Compression;
use crate::{CreateOptions, Pool, PoolTunables, VolumeOptions};

/// Blocks of volume `v` written before the snapshot: eight level-1 indirect blocks' worth.
const BLOCKS: u64 = 1000;

/// Blocks of `v` overwritten after the snapshot (held by `v@s` alone).
const REWRITTEN: u64 = 10;

fn tunables(rate: u64, interval: Option<Duration>) -> PoolTunables {
    PoolTunables {
        scrub_rate_bytes_per_s: rate,
        scrub_interval: interval,
        ..PoolTunables::default()
    }
}

/// A pool on a 64 MiB memory device with volume `v` (one partition, 4 KiB blocks, no
/// compression): blocks 0..BLOCKS written, snapshot `v@s`, blocks 0..REWRITTEN overwritten,
/// all synced.
async fn setup(t: PoolTunables) -> (Arc<MemoryDevice>, Arc<Pool>) {
    let mem = Arc::new(MemoryDevice::new(64 << 20, 512));
    let dev: Arc<dyn BlockDevice> = Arc::clone(&mem) as Arc<dyn BlockDevice>;
    let options = CreateOptions {
        guid: Some(9),
        log_chain_bytes: 1 << 20,
        tunables: t,
        ..Default::default()
    };
    let pool = Pool::create(vec![dev], None, options).await.expect("create");
    let plain = VolumeOptions { compression: Compression::Off, ..VolumeOptions::default() };
    let one_partition = VolumeOptions { capacity_bytes: 8 << 20, partition_count: 1, ..plain };
    let vol = pool.create_volume("v", &one_partition).await.expect("volume");
    for i in 0..BLOCKS {
        write(&vol, i, i + 1).await;
    }
    pool.sync_txg().await.expect("sync");
    pool.snapshot("v", "s").await.expect("snapshot");
    for i in 0..REWRITTEN {
        write(&vol, i, 5000 + i).await;
    }
    for _ in 0..3 {
        pool.sync_txg().await.expect("sync");
    }
    (mem, pool)
}

async fn reimport(mem: &Arc<MemoryDevice>, t: PoolTunables) -> Arc<Pool> {
    let dev: Arc<dyn BlockDevice> = Arc::clone(mem) as Arc<dyn BlockDevice>;
    Pool::import(vec![dev], t).await.expect("import")
}

async fn full_scrub(pool: &Pool) -> ScrubStatus {
    let job = pool.start_scrub().expect("start");
    job.run(pool).await;
    job.status()
}

/// Starts a scrub at `pool`'s rate in its own task and returns once it has checked at least
/// `blocks` blocks; then pauses it when `pause` and lets it settle.
async fn scrub_part_way(
    pool: &Arc<Pool>,
    blocks: u64,
    pause: bool,
) -> (Arc<super::Scrub>, executor::JoinHandle<()>) {
    let job = pool.start_scrub().expect("start");
    let runner = {
        let (job, pool) = (Arc::clone(&job), Arc::clone(pool));
        executor::spawn(async move { job.run(&pool).await })
    };
    while job.status().blocks < blocks {
        assert!(job.status().state.is_active(), "the scrub ended before {blocks} blocks");
        executor::sleep(Duration::from_millis(5)).await;
    }
    if pause {
        pool.pause_scrub().expect("pause");
        // The walk finishes the data blocks of the indirect block it is in, then waits.
        executor::sleep(Duration::from_millis(300)).await;
    }
    (job, runner)
}

/// Polls until the pool's scrub has finished (at most 30 s, else fails with `what`): its status.
async fn wait_finished(pool: &Pool, what: &str) -> ScrubStatus {
    for _ in 0..3000 {
        if let Some(s) = pool.scrub_status().filter(|s| s.state == ScrubState::Finished) {
            return s;
        }
        executor::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} within 30 s");
}

#[test]
fn a_paused_scrub_survives_export_and_goes_on_from_its_cursor_after_import() {
    reactor().block_on(async {
        // 8 MiB/s: the walk checks an indirect block's data blocks, then waits its turn.
        let t = || tunables(8 << 20, None);
        let (mem, pool) = setup(t()).await;
        // A bad block the walk finds before the pause: only the snapshot holds it.
        let bad = data_block(&pool, "v@s", 5).await;
        corrupt(&mem, &bad);

        let (job, runner) = scrub_part_way(&pool, 600, true).await;
        let before = job.status();
        assert_eq!(before.state, ScrubState::Paused);
        assert_eq!(before.errors, 1, "{:?}", before.bad_blocks);
        pool.export().await.expect("export");
        runner.await;

        let pool = reimport(&mem, t()).await;
        let loaded = pool.scrub_status().expect("the scrub is on record");
        assert_eq!(loaded.state, ScrubState::Paused);
        assert_eq!(
            (loaded.examined_bytes, loaded.blocks, loaded.errors, loaded.start_unix_s),
            (before.examined_bytes, before.blocks, before.errors, before.start_unix_s)
        );
        assert!(loaded.bad_blocks.is_empty(), "the list is not recorded, the count is");
        assert!(pool.start_scrub().is_err(), "the paused scrub is still the pool's scrub");
        let job = pool.interrupted_scrub().expect("interrupted scrub");
        assert!(pool.interrupted_scrub().is_none(), "handed out once");
        let cursor = job.resume_from();
        assert!(cursor.dataset.is_some_and(|k| !k.head), "{cursor:?}: inside the snapshot");
        assert!(cursor.block >= 3 * FANOUT as u64, "{cursor:?}");

        pool.resume_scrub().expect("resume");
        job.run(&pool).await;
        let resumed = job.status();
        assert_eq!(resumed.state, ScrubState::Finished);
        // The bad block was before the cursor: counted once, not found again.
        assert_eq!(resumed.errors, 1);

        // Against a whole walk of the same pool: the resumed scrub checked the metadata twice
        // and at most one indirect block's data blocks again, not the part before its cursor.
        let whole = full_scrub(&pool).await;
        assert_eq!(whole.errors, 1, "{:?}", whole.bad_blocks);
        let meta_blocks = metadata_pointers(&pool).await.len() as u64;
        assert!(resumed.blocks >= whole.blocks, "{resumed:?} against {whole:?}");
        assert!(
            resumed.blocks <= whole.blocks + meta_blocks + FANOUT as u64,
            "resumed {} blocks, a whole walk {} ({meta_blocks} of metadata)",
            resumed.blocks,
            whole.blocks
        );
    });
}

#[test]
fn an_ended_scrub_stays_in_the_status_after_import_and_none_is_resumed() {
    reactor().block_on(async {
        let t = || tunables(0, None);
        let (mem, pool) = setup(t()).await;
        pool.export().await.expect("export");
        let pool = reimport(&mem, t()).await;
        assert!(pool.scrub_status().is_none(), "no scrub on record");
        let done = full_scrub(&pool).await;
        assert_eq!(done.state, ScrubState::Finished);
        pool.export().await.expect("export");

        let pool = reimport(&mem, t()).await;
        let loaded = pool.scrub_status().expect("on record");
        assert_eq!(loaded.state, ScrubState::Finished);
        assert_eq!(
            (loaded.examined_bytes, loaded.blocks, loaded.end_unix_s),
            (done.examined_bytes, done.blocks, done.end_unix_s)
        );
        assert!(pool.interrupted_scrub().is_none());
        // A new scrub is accepted and replaces it.
        let again = full_scrub(&pool).await;
        assert_eq!(again.state, ScrubState::Finished);
        assert_eq!(again.examined_bytes, again.to_examine_bytes);
        assert!(again.start_unix_s >= done.start_unix_s);
    });
}

#[test]
fn the_next_scheduled_scrub_is_due_one_interval_after_the_last_ended() {
    reactor().block_on(async {
        let (_mem, never) = setup(tunables(0, None)).await;
        assert_eq!(never.next_scrub_due(100), None, "no interval, no schedule");

        let hour = Duration::from_secs(3600);
        let (_mem, pool) = setup(tunables(0, Some(hour))).await;
        assert_eq!(pool.next_scrub_due(100), Some(3700), "none on record: from `since`");
        let job = pool.start_scrub().expect("start");
        assert_eq!(pool.next_scrub_due(100), None, "not while one runs");
        job.run(&pool).await;
        let end = job.status().end_unix_s.expect("ended");
        assert_eq!(pool.next_scrub_due(100), Some(end + 3600));
    });
}

#[test]
fn the_scrub_service_starts_a_due_scrub_and_resumes_an_interrupted_one() {
    reactor().block_on(async {
        // Due one second after the service starts.
        let (_mem, pool) = setup(tunables(0, Some(Duration::from_secs(1)))).await;
        let service = pool.start_scrub_service();
        let whole = wait_finished(&pool, "no scheduled scrub finished").await;
        assert_eq!(whole.errors, 0);
        pool.export().await.expect("export");
        service.await;

        // Exported while running: the service of the next import finishes it.
        let t = || tunables(8 << 20, None);
        let (mem, pool) = setup(t()).await;
        let (_job, runner) = scrub_part_way(&pool, 600, false).await;
        pool.export().await.expect("export");
        runner.await;
        let pool = reimport(&mem, t()).await;
        assert_eq!(pool.scrub_status().map(|s| s.state), Some(ScrubState::Running));
        let service = pool.start_scrub_service();
        let resumed = wait_finished(&pool, "the interrupted scrub did not finish").await;
        let meta_blocks = metadata_pointers(&pool).await.len() as u64;
        // The export's own txg may record the counters a batch ahead of the cursor.
        assert!(
            resumed.blocks <= whole.blocks + meta_blocks + 2 * FANOUT as u64,
            "resumed {} blocks, a whole walk {}",
            resumed.blocks,
            whole.blocks
        );
        pool.export().await.expect("export");
        service.await;
    });
}
