//! The intent log's on-disk format (docs/format.md §Intent log): log blocks (a 128-byte
//! header, checksummed, then records) and the records inside them, with their encoder and a
//! decoder that refuses a malformed block with its reason and never panics.

use bytemuck::{Pod, Zeroable};
use drivers::buffer::{IoBuf, SharedBuf};

use crate::copy_stats::{self, CopyPath};
use crate::format::{checksum, Checksum, SECTOR_BYTES};
use crate::units::TxgId;

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

impl LogBlockHeader {
    /// The header of block `sequence` of chain `chain`, `block_bytes` long, before
    /// [`encode_log_block`] fills in its record count, payload length and checksum.
    #[must_use]
    pub fn unsealed(
        pool_guid: u64,
        chain: u32,
        sequence: u64,
        next_offset_bytes: u64,
        max_label_txg: TxgId,
        block_bytes: u32,
    ) -> Self {
        Self {
            magic: LOG_BLOCK_MAGIC,
            pool_guid,
            sequence,
            next_offset_bytes,
            max_label_txg: max_label_txg.get(),
            chain,
            block_bytes,
            ..Self::zeroed()
        }
    }
}

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
    pub label_txg: TxgId,
    /// Volume.
    pub dataset_id: u64,
    /// The change.
    pub op: LogOp,
}

impl LogRecord {
    pub(super) fn encoded_len(&self) -> usize {
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
    pub(super) fn encode_at(&self, out: &mut [u8], at: usize) -> usize {
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
            label_txg: self.label_txg.get(),
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

/// Checks the header at the start of `first` (at least its first [`LOG_BLOCK_HEADER_BYTES`]):
/// identity, then lengths. The checksum is checked by [`decode_log_block`] once the whole block
/// is read.
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
pub(super) fn decode_records(payload: &[u8], count: u32) -> Option<Vec<LogRecord>> {
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
            label_txg: TxgId::new(h.label_txg),
            dataset_id: h.dataset_id,
            op,
        });
        at = data_end.next_multiple_of(8);
    }
    Some(out)
}
