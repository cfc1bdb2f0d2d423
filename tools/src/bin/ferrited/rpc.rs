//! The control plane: JSON-RPC 2.0 on a Unix socket, one request per line.
//!
//! Methods are named `subsystem_object_verb` after SPDK's habit, shortened where the object is
//! the subsystem: `pool_list`, `volume_create`, `volume_list`, `volume_status`, `volume_set`,
//! `volume_grow`, `volume_destroy`, `snapshot_create`, `snapshot_list`, `snapshot_rollback`,
//! `snapshot_clone`, `snapshot_destroy`, `snapshot_destroy_estimate`, `session_list`,
//! `stats_get` (I/O per LUN, shard and connection, shard CPU time, pool and copy counters; see
//! `stats.rs`), `stats_copies_get`, `pool_clear` (forgets a pool's rewind report, which
//! `pool_list` shows until then, and zeroes its devices' error counts), `pool_scrub` (start,
//! pause, resume or stop a scrub; its progress is `pool_list`'s `scan`).
//! Served on shard 0, where the pools' txg coordinators run.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use drivers::buffer::IoBuf;
use drivers::error::{IoError, IoResult};
use drivers::{executor, ops};
use engine::compress::Compression;
use engine::ddt::{DdtFigures, DedupMode};
use engine::reduction::ReductionFigures;
use engine::rewind::RewindReport;
use engine::{Pool, PoolError, VolumeOptions};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::daemon::{Lun, State};
use crate::stats;

mod scrub;

