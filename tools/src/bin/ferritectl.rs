//! ferritectl: drives a running ferrited through its JSON-RPC control socket.
//!
//! ```text
//! ferritectl pool status
//! ferritectl volume create tank/vm1 --size 100G [--thick] [--block-size 4096] [--compression lz4] [--dedup on]
//! ferritectl volume list | grow tank/vm1 --size 200G | destroy tank/vm1
//! ferritectl volume set tank/vm1 compression=off dedup=verify
//! ferritectl volume status [tank/vm1]                  # properties and data-reduction figures
//! ferritectl snapshot create tank/vm1@before-upgrade
//! ferritectl snapshot list [tank/vm1] | rollback tank/vm1@s | clone tank/vm1@s tank/vm2 | destroy tank/vm1@s
//! ferritectl snapshot estimate tank/vm1@a tank/vm1@b     # bytes freed by destroying both
//! ferritectl session list
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
    /// Data-path statistics: payload bytes copied per path.
    Stats,
}

#[derive(Debug, Subcommand)]
enum PoolAction {
    /// Capacity, free space, txg and checksum errors of every pool.
    Status,
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
    /// Roll the volume back to POOL/VOLUME@SNAPSHOT.
    Rollback { name: String },
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
    let (method, params) = match &args.command {
        Command::Pool { action: PoolAction::Status } => ("pool_list", json!({})),
        Command::Volume { action } => match action {
            VolumeAction::Create { name, size, thick, block_size, compression, dedup } => (
                "volume_create",
                json!({"name": name, "size_bytes": parse_size(size)?, "thick": thick, "block_size": block_size, "compression": compression, "dedup": dedup}),
            ),
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
            SnapshotAction::Rollback { name } => ("snapshot_rollback", json!({"name": name})),
            SnapshotAction::Clone { snapshot, name } => {
                ("snapshot_clone", json!({"snapshot": snapshot, "name": name}))
            }
            SnapshotAction::Destroy { name } => ("snapshot_destroy", json!({"name": name})),
            SnapshotAction::Estimate { names } => {
                ("snapshot_destroy_estimate", json!({"names": names}))
            }
        },
        Command::Session { action: SessionAction::List } => ("session_list", json!({})),
        Command::Stats => ("stats_copies_get", json!({})),
    };
    let result = call(&args.socket, method, &params)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?);
        return Ok(());
    }
    let rows = |f: &dyn Fn(&Value) -> Vec<String>| -> Vec<Vec<String>> {
        result.as_array().map(|a| a.iter().map(f).collect()).unwrap_or_default()
    };
    match method {
        "pool_list" => table(
            &[
                "name",
                "size",
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
            &rows(&|p| {
                let t = &p["dedup_table"];
                vec![
                    s(p, "name"),
                    bytes(p, "capacity_bytes"),
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
        ),
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
        "stats_copies_get" => {
            let paths = result["paths"].as_array().cloned().unwrap_or_default();
            table(
                &["copy_path", "bytes_copied", "ios", "bytes_per_io"],
                &paths
                    .iter()
                    .map(|p| {
                        let per_io = p["bytes_per_io"].as_f64().unwrap_or(0.0);
                        vec![
                            s(p, "path"),
                            s(p, "bytes_copied"),
                            s(p, "ios"),
                            format!("{per_io:.1}"),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            println!("payload bytes copied in total: {}", s(&result, "total_bytes_copied"));
        }
        "volume_create" | "volume_grow" | "volume_set" | "snapshot_clone" => {
            println!(
                "{}  size {}  referenced {}",
                s(&result, "name"),
                bytes(&result, "capacity_bytes"),
                bytes(&result, "referenced_bytes")
            );
        }
        "snapshot_destroy_estimate" => {
            println!("destroying them would free {}", bytes(&result, "frees_bytes"));
        }
        _ => {
            let text = result
                .as_object()
                .and_then(|o| o.values().next())
                .map_or_else(String::new, |v| v.as_str().unwrap_or("").to_string());
            println!("{} {}", method.rsplit('_').next().unwrap_or(method), text);
        }
    }
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
