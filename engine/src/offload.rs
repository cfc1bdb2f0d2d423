//! CPU work run off the shard's thread: a pool of worker threads, one per CPU, shared by every
//! pool in the process, and a future that a shard awaits for a job's result.
//!
//! A txg sync computes stored forms (LZ4, dedup fingerprints) here, so the shard that runs the
//! sync keeps serving its connections, its log commits and the sync's own device writes while
//! the next partitions are compressed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::thread;

use drivers::atomic_waker::AtomicWaker;

type Job = Box<dyn FnOnce() + Send>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The workers' queue, started on first use.
fn queue() -> &'static Sender<Job> {
    static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..drivers::shard::available_cpus().max(1) {
            let rx: Arc<Mutex<Receiver<Job>>> = Arc::clone(&rx);
            let started =
                thread::Builder::new().name(format!("ferrite-cpu-{i}")).spawn(move || loop {
                    let job = lock(&rx).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = started {
                // Fewer workers (at worst none: `run` then computes in place).
                log::warn!("cannot start CPU worker {i}: {e}");
            }
        }
        tx
    })
}

struct Slot<T> {
    value: Mutex<Option<thread::Result<T>>>,
    done: AtomicBool,
    waker: AtomicWaker,
}

/// A job's result, awaited on a shard.
pub(crate) struct Offloaded<T> {
    slot: Arc<Slot<T>>,
}

/// Runs `job` on a worker thread; the returned future completes with its result (a panic in
/// the job resumes on the awaiting thread).
pub(crate) fn run<T, F>(job: F) -> Offloaded<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let slot = Arc::new(Slot {
        value: Mutex::new(None),
        done: AtomicBool::new(false),
        waker: AtomicWaker::default(),
    });
    let theirs = Arc::clone(&slot);
    let boxed: Job = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        *lock(&theirs.value) = Some(result);
        theirs.done.store(true, Ordering::Release);
        theirs.waker.wake();
    });
    if let Err(std::sync::mpsc::SendError(boxed)) = queue().send(boxed) {
        // No worker is running: compute in place.
        boxed();
    }
    Offloaded { slot }
}

impl<T> Future for Offloaded<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.slot.done.load(Ordering::Acquire) {
            self.slot.waker.register(cx.waker());
            if !self.slot.done.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        match lock(&self.slot.value).take() {
            Some(Ok(value)) => Poll::Ready(value),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => panic!("offloaded result taken twice"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::executor::{Reactor, ReactorConfig};

    #[test]
    fn results_come_back_in_any_order_of_completion() {
        let r = Reactor::new(&ReactorConfig::default()).expect("reactor");
        r.block_on(async {
            let slow = run(|| {
                thread::sleep(std::time::Duration::from_millis(30));
                thread::current().name().map(str::to_owned)
            });
            let fast: Vec<_> = (0..64u64).map(|i| run(move || i * i)).collect();
            for (i, f) in fast.into_iter().enumerate() {
                assert_eq!(f.await, (i * i) as u64);
            }
            let name = slow.await.expect("worker threads are named");
            assert!(name.starts_with("ferrite-cpu-"), "{name}");
        });
    }

    #[test]
    fn a_panicking_job_panics_the_awaiting_task() {
        let r = Reactor::new(&ReactorConfig::default()).expect("reactor");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.block_on(async { run(|| -> u32 { panic!("job failed") }).await })
        }));
        assert!(caught.is_err());
        // The workers are still there.
        let r = Reactor::new(&ReactorConfig::default()).expect("reactor");
        assert_eq!(r.block_on(async { run(|| 7).await }), 7);
    }
}
