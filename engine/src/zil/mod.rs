//! The intent log (ZIL): per-shard chains of checksummed, sequence-numbered log blocks in a
//! circular region of the log device or of the pool (docs/format.md §Intent log).
//!
//! A FUA write (or any write with the write cache off) appends a record to its shard's chain
//! and waits for the chain to be committed. Whoever finds no commit in progress becomes the
//! writer: it takes *every* pending record (group commit — concurrent sync writes share the
//! log writes and the flush), packs them into log blocks, writes them and flushes the log's
//! device. Records carry the txg their change belongs to; once that txg is durable the records
//! are obsolete and the chain's head moves past them (trim). At import every chain is read
//! from its head while blocks verify and follow in sequence, and the records newer than the
//! durable txg are re-applied in global sequence order (replay).
//!
//! The log block and record format is in `block.rs`, the commit path in `commit.rs`, replay in
//! `replay.rs`; this module holds the chains and their division among the shards.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Waker;

use drivers::buffer::IoBuf;
use drivers::error::IoError;

use crate::pool::lock;
use crate::pool_root::LogChainPhys;
use crate::units::TxgId;

mod block;
mod commit;
mod replay;
#[cfg(test)]
mod tests;

pub use block::{
    check_log_block_header, decode_log_block, encode_log_block, log_block_bytes, BlockRef,
    LogBlockError, LogBlockExpect, LogBlockHeader, LogOp, LogRecord, LogRecordHeader,
    LOG_BLOCK_HEADER_BYTES, LOG_BLOCK_MAGIC, MAX_LOG_BLOCK_BYTES, RECORD_WRITE, RECORD_WRITE_BLOCK,
    RECORD_WRITE_SAME, RECORD_ZERO,
};

/// A block written or being written, still needed until its records' txgs are durable.
#[derive(Debug, Clone, Copy)]
struct LiveBlock {
    offset_bytes: u64,
    sequence: u64,
    max_label_txg: TxgId,
}

#[derive(Default)]
struct ChainState {
    pending: Vec<LogRecord>,
    /// Tickets: every append takes the next; a commit covers all tickets taken before it.
    next_ticket: u64,
    committed_ticket: u64,
    /// Batches being written (at most [`MAX_COMMITS_IN_FLIGHT`]).
    writers_active: usize,
    /// Number of the next batch that reserves chain blocks (from 1), in chain order.
    next_batch: u64,
    /// Every batch up to this one has finished its block writes (well or not).
    written_batch: u64,
    /// Batches above `written_batch` whose writes have finished.
    written_ahead: Vec<u64>,
    /// Newest batch whose block writes failed (0: none).
    failed_batch: u64,
    /// Every batch whose block writes failed since no other batch was in flight: a batch is
    /// durable only if none before it failed, and the newest failure alone does not say that
    /// (batch 1 failing, then batch 5, leaves batch 2 behind a block replay cannot read).
    failed_batches: Vec<u64>,
    waiters: Vec<Waker>,
    next_offset_bytes: u64,
    next_sequence: u64,
    live: VecDeque<LiveBlock>,
    /// Tickets up to this one were in a batch whose write failed.
    failed_ticket: u64,
    /// The error of that batch.
    failed: Option<IoError>,
    /// A failed block may sit in the chain: until this txg is durable (and the head has moved
    /// past it) commits go through a txg sync instead of the chain.
    broken_until_txg: TxgId,
    /// Log block buffers back from their writes, [`MAX_LOG_BLOCK_BYTES`] of capacity each,
    /// for the next blocks (no allocation and no zeroing per commit).
    spare: Vec<IoBuf>,
}

/// Spare log block buffers a chain keeps.
const SPARE_LOG_BUFFERS: usize = 2 * MAX_COMMITS_IN_FLIGHT;

/// Capacity of a log block buffer: the largest block.
const LOG_BUFFER_BYTES: usize = MAX_LOG_BLOCK_BYTES as usize;

impl ChainState {
    /// A buffer of `len` bytes for a log block; its content is whatever an earlier block left
    /// (the encoder writes every byte).
    fn block_buffer(&mut self, len: usize) -> IoBuf {
        let mut buf = self.spare.pop().unwrap_or_else(|| IoBuf::zeroed(LOG_BUFFER_BYTES));
        buf.set_len(len);
        buf
    }

    /// Keeps a written block's buffer for reuse.
    fn give_back(&mut self, buf: IoBuf) {
        if self.spare.len() < SPARE_LOG_BUFFERS && buf.capacity() == LOG_BUFFER_BYTES {
            self.spare.push(buf);
        }
    }
}

/// Commits of one chain in flight at once. A commit's flush is issued only once every
/// earlier batch of the chain has finished its writes, so an acknowledged record never sits
/// behind a block that is not on the device; the kernel merges the concurrent flushes.
const MAX_COMMITS_IN_FLIGHT: usize = 8;

/// One chain.
pub struct LogChain {
    index: u32,
    phys: LogChainPhys,
    state: Mutex<ChainState>,
}

impl LogChain {
    fn wake_all(st: &mut ChainState) {
        for w in st.waiters.drain(..) {
            w.wake();
        }
    }

