//! Write admission and throttling: what a writer may dirty (the reserve and thick
//! reservations kept free), and how long it waits when dirty data passes its limits.

use super::*;

impl Pool {
    /// Adds `delta` bytes to the dirty-data count and wakes the syncer past its threshold.
    pub(crate) fn account_dirty(&self, delta: i64) {
        if delta >= 0 {
            let now = self.txg.dirty_bytes.fetch_add(delta.unsigned_abs(), Ordering::SeqCst)
                + delta.unsigned_abs();
            if now > self.tunables.dirty_sync_bytes {
                self.txg.kick.wake_all();
            }
        } else {
            let _ = self.txg.dirty_bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(delta.unsigned_abs()))
            });
        }
    }

    /// Refuses a write of `len_bytes` when the pool is too full (the over-provisioning
    /// reserve and thick reservations are kept free).
    pub(crate) fn admit(
        &self,
        len_bytes: u64,
        thick: bool,
    ) -> Result<(), crate::block_volume::VolumeError> {
        let free = self.alloc.free_bytes();
        let dirty = self.txg.dirty_bytes.load(Ordering::Relaxed);
        let reserve = self.alloc.capacity_bytes() / 100 * u64::from(self.reserve_percent);
        let available = if thick {
            // A thick volume writes into its reservation; only the reserve is kept.
            free.saturating_sub(dirty).saturating_sub(reserve / 2)
        } else {
            free.saturating_sub(dirty)
                .saturating_sub(reserve)
                .saturating_sub(self.reserved_unused_bytes.load(Ordering::Relaxed))
        };
        if available < len_bytes.saturating_mul(2) {
            self.stats.no_space_errors.fetch_add(1, Ordering::Relaxed);
            return Err(crate::block_volume::VolumeError::NoSpace);
        }
        Ok(())
    }

    /// Makes a writer wait while dirty data is past its limit.
    ///
    /// A throttled writer waits for the sync in progress to release its data (the open txg
    /// keeps taking writes meanwhile, so the device never idles between txgs); it syncs the
    /// open txg itself only when no sync is running. Past the sync threshold a writer also
    /// yields to the shard's other tasks: a write-back write completes without waiting for
    /// I/O, so without a yield a stream of them would keep the syncer (and its I/O
    /// completions) from running until the hard limit stops them.
    pub(crate) async fn throttle(&self) -> PoolResult<()> {
        let limit = self.tunables.dirty_limit_bytes;
        let dirty = self.txg.dirty_bytes.load(Ordering::SeqCst);
        if dirty > limit {
            self.stats.throttled_writes.fetch_add(1, Ordering::Relaxed);
            while self.txg.dirty_bytes.load(Ordering::SeqCst) > limit {
                self.check_live()?;
                if self.txg.sync_lock.is_locked() {
                    // Taken (and released at once) when the running sync has finished.
                    drop(self.txg.sync_lock.lock().await);
                } else {
                    self.ensure_durable(self.open_txg()).await?;
                }
            }
            self.check_live()?;
        } else if dirty > self.tunables.dirty_sync_bytes {
            drivers::executor::yield_now().await;
        }
        Ok(())
    }

    /// SYNCHRONIZE CACHE: every completed write becomes durable. Writes the intent log covers
    /// already are; others are covered by a txg sync.
    pub(crate) async fn flush_async_writes(&self) -> PoolResult<()> {
        self.check_live()?;
        let label = self.txg.async_label.load(Ordering::SeqCst);
        self.ensure_durable(TxgId::new(label)).await
    }
}
