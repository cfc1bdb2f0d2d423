//! [`FaultDevice`]: a deterministic, seeded fault-injecting wrapper for the crash simulator.
//!
//! The wrapped device holds the **durable image**. Writes, discards and write-zeroes are not
//! sent to it directly: they are appended to an ordered log of unflushed operations that sits
//! above it, and reads see the durable image with the log overlaid in order. A flush destages
//! the log entries that existed when it started into the durable image, then flushes the inner
//! device. A [`FaultDevice::power_cut`] decides the fate of every unflushed entry according to
//! a [`PowerCutMode`] (lost, kept, or torn at a sector boundary, from the seed), applies the
//! survivors to the durable image, and fails every further operation with
//! [`IoError::Injected`] until [`FaultDevice::restart`].
//!
//! Two device semantics are modelled. By default the device has only a volatile cache: a write
//! is durable once a flush that started after it completes, and [`BlockDevice::write_durable`]
//! writes and then flushes. With [`FaultConfig::durable_writes`] the device also takes single
//! writes made durable by themselves (`RWF_DSYNC`, FUA): [`BlockDevice::durable_writes`] is true
//! and a [`BlockDevice::write_durable`] is durable once it completes, without a flush, while
//! one still in flight at a power cut meets the cut's fate like any unflushed write (lost,
//! kept or torn).
//!
//! The log is bounded by [`FaultConfig::max_unflushed_ops`]: beyond it the oldest entries are
//! destaged on their own, as a drive's cache writes back without being asked.
//!
//! Besides power cuts, [`FaultRule`]s inject errors, bit flips and torn writes on chosen
//! operations, and [`Latency`] delays every operation. Everything random comes from
//! [`SplitMix64`] streams derived from [`FaultConfig::seed`]; nothing reads the clock or iterates
//! a hash map, so the same seed and the same sequence of operations give the same faults.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::blockdev::prng::SplitMix64;
use crate::blockdev::{check_request, Allocation, BlockDevice, DeviceInfo};
use crate::buffer::IoBuf;
use crate::error::{IoError, IoResult};
use crate::executor;
use crate::LocalBoxFuture;

mod config;
mod report;

pub use config::{Fault, FaultConfig, FaultRule, Latency, OpKind, Trigger};
pub use report::{Fate, FaultStats, PowerCutMode, PowerCutReport, UnflushedOutcome};

/// Mixed into the seed for the power-cut stream, so tear decisions do not depend on how many
/// probabilistic faults were drawn before the cut.
const CUT_STREAM_SALT: u64 = 0x5eed_c07f_a11e_d0ff;

/// One unflushed operation. `data` is `None` for discards and write-zeroes (they read as
/// zeros).
struct LogEntry {
    seq: u64,
    op: OpKind,
    offset_bytes: u64,
    len_bytes: u64,
    data: Option<Box<[u8]>>,
    /// A completed durable write: it survives a power cut whatever the mode.
    durable: bool,
}

/// A copy of the part of a log entry a read overlaps: position in the read buffer and the
/// bytes to lay over it (`None` = zeros).
struct Overlay {
    pos: usize,
    len: usize,
    data: Option<Vec<u8>>,
}

/// Faults chosen for one operation.
#[derive(Default)]
struct Decision {
    error: bool,
    flips: Vec<(u64, u8)>,
    torn: Option<bool>,
}

struct State {
    rng: SplitMix64,
    cut_rng: SplitMix64,
    log: VecDeque<LogEntry>,
    next_seq: u64,
    cut: bool,
    /// Rules are evaluated only while armed (from creation unless disarmed).
    disarmed: bool,
    stats: FaultStats,
    /// One destager at a time (flush, log bound, power cut), so entries reach the durable
    /// image in order; the others wait here.
    destaging: bool,
    destage_waiters: VecDeque<Waker>,
}

/// A fault-injecting wrapper around another device (normally a [`super::memory::MemoryDevice`]).
pub struct FaultDevice {
    inner: Arc<dyn BlockDevice>,
    info: DeviceInfo,
    config: FaultConfig,
    tear_unit_bytes: u64,
    state: Mutex<State>,
}

