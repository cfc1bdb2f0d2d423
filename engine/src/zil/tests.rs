//! Unit tests of the log block and record format.

use drivers::buffer::{IoBuf, SharedBuf};

use super::block::decode_records;
use super::*;
use crate::format::checksum;

#[test]
fn records_round_trip() {
    let records = vec![
        LogRecord {
            sequence: 5,
            label_txg: TxgId::new(3),
            dataset_id: 1,
            op: LogOp::Write {
                offset_bytes: 4096,
                data: SharedBuf::new(IoBuf::from_slice(&[7u8; 13])),
            },
        },
        LogRecord {
            sequence: 6,
            label_txg: TxgId::new(3),
            dataset_id: 1,
            op: LogOp::Zero { offset_bytes: 0, len_bytes: 1 << 20 },
        },
        LogRecord {
            sequence: 7,
            label_txg: TxgId::new(4),
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
            label_txg: TxgId::new(4),
            dataset_id: 2,
            op: LogOp::Write {
                offset_bytes: 8192,
                data: SharedBuf::new(IoBuf::from_slice(&[5u8; 100])),
            },
        },
        LogRecord {
            sequence: 10,
            label_txg: TxgId::new(4),
            dataset_id: 2,
            op: LogOp::Zero { offset_bytes: 0, len_bytes: 4096 },
        },
    ];
    let len = log_block_bytes(&records);
    let header = LogBlockHeader::unsealed(
        expect.pool_guid,
        expect.chain,
        expect.sequence,
        len,
        TxgId::new(4),
        u32::try_from(len).expect("small"),
    );
    let mut block = vec![0u8; len as usize];
    encode_log_block(&mut block, header, &records);
    (block, records)
}

/// Rewrites the header of `block` with `edit` applied and a checksum that matches again.
fn reseal(block: &mut [u8], edit: impl FnOnce(&mut LogBlockHeader)) {
    let mut header: LogBlockHeader = bytemuck::pod_read_unaligned(&block[..LOG_BLOCK_HEADER_BYTES]);
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
        label_txg: TxgId::new(1),
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
