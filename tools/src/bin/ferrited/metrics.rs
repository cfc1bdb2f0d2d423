//! The Prometheus endpoint: `GET /metrics` over HTTP/1.x on the `[daemon] metrics` address.
//!
//! It runs on its own thread with blocking sockets, one client at a time, so a slow or hostile
//! client can only delay other scrapes, never a shard: the request is read with a deadline
//! ([`CLIENT_DEADLINE`]) and a size limit ([`MAX_REQUEST_BYTES`]), and the answer is written
//! with a write timeout. Anything but `GET /metrics` gets 404.
//!
//! To add metrics, write a collector `fn(&State, &mut Exposition)` and list it in
//! [`COLLECTORS`]; each collector declares its families and writes their samples.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrite_tools::prometheus::{Exposition, Kind, CONTENT_TYPE};
use target_iscsi::admission::Refusal;
use target_iscsi::stats::{bucket_upper_ns, DirectionSnapshot, IoSnapshot, LATENCY_BUCKETS};

use crate::daemon::State;

/// Largest request (line and headers) read; longer ones are answered 431 and closed.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request and take the answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

/// Time and bytes spent draining a request after the answer.
const LINGER: Duration = Duration::from_millis(200);
const MAX_LINGER_BYTES: usize = 64 * 1024;

/// A collector writes one or more complete metric families.
type Collector = fn(&State, &mut Exposition);

/// Every collector, in exposition order.
const COLLECTORS: &[Collector] = &[
    daemon_metrics,
    io_metrics,
    shard_metrics,
    pool_metrics,
    device_metrics,
    scan_metrics,
    volume_metrics,
    login_metrics,
];

/// Binds the endpoint (before the shards start, so a bad address fails start-up).
///
/// # Errors
/// A message naming the address.
pub fn bind(address: &str) -> Result<TcpListener, String> {
    let addr: SocketAddr = crate::config::resolve_address("metrics", address)?;
    TcpListener::bind(addr).map_err(|e| format!("metrics {addr}: cannot listen: {e}"))
}

/// Serves scrapes on a new thread until the process ends.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn(listener: TcpListener, state: Arc<State>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("ferrite-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => serve_client(s, &state),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the metrics thread: {e}"))
}

/// The full exposition.
#[must_use]
pub fn render(state: &State) -> String {
    let mut e = Exposition::new();
    for collect in COLLECTORS {
        collect(state, &mut e);
    }
    e.finish()
}

/// What the request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    NotFound,
    TooLarge,
    Incomplete,
}

fn parse_request(head: &[u8]) -> Request {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if head.len() >= MAX_REQUEST_BYTES {
            Request::TooLarge
        } else {
            Request::Incomplete
        };
    };
    let line = head[..end].split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics"), Some(v)) if v.starts_with("HTTP/1.") => Request::Metrics,
        _ => Request::NotFound,
    }
}

