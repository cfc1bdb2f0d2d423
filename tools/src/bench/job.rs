//! The I/O loop of one shard: `iodepth` worker tasks, each with its own pool buffer, issuing
//! I/O through the shard's ring until the stop condition; the reactor batches their
//! submissions into one `io_uring_enter` per turn.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::IoResult;
use drivers::executor;

use super::args::RwMode;
use super::prng::{splitmix64, Xorshift64};
use super::stamp::{check_buffer, stamp_buffer};
use super::target::{ShardIo, Target};
use super::BenchError;
use drivers::histogram::Histogram;

/// When a shard stops issuing I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCondition {
    /// After this long (measured from the common start).
    Runtime(Duration),
    /// After this many I/Os per shard.
    Count(u64),
}

/// What every shard runs.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Pattern.
    pub rw: RwMode,
    /// Percentage of reads (0..=100).
    pub read_percent: u8,
    /// Bytes per I/O.
    pub block_size_bytes: usize,
    /// Workers (I/Os in flight) per shard.
    pub iodepth: u32,
    /// Bytes from offset 0 that I/O may touch (a multiple of the block size).
    pub region_bytes: u64,
    /// Stop condition.
    pub stop: StopCondition,
    /// Stamp writes, check reads.
    pub verify: bool,
    /// Generation written with `verify`.
    pub write_generation: u64,
    /// Generation reads must carry (any when `None`).
    pub expected_generation: Option<u64>,
    /// Seed of the offset generators.
    pub seed: u64,
}

/// Live counters of one shard, read once a second by the progress printer. On its own cache
/// line so shards do not share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardProgress {
    /// I/Os completed.
    pub ios: AtomicU64,
    /// Bytes moved.
    pub bytes: AtomicU64,
    /// Errors seen.
    pub errors: AtomicU64,
}

/// One recorded failure (the first few per shard are kept).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ErrorSample {
    /// Shard that saw it.
    pub shard: usize,
    /// "read" or "write".
    pub op: &'static str,
    /// Offset of the failing block.
    pub offset_bytes: u64,
    /// What went wrong.
    pub message: String,
}

const ERROR_SAMPLES_PER_SHARD: usize = 16;

/// What a shard measured.
#[derive(Debug)]
pub struct ShardResult {
    /// I/Os completed without error, per direction.
    pub ios_read: u64,
    /// As above.
    pub ios_write: u64,
    /// Bytes moved without error, per direction.
    pub bytes_read: u64,
    /// As above.
    pub bytes_write: u64,
    /// I/Os the target failed.
    pub errors_io: u64,
    /// Blocks that failed verification.
    pub errors_verify: u64,
    /// The first failures.
    pub error_samples: Vec<ErrorSample>,
    /// Latency of reads (ns).
    pub latency_read: Histogram,
    /// Latency of writes (ns).
    pub latency_write: Histogram,
    /// When the shard started issuing.
    pub started: Instant,
    /// When its last I/O completed.
    pub finished: Instant,
}

struct ShardState {
    shard: usize,
    config: Arc<JobConfig>,
    progress: Arc<ShardProgress>,
    deadline: Option<Instant>,
    claimed: Cell<u64>,
    stopped: Cell<bool>,
    seq_cursor_bytes: Cell<u64>,
    result: RefCell<ShardResult>,
}

impl ShardState {
    /// Claims the next I/O; false once the shard must stop.
    fn claim(&self) -> bool {
        if self.stopped.get() {
            return false;
        }
        if let StopCondition::Count(limit) = self.config.stop {
            if self.claimed.get() >= limit {
                self.stopped.set(true);
                return false;
            }
        }
        self.claimed.set(self.claimed.get() + 1);
        true
    }

    fn next_seq_offset(&self) -> u64 {
        let offset = self.seq_cursor_bytes.get();
        let next = offset + self.config.block_size_bytes as u64;
        self.seq_cursor_bytes.set(if next >= self.config.region_bytes { 0 } else { next });
        offset
    }

    fn record_error(
        &self,
        result: &mut ShardResult,
        op: &'static str,
        offset_bytes: u64,
        message: String,
    ) {
        if result.error_samples.len() < ERROR_SAMPLES_PER_SHARD {
            eprintln!(
                "ferrite-bench: shard {} {op} error at offset {offset_bytes}: {message}",
                self.shard
            );
            result.error_samples.push(ErrorSample { shard: self.shard, op, offset_bytes, message });
        }
        self.progress.errors.store(result.errors_io + result.errors_verify, Ordering::Relaxed);
    }

