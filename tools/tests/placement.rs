//! Connections are placed per connection on the least-loaded shard, never per target: two
//! sessions to the same target land on different shards.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use target_iscsi::initiator::{Initiator, LoginOptions};

const IQN: &str = "iqn.2026-11.io.ferrite:placement";
const CONFIG: &str = r#"
[daemon]
shards = 2
[[portal]]
address = "PORTAL"
[[target]]
iqn = "iqn.2026-11.io.ferrite:placement"
[[target.lun]]
id = 0
backend = "memory"
size = "64M"
"#;

fn sessions(socket: &std::path::Path) -> Vec<serde_json::Value> {
    let mut s = UnixStream::connect(socket).expect("control socket");
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"session_list\"}\n").expect("send");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("reply");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    v["result"].as_array().expect("array").clone()
}

#[test]
fn two_sessions_to_one_target_use_different_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = common::Daemon::start(dir.path(), CONFIG, &[]);
    let mut opts = LoginOptions::new("iqn.2026-11.io.ferrite:placer", IQN);
    opts.timeout = Duration::from_secs(10);
    let mut a = Initiator::login(daemon.portal, &opts).expect("first session");
    opts.isid[5] = 2;
    let mut b = Initiator::login(daemon.portal, &opts).expect("second session");
    // Both sessions do I/O on the same LUN.
    assert_eq!(a.read16(0, 0, 512, 8).expect("read a").status, 0);
    assert_eq!(b.read16(0, 0, 512, 8).expect("read b").status, 0);
    let list = sessions(&dir.path().join("data/ferrited.sock"));
    let shards: Vec<u64> = list
        .iter()
        .filter(|s| s["target"].as_str() == Some(IQN))
        .map(|s| s["shard"].as_u64().expect("shard"))
        .collect();
    println!("sessions on shards {shards:?}");
    assert_eq!(shards.len(), 2, "two sessions expected: {list:?}");
    assert_ne!(shards[0], shards[1], "the two sessions share a shard");
    a.logout().expect("logout");
    b.logout().expect("logout");
    assert!(daemon.stop());
}
