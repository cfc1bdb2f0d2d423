//! One pool, one owner, with real ferrited processes: a second daemon on the same data
//! directory exits at once naming the owner, while the first keeps serving verified I/O and
//! its control socket; a daemon posing as another host (`FERRITE_TEST_HOST_ID`, which also
//! turns its device locks off, as another machine could not see them) is refused while the
//! first one's heartbeat lives, and takes over with `--force-import` only after the first was
//! killed; the pool verifies clean afterwards.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use target_iscsi::initiator::{Initiator, LoginOptions};

const IQN: &str = "iqn.2026-12.io.ferrite:owner";
const LINE_END: &str = "(use --force-import only if that host is down)";
const BLOCK: u32 = 512;

fn opts(isid: u8) -> LoginOptions {
    let mut o = LoginOptions::new("iqn.2026-12.io.ferrite:owner-tester", IQN);
    o.isid = [0x80, 0, 0, 0, 0, isid];
    o.timeout = Duration::from_secs(10);
    o
}

fn pattern(seed: u8, blocks: u32) -> Vec<u8> {
    (0..blocks * BLOCK).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

/// Writes `data` at `lba` with FUA and reads it back.
fn write_verified(ini: &mut Initiator, lba: u64, data: &[u8]) {
    let blocks = u32::try_from(data.len()).expect("len") / BLOCK;
    let w = ini.write16(0, lba, BLOCK, data, true).expect("write");
    assert_eq!(w.status, 0, "write at LBA {lba}: {w:?}");
    assert_read(ini, lba, data, blocks);
}

fn assert_read(ini: &mut Initiator, lba: u64, data: &[u8], blocks: u32) {
    let r = ini.read16(0, lba, BLOCK, blocks).expect("read");
    assert_eq!(r.status, 0, "read at LBA {lba}: {r:?}");
    assert!(r.data == data, "LBA {lba} does not read back what was written");
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_string()
}

struct Paths {
    config: PathBuf,
    data: PathBuf,
}

impl Paths {
    fn of(dir: &Path) -> Paths {
        Paths { config: dir.join("ferrited.toml"), data: dir.join("data") }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--config".into(),
            self.config.display().to_string(),
            "--data-dir".into(),
            self.data.display().to_string(),
            "--keepalive-secs".into(),
            "0".into(),
        ]
    }
}

/// Runs a ferrited that is expected to refuse: its exit status, stderr and run time. Fails the
/// test if it is still running after `limit`.
fn run_refused(
    args: &[String],
    host: Option<&str>,
    limit: Duration,
) -> (ExitStatus, String, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrited"));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(h) = host {
        cmd.env("FERRITE_TEST_HOST_ID", h);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn ferrited");
    let status = common::wait_for_exit(&mut child, limit, || {
        format!("the second ferrited was still running after {limit:?}")
    });
    let elapsed = start.elapsed();
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr");
    (status, err, elapsed)
}

/// The refusal line naming `pid` on `host`, if `stderr` holds it.
fn owner_line<'a>(stderr: &'a str, pid: u32, host: &str) -> Option<&'a str> {
    let start =
        format!("ferrited: pool tank is imported by ferrited pid {pid} on host {host} since ");
    stderr.lines().find(|l| l.starts_with(&start))
}

/// The first daemon: pool `tank` with LUN 0 the volume `tank/v0`, under `dir`.
fn start_first(dir: &Path) -> (Paths, common::Daemon) {
    let config = common::pool_config("tank0.img", IQN, &common::volume_lun(0, "tank/v0", "64M"));
    let first = common::Daemon::start(dir, &config, &["--keepalive-secs", "0"]);
    (Paths::of(dir), first)
}

fn start_as_host(
    paths: &Paths,
    host: &str,
    extra: &[&str],
    portal: std::net::SocketAddr,
) -> common::Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_ferrited"))
        .args(paths.args())
        .args(extra)
        .env("FERRITE_TEST_HOST_ID", host)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ferrited");
    common::Daemon::when_ready(child, portal, || {
        format!("ferrited as host {host} exited before it was ready")
    })
}

