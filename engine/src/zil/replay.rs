//! Replay: at import every chain is read from its head while its blocks verify and follow in
//! sequence, and the records newer than the durable txg are re-applied in global sequence
//! order, then committed in a txg.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::block::{check_log_block_header, decode_log_block, LogBlockExpect, LogOp, LogRecord};
use super::{LiveBlock, LogChain};
use crate::error::{PoolError, PoolResult};
use crate::format::SECTOR_BYTES;
use crate::pool::{lock, Pool};
use crate::units::TxgId;

impl Pool {
    /// Reads every chain from its head and re-applies the records newer than `durable_txg`,
    /// then commits them in a txg. Called once by import.
    pub(crate) async fn replay_log(&self, durable_txg: TxgId) -> PoolResult<()> {
        let mut records = Vec::new();
        for chain in &self.zil.chains {
            let (found, end_offset, end_seq, live) = self.read_chain(chain).await;
            records.extend(found);
            let mut st = lock(&chain.state);
            st.live = live;
            st.next_offset_bytes = end_offset;
            // A new epoch in the high half, so blocks of an earlier life that lie beyond the
            // end never continue the new chain.
            st.next_sequence = ((end_seq >> 32) + 1) << 32;
        }
        records.retain(|r| r.label_txg > durable_txg);
        records.sort_by_key(|r| r.sequence);
        let next_seq = records.last().map_or(0, |r| r.sequence + 1);
        self.txg.next_record_sequence.fetch_max(next_seq, Ordering::SeqCst);
        let replayed = records.len() as u64;
        // Blocks that records point to were never part of a durable tree: the space maps show
        // them free. Claim them all before anything is allocated, so no replayed change can
        // land on one before its record has been read back.
        let mut claimed = Vec::new();
        for r in &records {
            if let LogOp::WriteBlock { extent, .. } = &r.op {
                if !self.alloc.claim(*extent) {
                    return Err(PoolError::Corrupt(format!(
                        "intent-log record {} points outside the pool ({extent:?})",
                        r.sequence
                    )));
                }
                claimed.push(*extent);
            }
        }
        for r in records {
            let volume = lock(&self.heads).get(&r.dataset_id).cloned();
            let Some(volume) = volume else { continue };
            let handle = crate::volume::PoolVolume::new(self.arc(), volume);
            handle.replay(&r.op).await.map_err(|e| {
                PoolError::Corrupt(format!("intent-log record {} does not apply: {e}", r.sequence))
            })?;
        }
        self.stats.log_records_replayed.fetch_add(replayed, Ordering::Relaxed);
        self.stats.log_block_refs_replayed.fetch_add(claimed.len() as u64, Ordering::Relaxed);
        // The replayed data is now dirty in memory and is written by the sync below; the
        // blocks it was read from are free once that sync is durable.
        let txg = self.open_txg();
        for extent in claimed {
            self.alloc.free(extent, txg);
        }
        // Commit (also when nothing was replayed: the new chain epoch goes into the root).
        self.sync_txg().await?;
        Ok(())
    }

    /// Reads one chain from its head: its records, where it ends, and its blocks.
    async fn read_chain(
        &self,
        chain: &LogChain,
    ) -> (Vec<LogRecord>, u64, u64, VecDeque<LiveBlock>) {
        let mut offset = chain.phys.head_offset_bytes;
        let mut seq = chain.phys.head_sequence.max(1);
        let mut records = Vec::new();
        let mut live = VecDeque::new();
        let region = chain.phys.region_bytes;
        loop {
            if offset + SECTOR_BYTES > region {
                break;
            }
            let base = chain.phys.region_offset_bytes;
            let Ok(first) =
                self.devs.read(chain.phys.device, base + offset, SECTOR_BYTES as usize).await
            else {
                break;
            };
            let expect =
                LogBlockExpect { pool_guid: self.zil.guid, chain: chain.index, sequence: seq };
            // A block that is not the next one, or is corrupt, ends the chain.
            let Ok(header) = check_log_block_header(&first, &expect) else {
                break;
            };
            let len = u64::from(header.block_bytes);
            if offset + len > region {
                break;
            }
            let Ok(block) = self.devs.read(chain.phys.device, base + offset, len as usize).await
            else {
                break;
            };
            let Ok((header, found)) = decode_log_block(&block, &expect) else {
                break;
            };
            records.extend(found);
            live.push_back(LiveBlock {
                offset_bytes: offset,
                sequence: seq,
                max_label_txg: TxgId::new(header.max_label_txg),
            });
            offset = header.next_offset_bytes;
            seq += 1;
        }
        (records, offset, seq, live)
    }
}
