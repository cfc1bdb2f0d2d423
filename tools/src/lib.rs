//! Shared pieces of ferrite's command-line tools.

pub mod cli;
pub mod duration;
pub mod logger;
pub mod prometheus;
pub mod scan;
pub mod size;
