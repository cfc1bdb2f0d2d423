//! ferrite-inspect: walks a pool offline, verifies every checksum, cross-checks the space maps
//! and prints pool, volume and snapshot figures.
//!
//! ```text
//! ferrite-inspect DEVICE... [--json] [--quiet]
//! ```
//! Give every device of the pool (data and log), in any order. Blocks are read through the
//! engine's io_uring path, many reads in flight and back-to-back blocks in one read; a
//! progress line goes to stderr every second. Exit codes are in [`EXIT_CODES`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;

/// What the exit status means (also printed by `--help`, and in docs/operations.md).
const EXIT_CODES: &str = "Exit status: 0 the pool is clean; 1 it cannot be read (not a pool, \
    a device error, no uberblock whose metadata loads); 3 the state an import would open is not \
    clean (a checksum failed, live blocks are free in the space maps or overlap, allocated space \
    is leaked, or figures disagree); 4 that state is clean but newer txgs were rejected: an import \
    would rewind the pool and lose what they committed (the REJECTED lines say which txgs and \
    which object failed).";

/// Exit status: an import would rewind the pool (see [`EXIT_CODES`]).
const EXIT_REWOUND: u8 = 4;
/// Exit status: the state inspected is not clean.
const EXIT_NOT_CLEAN: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "ferrite-inspect",
    version,
    about = "Verify a ferrite pool offline",
    after_help = EXIT_CODES
)]
struct Args {
    /// Every device of the pool (files or block devices).
    #[arg(required = true)]
    devices: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Prints a progress line on stderr every second until `done` is set.
fn print_progress(progress: &engine::inspect::InspectProgress, done: &AtomicBool) {
    let started = Instant::now();
    let mut last = (started, 0u64);
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if now - last.0 < Duration::from_secs(1) {
            continue;
        }
        let verified = progress.verified_bytes.load(Ordering::Relaxed);
        let allocated = progress.allocated_bytes.load(Ordering::Relaxed);
        let rate = (verified - last.1) as f64 / (now - last.0).as_secs_f64() / 1e6;
        eprintln!(
            "ferrite-inspect: verified {} MiB of at most {} MiB allocated, {rate:.0} MB/s",
            verified >> 20,
            allocated >> 20
        );
        last = (now, verified);
    }
}

fn main() -> ExitCode {
    ferrite_tools::logger::init("ferrite-inspect");
    let args = Args::parse();
    let Some(reactor) = ferrite_tools::cli::reactor("ferrite-inspect") else {
        return ExitCode::from(1);
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
    let progress = engine::inspect::InspectProgress::default();
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        if !args.quiet {
            scope.spawn(|| print_progress(&progress, &done));
        }
        let result = reactor.block_on(engine::inspect::inspect_with_progress(devices, &progress));
        done.store(true, Ordering::Relaxed);
        result
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrite-inspect: {e}");
            return ExitCode::from(1);
        }
    };
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64();
        let verified = progress.verified_bytes.load(Ordering::Relaxed);
        let reads = progress.reads.load(Ordering::Relaxed);
        eprintln!(
            "ferrite-inspect: verified {verified} bytes in {secs:.2} s ({:.0} MB/s, {reads} reads \
             of {} KiB on average)",
            verified as f64 / secs.max(1e-9) / 1e6,
            verified / reads.max(1) / 1024
        );
    }
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
            "rewound": report.is_rewound(),
            "rejected_txgs": report
                .rejected_txgs
                .iter()
                .map(|r| serde_json::json!({"txg": r.txg, "reason": r.reason}))
                .collect::<Vec<_>>(),
            "datasets": datasets,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{report}");
        println!(
            "{}",
            match (report.is_clean(), report.is_rewound()) {
                (true, false) => "clean".to_string(),
                (true, true) =>
                    format!("REWOUND: txg {} is clean, newer txgs rejected", report.txg),
                (false, _) => "NOT CLEAN".to_string(),
            }
        );
    }
    if !report.is_clean() {
        ExitCode::from(EXIT_NOT_CLEAN)
    } else if report.is_rewound() {
        ExitCode::from(EXIT_REWOUND)
    } else {
        ExitCode::SUCCESS
    }
}
