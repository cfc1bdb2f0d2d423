//! The statistics the control socket (`stats_get`) and the metrics endpoint report: I/O per
//! LUN, shard and connection (from `target_iscsi::stats`), shard CPU time, the pools' cache
//! and txg counters, and the payload copy counters (`engine::copy_stats`).

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use target_iscsi::stats::{DirectionSnapshot, IoSnapshot};

use crate::daemon::State;

fn quantiles_us(d: &DirectionSnapshot) -> Value {
    let q = |x| d.latency_quantile_ns(x).map(|ns| ns as f64 / 1000.0);
    json!({"p50": q(0.5), "p99": q(0.99), "p99_9": q(0.999)})
}

/// One set of I/O counters as JSON: totals since start, the latency quantiles since start
/// (bucket upper bounds, microseconds) and the log2 histograms (bucket `i`: below 2^i ns), so
/// that a client can difference two samples.
#[must_use]
pub fn io_json(s: &IoSnapshot) -> Value {
    json!({
        "read_ops": s.read.ops,
        "read_bytes": s.read.bytes,
        "write_ops": s.write.ops,
        "write_bytes": s.write.bytes,
        "other_ops": s.other_ops,
        "errors": s.errors,
        "queue_depth": s.queue_depth,
        "read_latency_us": quantiles_us(&s.read),
        "write_latency_us": quantiles_us(&s.write),
        "read_latency_buckets": s.read.latency.to_vec(),
        "write_latency_buckets": s.write.latency.to_vec(),
    })
}

/// Payload bytes copied per data path since start (DESIGN §3).
#[must_use]
pub fn copies_json(snap: &engine::copy_stats::CopySnapshot) -> Value {
    let paths: Vec<Value> = snap
        .paths
        .iter()
        .map(|p| {
            json!({
                "path": p.path.map_or("", engine::copy_stats::CopyPath::name),
                "bytes_copied": p.bytes_copied,
                "ios": p.ios,
                "bytes_per_io": p.bytes_per_io(),
            })
        })
        .collect();
    json!({"total_bytes_copied": snap.total_bytes_copied(), "paths": paths})
}

fn pools_json(state: &State) -> Value {
    let mut pools: Vec<Value> = state
        .pools
        .iter()
        .map(|(name, p)| {
            // Every slice is locked once: the totals are the parts' sum.
            let parts = p.cache().part_stats();
            let cache: engine::cache::CacheStats = parts.iter().copied().sum();
            let cache_parts: Vec<Value> = parts
                .iter()
                .enumerate()
                .map(|(shard, c)| {
                    json!({
                        "shard": shard,
                        "hits": c.hits,
                        "misses": c.misses,
                        "used_bytes": c.used_bytes,
                    })
                })
                .collect();
            json!({
                "name": name,
                "cache_hits": cache.hits,
                "cache_misses": cache.misses,
                "cache_used_bytes": cache.used_bytes,
                "cache_parts": cache_parts,
                "txgs": p.stats.txgs.load(Ordering::Relaxed),
                "log_commits": p.stats.log_commits.load(Ordering::Relaxed),
                "throttled_writes": p.stats.throttled_writes.load(Ordering::Relaxed),
                "shard_syncs": p.stats.shard_syncs.load(Ordering::Relaxed),
                "log_block_refs_written": p.stats.log_block_refs_written.load(Ordering::Relaxed),
                "log_block_refs_adopted": p.stats.log_block_refs_adopted.load(Ordering::Relaxed),
                "metadata_chunks_kept": p.stats.metadata_chunks_kept.load(Ordering::Relaxed),
            })
        })
        .collect();
    pools.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Value::Array(pools)
}

/// The `stats_get` result.
#[must_use]
pub fn stats_json(state: &State) -> Value {
    let stats = &state.server.stats;
    let connections = stats.connections();
    let shards: Vec<Value> = stats
        .shards()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "shard": i,
                "cpu_seconds": s.cpu_time().map(|d| d.as_secs_f64()),
                "connections": connections.iter().filter(|c| c.shard == i).count(),
                "handoffs_received": state.shard_set.received(i),
                "io": io_json(&s.io.snapshot()),
            })
        })
        .collect();
    let luns: Vec<Value> = stats
        .luns()
        .map(|l| json!({"target": l.target, "lun": l.lun, "io": io_json(&l.snapshot())}))
        .collect();
    let conns: Vec<Value> = connections
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "tsih": c.tsih,
                "initiator": c.initiator,
                "target": c.target,
                "shard": c.shard,
                "io": io_json(&c.io.snapshot()),
            })
        })
        .collect();
    json!({
        "uptime_seconds": stats.uptime().as_secs_f64(),
        "shards": shards,
        "luns": luns,
        "connections": conns,
        "pools": pools_json(state),
        "copies": copies_json(&engine::copy_stats::snapshot()),
    })
}