impl FaultDevice {
    /// Wraps `inner`, whose current content is the initial durable image.
    ///
    /// # Panics
    /// When the configuration is invalid (a programmer error): a tear unit that is not a
    /// multiple of the logical block size, a torn-write rule on an operation other than write,
    /// a bit-flip rule on an operation other than read or write, or a zero log bound.
    #[must_use]
    pub fn new(inner: Arc<dyn BlockDevice>, config: FaultConfig) -> FaultDevice {
        let inner_info = inner.info().clone();
        let logical = inner_info.logical_block_bytes;
        let tear_unit = config.tear_unit_bytes.unwrap_or(logical);
        assert!(
            tear_unit >= logical && tear_unit.is_multiple_of(logical),
            "tear unit must be a multiple of the logical block"
        );
        assert!(config.max_unflushed_ops > 0, "the unflushed log needs room for one entry");
        for rule in &config.rules {
            match rule.fault {
                Fault::Error => {}
                Fault::FlipBit { bit, .. } => {
                    assert!(
                        matches!(rule.op, OpKind::Read | OpKind::Write),
                        "bit flips apply to reads and writes"
                    );
                    assert!(bit.is_none_or(|b| b < 8), "bit index is 0..=7");
                }
                Fault::TornWrite { .. } => {
                    assert_eq!(rule.op, OpKind::Write, "torn writes apply to writes");
                }
            }
        }
        let info = DeviceInfo { name: format!("fault({})", inner_info.name), ..inner_info };
        let state = State {
            rng: SplitMix64::new(config.seed),
            cut_rng: SplitMix64::new(config.seed ^ CUT_STREAM_SALT),
            log: VecDeque::new(),
            next_seq: 0,
            cut: false,
            disarmed: false,
            stats: FaultStats::default(),
            destaging: false,
            destage_waiters: VecDeque::new(),
        };
        FaultDevice {
            inner,
            info,
            config,
            tear_unit_bytes: u64::from(tear_unit),
            state: Mutex::new(state),
        }
    }

    /// The wrapped device (the durable image).
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> FaultStats {
        self.lock().stats
    }

    /// Operations not yet covered by a completed flush.
    #[must_use]
    pub fn unflushed_ops(&self) -> usize {
        self.lock().log.len()
    }

    /// Arms or disarms the rules: while disarmed no rule fires (the operations still count
    /// towards [`Trigger::Nth`]). A device is armed when made.
    pub fn set_armed(&self, armed: bool) {
        self.lock().disarmed = !armed;
    }

    /// Faults injected so far by rules: errors, bit flips and torn writes.
    #[must_use]
    pub fn faults_injected(&self) -> u64 {
        let st = self.lock();
        st.stats.errors_injected + st.stats.bit_flips + st.stats.torn_writes
    }

    /// True between a power cut and the next [`FaultDevice::restart`].
    #[must_use]
    pub fn is_cut(&self) -> bool {
        self.lock().cut
    }

    /// Cuts the power. From this call on every operation fails with [`IoError::Injected`];
    /// the unflushed log is resolved per `mode` into the durable image (waiting for a destage
    /// in progress to stop first), and the inner device is flushed. After it returns and after
    /// [`FaultDevice::restart`], reads show exactly the durable image.
    ///
    /// # Errors
    /// When the inner device fails while the surviving operations are applied.
    pub async fn power_cut(&self, mode: PowerCutMode) -> IoResult<PowerCutReport> {
        self.lock().cut = true;
        let _gate = self.destage_gate().await;
        let (entries, decisions) = {
            let mut st = self.lock();
            st.stats.power_cuts += 1;
            let entries: Vec<LogEntry> = st.log.drain(..).collect();
            let decisions: Vec<Option<Fate>> = entries
                .iter()
                .map(|e| (!e.durable).then(|| self.decide_fate(&mut st.cut_rng, mode, e.len_bytes)))
                .collect();
            for fate in decisions.iter().flatten() {
                match fate {
                    Fate::Kept => st.stats.cut_kept += 1,
                    Fate::Dropped => st.stats.cut_dropped += 1,
                    Fate::Torn { .. } => st.stats.cut_torn += 1,
                }
            }
            (entries, decisions)
        };
        let mut report = PowerCutReport::default();
        for (entry, fate) in entries.iter().zip(decisions) {
            let Some(fate) = fate else {
                // A completed durable write is already durable.
                self.apply_to_inner(entry, entry.len_bytes).await?;
                continue;
            };
            let kept_bytes = match fate {
                Fate::Kept => entry.len_bytes,
                Fate::Dropped => 0,
                Fate::Torn { kept_bytes } => kept_bytes,
            };
            self.apply_to_inner(entry, kept_bytes).await?;
            report.outcomes.push(UnflushedOutcome {
                op: entry.op,
                offset_bytes: entry.offset_bytes,
                len_bytes: entry.len_bytes,
                fate,
            });
        }
        self.inner.flush().await?;
        Ok(report)
    }

