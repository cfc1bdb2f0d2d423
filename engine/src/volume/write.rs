//! Writes: whole blocks put in the open set by reference, partial blocks merged, durable
//! writes logged (whole blocks by reference to a place of their own), and writes handed to the
//! shards that own their partitions.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use drivers::buffer::SharedBuf;
use drivers::error::IoError;

use super::{io_to_volume, merge, whole_block, Piece, PoolVolume, Source};
use crate::block_volume::{VolResult, VolumeError};
use crate::compress::Compression;
use crate::copy_stats::{self, CopyPath};
use crate::ddt::DedupMode;
use crate::partition::{BlockAddress, BlockData, DirtyBlock, PartitionState};
use crate::pool::lock;
use crate::route::Route;
use crate::units::{Lba, TxgId};
use crate::zil::{LogOp, LogRecord};

impl PoolVolume {
    /// Puts `block` at `addr` in the open set; returns (sequence, txg label).
    fn put(&self, addr: BlockAddress, block: DirtyBlock) -> (u64, TxgId) {
        self.put_locked(lock(self.shared.partition(addr.partition)), addr.index, block)
    }

    /// Puts `block` at `index` in the open set of the partition `p` holds locked, releases the
    /// lock and counts the change in the pool's dirty bytes; returns (sequence, txg label).
    fn put_locked(
        &self,
        mut p: MutexGuard<'_, PartitionState>,
        index: u64,
        block: DirtyBlock,
    ) -> (u64, TxgId) {
        let change = p.put_open(index, block, &self.pool.txg.next_record_sequence);
        drop(p);
        self.pool.account_dirty(change.delta_bytes);
        (change.sequence, change.label_txg)
    }

    /// Applies one piece of a write (`data` is exactly the piece); returns (sequence, txg
    /// label).
    pub(super) async fn write_piece(
        &self,
        piece: Piece,
        data: &SharedBuf,
    ) -> VolResult<(u64, TxgId)> {
        let v = self.shared.layout.volblock_bytes as usize;
        if piece.block_offset == 0 && piece.len == v {
            return Ok(self.put(piece.addr, whole_block(data)));
        }
        let part = self.shared.partition(piece.addr.partition);
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
            pool.alloc.release_after(&extent, pool.open_txg());
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
            op: LogOp::WriteBlock {
                offset_bytes: piece.lba.offset_bytes(l),
                extent,
                checksum: sum,
            },
        }))
    }

    pub(super) async fn write_from(&self, lba: Lba, buf: &SharedBuf, fua: bool) -> VolResult<()> {
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
        let mut max_label = TxgId::default();
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
                    op: LogOp::Write { offset_bytes: piece.lba.offset_bytes(l), data },
                });
            }
        }
        self.finish_change(records, max_label, sync).await
    }

    pub(super) async fn finish_change(
        &self,
        records: Vec<LogRecord>,
        max_label: TxgId,
        sync: bool,
    ) -> VolResult<()> {
        if sync {
            self.pool.log_commit(records).await.map_err(VolumeError::from)?;
        } else {
            self.pool.txg.async_label.fetch_max(max_label.get(), Ordering::SeqCst);
        }
        self.pool.throttle().await.map_err(VolumeError::from)
    }
}
