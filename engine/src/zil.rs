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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

use bytemuck::{Pod, Zeroable};
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoError;

use crate::copy_stats::{self, CopyPath};
use crate::error::{PoolError, PoolResult};
use crate::format::{checksum, Checksum, SECTOR_BYTES};
use crate::pool::{lock, Pool};
use crate::pool_root::LogChainPhys;

/// "FERRZLOG".
pub const LOG_BLOCK_MAGIC: u64 = u64::from_le_bytes(*b"FERRZLOG");

/// Largest log block (one record of a 128 KiB block plus headers fits).
pub const MAX_LOG_BLOCK_BYTES: u64 = 256 * 1024;

/// Header of a log block, 128 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct LogBlockHeader {
    /// [`LOG_BLOCK_MAGIC`].
    pub magic: u64,
    /// Pool identity.
    pub pool_guid: u64,
    /// Position of the block in its chain (consecutive blocks differ by one).
    pub sequence: u64,
    /// Offset (inside the region) of the next block of the chain.
    pub next_offset_bytes: u64,
    /// Newest txg label of the records inside.
    pub max_label_txg: u64,
    /// Chain index.
    pub chain: u32,
    /// Records inside.
    pub record_count: u32,
    /// Bytes of the block on disk (a multiple of 4096).
    pub block_bytes: u32,
    /// Bytes of header and records (the rest is zero padding).
    pub payload_bytes: u32,
    /// Reserved, zero.
    pub reserved: [u64; 7],
    /// xxh3-128 of the whole block with this field zeroed.
    pub checksum: Checksum,
}

const _: () = assert!(LOG_BLOCK_HEADER_BYTES == 128);

/// Header of a log record, 48 bytes; inline data follows, padded to 8 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct LogRecordHeader {
    /// Global order of the change (assigned under the partition lock).
    pub sequence: u64,
    /// Txg the change belongs to; durable once that txg is.
    pub label_txg: u64,
    /// Volume.
    pub dataset_id: u64,
    /// Byte offset in the volume.
    pub offset_bytes: u64,
    /// Byte length of the change.
    pub len_bytes: u64,
    /// [`RECORD_WRITE`] or [`RECORD_ZERO`].
    pub kind: u32,
    /// Inline data bytes following the header.
    pub data_bytes: u32,
}

const _: () = assert!(std::mem::size_of::<LogRecordHeader>() == 48);

/// A write with its data inline.
pub const RECORD_WRITE: u32 = 1;
/// An unmap / write-zeroes.
pub const RECORD_ZERO: u32 = 2;
/// A WRITE SAME: one logical block of pattern inline, repeated over `len_bytes`.
pub const RECORD_WRITE_SAME: u32 = 3;
/// A write of one whole block already written to its own place in the pool: the record holds
/// a [`BlockRef`] (where, and its checksum) instead of the data.
pub const RECORD_WRITE_BLOCK: u32 = 4;

/// The payload of a [`RECORD_WRITE_BLOCK`] record, 32 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockRef {
    /// Byte offset of the block on its device.
    pub offset_bytes: u64,
    /// Device index.
    pub device: u16,
    /// Reserved, zero.
    pub reserved: [u16; 3],
    /// xxh3-128 of the block's `len_bytes` (the record's length).
    pub checksum: Checksum,
}

const _: () = assert!(std::mem::size_of::<BlockRef>() == 32);

/// What a record changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOp {
    /// Bytes written at a volume offset.
    Write {
        /// Byte offset in the volume.
        offset_bytes: u64,
        /// The data: a view of the written buffer, encoded into the log block.
        data: SharedBuf,
    },
    /// A range that now reads as zeros.
    Zero {
        /// Byte offset in the volume.
        offset_bytes: u64,
        /// Length.
        len_bytes: u64,
    },
    /// Whole blocks written to their place in the pool before the record (DESIGN §4: large
    /// writes point to their block); replay reads them back from there.
    WriteBlock {
        /// Byte offset in the volume.
        offset_bytes: u64,
        /// Where the data lies: device, offset and length (one volume block).
        extent: crate::block_pointer::Extent,
        /// xxh3-128 of the data.
        checksum: Checksum,
    },
    /// A range filled with one logical block of pattern, repeated.
    WriteSame {
        /// Byte offset in the volume.
        offset_bytes: u64,
        /// Length (a multiple of the pattern's).
        len_bytes: u64,
        /// One logical block.
        pattern: Vec<u8>,
    },
}

