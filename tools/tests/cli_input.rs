//! Input on the command line and in the configuration: names follow one rule, unknown
//! volumes and backends are refused with a non-zero exit, portals take host names, a busy
//! metrics port is named, thin volumes overcommit only up to the factor, and thick
//! reservations show as used.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ferritectl, free_port, pool_config, rpc, rpc_call, text, Daemon};
use serde_json::json;

/// The rule as ferrited states it (engine::dataset::NAME_RULE).
const RULE: &str = "names are 1 to 96 bytes of ASCII letters, digits";

/// Runs ferrited with `args`, which must make it exit on its own within 10 s: its output.
fn ferrited_must_exit(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrited"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrited");
    common::wait_for_exit(&mut child, Duration::from_secs(10), || {
        format!("ferrited {args:?} did not exit within 10 s")
    });
    child.wait_with_output().expect("output")
}

/// Writes `config` to DIR/ferrited.toml and starts ferrited on it with `--data-dir data_dir`
/// and `extra`; the portal is 127.0.0.1:`port`.
fn start_with_config(
    dir: &Path,
    config: &str,
    data_dir: &Path,
    extra: &[&str],
    port: u16,
) -> (Daemon, SocketAddr) {
    let path = dir.join("ferrited.toml");
    std::fs::write(&path, config).expect("config");
    let portal: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut args = vec![
        "--config",
        path.to_str().expect("utf8"),
        "--data-dir",
        data_dir.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    (Daemon::start_args(&args, &[], portal), portal)
}

#[test]
fn the_control_plane_refuses_bad_names_unknown_volumes_and_overcommit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let luns = common::volume_lun(0, "tank/v", "64M");
    let d = Daemon::start(
        dir.path(),
        &pool_config("tank.img", "iqn.2026-12.io.ferrite:cli", &luns),
        &[],
    );
    let socket = dir.path().join("data/ferrited.sock");

    // An unknown volume is an error, not an empty table.
    let out = ferritectl(&socket, &["snapshot", "list", "tank/nope"]);
    assert!(!out.status.success(), "snapshot list tank/nope exited 0");
    assert!(text(&out.stderr).contains("tank/nope"), "{}", text(&out.stderr));
    let out = ferritectl(&socket, &["snapshot", "list", "tank/v"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Names with a newline or ESC are refused with the rule, and nothing is created.
    for bad in ["tank/a\nb", "tank/a\u{1b}[2Jb", "tank/.v"] {
        let out = ferritectl(&socket, &["volume", "create", bad, "--size", "1M"]);
        assert!(!out.status.success(), "{bad:?} accepted");
        let err = text(&out.stderr);
        assert!(err.contains(RULE), "{err}");
        assert!(!err.contains('\u{1b}'), "the refusal echoes ESC: {err:?}");
    }
    let err = rpc_call(&socket, "snapshot_create", &json!({"name": "tank/v@x\ny"}))
        .expect_err("newline in a snapshot name");
    assert!(err["message"].as_str().unwrap_or("").contains(RULE), "{err}");
    let volumes = rpc(&socket, "volume_list", &json!({}));
    assert_eq!(volumes.as_array().map(Vec::len), Some(1), "{volumes}");

    // A geometry error is one line naming the limit.
    let out = ferritectl(
        &socket,
        &["volume", "create", "tank/odd", "--size", "1M", "--block-size", "1000"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("512 or 4096") && !err.contains("VolumeLayout"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // Thin volumes total at most 20 x the pool (512 MiB here); the refusal gives the figures.
    let out = ferritectl(&socket, &["volume", "create", "tank/huge", "--size", "11G"]);
    assert!(!out.status.success(), "11 GiB thin volume on a 512 MiB pool accepted");
    let err = text(&out.stderr);
    assert!(err.contains("overcommit limit of 20 x"), "{err}");
    let out = ferritectl(&socket, &["volume", "create", "tank/big", "--size", "4G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A thick volume's reservation is used space, not free space, before anything is written.
    let before = rpc(&socket, "pool_list", &json!({}))[0].clone();
    let out = ferritectl(&socket, &["volume", "create", "tank/thick", "--size", "64M", "--thick"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = rpc(&socket, "pool_list", &json!({}))[0].clone();
    let field =
        |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(
        field(&after, "used_bytes") >= field(&before, "used_bytes") + (64 << 20),
        "{before} {after}"
    );
    assert!(
        field(&after, "free_bytes") + (64 << 20) <= field(&before, "free_bytes"),
        "{before} {after}"
    );
    let table = text(&ferritectl(&socket, &["pool", "status"]).stdout);
    assert!(table.contains("USED"), "{table}");
    assert!(d.stop(), "ferrited did not stop cleanly");
}

#[test]
fn ferrited_refuses_an_unknown_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = ferrited_must_exit(&[
        "--demo",
        "--backend",
        "foo",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--metrics",
        "off",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("\"foo\"") && err.contains("auto, uring or epoll"), "{err}");
}

#[test]
fn a_portal_may_be_a_host_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = format!(
        "[daemon]\nshards = 1\n[[portal]]\naddress = \"localhost:{port}\"\n[[target]]\n\
         iqn = \"iqn.2026-12.io.ferrite:host\"\n[[target.lun]]\nid = 0\nbackend = \"memory\"\nsize = \"16M\"\n"
    );
    let (d, portal) = start_with_config(dir.path(), &config, &dir.path().join("data"), &[], port);
    TcpStream::connect_timeout(&portal, Duration::from_secs(5))
        .expect("portal listens on localhost");
    assert!(d.stop());
    // The same on the command line, with the demo configuration.
    let port = free_port();
    let portal: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let d = Daemon::start_args(
        &[
            "--demo",
            "--portal",
            &format!("localhost:{port}"),
            "--metrics",
            "off",
            "--data-dir",
            dir.path().join("demo").to_str().expect("utf8"),
        ],
        &[],
        portal,
    );
    TcpStream::connect_timeout(&portal, Duration::from_secs(5))
        .expect("portal listens on localhost");
    assert!(d.stop());
}

#[test]
fn a_busy_metrics_port_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = ferrited_must_exit(&[
        "--demo",
        "--portal",
        &format!("127.0.0.1:{}", free_port()),
        "--metrics",
        &addr,
        "--data-dir",
        dir.path().join("data").to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&addr) && err.contains("metrics"), "{err}");
}

#[test]
fn the_command_line_overrides_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let from_file = dir.path().join("from-file");
    let from_args = dir.path().join("from-args");
    let config = format!(
        "[daemon]\nshards = 1\ndata_dir = \"{}\"\n[[portal]]\naddress = \"127.0.0.1:{port}\"\n\
         [[target]]\niqn = \"iqn.2026-12.io.ferrite:order\"\n[[target.lun]]\nid = 0\n\
         backend = \"file\"\npath = \"lun0.img\"\nsize = \"16M\"\n",
        from_file.display()
    );
    let (d, _) = start_with_config(dir.path(), &config, &from_args, &["--log-level", "warn"], port);
    assert!(d.stop());
    assert!(from_args.join("lun0.img").exists(), "--data-dir was not used");
    assert!(!from_file.exists(), "[daemon] data_dir was used over --data-dir");
    // An unknown level is refused with the levels named.
    let out = ferrited_must_exit(&["--demo", "--log-level", "loud"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--log-level \"loud\": must be error, warn, info, debug or trace"),
        "{err}"
    );
}
