//! Work handed to another shard: a [`ShardSet`] gives every shard an inbox, a shard that
//! serves the set runs each job it receives as a task of its own, and the sender awaits the
//! job's result ([`Remote`]).
//!
//! Jobs carry their data by value (buffers included), so ownership moves with the message and
//! nothing is copied. A shard learns which set it serves through a thread-local
//! ([`ShardSet::with_current`]), so code deep in the engine can route work to the shard that owns
//! it without a shared lookup on the I/O path.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crossbeam::queue::SegQueue;

use crate::atomic_waker::AtomicWaker;
use crate::executor;

/// A job: builds, on the receiving shard, the future that runs there.
type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

struct Inbox {
    jobs: SegQueue<Job>,
    waker: AtomicWaker,
    serving: AtomicBool,
    received: AtomicU64,
}

/// The inboxes of a group of shards.
pub struct ShardSet {
    inboxes: Box<[Inbox]>,
}

impl std::fmt::Debug for ShardSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSet").field("shards", &self.inboxes.len()).finish()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<(Arc<ShardSet>, usize)>> = const { RefCell::new(None) };
}

/// The job was dropped without running: its shard stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the owning shard stopped before it ran the request")
    }
}

impl std::error::Error for Stopped {}

struct Slot<T> {
    value: Mutex<Option<Result<T, Stopped>>>,
    done: AtomicBool,
    waker: AtomicWaker,
}

impl<T> Slot<T> {
    fn complete(&self, value: Result<T, Stopped>) {
        let mut v = self.value.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if v.is_none() {
            *v = Some(value);
        }
        drop(v);
        self.done.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Completes the slot with [`Stopped`] when the job is dropped before it produced a value.
struct Completer<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if !self.slot.done.load(Ordering::Acquire) {
            self.slot.complete(Err(Stopped));
        }
    }
}

/// The result of a job sent to another shard.
pub struct Remote<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Remote<T> {
    /// A result that is [`Stopped`] already (the job could not be sent).
    #[must_use]
    pub fn stopped() -> Remote<T> {
        Remote {
            slot: Arc::new(Slot {
                value: Mutex::new(Some(Err(Stopped))),
                done: AtomicBool::new(true),
                waker: AtomicWaker::default(),
            }),
        }
    }
}

impl<T> Future for Remote<T> {
    type Output = Result<T, Stopped>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Stopped>> {
        if !self.slot.done.load(Ordering::Acquire) {
            self.slot.waker.register(cx.waker());
            if !self.slot.done.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        let taken =
            self.slot.value.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        Poll::Ready(taken.unwrap_or(Err(Stopped)))
    }
}

/// Clears the thread's set and the inbox's serving flag when `serve` ends or is dropped.
struct ServeGuard {
    set: Arc<ShardSet>,
    shard: usize,
}

impl Drop for ServeGuard {
    fn drop(&mut self) {
        let inbox = &self.set.inboxes[self.shard];
        inbox.serving.store(false, Ordering::SeqCst);
        CURRENT.with(|c| c.borrow_mut().take());
        // Jobs that arrived too late are dropped: their senders see `Stopped`.
        while inbox.jobs.pop().is_some() {}
    }
}

impl ShardSet {
    /// A set of `shards` inboxes (at least one).
    #[must_use]
    pub fn new(shards: usize) -> Arc<ShardSet> {
        Arc::new(ShardSet {
            inboxes: (0..shards.max(1))
                .map(|_| Inbox {
                    jobs: SegQueue::new(),
                    waker: AtomicWaker::default(),
                    serving: AtomicBool::new(false),
                    received: AtomicU64::new(0),
                })
                .collect(),
        })
    }

    /// Number of shards in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// Never true: a set has at least one shard.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inboxes.is_empty()
    }

    /// True while shard `shard` serves its inbox.
    #[must_use]
    pub fn is_serving(&self, shard: usize) -> bool {
        self.inboxes.get(shard).is_some_and(|i| i.serving.load(Ordering::SeqCst))
    }

    /// Jobs shard `shard` has received.
    #[must_use]
    pub fn received(&self, shard: usize) -> u64 {
        self.inboxes.get(shard).map_or(0, |i| i.received.load(Ordering::Relaxed))
    }

    /// Runs `f` with the set the current thread serves and its index in it, without taking a
    /// reference to the set (no shared counter is touched). `None` when it serves none.
    pub fn with_current<R>(f: impl FnOnce(&ShardSet, usize) -> R) -> Option<R> {
        CURRENT.with(|c| c.borrow().as_ref().map(|(set, here)| f(set, *here)))
    }

