//! The pool root object: what an uberblock points at (docs/format.md §Pool root).

use bytemuck::{Pod, Zeroable};

use crate::block_pointer::BlockPointer;
use crate::error::{PoolError, PoolResult};
use crate::record::read_front;

/// "FERRROOT".
pub const POOL_ROOT_MAGIC: u64 = u64::from_le_bytes(*b"FERRROOT");

/// Largest number of intent-log chains.
pub const MAX_LOG_CHAINS: usize = 16;

/// Where one intent-log chain lives and where its live part starts, 64 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default)]
pub struct LogChainPhys {
    /// First byte of the chain's circular region.
    pub region_offset_bytes: u64,
    /// Length of the region.
    pub region_bytes: u64,
    /// Offset (inside the region) of the oldest log block that may hold records newer than
    /// this txg.
    pub head_offset_bytes: u64,
    /// Sequence number that block must carry.
    pub head_sequence: u64,
    /// Device holding the region.
    pub device: u16,
    /// Reserved, zero.
    pub reserved0: [u8; 6],
    /// Reserved, zero.
    pub reserved: [u64; 3],
}

const _: () = assert!(std::mem::size_of::<LogChainPhys>() == 64);

/// The pool root, 1536 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct PoolRootPhys {
    /// [`POOL_ROOT_MAGIC`].
    pub magic: u64,
    /// Txg this root belongs to.
    pub txg: u64,
    /// Next dataset id to hand out.
    pub next_dataset_id: u64,
    /// Next intent-log record sequence number.
    pub next_record_sequence: u64,
    /// Number of allocation groups (entries of the space-map table).
    pub ag_count: u32,
    /// Number of chains in `log_chains`.
    pub log_chain_count: u32,
    /// Percent of the pool kept free (over-provisioning reserve).
    pub reserve_percent: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// The directory object.
    pub directory: BlockPointer,
    /// The space-map table object (one block pointer per allocation group).
    pub space_map_table: BlockPointer,
    /// Intent-log chains.
    pub log_chains: [LogChainPhys; MAX_LOG_CHAINS],
    /// The dedup table's index object (hole while the table has never held an entry).
    pub ddt_index: BlockPointer,
    /// The current or last scrub (all zero: none on record).
    pub scan: ScanPhys,
    /// Reserved, zero.
    pub reserved: [u64; 18],
}

const _: () = assert!(std::mem::size_of::<PoolRootPhys>() == 1536);

/// [`ScanPhys::function`] of a scrub.
pub const SCAN_FUNCTION_SCRUB: u32 = 1;

/// The pool's current or last scan (scrub), 128 bytes in the pool root: written by every txg,
/// so a scan survives export, restart and power loss within one txg of where it was. It took
/// reserved words that every earlier writer of format 4 left zero, and zero means "none on
/// record", so it needs no format version (docs/format.md §Pool root).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default)]
pub struct ScanPhys {
    /// 0 none, [`SCAN_FUNCTION_SCRUB`]; other values (a later ferrite's) are ignored.
    pub function: u32,
    /// 1 running, 2 paused, 3 finished, 4 stopped.
    pub state: u32,
    /// Start, Unix seconds.
    pub start_unix_s: u64,
    /// End, Unix seconds (0 while running or paused).
    pub end_unix_s: u64,
    /// Scan time so far in milliseconds, pauses excluded.
    pub active_ms: u64,
    /// Bytes of blocks checked.
    pub examined_bytes: u64,
    /// Bytes to examine, taken at the start.
    pub to_examine_bytes: u64,
    /// Blocks checked.
    pub blocks: u64,
    /// Bad blocks found.
    pub errors: u64,
    /// Bytes rewritten with verified content.
    pub repaired_bytes: u64,
    /// Cursor: the dataset being walked (0: still in the pool's metadata).
    pub cursor_dataset: u64,
    /// Cursor: that dataset's creation txg.
    pub cursor_creation_txg: u64,
    /// Cursor: the partition being walked.
    pub cursor_partition: u32,
    /// Cursor: bit 0 set when the dataset is a head (a volume or clone), clear for a snapshot.
    pub cursor_flags: u32,
    /// Cursor: the partition's data blocks below this index are checked.
    pub cursor_block: u64,
    /// Reserved, zero.
    pub reserved: [u64; 3],
}

const _: () = assert!(std::mem::size_of::<ScanPhys>() == 128);

impl PoolRootPhys {
    /// Decodes and validates a pool root object.
    ///
    /// # Errors
    /// [`PoolError::Corrupt`] when it is too short or has a wrong magic or counts.
    pub fn decode(bytes: &[u8]) -> PoolResult<PoolRootPhys> {
        let root: PoolRootPhys =
            read_front(bytes).ok_or_else(|| PoolError::Corrupt("pool root too short".into()))?;
        if root.magic != POOL_ROOT_MAGIC || root.log_chain_count as usize > MAX_LOG_CHAINS {
            return Err(PoolError::Corrupt("pool root magic or log chain count".into()));
        }
        Ok(root)
    }

    /// The chains in use.
    #[must_use]
    pub fn chains(&self) -> &[LogChainPhys] {
        &self.log_chains[..self.log_chain_count as usize]
    }
}
