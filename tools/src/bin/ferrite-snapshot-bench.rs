//! ferrite-snapshot-bench: the cost of many snapshots of one pool volume, driven in-process on
//! one reactor (benches/snapshots.sh runs it).
//!
//! ```text
//! ferrite-snapshot-bench --file /var/tmp/snap.img --snapshots 65535
//! ```
//! It creates a pool on FILE (replacing it), and beside it a pool on FILE.none and one on
//! FILE.two, each with one 1 GiB volume; writes the volumes' first 64 MiB and overwrites them
//! at random for `--seconds` (a warm-up); takes two snapshots of FILE.two's volume (the
//! first keeps the warm-up's blocks, as FILE's first 65,534 do); then:
//! 1. takes `--snapshots` snapshots on FILE, `--batch` per txg, with one 4K random write
//!    before each batch so that the snapshots differ (create rate), then one more snapshot
//!    alone (the cost of a single create at that count);
//! 2. lists them as `snapshot_list` does (figures, JSON built in slices, serialised) while a
//!    reader on the same reactor issues 4K random reads one at a time: the listing's time and
//!    the worst read latency seen during it;
//! 3. `--rounds` rounds of 4K random writes (16 in flight), `--seconds` on each of the three
//!    pools in rotating order, the newest snapshot of a pool taken again before its phase:
//!    the medians of the rounds' IOPS ratios against the pool without snapshots and the pool
//!    with two (the other two pools are then exported and removed);
//! 4. exports and imports the pool (import time);
//! 5. destroys one snapshot alone, then every other one, `--destroy-batch` per txg.
//!
//! With `--keep` the pool is exported again before step 5 and left on FILE, with the
//! snapshots (the script then lists them through ferrited, and `--destroy-existing` does
//! step 5 on it). The last line is
//! `snapshots n=… list_s=… import_s=… max_io_stall_ms=… write_iops_ratio=…`.

/// The allocator ferrited runs with (see ferrited's main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::cell::Cell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use drivers::blockdev::uring::UringDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::executor::{spawn, yield_now, JoinHandle};
use engine::block_volume::BlockVolume;
use engine::units::Lba;
use engine::{CreateOptions, Pool, PoolTunables, PoolVolume, VolumeOptions};
use serde_json::json;

/// Volume size.
const VOLUME_BYTES: u64 = 1 << 30;
/// Bytes written before the measurements (the reader's range).
const PREFILL_BYTES: u64 = 64 << 20;
/// 4K writes in flight in the IOPS phases.
const DEPTH: usize = 16;
/// Pool file size.
const POOL_FILE_BYTES: u64 = 6 << 30;

