//! COMPARE AND WRITE: compared and written under the locks of every partition it touches.

use drivers::buffer::SharedBuf;

use super::{merge, PoolVolume};
use crate::block_volume::{CompareOutcome, VolResult, VolumeError};
use crate::partition::DirtyBlock;
use crate::pool::lock;
use crate::units::{Lba, PartitionId, TxgId};
use crate::zil::{LogOp, LogRecord};

impl PoolVolume {
    pub(super) async fn compare_and_write_impl(
        &self,
        lba: Lba,
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
        let mut parts: Vec<PartitionId> = pieces.iter().map(|p| p.addr.partition).collect();
        parts.sort_unstable();
        parts.dedup();
        loop {
            let versions: Vec<u64> =
                parts.iter().map(|&i| lock(self.shared.partition(i)).version).collect();
            let mut contents = Vec::with_capacity(pieces.len());
            for piece in &pieces {
                contents.push(self.block_content(piece.addr, piece.lba).await?.0);
            }
            let mut guards: Vec<_> =
                parts.iter().map(|&i| lock(self.shared.partition(i))).collect();
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
            let mut max_label = TxgId::default();
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
                    op: LogOp::Write { offset_bytes: piece.lba.offset_bytes(l), data },
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
}
