//! ferrite-bench: a fio-like load generator through ferrite's drivers.
//!
//! `args` parses the command line, `target` opens what is driven, `job` runs the per-shard
//! I/O loop, `histogram` records latencies, `stamp` implements `--verify`, `report` prints.

pub mod args;
pub mod cpu;
pub mod group;
pub mod job;
pub mod prng;
pub mod report;
pub mod stamp;
pub mod target;
pub mod units;
pub mod volume;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use drivers::error::IoError;
use drivers::executor::{BackendKind, ReactorConfig};
use drivers::shard;

use args::BenchArgs;
use cpu::CpuTimes;
use drivers::histogram::Histogram;
use job::{JobConfig, ShardProgress, ShardResult, StopCondition};
use report::{LatencySummary, Report};
use target::{FileTarget, OpenOptionsBench, Target, TargetInfo, TargetSpec};

/// Exit status when the run completed but saw I/O or verify errors.
const EXIT_DATA_ERRORS: u8 = 3;

/// Why a run could not be carried out.
#[derive(Debug)]
pub enum BenchError {
    /// Inconsistent arguments.
    Usage(String),
    /// The target could not be opened.
    Open { path: PathBuf, source: std::io::Error },
    /// A driver call failed outside the measured I/O.
    Io { what: &'static str, source: IoError },
    /// A shard thread died.
    Shard(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Usage(msg) | BenchError::Shard(msg) => write!(f, "{msg}"),
            BenchError::Open { path, source } => {
                write!(f, "cannot open {}: {source}", path.display())
            }
            BenchError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// Entry point of the binary.
#[must_use]
pub fn main() -> ExitCode {
    drivers::heap::keep_freed_memory();
    let args = BenchArgs::parse();
    match run(&args) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(err) => eprintln!("ferrite-bench: error: cannot encode the report: {err}"),
                }
            } else {
                print!("{}", report.to_text());
            }
            if report.errors > 0 {
                ExitCode::from(EXIT_DATA_ERRORS)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(err) => {
            eprintln!("ferrite-bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Checks the arguments against each other and the target; returns the job to run.
fn job_config(args: &BenchArgs, info: TargetInfo) -> Result<JobConfig, BenchError> {
    let bs = args.block_size_bytes as u64;
    if (args.fua || args.fill || args.cold || args.volblock_bytes.is_some() || args.write_handoff)
        && !matches!(args.target, TargetSpec::Volume(_) | TargetSpec::VolumeMemory(_))
    {
        return Err(BenchError::Usage(
            "--fua, --fill, --cold, --volblock and --write-handoff need a volume: target".into(),
        ));
    }
    let target_size_bytes = info.size_bytes;
    if !bs.is_multiple_of(u64::from(info.logical_block_bytes)) {
        return Err(BenchError::Usage(format!(
            "--bs {bs} is not a multiple of the target's block size ({} bytes)",
            info.logical_block_bytes
        )));
    }
    if args.verify && !args.block_size_bytes.is_multiple_of(stamp::VERIFY_BLOCK_BYTES) {
        return Err(BenchError::Usage(format!(
            "--verify needs --bs to be a multiple of {} bytes",
            stamp::VERIFY_BLOCK_BYTES
        )));
    }
    let region = match args.size_bytes {
        Some(size) if size > target_size_bytes => {
            return Err(BenchError::Usage(format!(
                "--size {size} is larger than the target ({target_size_bytes} bytes)"
            )))
        }
        Some(size) => size,
        None => target_size_bytes,
    };
    let region_bytes = region - region % bs;
    if region_bytes == 0 {
        return Err(BenchError::Usage(format!(
            "the region ({region} bytes) is smaller than one block ({bs} bytes)"
        )));
    }
    let stop = match (args.runtime, args.io_count) {
        (Some(runtime), _) => StopCondition::Runtime(runtime),
        (None, Some(count)) => StopCondition::Count(count),
        (None, None) => StopCondition::Count(region_bytes / bs),
    };
    Ok(JobConfig {
        rw: args.rw,
        read_percent: args.rw.read_percent(args.rwmixread),
        block_size_bytes: args.block_size_bytes,
        iodepth: args.iodepth,
        region_bytes,
        stop,
        verify: args.verify,
        write_generation: args.verify_generation.unwrap_or(1),
        expected_generation: args.verify_generation,
        seed: args.seed,
    })
}

/// Runs the benchmark described by `args`.
///
/// # Errors
/// When the target cannot be opened, the arguments do not fit it, or a shard fails to start.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let options = OpenOptionsBench { direct: args.direct, create_size_bytes: args.size_bytes };
    match &args.target {
        TargetSpec::File(path) if args.direct => {
            run_on(args, Arc::new(target::open_uring_device(path, options)?))
        }
        TargetSpec::File(path) => run_on(args, Arc::new(FileTarget::open(path, options)?)),
        TargetSpec::Memory(size_bytes) => {
            run_on(args, Arc::new(target::memory_device(*size_bytes)))
        }
        TargetSpec::Volume(path) => run_volume(args, &volume::VolumeBacking::File(path.clone())),
        TargetSpec::VolumeMemory(size_bytes) => {
            run_volume(args, &volume::VolumeBacking::Memory(*size_bytes))
        }
        TargetSpec::Group(spec) => {
            run_on(args, Arc::new(group::GroupTarget::open(spec, args.block_size_bytes)?))
        }
    }
}

fn run_volume(args: &BenchArgs, backing: &volume::VolumeBacking) -> Result<Report, BenchError> {
    let options = volume::VolumeBenchOptions {
        size_bytes: args.size_bytes,
        fill: args.fill,
        cold: args.cold,
        fua: args.fua,
        volblock_bytes: args.volblock_bytes,
        shards: args.shards as usize,
        handoff: args.write_handoff,
        backend: args.backend.into(),
    };
    run_on(args, Arc::new(volume::VolumeTarget::open(backing, &options)?))
}

fn reactor_config(args: &BenchArgs) -> ReactorConfig {
    let iodepth = args.iodepth as usize;
    ReactorConfig {
        shard_id: 0,
        // Room for every worker's SQE plus the eventfd read and cancellations.
        ring_entries: u32::try_from((iodepth + 16).next_power_of_two()).unwrap_or(4096).min(4096),
        backend: args.backend.into(),
        buffer_count: iodepth,
        buffer_bytes: args.block_size_bytes,
        blocking_threads: iodepth.clamp(1, 64),
    }
}

fn run_on<T: Target>(args: &BenchArgs, target: Arc<T>) -> Result<Report, BenchError> {
    let config = Arc::new(job_config(args, target.info())?);
    let shards = args.shards as usize;
    let barrier = Arc::new(Barrier::new(shards + 1));
    let progress: Arc<Vec<Arc<ShardProgress>>> =
        Arc::new((0..shards).map(|_| Arc::new(ShardProgress::default())).collect());
    let backend_seen = Arc::new(std::sync::Mutex::new(None::<BackendKind>));
    let handles = {
        let (target, config, barrier, progress, backend_seen) = (
            target,
            Arc::clone(&config),
            Arc::clone(&barrier),
            Arc::clone(&progress),
            Arc::clone(&backend_seen),
        );
        shard::start_shards(shards, &reactor_config(args), args.pin, move |shard_id, reactor| {
            if let Ok(mut seen) = backend_seen.lock() {
                *seen = Some(reactor.backend_kind());
            }
            job::run_shard(
                shard_id,
                Arc::clone(&target),
                Arc::clone(&config),
                Arc::clone(&barrier),
                Arc::clone(&progress[shard_id]),
            )
        })
        .map_err(|source| BenchError::Io { what: "starting shard threads", source })?
    };
    barrier.wait();
    let cpu_start = CpuTimes::now();
    let wall_start = Instant::now();
    print_progress_until_done(&handles, &progress, config.stop, wall_start);
    let mut results = Vec::with_capacity(shards);
    let mut first_error = None;
    for (shard_id, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(Ok(result))) => results.push(result),
            Ok(Ok(Err(err))) => first_error = first_error.or(Some(err)),
            Ok(Err(source)) => {
                first_error = first_error
                    .or(Some(BenchError::Io { what: "starting a shard reactor", source }));
            }
            Err(_) => {
                first_error =
                    first_error.or(Some(BenchError::Shard(format!("shard {shard_id} panicked"))));
            }
        }
    }
    let cpu = CpuTimes::now().since(&cpu_start);
    if let Some(err) = first_error {
        return Err(err);
    }
    let backend = backend_seen.lock().ok().and_then(|seen| *seen);
    Ok(build_report(args, &config, &results, cpu, backend))
}

fn print_progress_until_done<R>(
    handles: &[std::thread::JoinHandle<R>],
    progress: &[Arc<ShardProgress>],
    stop: StopCondition,
    wall_start: Instant,
) {
    let long_run = matches!(stop, StopCondition::Runtime(r) if r > Duration::from_secs(3));
    let mut next_tick = wall_start + Duration::from_secs(1);
    let (mut last_ios, mut last_bytes, mut last_at) = (0u64, 0u64, wall_start);
    while !handles.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if now < next_tick {
            continue;
        }
        next_tick += Duration::from_secs(1);
        let elapsed = now.duration_since(wall_start);
        let ios: u64 = progress.iter().map(|p| p.ios.load(Ordering::Relaxed)).sum();
        let bytes: u64 = progress.iter().map(|p| p.bytes.load(Ordering::Relaxed)).sum();
        let errors: u64 = progress.iter().map(|p| p.errors.load(Ordering::Relaxed)).sum();
        let window_s = now.duration_since(last_at).as_secs_f64().max(1e-9);
        if long_run || elapsed > Duration::from_secs(3) {
            eprintln!(
                "[{:>4.0}s] iops={:.0} bw={:.1}MB/s errors={errors}",
                elapsed.as_secs_f64(),
                (ios - last_ios) as f64 / window_s,
                (bytes - last_bytes) as f64 / window_s / 1e6,
            );
        }
        (last_ios, last_bytes, last_at) = (ios, bytes, now);
    }
}

fn build_report(
    args: &BenchArgs,
    config: &JobConfig,
    results: &[ShardResult],
    cpu: CpuTimes,
    backend: Option<BackendKind>,
) -> Report {
    let mut latency_read = Histogram::new();
    let mut latency_write = Histogram::new();
    let (mut ios_read, mut ios_write, mut bytes_read, mut bytes_write) = (0, 0, 0, 0);
    let (mut errors_io, mut errors_verify) = (0, 0);
    let mut error_samples = Vec::new();
    let mut started: Option<Instant> = None;
    let mut finished: Option<Instant> = None;
    for r in results {
        latency_read.merge(&r.latency_read);
        latency_write.merge(&r.latency_write);
        ios_read += r.ios_read;
        ios_write += r.ios_write;
        bytes_read += r.bytes_read;
        bytes_write += r.bytes_write;
        errors_io += r.errors_io;
        errors_verify += r.errors_verify;
        error_samples.extend(r.error_samples.iter().cloned());
        started = Some(started.map_or(r.started, |s| s.min(r.started)));
        finished = Some(finished.map_or(r.finished, |f| f.max(r.finished)));
    }
    let runtime_s = match (started, finished) {
        (Some(s), Some(f)) => f.duration_since(s).as_secs_f64().max(1e-9),
        _ => 1e-9,
    };
    let mut latency = latency_read.clone();
    latency.merge(&latency_write);
    let ios = ios_read + ios_write;
    let cpu_s = (cpu.user + cpu.system).as_secs_f64();
    Report {
        target: args.target.to_string(),
        rw: format!("{:?}", config.rw).to_lowercase(),
        read_percent: config.read_percent,
        block_size_bytes: config.block_size_bytes,
        iodepth: config.iodepth,
        shards: args.shards,
        backend: match backend {
            Some(BackendKind::Uring) => "uring".into(),
            Some(BackendKind::Epoll) => "epoll".into(),
            None => "unknown".into(),
        },
        direct: args.direct,
        verify: config.verify,
        region_bytes: config.region_bytes,
        runtime_s,
        ios,
        ios_read,
        ios_write,
        bytes_read,
        bytes_write,
        iops: ios as f64 / runtime_s,
        iops_read: ios_read as f64 / runtime_s,
        iops_write: ios_write as f64 / runtime_s,
        bandwidth_mb_s: (bytes_read + bytes_write) as f64 / runtime_s / 1e6,
        bandwidth_read_mb_s: bytes_read as f64 / runtime_s / 1e6,
        bandwidth_write_mb_s: bytes_write as f64 / runtime_s / 1e6,
        latency: LatencySummary::of(&latency),
        latency_read: LatencySummary::of(&latency_read),
        latency_write: LatencySummary::of(&latency_write),
        cpu_user_s: cpu.user.as_secs_f64(),
        cpu_system_s: cpu.system.as_secs_f64(),
        cpu_s_per_million_ios: if ios == 0 { 0.0 } else { cpu_s / (ios as f64 / 1e6) },
        errors: errors_io + errors_verify,
        errors_io,
        errors_verify,
        error_samples,
    }
}
