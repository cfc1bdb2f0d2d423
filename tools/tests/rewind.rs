//! A pool whose newest txg does not load is opened rewound, and every tool says so:
//! ferrite-inspect reports the rejected txg and exits 4, ferrited logs one line at import, and
//! `ferritectl pool status` shows the rewind until `ferritectl pool clear`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{ferritectl, text};
use std::time::Duration;

use engine::format::{label_offset_bytes, LABEL_COUNT};
use engine::pool_root::PoolRootPhys;
use engine::uberblock::{slot_offset_bytes, Uberblock, UBERBLOCK_RING_SLOTS, UBERBLOCK_SLOT_BYTES};

const IQN: &str = "iqn.2026-11.io.ferrite:rewind";

/// The newest uberblock in the pool image.
fn newest_uberblock(image: &[u8]) -> Uberblock {
    let mut newest: Option<Uberblock> = None;
    for l in 0..LABEL_COUNT {
        let base = label_offset_bytes(l, image.len() as u64);
        for slot in 0..UBERBLOCK_RING_SLOTS {
            let at = usize::try_from(base + slot_offset_bytes(slot)).expect("fits");
            let bytes = &image[at..at + UBERBLOCK_SLOT_BYTES as usize];
            if let Ok(Some(ub)) = Uberblock::decode_slot(bytes) {
                if newest.is_none_or(|n| ub.txg > n.txg) {
                    newest = Some(ub);
                }
            }
        }
    }
    newest.expect("an uberblock in the image")
}

fn inspect(image: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrite-inspect"));
    cmd.arg(image).arg("--quiet");
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run ferrite-inspect")
}

/// Starts ferrited on the configuration the first start wrote, its stderr into `log`.
fn restart(dir: &Path, log: &Path) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrited"))
        .arg("--config")
        .arg(dir.join("ferrited.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn ferrited");
    common::wait_ready(&mut child, || {
        format!(
            "ferrited exited before it was ready: {}",
            text(&std::fs::read(log).unwrap_or_default())
        )
    });
    child
}

/// SIGTERM, and a clean exit within 20 s.
fn stop(mut child: std::process::Child) {
    match common::terminate(&mut child, Duration::from_secs(20)) {
        Some(status) => assert!(status.success(), "ferrited exited with {status}"),
        None => {
            let _ = child.kill();
            panic!("ferrited did not stop within 20 s");
        }
    }
}

#[test]
fn rewound_import_is_reported_by_inspect_ferrited_and_ferritectl_until_cleared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = common::start_volume(dir.path(), "tank0.img", IQN, "tank/rw");
    let socket = dir.path().join("data/ferrited.sock");
    for (method, name) in [
        ("snapshot_create", "tank/rw@keep"),
        ("snapshot_create", "tank/rw@gone"),
        ("snapshot_destroy", "tank/rw@gone"),
    ] {
        common::rpc(&socket, method, &serde_json::json!({ "name": name }));
    }
    assert!(daemon.stop(), "clean stop");

    // Change 8 bytes of the directory the newest txg holds. The destroy wrote it; the export
    // committed one more txg that kept it, so both are rejected and the import opens the txg
    // before the destroy.
    let image = dir.path().join("data/tank0.img");
    let mut bytes = std::fs::read(&image).expect("read image");
    let ub = newest_uberblock(&bytes);
    let newest = ub.txg;
    let root_at = usize::try_from(ub.root.offset_bytes).expect("fits");
    let root = PoolRootPhys::decode(&bytes[root_at..root_at + ub.root.logical_bytes as usize])
        .expect("pool root");
    let directory = root.directory;
    assert_eq!(directory.birth_txg, newest - 1, "the destroy's txg wrote the directory");
    let at = usize::try_from(directory.offset_bytes).expect("fits") + 64;
    for b in &mut bytes[at..at + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&image, &bytes).expect("write image");
    drop(bytes);
    let opened = newest - 2;

    // ferrite-inspect: the rejected txg, why, and exit status 4.
    let out = inspect(&image, false);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "ferrite-inspect:\n{report}{}", text(&out.stderr));
    for txg in [newest, newest - 1] {
        assert!(
            report.contains(&format!("REJECTED txg {txg}: pool metadata is corrupt: directory")),
            "{report}"
        );
    }
    assert!(report.contains(&format!("REWOUND: import opens txg {opened}")), "{report}");
    let out = inspect(&image, true);
    assert_eq!(out.status.code(), Some(4));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["rewound"], true);
    assert_eq!(json["clean"], true, "the txg opened is clean: {json}");
    assert_eq!(json["txg"], opened);
    assert_eq!(json["rejected_txgs"][0]["txg"], newest);
    assert_eq!(json["rejected_txgs"][1]["txg"], newest - 1);
    assert_eq!(json["rejected_txgs"].as_array().map(Vec::len), Some(2));

    // ferrited: one line at import.
    let log = dir.path().join("ferrited.log");
    let child = restart(dir.path(), &log);
    let logged = text(&std::fs::read(&log).expect("log"));
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains("REWOUND")).collect();
    assert_eq!(lines.len(), 1, "one rewind line:\n{logged}");
    assert!(lines[0].contains(&format!("txg {newest} rejected")), "{}", lines[0]);
    assert!(lines[0].contains(&format!("txg {} rejected", newest - 1)), "{}", lines[0]);
    assert!(lines[0].contains(&format!("rewound to txg {opened}")), "{}", lines[0]);

    // ferritectl: status shows it until it is cleared.
    for _ in 0..2 {
        let out = ferritectl(&socket, &["pool", "status"]);
        assert!(out.status.success());
        let status = text(&out.stdout);
        assert!(status.contains("tank: REWOUND at import"), "{status}");
        assert!(status.contains(&format!("txg {newest} rejected")), "{status}");
    }
    let out = ferritectl(&socket, &["--json", "pool", "status"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json[0]["rewind"]["imported_txg"], opened);
    assert_eq!(json[0]["rewind"]["rejected"][0]["txg"], newest);
    let out = ferritectl(&socket, &["pool", "clear", "tank"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("pool tank: rewind report cleared"),
        "{}",
        text(&out.stdout)
    );
    let out = ferritectl(&socket, &["pool", "status"]);
    assert!(!text(&out.stdout).contains("REWOUND"), "{}", text(&out.stdout));
    let out = ferritectl(&socket, &["--json", "pool", "status"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(json[0]["rewind"].is_null(), "{json}");
    let out = ferritectl(&socket, &["pool", "clear", "tank"]);
    assert!(text(&out.stdout).contains("no rewind report to clear"), "{}", text(&out.stdout));
    let out = ferritectl(&socket, &["pool", "clear", "nope"]);
    assert!(!out.status.success(), "an unknown pool is an error");
    // The rewound state is what is served: the snapshot destroyed in a rejected txg is back.
    let snaps = common::rpc(&socket, "snapshot_list", &serde_json::json!({}));
    let names: Vec<&str> =
        snaps.as_array().expect("list").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["tank/rw@keep", "tank/rw@gone"]);
    stop(child);

    // The import committed past the rejected txgs (whose uberblocks are still in the ring):
    // the pool opens at its newest txg and is clean.
    let out = inspect(&image, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}