/// Largest request line accepted.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Creates the listening Unix socket (the path must be free: see
/// `access::prepare_socket_path`).
///
/// # Errors
/// When the socket cannot be bound.
pub fn listen(path: &Path) -> IoResult<OwnedFd> {
    let bytes = path.as_os_str().as_encoded_bytes();
    // SAFETY: sockaddr_un is plain old data; zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(IoError::InvalidInput(libc::ENAMETOOLONG));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let nonblocking = executor::backend_kind() == executor::BackendKind::Epoll;
    let ty =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty, 0) };
    if fd < 0 {
        return Err(IoError::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: bind with a valid sockaddr_un of `len` bytes.
    if unsafe { libc::bind(fd, std::ptr::from_ref(&addr).cast(), len) } < 0 {
        return Err(IoError::last_os_error());
    }
    // SAFETY: listen on our socket.
    if unsafe { libc::listen(fd, 64) } < 0 {
        return Err(IoError::last_os_error());
    }
    Ok(owned)
}

/// Accepts control connections until the task is aborted; a peer `access` refuses is closed
/// with one log line.
pub async fn serve(listener: OwnedFd, state: Arc<State>, access: crate::access::ControlAccess) {
    loop {
        match ops::accept(listener.as_raw_fd()).await {
            Ok((fd, _)) => {
                if let Err(refused) = access.check_peer(&fd) {
                    log::warn!("{refused}");
                    continue;
                }
                let state = Arc::clone(&state);
                executor::spawn(async move {
                    let _ = client(fd, state).await;
                });
            }
            Err(_) => executor::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

async fn client(fd: OwnedFd, state: Arc<State>) -> IoResult<()> {
    let raw = fd.as_raw_fd();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = IoBuf::zeroed(64 * 1024);
    loop {
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let reply = handle_line(&line[..line.len() - 1], &state).await;
            let mut out = encode_reply(reply).await;
            out.push(b'\n');
            let len = out.len();
            let (res, _) = ops::send_all(raw, vec![(IoBuf::from_slice(&out), 0..len)]).await;
            res?;
        }
        if pending.len() > MAX_REQUEST_BYTES {
            return Err(IoError::InvalidInput(libc::EMSGSIZE));
        }
        let len = buf.len();
        let (res, back) = ops::recv(raw, buf, 0..len).await;
        buf = back;
        match res? {
            0 => return Ok(()),
            n => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// Serialises a reply. A long result array (a listing of tens of thousands of snapshots)
/// is written, and its entries dropped, `LIST_SLICE` entries at a time with a yield between
/// slices, so the shard's I/O is not held up for the whole reply (nor for freeing it).
async fn encode_reply(mut reply: Value) -> Vec<u8> {
    let items = match reply.get_mut("result") {
        Some(Value::Array(items)) if items.len() > LIST_SLICE => std::mem::take(items),
        _ => return serde_json::to_vec(&reply).unwrap_or_default(),
    };
    let id = serde_json::to_vec(&reply["id"]).unwrap_or_else(|_| b"null".to_vec());
    let mut out = Vec::with_capacity(items.len() * 96);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(&id);
    out.extend_from_slice(b",\"result\":[");
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &item);
        drop(item);
        if n % LIST_SLICE == LIST_SLICE - 1 {
            executor::yield_now().await;
        }
    }
    out.extend_from_slice(b"]}");
    out
}

/// A JSON-RPC error: code and message.
#[derive(Debug)]
struct RpcError(i64, String);

fn invalid(msg: impl Into<String>) -> RpcError {
    RpcError(-32602, msg.into())
}

async fn handle_line(line: &[u8], state: &State) -> Value {
    let request: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("parse error: {e}")}})
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": "request has no method"}});
    };
    let params = request.get("params").cloned().unwrap_or(json!({}));
    match dispatch(method, &params, state).await {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(RpcError(code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }
}

/// A method's parameters, decoded from the request's `params` object: a missing field, a
/// field of the wrong type and (where the method says so) an unknown field are "invalid params"
/// (-32602) errors that name the field.
fn params<T: DeserializeOwned>(params: &Value) -> Result<T, RpcError> {
    T::deserialize(params).map_err(|e| invalid(format!("invalid params: {e}")))
}

/// `{"name": …}`: `pool_clear`, `volume_destroy`, `snapshot_create`, `snapshot_destroy`.
#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

/// `{"name": …}` or `{}`: `volume_status`.
#[derive(Debug, Deserialize)]
struct MaybeNamed {
    name: Option<String>,
}

/// `volume_create`.
#[derive(Debug, Deserialize)]
struct VolumeCreate {
    name: String,
    size_bytes: u64,
    block_size: Option<u32>,
    thick: Option<bool>,
    volblock_size: Option<u32>,
    compression: Option<String>,
    dedup: Option<String>,
}

/// The properties `volume_set` changes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeProperties {
    compression: Option<String>,
    dedup: Option<String>,
}

/// `volume_set`.
#[derive(Debug, Deserialize)]
struct VolumeSet {
    name: String,
    properties: VolumeProperties,
}

/// `volume_grow`.
#[derive(Debug, Deserialize)]
struct VolumeGrow {
    name: String,
    size_bytes: u64,
}

/// `snapshot_list`.
#[derive(Debug, Deserialize)]
struct SnapshotList {
    volume: Option<String>,
}

/// `snapshot_rollback`.
#[derive(Debug, Deserialize)]
struct SnapshotRollback {
    name: String,
    force: Option<bool>,
}

/// `snapshot_clone`.
#[derive(Debug, Deserialize)]
struct SnapshotClone {
    snapshot: String,
    name: String,
}

/// `snapshot_destroy_estimate`.
#[derive(Debug, Deserialize)]
struct DestroyEstimate {
    names: Vec<String>,
}

/// Splits `pool/volume[@snapshot]` and finds the pool.
/// The LUNs that export pool volume `full` (`POOL/NAME`).
fn luns_exporting<'a>(state: &'a State, full: &'a str) -> impl Iterator<Item = &'a Lun> + 'a {
    state.luns.iter().filter(move |l| l.pool_volume.as_deref() == Some(full))
}

