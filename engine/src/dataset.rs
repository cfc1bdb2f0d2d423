//! Datasets: volumes (heads), snapshots and clones, and the directory that lists them
//! (docs/format.md §Datasets, §Directory).
//!
//! A dataset object is a [`DatasetPhys`] header followed by one [`PartitionRoot`] per
//! partition. A snapshot's roots never change; a head's are rewritten in every txg that
//! touched it. Blocks a head kills while a snapshot still holds them go to the head's
//! deadlist (an object of block pointers) instead of being freed.

use bytemuck::{Pod, Zeroable};

use crate::block_pointer::BlockPointer;
use crate::error::{PoolError, PoolResult};
use crate::format::{decode_name, encode_name};
use crate::partition::VolumeLayout;
use crate::record::{read_array, read_front, stored_enum};

/// "FERRDSET".
pub const DATASET_MAGIC: u64 = u64::from_le_bytes(*b"FERRDSET");

/// Longest dataset name (`volume` or `volume@snapshot`).
pub const NAME_BYTES: usize = 96;

stored_enum! {
    /// Kind of a dataset.
    pub enum DatasetKind: u32, from_u32 {
        /// A writable volume (possibly a clone).
        Volume = 1,
        /// A read-only snapshot of a volume.
        Snapshot = 2,
    }
}

/// Flag: the volume is thick (its whole size is reserved).
pub const DATASET_FLAG_THICK: u64 = 1;

/// Header of a dataset object, 512 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct DatasetPhys {
    /// [`DATASET_MAGIC`].
    pub magic: u64,
    /// Dataset id (unique in the pool, never reused).
    pub id: u64,
    /// For a snapshot: the volume it was taken of. 0 for a volume.
    pub parent_id: u64,
    /// For a clone: the snapshot it started from. 0 otherwise.
    pub origin_id: u64,
    /// [`DatasetKind`] as u32.
    pub kind: u32,
    /// Partitions of the volume.
    pub partition_count: u32,
    /// Data block size.
    pub volblock_bytes: u32,
    /// Logical block size.
    pub logical_block_bytes: u32,
    /// Stripe size of the partitioning.
    pub stripe_bytes: u64,
    /// Volume size.
    pub capacity_bytes: u64,
    /// Txg in which the dataset was created (a snapshot's point in time).
    pub creation_txg: u64,
    /// For a volume: txg of its newest snapshot (or its origin's); blocks born at or before it
    /// are shared and go to the deadlist when killed.
    pub prev_snap_txg: u64,
    /// Reservation of a thick volume.
    pub reservation_bytes: u64,
    /// `DATASET_FLAG_*`.
    pub flags: u64,
    /// The deadlist object (hole when empty).
    pub deadlist: BlockPointer,
    /// Name, zero padded.
    pub name: [u8; NAME_BYTES],
    /// `compression` property ([`crate::compress::Compression`] as u8); new writes follow it.
    pub compression: u8,
    /// `dedup` property ([`crate::ddt::DedupMode`] as u8); new writes follow it.
    pub dedup: u8,
    /// Why the volume stopped taking new dedup entries (`ddt::DEDUP_STOPPED_*`), 0 while it
    /// takes them; cleared when the `dedup` property is set.
    pub dedup_stopped: u8,
    /// Reserved, zero.
    pub reserved_props: [u8; 5],
    /// Logical bytes of the data blocks the dataset references (before compression).
    pub logical_bytes: u64,
    /// Stored bytes of the data blocks the dataset references (after compression, before
    /// dedup: a block referenced twice counts twice).
    pub physical_bytes: u64,
    /// Reserved, zero.
    pub reserved: [u64; 29],
}

const _: () = assert!(std::mem::size_of::<DatasetPhys>() == 512);

impl DatasetPhys {
    /// The volume layout recorded in the header.
    #[must_use]
    pub fn layout(&self) -> VolumeLayout {
        VolumeLayout {
            logical_block_bytes: self.logical_block_bytes,
            volblock_bytes: self.volblock_bytes,
            stripe_bytes: u32::try_from(self.stripe_bytes).unwrap_or(0),
            partition_count: self.partition_count,
            capacity_bytes: self.capacity_bytes,
        }
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> String {
        decode_name(&self.name)
    }
}

/// One partition's tree root, 128 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct PartitionRoot {
    /// Root of the tree.
    pub root: BlockPointer,
    /// Levels of indirect blocks.
    pub height: u64,
    /// Reserved, zero.
    pub reserved: [u64; 7],
}

const _: () = assert!(std::mem::size_of::<PartitionRoot>() == 128);

/// Encodes a dataset object.
#[must_use]
pub fn encode_dataset(header: &DatasetPhys, roots: &[PartitionRoot]) -> Vec<u8> {
    let mut out = bytemuck::bytes_of(header).to_vec();
    out.extend_from_slice(bytemuck::cast_slice(roots));
    out
}

/// Decodes and validates a dataset object.
///
/// # Errors
/// [`PoolError::Corrupt`] when the header or the roots do not make sense.
pub fn decode_dataset(bytes: &[u8]) -> PoolResult<(DatasetPhys, Vec<PartitionRoot>)> {
    let bad = |why: &str| PoolError::Corrupt(format!("dataset object: {why}"));
    let header: DatasetPhys = read_front(bytes).ok_or_else(|| bad("too short"))?;
    if header.magic != DATASET_MAGIC || DatasetKind::from_u32(header.kind).is_none() {
        return Err(bad("bad magic or kind"));
    }
    if crate::compress::Compression::from_u8(header.compression).is_none()
        || crate::ddt::DedupMode::from_u8(header.dedup).is_none()
    {
        return Err(bad("unknown compression or dedup property"));
    }
    if !header.layout().is_valid() {
        return Err(bad("invalid layout"));
    }
    let start = std::mem::size_of::<DatasetPhys>();
    let end = start + header.partition_count as usize * std::mem::size_of::<PartitionRoot>();
    let roots: Vec<PartitionRoot> =
        bytes.get(start..end).and_then(read_array).ok_or_else(|| bad("roots missing"))?;
    if roots.iter().any(|r| r.height == 0 || r.height > 8) {
        return Err(bad("tree height out of range"));
    }
    Ok((header, roots))
}

