//! The kinds of node below the pool's stripe: a leaf (one device) and a mirror.

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoResult;

use super::{BlockCheck, BufResult, Leaf, Mirror, RaidZ, Reconstruction, ScrubOutcome};

/// A top-level vdev: one child of the pool's [`super::Stripe`], addressed by a block
/// pointer's device index. Offsets are the node's own address space.
///
/// Each kind implements the same set of methods and this enum forwards to them with a
/// `match`, so a new kind is a new variant and one arm per method. A mirror's children each
/// hold the whole address space; a RAID-Z group ([`RaidZ`]) spreads columns and parity across
/// its children.
pub enum Vdev {
    /// One device.
    Leaf(Leaf),
    /// 2 to 4 devices holding the same bytes at the same offsets.
    Mirror(Mirror),
    /// A RAID-Z group: rows of parity and data sectors across its leaves.
    RaidZ(RaidZ),
}

impl Vdev {
    /// The devices under this node, in configuration order.
    #[must_use]
    pub fn leaves(&self) -> &[Leaf] {
        match self {
            Vdev::Leaf(leaf) => leaf.leaves(),
            Vdev::Mirror(mirror) => mirror.leaves(),
            Vdev::RaidZ(raidz) => raidz.leaves(),
        }
    }

    /// Bytes of this node's address space a block of `physical_bytes` occupies: the same for a
    /// leaf and a mirror; more for RAID-Z (parity columns and padding). The allocator gives
    /// out, and frees, this many.
    #[must_use]
    pub fn allocated_bytes(&self, physical_bytes: u64) -> u64 {
        match self {
            Vdev::Leaf(_) => physical_bytes,
            Vdev::Mirror(_) => physical_bytes,
            Vdev::RaidZ(raidz) => raidz.allocated_bytes(physical_bytes),
        }
    }

    /// Reads `len_bytes` at `offset_bytes` into a new buffer.
    ///
    /// # Errors
    /// The device's error.
    pub async fn read(&self, offset_bytes: u64, len_bytes: usize) -> IoResult<IoBuf> {
        match self {
            Vdev::Leaf(leaf) => leaf.read(offset_bytes, len_bytes).await,
            Vdev::Mirror(mirror) => mirror.read(offset_bytes, len_bytes).await,
            Vdev::RaidZ(raidz) => raidz.read(offset_bytes, len_bytes).await,
        }
    }

    /// Reads `buf.len()` bytes at `offset_bytes` into `buf`, which comes back either way.
    ///
    /// # Errors
    /// The device's error.
    pub async fn read_into(&self, offset_bytes: u64, buf: IoBuf) -> BufResult {
        match self {
            Vdev::Leaf(leaf) => leaf.read_into(offset_bytes, buf).await,
            Vdev::Mirror(mirror) => mirror.read_into(offset_bytes, buf).await,
            Vdev::RaidZ(raidz) => raidz.read_into(offset_bytes, buf).await,
        }
    }

    /// Writes `buf` at `offset_bytes`, durable when it completes if `durable` is set.
    ///
    /// # Errors
    /// The device's error.
    pub async fn write(&self, offset_bytes: u64, buf: IoBuf, durable: bool) -> BufResult {
        match self {
            Vdev::Leaf(leaf) => leaf.write(offset_bytes, buf, durable).await,
            Vdev::Mirror(mirror) => mirror.write(offset_bytes, buf, durable).await,
            Vdev::RaidZ(raidz) => raidz.write(offset_bytes, buf, durable).await,
        }
    }

    /// True when a durable [`Vdev::write`] needs no flush after it.
    #[must_use]
    pub fn durable_writes(&self) -> bool {
        match self {
            Vdev::Leaf(leaf) => leaf.durable_writes(),
            Vdev::Mirror(mirror) => mirror.durable_writes(),
            Vdev::RaidZ(raidz) => raidz.durable_writes(),
        }
    }

    /// Writes `bufs` back to back at `offset_bytes` (a run the txg coalesced).
    ///
    /// # Errors
    /// The device's error.
    pub async fn write_vectored(&self, offset_bytes: u64, bufs: Vec<SharedBuf>) -> IoResult<()> {
        match self {
            Vdev::Leaf(leaf) => leaf.write_vectored(offset_bytes, bufs).await,
            Vdev::Mirror(mirror) => mirror.write_vectored(offset_bytes, bufs).await,
            Vdev::RaidZ(raidz) => raidz.write_vectored(offset_bytes, bufs).await,
        }
    }

    /// Makes every write completed before this call durable.
    ///
    /// # Errors
    /// The device's error.
    pub async fn flush(&self) -> IoResult<()> {
        match self {
            Vdev::Leaf(leaf) => leaf.flush().await,
            Vdev::Mirror(mirror) => mirror.flush().await,
            Vdev::RaidZ(raidz) => raidz.flush().await,
        }
    }

    /// Deallocates `len_bytes` at `offset_bytes`.
    ///
    /// # Errors
    /// The device's error.
    pub async fn trim(&self, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
        match self {
            Vdev::Leaf(leaf) => leaf.trim(offset_bytes, len_bytes).await,
            Vdev::Mirror(mirror) => mirror.trim(offset_bytes, len_bytes).await,
            Vdev::RaidZ(raidz) => raidz.trim(offset_bytes, len_bytes).await,
        }
    }

    /// Reconstruct and heal: called after a read of `len_bytes` at `offset_bytes` returned
    /// bytes that fail `verify`. A node with redundancy reads its other copies (a mirror's
    /// other children) or rebuilds the range (RAID-Z parity) until one passes `verify`,
    /// rewrites the copies that failed, and returns the good one. Each copy found bad is
    /// counted on its device ([`Leaf::count_checksum_error`]). A leaf has no other copy.
    pub async fn reconstruct(&self, block: BlockCheck<'_>) -> Reconstruction {
        match self {
            Vdev::Leaf(leaf) => leaf.reconstruct(block).await,
            Vdev::Mirror(mirror) => mirror.reconstruct(block).await,
            Vdev::RaidZ(raidz) => raidz.reconstruct(block).await,
        }
    }

    /// Scrubs one block of `len_bytes` at `offset_bytes`: reads every copy the node holds
    /// (every child of a mirror; every data and parity column of a RAID-Z stripe), checks
    /// each with `verify`, and rewrites the ones that fail from a good one.
    ///
    /// # Errors
    /// A device error that left no copy to check.
    pub async fn scrub(&self, block: BlockCheck<'_>) -> IoResult<ScrubOutcome> {
        match self {
            Vdev::Leaf(leaf) => leaf.scrub(block).await,
            Vdev::Mirror(mirror) => mirror.scrub(block).await,
            Vdev::RaidZ(raidz) => raidz.scrub(block).await,
        }
    }
}
