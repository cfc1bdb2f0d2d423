//! Connections are placed per connection on the least-loaded shard, never per target: two
//! sessions to the same target land on different shards, and after one of them logs out, the
//! next connection goes to the shard it left empty (round-robin would pick the other one).

mod common;

use std::time::{Duration, Instant};

use target_iscsi::initiator::{Initiator, LoginOptions};

const IQN: &str = "iqn.2026-11.io.ferrite:placement";
fn sessions(socket: &std::path::Path) -> Vec<serde_json::Value> {
    let v = common::rpc(socket, "session_list", &serde_json::json!({}));
    v.as_array().expect("array").clone()
}

/// Shards of the sessions logged in to the test target, sorted.
fn session_shards(socket: &std::path::Path) -> Vec<u64> {
    let list = sessions(socket);
    let mut shards: Vec<u64> = list
        .iter()
        .filter(|s| s["target"].as_str() == Some(IQN))
        .map(|s| s["shard"].as_u64().expect("shard"))
        .collect();
    shards.sort_unstable();
    shards
}

/// Connections placed on `shard`, as the Prometheus endpoint at `metrics` reports them.
fn placed_connections(metrics: &str, shard: u64) -> f64 {
    let text = common::http(metrics, "GET /metrics HTTP/1.1\r\n\r\n");
    let prefix = format!("ferrite_shard_connections{{shard=\"{shard}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}sample in:\n{text}"))
}

#[test]
fn sessions_go_to_the_least_loaded_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, metrics) =
        common::start_with_metrics(dir.path(), IQN, &common::memory_lun(0, "64M"));
    let socket = dir.path().join("data/ferrited.sock");
    let mut opts = LoginOptions::new("iqn.2026-11.io.ferrite:placer", IQN);
    opts.timeout = Duration::from_secs(10);
    let mut a = Initiator::login(daemon.portal, &opts).expect("first session");
    let shard_a = session_shards(&socket)[0];
    opts.isid[5] = 2;
    let mut b = Initiator::login(daemon.portal, &opts).expect("second session");
    // Both sessions do I/O on the same LUN.
    assert_eq!(a.read16(0, 0, 512, 8).expect("read a").status, 0);
    assert_eq!(b.read16(0, 0, 512, 8).expect("read b").status, 0);
    let shards = session_shards(&socket);
    println!("sessions on shards {shards:?}");
    assert_eq!(shards.len(), 2, "two sessions expected: {shards:?}");
    assert_ne!(shards[0], shards[1], "the two sessions share a shard");
    let shard_b = if shards[0] == shard_a { shards[1] } else { shards[0] };

    // B leaves: its shard is empty, A's holds one connection. Least-loaded placement puts the
    // next connection on B's shard; round-robin would put it on A's (the third in turn).
    b.logout().expect("logout b");
    let deadline = Instant::now() + Duration::from_secs(5);
    while placed_connections(&metrics, shard_b) != 0.0 {
        assert!(Instant::now() < deadline, "shard {shard_b} still counts B's connection");
        std::thread::sleep(Duration::from_millis(20));
    }
    opts.isid[5] = 3;
    let mut c = Initiator::login(daemon.portal, &opts).expect("third session");
    assert_eq!(c.read16(0, 0, 512, 8).expect("read c").status, 0);
    let shards = session_shards(&socket);
    println!("after B left (shard {shard_b}), sessions on shards {shards:?}");
    let mut want = vec![shard_a, shard_b];
    want.sort_unstable();
    assert_eq!(
        shards, want,
        "the third session must go to shard {shard_b}, which B left empty, not share A's"
    );
    a.logout().expect("logout a");
    c.logout().expect("logout c");
    assert!(daemon.stop());
}
