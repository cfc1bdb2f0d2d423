//! `volume:PATH` and `volume-mem:SIZE`: a pool engine volume driven in-process, on a file or
//! on a memory device (the CPU-bound case, where shard scaling is measured).
//!
//! Opening the target runs a set-up reactor on its own thread: it imports the pool on the file
//! PATH, or creates the file, the pool and one volume (`bench`) when there is none; with
//! `--fill` it writes the whole region once with non-zero data (zero blocks are holes and read
//! without I/O) and commits it; with `--cold` it exports and re-imports the pool so the run
//! starts with an empty cache, and data blocks are not cached during the run (indirect blocks
//! are, as with ZFS `primarycache=metadata`), so every read reaches the device.
//!
//! During the run every shard drives the same [`PoolVolume`] through [`BlockVolume`]; shard 0
//! also runs the pool's txg syncer. When the last shard has finished its I/O, shard 0 exports
//! the pool (a final txg sync, outside the measurement; its duration is printed).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::{IoError, IoResult};
use drivers::executor::{self, BackendChoice, JoinHandle, ReactorConfig};
use drivers::remote::ShardSet;
use drivers::shard;
use engine::block_volume::{BlockVolume, VolumeError};
use engine::units::Lba;
use engine::{CreateOptions, Pool, PoolError, PoolTunables, PoolVolume, VolumeOptions};

use super::prng::splitmix64;
use super::target::{ShardIo, Target, TargetInfo};
use super::BenchError;

/// Name of the volume the benchmark creates and drives.
pub const VOLUME_NAME: &str = "bench";
/// Logical block size of a created volume.
const LOGICAL_BLOCK_BYTES: u32 = 512;
/// Fixed part of the pool file beyond the volume: labels, intent-log regions, and room for
/// the dirty and syncing data of copy-on-write overwrites of a full volume.
const FIXED_OVERHEAD_BYTES: u64 = 704 << 20;
/// Block size and depth of the `--fill` pass.
const FILL_BLOCK_BYTES: usize = 128 * 1024;
const FILL_DEPTH: usize = 8;

/// How to open a `volume:` target.
#[derive(Debug, Clone)]
pub struct VolumeBenchOptions {
    /// Volume size when the pool is created (default: what the file holds).
    pub size_bytes: Option<u64>,
    /// Write the region once before the run.
    pub fill: bool,
    /// Export and re-import before the run; do not cache data blocks.
    pub cold: bool,
    /// Writes are FUA (durable through the intent log when they complete).
    pub fua: bool,
    /// `volblocksize` of a created volume (default 4 KiB); an imported one must match.
    pub volblock_bytes: Option<u32>,
    /// Shards that will drive the volume.
    pub shards: usize,
    /// Hand each write to the shard that owns its partition; off, every shard applies the
    /// writes it issues (txg syncs run on the owners either way).
    pub handoff: bool,
    /// Kernel interface of the set-up reactor.
    pub backend: BackendChoice,
}

/// Bytes of pool file for a volume of `capacity_bytes`: the volume plus its indirect blocks
/// (1/64 at 4 KiB blocks), the pool's 10 % reserve, and the fixed overhead.
#[must_use]
pub fn file_bytes_for(capacity_bytes: u64) -> u64 {
    let needed = capacity_bytes + capacity_bytes / 50 + FIXED_OVERHEAD_BYTES;
    (needed / 9 * 10).next_multiple_of(1 << 20)
}

/// The largest volume [`file_bytes_for`] fits in a file of `file_bytes`.
#[must_use]
pub fn capacity_for_file(file_bytes: u64) -> u64 {
    let usable = (file_bytes / 10 * 9).saturating_sub(FIXED_OVERHEAD_BYTES);
    (usable / 51 * 50) / (1 << 20) * (1 << 20)
}

/// State shared by the shards of a run.
struct RunState {
    shards: usize,
    finished: AtomicUsize,
    /// Set once shard 0 has exported the pool: the others serve their inboxes until then.
    exported: AtomicBool,
    /// The run's shards: txg syncs (and, with hand-off, writes) go to the partition's owner.
    set: Arc<ShardSet>,
}

/// An opened volume target.
pub struct VolumeTarget {
    pool: Arc<Pool>,
    volume: PoolVolume,
    fua: bool,
    info: TargetInfo,
    run: Arc<RunState>,
}

fn pool_err(name: &str, what: &str, err: &PoolError) -> String {
    format!("{name}: {what}: {err}")
}

fn tunables(options: &VolumeBenchOptions) -> PoolTunables {
    PoolTunables {
        shards: options.shards.max(1),
        cache_data_blocks: !options.cold,
        write_handoff: options.handoff,
        ..PoolTunables::default()
    }
}