/// How long a forced rollback waits for the commands in flight on the LUNs to finish.
const ROLLBACK_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// `snapshot_rollback`: refused while a LUN exporting the volume has sessions, unless
/// `force`; then (and with no sessions) every such LU is fenced and drained, the volume rolled
/// back, and a unit attention raised on every I_T nexus (`LogicalUnit::end_medium_change`).
async fn snapshot_rollback(p: SnapshotRollback, state: &State) -> Result<Value, RpcError> {
    let full = p.name.as_str();
    let (pool, snap) = pool_of(state, full)?;
    let force = p.force.unwrap_or(false);
    let volume = full.split_once('@').map_or(full, |(v, _)| v);
    let mut units = Vec::new();
    let mut holders = Vec::new();
    for lun in luns_exporting(state, volume) {
        let Some(lu) = state.server.target(&lun.target).and_then(|t| t.scsi.lun(lun.id)) else {
            continue;
        };
        units.push(Arc::clone(lu));
        for s in state.server.sessions.list() {
            if s.target_name.eq_ignore_ascii_case(&lun.target) {
                holders.push(format!(
                    "{} (tsih {}) on {} LUN {}",
                    s.initiator_name, s.tsih, lun.target, lun.id
                ));
            }
        }
    }
    if !holders.is_empty() && !force {
        return Err(RpcError(
            -32002,
            format!(
                "{volume} is exported and has {} sessions: {}; a rollback would change its data \
                 under them (log them out, or use --force: a LOGICAL UNIT RESET for them)",
                holders.len(),
                holders.join(", ")
            ),
        ));
    }
    for (i, lu) in units.iter().enumerate() {
        if let Err(e) = lu.begin_medium_change(ROLLBACK_DRAIN).await {
            for started in &units[..i] {
                started.end_medium_change(false);
            }
            return Err(RpcError(-32002, format!("{volume}: not rolled back: {e}")));
        }
    }
    let res = pool.rollback(&snap).await;
    // Refused before anything changed (no such snapshot, not the newest): no reset. A failure
    // later may have installed part of the rollback in memory: reset then too.
    let changed = !matches!(res, Err(PoolError::NotFound(_) | PoolError::Busy(_)));
    for lu in &units {
        lu.end_medium_change(changed);
    }
    res.map_err(|e| engine_err(&e))?;
    Ok(json!({"rolled_back_to": full, "sessions_reset": holders.len()}))
}

fn pool_of<'a>(state: &'a State, name: &str) -> Result<(&'a Arc<Pool>, String), RpcError> {
    let (pool, rest) =
        name.split_once('/').ok_or_else(|| invalid(format!("{name:?} is not POOL/NAME")))?;
    let p =
        state.pools.get(pool).ok_or_else(|| RpcError(-32001, format!("no pool named {pool:?}")))?;
    if rest.is_empty() {
        return Err(invalid(format!("{name:?} has an empty volume name")));
    }
    Ok((p, rest.to_string()))
}

fn engine_err(e: &engine::PoolError) -> RpcError {
    RpcError(-32000, e.to_string())
}

fn figures_json(f: &ReductionFigures) -> Value {
    json!({
        "logical_bytes": f.logical_bytes,
        "physical_bytes": f.physical_bytes,
        "compression_ratio": f.compression_ratio(),
    })
}

fn volume_json(pool: &Pool, pool_name: &str, name: &str) -> Value {
    let space = pool.space(name).ok();
    let capacity = pool.open_volume(name).map(|v| v.layout().capacity_bytes).unwrap_or(0);
    let props = pool.volume_properties(name).ok();
    let figures = pool.reduction_figures(name).unwrap_or_default();
    let activity = pool.dedup_activity(name).unwrap_or_default();
    json!({
        "name": format!("{pool_name}/{name}"),
        "capacity_bytes": capacity,
        "referenced_bytes": space.as_ref().map_or(0, |s| s.referenced_bytes),
        "used_bytes": space.as_ref().map_or(0, |s| s.used_bytes),
        "snapshots_used_bytes": space.as_ref().map_or(0, |s| s.snapshots_used_bytes),
        "snapshot_count": space.as_ref().map_or(0, |s| s.snapshot_count),
        "compression": props.map_or("-", |p| p.compression.name()),
        "dedup": props.map_or("-", |p| p.dedup.name()),
        "reduction": figures_json(&figures),
        "dedup_activity": {
            "lookups": activity.lookups,
            "hits": activity.hits,
            "hit_rate": activity.hit_rate(),
            "stopped_reason": activity.stopped,
        },
    })
}

/// A pool's rewind report (`null` when the import opened the newest txg).
fn rewind_json(report: Option<&RewindReport>) -> Value {
    report.map_or(Value::Null, |r| {
        json!({
            "imported_txg": r.imported_txg,
            "newest_txg": r.newest_txg(),
            "rejected": r.rejected.iter().map(|x| json!({"txg": x.txg, "reason": x.reason})).collect::<Vec<_>>(),
            "message": r.to_string(),
        })
    })
}

