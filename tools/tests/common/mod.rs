//! Shared helpers for tests that run a real ferrited process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A ferrited process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    pub child: Child,
    pub portal: SocketAddr,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Daemon {
    /// Starts ferrited with `config` (TOML text; `PORTAL` is replaced by the chosen address)
    /// under `dir`, and waits for its ready line.
    pub fn start(dir: &Path, config: &str, extra: &[&str]) -> Daemon {
        let portal: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = config.replace("PORTAL", &portal.to_string());
        let path = dir.join("ferrited.toml");
        std::fs::write(&path, config).expect("write config");
        Daemon::start_args(
            &[
                "--config",
                path.to_str().expect("utf8"),
                "--data-dir",
                dir.join("data").to_str().expect("utf8"),
            ],
            extra,
            portal,
        )
    }

    /// Starts ferrited with explicit arguments and waits for a ready line.
    pub fn start_args(args: &[&str], extra: &[&str], portal: SocketAddr) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrited"))
            .args(args)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrited");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "ferrited did not become ready");
            match lines.next() {
                Some(Ok(line)) if line.starts_with("ready ") => break,
                Some(Ok(_)) => {}
                _ => panic!("ferrited exited before it was ready"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Daemon { child, portal }
    }

    /// Sends SIGTERM and waits up to 20 s for a clean exit; returns whether it exited 0.
    pub fn stop(mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
