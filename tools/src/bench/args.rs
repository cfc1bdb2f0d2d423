//! Command line of ferrite-bench (fio-like names where fio has one).

use std::time::Duration;

use clap::{Parser, ValueEnum};
use drivers::executor::BackendChoice;

use super::target::TargetSpec;
use super::units::{parse_bool, parse_duration};
use ferrite_tools::size::parse_bytes;

/// I/O pattern, as fio's `rw=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RwMode {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Random reads.
    Randread,
    /// Random writes.
    Randwrite,
    /// Random mix of reads and writes (`--rwmixread` percent reads).
    Randrw,
}

impl RwMode {
    /// Offsets are drawn at random.
    #[must_use]
    pub fn is_random(self) -> bool {
        matches!(self, RwMode::Randread | RwMode::Randwrite | RwMode::Randrw)
    }

    /// Percentage of reads for this mode given `--rwmixread`.
    #[must_use]
    pub fn read_percent(self, rwmixread: u8) -> u8 {
        match self {
            RwMode::Read | RwMode::Randread => 100,
            RwMode::Write | RwMode::Randwrite => 0,
            RwMode::Randrw => rwmixread,
        }
    }
}

/// Kernel interface choice (`drivers::executor::BackendChoice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// io_uring when available, else epoll.
    Auto,
    /// io_uring or fail.
    Uring,
    /// epoll readiness plus a blocking pool for file I/O.
    Epoll,
}

impl From<BackendArg> for BackendChoice {
    fn from(arg: BackendArg) -> BackendChoice {
        match arg {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Uring => BackendChoice::Uring,
            BackendArg::Epoll => BackendChoice::Epoll,
        }
    }
}

fn size_arg(text: &str) -> Result<u64, String> {
    parse_bytes(text)
}

fn block_size_arg(text: &str) -> Result<usize, String> {
    let bytes = parse_bytes(text)?;
    if bytes == 0 || bytes % 512 != 0 || bytes > 16 << 20 {
        return Err(format!("block size '{text}' must be a multiple of 512 between 512 and 16m"));
    }
    usize::try_from(bytes).map_err(|_| format!("block size '{text}' too large"))
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn bool_arg(text: &str) -> Result<bool, String> {
    parse_bool(text)
}

/// ferrite-bench: a fio-like load generator through ferrite's drivers.
///
/// Each shard is a pinned thread with its own reactor and `--iodepth` I/Os in flight; like
/// fio's numjobs, every shard covers the whole region with its own offsets.
#[derive(Debug, Clone, Parser)]
#[command(name = "ferrite-bench", version, about, long_about = None)]
pub struct BenchArgs {
    /// What to drive: file:PATH (a regular file or block device), mem:SIZE (RAM),
    /// volume:PATH (a pool engine volume on the file PATH, created with --size when missing),
    /// volume-mem:SIZE (a new pool engine volume of SIZE bytes on a memory device), or
    /// group:LAYOUT[-missingK]@mem:SIZE | @file:PREFIX:SIZE (a mirror, RAID-Z group or stripe
    /// of the device layer: single, stripeN, mirrorN, raidzPxW; SIZE per device).
    #[arg(long, value_name = "TARGET")]
    pub target: TargetSpec,

    /// I/O pattern.
    #[arg(long, value_enum, default_value_t = RwMode::Randread)]
    pub rw: RwMode,

    /// Percentage of reads with --rw randrw.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub rwmixread: u8,

    /// Block size per I/O (4k, 128k, ...): a multiple of 512.
    #[arg(long = "bs", default_value = "4k", value_parser = block_size_arg)]
    pub block_size_bytes: usize,

    /// I/Os in flight per shard.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub iodepth: u32,

    /// Shards (pinned threads, each its own ring), like fio's numjobs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub shards: u32,

    /// Run for this long (10, 10s, 500ms, 2m); the region is revisited as needed.
    #[arg(long = "runtime", value_parser = duration_arg, conflicts_with = "io_count")]
    pub runtime: Option<Duration>,

    /// Stop each shard after this many I/Os.
    #[arg(long = "io-count", value_parser = clap::value_parser!(u64).range(1..))]
    pub io_count: Option<u64>,

    /// Region to cover, from offset 0 (default: the whole target). Without --runtime or
    /// --io-count each shard moves this many bytes once. A missing file is created this size.
    #[arg(long = "size", value_parser = size_arg)]
    pub size_bytes: Option<u64>,

    /// Kernel interface.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,

    /// Open the target with O_DIRECT (1/0).
    #[arg(
        long,
        action = clap::ArgAction::Set,
        default_value = "1",
        value_parser = bool_arg,
        num_args = 0..=1,
        default_missing_value = "1"
    )]
    pub direct: bool,

    /// Stamp written blocks (LBA, generation, CRC32C) and check blocks read; mismatches are
    /// errors reported with their offset. I/O sizes must be multiples of 4k.
    #[arg(long)]
    pub verify: bool,

    /// Generation stamped by writes; when given, reads also require it.
    #[arg(long = "verify-generation")]
    pub verify_generation: Option<u64>,

    /// Pin shard i to CPU i (1/0).
    #[arg(long, action = clap::ArgAction::Set, default_value = "1", value_parser = bool_arg)]
    pub pin: bool,

    /// Seed of the offset generators.
    #[arg(long, default_value_t = 0x00f3_7713)]
    pub seed: u64,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// volume: writes are FUA (durable through the intent log when they complete).
    #[arg(long)]
    pub fua: bool,

    /// volume: write the region once with non-zero data (and commit it) before the run.
    #[arg(long)]
    pub fill: bool,

    /// volume: export and re-import the pool before the run and keep data blocks out of the
    /// cache, so reads reach the device (indirect blocks are still cached).
    #[arg(long)]
    pub cold: bool,

    /// volume: `volblocksize` of the volume when the pool is created (4k to 128k, a power of
    /// two; default 4k). A pool that already exists must hold a volume of this size.
    #[arg(long = "volblock", value_parser = volblock_arg)]
    pub volblock_bytes: Option<u32>,

    /// volume: hand every write to the shard that owns its partition, instead of applying it
    /// on the shard that issued it (the engine's default, `PoolTunables::write_handoff`); for
    /// comparing the two. Txg syncs run on the owners either way.
    #[arg(long)]
    pub write_handoff: bool,
}