/// One directory entry, 192 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The dataset object.
    pub object: BlockPointer,
    /// Dataset id.
    pub id: u64,
    /// Parent id (see [`DatasetPhys::parent_id`]).
    pub parent_id: u64,
    /// [`DatasetKind`] as u32.
    pub kind: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Reserved, zero.
    pub reserved2: u64,
    /// Name, zero padded.
    pub name: [u8; NAME_BYTES],
}

const _: () = assert!(std::mem::size_of::<DirectoryEntry>() == 192);

/// Decodes a directory object.
///
/// # Errors
/// [`PoolError::Corrupt`] when the length is not a whole number of entries.
pub fn decode_directory(bytes: &[u8]) -> PoolResult<Vec<DirectoryEntry>> {
    read_array(bytes).ok_or_else(|| PoolError::Corrupt("directory length".into()))
}

/// The rule every name follows (pools, volumes, snapshots, target aliases), as stated in
/// errors and in docs/operations.md.
pub const NAME_RULE: &str = "names are 1 to 96 bytes of ASCII letters, digits, '_', '.', ':' \
     and '-', and do not start with '.'";

/// Checks one name against [`NAME_RULE`]. `what` names the kind of name in the message
/// ("pool", "volume", "snapshot", ...). Every name the operator gives ferrite goes through
/// here: the engine for datasets, ferrited's configuration for pools, targets and aliases.
///
/// # Errors
/// One line naming the offending name and stating the rule.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    let ok = !name.is_empty()
        && name.len() <= NAME_BYTES
        && !name.starts_with('.')
        && name.chars().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(format!("bad {what} name {name:?}: {NAME_RULE}"))
    }
}

/// Builds a name field for a volume (`volume`) or a snapshot (`volume@snapshot`): each part
/// follows [`NAME_RULE`] and the whole fits in [`NAME_BYTES`].
///
/// # Errors
/// [`PoolError::InvalidConfig`] with a line stating the rule.
pub fn name_field(name: &str) -> PoolResult<[u8; NAME_BYTES]> {
    match name.split_once('@') {
        Some((volume, snapshot)) => {
            check_name("volume", volume).map_err(PoolError::InvalidConfig)?;
            check_name("snapshot", snapshot).map_err(PoolError::InvalidConfig)?;
        }
        None => check_name("volume", name).map_err(PoolError::InvalidConfig)?,
    }
    encode_name(name).ok_or_else(|| {
        PoolError::InvalidConfig(format!(
            "snapshot name {name:?} is {} bytes; VOLUME@SNAPSHOT is at most {NAME_BYTES} bytes",
            name.len()
        ))
    })
}

/// Decodes a deadlist object.
///
/// # Errors
/// [`PoolError::Corrupt`] when the length is not a whole number of pointers.
pub fn decode_deadlist(bytes: &[u8]) -> PoolResult<Vec<BlockPointer>> {
    read_array(bytes).ok_or_else(|| PoolError::Corrupt("deadlist length".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_round_trips() {
        let header = DatasetPhys {
            magic: DATASET_MAGIC,
            id: 3,
            kind: DatasetKind::Volume as u32,
            partition_count: 2,
            volblock_bytes: 4096,
            logical_block_bytes: 512,
            stripe_bytes: 1 << 20,
            capacity_bytes: 8 << 20,
            name: name_field("vol").expect("name"),
            ..Zeroable::zeroed()
        };
        let roots = vec![PartitionRoot { height: 1, ..Zeroable::zeroed() }; 2];
        let bytes = encode_dataset(&header, &roots);
        let (h, r) = decode_dataset(&bytes).expect("valid");
        assert_eq!(h, header);
        assert_eq!(r, roots);
        assert_eq!(h.name(), "vol");
        assert!(decode_dataset(&bytes[..600]).is_err());
    }

    #[test]
    fn names_follow_the_rule() {
        for good in ["vol", "a", "Vol_1.2:x-y", "iqn.2026-01.io.ferrite:t1", &"x".repeat(96)] {
            assert_eq!(check_name("volume", good), Ok(()), "{good:?}");
        }
        let long = "x".repeat(97);
        for bad in ["", ".hidden", "a b", "a\nb", "a\u{1b}[2Jb", "a/b", "a@b", "é", "a\0b", &long]
        {
            let err = check_name("volume", bad).expect_err(bad);
            assert!(err.contains(NAME_RULE), "{err}");
            assert!(!err.contains('\n') && !err.contains('\u{1b}'), "one clean line: {err:?}");
        }
    }

    #[test]
    fn name_fields_check_both_parts_and_the_whole() {
        assert!(name_field("vol").is_ok());
        assert!(name_field("vol@snap-1").is_ok());
        assert!(name_field("vol@").is_err());
        assert!(name_field("@snap").is_err());
        assert!(name_field("vol@sn\nap").is_err());
        assert!(name_field("v\u{1b}ol").is_err());
        assert!(name_field("vol@a@b").is_err());
        let too_long = format!("{}@{}", "v".repeat(60), "s".repeat(40));
        let err = name_field(&too_long).expect_err("over 96 bytes");
        assert!(err.to_string().contains("at most 96 bytes"), "{err}");
    }
}