    /// Serves inbox `shard` on the current reactor: every job becomes a task of this shard.
    /// Runs until the task is dropped (aborted, or its reactor ends). While it runs,
    /// [`ShardSet::with_current`] on this thread names this set.
    ///
    /// # Panics
    /// When `shard` is out of range or no reactor runs on this thread.
    pub async fn serve(self: Arc<Self>, shard: usize) {
        assert!(shard < self.inboxes.len(), "shard {shard} is not in a set of {}", self.len());
        CURRENT.with(|c| *c.borrow_mut() = Some((Arc::clone(&self), shard)));
        self.inboxes[shard].serving.store(true, Ordering::SeqCst);
        let guard = ServeGuard { set: Arc::clone(&self), shard };
        let inbox = &guard.set.inboxes[shard];
        loop {
            let job = std::future::poll_fn(|cx| {
                if let Some(job) = inbox.jobs.pop() {
                    return Poll::Ready(job);
                }
                inbox.waker.register(cx.waker());
                match inbox.jobs.pop() {
                    Some(job) => Poll::Ready(job),
                    None => Poll::Pending,
                }
            })
            .await;
            inbox.received.fetch_add(1, Ordering::Relaxed);
            drop(executor::spawn(job()));
        }
    }

    /// Runs `make()` (a future) as a task of shard `shard` and returns its result. `make`
    /// and the result move between threads; the future itself is built and polled on the
    /// receiving shard. When that shard does not serve the set, the result is [`Stopped`].
    pub fn run_on<T, F, Fut>(&self, shard: usize, make: F) -> Remote<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let slot = Arc::new(Slot {
            value: Mutex::new(None),
            done: AtomicBool::new(false),
            waker: AtomicWaker::default(),
        });
        let completer = Completer { slot: Arc::clone(&slot) };
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let completer = completer;
                let value = make().await;
                completer.slot.complete(Ok(value));
            })
        });
        match self.inboxes.get(shard) {
            Some(inbox) if inbox.serving.load(Ordering::SeqCst) => {
                inbox.jobs.push(job);
                inbox.waker.wake();
                // A server that stopped between the check and the push has drained its queue
                // already; drop what is left so the sender is not left waiting.
                if !inbox.serving.load(Ordering::SeqCst) {
                    while inbox.jobs.pop().is_some() {}
                }
            }
            _ => drop(job),
        }
        Remote { slot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::ReactorConfig;
    use crate::shard::start_shards;

    #[test]
    fn jobs_run_on_the_shard_they_are_sent_to_and_results_come_back() {
        let set = ShardSet::new(2);
        let s = Arc::clone(&set);
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let handles = start_shards(2, &ReactorConfig::default(), false, move |shard, _| {
            let set = Arc::clone(&s);
            let finished = Arc::clone(&finished);
            async move {
                let server = executor::spawn(Arc::clone(&set).serve(shard));
                while !(set.is_serving(0) && set.is_serving(1)) {
                    executor::sleep(std::time::Duration::from_millis(1)).await;
                }
                let (same, me) = ShardSet::with_current(|current, me| {
                    (std::ptr::eq(current, Arc::as_ptr(&set)), me)
                })
                .expect("serving");
                assert!(same);
                assert_eq!(me, shard);
                let other = 1 - shard;
                let mut sum = 0;
                for i in 0..1000u64 {
                    let (ran_on, value) = set
                        .run_on(other, move || async move { (executor::current_shard(), i * 2) })
                        .await
                        .expect("served");
                    assert_eq!(ran_on, other);
                    sum += value;
                }
                // Both shards keep serving until both are done sending.
                finished.fetch_add(1, Ordering::SeqCst);
                while finished.load(Ordering::SeqCst) < 2 {
                    executor::sleep(std::time::Duration::from_millis(1)).await;
                }
                server.abort();
                sum
            }
        })
        .expect("shards");
        for h in handles {
            assert_eq!(h.join().expect("no panic").expect("reactor"), 999_000);
        }
        assert_eq!(set.received(0), 1000);
        assert_eq!(set.received(1), 1000);
    }

    #[test]
    fn a_shard_that_does_not_serve_answers_stopped() {
        let set = ShardSet::new(2);
        let r = crate::executor::Reactor::new(&ReactorConfig::default()).expect("reactor");
        let res = r.block_on(set.run_on(1, || async { 5 }));
        assert_eq!(res, Err(Stopped));
        assert!(ShardSet::with_current(|_, _| ()).is_none());
    }
}
