//! ferritectl: drives a running ferrited through its JSON-RPC control socket.
//!
//! ```text
//! ferritectl pool status | clear tank             # clear: forget tank's rewind report, zero device errors
//! ferritectl pool scrub tank [--pause | --resume | --stop]   # progress in pool status
//! ferritectl volume create tank/vm1 --size 100G [--thick] [--block-size 4096] [--volblock-size 64K]
//!                           [--compression lz4] [--dedup on]
//! ferritectl volume list | grow tank/vm1 --size 200G | destroy tank/vm1
//! ferritectl volume set tank/vm1 compression=off dedup=verify
//! ferritectl volume status [tank/vm1]                  # properties and data-reduction figures
//! ferritectl snapshot create tank/vm1@before-upgrade
//! ferritectl snapshot list [tank/vm1] | rollback [--force] tank/vm1@s | clone tank/vm1@s tank/vm2 | destroy tank/vm1@s
//! ferritectl snapshot estimate tank/vm1@a tank/vm1@b     # bytes freed by destroying both
//! ferritectl session list
//! ferritectl stats [--interval 1]      # IOPS, MB/s, latency, queue depth per LUN/shard/connection
//! ```
//! Plain tables by default, `--json` for scripts.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrite_tools::size::{human, parse_size};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(name = "ferritectl", version, about = "Control a running ferrited")]
struct Args {
    /// Control socket of ferrited.
    #[arg(long, global = true, default_value = "./ferrite-data/ferrited.sock")]
    socket: PathBuf,
    /// Print the raw JSON result.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pools.
    Pool {
        #[command(subcommand)]
        action: PoolAction,
    },
    /// Volumes.
    Volume {
        #[command(subcommand)]
        action: VolumeAction,
    },
    /// Snapshots and clones.
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// iSCSI sessions.
    Session {
        #[command(subcommand)]
        action: SessionAction,
    },
    /// I/O statistics per LUN, shard and connection (rates over --interval), shard CPU
    /// busy time, and the payload bytes copied per data path.
    Stats {
        /// Seconds between the two samples the rates come from (0: averages since start).
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
}

#[derive(Debug, Subcommand)]
enum PoolAction {
    /// Capacity, free space, txg and checksum errors of every pool, each pool's devices with
    /// their state, READ, WRITE and CKSUM error counts and NVMe health (n/a for files), the
    /// scan line, and whether its import rewound it (passed over newer txgs that did not load).
    Status,
    /// Forget POOL's rewind report (once seen; `pool status` shows it until then) and zero
    /// its devices' READ, WRITE and CKSUM error counts.
    Clear { name: String },
    /// Start a scrub of POOL (check every allocated block; `pool status` shows its
    /// progress), or pause, resume or stop the running one.
    Scrub {
        name: String,
        /// Pause the running scrub.
        #[arg(long, conflicts_with_all = ["resume", "stop"])]
        pause: bool,
        /// Resume a paused scrub.
        #[arg(long, conflicts_with = "stop")]
        resume: bool,
        /// Stop the running scrub.
        #[arg(long)]
        stop: bool,
    },
}

#[derive(Debug, Subcommand)]
enum VolumeAction {
    /// Create POOL/NAME.
    Create {
        name: String,
        /// Size, e.g. 100G.
        #[arg(long)]
        size: String,
        /// Reserve the whole size now.
        #[arg(long)]
        thick: bool,
        /// Logical block size: 512 or 4096.
        #[arg(long, default_value_t = 512)]
        block_size: u32,
        /// Data block size, 4K to 128K (compression saves space only above 4K).
        #[arg(long)]
        volblock_size: Option<String>,
        /// Compression of new writes: off or lz4 (default lz4).
        #[arg(long)]
        compression: Option<String>,
        /// Dedup of new writes: off, on or verify (default off).
        #[arg(long)]
        dedup: Option<String>,
    },
    /// List volumes.
    List,
    /// Properties and data-reduction figures (of one volume when given).
    Status { name: Option<String> },
    /// Set properties: POOL/NAME PROPERTY=VALUE... (new writes follow the new value).
    Set { name: String, properties: Vec<String> },
    /// Grow POOL/NAME to a new size.
    Grow {
        name: String,
        #[arg(long)]
        size: String,
    },
    /// Destroy POOL/NAME.
    Destroy { name: String },
}

#[derive(Debug, Subcommand)]
enum SnapshotAction {
    /// Create POOL/VOLUME@SNAPSHOT.
    Create { name: String },
    /// List snapshots (of one volume when given).
    List { volume: Option<String> },
    /// Roll the volume back to POOL/VOLUME@SNAPSHOT (refused while a LUN exporting it has
    /// sessions, unless --force).
    Rollback {
        name: String,
        /// Roll back under logged-in initiators: a LOGICAL UNIT RESET for them (commands in
        /// flight finish first, then every session gets a unit attention).
        #[arg(long)]
        force: bool,
    },
    /// Create volume NEW from snapshot SNAPSHOT.
    Clone { snapshot: String, name: String },
    /// Destroy POOL/VOLUME@SNAPSHOT.
    Destroy { name: String },
    /// Bytes destroying all the given snapshots would free.
    Estimate { names: Vec<String> },
}

#[derive(Debug, Subcommand)]
enum SessionAction {
    /// Live sessions.
    List,
}

fn call(socket: &PathBuf, method: &str, params: &Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!("cannot reach ferrited at {}: {e} (is it running? see --socket)", socket.display())
    })?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut line = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| format!("send: {e}"))?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).map_err(|e| format!("receive: {e}"))?;
    let reply: Value =
        serde_json::from_str(&reply).map_err(|e| format!("bad reply from ferrited: {e}"))?;
    if let Some(err) = reply.get("error") {
        return Err(err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_string());
    }
    Ok(reply.get("result").cloned().unwrap_or(Value::Null))
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn bytes(v: &Value, key: &str) -> String {
    v[key].as_u64().map_or_else(|| "-".into(), human)
}

