//! ferrite-inspect: walks a pool offline, verifies every checksum, cross-checks the space maps
//! and prints pool, volume and snapshot figures.
//!
//! ```text
//! ferrite-inspect DEVICE... [--json]
//! ```
//! Give every device of the pool (data and log), in any order. Exits 0 when the pool is clean,
//! 3 when a checksum failed or the allocation is inconsistent, 1 when it cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::executor::{Reactor, ReactorConfig};

#[derive(Debug, Parser)]
#[command(name = "ferrite-inspect", version, about = "Verify a ferrite pool offline")]
struct Args {
    /// Every device of the pool (files or block devices).
    #[arg(required = true)]
    devices: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    ferrite_tools::logger::init("ferrite-inspect");
    let args = Args::parse();
    let reactor = match Reactor::new(&ReactorConfig::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrite-inspect: cannot start the I/O reactor: {e}");
            return ExitCode::from(1);
        }
    };
    let mut devices: Vec<Arc<dyn BlockDevice>> = Vec::new();
    for path in &args.devices {
        // Read-only: inspecting never changes a pool, even one a daemon has imported.
        match UringDevice::open_read_only(path) {
            Ok(d) => devices.push(Arc::new(d)),
            Err(e) => {
                eprintln!("ferrite-inspect: {}: cannot open: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    if let Some(note) = reactor.block_on(engine::owner::owner_note(&devices)) {
        eprintln!("ferrite-inspect: {note}");
    }
    let report = match reactor.block_on(engine::inspect::inspect(devices)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrite-inspect: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        let datasets: Vec<serde_json::Value> = report
            .datasets
            .iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name,
                    "kind": format!("{:?}", d.kind).to_lowercase(),
                    "capacity_bytes": d.capacity_bytes,
                    "volblock_bytes": d.volblock_bytes,
                    "data_blocks": d.data_blocks,
                    "referenced_bytes": d.referenced_bytes,
                    "physical_bytes": d.physical_bytes,
                    "compressed_blocks": d.compressed_blocks,
                    "indirect_blocks": d.indirect_blocks,
                    "creation_txg": d.creation_txg,
                    "deadlist_blocks": d.deadlist_blocks,
                })
            })
            .collect();
        let out = serde_json::json!({
            "pool": report.pool_name,
            "guid": format!("{:016x}", report.pool_guid),
            "txg": report.txg,
            "devices": report.device_count,
            "capacity_bytes": report.capacity_bytes,
            "allocated_bytes": report.allocated_bytes,
            "live_bytes": report.live_bytes,
            "leaked_bytes": report.leaked_bytes(),
            "blocks_verified": report.blocks_verified,
            "checksum_errors": report.checksum_errors,
            "unallocated_live_blocks": report.unallocated_live_blocks,
            "overlapping_blocks": report.overlapping_blocks,
            "accounting_errors": report.accounting_errors,
            "dedup_entries": report.dedup_entries,
            "dedup_references": report.dedup_references,
            "clean": report.is_clean(),
            "datasets": datasets,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{report}");
        println!("{}", if report.is_clean() { "clean" } else { "NOT CLEAN" });
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
