//! I/O statistics per LUN, per shard and per connection.
//!
//! Every counter has exactly one writer thread: a connection's counters are written by the
//! shard it lives on, a shard's by that shard, and a LUN keeps one set of counters per shard
//! (each shard writes its own). Writers therefore update with a relaxed load and store (no
//! locked read-modify-write, no cache line shared between shards on the I/O path); readers
//! (the control socket, the metrics endpoint) load every set and add them up. The registry's
//! mutex is taken only when a connection starts or ends and when statistics are read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use drivers::histogram::{bucket_of, bucket_range, quantile_bucket};

use crate::scsi::cdb::opcode;

/// Latency buckets: bucket `i` holds latencies below `2^i` ns (bucket 0: 0 ns); the last one
/// also holds everything longer (2^39 ns is about 9 minutes).
pub const LATENCY_BUCKETS: usize = 40;

/// A counter with a single writer thread (see the module documentation).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`; only the owning thread calls this.
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Subtracts `n` (gauges); only the owning thread calls this.
    pub fn sub(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_sub(n), Ordering::Relaxed);
    }

    /// Current value (any thread).
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The log2 bucket of a latency: the shared log-linear bucketing
/// ([`drivers::histogram::bucket_of`]) at one bit of precision, the longest ones in the last.
#[must_use]
pub fn latency_bucket(latency: Duration) -> usize {
    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    bucket_of::<1>(ns).min(LATENCY_BUCKETS - 1)
}

/// Upper bound of bucket `i` in nanoseconds (`2^i`).
#[must_use]
pub fn bucket_upper_ns(i: usize) -> u64 {
    bucket_range::<1>(i.min(63)).1.saturating_add(1)
}

/// Kind of a SCSI command for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// READ (6/10/12/16).
    Read,
    /// WRITE (6/10/12/16), WRITE AND VERIFY, COMPARE AND WRITE.
    Write,
    /// Everything else.
    Other,
}

impl IoKind {
    /// Classifies a command by its operation code.
    #[must_use]
    pub fn of_cdb(cdb: &[u8]) -> IoKind {
        match cdb.first().copied() {
            Some(opcode::READ_6 | opcode::READ_10 | opcode::READ_12 | opcode::READ_16) => {
                IoKind::Read
            }
            Some(
                opcode::WRITE_6
                | opcode::WRITE_10
                | opcode::WRITE_12
                | opcode::WRITE_16
                | opcode::WRITE_AND_VERIFY_10
                | opcode::WRITE_AND_VERIFY_12
                | opcode::WRITE_AND_VERIFY_16
                | opcode::COMPARE_AND_WRITE,
            ) => IoKind::Write,
            _ => IoKind::Other,
        }
    }
}

/// Counters of one direction.
#[derive(Debug)]
pub struct DirectionCounters {
    /// Commands completed.
    pub ops: Counter,
    /// Payload bytes moved.
    pub bytes: Counter,
    /// Completion latency histogram (from the command PDU to the queued response).
    pub latency: [Counter; LATENCY_BUCKETS],
    /// Sum of the latencies, in nanoseconds.
    pub latency_sum_ns: Counter,
}

impl Default for DirectionCounters {
    fn default() -> Self {
        DirectionCounters {
            ops: Counter::default(),
            bytes: Counter::default(),
            latency: std::array::from_fn(|_| Counter::default()),
            latency_sum_ns: Counter::default(),
        }
    }
}

impl DirectionCounters {
    fn record(&self, bytes: u64, latency: Duration) {
        self.ops.add(1);
        self.bytes.add(bytes);
        self.latency[latency_bucket(latency)].add(1);
        self.latency_sum_ns.add(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    fn snapshot(&self) -> DirectionSnapshot {
        DirectionSnapshot {
            ops: self.ops.get(),
            bytes: self.bytes.get(),
            latency: std::array::from_fn(|i| self.latency[i].get()),
            latency_sum_ns: self.latency_sum_ns.get(),
        }
    }
}

/// One writer's I/O counters. Aligned so that two shards' sets never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct IoCounters {
    /// Reads.
    pub read: DirectionCounters,
    /// Writes.
    pub write: DirectionCounters,
    /// Other commands completed.
    pub other_ops: Counter,
    /// Commands that ended with CHECK CONDITION or another non-GOOD status.
    pub errors: Counter,
    /// Commands received and not yet answered.
    pub queue_depth: Counter,
}

impl IoCounters {
    /// Records a completed command.
    pub fn record(&self, kind: IoKind, bytes: u64, latency: Duration, good: bool) {
        match kind {
            IoKind::Read => self.read.record(bytes, latency),
            IoKind::Write => self.write.record(bytes, latency),
            IoKind::Other => self.other_ops.add(1),
        }
        if !good {
            self.errors.add(1);
        }
    }

