//! A byte flipped on disk inside a data block is detected on read: the initiator gets MEDIUM
//! ERROR sense (never the bad data) and the pool's checksum-error counter rises.

mod common;

use std::time::Duration;

use target_iscsi::initiator::{Initiator, LoginOptions};

const IQN: &str = "iqn.2026-11.io.ferrite:rot";

fn checksum_errors(socket: &std::path::Path) -> u64 {
    let v = common::rpc(socket, "pool_list", &serde_json::json!({}));
    v[0]["checksum_errors"].as_u64().expect("counter")
}

#[test]
fn flipped_byte_in_a_data_block_reads_as_medium_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = common::start_volume(dir.path(), "tank0.img", IQN, "tank/rot");
    let opts = {
        let mut o = LoginOptions::new("iqn.2026-11.io.ferrite:rot-tester", IQN);
        o.timeout = Duration::from_secs(10);
        o
    };
    // A 4 KiB pattern nothing else on disk contains.
    let pattern: Vec<u8> =
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ 0x5a).collect();
    let lba = 800;
    {
        let mut ini = Initiator::login(daemon.portal, &opts).expect("login");
        let w = ini.write16(0, lba, 512, &pattern, true).expect("write");
        assert_eq!(w.status, 0);
        assert_eq!(ini.synchronize_cache(0).expect("sync").status, 0);
        ini.logout().expect("logout");
    }
    assert!(daemon.stop(), "clean stop");

    let image = dir.path().join("data/tank0.img");
    let inspect = |expect_clean: bool| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrite-inspect"))
            .arg(&image)
            .output()
            .expect("run ferrite-inspect");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.success(),
            expect_clean,
            "ferrite-inspect (clean expected: {expect_clean}):\n{text}"
        );
        text
    };
    let report = inspect(true);
    assert!(report.contains("rot"), "inspect lists the volume:\n{report}");

    // Find the block on the pool device and flip one byte in the middle of it (every copy).
    let copies = common::flip_byte_in_copies(&image, &pattern);
    println!("flipping a byte in {copies} on-disk copies of the block");
    let report = inspect(false);
    assert!(report.contains("NOT CLEAN"), "inspect reports the bad block:\n{report}");

    let config = dir.path().join("ferrited.toml");
    let data = dir.path().join("data");
    let daemon = common::Daemon::start_args(
        &["--config", config.to_str().expect("utf8"), "--data-dir", data.to_str().expect("utf8")],
        &[],
        daemon_portal(&config),
    );
    let socket = data.join("ferrited.sock");
    let before = checksum_errors(&socket);
    let mut ini = Initiator::login(daemon.portal, &opts).expect("login");
    let r = ini.read16(0, lba, 512, 8).expect("read");
    assert_eq!(
        r.status,
        2,
        "a corrupt block must give CHECK CONDITION, got status {} with {} data bytes (intact: {})",
        r.status,
        r.data.len(),
        r.data == pattern
    );
    assert_eq!(r.sense_key(), Some(0x03), "sense key must be MEDIUM ERROR: {:02x?}", r.sense);
    assert!(r.data.is_empty(), "no data may be returned from a corrupt block");
    let after = checksum_errors(&socket);
    assert!(after > before, "checksum error counter must rise ({before} -> {after})");
    // `pool status` puts the error on the device's own row, in its CKSUM column.
    let status = common::ferritectl(&socket, &["pool", "status"]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with(image.to_str().expect("utf8")))
        .unwrap_or_else(|| panic!("no row for {}:\n{text}", image.display()));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[1..5], ["ONLINE", "0", "0", &after.to_string()], "{text}");
    // Other blocks still read.
    let ok = ini.read16(0, 0, 512, 8).expect("read elsewhere");
    assert_eq!(ok.status, 0);
    ini.logout().expect("logout");
    assert!(daemon.stop());
}

/// The portal the first daemon used, read back from its configuration.
fn daemon_portal(config: &std::path::Path) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(config).expect("config");
    let line = text.lines().find(|l| l.starts_with("address")).expect("portal line");
    line.split('"').nth(1).expect("quoted").parse().expect("addr")
}
