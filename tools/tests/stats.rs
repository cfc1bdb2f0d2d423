//! Statistics: `stats_get` on the control socket, `ferritectl stats`, and the Prometheus
//! endpoint, checked against the I/O a test initiator does.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use target_iscsi::initiator::{Initiator, LoginOptions};

const IQN: &str = "iqn.2026-11.io.ferrite:stats";
/// The value of the sample line that starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
}

fn lun_io(stats: &serde_json::Value, lun: u64) -> serde_json::Value {
    stats["luns"]
        .as_array()
        .expect("luns")
        .iter()
        .find(|l| l["lun"] == lun && l["target"] == IQN)
        .expect("lun present")["io"]
        .clone()
}

#[test]
fn statistics_and_metrics_follow_the_io() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, metrics) = common::start_with_metrics(
        dir.path(),
        IQN,
        &(common::memory_lun(0, "64M") + &common::memory_lun(1, "64M")),
    );
    let socket = dir.path().join("data/ferrited.sock");
    let get = format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\n\r\n");

    let before = common::http(&*metrics, &get);
    assert!(before.starts_with("HTTP/1.1 200 OK\r\n"), "{before}");
    assert!(before.contains("Content-Type: text/plain; version=0.0.4"), "{before}");
    let lun0 = format!("{{target=\"{IQN}\",lun=\"0\"}}");
    assert_eq!(sample(&before, &format!("ferrite_lun_write_ops_total{lun0}")), 0.0);
    assert!(before.contains("# TYPE ferrite_lun_read_latency_seconds histogram"));

    let mut opts = LoginOptions::new("iqn.2026-11.io.ferrite:stats-client", IQN);
    opts.timeout = Duration::from_secs(10);
    let mut a = Initiator::login(daemon.portal, &opts).expect("first session");
    opts.isid[5] = 2;
    let mut b = Initiator::login(daemon.portal, &opts).expect("second session");

    // A client that connects to the metrics endpoint and never sends a request: I/O goes on.
    let mut idle = TcpStream::connect(&metrics).expect("idle client");
    let data = vec![0x5au8; 4096];
    for i in 0..10u64 {
        assert_eq!(a.write16(0, i * 8, 512, &data, false).expect("write").status, 0);
    }
    for i in 0..4u64 {
        assert_eq!(b.read16(0, i * 8, 512, 8).expect("read").status, 0);
    }
    assert_eq!(b.write16(1, 0, 512, &data, false).expect("write lun 1").status, 0);

    let stats = common::rpc(&socket, "stats_get", &serde_json::json!({}));
    let io0 = lun_io(&stats, 0);
    assert_eq!(io0["write_ops"], 10, "{io0}");
    assert_eq!(io0["write_bytes"], 40960);
    assert_eq!(io0["read_ops"], 4);
    assert_eq!(io0["read_bytes"], 16384);
    assert_eq!(io0["queue_depth"], 0);
    assert!(io0["write_latency_us"]["p99"].as_f64().expect("p99") > 0.0);
    assert_eq!(lun_io(&stats, 1)["write_ops"], 1);
    let conns = stats["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), 2, "{conns:?}");
    let shard_writes: u64 = stats["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["io"]["write_ops"].as_u64().expect("n"))
        .sum();
    assert_eq!(shard_writes, 11);
    let cpu_seconds = stats["shards"][0]["cpu_seconds"].as_f64().expect("shard 0 cpu_seconds");
    let cpu_read_at = Instant::now();
    assert!(stats["copies"]["paths"].as_array().is_some_and(|p| !p.is_empty()));

    // The idle client is dropped after its deadline; the next scrape sees the I/O.
    let started = Instant::now();
    let after = common::http(&*metrics, &get);
    assert!(started.elapsed() < Duration::from_secs(8), "scrape waited {:?}", started.elapsed());
    assert_eq!(sample(&after, &format!("ferrite_lun_write_ops_total{lun0}")), 10.0);
    assert_eq!(sample(&after, &format!("ferrite_lun_read_bytes_total{lun0}")), 16384.0);
    assert_eq!(sample(&after, &format!("ferrite_lun_write_latency_seconds_count{lun0}")), 10.0);
    assert_eq!(
        sample(&after, &format!("ferrite_lun_write_latency_seconds_bucket{{target=\"{IQN}\",lun=\"0\",le=\"+Inf\"}}")),
        10.0
    );
    // The metric is the same busy time, in seconds: no less than stats_get showed before the
    // scrape, and no more than that plus the wall time since (one thread, one 10 ms tick).
    let cpu_metric = sample(&after, "ferrite_shard_cpu_seconds_total{shard=\"0\"}");
    let cpu_ceiling = cpu_seconds + cpu_read_at.elapsed().as_secs_f64() + 0.01;
    assert!(
        cpu_metric >= cpu_seconds && cpu_metric <= cpu_ceiling,
        "shard 0 CPU: metric {cpu_metric} s, stats_get {cpu_seconds} s before it (at most {cpu_ceiling})"
    );
    let mut idle_answer = Vec::new();
    let _ = idle.read_to_end(&mut idle_answer);

    // Only GET /metrics is served.
    assert!(common::http(&*metrics, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(common::http(&*metrics, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(common::http(&*metrics, &huge).starts_with("HTTP/1.1 431"));

    // ferritectl stats prints the LUN with its figures since start.
    let out = Command::new(env!("CARGO_BIN_EXE_ferritectl"))
        .args(["--socket", socket.to_str().expect("utf8"), "stats", "--interval", "0"])
        .output()
        .expect("ferritectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("{IQN}/0")), "{text}");
    assert!(text.contains("CPU_BUSY_%"), "{text}");
    assert!(text.contains("COPY_PATH"), "{text}");

    a.logout().expect("logout");
    b.logout().expect("logout");
    // Ended connections leave the registry.
    let deadline = Instant::now() + Duration::from_secs(5);
    while common::rpc(&socket, "stats_get", &serde_json::json!({}))["connections"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
    {
        assert!(Instant::now() < deadline, "connections still listed after logout");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(daemon.stop());
}