    fn complete(
        &self,
        is_read: bool,
        offset_bytes: u64,
        latency_ns: u64,
        res: IoResult<()>,
        buf: &[u8],
        now: Instant,
    ) {
        let mut result = self.result.borrow_mut();
        let op = if is_read { "read" } else { "write" };
        match res {
            Ok(()) => {
                let verified = if is_read && self.config.verify {
                    check_buffer(buf, offset_bytes, self.config.expected_generation)
                } else {
                    Ok(())
                };
                if let Err((at, problem)) = verified {
                    result.errors_verify += 1;
                    self.record_error(&mut result, op, at, format!("verify failed: {problem}"));
                } else if is_read {
                    result.ios_read += 1;
                    result.bytes_read += buf.len() as u64;
                    result.latency_read.record(latency_ns);
                } else {
                    result.ios_write += 1;
                    result.bytes_write += buf.len() as u64;
                    result.latency_write.record(latency_ns);
                }
            }
            Err(err) => {
                result.errors_io += 1;
                self.record_error(&mut result, op, offset_bytes, err.to_string());
            }
        }
        result.finished = now;
        let ios = result.ios_read + result.ios_write;
        // Plain stores of shard-local totals: no atomic read-modify-write on the I/O path.
        self.progress.ios.store(ios, Ordering::Relaxed);
        self.progress.bytes.store(result.bytes_read + result.bytes_write, Ordering::Relaxed);
        if self.deadline.is_some_and(|d| now >= d) {
            self.stopped.set(true);
        }
    }
}

async fn worker<S: ShardIo>(io: Rc<S>, state: Rc<ShardState>, mut buf: IoBuf, seed: u64) {
    let config = Arc::clone(&state.config);
    let block_bytes = config.block_size_bytes as u64;
    let blocks = config.region_bytes / block_bytes;
    let read_percent = u64::from(config.read_percent);
    let mut rng = Xorshift64::new(seed);
    // Write-only without stamps, the same bytes are written every time: a target that keeps
    // written buffers (an engine volume) is handed them shared, as the iSCSI target hands over
    // the buffers it receives into, instead of copying each one back for reuse.
    let shared = (read_percent == 0 && !config.verify && io.keeps_written_buffers())
        .then(|| SharedBuf::new(std::mem::replace(&mut buf, IoBuf::zeroed(0))));
    while state.claim() {
        let is_read = match read_percent {
            100 => true,
            0 => false,
            pct => rng.below(100) < pct,
        };
        let offset_bytes = if config.rw.is_random() {
            rng.below(blocks) * block_bytes
        } else {
            state.next_seq_offset()
        };
        if !is_read && config.verify {
            stamp_buffer(&mut buf, offset_bytes, config.write_generation);
        }
        let start = Instant::now();
        let (res, back) = if is_read {
            io.read(buf, offset_bytes).await
        } else if let Some(shared) = &shared {
            (io.write_shared(shared.clone(), offset_bytes).await, buf)
        } else {
            io.write(buf, offset_bytes).await
        };
        buf = back;
        let now = Instant::now();
        let latency_ns = u64::try_from(now.duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        let bytes: &[u8] = shared.as_deref().unwrap_or(&buf);
        state.complete(is_read, offset_bytes, latency_ns, res, bytes, now);
    }
}

fn fill_random(buf: &mut [u8], seed: u64) {
    let mut state = seed;
    for word in buf.chunks_exact_mut(8) {
        word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
}

/// Runs one shard: attaches the target, waits for every shard at `barrier`, then runs the
/// workers to the stop condition.
///
/// # Errors
/// When the shard cannot attach the target or its buffer pool is too small.
pub async fn run_shard<T: Target>(
    shard: usize,
    target: Arc<T>,
    config: Arc<JobConfig>,
    barrier: Arc<Barrier>,
    progress: Arc<ShardProgress>,
) -> Result<ShardResult, BenchError> {
    // Every shard reaches the barrier, even a failing one, so the others are not stranded.
    let attached = target.attach();
    let pool = executor::buffer_pool();
    let mut buffers = Vec::with_capacity(config.iodepth as usize);
    for _ in 0..config.iodepth {
        match pool.get() {
            Some(mut buf) => {
                buf.set_len(config.block_size_bytes);
                buffers.push(buf);
            }
            None => break,
        }
    }
    barrier.wait();
    let io = Rc::new(attached?);
    if buffers.len() != config.iodepth as usize {
        return Err(BenchError::Usage(format!(
            "shard {shard}: buffer pool holds {} buffers, iodepth needs {}",
            buffers.len(),
            config.iodepth
        )));
    }
    let started = Instant::now();
    let deadline = match config.stop {
        StopCondition::Runtime(runtime) => Some(started + runtime),
        StopCondition::Count(_) => None,
    };
    let state = Rc::new(ShardState {
        shard,
        config: Arc::clone(&config),
        progress,
        deadline,
        claimed: Cell::new(0),
        stopped: Cell::new(false),
        seq_cursor_bytes: Cell::new(0),
        result: RefCell::new(ShardResult {
            ios_read: 0,
            ios_write: 0,
            bytes_read: 0,
            bytes_write: 0,
            errors_io: 0,
            errors_verify: 0,
            error_samples: Vec::new(),
            latency_read: Histogram::new(),
            latency_write: Histogram::new(),
            started,
            finished: started,
        }),
    });
    let mut seed_state = config.seed ^ (shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut handles = Vec::with_capacity(buffers.len());
    for mut buf in buffers {
        let seed = splitmix64(&mut seed_state);
        if config.read_percent < 100 && !config.verify {
            fill_random(&mut buf, seed);
        }
        handles.push(executor::spawn(worker(Rc::clone(&io), Rc::clone(&state), buf, seed)));
    }
    for handle in handles {
        handle.await;
    }
    io.detach().await;
    drop(io);
    let Ok(state) = Rc::try_unwrap(state) else {
        unreachable!("every worker has finished and dropped its state handle")
    };
    Ok(state.result.into_inner())
}