/// One logged change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Global order.
    pub sequence: u64,
    /// Txg the change belongs to.
    pub label_txg: u64,
    /// Volume.
    pub dataset_id: u64,
    /// The change.
    pub op: LogOp,
}

impl LogRecord {
    fn encoded_len(&self) -> usize {
        let data = match &self.op {
            LogOp::Write { data, .. } => data.len(),
            LogOp::WriteSame { pattern, .. } => pattern.len(),
            LogOp::WriteBlock { .. } => std::mem::size_of::<BlockRef>(),
            LogOp::Zero { .. } => 0,
        };
        48 + data.next_multiple_of(8)
    }

    /// Encodes the record at `out[at..]` (which must hold `encoded_len` bytes; every one of
    /// them is written, padding as zeros); returns the position after it.
    fn encode_at(&self, out: &mut [u8], at: usize) -> usize {
        let block_ref;
        let (kind, offset, len, data): (u32, u64, u64, &[u8]) = match &self.op {
            LogOp::WriteBlock { offset_bytes, extent, checksum } => {
                block_ref = BlockRef {
                    offset_bytes: extent.offset_bytes,
                    device: extent.device,
                    reserved: [0; 3],
                    checksum: *checksum,
                };
                (
                    RECORD_WRITE_BLOCK,
                    *offset_bytes,
                    extent.len_bytes,
                    bytemuck::bytes_of(&block_ref),
                )
            }
            LogOp::Write { offset_bytes, data } => {
                (RECORD_WRITE, *offset_bytes, data.len() as u64, &data[..])
            }
            LogOp::Zero { offset_bytes, len_bytes } => {
                (RECORD_ZERO, *offset_bytes, *len_bytes, &[])
            }
            LogOp::WriteSame { offset_bytes, len_bytes, pattern } => {
                (RECORD_WRITE_SAME, *offset_bytes, *len_bytes, pattern)
            }
        };
        let header = LogRecordHeader {
            sequence: self.sequence,
            label_txg: self.label_txg,
            dataset_id: self.dataset_id,
            offset_bytes: offset,
            len_bytes: len,
            kind,
            data_bytes: u32::try_from(data.len()).expect("record data fits"),
        };
        out[at..at + 48].copy_from_slice(bytemuck::bytes_of(&header));
        // The log block is its own image of the data (DESIGN §4: small writes go inline).
        out[at + 48..at + 48 + data.len()].copy_from_slice(data);
        let end = at + self.encoded_len();
        out[at + 48 + data.len()..end].fill(0);
        if kind != RECORD_WRITE_BLOCK {
            copy_stats::record(CopyPath::LogWrite, data.len());
        }
        end
    }
}

/// Bytes of a [`LogBlockHeader`].
pub const LOG_BLOCK_HEADER_BYTES: usize = std::mem::size_of::<LogBlockHeader>();

/// Why a log block was not accepted. Replay ends its chain at the first such block: either it
/// is not the next block of the chain (the chain ends there) or it is corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogBlockError {
    /// Fewer bytes than a header, or than the header's `block_bytes`.
    Short,
    /// Magic, pool, chain or sequence is not the one expected: not the next block of the chain.
    NotNext,
    /// `block_bytes` is not a whole number of sectors up to [`MAX_LOG_BLOCK_BYTES`], or
    /// `payload_bytes` is below the header size or past `block_bytes`.
    BadLength,
    /// The checksum does not match.
    Checksum,
    /// The records do not decode (a record past the payload, an unknown kind, a bad range).
    Records,
}

impl std::fmt::Display for LogBlockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogBlockError::Short => "intent-log block shorter than its header or its block_bytes",
            LogBlockError::NotNext => "not the next intent-log block of the chain",
            LogBlockError::BadLength => {
                "intent-log block lengths out of range (block_bytes a multiple of 4096 up to \
                 256 KiB, payload_bytes from 128 to block_bytes)"
            }
            LogBlockError::Checksum => "intent-log block failed its checksum",
            LogBlockError::Records => "intent-log block records are malformed",
        })
    }
}

