//! The running daemon: volumes, targets, shards, portals, signals.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::executor::{self, BackendChoice, ReactorConfig};
use drivers::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use drivers::{ops, shard};
use engine::block_volume::BlockVolume;
use engine::device_volume::DeviceVolume;
use engine::memory_volume::MemoryVolume;
use target_iscsi::chap::{ChapCredentials, ChapSecret};
use target_iscsi::connection::Keepalive;
use target_iscsi::login::{LoginConfig, TargetConfig};
use target_iscsi::scsi::config::LunConfig;
use target_iscsi::scsi::logical_unit::LogicalUnit;
use target_iscsi::scsi::target::ScsiTarget;
use target_iscsi::server::{Portal, Server, TargetNode};

use crate::config::{parse_size, ChapSection, Config, LunSection};

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
}

type Accepted = (OwnedFd, Portal);

/// Volumes created on the main thread, flushed at shutdown.
struct Lun {
    target: String,
    id: u64,
    volume: Arc<dyn BlockVolume>,
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

fn build_volume(lun: &LunSection, data_dir: &Path) -> Result<Arc<dyn BlockVolume>, String> {
    let bs = lun.block_size.unwrap_or(512);
    let pbs = lun.physical_block_size.unwrap_or(bs);
    let size = lun.size.as_deref().map(parse_size).transpose()?;
    match lun.backend.as_str() {
        "memory" => {
            let size = size.ok_or("memory LUN needs a size")?;
            Ok(Arc::new(MemoryVolume::new(bs, pbs, size / u64::from(bs))))
        }
        _ => {
            let rel = lun.path.clone().ok_or("file LUN needs a path")?;
            let path = if rel.is_absolute() { rel } else { data_dir.join(rel) };
            let device = if path.exists() {
                UringDevice::open(&path)
                    .map_err(|e| format!("{}: cannot open: {e}", path.display()))?
            } else {
                let size = size.ok_or_else(|| {
                    format!("{}: does not exist and no size is given", path.display())
                })?;
                UringDevice::create_file(&path, size)
                    .map_err(|e| format!("{}: cannot create: {e}", path.display()))?
            };
            let device: Arc<dyn BlockDevice> = Arc::new(device);
            let volume = DeviceVolume::new(device, bs, pbs)
                .map_err(|e| format!("{}: LUN {}: {e}", path.display(), lun.id))?;
            Ok(Arc::new(volume))
        }
    }
}

fn backend_choice(name: Option<&str>) -> BackendChoice {
    match name {
        Some("uring") => BackendChoice::Uring,
        Some("epoll") => BackendChoice::Epoll,
        _ => BackendChoice::Auto,
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// A one-line description of what could not be set up.
pub fn run(cfg: &Config, opts: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| format!("{}: cannot create data directory: {e}", opts.data_dir.display()))?;

    // Signals are taken by a dedicated thread; block them everywhere else first.
    let mut sigs = nix::sys::signal::SigSet::empty();
    sigs.add(nix::sys::signal::Signal::SIGINT);
    sigs.add(nix::sys::signal::Signal::SIGTERM);
    sigs.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;

    let mut luns = Vec::new();
    let mut nodes = Vec::new();
    let mut login_targets = Vec::new();
    let group_tag = cfg.portals.first().and_then(|p| p.group_tag).unwrap_or(1);
    for target in &cfg.targets {
        let mut units = Vec::new();
        for lun in &target.luns {
            let volume = build_volume(lun, &opts.data_dir)?;
            let mut lun_cfg = LunConfig::new(&target.iqn, lun.id);
            lun_cfg.serial.clone_from(&lun.serial);
            let state = opts.data_dir.join(format!("{}-lun{}", sanitize(&target.iqn), lun.id));
            lun_cfg.pr_state_path = Some(state.with_extension("pr.json"));
            lun_cfg.mode_state_path = Some(state.with_extension("mode.json"));
            let unit = LogicalUnit::new(lun_cfg, Arc::clone(&volume))
                .map_err(|e| format!("target {} LUN {}: {e}", target.iqn, lun.id))?;
            units.push((lun.id, Arc::new(unit)));
            luns.push(Lun { target: target.iqn.clone(), id: lun.id, volume });
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
        let address: SocketAddr =
            p.address.parse().map_err(|_| format!("portal {:?} is not HOST:PORT", p.address))?;
        portals.push(Portal { address, group_tag: p.group_tag.unwrap_or(1) });
    }
    if portals.is_empty() {
        portals.push(Portal {
            address: crate::config::DEFAULT_PORTAL.parse().map_err(|_| "bad default portal")?,
            group_tag: 1,
        });
    }
    let shard_count = opts.shards.unwrap_or_else(shard::available_cpus).max(1);
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
    let server = Arc::new(Server::new(login, nodes, portals.clone(), keepalive, shard_count));

    // One mailbox per shard; shard 0 accepts and is the only sender.
    let mut senders: Vec<MailboxSender<Accepted>> = Vec::new();
    let mut receivers: Vec<Option<MailboxReceiver<Accepted>>> = Vec::new();
    for _ in 0..shard_count {
        let (tx, rx) = mailbox::<Accepted>(256);
        senders.push(tx);
        receivers.push(Some(rx));
    }
    let senders = Arc::new(senders);
    let receivers = Arc::new(Mutex::new(receivers));
    let shutdown = Arc::new(AtomicBool::new(false));
    let luns = Arc::new(luns);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();

    {
        let shutdown = Arc::clone(&shutdown);
        std::thread::Builder::new()
            .name("ferrite-signals".into())
            .spawn(move || {
                if let Ok(sig) = sigs.wait() {
                    eprintln!("ferrited: {sig:?} received, shutting down");
                }
                shutdown.store(true, Ordering::SeqCst);
            })
            .map_err(|e| format!("cannot start signal thread: {e}"))?;
    }

    let reactor_cfg = ReactorConfig {
        backend: backend_choice(opts.backend.as_deref()),
        ..ReactorConfig::default()
    };
    let main = {
        let server = Arc::clone(&server);
        let shutdown = Arc::clone(&shutdown);
        let luns = Arc::clone(&luns);
        let ready_tx = Arc::new(Mutex::new(ready_tx));
        move |shard_id: usize, _reactor: &executor::Reactor| {
            let server = Arc::clone(&server);
            let shutdown = Arc::clone(&shutdown);
            let senders = Arc::clone(&senders);
            let receivers = Arc::clone(&receivers);
            let luns = Arc::clone(&luns);
            let ready_tx = Arc::clone(&ready_tx);
            async move {
                let rx = receivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
                    [shard_id]
                    .take();
                let Some(rx) = rx else { return };
                shard_main(shard_id, server, shutdown, senders, rx, luns, ready_tx).await;
            }
        }
    };
    let handles = shard::start_shards(shard_count, &reactor_cfg, true, main)
        .map_err(|e| format!("cannot start shards: {e}"))?;
    match ready_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            shutdown.store(true, Ordering::SeqCst);
            return Err(e);
        }
        Err(_) => return Err("shards did not start within 30 s".into()),
    }
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("shard failed: {e}")),
            Err(_) => return Err("a shard panicked".into()),
        }
    }
    eprintln!("ferrited: stopped");
    Ok(())
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .collect()
}

