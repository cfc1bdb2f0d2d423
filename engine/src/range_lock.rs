//! An asynchronous lock over LBA ranges: holders of overlapping ranges exclude each other,
//! disjoint ranges proceed in parallel. Used to make COMPARE AND WRITE atomic against every
//! other write to the same blocks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct State {
    next_id: u64,
    held: Vec<(u64, u64, u64)>,
    waiters: Vec<Waker>,
}

/// A set of locked `[start, end)` ranges.
#[derive(Default)]
pub struct RangeLock {
    state: Mutex<State>,
}

/// A held range; released on drop.
pub struct RangeGuard<'a> {
    lock: &'a RangeLock,
    id: u64,
}

impl RangeLock {
    /// Waits until `[start, end)` overlaps no held range, then holds it.
    pub fn lock(&self, start: u64, end: u64) -> Acquire<'_> {
        Acquire { lock: self, start, end }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Future of [`RangeLock::lock`].
pub struct Acquire<'a> {
    lock: &'a RangeLock,
    start: u64,
    end: u64,
}

impl<'a> Future for Acquire<'a> {
    type Output = RangeGuard<'a>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RangeGuard<'a>> {
        let mut st = self.lock.state();
        let busy = st.held.iter().any(|&(s, e, _)| s < self.end && self.start < e);
        if busy {
            st.waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        st.next_id += 1;
        let id = st.next_id;
        st.held.push((self.start, self.end, id));
        Poll::Ready(RangeGuard { lock: self.lock, id })
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let waiters = {
            let mut st = self.lock.state();
            st.held.retain(|&(_, _, id)| id != self.id);
            std::mem::take(&mut st.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(f).poll(&mut cx)
    }

    #[test]
    fn overlapping_ranges_exclude_and_disjoint_ones_do_not() {
        let lock = RangeLock::default();
        let Poll::Ready(a) = poll_once(&mut lock.lock(0, 8)) else { panic!("free lock") };
        assert!(poll_once(&mut lock.lock(4, 12)).is_pending());
        assert!(poll_once(&mut lock.lock(8, 16)).is_ready());
        drop(a);
        assert!(poll_once(&mut lock.lock(4, 12)).is_ready());
    }
}
