//! What the tools' `main` functions share: the I/O reactor they run on, and how the one line
//! a run prints ends the program.

use std::process::ExitCode;

use drivers::executor::{Reactor, ReactorConfig};

/// A reactor with the default configuration; `None` after printing why it could not start
/// (`PROGRAM: cannot start the I/O reactor: ...`).
#[must_use]
pub fn reactor(program: &str) -> Option<Reactor> {
    match Reactor::new(&ReactorConfig::default()) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("{program}: cannot start the I/O reactor: {e}");
            None
        }
    }
}

/// Prints a run's result line on stdout and exits 0, or its error on stderr
/// (`PROGRAM: error`) and exits 1.
#[must_use]
pub fn finish(program: &str, result: Result<String, String>) -> ExitCode {
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::from(1)
        }
    }
}
