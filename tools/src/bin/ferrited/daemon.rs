//! The running daemon: pools, volumes, targets, shards, portals, the control socket, signals.
//!
//! Start-up runs on shard 0 (pools are imported through its reactor, and their txg
//! coordinators live there); the other shards wait for the server state, then receive the
//! connections shard 0 accepts and places on the least-loaded shard.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::executor::{self, BackendChoice, ReactorConfig};
use drivers::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use drivers::remote::ShardSet;
use drivers::{ops, shard};
use engine::block_volume::BlockVolume;
use engine::device_volume::DeviceVolume;
use engine::memory_volume::MemoryVolume;
use engine::{CreateOptions, Pool, PoolError, PoolTunables, VolumeOptions};
use target_iscsi::admission::PendingLogin;
use target_iscsi::chap::{ChapCredentials, ChapSecret};
use target_iscsi::ffp::Keepalive;
use target_iscsi::login::{LoginConfig, TargetConfig};
use target_iscsi::scsi::config::LunConfig;
use target_iscsi::scsi::logical_unit::LogicalUnit;
use target_iscsi::scsi::target::ScsiTarget;
use target_iscsi::server::{Portal, Server, TargetNode};

use crate::config::{
    lun_sanitize_bytes_per_s, lun_volblock_bytes, parse_size, ChapSection, Config, DeviceSection,
    LunSection, PoolSection,
};
use crate::{lun_state, metrics, rpc};

/// Options from the command line that override the configuration.
pub struct Options {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Shard count.
    pub shards: Option<usize>,
    /// Backend choice.
    pub backend: Option<String>,
    /// Keepalive interval in seconds (0 = off).
    pub keepalive_secs: u64,
    /// Control socket path.
    pub rpc_socket: PathBuf,
    /// Prometheus endpoint address, when on.
    pub metrics: Option<String>,
    /// `--force-import`: take over pools whose owner on another host stopped its heartbeat.
    pub force_import: bool,
}

type Accepted = (OwnedFd, Portal, PendingLogin);

/// A LUN's volume, kept for the final flush.
pub struct Lun {
    /// Target IQN.
    pub target: String,
    /// LUN number.
    pub id: u64,
    /// The volume.
    pub volume: Arc<dyn BlockVolume>,
    /// `POOL/NAME` when the LUN is a pool volume.
    pub pool_volume: Option<String>,
}

/// Everything built at start-up.
pub struct State {
    /// iSCSI server.
    pub server: Arc<Server>,
    /// LUNs.
    pub luns: Vec<Lun>,
    /// Imported pools by name.
    pub pools: HashMap<String, Arc<Pool>>,
    /// The shards' inboxes: a request for a partition another shard owns goes there.
    pub shard_set: Arc<ShardSet>,
}

fn chap_of(section: &ChapSection) -> ChapCredentials {
    ChapCredentials {
        initiator: ChapSecret {
            username: section.user.clone(),
            secret: section.secret.as_bytes().to_vec(),
        },
        mutual: match (&section.mutual_user, &section.mutual_secret) {
            (Some(u), Some(s)) => {
                Some(ChapSecret { username: u.clone(), secret: s.as_bytes().to_vec() })
            }
            _ => None,
        },
    }
}

fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        data_dir.join(path)
    }
}

fn open_or_create(path: &Path, size: Option<&str>) -> Result<(Arc<dyn BlockDevice>, bool), String> {
    if path.exists() {
        crate::access::warn_if_shared(path);
        let dev =
            UringDevice::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
        return Ok((Arc::new(dev), false));
    }
    let size =
        size.ok_or_else(|| format!("{}: does not exist and no size is given", path.display()))?;
    let size = parse_size(size)?;
    let dev = UringDevice::create_file(path, size)
        .map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
    Ok((Arc::new(dev), true))
}

