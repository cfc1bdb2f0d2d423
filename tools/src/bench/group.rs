//! `group:LAYOUT@BACKING`: a redundancy group of the pool's device layer (or a stripe of single
//! devices, the baseline) driven directly, without a pool, so that the cost of a mirror or a
//! RAID-Z group is measured against plain devices on the same backing.
//!
//! - LAYOUT: `single`, `stripeN` (N devices, 128 KiB chunks in turn), `mirrorN` (2 to 4),
//!   `raidzPxW` (parity P of 1 to 3, width W), with `-missingK` for K devices that fail every
//!   read and write (a degraded group: mirror reads fall over, RAID-Z rebuilds from parity).
//! - BACKING: `mem:SIZE` (a memory device of SIZE per member: the CPU cost) or
//!   `file:PREFIX:SIZE` (files `PREFIX.0`, `PREFIX.1`, … of SIZE, created and preallocated
//!   when missing, through io_uring with O_DIRECT: the disk).
//!
//! The target is cut into slots of the run's block size, each placed as the pool's allocator
//! would place a block of that size: at `slot × allocated size` of the group's address space
//! (the block's size for a mirror or a device; more for RAID-Z, whose stripes carry parity and
//! padding), so that every block is read with the layout it was written with. A run must use
//! one block size throughout (reads of data written with another block size read other
//! bytes). Writes are not durable (no FUA); nothing is checksummed here, as the pool's stripe
//! checks block pointers above this layer.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use drivers::blockdev::fault::{FaultConfig, FaultDevice};
use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::error::IoResult;
use engine::vdev::{DeviceStats, Leaf, Mirror, RaidZ, Stripe, Vdev};
use ferrite_tools::size::parse_bytes;

use super::target::{create_missing, OpenOptionsBench, ShardIo, Target, TargetInfo};
use super::BenchError;

/// The sector: unit of every group I/O.
const SECTOR_BYTES: u32 = 4096;
/// Chunk a `stripeN` layout moves to the next device after.
const STRIPE_CHUNK_BYTES: u64 = 128 * 1024;

/// The shape of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupLayout {
    /// One device.
    Single,
    /// N devices in turn, 128 KiB at a time.
    Stripe(usize),
    /// N devices holding the same bytes.
    Mirror(usize),
    /// RAID-Z of `parity` over `width` devices.
    RaidZ { parity: usize, width: usize },
}

impl GroupLayout {
    fn devices(self) -> usize {
        match self {
            GroupLayout::Single => 1,
            GroupLayout::Stripe(n) | GroupLayout::Mirror(n) => n,
            GroupLayout::RaidZ { width, .. } => width,
        }
    }

    /// Devices that may be missing with every byte still readable.
    fn tolerance(self) -> usize {
        match self {
            GroupLayout::Single | GroupLayout::Stripe(_) => 0,
            GroupLayout::Mirror(n) => n - 1,
            GroupLayout::RaidZ { parity, .. } => parity,
        }
    }
}

/// Where the members live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBacking {
    /// A memory device of this many bytes per member.
    Memory(u64),
    /// Files `PREFIX.i` of this many bytes.
    Files(PathBuf, u64),
}

/// A parsed `group:` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The shape.
    pub layout: GroupLayout,
    /// Members (the first ones) that fail every I/O.
    pub missing: usize,
    /// Where the members live.
    pub backing: GroupBacking,
}

fn count(text: &str, what: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("{what}: '{text}' is not a number"))
}

impl FromStr for GroupLayout {
    type Err = String;
    fn from_str(text: &str) -> Result<GroupLayout, String> {
        let layout = if text == "single" {
            GroupLayout::Single
        } else if let Some(n) = text.strip_prefix("stripe") {
            GroupLayout::Stripe(count(n, "stripe width")?)
        } else if let Some(n) = text.strip_prefix("mirror") {
            GroupLayout::Mirror(count(n, "mirror width")?)
        } else if let Some(rest) = text.strip_prefix("raidz") {
            let (p, w) = rest
                .split_once('x')
                .ok_or_else(|| format!("layout '{text}': RAID-Z is raidzPxW, e.g. raidz2x6"))?;
            GroupLayout::RaidZ { parity: count(p, "parity")?, width: count(w, "width")? }
        } else {
            return Err(format!("layout '{text}': expected single, stripeN, mirrorN or raidzPxW"));
        };
        if layout.devices() == 0 {
            return Err(format!("layout '{text}' has no devices"));
        }
        Ok(layout)
    }
}

impl std::fmt::Display for GroupLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupLayout::Single => write!(f, "single"),
            GroupLayout::Stripe(n) => write!(f, "stripe{n}"),
            GroupLayout::Mirror(n) => write!(f, "mirror{n}"),
            GroupLayout::RaidZ { parity, width } => write!(f, "raidz{parity}x{width}"),
        }
    }
}