    /// The current values.
    #[must_use]
    pub fn snapshot(&self) -> IoSnapshot {
        IoSnapshot {
            read: self.read.snapshot(),
            write: self.write.snapshot(),
            other_ops: self.other_ops.get(),
            errors: self.errors.get(),
            queue_depth: self.queue_depth.get(),
        }
    }
}

/// Values of one direction at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectionSnapshot {
    /// Commands completed.
    pub ops: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Latency histogram (see [`LATENCY_BUCKETS`]).
    pub latency: [u64; LATENCY_BUCKETS],
    /// Sum of latencies in nanoseconds.
    pub latency_sum_ns: u64,
}

impl Default for DirectionSnapshot {
    fn default() -> Self {
        DirectionSnapshot { ops: 0, bytes: 0, latency: [0; LATENCY_BUCKETS], latency_sum_ns: 0 }
    }
}

impl DirectionSnapshot {
    fn add(&mut self, other: &DirectionSnapshot) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
        self.latency_sum_ns += other.latency_sum_ns;
    }

    /// The upper bound (ns) of the bucket holding quantile `q` (0..=1); None without samples.
    #[must_use]
    pub fn latency_quantile_ns(&self, q: f64) -> Option<u64> {
        quantile_bucket(&self.latency, q).map(bucket_upper_ns)
    }
}

/// Values of a set of counters at one moment (possibly the sum of several sets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoSnapshot {
    /// Reads.
    pub read: DirectionSnapshot,
    /// Writes.
    pub write: DirectionSnapshot,
    /// Other commands.
    pub other_ops: u64,
    /// Commands with a non-GOOD status.
    pub errors: u64,
    /// Commands in flight.
    pub queue_depth: u64,
}

impl IoSnapshot {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &IoSnapshot) {
        self.read.add(&other.read);
        self.write.add(&other.write);
        self.other_ops += other.other_ops;
        self.errors += other.errors;
        self.queue_depth += other.queue_depth;
    }
}

/// A LUN's counters, one set per shard.
#[derive(Debug)]
pub struct LunStats {
    /// Target IQN.
    pub target: String,
    /// LUN number.
    pub lun: u64,
    per_shard: Box<[IoCounters]>,
}

impl LunStats {
    /// The set the calling shard `shard` writes.
    #[must_use]
    pub fn for_shard(&self, shard: usize) -> &IoCounters {
        &self.per_shard[shard.min(self.per_shard.len() - 1)]
    }

    /// Sum over the shards.
    #[must_use]
    pub fn snapshot(&self) -> IoSnapshot {
        let mut out = IoSnapshot::default();
        for c in &*self.per_shard {
            out.add(&c.snapshot());
        }
        out
    }
}

/// A shard's counters and its thread, for CPU time.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// I/O of every connection on the shard.
    pub io: IoCounters,
    /// Kernel thread id of the shard (0 until the shard registers).
    tid: AtomicI32,
}

impl ShardStats {
    /// Called on the shard's thread at start: remembers its thread id.
    pub fn register_current_thread(&self) {
        // SAFETY: gettid(2) has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        self.tid.store(tid, Ordering::Relaxed);
    }

    /// CPU time the shard thread has used (user and system), from
    /// `/proc/self/task/TID/stat`. A reactor thread that waits sleeps in the kernel, so this
    /// is the shard's busy time. None before the shard registered or when /proc is missing.
    #[must_use]
    pub fn cpu_time(&self) -> Option<Duration> {
        let tid = self.tid.load(Ordering::Relaxed);
        if tid == 0 {
            return None;
        }
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        thread_cpu_time(&text)
    }
}

/// User plus system time from the text of a `/proc/.../stat` file.
fn thread_cpu_time(stat: &str) -> Option<Duration> {
    // The command name is in parentheses and may hold spaces: fields count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': state(3) ... utime is field 14, stime 15 of the whole line.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf(3) with a constant name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    let total = utime + stime;
    Some(
        Duration::from_secs(total / ticks)
            + Duration::from_nanos(total % ticks * 1_000_000_000 / ticks),
    )
}

