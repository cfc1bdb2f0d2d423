//! Shared helpers for tests that run a real ferrited process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A ferrited process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    pub child: Child,
    pub portal: SocketAddr,
}

/// One JSON-RPC call on ferrited's control socket: the `result`, or the `error` object.
pub fn rpc_call(
    socket: &Path,
    method: &str,
    params: &serde_json::Value,
) -> Result<serde_json::Value, serde_json::Value> {
    let mut s = UnixStream::connect(socket).expect("control socket");
    let req = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    s.write_all(format!("{req}\n").as_bytes()).expect("send");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("reply");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    match v.get("error") {
        Some(e) => Err(e.clone()),
        None => Ok(v["result"].clone()),
    }
}

/// [`rpc_call`] that must succeed.
pub fn rpc(socket: &Path, method: &str, params: &serde_json::Value) -> serde_json::Value {
    rpc_call(socket, method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// A configuration: `[daemon]` with the lines in `daemon`, the test portal (`PORTAL`), the
/// `[[pool]]` tables in `pools`, and target `iqn` with the `[[target.lun]]` tables in `luns`.
pub fn config(daemon: &str, pools: &str, iqn: &str, luns: &str) -> String {
    format!(
        "[daemon]\n{daemon}\n[[portal]]\naddress = \"PORTAL\"\n{pools}[[target]]\n\
         iqn = \"{iqn}\"\n{luns}"
    )
}

/// A `[[pool]]` table: pool `name` on one device file `path` of `size` (under the data
/// directory).
pub fn pool_table(name: &str, path: &str, size: &str) -> String {
    format!("[[pool]]\nname = \"{name}\"\ndevices = [{{ path = \"{path}\", size = \"{size}\" }}]\n")
}

/// A `[[target.lun]]` table: LUN `id` on `backend` with `size`, and the lines in `extra`.
pub fn lun(id: u64, backend: &str, size: &str, extra: &str) -> String {
    format!("[[target.lun]]\nid = {id}\nbackend = \"{backend}\"\nsize = \"{size}\"\n{extra}")
}

/// A `[[target.lun]]` table of pool volume `volume` (`POOL/NAME`).
pub fn volume_lun(id: u64, volume: &str, size: &str) -> String {
    lun(id, "volume", size, &format!("volume = \"{volume}\"\n"))
}

/// A `[[target.lun]]` table of a memory LUN.
pub fn memory_lun(id: u64, size: &str) -> String {
    lun(id, "memory", size, "")
}

/// A one-shard configuration with pool `tank` on `pool_file` (512 MiB, under the data
/// directory), target `iqn` on the test portal, and the `[[target.lun]]` tables in `luns`.
pub fn pool_config(pool_file: &str, iqn: &str, luns: &str) -> String {
    config("shards = 1", &pool_table("tank", pool_file, "512M"), iqn, luns)
}

/// Starts ferrited under `dir` with [`pool_config`] on `pool_file` and LUN 0 the 64 MiB pool
/// volume `volume` of target `iqn`.
pub fn start_volume(dir: &Path, pool_file: &str, iqn: &str, volume: &str) -> Daemon {
    Daemon::start(dir, &pool_config(pool_file, iqn, &volume_lun(0, volume, "64M")), &[])
}

/// Starts ferrited under `dir` with two shards, the metrics endpoint on a free port, and
/// target `iqn` with the `[[target.lun]]` tables in `luns`: the daemon and the endpoint's
/// address.
pub fn start_with_metrics(dir: &Path, iqn: &str, luns: &str) -> (Daemon, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = config(&format!("shards = 2\nmetrics = \"{metrics}\""), "", iqn, luns);
    (Daemon::start(dir, &config, &[]), metrics)
}

/// Runs `ferritectl --socket SOCKET ARGS...`: its output.
pub fn ferritectl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferritectl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run ferritectl")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends `request` to the HTTP endpoint at `addr` and returns the whole answer (status line,
/// headers, body).
pub fn http(addr: impl ToSocketAddrs, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("answer");
    out
}

/// Waits up to 30 s for the ready line of a ferrited spawned with stdout piped (then keeps
/// draining stdout); panics with `exited()` when it exits first.
pub fn wait_ready(child: &mut Child, exited: impl Fn() -> String) {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "ferrited did not become ready");
        match lines.next() {
            Some(Ok(line)) if line.starts_with("ready ") => break,
            Some(Ok(_)) => {}
            _ => panic!("{}", exited()),
        }
    }
    std::thread::spawn(move || for _ in lines {});
}

/// Waits up to `limit` for `child` to exit on its own: its status. Past the limit it is killed
/// and the test fails with `late()`.
pub fn wait_for_exit(child: &mut Child, limit: Duration, late: impl Fn() -> String) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}", late());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `child` and waits up to `limit` for it to exit: its status, or `None`
/// when it is still running.
pub fn terminate(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
        let child = Command::new(env!("CARGO_BIN_EXE_ferrited"))
            .args(args)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrited");
        Daemon::when_ready(child, portal, || "ferrited exited before it was ready".into())
    }

    /// Waits up to 30 s for the ready line of a ferrited spawned with stdout piped (then keeps
    /// draining stdout); panics with `exited()` when it exits first.
    pub fn when_ready(mut child: Child, portal: SocketAddr, exited: impl Fn() -> String) -> Daemon {
        wait_ready(&mut child, exited);
        Daemon { child, portal }
    }

    /// Sends SIGTERM and waits up to 20 s for a clean exit; returns whether it exited 0.
    pub fn stop(mut self) -> bool {
        terminate(&mut self.child, Duration::from_secs(20)).is_some_and(|s| s.success())
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

/// Flips one byte (at offset 1000) in every copy of `pattern` in the file `image` — the block
/// itself, and any intent-log record that still holds it: how many copies there were (at
/// least one, or it panics).
pub fn flip_byte_in_copies(image: &Path, pattern: &[u8]) -> usize {
    let mut bytes = std::fs::read(image).expect("read image");
    let copies: Vec<usize> = bytes
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern)
        .map(|(at, _)| at)
        .collect();
    assert!(!copies.is_empty(), "data block not found on disk");
    for &at in &copies {
        bytes[at + 1000] ^= 0x01;
    }
    std::fs::write(image, &bytes).expect("write image");
    copies.len()
}