async fn open_pool(
    section: &PoolSection,
    data_dir: &Path,
    shard_count: usize,
    write_handoff: bool,
    force_import: bool,
) -> Result<Arc<Pool>, String> {
    // The intent-log chains are divided among the shards.
    let mut tunables =
        PoolTunables { shards: shard_count, write_handoff, ..PoolTunables::default() };
    tunables.owner = Some(crate::owner::claim(force_import));
    if let Some(size) = &section.cache_size {
        tunables.cache_bytes = parse_size(size)?;
    }
    if let Some(factor) = section.thin_overcommit_factor {
        tunables.thin_overcommit_factor = factor;
    }
    tunables.scrub_rate_bytes_per_s = crate::config::pool_scrub_bytes_per_s(section)?;
    tunables.scrub_interval = crate::config::pool_scrub_interval(section)?;
    let pool = create_or_import_pool(section, data_dir, tunables).await?;
    // The txg coordinator runs on this shard (shard 0): every 5 s, or sooner past the dirty
    // threshold; every shard syncs the partitions it owns.
    let _syncer = pool.start_syncer();
    // Also on this shard: a scrub the pool was exported in the middle of goes on, and one
    // starts every scrub_interval.
    if let Some(scan) = pool.scrub_status().filter(|s| s.state.is_active()) {
        let next = if scan.state == engine::scrub::ScrubState::Paused {
            "stays paused until `ferritectl pool scrub --resume`"
        } else {
            "goes on where it was"
        };
        log::info!(
            "pool {}: the scrub started {} {next}",
            section.name,
            ferrite_tools::scan::utc(scan.start_unix_s)
        );
    }
    let _scrubs = pool.start_scrub_service();
    Ok(pool)
}

async fn create_or_import_pool(
    section: &PoolSection,
    data_dir: &Path,
    tunables: PoolTunables,
) -> Result<Arc<Pool>, String> {
    let mut data = Vec::new();
    let mut created = Vec::new();
    for dev in &section.devices {
        let (d, new) = open_or_create(&resolve(data_dir, &dev.path), dev.size.as_deref())?;
        data.push(d);
        created.push(new);
    }
    let log = match &section.log_device {
        Some(DeviceSection { path, size }) => {
            let (d, new) = open_or_create(&resolve(data_dir, path), size.as_deref())?;
            created.push(new);
            Some(d)
        }
        None => None,
    };
    if created.iter().all(|c| *c) {
        let options = CreateOptions {
            name: section.name.clone(),
            reserve_percent: section.reserve_percent.unwrap_or(10),
            tunables,
            ..CreateOptions::default()
        };
        let pool = Pool::create(data, log, options)
            .await
            .map_err(|e| format!("pool {}: cannot create: {e}", section.name))?;
        log::info!("created pool {}", section.name);
        return Ok(pool);
    }
    let mut devices = data;
    devices.extend(log);
    let pool = Pool::import(devices, tunables).await.map_err(|e| match e {
        // Already one line naming the pool and its owner.
        PoolError::InUse(line) => line,
        e => format!("pool {}: cannot import: {e}", section.name),
    })?;
    if pool.name() != section.name {
        return Err(format!("pool {}: the devices hold pool {:?}", section.name, pool.name()));
    }
    log::info!("imported pool {} (txg {})", section.name, pool.durable_txg());
    if let Some(rewind) = pool.rewind_report() {
        log::warn!(
            "pool {} REWOUND at import: {rewind} (shown by `ferritectl pool status` \
             until `ferritectl pool clear {}`)",
            section.name,
            section.name
        );
    }
    Ok(pool)
}

/// A LUN's volume, and whether GET LBA STATUS on it reports deallocated blocks (so that a
/// SANITIZE BLOCK ERASE can be seen to have happened, see `LunConfig::block_erase`).
struct BuiltVolume {
    volume: Arc<dyn BlockVolume>,
    tracks_allocation: bool,
}

