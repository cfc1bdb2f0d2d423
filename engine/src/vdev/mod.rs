//! The vdev layer: the tree of virtual devices every pool I/O goes through.
//!
//! ```text
//! Stripe (the pool's top level)        addressed by a DVA: (device index, offset)
//!  ├─ Vdev::Leaf  device 0 (data)       one device; offsets are the device's own
//!  ├─ Vdev::Mirror (data)               2 to 4 children, each the whole address space
//!  │   ├─ Leaf  device 1                 at the same offsets as the others
//!  │   └─ Leaf  device 2
//!  ├─ Vdev::RaidZ (data)                rows of parity and data sectors across its leaves
//!  │   ├─ Leaf  device 3
//!  │   ├─ Leaf  device 4
//!  │   └─ Leaf  device 5
//!  └─ Vdev::Leaf  device 6 (log)
//! ```
//!
//! - [`Stripe`] is the root. Its children are the pool's top-level vdevs, in pool-configuration
//!   order; a block pointer's `device` field selects one, and the child maps the pointer's
//!   offset onto its devices. The stripe holds no data itself: the allocator spreads blocks
//!   across the data children, and the log device (when there is one) is a child too, which
//!   the allocator never gives out.
//! - [`Vdev`] is a node below the root, an enum of the node kinds, each implementing the same
//!   methods (read, write, vectored write, flush, trim, [`Vdev::reconstruct`], scrub,
//!   leaves): [`Vdev::Leaf`] ([`Leaf`]: one device), [`Vdev::Mirror`] ([`Mirror`]: 2 to
//!   4 leaves; writes go to every ONLINE child, reads to one, round-robin, falling over to
//!   the next on a device error; a child whose write fails is FAULTED ([`ChildState`]) and
//!   the mirror serves DEGRADED from the others) and [`Vdev::RaidZ`] ([`RaidZ`]: RAID-Z1/2/3
//!   over 3 to 16 leaves, [`raidz`]; its layout is in docs/format.md, "RAID-Z layout"; a
//!   column whose device fails is rebuilt from parity). Pools are not yet built with
//!   mirrors or RAID-Z groups: that needs the format change that records a top-level vdev's
//!   kind in the labels ([`Stripe::from_children`] takes nodes built by the caller).
//!   No pool path trims yet: [`Stripe::trim`] is where freeing an extent will deallocate it
//!   on its devices once its txg is durable.
//! - [`Leaf`] is the only node that talks to a device, and counts every device request in the
//!   pool's [`DeviceStats`] and its failures in its own [`LeafErrors`] (the READ, WRITE and
//!   CKSUM columns of `pool status`).
//! - [`Vdev::scrub`] reads and checks every copy of one block (for RAID-Z every column and
//!   parity) and rewrites the bad ones from a good one; [`Stripe::scrub_block`] is the pool's
//!   entry for one block pointer.
//!
//! The levels are typed (root → top-level node → leaf) rather than one recursive node type,
//! so a block I/O is a chain of ordinary `async fn`s: no boxed future, no allocation and no
//! dynamic dispatch is added on the way down to the device's own [`BlockDevice`] call. A
//! mirror's fan-out is the exception: it joins its children's I/Os (one boxed future each),
//! and a plain write gives each child after the first its own copy of the buffer.
//!
//! Labels and uberblock rings are per device and are read and written on the leaves
//! ([`Stripe::leaf`]); everything addressed by a DVA goes through [`Stripe`].
//!
//! Every metadata and data read goes through [`Stripe::read_block`], which checks the block's
//! checksum against its pointer before anyone sees the bytes, counts failures, and asks the
//! node that holds the block for another copy ([`Stripe::reconstruct`]): the place where a
//! mirror reads every other child's copy (a RAID-Z group rebuilds from parity, trying which
//! columns are bad) and rewrites the bad copies. Leaves and the stripe have no other copy and
//! say so.
//!
//! [`BlockDevice`]: drivers::blockdev::BlockDevice

mod leaf;
mod mirror;
mod node;
pub mod raidz;
#[cfg(test)]
mod sim;
mod stripe;

use std::sync::atomic::AtomicU64;

use drivers::buffer::IoBuf;
use drivers::error::{IoError, IoResult};

use crate::block_pointer::BlockPointer;
use crate::format::checksum;

pub use leaf::{Leaf, LeafErrors};
pub use mirror::{ChildState, Mirror, MIRROR_MAX_CHILDREN, MIRROR_MIN_CHILDREN};
pub use node::Vdev;
pub use raidz::{RaidZ, RaidZConfigError};
pub use stripe::Stripe;

/// What an I/O that hands its buffer back returns: its result, and the buffer either way.
pub type BufResult = (IoResult<()>, IoBuf);

/// True when `stored` matches the checksum `bp` carries (xxh3-128, or the BLAKE3 fingerprint
/// of a deduplicated block).
#[must_use]
pub fn verifies(bp: &BlockPointer, stored: &[u8]) -> bool {
    if bp.checksum_type == crate::ddt::CHECKSUM_BLAKE3_192 {
        crate::ddt::fingerprint(bp.compression, bp.logical_bytes, stored)
            == crate::ddt::bp_fingerprint(bp)
    } else {
        checksum(stored) == bp.checksum
    }
}

/// Why a verified read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReadError {
    /// The device failed.
    Io(IoError),
    /// The bytes did not match the pointer's checksum (or the pointer is malformed).
    Checksum,
}

/// What a node answers when asked for another copy of a range whose read failed its check
/// ([`Vdev::reconstruct`]).
#[derive(Debug)]
pub enum Reconstruction {
    /// A copy that passes the check, read from another child or rebuilt from parity; the node
    /// has rewritten the copies that failed (healed them). [`RaidZ::reconstruct`] returns it.
    Healed(IoBuf),
    /// The node holds no other copy (a leaf, or a stripe over leaves), or none of its copies
    /// passes the check (a mirror whose every ONLINE copy is bad): the block is lost.
    NoOtherCopy,
}

/// One block of a node's address space and the check its content must pass: what
/// [`Vdev::reconstruct`] and [`Vdev::scrub`] work on.
#[derive(Clone, Copy)]
pub struct BlockCheck<'a> {
    /// Where the block starts in the node's address space.
    pub offset_bytes: u64,
    /// Its physical size.
    pub len_bytes: usize,
    /// True for content that matches the block's pointer.
    pub verify: &'a dyn Fn(&[u8]) -> bool,
}

impl BlockCheck<'_> {
    /// True when `bytes` pass the block's check.
    #[must_use]
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        (self.verify)(bytes)
    }
}

/// What scrubbing one block found ([`Vdev::scrub`]): every copy (a mirror's children) or every
/// column and parity (RAID-Z) is read and checked, and the bad ones are rewritten from a good
/// one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubOutcome {
    /// Copies (or, for RAID-Z, whole stripes checked with their parity) read and checked.
    pub copies_checked: u32,
    /// Copies (columns) that did not verify or could not be read.
    pub bad_copies: u32,
    /// Bytes rewritten with verified content.
    pub repaired_bytes: u64,
    /// No copy verified and no rebuild did: the block is lost on this node.
    pub unrepairable: bool,
}

/// Counters of the device layer, shared by the tree's nodes (each leaf counts its device
/// requests here).
#[derive(Debug, Default)]
pub struct DeviceStats {
    /// Blocks whose checksum did not verify on read.
    pub checksum_errors: AtomicU64,
    /// Device reads that failed.
    pub read_errors: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// Device write requests.
    pub writes: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Device flushes.
    pub flushes: AtomicU64,
}