fn volblock_arg(text: &str) -> Result<u32, String> {
    let bytes = parse_bytes(text)?;
    match u32::try_from(bytes) {
        Ok(b) if b.is_power_of_two() && (4096..=131_072).contains(&b) => Ok(b),
        _ => Err(format!("volblock '{text}' must be a power of two from 4k to 128k")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        BenchArgs::try_parse_from(std::iter::once("ferrite-bench").chain(args.iter().copied()))
    }

    #[test]
    fn fio_like_arguments() {
        let args = parse(&[
            "--target",
            "file:/tmp/x.img",
            "--rw",
            "randrw",
            "--rwmixread",
            "70",
            "--bs",
            "128k",
            "--iodepth",
            "8",
            "--shards",
            "2",
            "--runtime",
            "5s",
            "--size",
            "1g",
            "--direct",
            "0",
        ])
        .expect("valid");
        assert_eq!(args.rw, RwMode::Randrw);
        assert_eq!(args.block_size_bytes, 128 * 1024);
        assert_eq!(args.iodepth, 8);
        assert_eq!(args.shards, 2);
        assert_eq!(args.runtime, Some(Duration::from_secs(5)));
        assert_eq!(args.size_bytes, Some(1 << 30));
        assert!(!args.direct);
        assert_eq!(args.rw.read_percent(args.rwmixread), 70);
    }

    #[test]
    fn defaults() {
        let args = parse(&["--target", "file:/tmp/x.img"]).expect("valid");
        assert!(args.direct);
        assert_eq!(args.block_size_bytes, 4096);
        assert_eq!(args.rw, RwMode::Randread);
        assert!(!args.verify);
        assert!(args.pin);
        assert!(!args.fua && !args.fill && !args.cold);
    }

    #[test]
    fn volume_options() {
        let args =
            parse(&["--target", "volume:/tmp/p.img", "--fua", "--fill", "--cold"]).expect("valid");
        assert_eq!(
            parse(&["--target", "volume:/tmp/p.img", "--volblock", "128k"])
                .expect("valid")
                .volblock_bytes,
            Some(131_072)
        );
        assert!(parse(&["--target", "volume:/tmp/p.img", "--volblock", "12k"]).is_err());
        assert!(args.fua && args.fill && args.cold);
    }

    #[test]
    fn boolean_options_take_values() {
        let args = parse(&["--target", "file:/x", "--pin", "0", "--direct"]).expect("valid");
        assert!(!args.pin);
        assert!(args.direct);
        let args = parse(&["--target", "file:/x", "--direct=0", "--pin=1"]).expect("valid");
        assert!(!args.direct);
        assert!(args.pin);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = parse(&["--target", "file:/x", "--bs", "3000"]).expect_err("must fail");
        assert!(err.to_string().contains("multiple of 512"), "{err}");
        let err = parse(&["--target", "nbd:/x"]).expect_err("must fail");
        assert!(err.to_string().contains("unsupported target"), "{err}");
        assert!(parse(&["--target", "file:/x", "--rwmixread", "101"]).is_err());
        assert!(parse(&["--target", "file:/x", "--iodepth", "0"]).is_err());
        assert!(parse(&["--target", "file:/x", "--runtime", "1", "--io-count", "5"]).is_err());
        assert!(parse(&["--target", "file:/x", "--rw", "trim"]).is_err());
    }
}
