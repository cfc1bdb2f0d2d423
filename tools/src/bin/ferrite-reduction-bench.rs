//! ferrite-reduction-bench: sequential-write throughput and CPU of one data-reduction setting on
//! a pool engine volume driven in-process (benches/reduction.sh runs every case).
//!
//! ```text
//! ferrite-reduction-bench --file /tmp/pool.img --case lz4-compressible --size 1G
//! ```
//! It creates a pool on FILE (replacing it) with one volume of 128 KiB blocks, writes SIZE
//! bytes sequentially in 128 KiB writes with 8 in flight, then exports the pool: the final txg
//! sync, where compression and dedup run, is inside the measurement. It prints one line:
//! `case=… mb_s=… cpu_ms_per_mb=… logical_bytes=… physical_bytes=… ddt_entries=…
//! ddt_bytes_per_entry=…`, where physical bytes are the data blocks the pool allocated
//! (each deduplicated block once).

#[path = "../bench/cpu.rs"]
#[allow(dead_code)]
mod cpu;

/// The allocator ferrited runs with (see ferrited's main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::executor::spawn;
use engine::block_volume::BlockVolume;
use engine::compress::Compression;
use engine::ddt::DedupMode;
use engine::units::Lba;
use engine::{CreateOptions, Pool, PoolTunables, VolumeOptions};
use ferrite_tools::size::parse_size;

/// Bytes of one write and of one volume block.
const WRITE_BYTES: usize = 128 * 1024;
/// Writes in flight.
const DEPTH: usize = 8;
/// Distinct blocks a duplicate stream cycles through (8 MiB).
const DUPLICATE_SET_BLOCKS: u64 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "ferrite-reduction-bench",
    about = "Sequential writes under a data-reduction setting"
)]
struct Args {
    /// Pool file (created or replaced).
    #[arg(long)]
    file: PathBuf,
    /// off | lz4-incompressible | lz4-compressible | dedup-duplicate | dedup-unique |
    /// off-compressible | off-duplicate
    #[arg(long)]
    case: String,
    /// Bytes to write, e.g. 1G.
    #[arg(long, default_value = "1G")]
    size: String,
}

/// What a case writes and with which properties.
struct Case {
    compression: Compression,
    dedup: DedupMode,
    data: Data,
}

#[derive(Clone, Copy)]
enum Data {
    /// Every block different and incompressible.
    Random,
    /// Every block different, about 2:1 compressible.
    Compressible,
    /// The same 64 incompressible blocks over and over.
    Duplicate,
}

fn case(name: &str) -> Option<Case> {
    let (compression, dedup, data) = match name {
        "off" => (Compression::Off, DedupMode::Off, Data::Random),
        "off-compressible" => (Compression::Off, DedupMode::Off, Data::Compressible),
        "off-duplicate" => (Compression::Off, DedupMode::Off, Data::Duplicate),
        "lz4-incompressible" => (Compression::Lz4, DedupMode::Off, Data::Random),
        "lz4-compressible" => (Compression::Lz4, DedupMode::Off, Data::Compressible),
        "dedup-duplicate" => (Compression::Off, DedupMode::On, Data::Duplicate),
        "dedup-unique" => (Compression::Off, DedupMode::On, Data::Random),
        _ => return None,
    };
    Some(Case { compression, dedup, data })
}

