//! The commit path: a FUA write (or any write with the write cache off) appends its records to
//! its shard's chain and waits for them to be committed. Whoever finds a commit slot free
//! becomes a writer: it takes every pending record (group commit), packs them into log blocks,
//! reserves their place in the chain, writes them and flushes the log's device.

use std::sync::atomic::Ordering;
use std::task::Poll;

use drivers::buffer::IoBuf;
use drivers::error::IoError;

use super::block::{
    encode_log_block, LogBlockHeader, LogRecord, LOG_BLOCK_HEADER_BYTES, MAX_LOG_BLOCK_BYTES,
};
use super::{LiveBlock, LogChain, MAX_COMMITS_IN_FLIGHT};
use crate::copy_stats::{self, CopyPath};
use crate::error::{PoolError, PoolResult};
use crate::format::SECTOR_BYTES;
use crate::pool::{lock, Pool};
use crate::units::TxgId;

enum Step {
    Done,
    Write(Vec<LogRecord>, u64),
}

impl Pool {
    /// Makes `records` durable through the intent log (group commit).
    ///
    /// # Errors
    /// A log device error (the pool is not suspended for it: the caller's write fails).
    pub(crate) async fn log_commit(&self, mut records: Vec<LogRecord>) -> PoolResult<()> {
        let durable = self.durable_txg();
        records.retain(|r| r.label_txg > durable);
        if records.is_empty() || self.zil.chains.is_empty() {
            return Ok(());
        }
        copy_stats::io(CopyPath::LogWrite);
        let shard = drivers::executor::current_shard();
        let chain = &self.zil.chains[self.zil.chain_for(shard)];
        let ticket = {
            let mut st = lock(&chain.state);
            st.pending.extend(records);
            st.next_ticket += 1;
            st.next_ticket
        };
        loop {
            let step = std::future::poll_fn(|cx| {
                let mut st = lock(&chain.state);
                if st.committed_ticket >= ticket {
                    return Poll::Ready(Ok(Step::Done));
                }
                if st.failed_ticket >= ticket {
                    return Poll::Ready(Err(PoolError::Io(st.failed.unwrap_or(IoError::Injected))));
                }
                if st.writers_active < MAX_COMMITS_IN_FLIGHT && !st.pending.is_empty() {
                    st.writers_active += 1;
                    let batch = std::mem::take(&mut st.pending);
                    return Poll::Ready(Ok(Step::Write(batch, st.next_ticket)));
                }
                st.waiters.push(cx.waker().clone());
                Poll::Pending
            })
            .await?;
            let (batch, upto) = match step {
                Step::Done => return Ok(()),
                Step::Write(batch, upto) => (batch, upto),
            };
            let max_label = batch.iter().map(|r| r.label_txg).max().unwrap_or_default();
            let broken = lock(&chain.state).broken_until_txg > self.durable_txg();
            let res = if broken {
                // A failed block may sit in the chain; a txg sync covers these records.
                self.ensure_durable(max_label).await
            } else {
                self.write_log_batch(chain, batch).await
            };
            let mut st = lock(&chain.state);
            st.writers_active -= 1;
            match res {
                Ok(()) => st.committed_ticket = st.committed_ticket.max(upto),
                Err(e) => {
                    st.failed_ticket = st.failed_ticket.max(upto);
                    st.failed = Some(match &e {
                        PoolError::Io(io) => *io,
                        _ => IoError::Injected,
                    });
                    if !broken {
                        st.broken_until_txg = st.broken_until_txg.max(max_label);
                    }
                    LogChain::wake_all(&mut st);
                    return Err(e);
                }
            }
            LogChain::wake_all(&mut st);
        }
    }