fn dedup_table_json(t: &DdtFigures) -> Value {
    json!({
        "entries": t.entries,
        "memory_bytes": t.memory_bytes,
        "memory_bytes_per_entry": t.memory_bytes_per_entry(),
        "disk_bytes": t.disk_bytes,
        "log_bytes": t.log_bytes,
        "log_objects": t.log_objects,
        "stored_bytes": t.stored_bytes,
        "referenced_bytes": t.referenced_bytes,
        "dedup_ratio": t.dedup_ratio(),
    })
}

fn parse_dedup(value: &str) -> Result<DedupMode, RpcError> {
    DedupMode::parse(value).ok_or_else(|| {
        invalid(format!("dedup must be \"off\", \"on\" or \"verify\", not {value:?}"))
    })
}

fn parse_compression(value: &str) -> Result<Compression, RpcError> {
    Compression::parse(value)
        .ok_or_else(|| invalid(format!("compression must be \"off\" or \"lz4\", not {value:?}")))
}

/// Entries of a snapshot listing made or serialised between two yields to the shard's I/O (about
/// a millisecond of work: a JSON entry takes a few microseconds).
const LIST_SLICE: usize = 256;

/// `snapshot_list`: every volume's snapshots (or one volume's, which must exist), each with
/// what destroying it alone frees. The figures come from one pass per volume, taken in
/// slices ([`Pool::snapshot_space_list_in_slices`]), and the reply is built in slices too, so
/// that the shard's I/O runs between them.
async fn list_snapshots(state: &State, only: Option<&str>) -> Result<Value, RpcError> {
    let mut volumes = Vec::new();
    for (pool_name, pool) in &state.pools {
        for volume in pool.list().into_iter().filter(|n| !n.contains('@')) {
            let full_volume = format!("{pool_name}/{volume}");
            if only.is_none_or(|o| o == full_volume) {
                volumes.push((pool, volume, full_volume));
            }
        }
    }
    if let (Some(o), true) = (only, volumes.is_empty()) {
        return Err(RpcError(-32000, format!("no volume named {o:?}")));
    }
    let mut out = Vec::new();
    for (pool, volume, full_volume) in volumes {
        let snaps =
            pool.snapshot_space_list_in_slices(&volume).await.map_err(|e| engine_err(&e))?;
        executor::yield_now().await;
        let pool_name = pool.name();
        // Consumed a slice at a time: each figure is dropped as its entry is made.
        for (n, s) in snaps.into_iter().enumerate() {
            out.push(json!({
                "name": format!("{pool_name}/{}", s.name),
                "volume": full_volume,
                "destroy_frees_bytes": s.destroy_frees_bytes,
            }));
            if n % LIST_SLICE == LIST_SLICE - 1 {
                executor::yield_now().await;
            }
        }
    }
    Ok(Value::Array(out))
}

async fn dispatch(method: &str, params: &Value, state: &State) -> Result<Value, RpcError> {
    match method {
        "pool_list" => pool_list(state),
        "pool_clear" => pool_clear(params, state),
        "pool_scrub" => scrub::pool_scrub(params, state),
        "volume_create" => volume_create(params, state).await,
        "volume_list" => volume_list(state),
        "volume_status" => volume_status(params, state),
        "volume_set" => volume_set(params, state).await,
        "volume_grow" => volume_grow(params, state).await,
        "volume_destroy" => volume_destroy(params, state).await,
        "snapshot_create" => snapshot_create(params, state).await,
        "snapshot_list" => snapshot_list(params, state).await,
        "snapshot_rollback" => snapshot_rollback(self::params(params)?, state).await,
        "snapshot_clone" => snapshot_clone(params, state).await,
        "snapshot_destroy" => snapshot_destroy(params, state).await,
        "snapshot_destroy_estimate" => snapshot_destroy_estimate(params, state),
        "session_list" => session_list(state),
        "stats_copies_get" => Ok(stats::copies_json(&engine::copy_stats::snapshot())),
        "stats_get" => Ok(stats::stats_json(state)),
        other => Err(RpcError(-32601, format!("method {other:?} not found"))),
    }
}