    /// True when a block of `len` fits at the next position without overwriting a live one.
    fn fits(&self, st: &ChainState, len: u64) -> bool {
        match st.live.front() {
            None => true,
            Some(tail) => {
                st.next_offset_bytes > tail.offset_bytes
                    || st.next_offset_bytes + len <= tail.offset_bytes
            }
        }
    }

    /// Bytes of the region between the oldest live block and the next write position.
    fn used_bytes(&self, st: &ChainState) -> u64 {
        match st.live.front() {
            None => 0,
            Some(tail) if st.next_offset_bytes > tail.offset_bytes => {
                st.next_offset_bytes - tail.offset_bytes
            }
            Some(tail) => self.phys.region_bytes - tail.offset_bytes + st.next_offset_bytes,
        }
    }

    /// Where the block after one of `len` at `offset` starts (wrapping when the largest block
    /// would not fit before the end).
    fn next_after(&self, offset: u64, len: u64) -> u64 {
        let next = offset + len;
        if next + MAX_LOG_BLOCK_BYTES > self.phys.region_bytes {
            0
        } else {
            next
        }
    }
}

/// All chains of the pool.
///
/// Chains are divided among the shards at runtime (nothing on disk records it): with `k` =
/// min(shards, chains), shard `s` owns the chains `c` with `c % k == s % k`. A shard commits to
/// one of its chains at a time and moves to another of its own once that one is half full and
/// the other has been trimmed below a quarter; a txg sync is requested only when no such chain
/// is left. A pool used by one shard thus fills all its chains before it needs a txg, so its
/// txgs are as large as the whole log allows. Replay orders records by their global sequence
/// across chains, so which chain held a record does not matter to it.
pub struct Zil {
    guid: u64,
    chains: Vec<LogChain>,
    /// Shards the chains are divided among (at least 1).
    shards: usize,
    /// Per owner (`s % k`): the chain it commits to now.
    current: Vec<AtomicUsize>,
}

impl Zil {
    /// Each chain's region: (device, bytes).
    pub(crate) fn regions(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.chains.iter().map(|c| (c.phys.device, c.phys.region_bytes))
    }

    /// Chains as recorded in the pool root (heads become the start of replay).
    #[must_use]
    pub fn new(guid: u64, chains: &[LogChainPhys], shards: usize) -> Zil {
        let owners = shards.clamp(1, chains.len().max(1));
        Zil {
            guid,
            shards: shards.max(1),
            current: (0..owners).map(AtomicUsize::new).collect(),
            chains: chains
                .iter()
                .enumerate()
                .map(|(i, phys)| LogChain {
                    index: u32::try_from(i).expect("chains fit"),
                    phys: *phys,
                    state: Mutex::new(ChainState {
                        next_offset_bytes: phys.head_offset_bytes,
                        next_sequence: phys.head_sequence.max(1),
                        ..ChainState::default()
                    }),
                })
                .collect(),
        }
    }

    /// Chain heads to record in the root of `txg`: the oldest block that may hold records
    /// newer than `txg`.
    #[must_use]
    pub fn heads_for(&self, txg: TxgId) -> Vec<LogChainPhys> {
        self.chains
            .iter()
            .map(|c| {
                let st = lock(&c.state);
                let (offset, seq) = st
                    .live
                    .iter()
                    .find(|b| b.max_label_txg > txg)
                    .map_or((st.next_offset_bytes, st.next_sequence), |b| {
                        (b.offset_bytes, b.sequence)
                    });
                LogChainPhys { head_offset_bytes: offset, head_sequence: seq, ..c.phys }
            })
            .collect()
    }

    /// `txg` is durable: blocks holding only older records are no longer needed.
    pub fn trim(&self, txg: TxgId) {
        for c in &self.chains {
            let mut st = lock(&c.state);
            while st.live.front().is_some_and(|b| b.max_label_txg <= txg) {
                st.live.pop_front();
            }
        }
    }

    /// Number of chains.
    #[must_use]
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }

    /// Number of owners the chains are divided among.
    fn owners(&self) -> usize {
        self.shards.clamp(1, self.chains.len().max(1))
    }

    /// Index of the chain `shard` commits to now (the chain set must not be empty).
    fn chain_for(&self, shard: usize) -> usize {
        let owner = shard % self.owners();
        self.current[owner].load(Ordering::Relaxed)
    }

    /// Chain `index` is half full: moves its owner to another of its chains that is less than
    /// a quarter full and holds no failed block (`durable_txg` is the newest durable txg).
    /// False when there is none (a txg sync must trim the chains).
    fn move_owner_from(&self, index: usize, durable_txg: TxgId) -> bool {
        let k = self.owners();
        let owner = index % k;
        let spare = (owner..self.chains.len()).step_by(k).filter(|&c| c != index).find(|&c| {
            let chain = &self.chains[c];
            let st = lock(&chain.state);
            chain.used_bytes(&st) < chain.phys.region_bytes / 4
                && st.broken_until_txg <= durable_txg
        });
        match spare {
            Some(c) => {
                let _ = self.current[owner].compare_exchange(
                    index,
                    c,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                true
            }
            None => false,
        }
    }
}