impl FromStr for GroupSpec {
    type Err = String;
    /// `LAYOUT[-missingK]@mem:SIZE` or `LAYOUT[-missingK]@file:PREFIX:SIZE` (after `group:`).
    fn from_str(text: &str) -> Result<GroupSpec, String> {
        let usage = || {
            format!(
                "target 'group:{text}': expected group:LAYOUT[-missingK]@mem:SIZE or \
                 group:LAYOUT[-missingK]@file:PREFIX:SIZE, e.g. group:raidz1x5@mem:256m"
            )
        };
        let (shape, backing) = text.split_once('@').ok_or_else(usage)?;
        let (layout, missing) = match shape.split_once("-missing") {
            Some((layout, k)) => (layout, count(k, "missing devices")?),
            None => (shape, 0),
        };
        let layout: GroupLayout = layout.parse()?;
        if missing > layout.tolerance() {
            return Err(format!(
                "target 'group:{text}': {layout} survives at most {} missing device(s)",
                layout.tolerance()
            ));
        }
        let size = |s: &str| match parse_bytes(s) {
            Ok(0) | Err(_) => Err(usage()),
            Ok(n) => Ok(n),
        };
        let backing = if let Some(s) = backing.strip_prefix("mem:") {
            GroupBacking::Memory(size(s)?)
        } else if let Some(rest) = backing.strip_prefix("file:") {
            let (prefix, s) = rest.rsplit_once(':').ok_or_else(usage)?;
            if prefix.is_empty() {
                return Err(usage());
            }
            GroupBacking::Files(PathBuf::from(prefix), size(s)?)
        } else {
            return Err(usage());
        };
        Ok(GroupSpec { layout, missing, backing })
    }
}

impl std::fmt::Display for GroupSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.layout)?;
        if self.missing > 0 {
            write!(f, "-missing{}", self.missing)?;
        }
        match &self.backing {
            GroupBacking::Memory(size) => write!(f, "@mem:{size}"),
            GroupBacking::Files(prefix, size) => write!(f, "@file:{}:{size}", prefix.display()),
        }
    }
}

/// An opened group, shared by every shard.
pub struct GroupTarget {
    layout: GroupLayout,
    stripe: Arc<Stripe>,
    info: TargetInfo,
    /// The run's block size: one slot.
    slot_bytes: u64,
    /// Bytes of the group's address space a slot takes.
    allocated_bytes: u64,
}

/// A device that fails every read and write (a missing member).
fn missing(inner: Arc<dyn BlockDevice>) -> Arc<dyn BlockDevice> {
    Arc::new(FaultDevice::new(inner, FaultConfig::gone()))
}

impl GroupTarget {
    /// Opens (and creates, for files) the members and builds the group, cut into slots of
    /// `block_bytes` (the run's block size).
    ///
    /// # Errors
    /// [`BenchError::Open`] for a file, [`BenchError::Usage`] for a group the device layer
    /// refuses (its rule) or a block size that is not whole sectors.
    pub fn open(spec: &GroupSpec, block_bytes: usize) -> Result<GroupTarget, BenchError> {
        let slot_bytes = block_bytes as u64;
        if slot_bytes == 0 || !slot_bytes.is_multiple_of(u64::from(SECTOR_BYTES)) {
            return Err(BenchError::Usage(format!(
                "--bs {block_bytes}: a group: target takes whole {SECTOR_BYTES}-byte sectors"
            )));
        }
        let n = spec.layout.devices();
        let mut devices: Vec<Arc<dyn BlockDevice>> = Vec::with_capacity(n);
        let member_bytes = match &spec.backing {
            GroupBacking::Memory(size) => {
                for _ in 0..n {
                    devices.push(Arc::new(MemoryDevice::new(*size, 512)));
                }
                *size
            }
            GroupBacking::Files(prefix, size) => {
                for i in 0..n {
                    let path = PathBuf::from(format!("{}.{i}", prefix.display()));
                    let open_err = |source| BenchError::Open { path: path.clone(), source };
                    let options = OpenOptionsBench { direct: true, create_size_bytes: Some(*size) };
                    create_missing(&path, options).map_err(open_err)?;
                    let dev = UringDevice::open(&path)
                        .map_err(|e| open_err(std::io::Error::other(e.to_string())))?;
                    devices.push(Arc::new(dev));
                }
                *size
            }
        };
        let member_bytes = member_bytes - member_bytes % STRIPE_CHUNK_BYTES;
        for dev in devices.iter_mut().take(spec.missing) {
            *dev = missing(Arc::clone(dev));
        }
        let stats = Arc::new(DeviceStats::default());
        let leaves = || {
            devices.iter().map(|d| Leaf::new(Arc::clone(d), Arc::clone(&stats))).collect::<Vec<_>>()
        };
        let (stripe, size_bytes) = match spec.layout {
            GroupLayout::Single | GroupLayout::Stripe(_) => {
                (Stripe::new(devices.clone()), member_bytes * n as u64)
            }
            GroupLayout::Mirror(_) => {
                let mirror = Mirror::new(leaves()).map_err(BenchError::Usage)?;
                (
                    Stripe::from_children(vec![Vdev::Mirror(mirror)], Arc::clone(&stats)),
                    member_bytes,
                )
            }
            GroupLayout::RaidZ { parity, .. } => {
                let raidz =
                    RaidZ::new(leaves(), parity).map_err(|e| BenchError::Usage(e.to_string()))?;
                let stripe = Stripe::from_children(vec![Vdev::RaidZ(raidz)], Arc::clone(&stats));
                (stripe, member_bytes * n as u64)
            }
        };
        let allocated_bytes = match spec.layout {
            GroupLayout::Single | GroupLayout::Stripe(_) => slot_bytes,
            _ => stripe.child(0).map_or(slot_bytes, |group| group.allocated_bytes(slot_bytes)),
        };
        let slots = size_bytes / allocated_bytes;
        let logical_block_bytes = u32::try_from(slot_bytes).unwrap_or(SECTOR_BYTES);
        let info = TargetInfo { size_bytes: slots * slot_bytes, logical_block_bytes };
        Ok(GroupTarget {
            layout: spec.layout,
            stripe: Arc::new(stripe),
            info,
            slot_bytes,
            allocated_bytes,
        })
    }
}