    /// Powers the device back on: operations are accepted again. The content is the durable
    /// image left by the last power cut.
    pub fn restart(&self) {
        self.lock().cut = false;
    }

    fn decide_fate(&self, rng: &mut SplitMix64, mode: PowerCutMode, len_bytes: u64) -> Fate {
        match mode {
            PowerCutMode::DropAll => Fate::Dropped,
            PowerCutMode::KeepAll => Fate::Kept,
            PowerCutMode::TearRandom => {
                let units = len_bytes.div_ceil(self.tear_unit_bytes);
                match rng.below(3) {
                    0 => Fate::Kept,
                    1 => Fate::Dropped,
                    _ if units < 2 => {
                        if rng.below(2) == 0 {
                            Fate::Kept
                        } else {
                            Fate::Dropped
                        }
                    }
                    _ => {
                        Fate::Torn { kept_bytes: (1 + rng.below(units - 1)) * self.tear_unit_bytes }
                    }
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn delay(&self) {
        let yields = match self.config.latency {
            Latency::None => 0,
            Latency::Yields(n) => n,
            Latency::RandomYields { max } => {
                u32::try_from(self.lock().rng.below(u64::from(max) + 1)).unwrap_or(max)
            }
            Latency::Sleep(d) => {
                executor::sleep(d).await;
                0
            }
        };
        for _ in 0..yields {
            executor::yield_now().await;
        }
    }

    /// Counts the operation, refuses it after a cut, and evaluates the rules.
    fn admit(
        &self,
        st: &mut State,
        op: OpKind,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> IoResult<Decision> {
        if st.cut {
            st.stats.refused_after_cut += 1;
            return Err(IoError::Injected);
        }
        st.stats.ops[op.index()] += 1;
        let nth = st.stats.ops[op.index()];
        let mut decision = Decision::default();
        let armed = !st.disarmed;
        for rule in self.config.rules.iter().filter(|r| armed && r.op == op) {
            let fires = match rule.trigger {
                Trigger::Always => true,
                Trigger::Nth(n) => nth == n,
                Trigger::Probability { per_million } => st.rng.chance_per_million(per_million),
                Trigger::Overlaps { offset_bytes: start, len_bytes: len } => {
                    len_bytes > 0
                        && offset_bytes < start.saturating_add(len)
                        && start < offset_bytes + len_bytes
                }
            };
            if !fires {
                continue;
            }
            match rule.fault {
                Fault::Error => decision.error = true,
                Fault::TornWrite { silent } => decision.torn = Some(silent),
                Fault::FlipBit { offset_bytes: at, bit } => {
                    let at = match at {
                        Some(at) if at >= offset_bytes && at < offset_bytes + len_bytes => at,
                        Some(_) => continue,
                        None if len_bytes == 0 => continue,
                        None => offset_bytes + st.rng.below(len_bytes),
                    };
                    let bit = bit.unwrap_or_else(|| (st.rng.below(8)) as u8);
                    decision.flips.push((at, bit));
                }
            }
        }
        if decision.error {
            st.stats.errors_injected += 1;
        }
        Ok(decision)
    }

    /// Appends an unflushed entry; returns how many entries exceed the log bound.
    fn append(
        &self,
        st: &mut State,
        op: OpKind,
        offset_bytes: u64,
        len_bytes: u64,
        data: Option<Box<[u8]>>,
    ) -> usize {
        let seq = st.next_seq;
        st.next_seq += 1;
        st.log.push_back(LogEntry { seq, op, offset_bytes, len_bytes, data, durable: false });
        st.log.len().saturating_sub(self.config.max_unflushed_ops)
    }

    /// Writes the first `kept_bytes` of `entry` into the durable image.
    async fn apply_to_inner(&self, entry: &LogEntry, kept_bytes: u64) -> IoResult<()> {
        if kept_bytes == 0 {
            return Ok(());
        }
        match &entry.data {
            Some(data) => {
                let kept =
                    usize::try_from(kept_bytes).map_err(|_| IoError::InvalidInput(libc::EINVAL))?;
                let buf = IoBuf::from_slice(&data[..kept]);
                self.inner.write(buf, entry.offset_bytes).await.0
            }
            None if entry.op == OpKind::Discard => {
                self.inner.discard(entry.offset_bytes, kept_bytes).await
            }
            None => self.inner.write_zeroes(entry.offset_bytes, kept_bytes).await,
        }
    }

    /// Moves log entries into the durable image, oldest first: those with `seq < upto_seq`,
    /// or (with `upto_seq == None`) the oldest ones beyond the log bound. Stops with
    /// [`IoError::Injected`] if the power is cut meanwhile.
    async fn destage(&self, upto_seq: Option<u64>) -> IoResult<()> {
        let _gate = self.destage_gate().await;
        loop {
            let (seq, entry) = {
                let st = self.lock();
                if st.cut {
                    return Err(IoError::Injected);
                }
                let Some(front) = st.log.front() else { return Ok(()) };
                let due = match upto_seq {
                    Some(upto) => front.seq < upto,
                    None => st.log.len() > self.config.max_unflushed_ops,
                };
                if !due {
                    return Ok(());
                }
                // Copy it out: it stays in the log (and visible to reads) until it is durable.
                let copy = LogEntry {
                    seq: front.seq,
                    op: front.op,
                    offset_bytes: front.offset_bytes,
                    len_bytes: front.len_bytes,
                    data: front.data.clone(),
                    durable: front.durable,
                };
                (front.seq, copy)
            };
            self.apply_to_inner(&entry, entry.len_bytes).await?;
            let mut st = self.lock();
            // Only the gate holder removes entries, so the front is still ours.
            assert_eq!(st.log.front().map(|e| e.seq), Some(seq), "destaged entry left the log");
            st.log.pop_front();
            st.stats.destaged += 1;
        }
    }

    fn destage_gate(&self) -> DestageGate<'_> {
        DestageGate { device: self }
    }

    /// Lays the unflushed log (oldest first) over the part of a read it overlaps.
    fn overlays(st: &State, offset_bytes: u64, len_bytes: u64) -> Vec<Overlay> {
        let end = offset_bytes + len_bytes;
        st.log
            .iter()
            .filter(|e| e.offset_bytes < end && offset_bytes < e.offset_bytes + e.len_bytes)
            .map(|e| {
                let start = e.offset_bytes.max(offset_bytes);
                let stop = (e.offset_bytes + e.len_bytes).min(end);
                let len = (stop - start) as usize;
                let data = e.data.as_ref().map(|d| {
                    let from = (start - e.offset_bytes) as usize;
                    d[from..from + len].to_vec()
                });
                Overlay { pos: (start - offset_bytes) as usize, len, data }
            })
            .collect()
    }

    async fn read_impl(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let len_bytes = buf.len() as u64;
        if let Err(e) = check_request(&self.info, offset_bytes, len_bytes) {
            return (Err(e), buf);
        }
        self.delay().await;
        let (decision, overlays) = {
            let mut st = self.lock();
            match self.admit(&mut st, OpKind::Read, offset_bytes, len_bytes) {
                Err(e) => return (Err(e), buf),
                Ok(d) if d.error => return (Err(IoError::Injected), buf),
                Ok(d) => {
                    st.stats.bit_flips += d.flips.len() as u64;
                    (d, FaultDevice::overlays(&st, offset_bytes, len_bytes))
                }
            }
        };
        let (res, mut buf) = self.inner.read(buf, offset_bytes).await;
        if res.is_err() {
            return (res, buf);
        }
        for o in overlays {
            match o.data {
                Some(data) => buf[o.pos..o.pos + o.len].copy_from_slice(&data),
                None => buf[o.pos..o.pos + o.len].fill(0),
            }
        }
        for (at, bit) in decision.flips {
            buf[(at - offset_bytes) as usize] ^= 1 << bit;
        }
        (Ok(()), buf)
    }

    async fn write_impl(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let len_bytes = buf.len() as u64;
        if let Err(e) = check_request(&self.info, offset_bytes, len_bytes) {
            return (Err(e), buf);
        }
        self.delay().await;
        let (res, _, buf) = self.write_entry(buf, offset_bytes).await;
        (res, buf)
    }

    /// A write made durable by itself ([`FaultConfig::durable_writes`]): it enters the
    /// unflushed log like any write, stays in flight for the device's latency (a power cut then
    /// decides its fate as for any unflushed write), and on completion is marked durable.
    async fn durable_write_impl(&self, buf: IoBuf, offset_bytes: u64) -> (IoResult<()>, IoBuf) {
        let len_bytes = buf.len() as u64;
        if let Err(e) = check_request(&self.info, offset_bytes, len_bytes) {
            return (Err(e), buf);
        }
        self.delay().await;
        let (res, seq, buf) = self.write_entry(buf, offset_bytes).await;
        if res.is_err() {
            return (res, buf);
        }
        // In flight.
        self.delay().await;
        let mut st = self.lock();
        if st.cut {
            return (Err(IoError::Injected), buf);
        }
        st.stats.durable_writes += 1;
        // Not found: destaged meanwhile (already durable) or torn to nothing by a rule.
        if let Some(e) = st.log.iter_mut().find(|e| Some(e.seq) == seq) {
            e.durable = true;
        }
        (Ok(()), buf)
    }

    /// Admits a write and appends what lands of it to the unflushed log; returns the entry's
    /// sequence number (`None` when nothing landed).
    async fn write_entry(
        &self,
        buf: IoBuf,
        offset_bytes: u64,
    ) -> (IoResult<()>, Option<u64>, IoBuf) {
        let len_bytes = buf.len() as u64;
        let (res, seq, excess) = {
            let mut st = self.lock();
            let decision = match self.admit(&mut st, OpKind::Write, offset_bytes, len_bytes) {
                Err(e) => return (Err(e), None, buf),
                Ok(d) if d.error => return (Err(IoError::Injected), None, buf),
                Ok(d) => d,
            };
            let mut data: Box<[u8]> = buf[..].into();
            for (at, bit) in &decision.flips {
                data[(at - offset_bytes) as usize] ^= 1 << bit;
            }
            st.stats.bit_flips += decision.flips.len() as u64;
            let mut res = Ok(());
            let mut kept_bytes = len_bytes;
            if let Some(silent) = decision.torn {
                st.stats.torn_writes += 1;
                let units = len_bytes.div_ceil(self.tear_unit_bytes);
                kept_bytes = (st.rng.below(units) * self.tear_unit_bytes).min(len_bytes);
                if !silent {
                    res = Err(IoError::Injected);
                }
            }
            let (seq, excess) = if kept_bytes == 0 {
                (None, 0)
            } else {
                let kept = kept_bytes as usize;
                let data = if kept == data.len() { data } else { data[..kept].into() };
                let seq = st.next_seq;
                (
                    Some(seq),
                    self.append(&mut st, OpKind::Write, offset_bytes, kept_bytes, Some(data)),
                )
            };
            (res, seq, excess)
        };
        if excess > 0 {
            if let Err(e) = self.destage(None).await {
                return (Err(e), seq, buf);
            }
        }
        (res, seq, buf)
    }

    async fn zero_impl(&self, op: OpKind, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
        check_request(&self.info, offset_bytes, len_bytes)?;
        self.delay().await;
        let excess = {
            let mut st = self.lock();
            let decision = self.admit(&mut st, op, offset_bytes, len_bytes)?;
            if decision.error {
                return Err(IoError::Injected);
            }
            if len_bytes == 0 {
                0
            } else {
                self.append(&mut st, op, offset_bytes, len_bytes, None)
            }
        };
        if excess > 0 {
            self.destage(None).await?;
        }
        Ok(())
    }

    /// Allocation as the inner device reports it, except that bytes an unflushed operation
    /// touches count as mapped until it is destaged (a pending discard is not yet a hole).
    async fn allocation_impl(&self, offset_bytes: u64, len_bytes: u64) -> IoResult<Allocation> {
        check_request(&self.info, offset_bytes, len_bytes)?;
        let end = offset_bytes + len_bytes;
        let (covered_to, next_start) = {
            let st = self.lock();
            let mut covered_to = None;
            let mut next_start = end;
            for e in &st.log {
                let e_end = e.offset_bytes + e.len_bytes;
                if e.offset_bytes <= offset_bytes && e_end > offset_bytes {
                    covered_to = Some(covered_to.unwrap_or(0).max(e_end.min(end)));
                } else if e.offset_bytes > offset_bytes && e.offset_bytes < next_start {
                    next_start = e.offset_bytes;
                }
            }
            (covered_to, next_start)
        };
        if let Some(to) = covered_to {
            return Ok(Allocation { mapped: true, run_bytes: to - offset_bytes });
        }
        let inner = self.inner.allocation(offset_bytes, next_start - offset_bytes).await?;
        Ok(inner)
    }

    async fn flush_impl(&self) -> IoResult<()> {
        self.delay().await;
        let upto = {
            let mut st = self.lock();
            let decision = self.admit(&mut st, OpKind::Flush, 0, 0)?;
            if decision.error {
                return Err(IoError::Injected);
            }
            st.next_seq
        };
        self.destage(Some(upto)).await?;
        self.inner.flush().await?;
        if self.lock().cut {
            return Err(IoError::Injected);
        }
        Ok(())
    }
}

/// Future of the destage gate; resolves to a guard that reopens it on drop.
struct DestageGate<'a> {
    device: &'a FaultDevice,
}

/// Holder of the destage gate.
struct DestageGuard<'a> {
    device: &'a FaultDevice,
}

impl<'a> Future for DestageGate<'a> {
    type Output = DestageGuard<'a>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DestageGuard<'a>> {
        let mut st = self.device.lock();
        if st.destaging {
            st.destage_waiters.push_back(cx.waker().clone());
            Poll::Pending
        } else {
            st.destaging = true;
            Poll::Ready(DestageGuard { device: self.device })
        }
    }
}

impl Drop for DestageGuard<'_> {
    fn drop(&mut self) {
        let waiters: Vec<Waker> = {
            let mut st = self.device.lock();
            st.destaging = false;
            st.destage_waiters.drain(..).collect()
        };
        for w in waiters {
            w.wake();
        }
    }
}

impl BlockDevice for FaultDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn read(&self, buf: IoBuf, offset_bytes: u64) -> LocalBoxFuture<'_, (IoResult<()>, IoBuf)> {
        Box::pin(self.read_impl(buf, offset_bytes))
    }

    fn write(&self, buf: IoBuf, offset_bytes: u64) -> LocalBoxFuture<'_, (IoResult<()>, IoBuf)> {
        Box::pin(self.write_impl(buf, offset_bytes))
    }

    fn durable_writes(&self) -> bool {
        self.config.durable_writes
    }

    fn write_durable(
        &self,
        buf: IoBuf,
        offset_bytes: u64,
    ) -> LocalBoxFuture<'_, (IoResult<()>, IoBuf)> {
        if self.config.durable_writes {
            return Box::pin(self.durable_write_impl(buf, offset_bytes));
        }
        Box::pin(async move {
            let (res, buf) = self.write_impl(buf, offset_bytes).await;
            match res {
                Ok(()) => (self.flush_impl().await, buf),
                Err(e) => (Err(e), buf),
            }
        })
    }

    fn flush(&self) -> LocalBoxFuture<'_, IoResult<()>> {
        Box::pin(self.flush_impl())
    }

    fn discard(&self, offset_bytes: u64, len_bytes: u64) -> LocalBoxFuture<'_, IoResult<()>> {
        Box::pin(self.zero_impl(OpKind::Discard, offset_bytes, len_bytes))
    }

    fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> LocalBoxFuture<'_, IoResult<()>> {
        Box::pin(self.zero_impl(OpKind::WriteZeroes, offset_bytes, len_bytes))
    }

    fn reports_allocation(&self) -> bool {
        self.inner.reports_allocation()
    }

    fn allocation(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> LocalBoxFuture<'_, IoResult<Allocation>> {
        Box::pin(self.allocation_impl(offset_bytes, len_bytes))
    }
}

impl std::fmt::Debug for FaultDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultDevice")
            .field("info", &self.info)
            .field("config", &self.config)
            .field("unflushed_ops", &self.unflushed_ops())
            .finish()
    }
}
