//! Entry point for the `cdb_parse` cargo-fuzz target: decodes a CDB and runs it through a
//! logical unit over a small in-memory volume. Any input must give a `CommandResult`,
//! never a panic.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use drivers::buffer::IoBuf;
use engine::memory_volume::MemoryVolume;

use super::{cdb, ItNexus, LogicalUnit, LunConfig};

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn unit(block_bytes: u32) -> Option<&'static LogicalUnit> {
    static LU512: OnceLock<Option<LogicalUnit>> = OnceLock::new();
    static LU4K: OnceLock<Option<LogicalUnit>> = OnceLock::new();
    let cell = if block_bytes == 512 { &LU512 } else { &LU4K };
    cell.get_or_init(|| {
        let vol = Arc::new(MemoryVolume::new(block_bytes, 4096, 64));
        let mut config = LunConfig::new("iqn.2024-01.io.ferrite:fuzz", 0);
        // No reactor runs here: a sanitize operation runs inside its command.
        config.background = super::config::BackgroundWork::InCommand;
        LogicalUnit::new(config, vol).ok()
    })
    .as_ref()
}

/// Byte 0 selects the block size (even: 512, odd: 4096) and the nexus; the next 16 bytes
/// are the CDB; the rest is the Data-Out. The decoder also gets everything after byte 0 as
/// one CDB (up to 260 bytes arrive that way through an extended CDB AHS).
pub fn run_one(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let _ = cdb::parse(&rest[..rest.len().min(260)]);
    let (cdb_bytes, data_out) = rest.split_at(rest.len().min(cdb::MAX_CDB_BYTES));
    if let Ok(cmd) = cdb::parse(cdb_bytes) {
        let _ = cmd.data_out_bytes(512);
        let _ = cmd.direction(4096);
        let _ = cmd.access();
    }
    let Some(lu) = unit(if sel % 2 == 0 { 512 } else { 4096 }) else { return };
    let nexus = ItNexus::new(
        u64::from(sel >> 1),
        "iqn.2024-01.fuzz:init",
        [0x40, 0, 0, 0, 0, sel >> 1],
        "iqn.2024-01.io.ferrite:fuzz",
        1,
    );
    if let Ok((_, parsed)) = lu.prepare_command(&nexus, cdb_bytes, data_out.len() as u64) {
        let buf = (!data_out.is_empty()).then(|| IoBuf::from_slice(data_out));
        let _ = block_on(lu.execute_prepared(&nexus, parsed, buf));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_inputs_do_not_panic() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut input = [0u8; 64];
            for b in &mut input {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            // Bias the opcode towards implemented commands.
            let ops = super::super::opcodes::COMMANDS;
            input[1] = ops[(seed as usize >> 8) % ops.len()].opcode;
            super::run_one(&input);
        }
    }
}
