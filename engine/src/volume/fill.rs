//! Unmap, write-zeroes and WRITE SAME: a range filled with a pattern or made holes, whole
//! blocks of a stripe in one change.

use drivers::buffer::{IoBuf, SharedBuf};

use super::{block_of, Piece, PoolVolume};
use crate::block_volume::{VolResult, VolumeError};
use crate::copy_stats::{self, CopyPath};
use crate::partition::DirtyBlock;
use crate::pool::lock;
use crate::units::{BlockCount, Lba, TxgId, VolumeBlock};
use crate::zil::{LogOp, LogRecord};

impl PoolVolume {
    /// Makes `[lba, lba + blocks)` holes.
    pub(super) async fn zero_range(
        &self,
        lba: Lba,
        blocks: BlockCount,
        sync: bool,
    ) -> VolResult<()> {
        self.fill_range(lba, blocks, None, sync).await
    }

    /// Fills `[lba, lba + blocks)` with `pattern` (one logical block) repeated, or makes it
    /// holes when `pattern` is `None`. Whole blocks of a stripe change under one partition lock
    /// (one sequence number, one log record of the range: `RECORD_WRITE_SAME` with the pattern,
    /// or `RECORD_ZERO`); whole pattern blocks share one buffer. Partial blocks are merged.
    pub(super) async fn fill_range(
        &self,
        lba: Lba,
        blocks: BlockCount,
        pattern: Option<&[u8]>,
        sync: bool,
    ) -> VolResult<()> {
        let l = u64::from(self.shared.layout.logical_block_bytes);
        let len = usize::try_from(blocks.get() * l).map_err(|_| VolumeError::OutOfRange)?;
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
        let mut max_label = TxgId::default();
        let start = lba.offset_bytes(l);
        let end = start + blocks.get() * l;
        let mut pos = start;
        while pos < end {
            let block = pos / v;
            let in_block = pos % v;
            if in_block != 0 || end - pos < v {
                // Partial block: merge.
                let n = (v - in_block).min(end - pos);
                let piece = Piece {
                    addr: layout.address(VolumeBlock::new(block)),
                    block_offset: in_block as usize,
                    request_offset: 0,
                    len: n as usize,
                    lba: Lba::new(pos / l),
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
            let addr = layout.address(VolumeBlock::new(block));
            let count = last_block - block;
            let (seq, label) = {
                let mut p = lock(self.shared.partition(addr.partition));
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
}
