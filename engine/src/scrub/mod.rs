//! Scrub: an online check of every allocated block of an imported pool.
//!
//! A scrub walks the pool's durable state — the pool root's objects (pool root, directory,
//! space-map table and space maps, the dedup table, index and log objects), every dataset's
//! object and deadlist object, and every partition tree of every volume, snapshot and clone
//! down to its data blocks — and hands each block to [`crate::vdev::Stripe::scrub_block`],
//! which checks every copy (and parity) the block's top-level vdev holds and rewrites the bad
//! ones it can rebuild. On a pool of single devices there is nothing to rebuild from: a bad
//! block is found and reported, not repaired.
//!
//! **Once per block.** Datasets are walked oldest first (snapshots in creation order, each
//! volume's head after its snapshots, a clone after its origin). A tree block born at or
//! before the creation txg of the newest snapshot of the same lineage already walked (for a
//! clone with none yet: its origin snapshot) is in that snapshot's tree — trees are
//! copy-on-write — so it and everything under it is skipped. Memory is bounded by the tree
//! height (one indirect block's children per level), whatever the pool's size. A
//! deduplicated data block is shared by reference count, not by the birth-txg rule, so it is
//! never skipped: it is checked once per dataset that references it (and the examined bytes
//! may then pass the allocated ones).
//!
//! **Live pool.** Blocks keep being freed and reallocated while the scrub runs. A block that
//! fails its check is reported only when it is still referenced where it was found: its
//! snapshot still exists (snapshots are immutable), or its volume's partition still has the
//! tree root the walk started from (or, when the root changed, the current tree still points
//! at the same block at that place), or the metadata still points at it. A block replaced or
//! freed meanwhile is not an error.
//!
//! **Resumable.** Every txg records the scrub in the pool root ([`crate::pool_root::ScanPhys`]):
//! its counters and a cursor (the dataset and partition being walked, and the data-block index
//! below which that partition is checked). Import loads it: a scrub that was running or
//! paused when the pool was exported or the process stopped goes on from its cursor
//! ([`Pool::interrupted_scrub`]), and a finished one stays in the status. A resumed walk
//! starts over the pool's metadata, passes the datasets before the cursor, and treats the
//! blocks of the lineages it passed as not yet covered (checking some twice rather than
//! trusting a snapshot list that may have changed). Bad blocks found before the restart are
//! in the count, not in the list.
//!
//! **Scheduled.** [`Pool::start_scrub_service`] resumes an interrupted scrub and starts one
//! every `scrub_interval` after the last one ended (see docs/operations.md).

mod record;
mod schedule;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_resume;
mod walk;

pub use schedule::DEFAULT_SCRUB_INTERVAL;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{PoolError, PoolResult};
use crate::pool::{lock, Pool};
use record::Cursor;

/// Default scrub bandwidth: 256 MiB per second.
pub const DEFAULT_SCRUB_RATE: u64 = 256 << 20;

/// Bad blocks kept in [`ScrubStatus::bad_blocks`]; past it only
/// [`ScrubStatus::errors`] counts.
pub const MAX_REPORTED_BAD_BLOCKS: usize = 64;

/// [`BadBlock::dataset`] of a block of the pool's own metadata.
pub const POOL_METADATA: &str = "(pool)";

/// Where a scrub is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrubState {
    /// Walking the pool.
    Running,
    /// Held by [`Pool::pause_scrub`] until [`Pool::resume_scrub`].
    Paused,
    /// Walked everything.
    Finished,
    /// Ended early by [`Pool::stop_scrub`].
    Stopped,
    /// Ended early because the pool was suspended or exported.
    Canceled,
}

impl ScrubState {
    /// Lower-case name (`running`, `paused`, `finished`, `stopped`, `canceled`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ScrubState::Running => "running",
            ScrubState::Paused => "paused",
            ScrubState::Finished => "finished",
            ScrubState::Stopped => "stopped",
            ScrubState::Canceled => "canceled",
        }
    }

    /// True while the scrub has not ended (running or paused).
    #[must_use]
    pub fn is_active(self) -> bool {
        matches!(self, ScrubState::Running | ScrubState::Paused)
    }
}

/// One bad block a scrub found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBlock {
    /// Dataset that references it (`volume`, `volume@snapshot`), or [`POOL_METADATA`].
    pub dataset: String,
    /// What and where: partition, level and index in its tree (or the metadata object), and
    /// the device and offset of the block.
    pub location: String,
    /// Device index (top-level vdev) of the block.
    pub device: u16,
    /// Byte offset of the block on it.
    pub offset_bytes: u64,
    /// Why: `checksum` (no copy verified) or the device error.
    pub reason: String,
}