/// What a log block must carry to be the next one of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBlockExpect {
    /// Pool identity.
    pub pool_guid: u64,
    /// Chain index.
    pub chain: u32,
    /// Sequence of the next block.
    pub sequence: u64,
}

/// Checks the header at the start of `first` (at least its first 128 bytes): identity, then
/// lengths. The checksum is checked by [`decode_log_block`] once the whole block is read.
///
/// # Errors
/// [`LogBlockError::Short`], [`LogBlockError::NotNext`] or [`LogBlockError::BadLength`].
pub fn check_log_block_header(
    first: &[u8],
    expect: &LogBlockExpect,
) -> Result<LogBlockHeader, LogBlockError> {
    let bytes = first.get(..LOG_BLOCK_HEADER_BYTES).ok_or(LogBlockError::Short)?;
    let header: LogBlockHeader = bytemuck::pod_read_unaligned(bytes);
    if header.magic != LOG_BLOCK_MAGIC
        || header.pool_guid != expect.pool_guid
        || header.chain != expect.chain
        || header.sequence != expect.sequence
    {
        return Err(LogBlockError::NotNext);
    }
    let len = u64::from(header.block_bytes);
    let payload = header.payload_bytes as usize;
    if len < SECTOR_BYTES
        || !len.is_multiple_of(SECTOR_BYTES)
        || len > MAX_LOG_BLOCK_BYTES
        || payload < LOG_BLOCK_HEADER_BYTES
        || payload > header.block_bytes as usize
    {
        return Err(LogBlockError::BadLength);
    }
    Ok(header)
}

/// Decodes a whole log block (`block_bytes` long) expected at `expect`'s place in its chain:
/// header, checksum, then records.
///
/// # Errors
/// A [`LogBlockError`] naming what is wrong; never a panic, whatever the bytes.
pub fn decode_log_block(
    block: &[u8],
    expect: &LogBlockExpect,
) -> Result<(LogBlockHeader, Vec<LogRecord>), LogBlockError> {
    let header = check_log_block_header(block, expect)?;
    let block = block.get(..header.block_bytes as usize).ok_or(LogBlockError::Short)?;
    let mut zeroed = header;
    zeroed.checksum = [0, 0];
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(bytemuck::bytes_of(&zeroed));
    hasher.update(&block[LOG_BLOCK_HEADER_BYTES..]);
    let sum = hasher.digest128();
    #[allow(clippy::cast_possible_truncation)]
    if [sum as u64, (sum >> 64) as u64] != header.checksum {
        return Err(LogBlockError::Checksum);
    }
    let payload = block
        .get(LOG_BLOCK_HEADER_BYTES..header.payload_bytes as usize)
        .ok_or(LogBlockError::BadLength)?;
    let records = decode_records(payload, header.record_count).ok_or(LogBlockError::Records)?;
    Ok((header, records))
}