#[derive(Debug, Parser)]
#[command(name = "ferrite-snapshot-bench", about = "Many snapshots of one pool volume")]
struct Args {
    /// Pool file (created or replaced).
    #[arg(long)]
    file: PathBuf,
    /// Snapshots to take.
    #[arg(long, default_value_t = 65_535)]
    snapshots: usize,
    /// Snapshots per txg while creating.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Snapshots per txg while destroying.
    #[arg(long, default_value_t = 1024)]
    destroy_batch: usize,
    /// Seconds of each 4K random-write phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of write phases, one on each pool: with the snapshots, without any, with two.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Leave the pool, with its snapshots, on FILE (no destroy phase).
    #[arg(long)]
    keep: bool,
    /// Only import FILE (left by `--keep`) and destroy every snapshot.
    #[arg(long)]
    destroy_existing: bool,
}

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn block(seed: u64) -> IoBuf {
    let data: Vec<u8> =
        (0..4096u64).map(|i| (seed.wrapping_mul(31).wrapping_add(i) % 251) as u8).collect();
    IoBuf::from_slice(&data)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// 4K random writes over the whole volume for `seconds`, `DEPTH` in flight: IOPS.
async fn write_iops(vol: &PoolVolume, seconds: u64, seed: u64) -> Result<f64, String> {
    let blocks = VOLUME_BYTES / 4096;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let done = Rc::new(Cell::new(0u64));
    let mut workers = Vec::new();
    for w in 0..DEPTH as u64 {
        let (v, done) = (vol.clone(), Rc::clone(&done));
        workers.push(spawn(async move {
            let mut rng = Rng(((seed << 8 | w) * 0x9e37_79b9) | 1);
            let mut buf = block(w);
            while Instant::now() < deadline {
                let lba = rng.below(blocks) * 8;
                let (res, back) = v.write(Lba::new(lba), buf, false).await;
                buf = back;
                res.map_err(|e| format!("write: {e:?}"))?;
                done.set(done.get() + 1);
            }
            Ok::<(), String>(())
        }));
    }
    let start = Instant::now();
    for w in workers {
        w.await?;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(done.get() as f64 / start.elapsed().as_secs_f64())
}

/// Reply entries made or serialised between two yields, as in ferrited's rpc.rs (about a
/// millisecond of work).
const LIST_SLICE: usize = 256;

/// What `snapshot_list` does for one volume (ferrited's rpc.rs): figures computed in slices
/// (`snapshot_space_list_in_slices`), the reply's entries made, serialised and dropped in
/// slices, with yields between them. Returns the reply's length in bytes.
async fn list_like_rpc(pool: &Pool, volume: &str) -> Result<usize, String> {
    let snaps = pool.snapshot_space_list_in_slices(volume).await.map_err(err)?;
    yield_now().await;
    let mut out = Vec::with_capacity(snaps.len());
    for (n, s) in snaps.into_iter().enumerate() {
        out.push(json!({"name": format!("bench/{}", s.name), "volume": "bench/v", "destroy_frees_bytes": s.destroy_frees_bytes}));
        if n % LIST_SLICE == LIST_SLICE - 1 {
            yield_now().await;
        }
    }
    let mut bytes = Vec::with_capacity(out.len() * 96);
    for (n, item) in out.into_iter().enumerate() {
        serde_json::to_writer(&mut bytes, &item).map_err(err)?;
        drop(item);
        if n % LIST_SLICE == LIST_SLICE - 1 {
            yield_now().await;
        }
    }
    Ok(bytes.len())
}

/// Runs on the reactor until `stop`, yielding at once each time it runs, and keeps in
/// `longest` the most thread CPU time that passed between two of its turns: the longest
/// stretch any other task (the listing) held the reactor, whatever else the machine runs.
async fn longest_turn(stop: Rc<Cell<bool>>, longest: Rc<Cell<Duration>>) {
    let mut last = thread_cpu();
    while !stop.get() {
        yield_now().await;
        let now = thread_cpu();
        longest.set(longest.get().max(now.saturating_sub(last)));
        last = now;
    }
}

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Runs `list_like_rpc` while a reader issues 4K reads one at a time: (list seconds, worst
/// read latency in ms during the listing, worst before it, longest CPU slice of the listing).
async fn list_with_reader(pool: &Pool, vol: &PoolVolume) -> Result<(f64, f64, f64, f64), String> {
    let stop = Rc::new(Cell::new(false));
    let worst = Rc::new(Cell::new(Duration::ZERO));
    let reader = {
        let (v, stop, worst) = (vol.clone(), Rc::clone(&stop), Rc::clone(&worst));
        spawn(async move {
            let mut rng = Rng(0x5eed);
            while !stop.get() {
                let lba = rng.below(PREFILL_BYTES / 4096) * 8;
                let t = Instant::now();
                let (res, _) = v.read(Lba::new(lba), IoBuf::zeroed(4096)).await;
                res.map_err(|e| format!("read: {e:?}"))?;
                worst.set(worst.get().max(t.elapsed()));
                yield_now().await;
            }
            Ok::<(), String>(())
        })
    };
    drivers::executor::sleep(Duration::from_millis(500)).await;
    let before = worst.replace(Duration::ZERO);
    let (listed, longest) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(Duration::ZERO)));
    let ticker = spawn(longest_turn(Rc::clone(&listed), Rc::clone(&longest)));
    let start = Instant::now();
    let bytes = list_like_rpc(pool, "v").await?;
    let list_s = start.elapsed().as_secs_f64();
    listed.set(true);
    ticker.await;
    let slice_ms = longest.get().as_secs_f64() * 1e3;
    // Reads that were waiting when the listing ended complete now.
    drivers::executor::sleep(Duration::from_millis(50)).await;
    stop.set(true);
    reader.await?;
    eprintln!("list: {bytes} bytes of reply");
    Ok((list_s, worst.get().as_secs_f64() * 1e3, before.as_secs_f64() * 1e3, slice_ms))
}

async fn open_pool(file: &PathBuf, create: bool) -> Result<Arc<Pool>, String> {
    let tunables = PoolTunables::default();
    if create {
        let _ = std::fs::remove_file(file);
        let dev: Arc<dyn BlockDevice> = Arc::new(
            UringDevice::create_file(file, POOL_FILE_BYTES)
                .map_err(|e| format!("{}: {e}", file.display()))?,
        );
        let options = CreateOptions { name: "bench".into(), tunables, ..CreateOptions::default() };
        Pool::create(vec![dev], None, options).await.map_err(err)
    } else {
        let dev: Arc<dyn BlockDevice> =
            Arc::new(UringDevice::open(file).map_err(|e| format!("{}: {e}", file.display()))?);
        Pool::import(vec![dev], tunables).await.map_err(err)
    }
}

/// Creates a pool on `file` with volume `v`, writes its first `PREFILL_BYTES` and runs one
/// warm-up write phase, so that every measured phase overwrites blocks written before.
async fn prepared_pool(file: &PathBuf, seconds: u64) -> Result<(Arc<Pool>, PoolVolume), String> {
    let pool = open_pool(file, true).await?;
    let vol = pool
        .create_volume(
            "v",
            &VolumeOptions { capacity_bytes: VOLUME_BYTES, ..VolumeOptions::default() },
        )
        .await
        .map_err(err)?;
    for i in 0..PREFILL_BYTES / (1 << 20) {
        let (res, _) =
            vol.write(Lba::new(i * 2048), IoBuf::from_slice(&vec![7u8; 1 << 20]), false).await;
        res.map_err(|e| format!("prefill: {e:?}"))?;
    }
    pool.sync_txg().await.map_err(err)?;
    write_iops(&vol, seconds, 3).await?;
    pool.sync_txg().await.map_err(err)?;
    Ok((pool, vol))
}

/// The median of `v` (the upper middle one for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One pool of the write rounds: its volume, and the snapshot taken again before each of its
/// phases (none for the baseline without snapshots).
struct Contender<'a> {
    pool: &'a Pool,
    vol: &'a PoolVolume,
    retake: Option<String>,
}

