//! Permissions never depend on the umask: ferrited started under umask 000 creates its data
//! directory 0700, its pool file 0600 and its control socket 0660, so `nobody` can neither read
//! the pool nor use the socket; and when the socket's mode is widened by hand, the peer
//! credential check still refuses `nobody`, with a log line. With `[daemon] rpc_group`, a
//! member of the group may use the socket.
//!
//! Needs root (to drop to `nobody` with `setpriv`); skips with a printed reason otherwise.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn can_run() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run commands as nobody");
        return false;
    }
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !setpriv.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return false;
    }
    true
}

/// Runs `args` as nobody:nogroup without supplementary groups (plus `group` when given).
fn as_nobody(group: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup"]);
    match group {
        Some(g) => cmd.arg(format!("--groups={g}")),
        None => cmd.arg("--clear-groups"),
    };
    cmd.arg("--").args(args).output().expect("run setpriv")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// ferrited under umask 000 with its pool file and control socket in `shared` (0755, outside
/// the data directory, so that only their own modes protect them); stderr to `log`.
fn start(dir: &Path, shared: &Path, daemon_extra: &str, log: &Path) -> common::Daemon {
    let portal: std::net::SocketAddr =
        format!("127.0.0.1:{}", common::free_port()).parse().expect("addr");
    let pool = shared.join("tank0.img");
    let config = dir.join("ferrited.toml");
    let text = common::config(
        &format!("shards = 1\n{daemon_extra}"),
        &common::pool_table("tank", &pool.display().to_string(), "256M"),
        "iqn.2026-12.io.ferrite:perm",
        &common::volume_lun(0, "tank/v0", "16M"),
    );
    std::fs::write(&config, text.replace("PORTAL", &portal.to_string())).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrited"));
    cmd.args(["--config", config.to_str().expect("utf8")])
        .args(["--data-dir", dir.join("data").to_str().expect("utf8")])
        .args(["--rpc-socket", shared.join("ctl.sock").to_str().expect("utf8")])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log"));
    // SAFETY: umask(2) is async-signal-safe and touches no memory; it runs in the child
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn ferrited");
    common::Daemon::when_ready(child, portal, || {
        format!("ferrited exited before it was ready: {:?}", std::fs::read_to_string(log))
    })
}

fn shared_dir(dir: &Path) -> std::path::PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    shared
}

/// A test's ferrited (see [`start`]) in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    shared: PathBuf,
    log: PathBuf,
    daemon: common::Daemon,
}

impl Setup {
    /// Starts ferrited with `daemon_extra` in `[daemon]`; `None` (with the reason printed) when
    /// the test cannot run here.
    fn start(daemon_extra: &str) -> Option<Setup> {
        if !can_run() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = shared_dir(dir.path());
        let log = dir.path().join("ferrited.log");
        let daemon = start(dir.path(), &shared, daemon_extra, &log);
        Some(Setup { dir, shared, log, daemon })
    }
}

fn ctl(socket: &Path) -> [String; 5] {
    [
        env!("CARGO_BIN_EXE_ferritectl").to_string(),
        "--socket".into(),
        socket.display().to_string(),
        "pool".into(),
        "status".into(),
    ]
}

#[test]
fn under_umask_000_nobody_can_neither_read_the_pool_nor_use_the_socket() {
    let Some(Setup { dir, shared, log, daemon }) = Setup::start("") else { return };
    let pool = shared.join("tank0.img");
    let socket = shared.join("ctl.sock");
    assert_eq!(mode(&dir.path().join("data")), 0o700, "data directory mode");
    assert_eq!(mode(&pool), 0o600, "pool file mode");
    assert_eq!(mode(&socket), 0o660, "control socket mode");

    // nobody reaches `shared` (a world-readable file there reads), but not the pool.
    let probe = shared.join("probe.txt");
    std::fs::write(&probe, "public").expect("probe");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(as_nobody(None, &["cat", probe.to_str().expect("utf8")]).status.success());
    let read = as_nobody(None, &["head", "-c", "4096", pool.to_str().expect("utf8")]);
    assert!(!read.status.success(), "nobody read the pool file");

    let args = ctl(&socket);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = Command::new(args[0]).args(&args[1..]).output().expect("ferritectl");
    assert!(root.status.success(), "root cannot use the socket: {root:?}");
    assert!(!as_nobody(None, &args).status.success(), "nobody used the control socket");

    // Widened by hand, the socket lets nobody connect: the peer check refuses it.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    assert!(!as_nobody(None, &args).status.success(), "nobody used a 0777 control socket");
    assert!(daemon.stop(), "ferrited did not stop cleanly");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("control connection from uid 65534"),
        "no log line for the refused peer:\n{logged}"
    );
}

#[test]
fn members_of_rpc_group_may_use_the_socket() {
    let Some(setup) = Setup::start("rpc_group = \"nogroup\"\n") else { return };
    let args = ctl(&setup.shared.join("ctl.sock"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // nobody's primary group is nogroup here: a member.
    let out = as_nobody(None, &args);
    assert!(out.status.success(), "a member of rpc_group was refused: {out:?}");
    assert!(setup.daemon.stop(), "ferrited did not stop cleanly");
}
