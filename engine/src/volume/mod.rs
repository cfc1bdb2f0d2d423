//! Pool volumes: the data path (read, write, unmap, write-zeroes, flush, compare-and-write)
//! over per-partition state, implementing [`BlockVolume`].
//!
//! A write lands in its partition's open dirty set under that partition's lock (a sub-block
//! write first reads the old block, then merges under the lock, retrying if the block changed
//! meanwhile — so a torn block is never exposed). It is made durable by the next txg sync, or
//! at once through the intent log when it is FUA or the write cache is off. Reads look at the
//! open and syncing dirty sets, then walk the partition's tree through the cache, verifying
//! every block they read.
//!
//! This module holds the handle and its shared helpers, and implements [`BlockVolume`]; the
//! volume's shared state is in `shared.rs`, reads in `read.rs`, writes in `write.rs`, unmap,
//! write-zeroes and WRITE SAME in `fill.rs`, COMPARE AND WRITE in `compare.rs`, GET LBA STATUS
//! in `status.rs`, and intent-log replay in `replay.rs`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoError;
use drivers::LocalBoxFuture;

use crate::block_pointer::BlockPointer;
use crate::block_volume::{
    check_range, owned_or_copied, BlockVolume, CompareOutcome, LbaStatus, VolResult, VolumeError,
    VolumeGeometry,
};
use crate::copy_stats::{self, CopyPath};
use crate::partition::{BlockAddress, BlockData, DirtyBlock, VolumeLayout};
use crate::pool::Pool;
use crate::route::Route;
use crate::units::{BlockCount, Lba, ShardId, VolumeBlock};

mod compare;
mod fill;
mod read;
mod replay;
mod shared;
mod status;
mod write;

pub use shared::{DedupState, VolumeShared};

/// Content of one data block as a reader sees it.
#[derive(Debug, Clone)]
enum Content {
    Zero,
    Dirty(Arc<BlockData>),
    Clean(SharedBuf),
}

impl Content {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Content::Zero => None,
            Content::Dirty(d) => Some(&d.bytes[..]),
            Content::Clean(c) => Some(&c[..]),
        }
    }
}

/// Where a block's content came from (to detect a change before a merge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Dirty,
    Root(BlockPointer),
}

/// A handle to a pool volume, implementing [`BlockVolume`]. Cheap to clone.
#[derive(Clone)]
pub struct PoolVolume {
    pool: Arc<Pool>,
    shared: Arc<VolumeShared>,
}

impl std::fmt::Debug for PoolVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolVolume").field("id", &self.shared.id).finish()
    }
}

fn io_to_volume(err: IoError, lba: Lba) -> VolumeError {
    match err {
        IoError::Medium(_) | IoError::Corrupt => VolumeError::Medium { lba },
        IoError::NoSpace => VolumeError::NoSpace,
        other => VolumeError::Io(other),
    }
}

fn merge(base: Option<&[u8]>, volblock: usize, offset: usize, data: &[u8]) -> DirtyBlock {
    // A read-modify-write is an inherent copy: the old block, then the new bytes into it.
    let mut bytes = IoBuf::zeroed(volblock);
    if let Some(b) = base {
        bytes.copy_from_slice(b);
        copy_stats::record(CopyPath::VolumeWrite, b.len());
    }
    bytes[offset..offset + data.len()].copy_from_slice(data);
    copy_stats::record(CopyPath::VolumeWrite, data.len());
    block_of(SharedBuf::new(bytes))
}

/// A whole block received in `bytes`: kept by reference (and checksummed in place) when its
/// memory is aligned for the direct I/O of the sync; copied into a buffer of its own (a
/// counted copy) otherwise.
fn whole_block(bytes: &SharedBuf) -> DirtyBlock {
    if bytes.is_aligned() {
        return block_of(bytes.clone());
    }
    copy_stats::record(CopyPath::VolumeWrite, bytes.len());
    block_of(SharedBuf::new(IoBuf::from_slice(bytes)))
}

fn block_of(bytes: SharedBuf) -> DirtyBlock {
    if bytes.iter().all(|b| *b == 0) {
        DirtyBlock::Zero
    } else {
        DirtyBlock::Data(Arc::new(BlockData::new(bytes)))
    }
}

/// One piece of a request inside one data block.
#[derive(Debug, Clone, Copy)]
struct Piece {
    addr: BlockAddress,
    /// Offset inside the block.
    block_offset: usize,
    /// Offset inside the request.
    request_offset: usize,
    len: usize,
    /// First LBA of the piece (for error reports).
    lba: Lba,
}

/// Pieces of a request by owning shard: (shard, indices of its pieces in request order).
type OwnerGroups = Vec<(ShardId, Vec<usize>)>;

impl PoolVolume {
    pub(crate) fn new(pool: Arc<Pool>, shared: Arc<VolumeShared>) -> PoolVolume {
        PoolVolume { pool, shared }
    }