async fn build_volume(
    lun: &LunSection,
    data_dir: &Path,
    pools: &HashMap<String, Arc<Pool>>,
) -> Result<BuiltVolume, String> {
    let bs = lun.block_size.unwrap_or(512);
    let pbs = lun.physical_block_size.unwrap_or(bs);
    let size = lun.size.as_deref().map(parse_size).transpose()?;
    match lun.backend.as_str() {
        "memory" => {
            let size = size.ok_or("memory LUN needs a size")?;
            let volume = Arc::new(MemoryVolume::new(bs, pbs, size / u64::from(bs)));
            Ok(BuiltVolume { volume, tracks_allocation: true })
        }
        "volume" => {
            let full = lun.volume.as_deref().ok_or("volume LUN needs a volume name")?;
            let (pool_name, name) =
                full.split_once('/').ok_or_else(|| format!("{full}: not POOL/NAME"))?;
            let pool =
                pools.get(pool_name).ok_or_else(|| format!("{full}: no pool {pool_name}"))?;
            // Pool volumes keep holes in their block trees: GET LBA STATUS reports them.
            let built = |v| Ok(BuiltVolume { volume: Arc::new(v), tracks_allocation: true });
            match pool.open_volume(name) {
                Ok(v) => built(v),
                Err(PoolError::NotFound(_)) => {
                    let capacity_bytes =
                        size.ok_or_else(|| format!("{full}: does not exist and no size is given"))?;
                    let options = VolumeOptions {
                        capacity_bytes,
                        logical_block_bytes: bs,
                        thick: lun.thick.unwrap_or(false),
                        volblock_bytes: lun_volblock_bytes(lun)?,
                        ..VolumeOptions::default()
                    };
                    let v = pool
                        .create_volume(name, &options)
                        .await
                        .map_err(|e| format!("{full}: cannot create: {e}"))?;
                    log::info!("created volume {full}");
                    built(v)
                }
                Err(e) => Err(format!("{full}: {e}")),
            }
        }
        _ => {
            let rel = lun.path.clone().ok_or("file LUN needs a path")?;
            let path = resolve(data_dir, &rel);
            let (device, _) = open_or_create(&path, lun.size.as_deref())?;
            // One daemon per backing file, as per pool (an unlockable file system is let be).
            if !device.claim_exclusive().unwrap_or(true) {
                return Err(format!(
                    "{}: LUN {}: another process holds this file",
                    path.display(),
                    lun.id
                ));
            }
            let volume = DeviceVolume::new(device, bs, pbs)
                .map_err(|e| format!("{}: LUN {}: {e}", path.display(), lun.id))?;
            let tracks_allocation = volume.tracks_allocation();
            Ok(BuiltVolume { volume: Arc::new(volume), tracks_allocation })
        }
    }
}

async fn build_state(
    cfg: &Config,
    opts: &Options,
    shard_set: &Arc<ShardSet>,
) -> Result<State, String> {
    let shard_count = shard_set.len();
    let mut pools = HashMap::new();
    for section in &cfg.pools {
        let handoff = cfg.daemon.write_handoff.unwrap_or(false);
        let pool =
            open_pool(section, &opts.data_dir, shard_count, handoff, opts.force_import).await?;
        pools.insert(section.name.clone(), pool);
    }
    let mut luns = Vec::new();
    let mut nodes = Vec::new();
    let mut login_targets = Vec::new();
    let group_tag = cfg.portals.first().and_then(|p| p.group_tag).unwrap_or(1);
    let configured: Vec<(String, u64)> =
        cfg.targets.iter().flat_map(|t| t.luns.iter().map(|l| (t.iqn.clone(), l.id))).collect();
    lun_state::adopt_legacy(&opts.data_dir, &configured)?;
    for target in &cfg.targets {
        lun_state::create_target_dir(&opts.data_dir, &target.iqn)?;
        let mut units = Vec::new();
        for lun in &target.luns {
            let BuiltVolume { volume, tracks_allocation } =
                build_volume(lun, &opts.data_dir, &pools).await?;
            let mut lun_cfg = LunConfig::new(&target.iqn, lun.id);
            lun_cfg.serial.clone_from(&lun.serial);
            lun_cfg.read_only = lun.read_only.unwrap_or(false);
            lun_cfg.sanitize_bytes_per_s = Some(
                lun_sanitize_bytes_per_s(lun).map_err(|e| format!("target {}: {e}", target.iqn))?,
            );
            // Offered where the volume can also deallocate and read zeros (checked again by
            // `sanitize::block_erase_supported` against the geometry).
            lun_cfg.block_erase = tracks_allocation;
            let state = |kind| lun_state::state_path(&opts.data_dir, &target.iqn, lun.id, kind);
            lun_cfg.pr_state_path = Some(state("pr.json"));
            lun_cfg.mode_state_path = Some(state("mode.json"));
            let unit = LogicalUnit::new(lun_cfg, Arc::clone(&volume))
                .map_err(|e| format!("target {} LUN {}: {e}", target.iqn, lun.id))?;
            units.push((lun.id, Arc::new(unit)));
            let pool_volume = (lun.backend == "volume").then(|| lun.volume.clone()).flatten();
            luns.push(Lun { target: target.iqn.clone(), id: lun.id, volume, pool_volume });
        }
        nodes.push(Arc::new(TargetNode {
            name: target.iqn.clone(),
            scsi: Arc::new(ScsiTarget::new(&target.iqn, units)),
        }));
        login_targets.push(TargetConfig {
            name: target.iqn.clone(),
            alias: target.alias.clone(),
            portal_group_tag: group_tag,
            acl: target.acl.clone(),
            chap: target.chap.as_ref().map(chap_of),
        });
    }
    let login = LoginConfig {
        targets: login_targets,
        discovery_chap: cfg.discovery.chap.as_ref().map(chap_of),
        ..LoginConfig::default()
    };
    let mut portals = Vec::new();
    for p in &cfg.portals {
        let address: SocketAddr = crate::config::resolve_address("portal", &p.address)?;
        portals.push(Portal { address, group_tag: p.group_tag.unwrap_or(1) });
    }
    if portals.is_empty() {
        let address = crate::config::DEFAULT_PORTAL.parse().map_err(|_| "bad default portal")?;
        portals.push(Portal { address, group_tag: 1 });
    }
    let keepalive = if opts.keepalive_secs == 0 {
        Keepalive {
            interval: Duration::from_secs(u64::from(u32::MAX)),
            timeout: Duration::from_secs(30),
        }
    } else {
        Keepalive {
            interval: Duration::from_secs(opts.keepalive_secs),
            timeout: Duration::from_secs(opts.keepalive_secs.max(5)),
        }
    };
    let (admission, auth_delay) =
        crate::limits::login_limits(&cfg.daemon, crate::limits::open_files(), portals.len());
    let server = Arc::new(
        Server::new(login, nodes, portals, keepalive, shard_count)
            .with_login_limits(admission, auth_delay),
    );
    Ok(State { server, luns, pools, shard_set: Arc::clone(shard_set) })
}

