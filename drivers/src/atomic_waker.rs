//! A lock-free slot for one waker, shared between a waiting task and a thread that wakes it.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;

const WAITING: usize = 0;
const REGISTERING: usize = 1;
const WAKING: usize = 2;

/// Holds the waker of at most one task; `wake` may run concurrently with `register`.
pub struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: access to `waker` is serialised by the `state` protocol below: only the thread that
// moved the state out of WAITING touches the cell.
unsafe impl Send for AtomicWaker {}
// SAFETY: as above.
unsafe impl Sync for AtomicWaker {}

impl Default for AtomicWaker {
    fn default() -> Self {
        AtomicWaker { state: AtomicUsize::new(WAITING), waker: UnsafeCell::new(None) }
    }
}

impl AtomicWaker {
    /// Stores `waker`, replacing the previous one. If a wake raced with this call, wakes it now.
    pub fn register(&self, waker: &Waker) {
        match self.state.compare_exchange(
            WAITING,
            REGISTERING,
            Ordering::Acquire,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                // SAFETY: we hold the REGISTERING state, so no other thread touches the cell.
                unsafe {
                    let slot = &mut *self.waker.get();
                    match slot {
                        Some(old) if old.will_wake(waker) => {}
                        _ => *slot = Some(waker.clone()),
                    }
                }
                if let Err(actual) = self.state.compare_exchange(
                    REGISTERING,
                    WAITING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    // A wake arrived while registering: take the waker and wake it ourselves.
                    debug_assert_eq!(actual, REGISTERING | WAKING);
                    // SAFETY: the waking thread saw REGISTERING and left the cell to us.
                    let waker = unsafe { (*self.waker.get()).take() };
                    self.state.swap(WAITING, Ordering::AcqRel);
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
            }
            Err(WAKING) => waker.wake_by_ref(),
            Err(_) => {}
        }
    }

    /// Wakes the stored waker, if any.
    pub fn wake(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }

    fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, Ordering::AcqRel) {
            WAITING => {
                // SAFETY: we moved the state from WAITING to WAKING; the cell is ours.
                let waker = unsafe { (*self.waker.get()).take() };
                self.state.fetch_and(!WAKING, Ordering::Release);
                waker
            }
            _ => None,
        }
    }
}
