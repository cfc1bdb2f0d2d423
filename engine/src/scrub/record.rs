//! The scrub's record in the pool root ([`ScanPhys`]): written by every txg, loaded at import.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Scrub, ScrubState, ScrubStatus};
use crate::pool::{lock, Pool};
use crate::pool_root::{ScanPhys, SCAN_FUNCTION_SCRUB};

/// [`ScanPhys::cursor_flags`]: the cursor's dataset is a head (volume or clone).
const CURSOR_HEAD: u32 = 1;

/// Where a walk is: everything before it is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The dataset being walked, by its place in the walk's order (head or not, creation txg,
    /// id); `None` while the walk is in the pool's metadata.
    pub(crate) dataset: Option<DatasetKey>,
    /// The partition being walked.
    pub(crate) partition: u32,
    /// The partition's data blocks below this index are checked.
    pub(crate) block: u64,
}

/// A dataset's place in the walk's order: snapshots (oldest first), then the heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DatasetKey {
    /// A head (volume or clone) rather than a snapshot.
    pub(crate) head: bool,
    /// Its creation txg.
    pub(crate) creation_txg: u64,
    /// Its id.
    pub(crate) id: u64,
}

fn state_code(state: ScrubState) -> u32 {
    match state {
        ScrubState::Running => 1,
        ScrubState::Paused => 2,
        ScrubState::Finished => 3,
        ScrubState::Stopped => 4,
        // Ended by the export (or the suspension) that this record outlives: it goes on
        // where it was at the next import.
        ScrubState::Canceled => 1,
    }
}

fn state_of(code: u32) -> Option<ScrubState> {
    match code {
        1 => Some(ScrubState::Running),
        2 => Some(ScrubState::Paused),
        3 => Some(ScrubState::Finished),
        4 => Some(ScrubState::Stopped),
        _ => None,
    }
}

impl Scrub {
    /// The record of this scrub as the txg writes it.
    pub(crate) fn record(&self) -> ScanPhys {
        let s = lock(&self.status).clone();
        let cursor = *lock(&self.cursor);
        let mut state = state_code(s.state);
        if s.state == ScrubState::Canceled && self.paused.load(Ordering::SeqCst) {
            state = state_code(ScrubState::Paused);
        }
        let active_ms = u64::try_from(self.active_time().as_millis()).unwrap_or(u64::MAX);
        let (cursor_dataset, cursor_creation_txg, cursor_flags) = cursor
            .dataset
            .map_or((0, 0, 0), |k| (k.id, k.creation_txg, if k.head { CURSOR_HEAD } else { 0 }));
        ScanPhys {
            function: SCAN_FUNCTION_SCRUB,
            state,
            start_unix_s: s.start_unix_s,
            end_unix_s: if s.state == ScrubState::Canceled { 0 } else { s.end_unix_s.unwrap_or(0) },
            active_ms,
            examined_bytes: s.examined_bytes,
            to_examine_bytes: s.to_examine_bytes,
            blocks: s.blocks,
            errors: s.errors,
            repaired_bytes: s.repaired_bytes,
            cursor_dataset,
            cursor_creation_txg,
            cursor_partition: cursor.partition,
            cursor_flags,
            cursor_block: cursor.block,
            reserved: [0; 3],
        }
    }

    /// The scrub a pool root records, or `None` when it records none (or one of a function
    /// this ferrite does not know). A running or paused one waits for a task to drive it
    /// ([`Pool::interrupted_scrub`]); an ended one is only its status.
    pub(crate) fn from_record(rec: &ScanPhys, rate_bytes_per_s: u64) -> Option<Scrub> {
        if rec.function != SCAN_FUNCTION_SCRUB {
            return None;
        }
        let state = state_of(rec.state)?;
        let dataset = (rec.cursor_dataset != 0).then_some(DatasetKey {
            head: rec.cursor_flags & CURSOR_HEAD != 0,
            creation_txg: rec.cursor_creation_txg,
            id: rec.cursor_dataset,
        });
        let cursor = Cursor { dataset, partition: rec.cursor_partition, block: rec.cursor_block };
        let active = Duration::from_millis(rec.active_ms);
        Some(Scrub {
            status: Mutex::new(ScrubStatus {
                state,
                start_unix_s: rec.start_unix_s,
                end_unix_s: (!state.is_active()).then_some(rec.end_unix_s),
                examined_bytes: rec.examined_bytes,
                to_examine_bytes: rec.to_examine_bytes,
                blocks: rec.blocks,
                errors: rec.errors,
                repaired_bytes: rec.repaired_bytes,
                bad_blocks: Vec::new(),
                rate_bytes_per_s: 0,
                eta_s: None,
            }),
            paused: AtomicBool::new(state == ScrubState::Paused),
            stop: AtomicBool::new(false),
            rate_bytes_per_s,
            // Scrub time resumes counting when a task drives it.
            timing: Mutex::new((active, None)),
            cursor: Mutex::new(cursor),
            resume_from: cursor,
            driven: AtomicBool::new(!state.is_active()),
        })
    }

    /// Starts counting scrub time again when a loaded running scrub gets its task.
    pub(super) fn start_clock(&self) {
        if self.paused.load(Ordering::SeqCst) {
            return;
        }
        let mut t = lock(&self.timing);
        if t.1.is_none() {
            t.1 = Some(Instant::now());
        }
    }

    /// Moves the cursor: `cursor`'s partition is checked below `cursor.block`.
    pub(super) fn set_cursor(&self, cursor: Cursor) {
        *lock(&self.cursor) = cursor;
    }

    /// Raises the cursor's block index (the walk checks a partition in index order).
    pub(super) fn advance(&self, block: u64) {
        let mut c = lock(&self.cursor);
        c.block = c.block.max(block);
    }

    /// Where the walk starts.
    pub(super) fn resume_from(&self) -> Cursor {
        self.resume_from
    }
}

impl Pool {
    /// The scan record of the pool root this txg writes: the current or last scrub.
    pub(crate) fn scan_record(&self) -> ScanPhys {
        lock(&self.scrub).as_ref().map_or_else(ScanPhys::default, |s| s.record())
    }

    /// Registers the scrub the loaded pool root records (at import).
    pub(crate) fn load_scan_record(&self, rec: &ScanPhys) {
        let scrub = Scrub::from_record(rec, self.tunables.scrub_rate_bytes_per_s);
        *lock(&self.scrub) = scrub.map(Arc::new);
    }

    /// A scrub that was running or paused when the pool was last exported (or its process
    /// stopped), loaded at import and not yet driven: the caller drives it with
    /// [`Scrub::run`], and it goes on from its cursor (a paused one waits for
    /// [`Pool::resume_scrub`]). `None` when there is none, or once it was handed out.
    #[must_use]
    pub fn interrupted_scrub(&self) -> Option<Arc<Scrub>> {
        let slot = lock(&self.scrub);
        let scrub = slot.as_ref()?;
        if !scrub.status().state.is_active() || scrub.driven.swap(true, Ordering::SeqCst) {
            return None;
        }
        scrub.start_clock();
        Some(Arc::clone(scrub))
    }
}