fn ratio(v: &Value, key: &str) -> String {
    v[key].as_f64().map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
}

fn run(args: &Args) -> Result<(), String> {
    if let Command::Stats { interval } = &args.command {
        return stats_view(args, *interval);
    }
    let (method, params) = request(&args.command)?;
    let result = call(&args.socket, method, &params)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?);
        return Ok(());
    }
    print_result(method, &result);
    Ok(())
}

/// The control method and parameters a command sends.
fn request(command: &Command) -> Result<(&'static str, Value), String> {
    Ok(match command {
        Command::Pool { action: PoolAction::Status } => ("pool_list", json!({})),
        Command::Pool { action: PoolAction::Clear { name } } => {
            ("pool_clear", json!({"name": name}))
        }
        Command::Pool { action: PoolAction::Scrub { name, pause, resume, stop } } => {
            let action = match (pause, resume, stop) {
                (true, _, _) => "pause",
                (_, true, _) => "resume",
                (_, _, true) => "stop",
                _ => "start",
            };
            ("pool_scrub", json!({"name": name, "action": action}))
        }
        Command::Volume { action } => match action {
            VolumeAction::Create {
                name,
                size,
                thick,
                block_size,
                volblock_size,
                compression,
                dedup,
            } => {
                let volblock = volblock_size.as_deref().map(parse_size).transpose()?;
                (
                    "volume_create",
                    json!({"name": name, "size_bytes": parse_size(size)?, "thick": thick, "block_size": block_size, "volblock_size": volblock, "compression": compression, "dedup": dedup}),
                )
            }
            VolumeAction::List => ("volume_list", json!({})),
            VolumeAction::Status { name } => ("volume_status", json!({"name": name})),
            VolumeAction::Set { name, properties } => {
                let mut props = serde_json::Map::new();
                for p in properties {
                    let (k, v) =
                        p.split_once('=').ok_or_else(|| format!("{p:?} is not PROPERTY=VALUE"))?;
                    props.insert(k.to_string(), Value::String(v.to_string()));
                }
                if props.is_empty() {
                    return Err("nothing to set: give PROPERTY=VALUE".into());
                }
                ("volume_set", json!({"name": name, "properties": props}))
            }
            VolumeAction::Grow { name, size } => {
                ("volume_grow", json!({"name": name, "size_bytes": parse_size(size)?}))
            }
            VolumeAction::Destroy { name } => ("volume_destroy", json!({"name": name})),
        },
        Command::Snapshot { action } => match action {
            SnapshotAction::Create { name } => ("snapshot_create", json!({"name": name})),
            SnapshotAction::List { volume } => ("snapshot_list", json!({"volume": volume})),
            SnapshotAction::Rollback { name, force } => {
                ("snapshot_rollback", json!({"name": name, "force": force}))
            }
            SnapshotAction::Clone { snapshot, name } => {
                ("snapshot_clone", json!({"snapshot": snapshot, "name": name}))
            }
            SnapshotAction::Destroy { name } => ("snapshot_destroy", json!({"name": name})),
            SnapshotAction::Estimate { names } => {
                ("snapshot_destroy_estimate", json!({"names": names}))
            }
        },
        Command::Session { action: SessionAction::List } => ("session_list", json!({})),
        Command::Stats { .. } => return Err("stats is not a single request".into()),
    })
}

