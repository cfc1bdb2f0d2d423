//! The result of a run: human-readable text or JSON.

use serde::Serialize;

use super::job::ErrorSample;
use drivers::histogram::Histogram;

/// Latency summary of one direction (nanoseconds).
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    /// I/Os measured.
    pub count: u64,
    /// Minimum.
    pub latency_ns_min: u64,
    /// Mean.
    pub latency_ns_mean: u64,
    /// Median.
    pub latency_ns_p50: u64,
    /// 99th percentile.
    pub latency_ns_p99: u64,
    /// 99.9th percentile.
    pub latency_ns_p999: u64,
    /// Maximum (exact).
    pub latency_ns_max: u64,
}

impl LatencySummary {
    /// Summarises a histogram.
    #[must_use]
    pub fn of(histogram: &Histogram) -> LatencySummary {
        LatencySummary {
            count: histogram.count(),
            latency_ns_min: histogram.min(),
            latency_ns_mean: histogram.mean() as u64,
            latency_ns_p50: histogram.percentile(50.0),
            latency_ns_p99: histogram.percentile(99.0),
            latency_ns_p999: histogram.percentile(99.9),
            latency_ns_max: histogram.max(),
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `--target` as given.
    pub target: String,
    /// Pattern.
    pub rw: String,
    /// Percentage of reads.
    pub read_percent: u8,
    /// Bytes per I/O.
    pub block_size_bytes: usize,
    /// I/Os in flight per shard.
    pub iodepth: u32,
    /// Shards.
    pub shards: u32,
    /// "uring" or "epoll".
    pub backend: String,
    /// O_DIRECT.
    pub direct: bool,
    /// Verification on.
    pub verify: bool,
    /// Region covered.
    pub region_bytes: u64,
    /// Wall time from the common start to the last completion.
    pub runtime_s: f64,
    /// I/Os completed without error.
    pub ios: u64,
    /// Reads completed.
    pub ios_read: u64,
    /// Writes completed.
    pub ios_write: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_write: u64,
    /// I/Os per second, both directions.
    pub iops: f64,
    /// Reads per second.
    pub iops_read: f64,
    /// Writes per second.
    pub iops_write: f64,
    /// Bandwidth, both directions, in 10^6 bytes per second.
    pub bandwidth_mb_s: f64,
    /// Read bandwidth (10^6 B/s).
    pub bandwidth_read_mb_s: f64,
    /// Write bandwidth (10^6 B/s).
    pub bandwidth_write_mb_s: f64,
    /// Latency of every I/O.
    pub latency: LatencySummary,
    /// Latency of reads.
    pub latency_read: LatencySummary,
    /// Latency of writes.
    pub latency_write: LatencySummary,
    /// User CPU of the process during the run.
    pub cpu_user_s: f64,
    /// System CPU of the process during the run.
    pub cpu_system_s: f64,
    /// (user + system) CPU seconds per million I/Os.
    pub cpu_s_per_million_ios: f64,
    /// I/O errors plus verify errors.
    pub errors: u64,
    /// I/Os the target failed.
    pub errors_io: u64,
    /// Blocks that failed verification.
    pub errors_verify: u64,
    /// The first failures, with their offsets.
    pub error_samples: Vec<ErrorSample>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn direction_line(name: &str, iops: f64, mb_s: f64, lat: &LatencySummary) -> String {
    format!(
        "  {name:<5} iops={iops:.0} bw={mb_s:.1}MB/s lat(us) p50={:.1} p99={:.1} p99.9={:.1} \
         max={:.1} mean={:.1}",
        us(lat.latency_ns_p50),
        us(lat.latency_ns_p99),
        us(lat.latency_ns_p999),
        us(lat.latency_ns_max),
        us(lat.latency_ns_mean),
    )
}

impl Report {
    /// fio-like text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "ferrite-bench: rw={} bs={} iodepth={} shards={} target={} backend={} direct={} \
             verify={}\n",
            self.rw,
            self.block_size_bytes,
            self.iodepth,
            self.shards,
            self.target,
            self.backend,
            u8::from(self.direct),
            u8::from(self.verify),
        );
        let directions = [
            ("read", self.ios_read, self.iops_read, self.bandwidth_read_mb_s, &self.latency_read),
            (
                "write",
                self.ios_write,
                self.iops_write,
                self.bandwidth_write_mb_s,
                &self.latency_write,
            ),
        ];
        for (name, ios, iops, mb_s, latency) in directions {
            if ios > 0 {
                out += &direction_line(name, iops, mb_s, latency);
                out.push('\n');
            }
        }
        out += &direction_line("all", self.iops, self.bandwidth_mb_s, &self.latency);
        out.push('\n');
        out += &format!(
            "  runtime={:.2}s ios={} cpu user={:.2}s sys={:.2}s cpu_s_per_million_ios={:.2} \
             errors={} (io={} verify={})\n",
            self.runtime_s,
            self.ios,
            self.cpu_user_s,
            self.cpu_system_s,
            self.cpu_s_per_million_ios,
            self.errors,
            self.errors_io,
            self.errors_verify,
        );
        for sample in &self.error_samples {
            out += &format!(
                "  error: shard {} {} at offset {}: {}\n",
                sample.shard, sample.op, sample.offset_bytes, sample.message
            );
        }
        out
    }
}