/// Progress and findings of a scrub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubStatus {
    /// Running, paused, or how it ended.
    pub state: ScrubState,
    /// Start, in seconds since the Unix epoch.
    pub start_unix_s: u64,
    /// End, in seconds since the Unix epoch, once it ended.
    pub end_unix_s: Option<u64>,
    /// Bytes of blocks checked so far.
    pub examined_bytes: u64,
    /// Bytes the scrub examines: the pool's allocated space less the intent-log regions
    /// (log blocks are checked when they are replayed), taken at the start.
    pub to_examine_bytes: u64,
    /// Blocks checked so far.
    pub blocks: u64,
    /// Bad blocks found (still referenced when re-checked).
    pub errors: u64,
    /// Bytes rewritten with verified content.
    pub repaired_bytes: u64,
    /// The first [`MAX_REPORTED_BAD_BLOCKS`] bad blocks.
    pub bad_blocks: Vec<BadBlock>,
    /// Examined bytes per second of scrub time (pauses not counted).
    pub rate_bytes_per_s: u64,
    /// Seconds left at that rate, while it runs.
    pub eta_s: Option<u64>,
}

/// The dataset a tree belongs to.
struct DatasetRef {
    /// Dataset id.
    id: u64,
    /// `volume` or `volume@snapshot`, as bad blocks are reported.
    name: String,
    /// A snapshot (immutable trees) rather than a head (trees in its partitions).
    snapshot: bool,
    /// Volume whose history it is part of (a snapshot's volume, a volume itself).
    lineage: u64,
    /// For a clone or a clone's snapshot: the snapshot the clone started from (0 otherwise).
    origin_id: u64,
    /// A snapshot's point in time: the blocks of its lineage born at or before it are in it.
    creation_txg: u64,
}

