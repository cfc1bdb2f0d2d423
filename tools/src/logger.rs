//! The tools' logger: the `log` facade's records written to stderr, one line each, prefixed
//! with the program's name. A write that fails (stderr closed, a pipe whose reader is gone,
//! a full disk) is dropped: logging never panics and never blocks a shutdown.
//!
//! The libraries (drivers, engine, target) log through the `log` macros only; a binary that
//! wants their lines calls [`init`] first. [`stdout_line`] is the same promise for the lines a
//! program prints on stdout for scripts (`ready ...`).

use std::io::Write;
use std::sync::OnceLock;

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    program: OnceLock<&'static str>,
}

static LOGGER: StderrLogger = StderrLogger { program: OnceLock::new() };

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let program = self.program.get().copied().unwrap_or("ferrite");
        // One write of the whole line, so that lines of several threads do not interleave.
        let line = format!("{program}: {}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().lock().flush();
    }
}

/// Installs the logger for `program` (the prefix of every line), at level info. A second call
/// changes nothing.
pub fn init(program: &'static str) {
    let _ = LOGGER.program.set(program);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// Sets the least severe level written (`error`, `warn`, `info`, `debug` or `trace`).
///
/// # Errors
/// A line naming the value and the levels when `level` is none of them.
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = match level {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        other => {
            return Err(format!("--log-level {other:?}: must be error, warn, info, debug or trace"))
        }
    };
    log::set_max_level(filter);
    Ok(())
}

/// Writes `line` and a newline to stdout and flushes; a failed write is dropped.
pub fn stdout_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_write_errors_are_dropped_not_panicked() {
        // Point fd 2 at a pipe whose reader is closed: every write fails with EPIPE (SIGPIPE
        // is ignored by the Rust runtime), which makes `eprintln!` panic.
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: dup/dup2/close on descriptors this test owns; fd 2 is restored below.
        let saved = unsafe { libc::dup(2) };
        // SAFETY: as above.
        unsafe {
            libc::close(fds[0]);
            libc::dup2(fds[1], 2);
            libc::close(fds[1]);
        }
        init("test");
        let outcome = std::panic::catch_unwind(|| {
            log::error!("this line goes nowhere");
            log::logger().flush();
        });
        // SAFETY: restores the saved stderr.
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
        assert!(outcome.is_ok(), "logging to a broken stderr panicked");
    }
}