/// One connection's counters and who it is.
#[derive(Debug)]
pub struct ConnStats {
    /// Registry id (unique for the life of the daemon).
    pub id: u64,
    /// TSIH of the session.
    pub tsih: u16,
    /// Initiator IQN.
    pub initiator: String,
    /// Target IQN (empty for discovery).
    pub target: String,
    /// Shard serving the connection.
    pub shard: usize,
    /// Its I/O.
    pub io: IoCounters,
}

/// The registry: fixed LUN and shard sets, connections as they come and go.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    shards: Box<[ShardStats]>,
    /// LUNs by (lower-cased target name, LUN).
    luns: BTreeMap<(String, u64), Arc<LunStats>>,
    connections: Mutex<Vec<Arc<ConnStats>>>,
    next_conn: AtomicU64,
}

impl Stats {
    /// A registry for `shards` shards and the LUNs `(target, lun)`.
    #[must_use]
    pub fn new(shards: usize, luns: impl IntoIterator<Item = (String, u64)>) -> Stats {
        let shards = shards.max(1);
        let luns = luns
            .into_iter()
            .map(|(target, lun)| {
                let per_shard = (0..shards).map(|_| IoCounters::default()).collect();
                let stats = Arc::new(LunStats { target: target.clone(), lun, per_shard });
                ((target.to_ascii_lowercase(), lun), stats)
            })
            .collect();
        Stats {
            started: Instant::now(),
            shards: (0..shards).map(|_| ShardStats::default()).collect(),
            luns,
            connections: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Time since the registry was made.
    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Shard `i`'s counters (the last shard's for an out-of-range index).
    #[must_use]
    pub fn shard(&self, i: usize) -> &ShardStats {
        &self.shards[i.min(self.shards.len() - 1)]
    }

    /// Every shard's counters.
    #[must_use]
    pub fn shards(&self) -> &[ShardStats] {
        &self.shards
    }

    /// The LUNs of `target`, by LUN number.
    #[must_use]
    pub fn luns_of(&self, target: &str) -> Vec<(u64, Arc<LunStats>)> {
        let key = target.to_ascii_lowercase();
        self.luns
            .range((key.clone(), 0)..=(key, u64::MAX))
            .map(|((_, lun), s)| (*lun, Arc::clone(s)))
            .collect()
    }

    /// Every LUN.
    pub fn luns(&self) -> impl Iterator<Item = &Arc<LunStats>> {
        self.luns.values()
    }

    /// Registers a connection entering the full-feature phase.
    pub fn connection_started(
        &self,
        tsih: u16,
        initiator: &str,
        target: &str,
        shard: usize,
    ) -> Arc<ConnStats> {
        let c = Arc::new(ConnStats {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            tsih,
            initiator: initiator.to_string(),
            target: target.to_string(),
            shard,
            io: IoCounters::default(),
        });
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&c));
        c
    }

    /// Forgets a connection that ended.
    pub fn connection_ended(&self, conn: &Arc<ConnStats>) {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|c| !Arc::ptr_eq(c, conn));
    }

    /// The live connections.
    #[must_use]
    pub fn connections(&self) -> Vec<Arc<ConnStats>> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What one connection updates for each command: its own set, its shard's, and its LUNs'
/// sets for its shard. Lives on the connection's shard.
pub struct ConnRecorder {
    conn: Arc<ConnStats>,
    stats: Arc<Stats>,
    luns: Vec<(u64, Arc<LunStats>)>,
}

impl ConnRecorder {
    /// The recorder of a connection registered as `conn` for `target`'s LUNs.
    #[must_use]
    pub fn new(stats: Arc<Stats>, conn: Arc<ConnStats>) -> ConnRecorder {
        let luns = stats.luns_of(&conn.target);
        ConnRecorder { conn, stats, luns }
    }

    fn sets(&self, lun: u64) -> [Option<&IoCounters>; 3] {
        let shard = self.conn.shard;
        let lun_set = self
            .luns
            .binary_search_by_key(&lun, |(n, _)| *n)
            .ok()
            .map(|i| self.luns[i].1.for_shard(shard));
        [Some(&self.conn.io), Some(&self.stats.shard(shard).io), lun_set]
    }

    /// A command to `lun` was received: its queue depth goes up until [`Self::end`].
    pub fn begin(&self, lun: u64) {
        for set in self.sets(lun).into_iter().flatten() {
            set.queue_depth.add(1);
        }
    }