/// Prints the result of `method` as a table or a line.
fn print_result(method: &str, result: &Value) {
    let rows = |f: &dyn Fn(&Value) -> Vec<String>| rows_of(result, f);
    match method {
        "pool_list" => print_pools(result),
        "pool_scrub" => {
            let line = ferrite_tools::scan::scan_line(&result["scan"]).unwrap_or_default();
            println!("pool {}: {line}", s(result, "name"));
        }
        "pool_clear" => {
            let rewind = if result["cleared"].is_null() {
                "no rewind report to clear"
            } else {
                "rewind report cleared"
            };
            let errors = result["device_errors_cleared"].as_u64().unwrap_or(0);
            println!("pool {}: {rewind}; {errors} device errors cleared", s(result, "name"));
        }
        "volume_list" => table(
            &["name", "size", "used", "referenced", "snapshots", "snap_used"],
            &rows(&|v| {
                vec![
                    s(v, "name"),
                    bytes(v, "capacity_bytes"),
                    bytes(v, "used_bytes"),
                    bytes(v, "referenced_bytes"),
                    s(v, "snapshot_count"),
                    bytes(v, "snapshots_used_bytes"),
                ]
            }),
        ),
        "volume_status" => {
            table(
                &[
                    "name",
                    "compression",
                    "dedup",
                    "logical",
                    "physical",
                    "compress_ratio",
                    "dedup_lookups",
                    "dedup_hit_rate",
                ],
                &rows(&|v| {
                    let d = &v["dedup_activity"];
                    vec![
                        s(v, "name"),
                        s(v, "compression"),
                        s(v, "dedup"),
                        bytes(&v["reduction"], "logical_bytes"),
                        bytes(&v["reduction"], "physical_bytes"),
                        ratio(&v["reduction"], "compression_ratio"),
                        s(d, "lookups"),
                        d["hit_rate"]
                            .as_f64()
                            .map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0)),
                    ]
                }),
            );
            for v in result.as_array().into_iter().flatten() {
                if let Some(reason) = v["dedup_activity"]["stopped_reason"].as_str() {
                    println!("{}: dedup takes no new entries: {reason}", s(v, "name"));
                }
            }
        }
        "snapshot_list" => table(
            &["name", "volume", "destroy_frees"],
            &rows(&|v| vec![s(v, "name"), s(v, "volume"), bytes(v, "destroy_frees_bytes")]),
        ),
        "session_list" => table(
            &["tsih", "initiator", "target", "shard"],
            &rows(&|v| vec![s(v, "tsih"), s(v, "initiator"), s(v, "target"), s(v, "shard")]),
        ),
        "stats_copies_get" => print_copies(result),
        "volume_create" | "volume_grow" | "volume_set" | "snapshot_clone" => {
            println!(
                "{}  size {}  referenced {}",
                s(result, "name"),
                bytes(result, "capacity_bytes"),
                bytes(result, "referenced_bytes")
            );
        }
        "snapshot_destroy_estimate" => {
            println!("destroying them would free {}", bytes(result, "frees_bytes"));
        }
        _ => {
            let text = result
                .as_object()
                .and_then(|o| o.values().next())
                .map_or_else(String::new, |v| v.as_str().unwrap_or("").to_string());
            println!("{} {}", method.rsplit('_').next().unwrap_or(method), text);
        }
    }
    if method == "pool_list" {
        print_vdevs(result);
        print_rewinds(result);
        print_scans(result);
    }
}

/// One table row per element of the array `result`.
fn rows_of(result: &Value, f: &dyn Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    result.as_array().map(|a| a.iter().map(f).collect()).unwrap_or_default()
}

/// The `pool_list` table.
fn print_pools(result: &Value) {
    table(
        &[
            "name",
            "size",
            "used",
            "free",
            "volumes",
            "txg",
            "cksum_errors",
            "compress_ratio",
            "dedup_ratio",
            "ddt_entries",
            "ddt_mem",
            "ddt_disk",
            "guid",
        ],
        &rows_of(result, &|p| {
            let t = &p["dedup_table"];
            vec![
                s(p, "name"),
                bytes(p, "capacity_bytes"),
                bytes(p, "used_bytes"),
                bytes(p, "free_bytes"),
                s(p, "volumes"),
                s(p, "durable_txg"),
                s(p, "checksum_errors"),
                ratio(&p["reduction"], "compression_ratio"),
                ratio(t, "dedup_ratio"),
                s(t, "entries"),
                bytes(t, "memory_bytes"),
                bytes(t, "disk_bytes"),
                s(p, "guid"),
            ]
        }),
    );
}

