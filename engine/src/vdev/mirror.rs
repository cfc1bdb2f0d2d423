//! A mirror vdev: 2 to 4 leaves, each holding the whole address space at the same offsets.
//!
//! A write goes to every ONLINE child at once; a read to one of them, chosen round-robin, and
//! to the next ONLINE child when that one fails. A child whose write fails has missed data and
//! is FAULTED: nothing is read from it until an operator onlines it ([`Mirror::online`]) after
//! a resilver. The mirror keeps serving while one child is ONLINE, and never faults its last.
//! Reconstruct (self-heal on read) and scrub read every ONLINE child's copy, check each, and
//! rewrite the bad ones from a good one.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::{IoError, IoResult};

use super::{BlockCheck, BufResult, Leaf, Reconstruction, ScrubOutcome};
use crate::join::join_all;

/// Fewest children of a mirror.
pub const MIRROR_MIN_CHILDREN: usize = 2;
/// Most children of a mirror.
pub const MIRROR_MAX_CHILDREN: usize = 4;

/// What an I/O answers when the mirror has no ONLINE child (it never faults its last one, so
/// this is not expected).
const NO_ONLINE_CHILD: IoError = IoError::Medium(libc::ENXIO);

/// Whether a child of a mirror takes part in its I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// Read from and written to.
    Online,
    /// A write to it failed, so it misses data: neither read nor written until onlined.
    Faulted,
}

impl ChildState {
    fn from_u8(v: u8) -> ChildState {
        if v == ChildState::Faulted as u8 {
            ChildState::Faulted
        } else {
            ChildState::Online
        }
    }
}

/// One result per child, by child index (`None`: the child took no part).
type PerChild<T> = [Option<T>; MIRROR_MAX_CHILDREN];

/// A child's copy of a range, as [`Mirror::read_copies`] found it.
enum ChildCopy {
    /// Read, and it passes the check.
    Good(IoBuf),
    /// Read, and it fails the check (counted on the child's device).
    Bad,
    /// The read failed (counted on the child's device by the leaf).
    Unreadable(IoError),
}

/// A mirror of 2 to 4 devices.
pub struct Mirror {
    children: Vec<Leaf>,
    /// [`ChildState`] of each child, as `u8`.
    states: Vec<AtomicU8>,
    /// Round-robin cursor of reads.
    next_read: AtomicUsize,
}

impl Mirror {
    /// A mirror over `children`, all ONLINE.
    ///
    /// # Errors
    /// A one-line message when there are fewer than 2 or more than 4 children.
    pub fn new(children: Vec<Leaf>) -> Result<Mirror, String> {
        let n = children.len();
        if !(MIRROR_MIN_CHILDREN..=MIRROR_MAX_CHILDREN).contains(&n) {
            return Err(format!(
                "a mirror has {n} device(s); it needs {MIRROR_MIN_CHILDREN} to \
                 {MIRROR_MAX_CHILDREN}"
            ));
        }
        let states = (0..n).map(|_| AtomicU8::new(ChildState::Online as u8)).collect();
        Ok(Mirror { children, states, next_read: AtomicUsize::new(0) })
    }

    /// The children, in configuration order.
    #[must_use]
    pub fn leaves(&self) -> &[Leaf] {
        &self.children
    }

    /// The state of child `child`.
    ///
    /// # Panics
    /// When there is no such child (a programmer error).
    #[must_use]
    pub fn child_state(&self, child: usize) -> ChildState {
        ChildState::from_u8(self.states[child].load(Ordering::Acquire))
    }

    /// The state of every child, in configuration order.
    #[must_use]
    pub fn child_states(&self) -> Vec<ChildState> {
        (0..self.children.len()).map(|i| self.child_state(i)).collect()
    }