    /// Dataset id.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The state every handle of the volume shares.
    #[must_use]
    pub fn shared(&self) -> &Arc<VolumeShared> {
        &self.shared
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Shape of the volume.
    #[must_use]
    pub fn layout(&self) -> VolumeLayout {
        self.shared.current_layout()
    }

    fn check(&self, lba: Lba, len_bytes: usize) -> VolResult<()> {
        if self.shared.destroyed.load(Ordering::SeqCst) || self.pool.check_live().is_err() {
            return Err(VolumeError::Io(IoError::NotFound));
        }
        let l = self.shared.layout.logical_block_bytes as usize;
        if !len_bytes.is_multiple_of(l) {
            return Err(VolumeError::BadLength);
        }
        let capacity_blocks = self.shared.capacity_bytes.load(Ordering::SeqCst) / l as u64;
        check_range(capacity_blocks, lba, BlockCount::new((len_bytes / l) as u64))
    }

    fn pieces(&self, lba: Lba, len_bytes: usize) -> Vec<Piece> {
        let layout = &self.shared.layout;
        let l = u64::from(layout.logical_block_bytes);
        let v = u64::from(layout.volblock_bytes);
        let start = lba.offset_bytes(l);
        let end = start + len_bytes as u64;
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let block = VolumeBlock::new(pos / v);
            let in_block = pos % v;
            let n = (v - in_block).min(end - pos);
            out.push(Piece {
                addr: layout.address(block),
                block_offset: in_block as usize,
                request_offset: (pos - start) as usize,
                len: n as usize,
                lba: Lba::new(pos / l),
            });
            pos += n;
        }
        out
    }

    /// Pieces grouped by the shard that owns their partition (indices into `pieces`, in
    /// request order), when some belong to another shard that serves this one's set.
    fn owners(&self, pieces: &[Piece]) -> Option<(Route, OwnerGroups)> {
        if !self.pool.tunables.write_handoff {
            return None;
        }
        let route = Route::current()?;
        let mut groups: OwnerGroups = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let owner = route.partition_owner(self.shared.id, p.addr.partition);
            let owner = if route.is_remote(owner) { owner } else { route.here() };
            match groups.iter_mut().find(|(o, _)| *o == owner) {
                Some((_, members)) => members.push(i),
                None => groups.push((owner, vec![i])),
            }
        }
        groups.iter().any(|(o, _)| *o != route.here()).then_some((route, groups))
    }

    fn durable_now(&self, fua: bool) -> bool {
        fua || !self.shared.write_cache.load(Ordering::Relaxed)
    }
}

impl BlockVolume for PoolVolume {
    fn geometry(&self) -> VolumeGeometry {
        let layout = self.shared.current_layout();
        VolumeGeometry {
            logical_block_bytes: layout.logical_block_bytes,
            physical_block_bytes: layout.volblock_bytes.min(4096).max(layout.logical_block_bytes),
            capacity_blocks: layout.capacity_bytes / u64::from(layout.logical_block_bytes),
            thin_provisioned: true,
            unmapped_reads_zero: true,
        }
    }

    fn read(&self, lba: Lba, mut buf: IoBuf) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            let res = self.read_into(lba, &mut buf).await;
            (res, buf)
        })
    }

    fn write(&self, lba: Lba, buf: IoBuf, fua: bool) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            let shared = SharedBuf::new(buf);
            let res = self.write_from(lba, &shared, fua).await;
            // The caller gets its buffer back; when dirty blocks still reference it, that
            // takes a copy (callers that hand the buffer over use `write_shared`).
            (res, owned_or_copied(shared))
        })
    }

    fn write_shared(
        &self,
        lba: Lba,
        buf: SharedBuf,
        fua: bool,
    ) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.write_from(lba, &buf, fua).await })
    }

    fn read_segments(
        &self,
        lba: Lba,
        len_bytes: usize,
    ) -> LocalBoxFuture<'_, VolResult<Vec<SharedBuf>>> {
        Box::pin(self.read_shared(lba, len_bytes))
    }

    fn unmap(&self, lba: Lba, blocks: BlockCount) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.zero_range(lba, blocks, self.durable_now(false)).await })
    }

    fn write_zeroes(&self, lba: Lba, blocks: BlockCount) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.zero_range(lba, blocks, self.durable_now(false)).await })
    }

    fn write_same(
        &self,
        lba: Lba,
        blocks: BlockCount,
        block: IoBuf,
    ) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            let res = self.fill_range(lba, blocks, Some(&block), self.durable_now(false)).await;
            (res, block)
        })
    }

    fn flush(&self) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move {
            if self.shared.destroyed.load(Ordering::SeqCst) {
                return Err(VolumeError::Io(IoError::NotFound));
            }
            self.pool.flush_async_writes().await.map_err(VolumeError::from)
        })
    }

    fn compare_and_write(
        &self,
        lba: Lba,
        compare: IoBuf,
        write: IoBuf,
        fua: bool,
    ) -> LocalBoxFuture<'_, VolResult<CompareOutcome>> {
        Box::pin(async move {
            // A compare-and-write inside one other shard's partitions runs there whole.
            if compare.len() == write.len() && self.check(lba, compare.len()).is_ok() {
                let pieces = self.pieces(lba, compare.len());
                if let Some((route, groups)) = self.owners(&pieces) {
                    if let [(owner, _)] = groups[..] {
                        let volume = self.clone();
                        return route
                            .run_on(owner, move || async move {
                                volume.compare_and_write_impl(lba, &compare, &write, fua).await
                            })
                            .await
                            .unwrap_or(Err(VolumeError::Io(IoError::Canceled)));
                    }
                }
            }
            self.compare_and_write_impl(lba, &compare, &write, fua).await
        })
    }

    fn lba_status(&self, lba: Lba) -> LocalBoxFuture<'_, VolResult<LbaStatus>> {
        Box::pin(async move { self.status(lba).await })
    }

    fn set_write_cache(&self, enabled: bool) {
        self.shared.write_cache.store(enabled, Ordering::SeqCst);
    }

    fn write_cache(&self) -> bool {
        self.shared.write_cache.load(Ordering::SeqCst)
    }
}