    /// Writes one batch of records as log blocks and flushes the log device. Falls back to a
    /// txg sync when the chain's region is full.
    async fn write_log_batch(&self, chain: &LogChain, batch: Vec<LogRecord>) -> PoolResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let max_label = batch.iter().map(|r| r.label_txg).max().unwrap_or_default();
        let blocks = pack_log_blocks(batch);
        let reserved = self.reserve_log_blocks(chain, blocks);
        let full = reserved.is_none();
        let half_full = {
            let st = lock(&chain.state);
            chain.used_bytes(&st) > chain.phys.region_bytes / 2
        };
        if !full && half_full && !self.zil.move_owner_from(chain.index as usize, self.durable_txg())
        {
            self.txg.sync_requested.store(true, Ordering::SeqCst);
            self.txg.kick.wake_all();
        }
        let Some(Reserved { images, batch_no, failed_before }) = reserved else {
            // The region is full (or holds a failed block): a txg sync makes every record
            // obsolete.
            return self.ensure_durable(max_label).await;
        };
        // A device that makes single writes durable (RWF_DSYNC, FUA) takes the log blocks that
        // way and needs no flush after them: one trip to the device per commit instead of two.
        let durable_writes = self.devs.durable_writes(chain.phys.device);
        let _active = crate::pool::InProgress::new(&self.stats.log_writes_in_progress);
        let record_counts =
            self.write_log_blocks(chain, images, batch_no, max_label, durable_writes).await?;
        wait_for_earlier_batches(chain, batch_no, failed_before).await?;
        if !durable_writes {
            self.devs.flush(chain.phys.device).await?;
        }
        let records: usize = record_counts.iter().sum();
        self.stats.log_blocks_written.fetch_add(record_counts.len() as u64, Ordering::Relaxed);
        self.stats.log_records_written.fetch_add(records as u64, Ordering::Relaxed);
        self.stats.log_commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reserves the chain's next blocks for `blocks` and encodes them, under the chain's lock;
    /// `None` (nothing reserved) when the whole batch does not fit in the region or a failed
    /// block may sit in the chain.
    fn reserve_log_blocks(
        &self,
        chain: &LogChain,
        blocks: Vec<Vec<LogRecord>>,
    ) -> Option<Reserved> {
        let mut st = lock(&chain.state);
        let lens: Vec<u64> = blocks
            .iter()
            .map(|b| {
                (LOG_BLOCK_HEADER_BYTES + b.iter().map(LogRecord::encoded_len).sum::<usize>())
                    as u64
            })
            .map(|n| n.next_multiple_of(SECTOR_BYTES))
            .collect();
        // Check room for the whole batch before reserving anything.
        let mut probe_offset = st.next_offset_bytes;
        let mut room = true;
        for &len in &lens {
            let fits = match st.live.front() {
                None => true,
                Some(tail) => {
                    probe_offset > tail.offset_bytes || probe_offset + len <= tail.offset_bytes
                }
            };
            if !fits {
                room = false;
                break;
            }
            probe_offset = chain.next_after(probe_offset, len);
        }
        if !room || !chain.fits(&st, lens[0]) || st.broken_until_txg > self.durable_txg() {
            return None;
        }
        if st.writers_active <= 1 {
            // No other batch in flight: earlier failures lie behind a durable txg.
            st.failed_batches.clear();
        }
        let batch_no = st.next_batch.max(1);
        st.next_batch = batch_no + 1;
        let failed_before = st.failed_batch;
        let mut images = Vec::new();
        for (records, len) in blocks.into_iter().zip(lens) {
            let offset = st.next_offset_bytes;
            let seq = st.next_sequence;
            let next = chain.next_after(offset, len);
            let block_max = records.iter().map(|r| r.label_txg).max().unwrap_or_default();
            let mut payload = st.block_buffer(usize::try_from(len).expect("block fits"));
            let header = LogBlockHeader::unsealed(
                self.zil.guid,
                chain.index,
                seq,
                next,
                block_max,
                u32::try_from(len).expect("block fits"),
            );
            encode_log_block(&mut payload, header, &records);
            st.live.push_back(LiveBlock {
                offset_bytes: offset,
                sequence: seq,
                max_label_txg: block_max,
            });
            st.next_offset_bytes = next;
            st.next_sequence = seq + 1;
            images.push((offset, payload, records.len()));
        }
        Some(Reserved { images, batch_no, failed_before })
    }

