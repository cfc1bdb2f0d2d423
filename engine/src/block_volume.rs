//! The narrow volume interface the SCSI layer uses (DESIGN §1).
//!
//! Methods return `!Send` futures: they run on the calling shard's reactor. A volume object
//! itself is `Send + Sync` and may be shared by connections on every shard.

use std::fmt;

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoError;
use drivers::LocalBoxFuture;

use crate::units::{BlockCount, Lba};

/// Fixed shape of a volume as a SCSI logical unit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeGeometry {
    /// Logical block size: 512 or 4096.
    pub logical_block_bytes: u32,
    /// Physical block size: equal to the logical size, or 4096 over 512 logical (512e).
    pub physical_block_bytes: u32,
    /// Number of logical blocks.
    pub capacity_blocks: u64,
    /// The volume can deallocate blocks (UNMAP, WRITE SAME with UNMAP).
    pub thin_provisioned: bool,
    /// Deallocated blocks read back as zeros (LBPRZ).
    pub unmapped_reads_zero: bool,
}

impl VolumeGeometry {
    /// Capacity in bytes.
    #[must_use]
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_blocks * u64::from(self.logical_block_bytes)
    }
}

/// Why a volume operation failed. The SCSI layer maps each to sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeError {
    /// The LBA range lies (partly) past the end of the volume.
    OutOfRange,
    /// A block failed its checksum or the device reported a medium error at this LBA.
    Medium { lba: Lba },
    /// The pool has no space for the write (space allocation failed).
    NoSpace,
    /// The buffer length is not a whole number of blocks or does not match the request.
    BadLength,
    /// The volume is read-only (a snapshot).
    ReadOnly,
    /// A device error that is not a medium error.
    Io(IoError),
}

impl fmt::Display for VolumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeError::OutOfRange => write!(f, "LBA range out of range"),
            VolumeError::Medium { lba } => write!(f, "unrecovered read error at LBA {lba}"),
            VolumeError::NoSpace => write!(f, "no space left in pool"),
            VolumeError::BadLength => write!(f, "buffer length is not a whole number of blocks"),
            VolumeError::ReadOnly => write!(f, "volume is read-only"),
            VolumeError::Io(e) => write!(f, "device error: {e}"),
        }
    }
}

impl std::error::Error for VolumeError {}

impl From<IoError> for VolumeError {
    fn from(err: IoError) -> VolumeError {
        match err {
            IoError::NoSpace => VolumeError::NoSpace,
            other => VolumeError::Io(other),
        }
    }
}

/// Result alias for volume operations.
pub type VolResult<T> = Result<T, VolumeError>;

/// Outcome of COMPARE AND WRITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOutcome {
    /// The data matched and the write was applied.
    Written,
    /// The first differing byte, counted from the start of the compared range; nothing written.
    Miscompare { offset_bytes: u64 },
}

/// Provisioning state of a run of blocks (GET LBA STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaStatus {
    /// True when the blocks are mapped (hold data); false when deallocated.
    pub mapped: bool,
    /// Number of consecutive blocks from the queried LBA with the same state (at least 1).
    pub run_blocks: u64,
}

/// The volume interface. Buffers are whole logical blocks; an [`Lba`] counts logical blocks.
pub trait BlockVolume: Send + Sync {
    /// Shape of the volume.
    fn geometry(&self) -> VolumeGeometry;

