//! The root of the vdev tree: the pool's top-level vdevs, addressed by a block pointer's
//! device index.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use drivers::blockdev::BlockDevice;
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::{IoError, IoResult};

use super::{
    verifies, BlockCheck, BlockReadError, BufResult, DeviceStats, Leaf, Reconstruction,
    ScrubOutcome, Vdev,
};
use crate::block_pointer::BlockPointer;
use crate::join::join_all;

/// The pool's top level: a stripe over its top-level vdevs, in pool-configuration order.
/// Every method that takes a `device` index addresses top-level child `device` (a block
/// pointer's or extent's `device` field) at that child's `offset_bytes`; an index with no
/// child is `InvalidInput(ENXIO)`.
pub struct Stripe {
    children: Vec<Vdev>,
    /// Counters of every node of the tree.
    pub stats: Arc<DeviceStats>,
}

/// A block pointer past the end of a device is a metadata error, not a device one.
fn block_read_error(e: IoError) -> BlockReadError {
    match e {
        IoError::InvalidInput(_) => BlockReadError::Checksum,
        other => BlockReadError::Io(other),
    }
}

/// The bytes to read for `bp`, or `None` for a pointer that addresses no whole sectors (a
/// hole, or a size or offset off the 4 KiB grid: a malformed pointer).
fn addressed_len(bp: &BlockPointer) -> Option<usize> {
    let whole = bp.physical_bytes.is_multiple_of(4096) && bp.offset_bytes.is_multiple_of(4096);
    (!bp.is_hole() && whole).then_some(bp.physical_bytes as usize)
}

impl Stripe {
    /// The stripe over `devices`, one leaf each, in pool order.
    #[must_use]
    pub fn new(devices: Vec<Arc<dyn BlockDevice>>) -> Stripe {
        let stats = Arc::new(DeviceStats::default());
        let children =
            devices.into_iter().map(|d| Vdev::Leaf(Leaf::new(d, Arc::clone(&stats)))).collect();
        Stripe::from_children(children, stats)
    }

    /// The stripe over `children` (top-level vdevs in pool order, built over leaves that count
    /// in `stats`).
    #[must_use]
    pub fn from_children(children: Vec<Vdev>, stats: Arc<DeviceStats>) -> Stripe {
        Stripe { children, stats }
    }

    /// Number of top-level vdevs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True when there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Top-level vdev `device`.
    ///
    /// # Errors
    /// `InvalidInput(ENXIO)` when there is none.
    pub fn child(&self, device: u16) -> IoResult<&Vdev> {
        self.children.get(usize::from(device)).ok_or(IoError::InvalidInput(libc::ENXIO))
    }

    /// Every leaf (device) of the tree, in pool-configuration order: the order of the
    /// labels' `device_index`.
    pub fn leaves(&self) -> impl Iterator<Item = &Leaf> {
        self.children.iter().flat_map(Vdev::leaves)
    }

    /// Leaf `index` in [`Stripe::leaves`] order, for the per-device structures (labels and
    /// uberblock rings).
    ///
    /// # Errors
    /// `InvalidInput(ENXIO)` when there is none.
    pub fn leaf(&self, index: usize) -> IoResult<&Leaf> {
        self.leaves().nth(index).ok_or(IoError::InvalidInput(libc::ENXIO))
    }

    /// Reads `len_bytes` at `offset_bytes` of top-level vdev `device`.
    ///
    /// # Errors
    /// The device's error, or `InvalidInput` for an unknown device index.
    pub async fn read(&self, device: u16, offset_bytes: u64, len_bytes: usize) -> IoResult<IoBuf> {
        self.child(device)?.read(offset_bytes, len_bytes).await
    }

    /// Reads `buf.len()` bytes at `offset_bytes` of top-level vdev `device` into `buf`, which
    /// comes back either way (for a caller that reuses its buffers).
    ///
    /// # Errors
    /// The device's error, or `InvalidInput` for an unknown device index.
    pub async fn read_into(&self, device: u16, offset_bytes: u64, buf: IoBuf) -> BufResult {
        match self.child(device) {
            Ok(child) => child.read_into(offset_bytes, buf).await,
            Err(e) => (Err(e), buf),
        }
    }

    /// Writes `buf` at `offset_bytes` of top-level vdev `device`; returns the buffer.
    ///
    /// # Errors
    /// The device's error.
    pub async fn write(&self, device: u16, offset_bytes: u64, buf: IoBuf) -> BufResult {
        self.write_with(device, offset_bytes, buf, false).await
    }