/// A running (or ended) scrub of one pool: its status and its controls.
pub struct Scrub {
    status: Mutex<ScrubStatus>,
    paused: AtomicBool,
    stop: AtomicBool,
    /// Bytes per second the walk holds itself to (0: unlimited).
    rate_bytes_per_s: u64,
    /// Scrub time before the current run of it (pauses excluded).
    timing: Mutex<(Duration, Option<Instant>)>,
    /// Where the walk is (recorded by every txg).
    cursor: Mutex<Cursor>,
    /// Where the walk starts: a loaded scrub's cursor, or the beginning.
    resume_from: Cursor,
    /// Set once a task drives [`Scrub::run`].
    driven: AtomicBool,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Scrub {
    fn new(rate_bytes_per_s: u64, to_examine_bytes: u64) -> Scrub {
        Scrub {
            status: Mutex::new(ScrubStatus {
                state: ScrubState::Running,
                start_unix_s: unix_now(),
                end_unix_s: None,
                examined_bytes: 0,
                to_examine_bytes,
                blocks: 0,
                errors: 0,
                repaired_bytes: 0,
                bad_blocks: Vec::new(),
                rate_bytes_per_s: 0,
                eta_s: None,
            }),
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            rate_bytes_per_s,
            timing: Mutex::new((Duration::ZERO, Some(Instant::now()))),
            cursor: Mutex::new(Cursor::default()),
            resume_from: Cursor::default(),
            // The caller of `Pool::start_scrub` drives it.
            driven: AtomicBool::new(true),
        }
    }

    /// Scrub time so far, pauses excluded.
    fn active_time(&self) -> Duration {
        let t = lock(&self.timing);
        t.0 + t.1.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// The status now, with its rate and ETA.
    #[must_use]
    pub fn status(&self) -> ScrubStatus {
        let mut s = lock(&self.status).clone();
        let secs = self.active_time().as_secs_f64();
        if secs > 0.0 {
            s.rate_bytes_per_s = (s.examined_bytes as f64 / secs) as u64;
        }
        if s.state.is_active() && s.rate_bytes_per_s > 0 {
            let left = s.to_examine_bytes.saturating_sub(s.examined_bytes);
            s.eta_s = Some(left / s.rate_bytes_per_s);
        }
        s
    }

    /// True once stopped (by the operator or because the pool went away).
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Counts one block checked.
    fn examined(&self, bytes: u64, repaired_bytes: u64) {
        let mut s = lock(&self.status);
        s.examined_bytes += bytes;
        s.blocks += 1;
        s.repaired_bytes += repaired_bytes;
    }

    /// Records a bad block (the list is bounded; the count is not).
    fn bad(&self, bad: BadBlock) {
        let mut s = lock(&self.status);
        s.errors += 1;
        if s.bad_blocks.len() < MAX_REPORTED_BAD_BLOCKS {
            s.bad_blocks.push(bad);
        }
    }

    fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        let mut t = lock(&self.timing);
        if paused {
            if let Some(since) = t.1.take() {
                t.0 += since.elapsed();
            }
        } else if t.1.is_none() {
            t.1 = Some(Instant::now());
        }
        lock(&self.status).state = if paused { ScrubState::Paused } else { ScrubState::Running };
    }

    fn end(&self, state: ScrubState) {
        let mut t = lock(&self.timing);
        if let Some(since) = t.1.take() {
            t.0 += since.elapsed();
        }
        let mut s = lock(&self.status);
        s.state = state;
        s.end_unix_s = Some(unix_now());
    }

    /// Waits while paused (until resumed, stopped, or `pool` is exported), then holds the walk
    /// to its rate: `examined` bytes are due `examined / rate` seconds of scrub time after the
    /// start.
    async fn pace(&self, pool: &Pool) {
        while self.paused.load(Ordering::SeqCst) && !self.stopping() && !pool.is_suspended() {
            drivers::executor::sleep(Duration::from_millis(50)).await;
        }
        if self.rate_bytes_per_s == 0 {
            return;
        }
        let examined = lock(&self.status).examined_bytes;
        let due = Duration::from_secs_f64(examined as f64 / self.rate_bytes_per_s as f64);
        if let Some(wait) = due.checked_sub(self.active_time()) {
            if !wait.is_zero() {
                drivers::executor::sleep(wait).await;
            }
        }
    }

    /// Runs the scrub on `pool` to its end (finished, stopped or canceled); the status says
    /// which. Run it on the reactor the pool's I/O runs on.
    pub async fn run(&self, pool: &Pool) {
        self.driven.store(true, Ordering::SeqCst);
        let state = walk::run(pool, self).await;
        self.end(state);
    }
}

impl Pool {
    /// Starts a scrub of this pool, walking at most its `scrub_rate_bytes_per_s` tunable:
    /// the returned scrub is registered as the pool's; drive it with [`Scrub::run`].
    ///
    /// # Errors
    /// [`PoolError::Busy`] when a scrub is already running or paused,
    /// [`PoolError::Suspended`] for a suspended or exported pool.
    pub fn start_scrub(&self) -> PoolResult<Arc<Scrub>> {
        self.check_live()?;
        let mut slot = lock(&self.scrub);
        if slot.as_ref().is_some_and(|s| s.status().state.is_active()) {
            return Err(PoolError::Busy(format!(
                "a scrub of pool {} is already running",
                self.name
            )));
        }
        let scrub = Arc::new(Scrub::new(
            self.tunables.scrub_rate_bytes_per_s,
            walk::to_examine_bytes(self),
        ));
        *slot = Some(Arc::clone(&scrub));
        Ok(scrub)
    }

    /// Status of the pool's current or last scrub; `None` when none ran since import.
    #[must_use]
    pub fn scrub_status(&self) -> Option<ScrubStatus> {
        lock(&self.scrub).as_ref().map(|s| s.status())
    }

    fn active_scrub(&self, what: &str) -> PoolResult<Arc<Scrub>> {
        lock(&self.scrub).as_ref().filter(|s| s.status().state.is_active()).cloned().ok_or_else(
            || PoolError::Busy(format!("no scrub of pool {} is running to {what}", self.name)),
        )
    }

    /// Pauses the running scrub.
    ///
    /// # Errors
    /// [`PoolError::Busy`] when no scrub is running or paused.
    pub fn pause_scrub(&self) -> PoolResult<()> {
        self.active_scrub("pause")?.set_paused(true);
        Ok(())
    }

    /// Resumes a paused scrub.
    ///
    /// # Errors
    /// [`PoolError::Busy`] when no scrub is running or paused.
    pub fn resume_scrub(&self) -> PoolResult<()> {
        self.active_scrub("resume")?.set_paused(false);
        Ok(())
    }

    /// Stops the scrub: it ends `stopped` at its next block.
    ///
    /// # Errors
    /// [`PoolError::Busy`] when no scrub is running or paused.
    pub fn stop_scrub(&self) -> PoolResult<()> {
        self.active_scrub("stop")?.stop.store(true, Ordering::SeqCst);
        Ok(())
    }
}