    /// The command to `lun` begun at `started` left the queue; it completed with `bytes`
    /// moved when `completed` is Some (None: aborted).
    pub fn end(&self, lun: u64, started: Instant, completed: Option<(IoKind, u64, bool)>) {
        let latency = started.elapsed();
        for set in self.sets(lun).into_iter().flatten() {
            set.queue_depth.sub(1);
            if let Some((kind, bytes, good)) = completed {
                set.record(kind, bytes, latency, good);
            }
        }
    }
}

impl Drop for ConnRecorder {
    fn drop(&mut self) {
        self.stats.connection_ended(&self.conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log2_of_nanoseconds() {
        assert_eq!(latency_bucket(Duration::ZERO), 0);
        assert_eq!(latency_bucket(Duration::from_nanos(1)), 1);
        assert_eq!(latency_bucket(Duration::from_nanos(1023)), 10);
        assert_eq!(latency_bucket(Duration::from_nanos(1024)), 11);
        assert!(Duration::from_nanos(1023).as_nanos() < u128::from(bucket_upper_ns(10)));
        assert_eq!(latency_bucket(Duration::from_secs(100_000)), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        let c = IoCounters::default();
        for _ in 0..990 {
            c.record(IoKind::Read, 4096, Duration::from_micros(10), true);
        }
        for _ in 0..10 {
            c.record(IoKind::Read, 4096, Duration::from_millis(5), true);
        }
        let s = c.snapshot();
        assert_eq!(s.read.ops, 1000);
        assert_eq!(s.read.bytes, 4096 * 1000);
        // 10 us falls in [8192, 16384) ns, 5 ms in [4194304, 8388608) ns.
        assert_eq!(s.read.latency_quantile_ns(0.5), Some(16384));
        assert_eq!(s.read.latency_quantile_ns(0.99), Some(16384));
        assert_eq!(s.read.latency_quantile_ns(0.999), Some(8_388_608));
        assert_eq!(s.write.latency_quantile_ns(0.5), None);
    }

    #[test]
    fn lun_sets_are_per_shard_and_summed_on_read() {
        let stats = Arc::new(Stats::new(2, [("iqn.t".to_string(), 0), ("iqn.t".to_string(), 3)]));
        let a = ConnRecorder::new(Arc::clone(&stats), stats.connection_started(1, "i", "IQN.T", 0));
        let b = ConnRecorder::new(Arc::clone(&stats), stats.connection_started(2, "i", "iqn.t", 1));
        let t = Instant::now();
        a.begin(3);
        b.begin(3);
        b.begin(0);
        assert_eq!(stats.luns_of("iqn.t")[1].1.snapshot().queue_depth, 2);
        a.end(3, t, Some((IoKind::Write, 512, true)));
        b.end(3, t, Some((IoKind::Read, 4096, false)));
        b.end(0, t, None);
        let lun3 = stats.luns_of("iqn.t")[1].1.snapshot();
        assert_eq!((lun3.write.ops, lun3.read.ops, lun3.errors, lun3.queue_depth), (1, 1, 1, 0));
        assert_eq!(stats.luns_of("iqn.t")[0].1.snapshot().read.ops, 0);
        assert_eq!(stats.shard(0).io.snapshot().write.bytes, 512);
        assert_eq!(stats.shard(1).io.snapshot().read.bytes, 4096);
        assert_eq!(stats.connections().len(), 2);
        drop(a);
        assert_eq!(stats.connections().len(), 1);
    }

    #[test]
    fn cpu_time_parses_proc_stat() {
        let ticks = u64::try_from(
            // SAFETY: sysconf(3) with a constant name.
            unsafe { libc::sysconf(libc::_SC_CLK_TCK) },
        )
        .expect("ticks");
        let line =
            format!("123 (ferrite shard) S 1 2 3 4 5 6 7 8 9 10 {} {} 0 0", ticks * 3, ticks / 2);
        assert_eq!(thread_cpu_time(&line), Some(Duration::from_millis(3500)));
        let shard = ShardStats::default();
        assert_eq!(shard.cpu_time(), None);
        shard.register_current_thread();
        assert!(shard.cpu_time().is_some());
    }

    #[test]
    fn commands_are_classified_by_opcode() {
        assert_eq!(IoKind::of_cdb(&[opcode::READ_16]), IoKind::Read);
        assert_eq!(IoKind::of_cdb(&[opcode::WRITE_10]), IoKind::Write);
        assert_eq!(IoKind::of_cdb(&[opcode::INQUIRY]), IoKind::Other);
        assert_eq!(IoKind::of_cdb(&[]), IoKind::Other);
    }
}