    /// Writes a batch's reserved blocks and records how the writes went in the chain's state;
    /// returns the number of records in each block.
    async fn write_log_blocks(
        &self,
        chain: &LogChain,
        images: Vec<(u64, IoBuf, usize)>,
        batch_no: u64,
        max_label: TxgId,
        durable_writes: bool,
    ) -> PoolResult<Vec<usize>> {
        let mut writes = Vec::new();
        let mut record_counts = Vec::with_capacity(images.len());
        for (offset, payload, n) in images {
            record_counts.push(n);
            writes.push(self.devs.write_with(
                chain.phys.device,
                chain.phys.region_offset_bytes + offset,
                payload,
                durable_writes,
            ));
        }
        let mut written = Ok(());
        let mut buffers = Vec::with_capacity(writes.len());
        for (res, buf) in crate::join::join_all(writes).await {
            written = written.and(res);
            buffers.push(buf);
        }
        {
            let mut st = lock(&chain.state);
            for buf in buffers {
                st.give_back(buf);
            }
            if let Err(e) = &written {
                // Until a txg covers this batch, new batches go through txg syncs (they would
                // sit behind a block replay cannot read).
                st.failed_batch = st.failed_batch.max(batch_no);
                st.failed_batches.push(batch_no);
                st.failed = Some(*e);
                st.broken_until_txg = st.broken_until_txg.max(max_label);
            }
            st.written_ahead.push(batch_no);
            while let Some(at) = st.written_ahead.iter().position(|b| *b == st.written_batch + 1) {
                st.written_ahead.swap_remove(at);
                st.written_batch += 1;
            }
            LogChain::wake_all(&mut st);
        }
        written?;
        Ok(record_counts)
    }
}

/// Log blocks reserved in a chain for one batch, encoded and ready to write.
struct Reserved {
    /// (offset in the region, block image, records inside), in chain order.
    images: Vec<(u64, IoBuf, usize)>,
    /// The batch's number in its chain (from 1).
    batch_no: u64,
    /// The chain's newest failed batch when this one reserved.
    failed_before: u64,
}

/// Packs a batch into log blocks of at most [`MAX_LOG_BLOCK_BYTES`], in order.
fn pack_log_blocks(batch: Vec<LogRecord>) -> Vec<Vec<LogRecord>> {
    let mut blocks: Vec<Vec<LogRecord>> = vec![Vec::new()];
    let mut size = LOG_BLOCK_HEADER_BYTES;
    for r in batch {
        let n = r.encoded_len();
        if size + n > MAX_LOG_BLOCK_BYTES as usize && !blocks.last().is_some_and(Vec::is_empty) {
            blocks.push(Vec::new());
            size = LOG_BLOCK_HEADER_BYTES;
        }
        size += n;
        blocks.last_mut().expect("one block").push(r);
    }
    blocks
}

/// Waits until every earlier batch of the chain has finished its writes: this one is durable
/// only if none of them failed.
async fn wait_for_earlier_batches(
    chain: &LogChain,
    batch_no: u64,
    failed_before: u64,
) -> PoolResult<()> {
    // Every earlier block of the chain must be written (durable, with durable writes)
    // before this flush is issued or this commit is reported durable.
    std::future::poll_fn(|cx| {
        let mut st = lock(&chain.state);
        if st.written_batch >= batch_no {
            Poll::Ready(())
        } else {
            st.waiters.push(cx.waker().clone());
            Poll::Pending
        }
    })
    .await;
    let earlier_failed = {
        let st = lock(&chain.state);
        st.failed_batches
            .iter()
            .any(|&b| b > failed_before && b < batch_no)
            .then(|| st.failed.unwrap_or(IoError::Injected))
    };
    if let Some(e) = earlier_failed {
        // A block before ours is not on the device: replay would stop there.
        return Err(PoolError::Io(e));
    }
    Ok(())
}
