//! The pool's scrub service: resumes an interrupted scrub, then starts one every
//! `scrub_interval` after the last one ended.

use std::sync::Arc;
use std::time::Duration;

use super::unix_now;
use crate::pool::{lock, Pool};

/// Default time from the end of one scrub to the start of the next: 30 days.
pub const DEFAULT_SCRUB_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest sleep between two looks at the schedule (a clock step or an operator's scrub
/// moves the next one).
const LOOK_EVERY: Duration = Duration::from_secs(60);

impl Pool {
    /// When (Unix seconds) the next scheduled scrub is due: `scrub_interval` after the last
    /// scrub ended (after `since_unix_s` when the pool records none). `None` while one runs
    /// or is paused, or when no interval is set.
    #[must_use]
    pub fn next_scrub_due(&self, since_unix_s: u64) -> Option<u64> {
        let interval = self.tunables.scrub_interval?.as_secs();
        let last = match lock(&self.scrub).as_ref().map(|s| s.status()) {
            Some(s) if s.state.is_active() => return None,
            Some(s) => s.end_unix_s.unwrap_or(s.start_unix_s),
            None => since_unix_s,
        };
        Some(last.saturating_add(interval))
    }

    /// Spawns the pool's scrub service on the current shard (where its txg coordinator runs):
    /// it drives the scrub the pool was exported in the middle of ([`Pool::interrupted_scrub`]),
    /// then starts a scrub whenever [`Pool::next_scrub_due`] passes, until the pool is
    /// exported (with no `scrub_interval`, it ends after the interrupted scrub). A scrub it
    /// starts runs in its task; one started by the operator runs in the operator's.
    ///
    /// # Panics
    /// When no reactor runs on this thread.
    pub fn start_scrub_service(self: &Arc<Self>) -> drivers::executor::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let since = unix_now();
        drivers::executor::spawn(async move {
            let mut job = weak.upgrade().and_then(|pool| pool.interrupted_scrub());
            loop {
                let wait = {
                    let Some(pool) = weak.upgrade() else { return };
                    if pool.is_suspended() {
                        return;
                    }
                    if let Some(job) = job.take() {
                        job.run(&pool).await;
                        continue;
                    }
                    if pool.tunables.scrub_interval.is_none() {
                        // Nothing is scheduled: the service's work is done.
                        return;
                    }
                    match pool.next_scrub_due(since) {
                        Some(due) if due <= unix_now() => match pool.start_scrub() {
                            Ok(started) => {
                                log::info!("pool {}: scheduled scrub started", pool.name);
                                job = Some(started);
                                Duration::ZERO
                            }
                            Err(e) => {
                                log::warn!("pool {}: scheduled scrub not started: {e}", pool.name);
                                LOOK_EVERY
                            }
                        },
                        // At least a second: the task always yields between two looks.
                        Some(due) => Duration::from_secs(due.saturating_sub(unix_now()))
                            .clamp(Duration::from_secs(1), LOOK_EVERY),
                        None => LOOK_EVERY,
                    }
                };
                if !wait.is_zero() {
                    drivers::executor::sleep(wait).await;
                }
            }
        })
    }
}
