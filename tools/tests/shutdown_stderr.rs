//! Shutdown never depends on stderr: ferrited whose stderr is a pipe nobody reads any more
//! (every write fails with EPIPE) still stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_ferrited_cleanly_when_stderr_is_a_closed_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.path().join("ferrited.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nshards = 1\n[[portal]]\naddress = \"127.0.0.1:{port}\"\n[[pool]]\n\
             name = \"tank\"\ndevices = [{{ path = \"tank0.img\", size = \"256M\" }}]\n\
             [[target]]\niqn = \"iqn.2026-12.io.ferrite:stderr\"\n[[target.lun]]\nid = 0\n\
             backend = \"volume\"\nvolume = \"tank/v0\"\nsize = \"16M\"\n"
        ),
    )
    .expect("config");
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
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("ready ") => break,
            Some(Ok(_)) => {}
            _ => panic!("ferrited exited before it was ready"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    // The reader goes away: from now on every write to ferrited's stderr fails with EPIPE.
    drop(reader);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferrited did not stop within 5 s of SIGTERM with a closed stderr");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "ferrited exited {status} with a closed stderr");
}
