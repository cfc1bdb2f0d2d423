//! A leaf vdev: one device. The only node of the tree that issues device I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use drivers::blockdev::BlockDevice;
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoResult;

use super::{BlockCheck, BufResult, DeviceStats, Reconstruction, ScrubOutcome};
use crate::copy_stats::{self, CopyPath};

/// One device of the pool. Offsets are the device's own byte offsets.
pub struct Leaf {
    device: Arc<dyn BlockDevice>,
    stats: Arc<DeviceStats>,
    errors: LeafErrors,
}

/// This device's own error counters (the READ, WRITE and CKSUM columns of `pool status`) and
/// the bytes rewritten on it from redundancy.
#[derive(Debug, Default)]
pub struct LeafErrors {
    /// Reads that failed.
    pub read: AtomicU64,
    /// Writes (and vectored writes) that failed.
    pub write: AtomicU64,
    /// Copies read from this device that did not verify; counted by the node that verified
    /// them ([`Leaf::count_checksum_error`]).
    pub checksum: AtomicU64,
    /// Bytes rewritten on this device with a verified copy (self-heal, scrub repair).
    pub repaired_bytes: AtomicU64,
}

impl LeafErrors {
    /// Zeroes the read, write and checksum counts (`pool clear`); returns their sum before.
    /// The repaired bytes stay: they are a record of work done, not an error.
    pub fn clear(&self) -> u64 {
        [&self.read, &self.write, &self.checksum].iter().map(|c| c.swap(0, Ordering::Relaxed)).sum()
    }
}

impl Leaf {
    /// A leaf over `device`, counting its requests in `stats`.
    #[must_use]
    pub fn new(device: Arc<dyn BlockDevice>, stats: Arc<DeviceStats>) -> Leaf {
        Leaf { device, stats, errors: LeafErrors::default() }
    }

    /// This device's own error counters.
    #[must_use]
    pub fn errors(&self) -> &LeafErrors {
        &self.errors
    }

    /// Counts a copy read from this device that failed its check, here and in the pool's
    /// counters.
    pub fn count_checksum_error(&self) {
        self.errors.checksum.fetch_add(1, Ordering::Relaxed);
        self.stats.checksum_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.device
    }

    /// This leaf, as the list of leaves under a node.
    #[must_use]
    pub fn leaves(&self) -> &[Leaf] {
        std::slice::from_ref(self)
    }

    /// Reads `len_bytes` at `offset_bytes` into a new buffer.
    ///
    /// # Errors
    /// The device's error.
    pub async fn read(&self, offset_bytes: u64, len_bytes: usize) -> IoResult<IoBuf> {
        let (res, buf) = self.read_into(offset_bytes, IoBuf::zeroed(len_bytes)).await;
        res.map(|()| buf)
    }

    /// Reads `buf.len()` bytes at `offset_bytes` into `buf`, which comes back either way.
    ///
    /// # Errors
    /// The device's error.
    pub async fn read_into(&self, offset_bytes: u64, buf: IoBuf) -> BufResult {
        self.stats.read_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let (res, buf) = self.device.read(buf, offset_bytes).await;
        if res.is_err() {
            self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
            self.errors.read.fetch_add(1, Ordering::Relaxed);
        }
        (res, buf)
    }

    /// Writes `buf` at `offset_bytes`, durable when it completes if `durable` is set (see
    /// [`BlockDevice::write_durable`]); returns the buffer.
    ///
    /// # Errors
    /// The device's error.
    pub async fn write(&self, offset_bytes: u64, buf: IoBuf, durable: bool) -> BufResult {
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let (res, buf) = if durable {
            self.device.write_durable(buf, offset_bytes).await
        } else {
            self.device.write(buf, offset_bytes).await
        };
        (self.count_write(res), buf)
    }

    /// Counts a failed write on this device; returns its result.
    fn count_write(&self, res: IoResult<()>) -> IoResult<()> {
        if res.is_err() {
            self.errors.write.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    /// True when the device makes each durable [`Leaf::write`] durable by itself.
    #[must_use]
    pub fn durable_writes(&self) -> bool {
        self.device.durable_writes()
    }

    /// Writes `bufs` back to back at `offset_bytes` straight from their memory (one vectored
    /// write). A device without vectored writes, or a buffer not aligned for direct I/O
    /// (memory on 4 KiB, length on the device block), gets one assembled buffer instead: that
    /// copy is counted as [`CopyPath::SyncWrite`].
    ///
    /// # Errors
    /// The device's error.
    pub async fn write_vectored(&self, offset_bytes: u64, bufs: Vec<SharedBuf>) -> IoResult<()> {
        let dev = &self.device;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(total as u64, Ordering::Relaxed);
        // Direct I/O wants every piece aligned in memory and a whole number of device blocks.
        let unit = dev.info().logical_block_bytes as usize;
        let in_place =
            bufs.iter().all(|b| b.is_aligned() && unit > 0 && b.len().is_multiple_of(unit));
        if dev.writes_vectored() && in_place {
            return self.count_write(dev.write_vectored(bufs, offset_bytes).await);
        }
        let mut one = IoBuf::zeroed(total);
        let mut at = 0;
        for b in &bufs {
            one[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        copy_stats::record(CopyPath::SyncWrite, total);
        self.count_write(dev.write(one, offset_bytes).await.0)
    }

    /// Makes every write completed before this call durable.
    ///
    /// # Errors
    /// The device's error.
    pub async fn flush(&self) -> IoResult<()> {
        self.device.flush().await
    }

    /// Deallocates `len_bytes` at `offset_bytes`; the range reads back as zeros.
    ///
    /// # Errors
    /// The device's error.
    pub async fn trim(&self, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
        self.device.discard(offset_bytes, len_bytes).await
    }

    /// A leaf holds one copy: there is no other to read or rebuild. The copy that failed its
    /// check is counted against this device.
    #[allow(clippy::unused_async)] // the signature every node kind shares
    pub async fn reconstruct(&self, _block: BlockCheck<'_>) -> Reconstruction {
        self.count_checksum_error();
        Reconstruction::NoOtherCopy
    }

    /// Scrubs one block: reads its only copy and checks it. Nothing can be repaired.
    ///
    /// # Errors
    /// The device's error.
    pub async fn scrub(&self, block: BlockCheck<'_>) -> IoResult<ScrubOutcome> {
        let buf = self.read(block.offset_bytes, block.len_bytes).await?;
        if block.verifies(&buf) {
            return Ok(ScrubOutcome { copies_checked: 1, ..ScrubOutcome::default() });
        }
        self.count_checksum_error();
        Ok(ScrubOutcome { copies_checked: 1, bad_copies: 1, repaired_bytes: 0, unrepairable: true })
    }
}