impl Target for GroupTarget {
    type Shard = GroupShard;

    fn info(&self) -> TargetInfo {
        self.info
    }

    fn attach(&self) -> Result<GroupShard, BenchError> {
        Ok(GroupShard {
            layout: self.layout,
            stripe: Arc::clone(&self.stripe),
            slot_bytes: self.slot_bytes,
            allocated_bytes: self.allocated_bytes,
        })
    }
}

/// A shard's handle on a [`GroupTarget`].
pub struct GroupShard {
    layout: GroupLayout,
    stripe: Arc<Stripe>,
    slot_bytes: u64,
    allocated_bytes: u64,
}

impl GroupShard {
    /// The top-level vdev and its offset for a target offset: the slot's place in the group's
    /// address space, and for a stripe the device its chunk is on.
    fn place(&self, offset_bytes: u64) -> (u16, u64) {
        let slot = offset_bytes / self.slot_bytes;
        let offset_bytes = slot * self.allocated_bytes + offset_bytes % self.slot_bytes;
        match self.layout {
            GroupLayout::Stripe(n) => {
                let chunk = offset_bytes / STRIPE_CHUNK_BYTES;
                let device = u16::try_from(chunk % n as u64).unwrap_or(0);
                let within = offset_bytes % STRIPE_CHUNK_BYTES;
                (device, chunk / n as u64 * STRIPE_CHUNK_BYTES + within)
            }
            _ => (0, offset_bytes),
        }
    }
}

impl ShardIo for GroupShard {
    async fn read(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let (device, offset) = self.place(offset_bytes);
        self.stripe.read_into(device, offset, buf).await
    }

    async fn write(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let (device, offset) = self.place(offset_bytes);
        self.stripe.write(device, offset, buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layouts_and_backings_and_names_the_rule_broken() {
        let spec: GroupSpec = "raidz2x6-missing2@file:/var/tmp/g:1g".parse().expect("valid");
        assert_eq!(spec.layout, GroupLayout::RaidZ { parity: 2, width: 6 });
        assert_eq!(spec.missing, 2);
        assert_eq!(spec.backing, GroupBacking::Files(PathBuf::from("/var/tmp/g"), 1 << 30));
        assert_eq!(spec.to_string(), "raidz2x6-missing2@file:/var/tmp/g:1073741824");
        for (text, layout) in [
            ("single@mem:64m", GroupLayout::Single),
            ("stripe4@mem:64m", GroupLayout::Stripe(4)),
            ("mirror2@mem:64m", GroupLayout::Mirror(2)),
        ] {
            assert_eq!(text.parse::<GroupSpec>().map(|s| s.layout), Ok(layout), "{text}");
        }
        for (text, says) in [
            ("mirror2-missing2@mem:64m", "at most 1 missing"),
            ("single-missing1@mem:64m", "at most 0 missing"),
            ("raidz2@mem:64m", "raidzPxW"),
            ("mirror2", "expected group:LAYOUT"),
            ("mirror2@mem:0", "expected group:LAYOUT"),
            ("cube3@mem:64m", "expected single"),
        ] {
            let err = text.parse::<GroupSpec>().expect_err("must fail");
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