/// Encodes `records` as one log block of `header.block_bytes` (a multiple of 4096 that holds
/// them) into `out`, which must be that long: sets `record_count`, `payload_bytes` and the
/// checksum, zeroes the padding, and returns the header as written.
///
/// # Panics
/// When `out` is not `header.block_bytes` long or the records do not fit (a programmer error:
/// the writer sizes blocks from [`LogRecord`]'s encoded length).
pub fn encode_log_block(
    out: &mut [u8],
    mut header: LogBlockHeader,
    records: &[LogRecord],
) -> LogBlockHeader {
    assert_eq!(out.len(), header.block_bytes as usize, "log block buffer length");
    let mut payload_bytes = LOG_BLOCK_HEADER_BYTES;
    for r in records {
        payload_bytes = r.encode_at(out, payload_bytes);
    }
    out[payload_bytes..].fill(0);
    header.record_count = u32::try_from(records.len()).expect("records fit");
    header.payload_bytes = u32::try_from(payload_bytes).expect("block fits");
    header.checksum = [0, 0];
    out[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
    header.checksum = checksum(out);
    out[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
    header
}

/// Bytes of the smallest log block that holds `records`.
#[must_use]
pub fn log_block_bytes(records: &[LogRecord]) -> u64 {
    let payload =
        LOG_BLOCK_HEADER_BYTES + records.iter().map(LogRecord::encoded_len).sum::<usize>();
    (payload as u64).next_multiple_of(SECTOR_BYTES)
}

/// Decodes the records of a verified block payload. `None` when malformed.
fn decode_records(payload: &[u8], count: u32) -> Option<Vec<LogRecord>> {
    // The count comes from the device: reserve no more records than the payload can hold
    // (each needs its 48-byte header), so a damaged count cannot ask for gigabytes.
    let mut out = Vec::with_capacity((count as usize).min(payload.len() / 48));
    let mut at = 0usize;
    for _ in 0..count {
        let end = at.checked_add(48)?;
        let h: LogRecordHeader = bytemuck::pod_read_unaligned(payload.get(at..end)?);
        let data_end = end.checked_add(h.data_bytes as usize)?;
        let op = match h.kind {
            RECORD_WRITE => LogOp::Write {
                offset_bytes: h.offset_bytes,
                data: SharedBuf::new(IoBuf::from_slice(payload.get(end..data_end)?)),
            },
            RECORD_ZERO => LogOp::Zero { offset_bytes: h.offset_bytes, len_bytes: h.len_bytes },
            RECORD_WRITE_BLOCK => {
                if h.data_bytes as usize != std::mem::size_of::<BlockRef>() {
                    return None;
                }
                let r: BlockRef = bytemuck::pod_read_unaligned(
                    payload.get(end..end.checked_add(std::mem::size_of::<BlockRef>())?)?,
                );
                if h.len_bytes == 0 || !h.len_bytes.is_multiple_of(SECTOR_BYTES) {
                    return None;
                }
                LogOp::WriteBlock {
                    offset_bytes: h.offset_bytes,
                    extent: crate::block_pointer::Extent::new(
                        r.device,
                        r.offset_bytes,
                        h.len_bytes,
                    ),
                    checksum: r.checksum,
                }
            }
            RECORD_WRITE_SAME => {
                let pattern = payload.get(end..data_end)?.to_vec();
                let unit = u64::try_from(pattern.len()).ok()?;
                if unit == 0 || !h.len_bytes.is_multiple_of(unit) {
                    return None;
                }
                LogOp::WriteSame { offset_bytes: h.offset_bytes, len_bytes: h.len_bytes, pattern }
            }
            _ => return None,
        };
        out.push(LogRecord {
            sequence: h.sequence,
            label_txg: h.label_txg,
            dataset_id: h.dataset_id,
            op,
        });
        at = data_end.next_multiple_of(8);
    }
    Some(out)
}

/// A block written or being written, still needed until its records' txgs are durable.
#[derive(Debug, Clone, Copy)]
struct LiveBlock {
    offset_bytes: u64,
    sequence: u64,
    max_label_txg: u64,
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
    broken_until_txg: u64,
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

enum Step {
    Done,
    Write(Vec<LogRecord>, u64),
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
    pub fn heads_for(&self, txg: u64) -> Vec<LogChainPhys> {
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
    pub fn trim(&self, txg: u64) {
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
    fn move_owner_from(&self, index: usize, durable_txg: u64) -> bool {
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
            let max_label = batch.iter().map(|r| r.label_txg).max().unwrap_or(0);
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
        let max_label = batch.iter().map(|r| r.label_txg).max().unwrap_or(0);
        // Pack into blocks.
        let mut blocks: Vec<Vec<LogRecord>> = vec![Vec::new()];
        let mut size = LOG_BLOCK_HEADER_BYTES;
        for r in batch {
            let n = r.encoded_len();
            if size + n > MAX_LOG_BLOCK_BYTES as usize && !blocks.last().is_some_and(Vec::is_empty)
            {
                blocks.push(Vec::new());
                size = LOG_BLOCK_HEADER_BYTES;
            }
            size += n;
            blocks.last_mut().expect("one block").push(r);
        }
        let mut images = Vec::new();
        let (mut batch_no, mut failed_before) = (0, 0);
        let full = 'reserve: {
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
                break 'reserve true;
            }
            if st.writers_active <= 1 {
                // No other batch in flight: earlier failures lie behind a durable txg.
                st.failed_batches.clear();
            }
            batch_no = st.next_batch.max(1);
            st.next_batch = batch_no + 1;
            failed_before = st.failed_batch;
            for (records, len) in blocks.into_iter().zip(lens) {
                let offset = st.next_offset_bytes;
                let seq = st.next_sequence;
                let next = chain.next_after(offset, len);
                let block_max = records.iter().map(|r| r.label_txg).max().unwrap_or(0);
                let mut payload = st.block_buffer(usize::try_from(len).expect("block fits"));
                let header = LogBlockHeader {
                    magic: LOG_BLOCK_MAGIC,
                    pool_guid: self.zil.guid,
                    sequence: seq,
                    next_offset_bytes: next,
                    max_label_txg: block_max,
                    chain: chain.index,
                    record_count: 0,
                    block_bytes: u32::try_from(len).expect("block fits"),
                    payload_bytes: 0,
                    reserved: [0; 7],
                    checksum: [0, 0],
                };
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
            false
        };
        let half_full = {
            let st = lock(&chain.state);
            chain.used_bytes(&st) > chain.phys.region_bytes / 2
        };
        if !full && half_full && !self.zil.move_owner_from(chain.index as usize, self.durable_txg())
        {
            self.txg.sync_requested.store(true, Ordering::SeqCst);
            self.txg.kick.wake_all();
        }
        if full {
            // The region is full (or holds a failed block): a txg sync makes every record
            // obsolete.
            return self.ensure_durable(max_label).await;
        }
        // A device that makes single writes durable (RWF_DSYNC, FUA) takes the log blocks that
        // way and needs no flush after them: one trip to the device per commit instead of two.
        let durable_writes = self.devs.durable_writes(chain.phys.device);
        let _active = crate::pool::InProgress::new(&self.stats.log_writes_in_progress);
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
        if !durable_writes {
            self.devs.flush(chain.phys.device).await?;
        }
        let records: usize = record_counts.iter().sum();
        self.stats.log_blocks_written.fetch_add(record_counts.len() as u64, Ordering::Relaxed);
        self.stats.log_records_written.fetch_add(records as u64, Ordering::Relaxed);
        self.stats.log_commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reads every chain from its head and re-applies the records newer than `durable_txg`,
    /// then commits them in a txg. Called once by import.
    pub(crate) async fn replay_log(&self, durable_txg: u64) -> PoolResult<()> {
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
        let txg = self.txg.open_txg.load(Ordering::SeqCst);
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
                max_label_txg: header.max_label_txg,
            });
            offset = header.next_offset_bytes;
            seq += 1;
        }
        (records, offset, seq, live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let records = vec![
            LogRecord {
                sequence: 5,
                label_txg: 3,
                dataset_id: 1,
                op: LogOp::Write {
                    offset_bytes: 4096,
                    data: SharedBuf::new(IoBuf::from_slice(&[7u8; 13])),
                },
            },
            LogRecord {
                sequence: 6,
                label_txg: 3,
                dataset_id: 1,
                op: LogOp::Zero { offset_bytes: 0, len_bytes: 1 << 20 },
            },
            LogRecord {
                sequence: 7,
                label_txg: 4,
                dataset_id: 1,
                op: LogOp::WriteSame {
                    offset_bytes: 512,
                    len_bytes: 512 * 100,
                    pattern: (0..512).map(|i| (i % 251) as u8).collect(),
                },
            },
        ];
        let mut out = vec![0u8; records.iter().map(LogRecord::encoded_len).sum::<usize>()];
        let mut at = 0;
        for r in &records {
            at = r.encode_at(&mut out, at);
        }
        assert_eq!(at, out.len());
        assert_eq!(decode_records(&out, 3), Some(records));
        assert_eq!(decode_records(&out[..40], 1), None);
    }

    fn sample_block(expect: &LogBlockExpect) -> (Vec<u8>, Vec<LogRecord>) {
        let records = vec![
            LogRecord {
                sequence: 9,
                label_txg: 4,
                dataset_id: 2,
                op: LogOp::Write {
                    offset_bytes: 8192,
                    data: SharedBuf::new(IoBuf::from_slice(&[5u8; 100])),
                },
            },
            LogRecord {
                sequence: 10,
                label_txg: 4,
                dataset_id: 2,
                op: LogOp::Zero { offset_bytes: 0, len_bytes: 4096 },
            },
        ];
        let len = log_block_bytes(&records);
        let header = LogBlockHeader {
            magic: LOG_BLOCK_MAGIC,
            pool_guid: expect.pool_guid,
            sequence: expect.sequence,
            next_offset_bytes: len,
            max_label_txg: 4,
            chain: expect.chain,
            record_count: 0,
            block_bytes: u32::try_from(len).expect("small"),
            payload_bytes: 0,
            reserved: [0; 7],
            checksum: [0, 0],
        };
        let mut block = vec![0u8; len as usize];
        encode_log_block(&mut block, header, &records);
        (block, records)
    }

    /// Rewrites the header of `block` with `edit` applied and a checksum that matches again.
    fn reseal(block: &mut [u8], edit: impl FnOnce(&mut LogBlockHeader)) {
        let mut header: LogBlockHeader =
            bytemuck::pod_read_unaligned(&block[..LOG_BLOCK_HEADER_BYTES]);
        edit(&mut header);
        header.checksum = [0, 0];
        block[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
        header.checksum = checksum(block);
        block[..LOG_BLOCK_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
    }

    const EXPECT: LogBlockExpect = LogBlockExpect { pool_guid: 77, chain: 1, sequence: 3 };

    #[test]
    fn log_block_round_trips() {
        let (block, records) = sample_block(&EXPECT);
        let (header, back) = decode_log_block(&block, &EXPECT).expect("valid block");
        assert_eq!(back, records);
        assert_eq!(header.record_count, 2);
        assert_eq!(header.payload_bytes as usize, 128 + 48 + 104 + 48);
    }

    #[test]
    fn payload_shorter_than_the_header_is_a_corrupt_block_not_a_panic() {
        let (mut block, _) = sample_block(&EXPECT);
        for payload in [0, 64, 127] {
            reseal(&mut block, |h| {
                h.payload_bytes = payload;
                h.record_count = 0;
            });
            assert_eq!(decode_log_block(&block, &EXPECT), Err(LogBlockError::BadLength));
            assert_eq!(check_log_block_header(&block, &EXPECT), Err(LogBlockError::BadLength));
        }
    }

    #[test]
    fn a_record_count_past_the_payload_is_refused_without_reserving_it() {
        let (mut block, _) = sample_block(&EXPECT);
        reseal(&mut block, |h| h.record_count = u32::MAX);
        assert_eq!(decode_log_block(&block, &EXPECT), Err(LogBlockError::Records));
    }

    #[test]
    fn damaged_blocks_are_refused_with_their_reason() {
        let (block, _) = sample_block(&EXPECT);
        assert_eq!(decode_log_block(&block[..100], &EXPECT), Err(LogBlockError::Short));
        assert_eq!(decode_log_block(&block[..2048], &EXPECT), Err(LogBlockError::Short));
        let next = LogBlockExpect { sequence: 4, ..EXPECT };
        assert_eq!(decode_log_block(&block, &next), Err(LogBlockError::NotNext));
        let mut flipped = block.clone();
        flipped[200] ^= 1;
        assert_eq!(decode_log_block(&flipped, &EXPECT), Err(LogBlockError::Checksum));
        let mut past = block.clone();
        reseal(&mut past, |h| h.payload_bytes = h.block_bytes + 8);
        assert_eq!(decode_log_block(&past, &EXPECT), Err(LogBlockError::BadLength));
        let mut more = block.clone();
        reseal(&mut more, |h| h.record_count += 1);
        assert_eq!(decode_log_block(&more, &EXPECT), Err(LogBlockError::Records));
        let mut huge = block;
        reseal(&mut huge, |h| h.block_bytes = 512 * 1024);
        assert_eq!(decode_log_block(&huge, &EXPECT), Err(LogBlockError::BadLength));
    }

    #[test]
    fn write_same_record_is_one_pattern_block_and_a_range_that_must_be_whole_patterns() {
        let record = LogRecord {
            sequence: 1,
            label_txg: 1,
            dataset_id: 1,
            op: LogOp::WriteSame { offset_bytes: 0, len_bytes: 1 << 30, pattern: vec![9u8; 4096] },
        };
        // A gibibyte range costs one pattern block in the log.
        assert_eq!(record.encoded_len(), 48 + 4096);
        let mut out = vec![0u8; record.encoded_len()];
        record.encode_at(&mut out, 0);
        // A range that is not a whole number of patterns is malformed.
        let mut header: LogRecordHeader = bytemuck::pod_read_unaligned(&out[..48]);
        header.len_bytes += 1;
        out[..48].copy_from_slice(bytemuck::bytes_of(&header));
        assert_eq!(decode_records(&out, 1), None);
    }
}