    /// [`Stripe::write`], durable when it completes if `durable` is set (see
    /// [`BlockDevice::write_durable`]).
    ///
    /// # Errors
    /// The device's error.
    pub async fn write_with(
        &self,
        device: u16,
        offset_bytes: u64,
        buf: IoBuf,
        durable: bool,
    ) -> BufResult {
        match self.child(device) {
            Ok(child) => child.write(offset_bytes, buf, durable).await,
            Err(e) => (Err(e), buf),
        }
    }

    /// True when top-level vdev `device` makes each durable [`Stripe::write_with`] durable by
    /// itself, so no flush is needed after those writes.
    #[must_use]
    pub fn durable_writes(&self, device: u16) -> bool {
        self.child(device).is_ok_and(Vdev::durable_writes)
    }

    /// Writes `bufs` back to back at `offset_bytes` of top-level vdev `device` straight from
    /// their memory (one vectored write; see [`Leaf::write_vectored`]).
    ///
    /// # Errors
    /// The device's error.
    pub async fn write_vectored(
        &self,
        device: u16,
        offset_bytes: u64,
        bufs: Vec<SharedBuf>,
    ) -> IoResult<()> {
        self.child(device)?.write_vectored(offset_bytes, bufs).await
    }

    /// Reads the block behind `bp` and verifies it. The buffer holds `physical_bytes`. When
    /// the bytes do not verify, the top-level vdev that holds the block is asked for another
    /// copy ([`Stripe::reconstruct`]), and counts the copies that failed on their devices.
    ///
    /// # Errors
    /// [`BlockReadError::Checksum`] when the content does not verify and no other copy does
    /// (each bad copy counted on its device), [`BlockReadError::Io`] when the device fails.
    pub async fn read_block(&self, bp: &BlockPointer) -> Result<IoBuf, BlockReadError> {
        let Some(len) = addressed_len(bp) else {
            self.stats.checksum_errors.fetch_add(1, Ordering::Relaxed);
            return Err(BlockReadError::Checksum);
        };
        let buf = self.read(bp.device, bp.offset_bytes, len).await.map_err(block_read_error)?;
        if verifies(bp, &buf) {
            return Ok(buf);
        }
        // The node counts the copies that failed, on their devices: a leaf its only copy.
        let block = BlockCheck {
            offset_bytes: bp.offset_bytes,
            len_bytes: len,
            verify: &|b| verifies(bp, b),
        };
        match self.reconstruct(bp.device, block).await {
            Reconstruction::Healed(good) => Ok(good),
            Reconstruction::NoOtherCopy => Err(BlockReadError::Checksum),
        }
    }

    /// Reconstruct and heal (see [`Vdev::reconstruct`]): asks top-level vdev `device` for a
    /// copy of `len_bytes` at `offset_bytes` that passes `verify`, after a read of that range
    /// failed it. The stripe keeps no copy of its own.
    pub async fn reconstruct(&self, device: u16, block: BlockCheck<'_>) -> Reconstruction {
        match self.child(device) {
            Ok(child) => child.reconstruct(block).await,
            Err(_) => Reconstruction::NoOtherCopy,
        }
    }

    /// Scrubs the block behind `bp` on the top-level vdev that holds it ([`Vdev::scrub`]).
    ///
    /// # Errors
    /// [`BlockReadError::Checksum`] for a malformed pointer, [`BlockReadError::Io`] when a
    /// device error left no copy to check.
    pub async fn scrub_block(&self, bp: &BlockPointer) -> Result<ScrubOutcome, BlockReadError> {
        let len = addressed_len(bp).ok_or(BlockReadError::Checksum)?;
        let child = self.child(bp.device).map_err(|_| BlockReadError::Checksum)?;
        let block = BlockCheck {
            offset_bytes: bp.offset_bytes,
            len_bytes: len,
            verify: &|b| verifies(bp, b),
        };
        child.scrub(block).await.map_err(block_read_error)
    }

    /// Deallocates `len_bytes` at `offset_bytes` of top-level vdev `device`.
    ///
    /// # Errors
    /// The device's error, or `InvalidInput` for an unknown device index.
    pub async fn trim(&self, device: u16, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
        self.child(device)?.trim(offset_bytes, len_bytes).await
    }

    /// Flushes every top-level vdev, concurrently.
    ///
    /// # Errors
    /// The first device error.
    pub async fn flush_all(&self) -> IoResult<()> {
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        let results = join_all(self.children.iter().map(Vdev::flush).collect()).await;
        results.into_iter().collect()
    }