impl Contender<'_> {
    /// One write phase: the snapshot taken again first (so that the phase starts right after
    /// a snapshot, as in production: the first overwrite of each block then keeps the old
    /// one), then 4K random writes for `seconds`. Returns the IOPS.
    async fn phase(&self, seconds: u64, seed: u64) -> Result<f64, String> {
        if let Some(name) = &self.retake {
            self.pool.destroy_snapshot(&format!("v@{name}")).await.map_err(err)?;
            self.pool.snapshot("v", name).await.map_err(err)?;
            self.pool.sync_txg().await.map_err(err)?;
        }
        let iops = write_iops(self.vol, seconds, seed).await?;
        self.pool.sync_txg().await.map_err(err)?;
        Ok(iops)
    }
}

/// Write IOPS of the pool with the snapshots (`many`) against a pool without any (`none`)
/// and a pool with two (`two`: one keeps the same blocks as `many`'s older snapshots, the
/// other is taken again before each phase as `many`'s newest), in rounds of one phase each;
/// the order rotates from round to round, so that a drift of the machine falls on all
/// three. Returns the medians of the rounds' ratios many/none and many/two.
#[allow(clippy::cast_precision_loss)]
async fn write_rounds(
    args: &Args,
    many: &Contender<'_>,
    none: &Contender<'_>,
    two: &Contender<'_>,
) -> Result<(f64, f64), String> {
    let (mut vs_none, mut vs_two) = (Vec::new(), Vec::new());
    let mut iops: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let contenders = [many, none, two];
    for round in 0..args.rounds.max(1) {
        let mut got = [0.0; 3];
        for k in 0..3 {
            let who = (round + k) % 3;
            let seed = 10 + 3 * round as u64 + who as u64;
            got[who] = contenders[who].phase(args.seconds, seed).await?;
        }
        eprintln!(
            "round {round}: write IOPS with {} snapshots {:.0}, with none {:.0}, with two {:.0}: \
             {:.3} and {:.3}",
            args.snapshots,
            got[0],
            got[1],
            got[2],
            got[0] / got[1],
            got[0] / got[2]
        );
        vs_none.push(got[0] / got[1]);
        vs_two.push(got[0] / got[2]);
        for (all, this) in iops.iter_mut().zip(got) {
            all.push(this);
        }
    }
    let [m, z, o] = iops.map(median);
    eprintln!(
        "write IOPS, median of {} rounds: with the snapshots {m:.0}, with none {z:.0}, with two \
         {o:.0}",
        vs_none.len()
    );
    Ok((median(vs_none), median(vs_two)))
}