    /// True when a child is FAULTED: the mirror serves with less redundancy than configured.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        (0..self.children.len()).any(|i| self.child_state(i) == ChildState::Faulted)
    }

    /// Puts child `child` back ONLINE. It may miss every write made while it was FAULTED, so
    /// this must follow a resilver of that child (not yet written); reads would otherwise
    /// return its stale copies, which only the block checksums would catch.
    ///
    /// # Panics
    /// When there is no such child (a programmer error).
    pub fn online(&self, child: usize) {
        self.states[child].store(ChildState::Online as u8, Ordering::Release);
    }

    /// Faults child `child` unless it is the last ONLINE one; true when it is FAULTED after.
    fn fault(&self, child: usize) -> bool {
        let others_online = (0..self.children.len())
            .any(|i| i != child && self.child_state(i) == ChildState::Online);
        if others_online {
            self.states[child].store(ChildState::Faulted as u8, Ordering::Release);
        }
        others_online
    }

    /// The ONLINE children's indices.
    fn online_children(&self) -> Vec<usize> {
        (0..self.children.len()).filter(|&i| self.child_state(i) == ChildState::Online).collect()
    }

    /// The result of a write or flush sent to several children: an error when none succeeded
    /// (nobody is faulted: the caller knows the data is not there). Otherwise the failed
    /// children are FAULTED, and it succeeds when a child that took it is still ONLINE (one
    /// faulted by a concurrent failure does not count).
    fn settle(&self, results: &PerChild<IoResult<()>>) -> IoResult<()> {
        let mut first_error = None;
        for result in results.iter().flatten() {
            if let Err(e) = result {
                first_error.get_or_insert(*e);
            }
        }
        if !results.iter().flatten().any(Result::is_ok) {
            return Err(first_error.unwrap_or(NO_ONLINE_CHILD));
        }
        for (child, result) in results.iter().enumerate() {
            if matches!(result, Some(Err(_))) {
                self.fault(child);
            }
        }
        let kept = results.iter().enumerate().any(|(child, result)| {
            matches!(result, Some(Ok(()))) && self.child_state(child) == ChildState::Online
        });
        if kept {
            Ok(())
        } else {
            Err(first_error.unwrap_or(NO_ONLINE_CHILD))
        }
    }

    /// Reads `len_bytes` at `offset_bytes` into a new buffer (see [`Mirror::read_into`]).
    ///
    /// # Errors
    /// The last child's error when every ONLINE child failed.
    pub async fn read(&self, offset_bytes: u64, len_bytes: usize) -> IoResult<IoBuf> {
        let (res, buf) = self.read_into(offset_bytes, IoBuf::zeroed(len_bytes)).await;
        res.map(|()| buf)
    }

    /// Reads `buf.len()` bytes at `offset_bytes` into `buf`, which comes back either way.
    /// Reads are spread round-robin: each starts at the child after the previous read's first,
    /// skipping FAULTED children. A device error (counted by the leaf) moves the read on to
    /// the next ONLINE child; the child stays ONLINE (its data is not known to be missing).
    ///
    /// # Errors
    /// The last child's error when every ONLINE child failed.
    pub async fn read_into(&self, offset_bytes: u64, mut buf: IoBuf) -> BufResult {
        let n = self.children.len();
        let first = self.next_read.fetch_add(1, Ordering::Relaxed) % n;
        let mut error = NO_ONLINE_CHILD;
        for child in (0..n).map(|k| (first + k) % n) {
            if self.child_state(child) != ChildState::Online {
                continue;
            }
            let (res, back) = self.children[child].read_into(offset_bytes, buf).await;
            buf = back;
            match res {
                Ok(()) => return (Ok(()), buf),
                Err(e) => error = e,
            }
        }
        (Err(error), buf)
    }

    /// Writes `buf` at `offset_bytes` on every ONLINE child concurrently (the first writes
    /// `buf` itself, the others a copy each), durable when it completes if `durable` is set.
    /// Children whose write fails are FAULTED (see [`Mirror::settle`] for the rule).
    ///
    /// # Errors
    /// The first child's error when no ONLINE child took the write.
    pub async fn write(&self, offset_bytes: u64, buf: IoBuf, durable: bool) -> BufResult {
        let online = self.online_children();
        if online.is_empty() {
            return (Err(NO_ONLINE_CHILD), buf);
        }
        let copies: Vec<IoBuf> = online[1..].iter().map(|_| IoBuf::from_slice(&buf)).collect();
        let writes = online
            .iter()
            .zip(std::iter::once(buf).chain(copies))
            .map(|(&child, b)| self.children[child].write(offset_bytes, b, durable))
            .collect();
        let mut results: PerChild<IoResult<()>> = Default::default();
        let mut first_buf = None;
        for (&child, (res, b)) in online.iter().zip(join_all(writes).await) {
            results[child] = Some(res);
            first_buf.get_or_insert(b);
        }
        let buf = first_buf.expect("one child was written");
        (self.settle(&results), buf)
    }

    /// True when a durable [`Mirror::write`] needs no flush after it: every child's device
    /// makes its durable writes durable by itself.
    #[must_use]
    pub fn durable_writes(&self) -> bool {
        self.children.iter().all(Leaf::durable_writes)
    }

    /// Writes `bufs` back to back at `offset_bytes` on every ONLINE child concurrently (each
    /// from the same shared buffers). Children whose write fails are FAULTED.
    ///
    /// # Errors
    /// The first child's error when no ONLINE child took the write.
    pub async fn write_vectored(&self, offset_bytes: u64, bufs: Vec<SharedBuf>) -> IoResult<()> {
        let online = self.online_children();
        let writes = online
            .iter()
            .map(|&child| self.children[child].write_vectored(offset_bytes, bufs.clone()))
            .collect();
        self.settle(&per_child(&online, join_all(writes).await))
    }

    /// Flushes every ONLINE child concurrently. A child whose flush fails may have lost
    /// writes, so it is FAULTED like one whose write failed.
    ///
    /// # Errors
    /// The first child's error when no ONLINE child flushed.
    pub async fn flush(&self) -> IoResult<()> {
        let online = self.online_children();
        let flushes = online.iter().map(|&child| self.children[child].flush()).collect();
        self.settle(&per_child(&online, join_all(flushes).await))
    }

    /// Deallocates `len_bytes` at `offset_bytes` on every ONLINE child concurrently. A failed
    /// trim loses nothing (the range is free), so it faults nobody.
    ///
    /// # Errors
    /// The first child's error when every ONLINE child failed.
    pub async fn trim(&self, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
        let online = self.online_children();
        let trims = online
            .iter()
            .map(|&child| self.children[child].trim(offset_bytes, len_bytes))
            .collect();
        let results = join_all(trims).await;
        match results.iter().find(|r| r.is_ok()) {
            Some(_) => Ok(()),
            None => Err(results.into_iter().find_map(Result::err).unwrap_or(NO_ONLINE_CHILD)),
        }
    }

    /// Reads every ONLINE child's copy of the range concurrently and checks each with
    /// `verify`; a copy that fails it is counted on its device.
    async fn read_copies(&self, block: BlockCheck<'_>) -> PerChild<ChildCopy> {
        let online = self.online_children();
        let reads = online
            .iter()
            .map(|&child| self.children[child].read(block.offset_bytes, block.len_bytes))
            .collect();
        let mut copies: PerChild<ChildCopy> = Default::default();
        for (&child, read) in online.iter().zip(join_all(reads).await) {
            copies[child] = Some(match read {
                Ok(buf) if block.verifies(&buf) => ChildCopy::Good(buf),
                Ok(_) => {
                    self.children[child].count_checksum_error();
                    ChildCopy::Bad
                }
                Err(e) => ChildCopy::Unreadable(e),
            });
        }
        copies
    }

    /// Rewrites `good` at `offset_bytes` on every child whose copy is bad or unreadable,
    /// concurrently; adds the bytes to each rewritten leaf's `repaired_bytes` and returns
    /// their sum. A child whose rewrite fails is FAULTED.
    async fn repair(&self, offset_bytes: u64, good: &[u8], copies: &PerChild<ChildCopy>) -> u64 {
        let bad: Vec<usize> = (0..self.children.len())
            .filter(|&child| {
                matches!(copies[child], Some(ChildCopy::Bad | ChildCopy::Unreadable(_)))
            })
            .collect();
        let writes = bad
            .iter()
            .map(|&child| self.children[child].write(offset_bytes, IoBuf::from_slice(good), false))
            .collect();
        let mut repaired_bytes = 0;
        for (&child, (res, _)) in bad.iter().zip(join_all(writes).await) {
            if res.is_ok() {
                let len = good.len() as u64;
                self.children[child].errors().repaired_bytes.fetch_add(len, Ordering::Relaxed);
                repaired_bytes += len;
            } else {
                self.fault(child);
            }
        }
        repaired_bytes
    }

    /// Reconstruct and heal, after a read of the range failed `verify`: reads every ONLINE
    /// child's copy, counts each that fails `verify` on its device, rewrites every bad (or
    /// unreadable) copy with a good one, and returns the good one.
    /// [`Reconstruction::NoOtherCopy`] when no copy verifies.
    pub async fn reconstruct(&self, block: BlockCheck<'_>) -> Reconstruction {
        let mut copies = self.read_copies(block).await;
        let Some(good) = take_good(&mut copies) else {
            return Reconstruction::NoOtherCopy;
        };
        self.repair(block.offset_bytes, &good, &copies).await;
        Reconstruction::Healed(good)
    }

    /// Scrubs one block: reads and checks every ONLINE child's copy, and rewrites the bad (or
    /// unreadable) ones from a good one. FAULTED children are left to the resilver.
    ///
    /// # Errors
    /// The first device error when no copy could be read.
    pub async fn scrub(&self, block: BlockCheck<'_>) -> IoResult<ScrubOutcome> {
        let mut copies = self.read_copies(block).await;
        let unreadable = copies.iter().flatten().find_map(|c| match c {
            ChildCopy::Unreadable(e) => Some(*e),
            _ => None,
        });
        if copies.iter().flatten().all(|c| matches!(c, ChildCopy::Unreadable(_))) {
            return Err(unreadable.unwrap_or(NO_ONLINE_CHILD));
        }
        let mut outcome = ScrubOutcome {
            copies_checked: count(&copies, |_| true),
            bad_copies: count(&copies, |c| !matches!(c, ChildCopy::Good(_))),
            ..ScrubOutcome::default()
        };
        match take_good(&mut copies) {
            Some(good) => {
                outcome.repaired_bytes = self.repair(block.offset_bytes, &good, &copies).await;
            }
            None => outcome.unrepairable = true,
        }
        Ok(outcome)
    }
}

/// Places `results` (one per child of `children`, in that order) at their children's indices.
fn per_child<T>(children: &[usize], results: Vec<T>) -> PerChild<T> {
    let mut placed: PerChild<T> = Default::default();
    for (&child, result) in children.iter().zip(results) {
        placed[child] = Some(result);
    }
    placed
}

/// The first good copy, taken out of `copies` (its slot is left empty: no rewrite).
fn take_good(copies: &mut PerChild<ChildCopy>) -> Option<IoBuf> {
    let slot = copies.iter_mut().find(|c| matches!(c, Some(ChildCopy::Good(_))))?;
    match slot.take() {
        Some(ChildCopy::Good(buf)) => Some(buf),
        _ => None,
    }
}

/// How many copies match `pred`.
fn count(copies: &PerChild<ChildCopy>, pred: impl Fn(&ChildCopy) -> bool) -> u32 {
    let n = copies.iter().flatten().filter(|c| pred(c)).count();
    u32::try_from(n).expect("at most four copies")
}

#[cfg(test)]
mod tests;