fn serve_client(mut stream: TcpStream, state: &State) {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let _ = stream.set_write_timeout(Some(CLIENT_DEADLINE));
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let request = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n.min(MAX_REQUEST_BYTES - head.len())]),
        }
        match parse_request(&head) {
            Request::Incomplete => {}
            other => break other,
        }
    };
    let (status, content_type, body) = match request {
        Request::Metrics => ("200 OK", CONTENT_TYPE, render(state)),
        Request::TooLarge => {
            ("431 Request Header Fields Too Large", "text/plain", "too large\n".into())
        }
        _ => ("404 Not Found", "text/plain", "not found; try GET /metrics\n".into()),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
    // Close gently: unread request bytes would make the kernel reset the connection and the
    // client could lose the answer. Drain a bounded amount for a bounded time.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(LINGER));
    let mut drained = 0;
    while drained < MAX_LINGER_BYTES {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

// ----- collectors -----

fn daemon_metrics(state: &State, e: &mut Exposition) {
    e.family("ferrite_uptime_seconds", Kind::Gauge, "Seconds since the daemon started.");
    e.sample("ferrite_uptime_seconds", &[], state.server.stats.uptime().as_secs_f64());
    let copies = engine::copy_stats::snapshot();
    e.family(
        "ferrite_payload_bytes_copied_total",
        Kind::Counter,
        "Payload bytes copied, per data path.",
    );
    for p in &copies.paths {
        let path = p.path.map_or("", engine::copy_stats::CopyPath::name);
        e.sample(
            "ferrite_payload_bytes_copied_total",
            &[("path", path.into())],
            p.bytes_copied as f64,
        );
    }
    e.family("ferrite_payload_copy_ios_total", Kind::Counter, "I/Os served, per data path.");
    for p in &copies.paths {
        let path = p.path.map_or("", engine::copy_stats::CopyPath::name);
        e.sample("ferrite_payload_copy_ios_total", &[("path", path.into())], p.ios as f64);
    }
}

/// A counter of [`IoSnapshot`]: name suffix, help, getter.
type IoFigure = (&'static str, &'static str, fn(&IoSnapshot) -> u64);

/// One labelled series of I/O counters.
type Series<'a> = (Vec<(&'a str, String)>, IoSnapshot);

fn latency_buckets(d: &DirectionSnapshot) -> Vec<(f64, u64)> {
    (0..LATENCY_BUCKETS).map(|i| (bucket_upper_ns(i) as f64 / 1e9, d.latency[i])).collect()
}