/// A pool of the bench with its volume `v` and its syncer.
struct Bench {
    pool: Arc<Pool>,
    vol: PoolVolume,
    syncer: JoinHandle<()>,
}

impl Bench {
    /// [`prepared_pool`] on `file`, its syncer started.
    async fn prepare(file: &PathBuf, seconds: u64) -> Result<Bench, String> {
        let (pool, vol) = prepared_pool(file, seconds).await?;
        let syncer = pool.start_syncer();
        Ok(Bench { pool, vol, syncer })
    }

    /// Exports the pool and waits for its syncer.
    async fn export(self) -> Result<(), String> {
        drop(self.vol);
        self.pool.export().await.map_err(err)?;
        self.syncer.await;
        Ok(())
    }
}

/// Step 1: `n` snapshots of `vol`, `batch` per txg with a 4K random write before each batch,
/// then one more alone (destroyed again). Returns the seconds the `n` took.
#[allow(clippy::cast_precision_loss)]
async fn create_snapshots(many: &Bench, n: usize, batch: usize) -> Result<f64, String> {
    let (pool, vol) = (&many.pool, &many.vol);
    let mut rng = Rng(0xc0ffee);
    let start = Instant::now();
    let mut taken = 0;
    while taken < n {
        let (res, _) = vol
            .write(Lba::new(rng.below(VOLUME_BYTES / 4096) * 8), block(taken as u64), false)
            .await;
        res.map_err(|e| format!("write: {e:?}"))?;
        let names: Vec<String> =
            (taken..n.min(taken + batch.max(1))).map(|i| format!("s{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        pool.snapshot_many("v", &refs).await.map_err(err)?;
        taken += names.len();
        if taken % 8192 < names.len() {
            eprintln!("created {taken} snapshots in {:.1} s", start.elapsed().as_secs_f64());
        }
    }
    let create_s = start.elapsed().as_secs_f64();
    let one = Instant::now();
    pool.snapshot("v", "one-more").await.map_err(err)?;
    let create_one_ms = one.elapsed().as_secs_f64() * 1e3;
    pool.destroy_snapshot("v@one-more").await.map_err(err)?;
    eprintln!(
        "created {n} snapshots in {create_s:.1} s ({:.0}/s, {batch} per txg); one more alone: {create_one_ms:.1} ms",
        n as f64 / create_s,
    );
    Ok(create_s)
}

/// Step 3: the write rounds of `many` against `none` and `two` (see [`write_rounds`]), after
/// which `none` and `two` are exported.
async fn compare_writes(
    args: &Args,
    many: &Bench,
    none: Bench,
    two: Bench,
) -> Result<(f64, f64), String> {
    let ratios = write_rounds(
        args,
        &Contender {
            pool: &many.pool,
            vol: &many.vol,
            retake: Some(format!("s{}", args.snapshots - 1)),
        },
        &Contender { pool: &none.pool, vol: &none.vol, retake: None },
        &Contender { pool: &two.pool, vol: &two.vol, retake: Some("newest".into()) },
    )
    .await?;
    none.export().await?;
    two.export().await?;
    Ok(ratios)
}

/// Step 4: exports `many` and imports it again, then removes `others` (see below). Returns
/// the imported pool and the import's seconds.
async fn reimport(
    file: &PathBuf,
    many: Bench,
    n: usize,
    others: [PathBuf; 2],
) -> Result<(Arc<Pool>, f64), String> {
    many.export().await?;
    let start = Instant::now();
    let pool = open_pool(file, false).await?;
    let import_s = start.elapsed().as_secs_f64();
    // Only now: removing two 6 GiB files makes the file system discard their blocks, and
    // reads of the pool file queued behind that would be counted as import time.
    for file in others {
        let _ = std::fs::remove_file(&file);
    }
    let count = pool.snapshots("v").map_err(err)?.len();
    eprintln!("import: {import_s:.2} s, {count} snapshots");
    if count != n {
        return Err(format!("{count} snapshots after import, {n} taken"));
    }
    Ok((pool, import_s))
}

#[allow(clippy::cast_precision_loss)]
async fn run(args: &Args) -> Result<String, String> {
    let n = args.snapshots;
    if n == 0 {
        return Err("--snapshots must be at least 1".into());
    }
    let beside = |suffix: &str| {
        args.file.with_file_name(format!(
            "{}.{suffix}",
            args.file.file_name().map_or("pool".into(), |f| f.to_string_lossy())
        ))
    };
    let (none_file, two_file) = (beside("none"), beside("two"));
    let many = Bench::prepare(&args.file, args.seconds).await?;
    let none = Bench::prepare(&none_file, args.seconds).await?;
    let two = Bench::prepare(&two_file, args.seconds).await?;
    two.pool.snapshot("v", "old").await.map_err(err)?;
    two.pool.snapshot("v", "newest").await.map_err(err)?;

    let create_s = create_snapshots(&many, n, args.batch).await?;
    let (list_s, stall_ms, quiet_ms, slice_ms) = list_with_reader(&many.pool, &many.vol).await?;
    eprintln!(
        "snapshot list: {list_s:.3} s; worst 4K read during it {stall_ms:.2} ms (before it \
         {quiet_ms:.2} ms); longest CPU slice of the listing {slice_ms:.2} ms"
    );
    let (ratio, ratio_two) = compare_writes(args, &many, none, two).await?;
    let (pool, import_s) = reimport(&args.file, many, n, [none_file, two_file]).await?;
    let syncer = pool.start_syncer();

    let mut destroy_note = String::new();
    if !args.keep {
        let destroy_s = destroy_all(&pool, args.destroy_batch).await?;
        destroy_note = format!(" destroy_all_s={destroy_s:.2}");
    }
    pool.export().await.map_err(err)?;
    syncer.await;
    if !args.keep {
        let _ = std::fs::remove_file(&args.file);
    }
    Ok(format!(
        "snapshots n={n} create_per_s={:.0} list_s={list_s:.3} import_s={import_s:.2}{destroy_note} \
         list_slice_cpu_ms={slice_ms:.2} write_iops_ratio_vs_two={ratio_two:.3} \
         max_io_stall_ms={stall_ms:.2} write_iops_ratio={ratio:.3}",
        n as f64 / create_s,
    ))
}

/// Destroys one snapshot from the middle alone, then every other one, `--destroy-batch` per
/// txg: the seconds the latter took.
async fn destroy_all(pool: &Pool, batch: usize) -> Result<f64, String> {
    let batch = batch.max(1);
    let names = pool.snapshots("v").map_err(err)?;
    let n = names.len();
    if n == 0 {
        return Ok(0.0);
    }
    let one = Instant::now();
    pool.destroy_snapshot(&names[n / 2]).await.map_err(err)?;
    let destroy_one_ms = one.elapsed().as_secs_f64() * 1e3;
    let rest: Vec<&str> =
        names.iter().enumerate().filter(|(i, _)| *i != n / 2).map(|(_, s)| s.as_str()).collect();
    let start = Instant::now();
    for chunk in rest.chunks(batch) {
        pool.destroy_snapshots(chunk).await.map_err(err)?;
    }
    let destroy_s = start.elapsed().as_secs_f64();
    if !pool.snapshots("v").map_err(err)?.is_empty() {
        return Err("snapshots left after destroying all".into());
    }
    eprintln!(
        "destroy: one alone {destroy_one_ms:.1} ms; the other {} in {destroy_s:.1} s ({batch} per txg)",
        n - 1
    );
    Ok(destroy_s)
}

/// `--destroy-existing`: imports FILE, destroys every snapshot of `v`, removes FILE.
async fn destroy_existing(args: &Args) -> Result<String, String> {
    let pool = open_pool(&args.file, false).await?;
    let syncer = pool.start_syncer();
    let n = pool.snapshots("v").map_err(err)?.len();
    let destroy_s = destroy_all(&pool, args.destroy_batch).await?;
    pool.export().await.map_err(err)?;
    syncer.await;
    let _ = std::fs::remove_file(&args.file);
    Ok(format!("destroyed n={n} destroy_all_s={destroy_s:.2}"))
}

fn main() -> ExitCode {
    const PROGRAM: &str = "ferrite-snapshot-bench";
    ferrite_tools::logger::init(PROGRAM);
    let args = Args::parse();
    let Some(reactor) = ferrite_tools::cli::reactor(PROGRAM) else { return ExitCode::from(1) };
    let result = if args.destroy_existing {
        reactor.block_on(destroy_existing(&args))
    } else {
        reactor.block_on(run(&args))
    };
    ferrite_tools::cli::finish(PROGRAM, result)
}