fn open_device(path: &Path) -> Result<Arc<dyn BlockDevice>, String> {
    let dev =
        UringDevice::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    if !dev.is_direct() {
        eprintln!("ferrite-bench: {} opened without O_DIRECT", path.display());
    }
    Ok(Arc::new(dev))
}

/// Where the pool of a volume target lives.
#[derive(Debug, Clone)]
pub enum VolumeBacking {
    /// A file (or block device), created when missing, imported when it holds the pool.
    File(PathBuf),
    /// A memory device sized for a volume of this many bytes; always a new pool.
    Memory(u64),
}

impl VolumeBacking {
    fn describe(&self) -> String {
        match self {
            VolumeBacking::File(path) => path.display().to_string(),
            VolumeBacking::Memory(size) => format!("volume-mem:{size}"),
        }
    }

    /// The pool's device: the file opened (created first when missing), or a new memory
    /// device with room for the volume.
    fn device(&self, options: &VolumeBenchOptions) -> Result<Arc<dyn BlockDevice>, String> {
        match self {
            VolumeBacking::File(path) => {
                if !path.exists() {
                    let size = options.size_bytes.ok_or_else(|| {
                        format!("{}: does not exist; give --size to create it", path.display())
                    })?;
                    let file_bytes = file_bytes_for(size);
                    UringDevice::create_file(path, file_bytes)
                        .map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
                    preallocate(path, file_bytes)?;
                    eprintln!("ferrite-bench: created {} ({file_bytes} bytes)", path.display());
                }
                open_device(path)
            }
            VolumeBacking::Memory(capacity_bytes) => {
                let device_bytes = file_bytes_for(*capacity_bytes);
                let device = MemoryDevice::new(device_bytes, LOGICAL_BLOCK_BYTES);
                // The run measures the engine, not the kernel faulting in the pages that
                // copy-on-write writes reach for the first time.
                device.allocate_all();
                Ok(Arc::new(device))
            }
        }
    }
}

/// Imports the pool on `device`, or creates the pool and its volume when it holds none. The
/// volume is `capacity_bytes` when given, else as large as the device holds.
async fn create_or_import(
    name: &str,
    device: Arc<dyn BlockDevice>,
    capacity_bytes: Option<u64>,
    options: &VolumeBenchOptions,
) -> Result<(Arc<Pool>, PoolVolume, bool), String> {
    let file_bytes = device.info().size_bytes;
    match Pool::import(vec![Arc::clone(&device)], tunables(options)).await {
        Ok(pool) => {
            let volume = pool
                .open_volume(VOLUME_NAME)
                .map_err(|e| pool_err(name, "no volume 'bench' in the pool", &e))?;
            let has = volume.layout().volblock_bytes;
            if let Some(want) = options.volblock_bytes.filter(|w| *w != has) {
                return Err(format!(
                    "{name}: volume 'bench' has volblocksize {has}, not {want} (remove the file \
                     to create the pool again)"
                ));
            }
            return Ok((pool, volume, false));
        }
        Err(PoolError::NotAPool(_)) => {}
        Err(e) => return Err(pool_err(name, "cannot import the pool", &e)),
    }
    let capacity_bytes = capacity_bytes.unwrap_or_else(|| capacity_for_file(file_bytes));
    if capacity_bytes == 0 || file_bytes < file_bytes_for(capacity_bytes) {
        return Err(format!(
            "{name}: {file_bytes} bytes do not hold a pool with a {capacity_bytes}-byte volume \
             (it needs {} bytes)",
            file_bytes_for(capacity_bytes)
        ));
    }
    let create = CreateOptions {
        name: "bench".into(),
        tunables: tunables(options),
        ..CreateOptions::default()
    };
    let pool = Pool::create(vec![device], None, create)
        .await
        .map_err(|e| pool_err(name, "cannot create a pool", &e))?;
    let defaults = VolumeOptions::default();
    let volume_options = VolumeOptions {
        capacity_bytes,
        logical_block_bytes: LOGICAL_BLOCK_BYTES,
        volblock_bytes: options.volblock_bytes.unwrap_or(defaults.volblock_bytes),
        ..defaults
    };
    let volume = pool
        .create_volume(VOLUME_NAME, &volume_options)
        .await
        .map_err(|e| pool_err(name, "cannot create the volume", &e))?;
    eprintln!(
        "ferrite-bench: created pool and volume '{VOLUME_NAME}' ({capacity_bytes} bytes, \
         volblocksize {})",
        volume_options.volblock_bytes
    );
    Ok((pool, volume, true))
}

fn preallocate(path: &Path, size_bytes: u64) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let len = libc::off_t::try_from(size_bytes).map_err(|_| "file too large".to_string())?;
    // SAFETY: fallocate(2) on a descriptor we own, with no pointers.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        eprintln!("ferrite-bench: {}: fallocate failed; the file stays sparse", path.display());
    }
    Ok(())
}