/// A device's NVMe health columns (temperature, endurance used, media errors), "n/a" for a
/// device without a health log (a file) and "error" when reading it failed.
fn health_columns(d: &Value) -> [String; 3] {
    let h = &d["nvme"];
    if h.is_null() {
        return ["n/a".into(), "n/a".into(), "n/a".into()];
    }
    if let Some(e) = h["error"].as_str() {
        return [format!("error: {e}"), String::new(), String::new()];
    }
    [
        format!("{}C", s(h, "temperature_celsius")),
        format!("{}%", s(h, "percentage_used")),
        s(h, "media_errors"),
    ]
}

/// Each pool's vdev tree: every group and device with its state, its READ, WRITE and CKSUM
/// error counts, the bytes repaired on it, and its NVMe health.
fn print_vdevs(pools: &Value) {
    for p in pools.as_array().into_iter().flatten() {
        let mut rows = Vec::new();
        for g in p["vdevs"].as_array().into_iter().flatten() {
            let mut row = vec![format!("  {} ({})", s(g, "kind"), s(g, "role")), s(g, "state")];
            row.resize(9, String::new());
            rows.push(row);
            for d in g["devices"].as_array().into_iter().flatten() {
                let mut row = vec![
                    format!("    {}", s(d, "name")),
                    s(d, "state"),
                    s(d, "read_errors"),
                    s(d, "write_errors"),
                    s(d, "checksum_errors"),
                    bytes(d, "repaired_bytes"),
                ];
                row.extend(health_columns(d));
                rows.push(row);
            }
        }
        if !rows.is_empty() {
            println!();
            println!("pool {}:", s(p, "name"));
            let head = [
                "device",
                "state",
                "read",
                "write",
                "cksum",
                "repaired",
                "temp",
                "used",
                "media_err",
            ];
            table(&head, &rows);
        }
    }
}

/// Each pool's scan line (its current or last scrub) and the bad blocks it found.
fn print_scans(pools: &Value) {
    for p in pools.as_array().into_iter().flatten() {
        if let Some(line) = ferrite_tools::scan::scan_line(&p["scan"]) {
            println!("pool {}: scan: {line}", s(p, "name"));
            for bad in ferrite_tools::scan::bad_block_lines(&p["scan"]) {
                println!("  {bad}");
            }
        }
    }
}

/// One line per pool whose import rewound it (passed over newer txgs), until cleared.
fn print_rewinds(pools: &Value) {
    for p in pools.as_array().into_iter().flatten() {
        if let Some(message) = p["rewind"]["message"].as_str() {
            let name = s(p, "name");
            println!(
                "{name}: REWOUND at import: {message} (`ferritectl pool clear {name}` once seen)"
            );
        }
    }
}

fn print_copies(copies: &Value) {
    let paths = copies["paths"].as_array().cloned().unwrap_or_default();
    table(
        &["copy_path", "bytes_copied", "ios", "bytes_per_io"],
        &paths
            .iter()
            .map(|p| {
                let per_io = p["bytes_per_io"].as_f64().unwrap_or(0.0);
                vec![s(p, "path"), s(p, "bytes_copied"), s(p, "ios"), format!("{per_io:.1}")]
            })
            .collect::<Vec<_>>(),
    );
    println!("payload bytes copied in total: {}", s(copies, "total_bytes_copied"));
}

/// Counter `key` of `io` minus the same counter in `before` (absent: 0).
fn delta(io: &Value, before: Option<&Value>, key: &str) -> u64 {
    let now = io[key].as_u64().unwrap_or(0);
    now.saturating_sub(before.and_then(|b| b[key].as_u64()).unwrap_or(0))
}

/// Latency quantiles (microseconds) of the histogram `key` between two samples: the upper
/// bound of the log2 bucket holding each quantile.
fn quantiles(io: &Value, before: Option<&Value>, key: &str) -> String {
    let now: Vec<u64> = io[key]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default();
    let old: Vec<u64> = before
        .and_then(|b| b[key].as_array())
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default();
    let counts: Vec<u64> = now
        .iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(old.get(i).copied().unwrap_or(0)))
        .collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return "-".into();
    }
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (1u64 << i.min(63)) as f64 / 1000.0;
            }
        }
        f64::INFINITY
    };
    format!("{:.0}/{:.0}/{:.0}", at(0.5), at(0.99), at(0.999))
}