    /// Reads `buf.len()` bytes starting at `lba` into `buf`.
    fn read(&self, lba: Lba, buf: IoBuf) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)>;

    /// Reads `len_bytes` (whole logical blocks) from `lba` as shared segments to be sent in
    /// order: a volume that holds blocks in memory hands out views of them instead of copying
    /// them into one buffer (DESIGN §3). The default reads into one new buffer.
    fn read_segments(
        &self,
        lba: Lba,
        len_bytes: usize,
    ) -> LocalBoxFuture<'_, VolResult<Vec<SharedBuf>>> {
        Box::pin(async move {
            let (res, buf) = self.read(lba, IoBuf::zeroed(len_bytes)).await;
            res.map(|()| vec![SharedBuf::new(buf)])
        })
    }

    /// Writes `buf` at `lba`. With `fua` the data is durable when the future completes.
    fn write(&self, lba: Lba, buf: IoBuf, fua: bool) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)>;

    /// Writes `buf` at `lba` and keeps it: a volume that stores blocks in memory references
    /// the buffer instead of copying it (DESIGN §3). The default writes the buffer through
    /// [`BlockVolume::write`], taking it back without a copy when `buf` is its only view.
    fn write_shared(
        &self,
        lba: Lba,
        buf: SharedBuf,
        fua: bool,
    ) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.write(lba, owned_or_copied(buf), fua).await.0 })
    }

    /// Deallocates `blocks` blocks from `lba`; they read as zeros afterwards when
    /// `unmapped_reads_zero`.
    fn unmap(&self, lba: Lba, blocks: BlockCount) -> LocalBoxFuture<'_, VolResult<()>>;

    /// Makes `blocks` blocks from `lba` read as zeros (may deallocate them).
    fn write_zeroes(&self, lba: Lba, blocks: BlockCount) -> LocalBoxFuture<'_, VolResult<()>>;

    /// Writes `block` (one logical block) into each of the `blocks` blocks from `lba` (WRITE
    /// SAME). The caller bounds `blocks`; this default writes one buffer of the repeated
    /// block, volumes that can log or store the pattern once override it.
    fn write_same(
        &self,
        lba: Lba,
        blocks: BlockCount,
        block: IoBuf,
    ) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            if block.is_empty() {
                return (Err(VolumeError::BadLength), block);
            }
            let Some(len) =
                usize::try_from(blocks.get()).ok().and_then(|n| n.checked_mul(block.len()))
            else {
                return (Err(VolumeError::OutOfRange), block);
            };
            let mut buf = IoBuf::zeroed(len);
            for chunk in buf.chunks_mut(block.len()) {
                chunk.copy_from_slice(&block);
            }
            crate::copy_stats::record(crate::copy_stats::CopyPath::VolumeWrite, len);
            let (res, _) = self.write(lba, buf, false).await;
            (res, block)
        })
    }

    /// Makes every completed write durable.
    fn flush(&self) -> LocalBoxFuture<'_, VolResult<()>>;

    /// Atomically compares `compare` with the data at `lba` and, when equal, writes `write`
    /// there. Atomic against every other write to the same blocks.
    fn compare_and_write(
        &self,
        lba: Lba,
        compare: IoBuf,
        write: IoBuf,
        fua: bool,
    ) -> LocalBoxFuture<'_, VolResult<CompareOutcome>>;

    /// Provisioning state at `lba`.
    fn lba_status(&self, lba: Lba) -> LocalBoxFuture<'_, VolResult<LbaStatus>>;

    /// Switches the volatile write cache (SCSI WCE). With it off every write is durable when
    /// it completes.
    fn set_write_cache(&self, enabled: bool);

    /// Current write-cache state.
    fn write_cache(&self) -> bool;
}

/// The buffer behind `buf` when `buf` is its only view, else a copy of the bytes (counted as a
/// [`CopyPath::VolumeWrite`](crate::copy_stats::CopyPath) copy).
#[must_use]
pub fn owned_or_copied(buf: SharedBuf) -> IoBuf {
    buf.into_iobuf().unwrap_or_else(|shared| {
        crate::copy_stats::record(crate::copy_stats::CopyPath::VolumeWrite, shared.len());
        IoBuf::from_slice(&shared)
    })
}

/// Checks that `[lba, lba + blocks)` lies inside a volume of `capacity_blocks`.
pub fn check_range(capacity_blocks: u64, lba: Lba, blocks: BlockCount) -> VolResult<()> {
    match lba.checked_add(blocks) {
        Some(end) if end.get() <= capacity_blocks => Ok(()),
        _ => Err(VolumeError::OutOfRange),
    }
}