/// Writes `[0, region_bytes)` once with non-zero data, then commits it.
async fn fill(volume: &PoolVolume, region_bytes: u64) -> Result<(), String> {
    let started = Instant::now();
    let lbs = u64::from(volume.geometry().logical_block_bytes);
    let next = std::cell::Cell::new(0u64);
    let failed = RefCell::new(None::<VolumeError>);
    let worker = |seed: u64| {
        let (next, failed) = (&next, &failed);
        async move {
            let mut state = seed;
            let mut buf = IoBuf::zeroed(FILL_BLOCK_BYTES);
            loop {
                let offset = next.get();
                if offset >= region_bytes || failed.borrow().is_some() {
                    return;
                }
                let len = (region_bytes - offset).min(FILL_BLOCK_BYTES as u64);
                next.set(offset + len);
                for word in buf.chunks_exact_mut(8) {
                    word.copy_from_slice(&(splitmix64(&mut state) | 1).to_le_bytes());
                }
                buf.set_len(usize::try_from(len).unwrap_or(FILL_BLOCK_BYTES));
                let (res, back) = volume.write(Lba::new(offset / lbs), buf, false).await;
                buf = back;
                buf.set_len(FILL_BLOCK_BYTES);
                if let Err(e) = res {
                    *failed.borrow_mut() = Some(e);
                }
            }
        }
    };
    let workers: Vec<_> = (0..FILL_DEPTH as u64).map(|i| worker(0xf111 + i)).collect();
    join_local(workers).await;
    if let Some(e) = failed.into_inner() {
        return Err(format!("fill: write failed: {e}"));
    }
    volume.pool().sync_txg().await.map_err(|e| format!("fill: txg sync failed: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "ferrite-bench: filled {region_bytes} bytes in {secs:.1}s ({:.0} MB/s, committed)",
        region_bytes as f64 / secs / 1e6
    );
    Ok(())
}

/// Polls every future to completion on the current task.
async fn join_local<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut futures {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
}

async fn set_up(
    backing: VolumeBacking,
    options: VolumeBenchOptions,
) -> Result<(Arc<Pool>, PoolVolume), String> {
    let name = backing.describe();
    let device = backing.device(&options)?;
    let capacity = match backing {
        VolumeBacking::File(_) => options.size_bytes,
        VolumeBacking::Memory(size) => Some(size),
    };
    let (mut pool, mut volume, _created) =
        create_or_import(&name, Arc::clone(&device), capacity, &options).await?;
    if options.fill {
        let capacity = volume.geometry().capacity_bytes();
        let region = options.size_bytes.unwrap_or(capacity).min(capacity);
        fill(&volume, region).await?;
    }
    if options.cold {
        pool.export().await.map_err(|e| pool_err(&name, "export", &e))?;
        drop(volume);
        drop(pool);
        let device = match &backing {
            VolumeBacking::File(path) => open_device(path)?,
            VolumeBacking::Memory(_) => device,
        };
        pool = Pool::import(vec![device], tunables(&options))
            .await
            .map_err(|e| pool_err(&name, "cannot re-import the pool", &e))?;
        volume = pool
            .open_volume(VOLUME_NAME)
            .map_err(|e| pool_err(&name, "no volume 'bench' after re-import", &e))?;
        eprintln!("ferrite-bench: exported and re-imported the pool (cold cache)");
    }
    Ok((pool, volume))
}

impl VolumeTarget {
    /// Opens (creating, filling, re-importing as asked) the pool on `backing`.
    ///
    /// # Errors
    /// [`BenchError::Usage`] with the reason when the pool cannot be set up.
    pub fn open(
        backing: &VolumeBacking,
        options: &VolumeBenchOptions,
    ) -> Result<VolumeTarget, BenchError> {
        let config = ReactorConfig {
            shard_id: 0,
            ring_entries: 256,
            backend: options.backend,
            buffer_count: 16,
            buffer_bytes: FILL_BLOCK_BYTES,
            blocking_threads: 16,
        };
        let (backing, opts) = (backing.clone(), options.clone());
        let handles = shard::start_shards(1, &config, false, move |_, _| {
            set_up(backing.clone(), opts.clone())
        })
        .map_err(|source| BenchError::Io { what: "starting the set-up reactor", source })?;
        let mut outcome = None;
        for handle in handles {
            outcome = Some(match handle.join() {
                Ok(Ok(res)) => res.map_err(BenchError::Usage),
                Ok(Err(source)) => Err(BenchError::Io { what: "set-up reactor", source }),
                Err(_) => Err(BenchError::Shard("the set-up thread panicked".into())),
            });
        }
        let (pool, volume) =
            outcome.unwrap_or_else(|| Err(BenchError::Shard("no set-up".into())))?;
        let geometry = volume.geometry();
        Ok(VolumeTarget {
            pool,
            volume,
            fua: options.fua,
            info: TargetInfo {
                size_bytes: geometry.capacity_bytes(),
                logical_block_bytes: geometry.logical_block_bytes,
            },
            run: Arc::new(RunState {
                shards: options.shards,
                finished: AtomicUsize::new(0),
                exported: AtomicBool::new(false),
                set: ShardSet::new(options.shards),
            }),
        })
    }
}

impl Target for VolumeTarget {
    type Shard = VolumeShard;

    fn info(&self) -> TargetInfo {
        self.info
    }

    fn attach(&self) -> Result<VolumeShard, BenchError> {
        let syncer = (executor::current_shard() == 0).then(|| self.pool.start_syncer());
        let server = executor::spawn(Arc::clone(&self.run.set).serve(executor::current_shard()));
        Ok(VolumeShard {
            server: RefCell::new(Some(server)),
            volume: self.volume.clone(),
            fua: self.fua,
            logical_block_bytes: u64::from(self.info.logical_block_bytes),
            syncer: RefCell::new(syncer),
            run: Arc::clone(&self.run),
        })
    }
}

/// A shard's handle on a [`VolumeTarget`].
pub struct VolumeShard {
    volume: PoolVolume,
    fua: bool,
    logical_block_bytes: u64,
    syncer: RefCell<Option<JoinHandle<()>>>,
    /// This shard's inbox server (requests for the partitions it owns).
    server: RefCell<Option<JoinHandle<()>>>,
    run: Arc<RunState>,
}

fn volume_to_io(err: VolumeError) -> IoError {
    match err {
        VolumeError::Io(e) => e,
        VolumeError::Medium { .. } => IoError::Corrupt,
        VolumeError::NoSpace => IoError::NoSpace,
        VolumeError::OutOfRange | VolumeError::BadLength => IoError::InvalidInput(libc::EINVAL),
        VolumeError::ReadOnly => IoError::PermissionDenied(libc::EROFS),
    }
}

impl ShardIo for VolumeShard {
    async fn read(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let (res, buf) =
            self.volume.read(Lba::new(offset_bytes / self.logical_block_bytes), buf).await;
        (res.map_err(volume_to_io), buf)
    }

    async fn write(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let lba = offset_bytes / self.logical_block_bytes;
        let (res, buf) = self.volume.write(Lba::new(lba), buf, self.fua).await;
        (res.map_err(volume_to_io), buf)
    }

    fn keeps_written_buffers(&self) -> bool {
        true
    }

    async fn write_shared(&self, buf: SharedBuf, offset_bytes: u64) -> IoResult<()> {
        let lba = offset_bytes / self.logical_block_bytes;
        self.volume.write_shared(Lba::new(lba), buf, self.fua).await.map_err(volume_to_io)
    }

    async fn detach(&self) {
        self.run.finished.fetch_add(1, Ordering::SeqCst);
        let server = self.server.borrow_mut().take();
        let Some(syncer) = self.syncer.borrow_mut().take() else {
            // Other shards still send this one requests and sync work until the export.
            while !self.run.exported.load(Ordering::SeqCst) {
                executor::sleep(Duration::from_millis(1)).await;
            }
            if let Some(server) = server {
                server.abort();
            }
            return;
        };
        // Shard 0 keeps its reactor (and the syncer) running until every shard is done.
        while self.run.finished.load(Ordering::SeqCst) < self.run.shards {
            executor::sleep(Duration::from_millis(1)).await;
        }
        let started = Instant::now();
        let pool = self.volume.pool();
        let dirty = pool.stats.throttled_writes.load(Ordering::Relaxed);
        let cache: Vec<String> = pool
            .cache()
            .part_stats()
            .iter()
            .map(|c| format!("{}/{}", c.hits, c.hits + c.misses))
            .collect();
        match pool.export().await {
            Ok(()) => eprintln!(
                "ferrite-bench: exported the pool in {:.2}s after the run (txgs {}, throttled \
                 writes {dirty}, log commits {}, cache hits per shard {})",
                started.elapsed().as_secs_f64(),
                pool.stats.txgs.load(Ordering::Relaxed),
                pool.stats.log_commits.load(Ordering::Relaxed),
                cache.join(" "),
            ),
            Err(e) => eprintln!("ferrite-bench: export after the run failed: {e}"),
        }
        self.run.exported.store(true, Ordering::SeqCst);
        syncer.await;
        if let Some(server) = server {
            server.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_capacity_sizes_agree() {
        for capacity in [1u64 << 30, 2 << 30, 8 << 30] {
            let file = file_bytes_for(capacity);
            assert!(file > capacity);
            let back = capacity_for_file(file);
            assert!(back >= capacity - (64 << 20) && back <= capacity + (64 << 20), "{back}");
            assert!(file_bytes_for(back) <= file);
        }
    }
}