/// One row of I/O figures: IOPS and MB/s per direction over `secs`, queue depth, latency
/// quantiles, errors.
fn io_row(io: &Value, before: Option<&Value>, secs: f64) -> Vec<String> {
    let rate = |key| delta(io, before, key) as f64 / secs;
    vec![
        format!("{:.0}", rate("read_ops")),
        format!("{:.1}", rate("read_bytes") / 1e6),
        format!("{:.0}", rate("write_ops")),
        format!("{:.1}", rate("write_bytes") / 1e6),
        s(io, "queue_depth"),
        quantiles(io, before, "read_latency_buckets"),
        quantiles(io, before, "write_latency_buckets"),
        delta(io, before, "errors").to_string(),
    ]
}

const IO_HEADERS: [&str; 8] = [
    "read_iops",
    "read_mb/s",
    "write_iops",
    "write_mb/s",
    "qd",
    "read_us_p50/p99/p99.9",
    "write_us_p50/p99/p99.9",
    "errors",
];

/// Finds the entry of `list` whose `key` equals `entry`'s.
fn matching<'a>(list: &'a Value, entry: &Value, keys: &[&str]) -> Option<&'a Value> {
    list.as_array()?.iter().find(|x| keys.iter().all(|k| x[*k] == entry[*k]))
}

fn stats_view(args: &Args, interval: f64) -> Result<(), String> {
    let first = call(&args.socket, "stats_get", &json!({}))?;
    let (before, after) = if interval > 0.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(interval));
        (Some(first), call(&args.socket, "stats_get", &json!({}))?)
    } else {
        (None, first)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&after).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let uptime = after["uptime_seconds"].as_f64().unwrap_or(1.0);
    let secs = match &before {
        Some(b) => (uptime - b["uptime_seconds"].as_f64().unwrap_or(0.0)).max(1e-3),
        None => uptime.max(1e-3),
    };
    let span = if before.is_some() { "last" } else { "average over" };
    println!("I/O ({span} {secs:.1} s)");
    let section = |title: &str, list: &str, keys: &[&str], name: &dyn Fn(&Value) -> Vec<String>| {
        let mut headers: Vec<&str> = vec![title];
        headers.extend(IO_HEADERS);
        let rows: Vec<Vec<String>> = after[list]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let old = before.as_ref().and_then(|b| matching(&b[list], x, keys));
                        let mut row = name(x);
                        row.extend(io_row(&x["io"], old.map(|o| &o["io"]), secs));
                        row
                    })
                    .collect()
            })
            .unwrap_or_default();
        table(&headers, &rows);
        println!();
    };
    section("lun", "luns", &["target", "lun"], &|l| {
        vec![format!("{}/{}", s(l, "target"), s(l, "lun"))]
    });
    section("shard", "shards", &["shard"], &|x| vec![s(x, "shard")]);
    section("connection", "connections", &["id"], &|c| {
        vec![format!("{} {} (shard {})", s(c, "id"), s(c, "initiator"), s(c, "shard"))]
    });
    let cpu_rows: Vec<Vec<String>> = after["shards"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let now = x["cpu_seconds"].as_f64();
                    let old = before
                        .as_ref()
                        .and_then(|b| matching(&b["shards"], x, &["shard"]))
                        .and_then(|o| o["cpu_seconds"].as_f64())
                        .unwrap_or(0.0);
                    let busy = now
                        .map_or_else(|| "-".into(), |n| format!("{:.1}", (n - old) / secs * 100.0));
                    let handoffs_old = before
                        .as_ref()
                        .and_then(|b| matching(&b["shards"], x, &["shard"]))
                        .and_then(|o| o["handoffs_received"].as_u64())
                        .unwrap_or(0);
                    let handoffs = x["handoffs_received"].as_u64().map_or_else(
                        || "-".into(),
                        |n| format!("{:.0}", n.saturating_sub(handoffs_old) as f64 / secs),
                    );
                    vec![s(x, "shard"), busy, s(x, "connections"), handoffs]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["shard", "cpu_busy_%", "connections", "handoffs_in/s"], &cpu_rows);
    println!();
    print_copies(&after["copies"]);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferritectl: {e}");
            ExitCode::from(1)
        }
    }
}