fn inspect_clean(pool_file: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite-inspect"))
        .arg(pool_file)
        .output()
        .expect("run ferrite-inspect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("clean"),
        "ferrite-inspect after both daemons stopped: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn second_daemon_on_the_same_data_dir_is_refused_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (paths, first) = start_first(dir.path());
    let socket = paths.data.join("ferrited.sock");
    let mut ini = Initiator::login(first.portal, &opts(1)).expect("login");
    let before = pattern(7, 16);
    write_verified(&mut ini, 0, &before);

    let (status, stderr, elapsed) = run_refused(&paths.args(), None, Duration::from_secs(10));
    assert!(!status.success(), "the second daemon exited {status}:\n{stderr}");
    assert!(elapsed < Duration::from_secs(5), "refused after {elapsed:?}");
    let line = owner_line(&stderr, first.child.id(), &host_name())
        .unwrap_or_else(|| panic!("no owner line in the second daemon's stderr:\n{stderr}"));
    assert!(line.ends_with(LINE_END), "refusal line: {line}");
    assert_eq!(stderr.lines().filter(|l| l.contains("is imported by")).count(), 1, "{stderr}");

    // ferrite-inspect reads the live pool read-only and says who has it.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite-inspect"))
        .arg(paths.data.join("tank0.img"))
        .output()
        .expect("run ferrite-inspect");
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains(&format!("pool tank is imported by ferrited pid {}", first.child.id()))
            && note.contains("read-only"),
        "ferrite-inspect on a live pool: {note}"
    );

    // The first daemon still owns its control socket and serves verified I/O.
    common::rpc(&socket, "pool_list", &serde_json::json!({}));
    assert_read(&mut ini, 0, &before, 16);
    let after = pattern(99, 32);
    write_verified(&mut ini, 4096, &after);
    drop(ini);
    assert!(first.stop(), "the first daemon did not stop cleanly");
    inspect_clean(&paths.data.join("tank0.img"));
}

#[test]
fn another_host_is_refused_while_the_heartbeat_lives_and_takes_over_after_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (paths, first) = start_first(dir.path());
    let portal = first.portal;
    let pid = first.child.id();
    let mut ini = Initiator::login(portal, &opts(2)).expect("login");
    let data = pattern(42, 16);
    write_verified(&mut ini, 128, &data);
    drop(ini);

    let limit = Duration::from_secs(15);
    let (status, stderr, _) = run_refused(&paths.args(), Some("h2"), limit);
    assert!(!status.success(), "host h2 imported a pool host {} has imported", host_name());
    let line = owner_line(&stderr, pid, &host_name()).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.ends_with(LINE_END), "refusal line: {line}");

    let mut forced = paths.args();
    forced.push("--force-import".into());
    let (status, stderr, _) = run_refused(&forced, Some("h2"), limit);
    assert!(!status.success(), "--force-import took a pool whose owner is alive");
    let line = owner_line(&stderr, pid, &host_name()).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("heartbeat is advancing"), "refusal line: {line}");

    first.kill();
    // The owner is gone, but only the operator can know that host h1 is down.
    let (status, stderr, _) = run_refused(&paths.args(), Some("h2"), limit);
    assert!(!status.success(), "another host imported a stale pool without --force-import");
    assert!(owner_line(&stderr, pid, &host_name()).is_some(), "{stderr}");

    let second = start_as_host(&paths, "h2", &["--force-import"], portal);
    let mut ini = Initiator::login(portal, &opts(3)).expect("login after the takeover");
    assert_read(&mut ini, 128, &data, 16);
    write_verified(&mut ini, 256, &pattern(5, 8));
    drop(ini);
    assert!(second.stop(), "the daemon that took over did not stop cleanly");

    // Exported cleanly by h2: this host imports it again without --force-import.
    let third = common::Daemon::start_args(
        &paths.args().iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        portal,
    );
    assert!(third.stop(), "the third daemon did not stop cleanly");
    inspect_clean(&paths.data.join("tank0.img"));
}

#[test]
fn control_socket_is_never_replaced_while_live_nor_when_not_a_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = |iqn: &str| {
        format!(
            "[daemon]\nshards = 1\n[[portal]]\naddress = \"PORTAL\"\n[[target]]\niqn = \"{iqn}\"\n\
             [[target.lun]]\nid = 0\nbackend = \"memory\"\nsize = \"16M\"\n"
        )
    };
    let first = common::Daemon::start(dir.path(), &memory(IQN), &[]);
    let socket = dir.path().join("data").join("ferrited.sock");

    // A second daemon (its own data directory and portal) pointed at the live socket.
    let other = tempfile::tempdir().expect("tempdir");
    let portal = format!("127.0.0.1:{}", common::free_port());
    let config = other.path().join("other.toml");
    std::fs::write(&config, memory("iqn.2026-12.io.ferrite:other").replace("PORTAL", &portal))
        .expect("config");
    let base = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--data-dir".into(),
        other.path().join("data").display().to_string(),
        "--rpc-socket".into(),
    ];
    let mut args = base.clone();
    args.push(socket.display().to_string());
    let (status, stderr, _) = run_refused(&args, None, Duration::from_secs(10));
    assert!(!status.success(), "a second daemon took a live control socket");
    assert!(stderr.contains("a live daemon answers on this control socket"), "{stderr}");
    common::rpc(&socket, "session_list", &serde_json::json!({}));

    // A regular file where the socket should go is left alone.
    let file = other.path().join("precious.txt");
    std::fs::write(&file, "keep me").expect("file");
    let mut args = base;
    args.push(file.display().to_string());
    let (status, stderr, _) = run_refused(&args, None, Duration::from_secs(10));
    assert!(!status.success(), "ferrited replaced a regular file with its socket");
    assert!(stderr.contains("exists and is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "keep me");
    assert!(first.stop(), "the first daemon did not stop cleanly");
}