fn backend_choice(name: Option<&str>) -> BackendChoice {
    match name {
        Some("uring") => BackendChoice::Uring,
        Some("epoll") => BackendChoice::Epoll,
        _ => BackendChoice::Auto,
    }
}

struct Shared {
    cfg: Config,
    opts: Options,
    shard_set: Arc<ShardSet>,
    state: OnceLock<Arc<State>>,
    failed: AtomicBool,
    /// Set by shard 0 once the pools are exported; the other shards serve their inboxes
    /// (sync work, requests for their partitions) until then.
    pools_closed: AtomicBool,
    shutdown: Arc<AtomicBool>,
    access: crate::access::ControlAccess,
    senders: Vec<MailboxSender<Accepted>>,
    receivers: Mutex<Vec<Option<MailboxReceiver<Accepted>>>>,
    ready: Mutex<std::sync::mpsc::Sender<Result<(), String>>>,
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// A one-line description of what could not be set up.
pub fn run(cfg: Config, opts: Options) -> Result<(), String> {
    let access = crate::access::ControlAccess::new(cfg.daemon.rpc_group.as_deref())?;
    crate::access::prepare_data_dir(&opts.data_dir, &access, &opts.rpc_socket)?;

    crate::limits::raise_open_files_and_log();
    // Signals are taken by a dedicated thread; block them everywhere else first.
    let mut sigs = nix::sys::signal::SigSet::empty();
    sigs.add(nix::sys::signal::Signal::SIGINT);
    sigs.add(nix::sys::signal::Signal::SIGTERM);
    sigs.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;

    let shard_count =
        opts.shards.or(cfg.daemon.shards).unwrap_or_else(shard::available_cpus).max(1);
    let metrics_listener = opts.metrics.as_deref().map(metrics::bind).transpose()?;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..shard_count {
        let (tx, rx) = mailbox::<Accepted>(256);
        senders.push(tx);
        receivers.push(Some(rx));
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let reactor_cfg = ReactorConfig {
        backend: backend_choice(opts.backend.as_deref()),
        ..ReactorConfig::default()
    };
    let shared = Arc::new(Shared {
        cfg,
        opts,
        shard_set: ShardSet::new(shard_count),
        state: OnceLock::new(),
        failed: AtomicBool::new(false),
        pools_closed: AtomicBool::new(false),
        shutdown: Arc::clone(&shutdown),
        access,
        senders,
        receivers: Mutex::new(receivers),
        ready: Mutex::new(ready_tx),
    });
    {
        let shutdown = Arc::clone(&shutdown);
        std::thread::Builder::new()
            .name("ferrite-signals".into())
            .spawn(move || {
                let sig = sigs.wait();
                // Act first: shutting down must not depend on the log being writable.
                shutdown.store(true, Ordering::SeqCst);
                if let Ok(sig) = sig {
                    log::info!("{sig:?} received, shutting down");
                }
            })
            .map_err(|e| format!("cannot start signal thread: {e}"))?;
    }
    let main = {
        let shared = Arc::clone(&shared);
        move |shard_id: usize, _reactor: &executor::Reactor| {
            let shared = Arc::clone(&shared);
            async move { shard_main(shard_id, shared).await }
        }
    };
    let handles = shard::start_shards(shard_count, &reactor_cfg, true, main)
        .map_err(|e| format!("cannot start shards: {e}"))?;
    let started = ready_rx.recv_timeout(Duration::from_secs(120));
    let mut result = match started {
        Ok(Ok(())) => match (metrics_listener, shared.state.get()) {
            (Some(listener), Some(state)) => {
                let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let res = metrics::spawn(listener, Arc::clone(state));
                if res.is_ok() {
                    log::info!("metrics on http://{addr}/metrics");
                }
                res
            }
            _ => Ok(()),
        },
        Ok(Err(e)) => Err(e),
        Err(_) => Err("start-up did not finish within 120 s".to_string()),
    };
    if result.is_err() {
        shutdown.store(true, Ordering::SeqCst);
    }
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = result.and(Err(format!("shard failed: {e}"))),
            Err(_) => result = result.and(Err("a shard panicked".into())),
        }
    }
    if result.is_ok() {
        log::info!("stopped");
    }
    result
}

