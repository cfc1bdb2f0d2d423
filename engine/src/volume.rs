//! Pool volumes: the data path (read, write, unmap, write-zeroes, flush, compare-and-write)
//! over per-partition state, implementing [`BlockVolume`].
//!
//! A write lands in its partition's open dirty set under that partition's lock (a sub-block
//! write first reads the old block, then merges under the lock, retrying if the block changed
//! meanwhile — so a torn block is never exposed). It is made durable by the next txg sync, or
//! at once through the intent log when it is FUA or the write cache is off. Reads look at the
//! open and syncing dirty sets, then walk the partition's tree through the cache, verifying
//! every block they read.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoError;
use drivers::LocalBoxFuture;

use crate::block_pointer::BlockPointer;
use crate::block_tree::{filled_in_range, height_for, lookup};
use crate::block_volume::{
    check_range, owned_or_copied, BlockVolume, CompareOutcome, LbaStatus, VolResult, VolumeError,
    VolumeGeometry,
};
use crate::cache::{BlockKey, CachedBlock};
use crate::compress::{decompress_block, Compression, COMPRESSION_OFF};
use crate::copy_stats::{self, CopyPath};
use crate::dataset::{DatasetPhys, PartitionRoot, DATASET_FLAG_THICK};
use crate::ddt::DedupMode;
use crate::join::join_all;
use crate::partition::{
    BlockAddress, BlockData, DirtyBlock, PartitionState, RangeChange, VolumeLayout,
};
use crate::pool::{lock, Pool};
use crate::route::Route;
use crate::vdev::BlockReadError;
use crate::zil::{LogOp, LogRecord};

/// Most blocks one GET LBA STATUS answer covers.
const STATUS_MAX_BLOCKS: u64 = 1 << 22;
/// Most single-block lookups one GET LBA STATUS answer makes in stripes of mixed state.
const STATUS_SINGLE_LOOKUPS: u32 = 1024;

/// In-memory state of a volume (head dataset), shared by every handle.
#[derive(Debug)]
pub struct VolumeShared {
    /// Dataset id.
    pub id: u64,
    /// Shape (its `capacity_bytes` is the size at open; see `capacity_bytes`).
    pub layout: VolumeLayout,
    /// Current size.
    pub capacity_bytes: AtomicU64,
    /// Thick volumes have their size reserved.
    pub thick: bool,
    /// Per-partition state.
    pub partitions: Vec<Mutex<PartitionState>>,
    /// SCSI WCE.
    pub write_cache: AtomicBool,
    /// Set when the volume is destroyed; every operation then fails.
    pub destroyed: AtomicBool,
    /// `compression` property ([`Compression`] as u8), read by each txg sync.
    pub compression: AtomicU8,
    /// `dedup` property ([`DedupMode`] as u8), read by each txg sync.
    pub dedup: AtomicU8,
    /// Dedup lookups and hits of this volume, and why it stopped taking new entries.
    pub dedup_state: DedupState,
}

/// A volume's dedup activity since import.
#[derive(Debug, Default)]
pub struct DedupState {
    /// Blocks looked up in the table.
    pub lookups: AtomicU64,
    /// Lookups that found their block (and, with `verify`, equal bytes).
    pub hits: AtomicU64,
    /// Set when the volume stopped taking new entries: the reason. Existing entries still
    /// serve hits. Cleared when the `dedup` property is set again.
    pub stopped: Mutex<Option<String>>,
}

impl VolumeShared {
    /// State for dataset `phys` with synced `roots`.
    #[must_use]
    pub fn new(phys: &DatasetPhys, roots: &[PartitionRoot], open_txg: u64) -> VolumeShared {
        let layout = phys.layout();
        let target = height_for(layout.blocks_per_partition());
        VolumeShared {
            id: phys.id,
            layout,
            capacity_bytes: AtomicU64::new(layout.capacity_bytes),
            thick: phys.flags & DATASET_FLAG_THICK != 0,
            partitions: roots
                .iter()
                .map(|r| {
                    let height = u8::try_from(r.height).unwrap_or(1);
                    let mut p = PartitionState::new(r.root, height, open_txg);
                    p.target_height = target.max(height);
                    Mutex::new(p)
                })
                .collect(),
            write_cache: AtomicBool::new(true),
            destroyed: AtomicBool::new(false),
            compression: AtomicU8::new(phys.compression),
            dedup: AtomicU8::new(phys.dedup),
            dedup_state: DedupState {
                stopped: Mutex::new(crate::ddt::stopped_reason_at_import(phys.dedup_stopped)),
                ..DedupState::default()
            },
        }
    }