async fn shard_main(
    shard_id: usize,
    server: Arc<Server>,
    shutdown: Arc<AtomicBool>,
    senders: Arc<Vec<MailboxSender<Accepted>>>,
    rx: MailboxReceiver<Accepted>,
    luns: Arc<Vec<Lun>>,
    ready_tx: Arc<Mutex<std::sync::mpsc::Sender<Result<(), String>>>>,
) {
    let live: Rc<RefCell<Vec<RawFd>>> = Rc::default();
    let mut acceptors = Vec::new();
    if shard_id == 0 {
        let mut listeners = Vec::new();
        for portal in &server.portals {
            match ops::tcp_listen(portal.address) {
                Ok(fd) => listeners.push((fd, *portal)),
                Err(e) => {
                    let msg = format!("portal {}: cannot listen: {e}", portal.address);
                    let _ = ready_tx.lock().map(|tx| tx.send(Err(msg)));
                    shutdown.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
        for portal in &server.portals {
            for lun in luns.iter() {
                println!("ready iscsi://{}/{}/{}", portal.address, lun.target, lun.id);
            }
        }
        let _ = ready_tx.lock().map(|tx| tx.send(Ok(())));
        for (fd, portal) in listeners {
            let server = Arc::clone(&server);
            let senders = Arc::clone(&senders);
            acceptors.push(executor::spawn(accept_loop(fd, portal, server, senders)));
        }
    }
    loop {
        if shutdown.load(Ordering::SeqCst) {
            break;
        }
        match executor::timeout_after(Duration::from_millis(100), rx.recv()).await {
            Ok(Some((fd, portal))) => {
                let raw = fd.as_raw_fd();
                live.borrow_mut().push(raw);
                let server = Arc::clone(&server);
                let live = Rc::clone(&live);
                executor::spawn(async move {
                    target_iscsi::login_phase::serve_connection(
                        Arc::clone(&server),
                        fd,
                        portal,
                        shard_id,
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
    for a in acceptors {
        a.abort();
    }
    // Stop reading new commands; commands in flight finish and send their responses.
    for fd in live.borrow().iter() {
        // SAFETY: shutdown(2) on sockets still owned by live connection tasks of this shard.
        unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !live.borrow().is_empty() && Instant::now() < deadline {
        executor::sleep(Duration::from_millis(10)).await;
    }
    if shard_id == 0 {
        for lun in luns.iter() {
            if let Err(e) = lun.volume.flush().await {
                eprintln!("ferrited: flush of {} LUN {} failed: {e}", lun.target, lun.id);
            }
        }
    }
}

async fn accept_loop(
    listener: OwnedFd,
    portal: Portal,
    server: Arc<Server>,
    senders: Arc<Vec<MailboxSender<Accepted>>>,
) {
    loop {
        match ops::accept(listener.as_raw_fd()).await {
            Ok((fd, _peer)) => {
                let _ = ops::set_nodelay(fd.as_raw_fd());
                let shard = server.least_loaded_shard();
                server.connections_per_shard[shard].fetch_add(1, Ordering::Relaxed);
                if senders[shard].send((fd, portal)).await.is_err() {
                    server.connections_per_shard[shard].fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                eprintln!("ferrited: accept on {} failed: {e}", portal.address);
                executor::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
