//! ferrited: the ferrite daemon. Starts the shards, listens on the portals and serves the
//! configured targets over iSCSI.
//!
//! `ferrited --demo` serves a 1 GiB demo LUN backed by a file under the data directory
//! (created on the first start, reused later) on 127.0.0.1:3260.

mod access;
mod config;
mod daemon;
mod limits;
mod lun_state;
mod metrics;
mod owner;
mod rpc;
mod stats;

/// mimalloc: shards allocate and free I/O buffers and cache entries that other shards free
/// and allocate (a shared read cache evicts another shard's blocks); its thread-local heaps
/// take those cross-thread frees without the arena lock the system allocator contends on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command line of ferrited.
#[derive(Debug, Parser)]
#[command(
    name = "ferrited",
    version,
    about = "ferrite storage daemon: iSCSI target on a thread-per-core io_uring engine"
)]
struct Args {
    /// Serve the embedded demo configuration (one 1 GiB LUN).
    #[arg(long, conflicts_with = "config")]
    demo: bool,
    /// TOML configuration file.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Directory for backing files and persistent state; overrides `[daemon] data_dir`
    /// (default ./ferrite-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Portal to listen on, HOST:PORT (repeatable; default 127.0.0.1:3260).
    #[arg(long = "portal")]
    portals: Vec<String>,
    /// Number of shards (pinned threads); default one per CPU.
    #[arg(long)]
    shards: Option<usize>,
    /// Kernel interface: auto, uring or epoll.
    #[arg(long)]
    backend: Option<String>,
    /// Seconds of idle time before a NOP-In keepalive (0 disables).
    #[arg(long, default_value_t = 30)]
    keepalive_secs: u64,
    /// Control socket (JSON-RPC 2.0); default DATA_DIR/ferrited.sock.
    #[arg(long)]
    rpc_socket: Option<PathBuf>,
    /// Prometheus endpoint HOST:PORT, or `off`; overrides `[daemon] metrics` (the demo
    /// serves 127.0.0.1:9330).
    #[arg(long)]
    metrics: Option<String>,
    /// Import a pool whose owner record names another host that stopped its heartbeat. Only
    /// when that host is down: two importers destroy a pool.
    #[arg(long)]
    force_import: bool,
    /// Least severe log lines written to stderr: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    drivers::heap::keep_freed_memory();
    ferrite_tools::logger::init("ferrited");
    access::restrict_umask();
    let args = Args::parse();
    if let Err(e) = ferrite_tools::logger::set_level(&args.log_level) {
        log::error!("{e}");
        return ExitCode::from(2);
    }
    if let Some(Err(e)) = args.backend.as_deref().map(config::check_backend) {
        log::error!("{e}");
        return ExitCode::from(2);
    }
    let cfg = if args.demo {
        config::Config::demo(&args.portals)
    } else if let Some(path) = &args.config {
        match config::Config::load(path) {
            Ok(mut c) => {
                if !args.portals.is_empty() {
                    c.portals = args
                        .portals
                        .iter()
                        .map(|a| config::PortalSection { address: a.clone(), group_tag: Some(1) })
                        .collect();
                }
                c
            }
            Err(e) => {
                log::error!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        log::error!("give --demo or --config FILE (see ferrited --help)");
        return ExitCode::from(2);
    };
    // The command line overrides the file, which overrides the default.
    let data_dir = args
        .data_dir
        .or(cfg.daemon.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./ferrite-data"));
    let options = daemon::Options {
        rpc_socket: args.rpc_socket.unwrap_or_else(|| data_dir.join("ferrited.sock")),
        data_dir,
        shards: args.shards.or(cfg.daemon.shards),
        backend: args.backend.or(cfg.daemon.backend.clone()),
        keepalive_secs: args.keepalive_secs,
        metrics: args
            .metrics
            .or(cfg.daemon.metrics.clone())
            .filter(|m| m != "off" && !m.is_empty()),
        force_import: args.force_import,
    };
    match daemon::run(cfg, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}