    /// The `dedup` property new writes follow.
    #[must_use]
    pub fn dedup(&self) -> DedupMode {
        DedupMode::from_u8(self.dedup.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// The `compression` property new writes follow.
    #[must_use]
    pub fn compression(&self) -> Compression {
        Compression::from_u8(self.compression.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// Grows the volume to `layout.capacity_bytes`; trees get deeper at the next sync.
    pub fn grow(&self, layout: &VolumeLayout) {
        let target = height_for(layout.blocks_per_partition());
        for p in &self.partitions {
            let mut p = lock(p);
            p.target_height = p.target_height.max(target);
        }
        self.capacity_bytes.store(layout.capacity_bytes, Ordering::SeqCst);
    }

    /// Data bytes referenced by the synced trees.
    #[must_use]
    pub fn referenced_bytes(&self) -> u64 {
        let blocks: u64 = self.partitions.iter().map(|p| lock(p).root.fill_blocks).sum();
        blocks * u64::from(self.layout.volblock_bytes)
    }

    /// The current layout (with the current capacity).
    #[must_use]
    pub fn current_layout(&self) -> VolumeLayout {
        VolumeLayout { capacity_bytes: self.capacity_bytes.load(Ordering::SeqCst), ..self.layout }
    }
}

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

fn io_to_volume(err: IoError, lba: u64) -> VolumeError {
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
    lba: u64,
}

/// Pieces of a request by owning shard: (shard, indices of its pieces in request order).
type OwnerGroups = Vec<(usize, Vec<usize>)>;

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

    fn check(&self, lba: u64, len_bytes: usize) -> VolResult<()> {
        if self.shared.destroyed.load(Ordering::SeqCst) || self.pool.check_live().is_err() {
            return Err(VolumeError::Io(IoError::NotFound));
        }
        let l = self.shared.layout.logical_block_bytes as usize;
        if !len_bytes.is_multiple_of(l) {
            return Err(VolumeError::BadLength);
        }
        let capacity_blocks = self.shared.capacity_bytes.load(Ordering::SeqCst) / l as u64;
        check_range(capacity_blocks, lba, (len_bytes / l) as u64)
    }

    fn pieces(&self, lba: u64, len_bytes: usize) -> Vec<Piece> {
        let layout = &self.shared.layout;
        let l = u64::from(layout.logical_block_bytes);
        let v = u64::from(layout.volblock_bytes);
        let start = lba * l;
        let end = start + len_bytes as u64;
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let block = pos / v;
            let in_block = pos % v;
            let n = (v - in_block).min(end - pos);
            out.push(Piece {
                addr: layout.address(block),
                block_offset: in_block as usize,
                request_offset: (pos - start) as usize,
                len: n as usize,
                lba: pos / l,
            });
            pos += n;
        }
        out
    }

    /// Reads the content of one block. The source names the tree root it was read from, so
    /// a merge can check that nothing changed since (trees are immutable: same root, same
    /// content).
    async fn block_content(&self, addr: BlockAddress, lba: u64) -> VolResult<(Content, Source)> {
        let pool = &self.pool;
        let part = &self.shared.partitions[addr.partition];
        let cache = pool.cache.for_partition(self.shared.id, addr.partition);
        loop {
            let (root, height) = {
                let p = lock(part);
                if let Some(d) = p.dirty(addr.index) {
                    let content = match d {
                        DirtyBlock::Data(d) => Content::Dirty(d),
                        DirtyBlock::Zero => Content::Zero,
                    };
                    return Ok((content, Source::Dirty));
                }
                (p.root, p.height)
            };
            let bp = match lookup(&pool.devs, cache, &root, height, addr.index).await {
                Ok(bp) => bp,
                Err(BlockReadError::Checksum) => {
                    if self.root_unchanged(addr, &root) {
                        return Err(VolumeError::Medium { lba });
                    }
                    continue;
                }
                Err(BlockReadError::Io(e)) => return Err(io_to_volume(e, lba)),
            };
            if bp.is_hole() {
                return Ok((Content::Zero, Source::Root(root)));
            }
            let key = BlockKey::of(&bp);
            if let Some(CachedBlock::Data(d)) = cache.get(&key) {
                return Ok((Content::Clean(d), Source::Root(root)));
            }
            match pool.devs.read_block(&bp).await {
                Ok(buf) => {
                    // Verified against the checksum first; a stream that still does not
                    // decompress is as bad as a checksum failure. The verified I/O buffer (or
                    // the decompressed one) itself becomes the cached and returned block.
                    let logical = bp.logical_bytes as usize;
                    let data = if bp.compression == COMPRESSION_OFF {
                        let n = logical.min(buf.len());
                        SharedBuf::new(buf).slice(0..n)
                    } else if let Ok(bytes) = decompress_block(bp.compression, &buf, logical) {
                        copy_stats::record(CopyPath::Compression, logical);
                        SharedBuf::new(bytes)
                    } else {
                        pool.devs.stats.checksum_errors.fetch_add(1, Ordering::Relaxed);
                        return Err(VolumeError::Medium { lba });
                    };
                    if pool.tunables.cache_data_blocks {
                        cache.insert(key, CachedBlock::Data(data.clone()));
                    }
                    return Ok((Content::Clean(data), Source::Root(root)));
                }
                Err(BlockReadError::Checksum) => {
                    if self.root_unchanged(addr, &root) {
                        return Err(VolumeError::Medium { lba });
                    }
                }
                Err(BlockReadError::Io(e)) => return Err(io_to_volume(e, lba)),
            }
        }
    }

    /// True when block `addr` has no newer write and its partition still has tree `root`.
    fn root_unchanged(&self, addr: BlockAddress, root: &BlockPointer) -> bool {
        let p = lock(&self.shared.partitions[addr.partition]);
        p.dirty(addr.index).is_none() && p.root.same_block(root) && p.root.level == root.level
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

    async fn read_into(&self, lba: u64, buf: &mut [u8]) -> VolResult<()> {
        self.check(lba, buf.len())?;
        copy_stats::io(CopyPath::VolumeRead);
        let pieces = self.pieces(lba, buf.len());
        let results =
            join_all(pieces.iter().map(|p| self.block_content(p.addr, p.lba)).collect()).await;
        for (piece, res) in pieces.iter().zip(results) {
            let (content, _) = res?;
            let dst = &mut buf[piece.request_offset..piece.request_offset + piece.len];
            match content.bytes() {
                Some(b) => {
                    dst.copy_from_slice(&b[piece.block_offset..piece.block_offset + piece.len]);
                    copy_stats::record(CopyPath::VolumeRead, piece.len);
                }
                None => dst.fill(0),
            }
        }
        Ok(())
    }

    /// Reads `len_bytes` from `lba` as shared segments, in order: views of cache buffers,
    /// dirty blocks and freshly read, verified I/O buffers, and of a shared zero buffer for
    /// holes. Nothing is copied.
    ///
    /// Reads run on the shard that received them, whoever owns the partition: they change no
    /// partition state (the dirty sets are looked up under the partition's lock, trees are
    /// immutable), so a hand-off would only add a message and two cross-core wake-ups.
    async fn read_shared(&self, lba: u64, len_bytes: usize) -> VolResult<Vec<SharedBuf>> {
        self.check(lba, len_bytes)?;
        copy_stats::io(CopyPath::VolumeRead);
        let pieces = self.pieces(lba, len_bytes);
        let results =
            join_all(pieces.iter().map(|p| self.block_content(p.addr, p.lba)).collect()).await;
        let mut out = Vec::with_capacity(pieces.len());
        for (piece, res) in pieces.iter().zip(results) {
            let range = piece.block_offset..piece.block_offset + piece.len;
            out.push(match res?.0 {
                Content::Zero => SharedBuf::zeros(piece.len),
                Content::Dirty(d) => d.bytes.slice(range),
                Content::Clean(c) => c.slice(range),
            });
        }
        Ok(out)
    }

    /// Puts `block` at `addr` in the open set; returns (sequence, txg label).
    fn put(&self, addr: BlockAddress, block: DirtyBlock) -> (u64, u64) {
        self.put_locked(lock(&self.shared.partitions[addr.partition]), addr.index, block)
    }

    /// Puts `block` at `index` in the open set of the partition `p` holds locked, releases the
    /// lock and counts the change in the pool's dirty bytes; returns (sequence, txg label).
    fn put_locked(
        &self,
        mut p: MutexGuard<'_, PartitionState>,
        index: u64,
        block: DirtyBlock,
    ) -> (u64, u64) {
        let change = p.put_open(index, block, &self.pool.txg.next_record_sequence);
        drop(p);
        self.pool.account_dirty(change.delta_bytes);
        (change.sequence, change.label_txg)
    }

    /// Applies one piece of a write (`data` is exactly the piece); returns (sequence, txg
    /// label).
    async fn write_piece(&self, piece: Piece, data: &SharedBuf) -> VolResult<(u64, u64)> {
        let v = self.shared.layout.volblock_bytes as usize;
        if piece.block_offset == 0 && piece.len == v {
            return Ok(self.put(piece.addr, whole_block(data)));
        }
        let part = &self.shared.partitions[piece.addr.partition];
        loop {
            {
                let p = lock(part);
                if let Some(existing) = p.dirty(piece.addr.index) {
                    let base = match &existing {
                        DirtyBlock::Data(d) => Some(&d.bytes[..]),
                        DirtyBlock::Zero => None,
                    };
                    let block = merge(base, v, piece.block_offset, data);
                    return Ok(self.put_locked(p, piece.addr.index, block));
                }
            }
            let (content, source) = self.block_content(piece.addr, piece.lba).await?;
            let Source::Root(read_root) = source else { continue };
            let p = lock(part);
            if p.dirty(piece.addr.index).is_some() || !p.root.same_block(&read_root) {
                continue;
            }
            let block = merge(content.bytes(), v, piece.block_offset, data);
            return Ok(self.put_locked(p, piece.addr.index, block));
        }
    }

    /// A durable write of one whole block, written to a place of its own in the pool now
    /// (durable before the record is committed) and logged by reference: the log carries 32
    /// bytes instead of the block, and the txg sync takes the block into the tree where it
    /// lies instead of writing it again. `None` for an all-zero block (a hole, logged inline).
    async fn write_in_place(&self, piece: Piece, data: &SharedBuf) -> VolResult<Option<LogRecord>> {
        if data.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let pool = &self.pool;
        let len = data.len() as u64;
        let mut hint = match Route::current() {
            Some(route) => crate::allocator::Hint::owned(
                pool.alloc.next_hint().group,
                route.here(),
                route.shards(),
            ),
            None => pool.alloc.next_hint(),
        };
        let extent = pool.alloc.allocate_held(&mut hint, len).ok_or(VolumeError::NoSpace)?;
        let sum = crate::format::checksum(data);
        let mut res =
            pool.devs.write_vectored(extent.device, extent.offset_bytes, vec![data.clone()]).await;
        if res.is_ok() {
            res = pool.devs.flush(extent.device).await;
        }
        if let Err(e) = res {
            // Nothing references the block: free once the open txg is durable.
            pool.alloc.release_after(&extent, pool.txg.open_txg.load(Ordering::SeqCst));
            return Err(io_to_volume(e, piece.lba));
        }
        let block = DirtyBlock::Data(Arc::new(BlockData::written(data.clone(), extent)));
        let (sequence, label) = self.put(piece.addr, block);
        // The record is needed until txg `label` is durable; the block stays held until then
        // (or until that txg's sync takes it into the tree).
        pool.alloc.release_after(&extent, label);
        pool.stats.log_block_refs_written.fetch_add(1, Ordering::Relaxed);
        let l = u64::from(self.shared.layout.logical_block_bytes);
        Ok(Some(LogRecord {
            sequence,
            label_txg: label,
            dataset_id: self.shared.id,
            op: LogOp::WriteBlock { offset_bytes: piece.lba * l, extent, checksum: sum },
        }))
    }

    fn durable_now(&self, fua: bool) -> bool {
        fua || !self.shared.write_cache.load(Ordering::Relaxed)
    }

    async fn write_from(&self, lba: u64, buf: &SharedBuf, fua: bool) -> VolResult<()> {
        self.check(lba, buf.len())?;
        self.pool.admit(buf.len() as u64, self.shared.thick)?;
        copy_stats::io(CopyPath::VolumeWrite);
        let pieces = self.pieces(lba, buf.len());
        let Some((route, groups)) = self.owners(&pieces) else {
            return self.write_pieces(pieces, buf, fua).await;
        };
        // Each owner applies (and, for a durable write, logs) its own pieces; the buffer
        // moves with the message. The write completes when every part has.
        let mut remote = Vec::new();
        let mut local = Vec::new();
        for (owner, members) in groups {
            let mine: Vec<Piece> = members.iter().map(|&i| pieces[i]).collect();
            if owner == route.here() {
                local = mine;
                continue;
            }
            let (volume, buf) = (self.clone(), buf.clone());
            remote.push(
                route.run_on(
                    owner,
                    move || async move { volume.write_pieces(mine, &buf, fua).await },
                ),
            );
        }
        let mut result =
            if local.is_empty() { Ok(()) } else { self.write_pieces(local, buf, fua).await };
        for job in remote {
            let part = job.await.unwrap_or(Err(VolumeError::Io(IoError::Canceled)));
            result = result.and(part);
        }
        result
    }

    /// Applies pieces of one write (`buf` is the whole request's data) and finishes the
    /// change: an intent-log commit when the write must be durable now.
    async fn write_pieces(&self, pieces: Vec<Piece>, buf: &SharedBuf, fua: bool) -> VolResult<()> {
        let sync = self.durable_now(fua);
        let v = self.shared.layout.volblock_bytes as usize;
        let by_reference = sync
            && v as u64 >= self.pool.tunables.log_block_ref_min_bytes
            && self.shared.compression() == Compression::Off
            && self.shared.dedup() == DedupMode::Off;
        let mut records = Vec::new();
        let mut max_label = 0;
        for piece in pieces {
            let data = buf.slice(piece.request_offset..piece.request_offset + piece.len);
            if by_reference && piece.block_offset == 0 && piece.len == v && data.is_aligned() {
                if let Some(record) = self.write_in_place(piece, &data).await? {
                    max_label = max_label.max(record.label_txg);
                    records.push(record);
                    continue;
                }
            }
            let (seq, label) = self.write_piece(piece, &data).await?;
            max_label = max_label.max(label);
            if sync {
                let l = u64::from(self.shared.layout.logical_block_bytes);
                records.push(LogRecord {
                    sequence: seq,
                    label_txg: label,
                    dataset_id: self.shared.id,
                    op: LogOp::Write { offset_bytes: piece.lba * l, data },
                });
            }
        }
        self.finish_change(records, max_label, sync).await
    }

    async fn finish_change(
        &self,
        records: Vec<LogRecord>,
        max_label: u64,
        sync: bool,
    ) -> VolResult<()> {
        if sync {
            self.pool.log_commit(records).await.map_err(VolumeError::from)?;
        } else {
            self.pool.txg.async_label.fetch_max(max_label, Ordering::SeqCst);
        }
        self.pool.throttle().await.map_err(VolumeError::from)
    }

    /// Makes `[lba, lba + blocks)` holes.
    async fn zero_range(&self, lba: u64, blocks: u64, sync: bool) -> VolResult<()> {
        self.fill_range(lba, blocks, None, sync).await
    }

    /// Fills `[lba, lba + blocks)` with `pattern` (one logical block) repeated, or makes it
    /// holes when `pattern` is `None`. Whole blocks of a stripe change under one partition lock
    /// (one sequence number, one log record of the range: `RECORD_WRITE_SAME` with the pattern,
    /// or `RECORD_ZERO`); whole pattern blocks share one buffer. Partial blocks are merged.
    async fn fill_range(
        &self,
        lba: u64,
        blocks: u64,
        pattern: Option<&[u8]>,
        sync: bool,
    ) -> VolResult<()> {
        let l = u64::from(self.shared.layout.logical_block_bytes);
        let len = usize::try_from(blocks * l).map_err(|_| VolumeError::OutOfRange)?;
        self.check(lba, len)?;
        if pattern.is_some_and(|p| p.len() as u64 != l) {
            return Err(VolumeError::BadLength);
        }
        let v = u64::from(self.shared.layout.volblock_bytes);
        let layout = self.shared.layout;
        let repeat = |n: u64| -> SharedBuf {
            let n = usize::try_from(n).expect("piece fits");
            match pattern {
                Some(p) => {
                    // The pattern block replicated: a counted copy of the pattern.
                    let mut buf = IoBuf::zeroed(n);
                    for chunk in buf.chunks_mut(p.len()) {
                        chunk.copy_from_slice(p);
                    }
                    copy_stats::record(CopyPath::VolumeWrite, n);
                    SharedBuf::new(buf)
                }
                None => SharedBuf::zeros(n),
            }
        };
        let op = |offset_bytes: u64, len_bytes: u64| match pattern {
            Some(p) => LogOp::WriteSame { offset_bytes, len_bytes, pattern: p.to_vec() },
            None => LogOp::Zero { offset_bytes, len_bytes },
        };
        // The content of a whole block, shared by every whole block of the range.
        let whole = match pattern {
            Some(_) => block_of(repeat(v)),
            None => DirtyBlock::Zero,
        };
        let mut records = Vec::new();
        let mut max_label = 0;
        let start = lba * l;
        let end = start + blocks * l;
        let mut pos = start;
        while pos < end {
            let block = pos / v;
            let in_block = pos % v;
            if in_block != 0 || end - pos < v {
                // Partial block: merge.
                let n = (v - in_block).min(end - pos);
                let piece = Piece {
                    addr: layout.address(block),
                    block_offset: in_block as usize,
                    request_offset: 0,
                    len: n as usize,
                    lba: pos / l,
                };
                let (seq, label) = self.write_piece(piece, &repeat(n)).await?;
                max_label = max_label.max(label);
                records.push(LogRecord {
                    sequence: seq,
                    label_txg: label,
                    dataset_id: self.shared.id,
                    op: op(pos, n),
                });
                pos += n;
                continue;
            }
            // Whole blocks up to the end of this stripe or of the range.
            let bps = layout.blocks_per_stripe();
            let stripe_end_block = (block / bps + 1) * bps;
            let last_block = stripe_end_block.min(end / v);
            let addr = layout.address(block);
            let count = last_block - block;
            let (seq, label) = {
                let mut p = lock(&self.shared.partitions[addr.partition]);
                let change = p.change_open(&self.pool.txg.next_record_sequence, |open| {
                    if pattern.is_none() && count > 4 {
                        open.punch(addr.index, addr.index + count)
                    } else {
                        (0..count).map(|i| open.put(addr.index + i, whole.clone())).sum()
                    }
                });
                drop(p);
                self.pool.account_dirty(change.delta_bytes);
                (change.sequence, change.label_txg)
            };
            max_label = max_label.max(label);
            records.push(LogRecord {
                sequence: seq,
                label_txg: label,
                dataset_id: self.shared.id,
                op: op(pos, count * v),
            });
            pos = last_block * v;
        }
        if !sync {
            records.clear();
        }
        self.finish_change(records, max_label, sync).await
    }

    async fn compare_and_write_impl(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
        fua: bool,
    ) -> VolResult<CompareOutcome> {
        if compare.len() != write.len() {
            return Err(VolumeError::BadLength);
        }
        self.check(lba, compare.len())?;
        self.pool.admit(write.len() as u64, self.shared.thick)?;
        let v = self.shared.layout.volblock_bytes as usize;
        let pieces = self.pieces(lba, compare.len());
        let mut parts: Vec<usize> = pieces.iter().map(|p| p.addr.partition).collect();
        parts.sort_unstable();
        parts.dedup();
        loop {
            let versions: Vec<u64> =
                parts.iter().map(|&i| lock(&self.shared.partitions[i]).version).collect();
            let mut contents = Vec::with_capacity(pieces.len());
            for piece in &pieces {
                contents.push(self.block_content(piece.addr, piece.lba).await?.0);
            }
            let mut guards: Vec<_> =
                parts.iter().map(|&i| lock(&self.shared.partitions[i])).collect();
            if guards.iter().zip(&versions).any(|(g, v)| g.version != *v) {
                continue;
            }
            for (piece, content) in pieces.iter().zip(&contents) {
                let want = &compare[piece.request_offset..piece.request_offset + piece.len];
                let have =
                    content.bytes().map(|b| &b[piece.block_offset..piece.block_offset + piece.len]);
                let differs = match have {
                    Some(h) => h.iter().zip(want).position(|(a, b)| a != b),
                    None => want.iter().position(|b| *b != 0),
                };
                if let Some(at) = differs {
                    return Ok(CompareOutcome::Miscompare {
                        offset_bytes: (piece.request_offset + at) as u64,
                    });
                }
            }
            let sync = self.durable_now(fua);
            let mut records = Vec::new();
            let mut max_label = 0;
            let l = u64::from(self.shared.layout.logical_block_bytes);
            for (piece, content) in pieces.iter().zip(&contents) {
                let data = &write[piece.request_offset..piece.request_offset + piece.len];
                let block = merge(content.bytes(), v, piece.block_offset, data);
                let data = match &block {
                    DirtyBlock::Data(d) => {
                        d.bytes.slice(piece.block_offset..piece.block_offset + piece.len)
                    }
                    DirtyBlock::Zero => SharedBuf::zeros(piece.len),
                };
                let gi = parts.binary_search(&piece.addr.partition).expect("partition listed");
                let change = guards[gi].put_open(
                    piece.addr.index,
                    block,
                    &self.pool.txg.next_record_sequence,
                );
                max_label = max_label.max(change.label_txg);
                self.pool.account_dirty(change.delta_bytes);
                records.push(LogRecord {
                    sequence: change.sequence,
                    label_txg: change.label_txg,
                    dataset_id: self.shared.id,
                    op: LogOp::Write { offset_bytes: piece.lba * l, data },
                });
            }
            // Our own writes bumped the versions; refresh them so the loop cannot misread.
            drop(guards);
            if !sync {
                records.clear();
            }
            self.finish_change(records, max_label, sync).await?;
            return Ok(CompareOutcome::Written);
        }
    }

    async fn status(&self, lba: u64) -> VolResult<LbaStatus> {
        self.check(lba, self.shared.layout.logical_block_bytes as usize)?;
        let layout = self.shared.current_layout();
        let l = u64::from(layout.logical_block_bytes);
        let per_block = layout.lbas_per_block();
        let capacity_lbas = layout.capacity_bytes / l;
        let total_blocks = capacity_lbas.div_ceil(per_block);
        let blocks_per_stripe = layout.blocks_per_stripe();
        let first_block = lba / per_block;
        let mapped = self.is_mapped(layout.address(first_block), lba).await?;
        let mut block = first_block + 1;
        let mut single_lookups = 0;
        // Bounded work per call: whole stripe runs are decided from the dirty sets and the
        // trees' fill counts; mixed stripes are looked at block by block, at most
        // STATUS_SINGLE_LOOKUPS of them.
        'scan: while block < total_blocks && block - first_block < STATUS_MAX_BLOCKS {
            let stripe_end =
                ((block / blocks_per_stripe + 1) * blocks_per_stripe).min(total_blocks);
            match self
                .range_mapped(layout.address(block), stripe_end - block, block * per_block)
                .await?
            {
                Some(m) if m == mapped => {
                    block = stripe_end;
                    continue;
                }
                Some(_) => break,
                None => {}
            }
            while block < stripe_end {
                if single_lookups >= STATUS_SINGLE_LOOKUPS
                    || self.is_mapped(layout.address(block), block * per_block).await? != mapped
                {
                    break 'scan;
                }
                single_lookups += 1;
                block += 1;
            }
        }
        let end = (block * per_block).min(capacity_lbas);
        Ok(LbaStatus { mapped, run_blocks: (end - lba).max(1) })
    }

    /// Whether the `n` blocks from `addr` (all inside one stripe) are all mapped (`Some(true)`),
    /// all holes (`Some(false)`), or mixed (`None`).
    async fn range_mapped(&self, addr: BlockAddress, n: u64, lba: u64) -> VolResult<Option<bool>> {
        let (start, end) = (addr.index, addr.index + n);
        let cache = self.pool.cache.for_partition(self.shared.id, addr.partition);
        let (root, height) = {
            let p = lock(&self.shared.partitions[addr.partition]);
            // The open set is newer than the syncing one, which is newer than the tree.
            for set in std::iter::once(&p.open).chain(p.syncing.as_deref()) {
                match set.range_change(start, end) {
                    RangeChange::Untouched => {}
                    RangeChange::AllHoles => return Ok(Some(false)),
                    RangeChange::AllData => return Ok(Some(true)),
                    RangeChange::Mixed => return Ok(None),
                }
            }
            (p.root, p.height)
        };
        let filled = filled_in_range(&self.pool.devs, cache, &root, height, start, end)
            .await
            .map_err(|_| VolumeError::Medium { lba })?;
        Ok(match filled {
            0 => Some(false),
            f if f == n => Some(true),
            _ => None,
        })
    }

    async fn is_mapped(&self, addr: BlockAddress, lba: u64) -> VolResult<bool> {
        // A single block reads as mixed only when a set punched it and then wrote it: data.
        Ok(self.range_mapped(addr, 1, lba).await? != Some(false))
    }

    /// Applies an intent-log record during replay (no logging, no throttling).
    pub(crate) async fn replay(&self, op: &LogOp) -> VolResult<()> {
        let l = u64::from(self.shared.layout.logical_block_bytes);
        match op {
            LogOp::Write { offset_bytes, data } => {
                self.check(offset_bytes / l, data.len())?;
                // Replay runs once at import, off the I/O path: the record's bytes get a buffer.
                let data = SharedBuf::new(IoBuf::from_slice(data));
                self.replay_write(offset_bytes / l, &data).await
            }
            LogOp::WriteBlock { offset_bytes, extent, checksum } => {
                let len = usize::try_from(extent.len_bytes).map_err(|_| VolumeError::BadLength)?;
                self.check(offset_bytes / l, len)?;
                let lba = offset_bytes / l;
                let buf = self
                    .pool
                    .devs
                    .read(extent.device, extent.offset_bytes, len)
                    .await
                    .map_err(|e| io_to_volume(e, lba))?;
                if crate::format::checksum(&buf) != *checksum {
                    self.pool.devs.stats.checksum_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(VolumeError::Medium { lba });
                }
                self.replay_write(lba, &SharedBuf::new(buf)).await
            }
            LogOp::Zero { offset_bytes, len_bytes } => {
                self.fill_range(offset_bytes / l, len_bytes / l, None, false).await
            }
            LogOp::WriteSame { offset_bytes, len_bytes, pattern } => {
                self.fill_range(offset_bytes / l, len_bytes / l, Some(pattern), false).await
            }
        }
    }

    /// Applies replayed `data` at `lba` into the open dirty sets (no log, no throttle).
    async fn replay_write(&self, lba: u64, data: &SharedBuf) -> VolResult<()> {
        for piece in self.pieces(lba, data.len()) {
            let d = data.slice(piece.request_offset..piece.request_offset + piece.len);
            self.write_piece(piece, &d).await?;
        }
        Ok(())
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

    fn read(&self, lba: u64, mut buf: IoBuf) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        Box::pin(async move {
            let res = self.read_into(lba, &mut buf).await;
            (res, buf)
        })
    }

    fn write(&self, lba: u64, buf: IoBuf, fua: bool) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
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
        lba: u64,
        buf: SharedBuf,
        fua: bool,
    ) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.write_from(lba, &buf, fua).await })
    }

    fn read_segments(
        &self,
        lba: u64,
        len_bytes: usize,
    ) -> LocalBoxFuture<'_, VolResult<Vec<SharedBuf>>> {
        Box::pin(self.read_shared(lba, len_bytes))
    }

    fn unmap(&self, lba: u64, blocks: u64) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.zero_range(lba, blocks, self.durable_now(false)).await })
    }

    fn write_zeroes(&self, lba: u64, blocks: u64) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async move { self.zero_range(lba, blocks, self.durable_now(false)).await })
    }

    fn write_same(
        &self,
        lba: u64,
        blocks: u64,
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
        lba: u64,
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

    fn lba_status(&self, lba: u64) -> LocalBoxFuture<'_, VolResult<LbaStatus>> {
        Box::pin(async move { self.status(lba).await })
    }

    fn set_write_cache(&self, enabled: bool) {
        self.shared.write_cache.store(enabled, Ordering::SeqCst);
    }

    fn write_cache(&self) -> bool {
        self.shared.write_cache.load(Ordering::SeqCst)
    }
}
