//! `ferritectl pool scrub` on a running ferrited: a byte flipped in a data block on disk is
//! found by the scrub and named with its dataset in `pool status` and the metrics; pause,
//! resume and stop answer; a second start, a pause with none running and an unknown pool are
//! refused with one line; a paused scrub is still paused after a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ferritectl, text, Daemon};
use target_iscsi::initiator::{Initiator, LoginOptions};

const IQN: &str = "iqn.2026-12.io.ferrite:scrub";

/// Pool `tank` (512 MiB) scrubbing at 256 KiB/s, so a scrub lasts long enough to pause it,
/// and LUN 0 the volume `tank/rot`; metrics on `metrics`.
fn config(metrics: &str) -> String {
    let pool = common::pool_table("tank", "tank0.img", "512M") + "scrub_rate = \"256K\"\n";
    let daemon = format!("shards = 1\nmetrics = \"{metrics}\"");
    common::config(&daemon, &pool, IQN, &common::volume_lun(0, "tank/rot", "64M"))
}

/// The value of the first sample line starting with `prefix` and holding `with` in the
/// metrics at `addr`.
fn metric(addr: &str, prefix: &str, with: &str) -> f64 {
    let text = common::http(addr, &format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    text.lines()
        .find(|l| l.starts_with(prefix) && l.contains(with))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{text}"))
}

/// Runs `ferritectl ARGS`, which must succeed: its stdout.
fn ok(socket: &Path, args: &[&str]) -> String {
    let out = ferritectl(socket, args);
    assert!(out.status.success(), "ferritectl {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Runs `ferritectl ARGS`, which must fail with one line on stderr containing `want`.
fn refused(socket: &Path, args: &[&str], want: &str) {
    let out = ferritectl(socket, args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "ferritectl {args:?} exited 0");
    assert!(err.contains(want) && err.trim().lines().count() == 1, "ferritectl {args:?}: {err}");
}

/// The scrub state in `pool_list`.
fn scan_state(socket: &Path) -> String {
    let pools = common::rpc(socket, "pool_list", &serde_json::json!({}));
    pools[0]["scan"]["state"].as_str().unwrap_or("none").to_string()
}

/// Polls `pool status` until tank's scan line says the scrub finished: that text.
fn wait_finished(socket: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = ok(socket, &["pool", "status"]);
        if status.contains("scan: scrub finished") {
            return status;
        }
        assert!(Instant::now() < deadline, "the scrub did not finish in 120 s:\n{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_scrub_finds_a_flipped_byte_and_names_its_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let config = || config(&metrics);
    let daemon = Daemon::start(dir.path(), &config(), &[]);
    let opts = {
        let mut o = LoginOptions::new("iqn.2026-12.io.ferrite:scrub-tester", IQN);
        o.timeout = Duration::from_secs(10);
        o
    };
    // A 4 KiB pattern nothing else on disk contains, and some ordinary data around it.
    let pattern: Vec<u8> =
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 ^ 0xa5).collect();
    {
        let mut ini = Initiator::login(daemon.portal, &opts).expect("login");
        let fill = vec![0x3cu8; 64 * 1024];
        assert_eq!(ini.write16(0, 0, 512, &fill, false).expect("write").status, 0);
        assert_eq!(ini.write16(0, 800, 512, &pattern, true).expect("write").status, 0);
        assert_eq!(ini.synchronize_cache(0).expect("sync").status, 0);
        ini.logout().expect("logout");
    }
    assert!(daemon.stop(), "clean stop");

    // Flip one byte in every on-disk copy of the block (the block, and any intent-log
    // record that still holds it: the scrub does not read the log).
    common::flip_byte_in_copies(&dir.path().join("data/tank0.img"), &pattern);

    let daemon = Daemon::start(dir.path(), &config(), &[]);
    let socket = dir.path().join("data/ferrited.sock");
    assert_eq!(scan_state(&socket), "none", "no scrub before one is started");
    let started = ok(&socket, &["pool", "scrub", "tank"]);
    assert!(started.contains("scrub in progress"), "{started}");
    refused(&socket, &["pool", "scrub", "tank"], "already running");
    ok(&socket, &["pool", "scrub", "tank", "--pause"]);
    assert_eq!(scan_state(&socket), "paused");
    let status = ok(&socket, &["pool", "status"]);
    assert!(status.contains("pool tank: scan: scrub paused"), "{status}");
    ok(&socket, &["pool", "scrub", "tank", "--resume"]);
    let status = wait_finished(&socket);
    assert!(status.contains("with 1 errors"), "{status}");
    assert!(status.contains("error: tank/rot partition"), "the bad block's dataset:\n{status}");
    // A file has no NVMe health log.
    let device_row = status.lines().find(|l| l.contains("tank0.img")).unwrap_or_default();
    assert!(device_row.ends_with("n/a"), "{status}");
    let json = ok(&socket, &["--json", "pool", "status"]);
    let pools: serde_json::Value = serde_json::from_str(&json).expect("json");
    let scan = &pools[0]["scan"];
    assert_eq!(scan["errors"], 1, "{scan}");
    assert_eq!(scan["bad_blocks"][0]["dataset"], "tank/rot", "{scan}");
    assert_eq!(scan["examined_bytes"], scan["to_examine_bytes"], "{scan}");
    // The same in the metrics, with the device's counters.
    assert_eq!(metric(&metrics, "ferrite_pool_scan_errors{pool=\"tank\"}", ""), 1.0);
    let state = "ferrite_pool_scan_state{pool=\"tank\",state=\"finished\"}";
    assert_eq!(metric(&metrics, state, ""), 1.0);
    let device = "ferrite_device_state{pool=\"tank\",device=\"";
    assert_eq!(metric(&metrics, device, "state=\"ONLINE\""), 1.0);
    let errors = "ferrite_device_errors_total{pool=\"tank\",device=\"";
    assert_eq!(metric(&metrics, errors, "kind=\"checksum\""), 1.0);
    assert_eq!(metric(&metrics, errors, "kind=\"read\""), 0.0);
    // The device's CKSUM count holds the bad copy until `pool clear`.
    let cksum =
        |pools: &serde_json::Value| pools[0]["vdevs"][0]["devices"][0]["checksum_errors"].clone();
    assert_eq!(cksum(&pools), 1, "{pools}");
    let cleared = ok(&socket, &["pool", "clear", "tank"]);
    assert!(cleared.contains("1 device errors cleared"), "{cleared}");
    assert_eq!(cksum(&common::rpc(&socket, "pool_list", &serde_json::json!({}))), 0);

    // A second scrub, stopped; then nothing runs to pause.
    ok(&socket, &["pool", "scrub", "tank"]);
    ok(&socket, &["pool", "scrub", "tank", "--stop"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while scan_state(&socket) != "stopped" {
        assert!(Instant::now() < deadline, "the scrub did not stop: {}", scan_state(&socket));
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = ok(&socket, &["pool", "status"]);
    assert!(status.contains("pool tank: scan: scrub stopped"), "{status}");
    refused(&socket, &["pool", "scrub", "tank", "--pause"], "no scrub of pool tank is running");
    refused(&socket, &["pool", "scrub", "nope"], "no pool named \"nope\"");
    // A paused scrub does not hold up a clean stop.
    ok(&socket, &["pool", "scrub", "tank"]);
    ok(&socket, &["pool", "scrub", "tank", "--pause"]);
    let stopping = Instant::now();
    assert!(daemon.stop(), "clean stop with a paused scrub");
    assert!(stopping.elapsed() < Duration::from_secs(15), "stop took {:?}", stopping.elapsed());

    // The paused scrub is on record in the pool: the next daemon has it, still paused, and
    // finishes it when resumed.
    let daemon = Daemon::start(dir.path(), &config(), &[]);
    assert_eq!(scan_state(&socket), "paused", "the paused scrub after a restart");
    ok(&socket, &["pool", "scrub", "tank", "--resume"]);
    let status = wait_finished(&socket);
    assert!(status.contains("with 1 errors"), "{status}");
    assert!(daemon.stop(), "clean stop");
}
