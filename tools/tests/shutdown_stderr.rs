//! Shutdown never depends on stderr: ferrited whose stderr is a pipe nobody reads any more
//! (every write fails with EPIPE) still stops cleanly on SIGTERM.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sigterm_stops_ferrited_cleanly_when_stderr_is_a_closed_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let portal = format!("127.0.0.1:{}", common::free_port());
    let config = dir.path().join("ferrited.toml");
    let text = common::config(
        "shards = 1",
        &common::pool_table("tank", "tank0.img", "256M"),
        "iqn.2026-12.io.ferrite:stderr",
        &common::volume_lun(0, "tank/v0", "16M"),
    );
    std::fs::write(&config, text.replace("PORTAL", &portal)).expect("config");
    let mut fds = [0; 2];
    // Close-on-exec, so that ferrited does not inherit the read end and keep the pipe open.
    // SAFETY: pipe2(2) fills the two-element array with fresh descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe");
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrited"))
        .args(["--config", config.to_str().expect("utf8")])
        .args(["--data-dir", dir.path().join("data").to_str().expect("utf8")])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(writer))
        .spawn()
        .expect("spawn ferrited");
    common::wait_ready(&mut child, || "ferrited exited before it was ready".into());
    // The reader goes away: from now on every write to ferrited's stderr fails with EPIPE.
    drop(reader);
    let Some(status) = common::terminate(&mut child, Duration::from_secs(5)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ferrited did not stop within 5 s of SIGTERM with a closed stderr");
    };
    assert_eq!(status.code(), Some(0), "ferrited exited {status} with a closed stderr");
}