/// The `pool_list` method.
fn pool_list(state: &State) -> Result<Value, RpcError> {
    let mut pools: Vec<Value> = state
        .pools
        .iter()
        .map(|(name, p)| {
            json!({
                "name": name,
                "guid": format!("{:016x}", p.guid()),
                "capacity_bytes": p.capacity_bytes(),
                "free_bytes": p.space_summary().free_bytes,
                "used_bytes": p.space_summary().used_bytes,
                "reserved_bytes": p.space_summary().reserved_unused_bytes,
                "provisioned_bytes": p.space_summary().provisioned_bytes,
                "durable_txg": p.durable_txg().get(),
                "checksum_errors": p.checksum_errors(),
                "volumes": p.list().len(),
                "reduction": figures_json(&p.pool_reduction_figures()),
                "dedup_table": dedup_table_json(&p.dedup_table_figures()),
                "rewind": rewind_json(p.rewind_report().as_ref()),
                "vdevs": vdevs_json(p),
                "scan": scrub::scan_json(p),
            })
        })
        .collect();
    pools.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Value::Array(pools))
}

/// The pool's vdev tree with each device's state and READ, WRITE and CKSUM counters.
fn vdevs_json(pool: &Pool) -> Value {
    let group = |g: &engine::GroupHealth| {
        let devices: Vec<Value> = g
            .devices
            .iter()
            .map(|d| {
                json!({
                    "name": d.name,
                    "state": d.state,
                    "read_errors": d.read_errors,
                    "write_errors": d.write_errors,
                    "checksum_errors": d.checksum_errors,
                    "repaired_bytes": d.repaired_bytes,
                    "nvme": nvme_json(&d.name),
                })
            })
            .collect();
        json!({"kind": g.kind, "role": g.role, "state": g.state, "devices": devices})
    };
    Value::Array(pool.device_health().iter().map(group).collect())
}

/// The NVMe health log of the device at `path` (temperature, endurance used, media errors…),
/// `null` for a device without one (a file), or `{"error": …}` when reading it failed.
fn nvme_json(path: &str) -> Value {
    match drivers::blockdev::nvme_health::read_health(Path::new(path)) {
        None => Value::Null,
        Some(Err(e)) => json!({"error": e.to_string()}),
        Some(Ok(h)) => json!({
            "critical_warning": h.critical_warning,
            "temperature_celsius": h.temperature_celsius,
            "available_spare_percent": h.available_spare_percent,
            "percentage_used": h.percentage_used,
            "media_errors": h.media_errors,
            "power_on_hours": h.power_on_hours,
            "unsafe_shutdowns": h.unsafe_shutdowns,
        }),
    }
}

/// The `pool_clear` method.
fn pool_clear(params: &Value, state: &State) -> Result<Value, RpcError> {
    let Named { name } = self::params(params)?;
    let name = name.as_str();
    let pool =
        state.pools.get(name).ok_or_else(|| RpcError(-32001, format!("no pool named {name:?}")))?;
    let cleared = pool.clear_rewind_report();
    let device_errors = pool.clear_device_errors();
    Ok(json!({
        "name": name,
        "cleared": rewind_json(cleared.as_ref()),
        "device_errors_cleared": device_errors,
    }))
}

/// The `volume_create` method.
async fn volume_create(params: &Value, state: &State) -> Result<Value, RpcError> {
    let p: VolumeCreate = self::params(params)?;
    let (pool, name) = pool_of(state, &p.name)?;
    let defaults = VolumeOptions::default();
    let options = VolumeOptions {
        capacity_bytes: p.size_bytes,
        logical_block_bytes: p.block_size.unwrap_or(512),
        thick: p.thick.unwrap_or(false),
        volblock_bytes: p.volblock_size.unwrap_or(defaults.volblock_bytes),
        compression: p
            .compression
            .as_deref()
            .map(parse_compression)
            .transpose()?
            .unwrap_or_default(),
        dedup: p.dedup.as_deref().map(parse_dedup).transpose()?.unwrap_or_default(),
        ..defaults
    };
    pool.create_volume(&name, &options).await.map_err(|e| engine_err(&e))?;
    Ok(volume_json(pool, pool.name(), &name))
}

/// The `volume_list` method.
fn volume_list(state: &State) -> Result<Value, RpcError> {
    let mut out = Vec::new();
    for (pool_name, pool) in &state.pools {
        for name in pool.list().iter().filter(|n| !n.contains('@')) {
            out.push(volume_json(pool, pool_name, name));
        }
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Value::Array(out))
}