/// The I/O families of one scope (`lun`, `shard`, `connection`), every series in each.
fn io_families(e: &mut Exposition, scope: &str, series: &[Series<'_>]) {
    let counters: [IoFigure; 6] = [
        ("read_ops_total", "READ commands completed", |s| s.read.ops),
        ("write_ops_total", "WRITE commands completed", |s| s.write.ops),
        ("read_bytes_total", "Bytes read", |s| s.read.bytes),
        ("write_bytes_total", "Bytes written", |s| s.write.bytes),
        ("other_ops_total", "Other SCSI commands completed", |s| s.other_ops),
        ("errors_total", "Commands that ended with a non-GOOD status", |s| s.errors),
    ];
    for (suffix, help, get) in counters {
        let name = format!("ferrite_{scope}_{suffix}");
        e.family(&name, Kind::Counter, &format!("{help}, per {scope}."));
        for (labels, s) in series {
            e.sample(&name, labels, get(s) as f64);
        }
    }
    let name = format!("ferrite_{scope}_queue_depth");
    e.family(&name, Kind::Gauge, &format!("Commands received and not yet answered, per {scope}."));
    for (labels, s) in series {
        e.sample(&name, labels, s.queue_depth as f64);
    }
    for (dir, pick) in [
        ("read", (|s: &IoSnapshot| s.read) as fn(&IoSnapshot) -> DirectionSnapshot),
        ("write", |s: &IoSnapshot| s.write),
    ] {
        let name = format!("ferrite_{scope}_{dir}_latency_seconds");
        e.family(
            &name,
            Kind::Histogram,
            &format!("{dir} latency from command PDU to queued response, per {scope}."),
        );
        for (labels, s) in series {
            let d = pick(s);
            e.histogram(&name, labels, &latency_buckets(&d), d.latency_sum_ns as f64 / 1e9);
        }
    }
}

fn io_metrics(state: &State, e: &mut Exposition) {
    let stats = &state.server.stats;
    let luns: Vec<Series<'_>> = stats
        .luns()
        .map(|l| (vec![("target", l.target.clone()), ("lun", l.lun.to_string())], l.snapshot()))
        .collect();
    io_families(e, "lun", &luns);
    let shards: Vec<Series<'_>> = stats
        .shards()
        .iter()
        .enumerate()
        .map(|(i, s)| (vec![("shard", i.to_string())], s.io.snapshot()))
        .collect();
    io_families(e, "shard", &shards);
    let conns: Vec<Series<'_>> = stats
        .connections()
        .iter()
        .map(|c| {
            let labels = vec![
                ("connection", c.id.to_string()),
                ("initiator", c.initiator.clone()),
                ("target", c.target.clone()),
                ("shard", c.shard.to_string()),
            ];
            (labels, c.io.snapshot())
        })
        .collect();
    io_families(e, "connection", &conns);
}

fn shard_metrics(state: &State, e: &mut Exposition) {
    let stats = &state.server.stats;
    e.family(
        "ferrite_shard_cpu_seconds_total",
        Kind::Counter,
        "CPU time (user and system) of each shard thread: its busy time.",
    );
    for (i, s) in stats.shards().iter().enumerate() {
        if let Some(t) = s.cpu_time() {
            e.sample(
                "ferrite_shard_cpu_seconds_total",
                &[("shard", i.to_string())],
                t.as_secs_f64(),
            );
        }
    }
    e.family("ferrite_shard_connections", Kind::Gauge, "Connections placed on each shard.");
    for (i, n) in state.server.connections_per_shard.iter().enumerate() {
        let n = n.load(Ordering::Relaxed);
        e.sample("ferrite_shard_connections", &[("shard", i.to_string())], n as f64);
    }
}

fn pool_metrics(state: &State, e: &mut Exposition) {
    let mut pools: Vec<_> = state.pools.iter().collect();
    pools.sort_by_key(|(name, _)| name.as_str());
    type PoolFigure = (&'static str, Kind, &'static str, fn(&engine::Pool) -> u64);
    let figures: [PoolFigure; 15] = [
        ("ferrite_pool_capacity_bytes", Kind::Gauge, "Pool capacity.", |p| p.capacity_bytes()),
        ("ferrite_pool_free_bytes", Kind::Gauge, "Free space.", |p| p.free_bytes()),
        ("ferrite_pool_durable_txg", Kind::Gauge, "Newest durable txg.", |p| p.durable_txg().get()),
        (
            "ferrite_pool_checksum_errors_total",
            Kind::Counter,
            "Blocks that failed their checksum.",
            |p| p.checksum_errors(),
        ),
        ("ferrite_pool_cache_hits_total", Kind::Counter, "Read-cache hits.", |p| {
            p.cache_stats().hits
        }),
        ("ferrite_pool_cache_misses_total", Kind::Counter, "Read-cache misses.", |p| {
            p.cache_stats().misses
        }),
        ("ferrite_pool_txgs_total", Kind::Counter, "Txgs committed.", |p| {
            p.stats.txgs.load(Ordering::Relaxed)
        }),
        ("ferrite_pool_log_commits_total", Kind::Counter, "Intent-log commits.", |p| {
            p.stats.log_commits.load(Ordering::Relaxed)
        }),
        (
            "ferrite_pool_logical_bytes",
            Kind::Gauge,
            "Data bytes the volumes reference, before compression.",
            |p| p.pool_reduction_figures().logical_bytes,
        ),
        (
            "ferrite_pool_physical_bytes",
            Kind::Gauge,
            "Stored bytes of the data the volumes reference (after compression, before dedup).",
            |p| p.pool_reduction_figures().physical_bytes,
        ),
        ("ferrite_pool_dedup_table_entries", Kind::Gauge, "Dedup table entries.", |p| {
            p.dedup_table_figures().entries
        }),
        (
            "ferrite_pool_dedup_table_memory_bytes",
            Kind::Gauge,
            "Bytes of the in-memory dedup table.",
            |p| p.dedup_table_figures().memory_bytes,
        ),
        (
            "ferrite_pool_dedup_table_disk_bytes",
            Kind::Gauge,
            "Bytes of the dedup table on disk.",
            |p| p.dedup_table_figures().disk_bytes,
        ),
        (
            "ferrite_pool_dedup_stored_bytes",
            Kind::Gauge,
            "Stored bytes of deduplicated blocks, each once.",
            |p| p.dedup_table_figures().stored_bytes,
        ),
        (
            "ferrite_pool_dedup_referenced_bytes",
            Kind::Gauge,
            "Stored bytes of deduplicated blocks times their references (dedup ratio = referenced / stored).",
            |p| p.dedup_table_figures().referenced_bytes,
        ),
    ];
    for (name, kind, help, get) in figures {
        e.family(name, kind, help);
        for (pool_name, pool) in &pools {
            e.sample(name, &[("pool", (*pool_name).clone())], get(pool) as f64);
        }
    }
    let name = "ferrite_pool_cache_bytes";
    e.family(name, Kind::Gauge, "Read-cache bytes held in each shard's part of the cache.");
    for (pool_name, pool) in &pools {
        for (shard, part) in pool.cache().part_stats().iter().enumerate() {
            let labels = [("pool", (*pool_name).clone()), ("shard", shard.to_string())];
            e.sample(name, &labels, part.used_bytes as f64);
        }
    }
}

/// Each device of each pool: its state and error counters (the `pool status` tree).
fn device_metrics(state: &State, e: &mut Exposition) {
    let mut pools: Vec<_> = state.pools.iter().collect();
    pools.sort_by_key(|(name, _)| name.as_str());
    let health: Vec<(String, Vec<engine::GroupHealth>)> =
        pools.iter().map(|(name, p)| ((*name).clone(), p.device_health())).collect();
    let devices = || {
        health.iter().flat_map(|(pool, groups)| {
            groups.iter().flat_map(move |g| g.devices.iter().map(move |d| (pool.clone(), d)))
        })
    };
    let name = "ferrite_device_state";
    e.family(name, Kind::Gauge, "1 for the state each pool device is in (ONLINE, FAULTED, ...).");
    for (pool, d) in devices() {
        let labels = [("pool", pool), ("device", d.name.clone()), ("state", d.state.into())];
        e.sample(name, &labels, 1.0);
    }
    let name = "ferrite_device_errors_total";
    e.family(
        name,
        Kind::Counter,
        "Failed reads and writes, and copies that failed their checksum.",
    );
    for (pool, d) in devices() {
        for (kind, n) in
            [("read", d.read_errors), ("write", d.write_errors), ("checksum", d.checksum_errors)]
        {
            let labels =
                [("pool", pool.clone()), ("device", d.name.clone()), ("kind", kind.into())];
            e.sample(name, &labels, n as f64);
        }
    }
    let name = "ferrite_device_repaired_bytes_total";
    e.family(name, Kind::Counter, "Bytes rewritten on the device from redundancy.");
    for (pool, d) in devices() {
        e.sample(name, &[("pool", pool), ("device", d.name.clone())], d.repaired_bytes as f64);
    }
}

/// Each pool's current or last scrub (pools with none on record have no samples).
fn scan_metrics(state: &State, e: &mut Exposition) {
    let mut scans: Vec<(String, engine::scrub::ScrubStatus)> = state
        .pools
        .iter()
        .filter_map(|(name, p)| p.scrub_status().map(|s| (name.clone(), s)))
        .collect();
    scans.sort_by(|a, b| a.0.cmp(&b.0));
    let name = "ferrite_pool_scan_state";
    e.family(name, Kind::Gauge, "1 for the state of the pool's current or last scrub.");
    for (pool, s) in &scans {
        e.sample(name, &[("pool", pool.clone()), ("state", s.state.name().into())], 1.0);
    }
    type ScanFigure = (&'static str, &'static str, fn(&engine::scrub::ScrubStatus) -> Option<u64>);
    let figures: [ScanFigure; 6] = [
        ("ferrite_pool_scan_examined_bytes", "Bytes the scrub has checked.", |s| {
            Some(s.examined_bytes)
        }),
        ("ferrite_pool_scan_to_examine_bytes", "Bytes the scrub checks in all.", |s| {
            Some(s.to_examine_bytes)
        }),
        ("ferrite_pool_scan_errors", "Bad blocks the scrub found.", |s| Some(s.errors)),
        ("ferrite_pool_scan_repaired_bytes", "Bytes the scrub rewrote.", |s| {
            Some(s.repaired_bytes)
        }),
        (
            "ferrite_pool_scan_rate_bytes_per_second",
            "Bytes checked per second of scrub time.",
            |s| Some(s.rate_bytes_per_s),
        ),
        ("ferrite_pool_scan_eta_seconds", "Seconds left at that rate, while it runs.", |s| s.eta_s),
    ];
    for (name, help, get) in figures {
        e.family(name, Kind::Gauge, help);
        for (pool, s) in &scans {
            if let Some(v) = get(s) {
                e.sample(name, &[("pool", pool.clone())], v as f64);
            }
        }
    }
}

/// Data-reduction figures per volume.
fn volume_metrics(state: &State, e: &mut Exposition) {
    let mut series = Vec::new();
    for (pool_name, pool) in &state.pools {
        for name in pool.list().into_iter().filter(|n| !n.contains('@')) {
            let figures = pool.reduction_figures(&name).unwrap_or_default();
            let activity = pool.dedup_activity(&name).unwrap_or_default();
            let labels = vec![("pool", pool_name.clone()), ("volume", name)];
            series.push((labels, figures, activity));
        }
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    type VolumeFigure = (
        &'static str,
        Kind,
        &'static str,
        fn(&engine::reduction::ReductionFigures, &engine::reduction::DedupActivity) -> u64,
    );
    let figures: [VolumeFigure; 5] = [
        (
            "ferrite_volume_logical_bytes",
            Kind::Gauge,
            "Data bytes the volume references, before compression.",
            |f, _| f.logical_bytes,
        ),
        (
            "ferrite_volume_physical_bytes",
            Kind::Gauge,
            "Stored bytes of the data the volume references, after compression.",
            |f, _| f.physical_bytes,
        ),
        ("ferrite_volume_dedup_lookups_total", Kind::Counter, "Dedup table lookups.", |_, a| {
            a.lookups
        }),
        ("ferrite_volume_dedup_hits_total", Kind::Counter, "Dedup table hits.", |_, a| a.hits),
        (
            "ferrite_volume_dedup_stopped",
            Kind::Gauge,
            "1 when the volume takes no new dedup entries (the reason is in volume status).",
            |_, a| u64::from(a.stopped.is_some()),
        ),
    ];
    for (name, kind, help, get) in figures {
        e.family(name, kind, help);
        for (labels, f, a) in &series {
            e.sample(name, labels, get(f, a) as f64);
        }
    }
}

/// Connections that have not logged in (pending, refused at the caps) and failed logins.
fn login_metrics(state: &State, e: &mut Exposition) {
    let portals = state.server.admission.snapshot();
    let name = "ferrite_pending_logins";
    e.family(name, Kind::Gauge, "Connections accepted and not logged in yet, per portal.");
    for p in &portals {
        e.sample(name, &[("portal", p.portal.to_string())], p.pending as f64);
    }
    let name = "ferrite_connections_refused_total";
    e.family(
        name,
        Kind::Counter,
        "Connections closed at accept because a pending-login cap was reached, per portal and cap.",
    );
    for p in &portals {
        for (reason, n) in
            [(Refusal::PortalCap, p.refused_portal_cap), (Refusal::SourceCap, p.refused_source_cap)]
        {
            let labels = [("portal", p.portal.to_string()), ("reason", reason.label().into())];
            e.sample(name, &labels, n as f64);
        }
    }
    let name = "ferrite_login_failures_total";
    e.family(name, Kind::Counter, "Failed logins, per target asked for and reason.");
    for (target, reason, n) in state.server.login_failures.counts() {
        e.sample(name, &[("target", target), ("reason", reason.label().into())], n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Request::Metrics);
        assert_eq!(parse_request(b"GET /metrics HTTP/1.0\r\n\r\n"), Request::Metrics);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nHost"), Request::Incomplete);
        assert_eq!(parse_request(&[b'a'; MAX_REQUEST_BYTES]), Request::TooLarge);
    }
}