    /// Flushes top-level vdev `device`.
    ///
    /// # Errors
    /// The device's error.
    pub async fn flush(&self, device: u16) -> IoResult<()> {
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.child(device)?.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use drivers::blockdev::memory::MemoryDevice;
    use drivers::blockdev::BlockDevice;
    use drivers::buffer::IoBuf;
    use drivers::error::IoError;
    use drivers::executor::{Reactor, ReactorConfig};

    use super::Stripe;
    use crate::block_pointer::{BlockPointer, CHECKSUM_XXH3_128};
    use crate::format::checksum;
    use crate::vdev::{BlockCheck, BlockReadError, Reconstruction, ScrubOutcome};

    fn reactor() -> Reactor {
        Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
            .expect("reactor")
    }

    /// Two memory devices of 1 MiB.
    fn two_devices() -> Vec<Arc<dyn BlockDevice>> {
        (0..2).map(|_| Arc::new(MemoryDevice::new(1 << 20, 512)) as Arc<dyn BlockDevice>).collect()
    }

    #[test]
    fn routes_by_device_index_and_has_no_other_copy() {
        let reactor = reactor();
        let devices = two_devices();
        let stripe = Stripe::new(devices.clone());
        assert_eq!(stripe.leaves().count(), 2);
        assert!(Arc::ptr_eq(stripe.leaf(1).expect("leaf 1").device(), &devices[1]));
        reactor.block_on(async {
            let block = [5u8; 4096];
            let (res, _) = stripe.write(1, 8192, IoBuf::from_slice(&block)).await;
            res.expect("write");
            let bp = BlockPointer {
                offset_bytes: 8192,
                checksum: checksum(&block),
                logical_bytes: 4096,
                physical_bytes: 4096,
                device: 1,
                checksum_type: CHECKSUM_XXH3_128,
                ..BlockPointer::default()
            };
            assert_eq!(&stripe.read_block(&bp).await.expect("verified")[..], &block[..]);
            // The same offset of the other device holds zeros: a checksum error, counted
            // once, and the leaf has no other copy to offer.
            let elsewhere = BlockPointer { device: 0, ..bp };
            assert_eq!(stripe.read_block(&elsewhere).await.err(), Some(BlockReadError::Checksum));
            assert_eq!(stripe.stats.checksum_errors.load(Ordering::Relaxed), 1);
            let leaf_errors =
                |i: usize| stripe.leaf(i).expect("leaf").errors().checksum.load(Ordering::Relaxed);
            assert_eq!((leaf_errors(0), leaf_errors(1)), (1, 0), "counted on device 0 only");
            // A scrub checks the one copy: good on device 1, bad and unrepairable on 0.
            let good = stripe.scrub_block(&bp).await.expect("scrub");
            assert_eq!(good, ScrubOutcome { copies_checked: 1, ..ScrubOutcome::default() });
            let bad = stripe.scrub_block(&elsewhere).await.expect("scrub");
            assert!(bad.unrepairable && bad.bad_copies == 1 && bad.repaired_bytes == 0);
            assert_eq!(leaf_errors(0), 2);
            let block = BlockCheck { offset_bytes: 8192, len_bytes: 4096, verify: &|_| true };
            let other = stripe.reconstruct(0, block).await;
            assert!(matches!(other, Reconstruction::NoOtherCopy));
            assert_eq!(
                stripe.read(2, 0, 4096).await.err(),
                Some(IoError::InvalidInput(libc::ENXIO))
            );
            assert_eq!(stripe.stats.writes.load(Ordering::Relaxed), 1);
        });
    }

    /// No pool path trims today; the free path is to call [`Stripe::trim`] once a freed
    /// extent's txg is durable. The trim reaches the device of the child it names (through
    /// its node and leaf) and that range alone, which then reads back as zeros.
    #[test]
    fn trim_deallocates_the_range_on_the_named_device_only() {
        let reactor = reactor();
        let devices = two_devices();
        let stripe = Stripe::new(devices.clone());
        reactor.block_on(async {
            for device in 0..2 {
                let (res, _) = stripe.write(device, 0, IoBuf::from_slice(&[7u8; 16384])).await;
                res.expect("write");
            }
            stripe.trim(1, 4096, 8192).await.expect("trim");
            let trimmed = stripe.read(1, 0, 16384).await.expect("read");
            assert!(trimmed[..4096].iter().all(|b| *b == 7), "before the range");
            assert!(trimmed[4096..12288].iter().all(|b| *b == 0), "the range reads zeros");
            assert!(trimmed[12288..].iter().all(|b| *b == 7), "after the range");
            let other = stripe.read(0, 0, 16384).await.expect("read");
            assert!(other.iter().all(|b| *b == 7), "the other device is untouched");
            assert_eq!(stripe.trim(2, 0, 4096).await, Err(IoError::InvalidInput(libc::ENXIO)));
        });
    }
}