/// The `volume_status` method.
fn volume_status(params: &Value, state: &State) -> Result<Value, RpcError> {
    let MaybeNamed { name } = self::params(params)?;
    let only = name.as_deref();
    let mut out = Vec::new();
    for (pool_name, pool) in &state.pools {
        for name in pool.list().iter().filter(|n| !n.contains('@')) {
            if only.is_none_or(|o| o == format!("{pool_name}/{name}")) {
                out.push(volume_json(pool, pool_name, name));
            }
        }
    }
    if let (Some(o), true) = (only, out.is_empty()) {
        return Err(RpcError(-32000, format!("no volume named {o:?}")));
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Value::Array(out))
}

/// The `volume_set` method.
async fn volume_set(params: &Value, state: &State) -> Result<Value, RpcError> {
    let VolumeSet { name, properties: props } = self::params(params)?;
    let (pool, name) = pool_of(state, &name)?;
    // Both values are checked before either is applied.
    let compression = props.compression.as_deref().map(parse_compression).transpose()?;
    let dedup = props.dedup.as_deref().map(parse_dedup).transpose()?;
    if let Some(c) = compression {
        pool.set_compression(&name, c).await.map_err(|e| engine_err(&e))?;
    }
    if let Some(d) = dedup {
        pool.set_dedup(&name, d).await.map_err(|e| engine_err(&e))?;
    }
    Ok(volume_json(pool, pool.name(), &name))
}

/// The `volume_grow` method.
async fn volume_grow(params: &Value, state: &State) -> Result<Value, RpcError> {
    let VolumeGrow { name: full, size_bytes } = self::params(params)?;
    let full = full.as_str();
    let (pool, name) = pool_of(state, full)?;
    pool.grow_volume(&name, size_bytes).await.map_err(|e| engine_err(&e))?;
    // Every initiator of a LUN exporting the volume learns of the new size with
    // CAPACITY DATA HAS CHANGED on its next command (SPC-4 §5.14).
    for lun in luns_exporting(state, full) {
        if let Some(lu) = state.server.target(&lun.target).and_then(|t| t.scsi.lun(lun.id)) {
            lu.capacity_changed();
        }
    }
    Ok(volume_json(pool, pool.name(), &name))
}

/// The `volume_destroy` method.
async fn volume_destroy(params: &Value, state: &State) -> Result<Value, RpcError> {
    let Named { name: full } = self::params(params)?;
    let full = full.as_str();
    let (pool, name) = pool_of(state, full)?;
    if luns_exporting(state, full).next().is_some() {
        return Err(RpcError(
            -32002,
            format!("{full} is exported as a LUN; remove it from the configuration first"),
        ));
    }
    pool.destroy_volume(&name).await.map_err(|e| engine_err(&e))?;
    Ok(json!({"destroyed": full}))
}

/// The `snapshot_create` method.
async fn snapshot_create(params: &Value, state: &State) -> Result<Value, RpcError> {
    let Named { name: full } = self::params(params)?;
    let full = full.as_str();
    let (pool, rest) = pool_of(state, full)?;
    let (volume, snap) = rest
        .split_once('@')
        .ok_or_else(|| invalid(format!("{full:?} is not POOL/VOLUME@SNAPSHOT")))?;
    pool.snapshot(volume, snap).await.map_err(|e| engine_err(&e))?;
    Ok(json!({"name": full}))
}

/// The `snapshot_list` method.
async fn snapshot_list(params: &Value, state: &State) -> Result<Value, RpcError> {
    let SnapshotList { volume } = self::params(params)?;
    list_snapshots(state, volume.as_deref()).await
}

/// The `snapshot_clone` method.
async fn snapshot_clone(params: &Value, state: &State) -> Result<Value, RpcError> {
    let SnapshotClone { snapshot, name } = self::params(params)?;
    let (pool, snap) = pool_of(state, &snapshot)?;
    let (target_pool, new_name) = pool_of(state, &name)?;
    if !Arc::ptr_eq(pool, target_pool) {
        return Err(invalid("a clone lives in the pool of its snapshot"));
    }
    pool.clone_snapshot(&snap, &new_name).await.map_err(|e| engine_err(&e))?;
    Ok(volume_json(pool, pool.name(), &new_name))
}

