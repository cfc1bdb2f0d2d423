//! A small async mutex (FIFO wake-up) and an async notification, usable from every shard.
//! The pool holds the mutex across device I/O (txg sync); std locks are never held across an
//! `await`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// An async mutex without data (guards a critical section).
#[derive(Default)]
pub struct AsyncMutex {
    state: Mutex<LockState>,
}

#[derive(Default)]
struct LockState {
    locked: bool,
    waiters: VecDeque<Waker>,
}

/// Held while the section runs; unlocks on drop.
pub struct AsyncMutexGuard<'a> {
    lock: &'a AsyncMutex,
}

impl AsyncMutex {
    /// Waits for the lock.
    pub async fn lock(&self) -> AsyncMutexGuard<'_> {
        std::future::poll_fn(|cx| {
            let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if st.locked {
                st.waiters.push_back(cx.waker().clone());
                Poll::Pending
            } else {
                st.locked = true;
                Poll::Ready(())
            }
        })
        .await;
        AsyncMutexGuard { lock: self }
    }

    /// True while held.
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).locked
    }
}

impl Drop for AsyncMutexGuard<'_> {
    fn drop(&mut self) {
        let waiters: Vec<Waker> = {
            let mut st = self.lock.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            st.locked = false;
            st.waiters.drain(..).collect()
        };
        // Wake every waiter; the first to run takes the lock, the others re-register.
        for w in waiters {
            w.wake();
        }
    }
}

/// Wakers waiting for an event that is checked by condition (wake-all).
#[derive(Default)]
pub struct WaitList {
    waiters: Mutex<Vec<Waker>>,
}

impl WaitList {
    /// Waits until `ready()` holds, re-checking after every wake.
    pub async fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        std::future::poll_fn(|cx| {
            if ready() {
                return Poll::Ready(());
            }
            self.waiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(cx.waker().clone());
            // Re-check after registering so a wake between the check and the push is not lost.
            if ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Wakes every waiter.
    pub fn wake_all(&self) {
        let waiters: Vec<Waker> = std::mem::take(
            &mut *self.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for w in waiters {
            w.wake();
        }
    }
}