fn report_ready(shared: &Shared, res: Result<(), String>) {
    if let Ok(tx) = shared.ready.lock() {
        let _ = tx.send(res);
    }
}

async fn shard_main(shard_id: usize, shared: Arc<Shared>) {
    let rx =
        shared.receivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[shard_id].take();
    let Some(rx) = rx else { return };
    // Requests and txg sync work for the partitions this shard owns arrive here.
    let server = executor::spawn(Arc::clone(&shared.shard_set).serve(shard_id));
    let mut background = Vec::new();
    if shard_id == 0 {
        let Some(tasks) = start_shard_zero(&shared).await else { return };
        background = tasks;
    }
    // Every shard waits for the state shard 0 builds.
    let state = loop {
        if let Some(s) = shared.state.get() {
            break Arc::clone(s);
        }
        if shared.failed.load(Ordering::SeqCst) || shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        executor::sleep(Duration::from_millis(10)).await;
    };
    state.server.stats.shard(shard_id).register_current_thread();
    let live = serve_connections(shard_id, &shared, &state, &rx).await;
    for task in background {
        task.abort();
    }
    drain_connections(&live).await;
    if shard_id == 0 {
        // Give the other shards time to drain their connections before the final flush.
        executor::sleep(Duration::from_millis(200)).await;
        for lun in &state.luns {
            if let Err(e) = lun.volume.flush().await {
                log::error!("flush of {} LUN {} failed: {e}", lun.target, lun.id);
            }
        }
        shutdown_pools(&state).await;
        let _ = std::fs::remove_file(&shared.opts.rpc_socket);
        shared.pools_closed.store(true, Ordering::SeqCst);
    } else {
        while !shared.pools_closed.load(Ordering::SeqCst) && !shared.failed.load(Ordering::SeqCst) {
            executor::sleep(Duration::from_millis(10)).await;
        }
    }
    server.abort();
}