/// The `snapshot_destroy` method.
async fn snapshot_destroy(params: &Value, state: &State) -> Result<Value, RpcError> {
    let Named { name: full } = self::params(params)?;
    let full = full.as_str();
    let (pool, snap) = pool_of(state, full)?;
    pool.destroy_snapshot(&snap).await.map_err(|e| engine_err(&e))?;
    Ok(json!({"destroyed": full}))
}

/// The `snapshot_destroy_estimate` method.
fn snapshot_destroy_estimate(params: &Value, state: &State) -> Result<Value, RpcError> {
    let DestroyEstimate { names } = self::params(params)?;
    let mut per_pool: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for n in &names {
        let (pool, snap) = pool_of(state, n)?;
        per_pool.entry(pool.name().to_string()).or_default().push(snap);
    }
    let mut total = 0;
    for (pool_name, snaps) in &per_pool {
        let pool = &state.pools[pool_name];
        let refs: Vec<&str> = snaps.iter().map(String::as_str).collect();
        total += pool.destroy_would_free(&refs).map_err(|e| engine_err(&e))?;
    }
    Ok(json!({"frees_bytes": total}))
}

/// The `session_list` method.
fn session_list(state: &State) -> Result<Value, RpcError> {
    let sessions: Vec<Value> = state
            .server
            .sessions
            .list()
            .into_iter()
            .map(|s| json!({"tsih": s.tsih, "initiator": s.initiator_name, "target": s.target_name, "shard": s.shard}))
            .collect();
    Ok(Value::Array(sessions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal<T: DeserializeOwned + std::fmt::Debug>(p: &Value) -> String {
        match params::<T>(p) {
            Ok(v) => panic!("{p} accepted as {v:?}"),
            Err(RpcError(code, message)) => {
                assert_eq!(code, -32602, "{message}");
                message
            }
        }
    }

    #[test]
    fn parameters_are_decoded_and_bad_ones_named() {
        let p: VolumeCreate = params(&json!({"name": "tank/v", "size_bytes": 1u64 << 30,
            "thick": true, "block_size": null, "compression": "lz4"}))
        .expect("valid volume_create");
        assert_eq!((p.name.as_str(), p.size_bytes, p.thick), ("tank/v", 1 << 30, Some(true)));
        assert_eq!((p.block_size, p.compression.as_deref(), p.dedup), (None, Some("lz4"), None));
        let m = refusal::<VolumeCreate>(&json!({"name": "tank/v"}));
        assert!(m.contains("missing field `size_bytes`"), "{m}");
        let m = refusal::<VolumeCreate>(&json!({"name": "tank/v", "size_bytes": "1G"}));
        assert!(m.contains("invalid type: string \"1G\""), "{m}");
        let m = refusal::<VolumeCreate>(
            &json!({"name": "v", "size_bytes": 1, "block_size": 1u64 << 40}),
        );
        assert!(m.contains("expected u32"), "{m}");
        let m = refusal::<Named>(&json!({}));
        assert!(m.contains("missing field `name`"), "{m}");
        let m = refusal::<SnapshotRollback>(&json!({"name": "t/v@s", "force": "yes"}));
        assert!(m.contains("expected a boolean"), "{m}");
        let p: SnapshotRollback = params(&json!({"name": "t/v@s", "force": null})).expect("null");
        assert_eq!(p.force, None);
        let m = refusal::<VolumeSet>(&json!({"name": "t/v", "properties": {"recordsize": 4}}));
        assert!(m.contains("unknown field `recordsize`"), "{m}");
        let m = refusal::<DestroyEstimate>(&json!({"names": ["t/v@a", 7]}));
        assert!(m.contains("invalid type: integer `7`"), "{m}");
        let p: MaybeNamed = params(&json!({})).expect("no name");
        assert!(p.name.is_none());
    }

    #[test]
    fn property_values_are_checked_with_the_rule() {
        assert!(parse_compression("lz4").is_ok() && parse_dedup("verify").is_ok());
        let Err(RpcError(_, m)) = parse_compression("gzip") else { panic!("gzip accepted") };
        assert_eq!(m, "compression must be \"off\" or \"lz4\", not \"gzip\"");
        let Err(RpcError(_, m)) = parse_dedup("maybe") else { panic!("maybe accepted") };
        assert_eq!(m, "dedup must be \"off\", \"on\" or \"verify\", not \"maybe\"");
    }
}
