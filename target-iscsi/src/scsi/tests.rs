//! Command-level tests of the SCSI layer against `MemoryVolume`.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use drivers::buffer::IoBuf;
use engine::memory_volume::MemoryVolume;

use super::*;

mod block;
mod control;
mod reservations;
mod sanitize;

/// Polls `f` to completion with a no-op waker (MemoryVolume completes at once; yields
/// just need another poll).
pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

pub(super) const BLOCKS: u64 = 4096;

pub(super) fn lu_with(logical: u32, physical: u32, config: LunConfig) -> Arc<LogicalUnit> {
    let vol = Arc::new(MemoryVolume::new(logical, physical, BLOCKS));
    match LogicalUnit::new(config, vol) {
        Ok(lu) => Arc::new(lu),
        Err(e) => panic!("LogicalUnit::new: {e}"),
    }
}

pub(super) fn lu(logical: u32, physical: u32) -> Arc<LogicalUnit> {
    lu_with(logical, physical, LunConfig::new("iqn.2024-01.io.ferrite:t1", 0))
}

/// TEST UNIT READY.
pub(super) const TEST_UNIT_READY_6: [u8; 6] = [super::cdb::opcode::TEST_UNIT_READY, 0, 0, 0, 0, 0];

/// A 512-byte LU and the nexus of initiator 1.
pub(super) fn lu_and_nexus() -> (Arc<LogicalUnit>, ItNexus) {
    (lu(512, 512), nexus(1))
}

/// A 512-byte LU and the nexuses of initiators 1 and 2.
pub(super) fn lu_and_two_nexuses() -> (Arc<LogicalUnit>, ItNexus, ItNexus) {
    (lu(512, 512), nexus(1), nexus(2))
}

pub(super) fn nexus(id: u64) -> ItNexus {
    ItNexus::new(
        id,
        &format!("iqn.2024-01.host:h{id}"),
        [0x40, 0, 0, 0, 0, id as u8],
        "iqn.2024-01.io.ferrite:t1",
        1,
    )
}

/// Runs prepare + execute like a transport that sends exactly what the CDB needs.
pub(super) fn run(lu: &LogicalUnit, n: &ItNexus, cdb: &[u8], data: Option<&[u8]>) -> CommandResult {
    let expected = data.map_or(0, |d| d.len() as u64);
    match lu.prepare_command(n, cdb, expected) {
        Ok((_, parsed)) => block_on(lu.execute_prepared(n, parsed, data.map(IoBuf::from_slice))),
        Err(r) => r,
    }
}

pub(super) fn good(r: &CommandResult) -> Vec<u8> {
    assert_eq!(r.status, ScsiStatus::Good, "sense {:02x?}", r.sense);
    r.data_in.as_ref().map(DataIn::to_vec).unwrap_or_default()
}

/// Asserts CHECK CONDITION with fixed-format sense key/asc/ascq; returns the sense bytes.
pub(super) fn check(r: &CommandResult, key: u8, asc: u8, ascq: u8) -> Vec<u8> {
    assert_eq!(r.status, ScsiStatus::CheckCondition, "data {:?}", r.data_in);
    let s = r.sense.clone().unwrap_or_default();
    assert_eq!((s[2] & 0x0F, s[12], s[13]), (key, asc, ascq), "sense {s:02x?}");
    s
}

pub(super) fn cdb10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub(super) fn cdb16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}