/// Shard 0's start: builds the state (pools, volumes, targets), listens on every portal and on
/// the control socket, prints the ready lines and starts the accept loops. Returns the
/// background tasks, or `None` (reported to the main thread) when the daemon cannot start.
async fn start_shard_zero(shared: &Arc<Shared>) -> Option<Vec<executor::JoinHandle<()>>> {
    let fail = |e: String| {
        shared.failed.store(true, Ordering::SeqCst);
        report_ready(shared, Err(e));
    };
    let state = match build_state(&shared.cfg, &shared.opts, &shared.shard_set).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            fail(e);
            return None;
        }
    };
    let _ = shared.state.set(Arc::clone(&state));
    let mut listeners = Vec::new();
    for portal in &state.server.portals {
        match ops::tcp_listen(portal.address) {
            Ok(fd) => listeners.push((fd, *portal)),
            Err(e) => {
                fail(format!("portal {}: cannot listen: {e}", portal.address));
                shutdown_pools(&state).await;
                return None;
            }
        }
    }
    let mut background = Vec::new();
    match listen_control(shared) {
        Ok(fd) => background.push(executor::spawn(rpc::serve(
            fd,
            Arc::clone(&state),
            shared.access.clone(),
        ))),
        Err(e) => {
            fail(e);
            shutdown_pools(&state).await;
            return None;
        }
    }
    for portal in &state.server.portals {
        for lun in &state.luns {
            let line = format!("ready iscsi://{}/{}/{}", portal.address, lun.target, lun.id);
            ferrite_tools::logger::stdout_line(&line);
        }
    }
    report_ready(shared, Ok(()));
    for (fd, portal) in listeners {
        let server = Arc::clone(&state.server);
        let shared = Arc::clone(shared);
        background.push(executor::spawn(async move {
            accept_loop(fd, portal, server, &shared.senders).await;
        }));
    }
    Some(background)
}

/// Serves the connections handed to this shard until shutdown; returns the sockets of those
/// still open.
async fn serve_connections(
    shard_id: usize,
    shared: &Shared,
    state: &State,
    rx: &MailboxReceiver<Accepted>,
) -> Rc<RefCell<Vec<RawFd>>> {
    let live: Rc<RefCell<Vec<RawFd>>> = Rc::default();
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        match executor::timeout_after(Duration::from_millis(100), rx.recv()).await {
            Ok(Some((fd, portal, pending))) => {
                let raw = fd.as_raw_fd();
                live.borrow_mut().push(raw);
                let server = Arc::clone(&state.server);
                let live = Rc::clone(&live);
                executor::spawn(async move {
                    target_iscsi::serve::serve_connection(
                        Arc::clone(&server),
                        fd,
                        portal,
                        shard_id,
                        pending,
                    )
                    .await;
                    live.borrow_mut().retain(|f| *f != raw);
                    server.connections_per_shard[shard_id].fetch_sub(1, Ordering::Relaxed);
                });
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    live
}

/// Stops reading new commands on `live` connections; commands in flight finish and send their
/// responses (waits up to 10 s for the connections to close).
async fn drain_connections(live: &RefCell<Vec<RawFd>>) {
    for fd in live.borrow().iter() {
        // SAFETY: shutdown(2) on sockets still owned by live connection tasks of this shard.
        unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !live.borrow().is_empty() && Instant::now() < deadline {
        executor::sleep(Duration::from_millis(10)).await;
    }
}

/// Binds the control socket where no live daemon answers, with its mode and group set.
fn listen_control(shared: &Shared) -> Result<OwnedFd, String> {
    let path = &shared.opts.rpc_socket;
    crate::access::prepare_socket_path(path)?;
    let fd = rpc::listen(path).map_err(|e| format!("{}: cannot listen: {e}", path.display()))?;
    shared.access.secure_socket(path)?;
    Ok(fd)
}

async fn shutdown_pools(state: &State) {
    for (name, pool) in &state.pools {
        if let Err(e) = pool.export().await {
            log::error!("export of pool {name} failed: {e}");
        }
    }
}

async fn accept_loop(
    listener: OwnedFd,
    portal: Portal,
    server: Arc<Server>,
    senders: &[MailboxSender<Accepted>],
) {
    loop {
        match ops::accept(listener.as_raw_fd()).await {
            Ok((fd, peer)) => {
                // Past the pending-login caps: closed at once (counted by the admission).
                let Ok(pending) = server.admission.admit(portal.address, peer) else {
                    drop(fd);
                    continue;
                };
                let _ = ops::set_nodelay(fd.as_raw_fd());
                let shard = server.least_loaded_shard();
                server.connections_per_shard[shard].fetch_add(1, Ordering::Relaxed);
                if senders[shard].send((fd, portal, pending)).await.is_err() {
                    server.connections_per_shard[shard].fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                log::warn!("accept on {} failed: {e}", portal.address);
                executor::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