/// xorshift64 bytes of block `seed`.
fn random_block(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(WRITE_BYTES);
    while out.len() < WRITE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Block `index` of the stream.
fn block(data: Data, index: u64) -> Vec<u8> {
    match data {
        Data::Random => random_block(index + 1),
        // Every 64 random bytes followed by a copy of themselves.
        Data::Compressible => random_block(index + 1)[..WRITE_BYTES / 2]
            .chunks(64)
            .flat_map(|c| c.iter().chain(c).copied())
            .collect(),
        Data::Duplicate => random_block(index % DUPLICATE_SET_BLOCKS + 1),
    }
}

async fn run(args: &Args, c: &Case, size_bytes: u64) -> Result<String, String> {
    let blocks = size_bytes / WRITE_BYTES as u64;
    let file_bytes = size_bytes * 2 + (1 << 30);
    let _ = std::fs::remove_file(&args.file);
    let dev: Arc<dyn BlockDevice> = Arc::new(
        UringDevice::create_file(&args.file, file_bytes)
            .map_err(|e| format!("{}: {e}", args.file.display()))?,
    );
    let options = CreateOptions {
        name: "reduction".into(),
        tunables: PoolTunables::default(),
        ..CreateOptions::default()
    };
    let pool = Pool::create(vec![dev], None, options).await.map_err(|e| e.to_string())?;
    let syncer = pool.start_syncer();
    let volume_options = VolumeOptions {
        capacity_bytes: size_bytes.next_multiple_of(1 << 20),
        volblock_bytes: WRITE_BYTES as u32,
        compression: c.compression,
        dedup: c.dedup,
        ..VolumeOptions::default()
    };
    let vol = pool.create_volume("v", &volume_options).await.map_err(|e| e.to_string())?;
    // The data is generated before the clock starts.
    let stream: Vec<IoBuf> = (0..blocks).map(|i| IoBuf::from_slice(&block(c.data, i))).collect();
    let free_before = pool.free_bytes();
    let cpu_before = cpu::CpuTimes::now();
    let start = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for (i, buf) in stream.into_iter().enumerate() {
        let v = vol.clone();
        let lba = i as u64 * (WRITE_BYTES as u64 / 512);
        // Handed over, as the iSCSI target hands over the buffer it received into: the volume
        // keeps it until its txg sync and nothing is copied back.
        in_flight.push_back(spawn(async move {
            v.write_shared(Lba::new(lba), SharedBuf::new(buf), false).await
        }));
        if in_flight.len() >= DEPTH {
            if let Some(h) = in_flight.pop_front() {
                h.await.map_err(|e| format!("write: {e}"))?;
            }
        }
    }
    for h in in_flight {
        h.await.map_err(|e| format!("write: {e}"))?;
    }
    pool.sync_txg().await.map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    let cpu = cpu::CpuTimes::now().since(&cpu_before);
    pool.sync_txg().await.map_err(|e| e.to_string())?;
    let physical = free_before.saturating_sub(pool.free_bytes());
    let figures = pool.reduction_figures("v").map_err(|e| e.to_string())?;
    let table = pool.dedup_table_figures();
    pool.export().await.map_err(|e| e.to_string())?;
    syncer.await;
    let _ = std::fs::remove_file(&args.file);
    #[allow(clippy::cast_precision_loss)]
    let mb = size_bytes as f64 / 1e6;
    let cpu_ms = (cpu.user + cpu.system).as_secs_f64() * 1e3;
    Ok(format!(
        "case={} mb_s={:.1} cpu_ms_per_mb={:.3} logical_bytes={} physical_bytes={} \
         ddt_entries={} ddt_bytes_per_entry={}",
        args.case,
        mb / elapsed.as_secs_f64(),
        cpu_ms / mb,
        figures.logical_bytes,
        physical,
        table.entries,
        table.memory_bytes_per_entry()
    ))
}

fn main() -> ExitCode {
    ferrite_tools::logger::init("ferrite-reduction-bench");
    let args = Args::parse();
    let Some(c) = case(&args.case) else {
        eprintln!("ferrite-reduction-bench: unknown case {:?}", args.case);
        return ExitCode::from(2);
    };
    let size_bytes = match parse_size(&args.size) {
        Ok(s) if s >= WRITE_BYTES as u64 => s / WRITE_BYTES as u64 * WRITE_BYTES as u64,
        _ => {
            eprintln!("ferrite-reduction-bench: bad --size {:?}", args.size);
            return ExitCode::from(2);
        }
    };
    let Some(reactor) = ferrite_tools::cli::reactor("ferrite-reduction-bench") else {
        return ExitCode::from(1);
    };
    ferrite_tools::cli::finish(
        "ferrite-reduction-bench",
        reactor.block_on(run(&args, &c, size_bytes)),
    )
}
