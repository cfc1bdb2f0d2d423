//! Reads: a block's content from the open and syncing dirty sets, else from the partition's
//! tree through the cache, verified; copied into a buffer or returned as shared segments.

use std::sync::atomic::Ordering;

use drivers::buffer::SharedBuf;

use super::{io_to_volume, Content, PoolVolume, Source};
use crate::block_pointer::BlockPointer;
use crate::block_tree::lookup;
use crate::block_volume::{VolResult, VolumeError};
use crate::cache::{BlockKey, CachedBlock};
use crate::compress::{decompress_block, COMPRESSION_OFF};
use crate::copy_stats::{self, CopyPath};
use crate::join::join_all;
use crate::partition::{BlockAddress, DirtyBlock};
use crate::pool::lock;
use crate::units::Lba;
use crate::vdev::BlockReadError;

impl PoolVolume {
    /// Reads the content of one block. The source names the tree root it was read from, so
    /// a merge can check that nothing changed since (trees are immutable: same root, same
    /// content).
    pub(super) async fn block_content(
        &self,
        addr: BlockAddress,
        lba: Lba,
    ) -> VolResult<(Content, Source)> {
        let pool = &self.pool;
        let part = self.shared.partition(addr.partition);
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
        let p = lock(self.shared.partition(addr.partition));
        p.dirty(addr.index).is_none() && p.root.same_block(root) && p.root.level == root.level
    }

    pub(super) async fn read_into(&self, lba: Lba, buf: &mut [u8]) -> VolResult<()> {
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
    pub(super) async fn read_shared(
        &self,
        lba: Lba,
        len_bytes: usize,
    ) -> VolResult<Vec<SharedBuf>> {
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
}
