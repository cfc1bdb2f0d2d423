//! Fuzzes the CDB decoder and then the whole command path of a logical unit over a small
//! in-memory volume: any byte string must give a `CommandResult`, never a panic.
//!
//! Input: byte 0 selects the block size (even: 512, odd: 4096); the next 16 bytes are the
//! CDB; the rest is the Data-Out.

#![no_main]

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use drivers::buffer::IoBuf;
use engine::memory_volume::MemoryVolume;
use libfuzzer_sys::fuzz_target;
use target_iscsi::scsi::{cdb, ItNexus, LogicalUnit, LunConfig};

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn unit(block_bytes: u32) -> &'static LogicalUnit {
    static LU512: OnceLock<LogicalUnit> = OnceLock::new();
    static LU4K: OnceLock<LogicalUnit> = OnceLock::new();
    let cell = if block_bytes == 512 { &LU512 } else { &LU4K };
    cell.get_or_init(|| {
        let vol = Arc::new(MemoryVolume::new(block_bytes, 4096, 64));
        LogicalUnit::new(LunConfig::new("iqn.2024-01.io.ferrite:fuzz", 0), vol).expect("valid geometry")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let (cdb_bytes, data_out) = rest.split_at(rest.len().min(16));
    if let Ok(cmd) = cdb::parse(cdb_bytes) {
        let _ = cmd.data_out_bytes(512);
        let _ = cmd.direction(4096);
        let _ = cmd.access();
    }
    let lu = unit(if sel % 2 == 0 { 512 } else { 4096 });
    let nexus = ItNexus::new(u64::from(sel >> 1), "iqn.2024-01.fuzz:init", [0x40, 0, 0, 0, 0, sel], "iqn.2024-01.io.ferrite:fuzz", 1);
    if lu.prepare(&nexus, cdb_bytes, data_out.len() as u64).is_ok() {
        let buf = (!data_out.is_empty()).then(|| IoBuf::from_slice(data_out));
        let _ = block_on(lu.execute(&nexus, cdb_bytes, buf));
    }
});
