//! The per-shard reactor: a small single-threaded async executor over io_uring (or the
//! epoll fallback).
//!
//! Tasks are `!Send` futures pinned to the shard that spawned them. The loop runs ready tasks,
//! hands every SQE they queued to the kernel in one `io_uring_enter`, reaps all completions,
//! and only then wakes the tasks that were waiting on them. Wakers are thread-safe: a wake from
//! another thread goes through a lock-free queue and the shard's eventfd.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crossbeam::queue::SegQueue;

use crate::buffer::BufferPool;
use crate::epoll::EpollDriver;
use crate::error::{IoError, IoResult};
use crate::ring::{Ring, RingFeatures, TOKEN_EVENTFD};

/// Which kernel interface drives the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring.
    Uring,
    /// epoll readiness plus a bounded blocking pool for file I/O.
    Epoll,
}

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring when the kernel allows it, otherwise the epoll fallback.
    #[default]
    Auto,
    /// io_uring or fail.
    Uring,
    /// Always the epoll fallback (tests, seccomp'd containers).
    Epoll,
}

/// Settings of one reactor.
#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// Index of the shard this reactor runs.
    pub shard_id: usize,
    /// Submission queue entries.
    pub ring_entries: u32,
    /// Backend selection.
    pub backend: BackendChoice,
    /// Buffers in the shard's registered pool.
    pub buffer_count: usize,
    /// Size of each pooled buffer.
    pub buffer_bytes: usize,
    /// Threads of the blocking pool used by the epoll fallback for file I/O.
    pub blocking_threads: usize,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            shard_id: 0,
            ring_entries: 256,
            backend: BackendChoice::Auto,
            buffer_count: 256,
            buffer_bytes: 128 * 1024,
            blocking_threads: 4,
        }
    }
}

#[expect(clippy::large_enum_variant, reason = "one per shard, created once and never moved")]
pub(crate) enum Backend {
    Uring(Ring),
    Epoll(EpollDriver),
}

/// Cross-thread wake-up path of one reactor.
pub(crate) struct Remote {
    queue: SegQueue<(usize, u32)>,
    sleeping: AtomicBool,
    eventfd: OwnedFd,
}

impl Remote {
    fn notify(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to our own eventfd.
            let _ =
                unsafe { libc::write(self.eventfd.as_raw_fd(), std::ptr::addr_of!(one).cast(), 8) };
        }
    }

    pub(crate) fn eventfd(&self) -> i32 {
        self.eventfd.as_raw_fd()
    }
}

thread_local! {
    static CONTEXT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
    static THREAD_MARK: u8 = const { 0 };
}

fn thread_mark() -> usize {
    THREAD_MARK.with(|m| std::ptr::from_ref(m) as usize)
}

const MAIN_TASK: usize = usize::MAX;

/// SQEs queued within one turn before they are submitted without waiting for the turn's end.
const SUBMIT_BATCH: usize = 4;

struct TaskWaker {
    id: usize,
    generation: u32,
    owner_thread: usize,
    queued: AtomicBool,
    remote: Arc<Remote>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if thread_mark() == self.owner_thread {
            let pushed = CONTEXT.with(|ctx| {
                if let Ok(ctx) = ctx.try_borrow() {
                    if let Some(core) = ctx.as_ref() {
                        if Arc::ptr_eq(&core.remote, &self.remote) {
                            core.ready.borrow_mut().push_back((self.id, self.generation));
                            return true;
                        }
                    }
                }
                false
            });
            if pushed {
                return;
            }
        }
        self.remote.queue.push((self.id, self.generation));
        self.remote.notify();
    }
}

struct TaskEntry {
    generation: u32,
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    waker: Arc<TaskWaker>,
}

#[derive(Default)]
struct Timers {
    next_id: u64,
    pending: BTreeMap<(Instant, u64), Waker>,
}

/// State of one reactor, shared by the thread-local context and its handle.
pub(crate) struct Core {
    pub(crate) backend: RefCell<Backend>,
    kind: BackendKind,
    shard_id: usize,
    tasks: RefCell<Vec<Option<TaskEntry>>>,
    free_tasks: RefCell<Vec<usize>>,
    next_generation: Cell<u32>,
    ready: RefCell<VecDeque<(usize, u32)>>,
    main_woken: Cell<bool>,
    remote: Arc<Remote>,
    timers: RefCell<Timers>,
    pool: BufferPool,
    registered_pool: Option<usize>,
    eventfd_buf: RefCell<Box<[u8; 8]>>,
    eventfd_armed: Cell<bool>,
    woken_scratch: RefCell<Vec<Waker>>,
    live_tasks: Cell<usize>,
}

/// Handle to the reactor of the current thread.
pub struct Reactor {
    core: Rc<Core>,
}

/// True when the environment sets `FERRITE_REQUIRE_URING=1`: [`BackendChoice::Auto`] then
/// fails instead of falling back to epoll, so a test run (CI) cannot pass on the fallback
/// without saying so.
#[must_use]
pub fn uring_required() -> bool {
    std::env::var_os("FERRITE_REQUIRE_URING").is_some_and(|v| v == "1")
}

impl Reactor {
    /// Creates the reactor: ring (or fallback), registered buffer pool, eventfd.
    ///
    /// # Errors
    /// When io_uring is required ([`BackendChoice::Uring`], or `Auto` with
    /// `FERRITE_REQUIRE_URING=1`) but unavailable, or a kernel resource cannot be created.
    pub fn new(config: &ReactorConfig) -> IoResult<Reactor> {
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(IoError::last_os_error());
        }
        // SAFETY: raw is a fresh, owned file descriptor.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let remote =
            Arc::new(Remote { queue: SegQueue::new(), sleeping: AtomicBool::new(false), eventfd });
        let pool = BufferPool::new(config.buffer_count, config.buffer_bytes);
        let (backend, kind, registered_pool) = match config.backend {
            BackendChoice::Epoll => (
                Backend::Epoll(EpollDriver::new(&remote, config.blocking_threads)?),
                BackendKind::Epoll,
                None,
            ),
            choice => match Ring::new(config.ring_entries) {
                Ok(ring) => {
                    let iovecs = pool.iovecs();
                    // SAFETY: the iovecs describe the pool's region, which lives as long as the
                    // Core (it holds the pool), and the Core outlives the ring.
                    let registered = unsafe { ring.submitter().register_buffers(&iovecs) }.is_ok();
                    (Backend::Uring(ring), BackendKind::Uring, registered.then(|| pool.id()))
                }
                Err(err) if choice == BackendChoice::Auto && !uring_required() => {
                    log::warn!(
                        "io_uring unavailable ({err}); using the epoll fallback \
                         (check kernel.io_uring_disabled and seccomp)"
                    );
                    (
                        Backend::Epoll(EpollDriver::new(&remote, config.blocking_threads)?),
                        BackendKind::Epoll,
                        None,
                    )
                }
                Err(err) => return Err(err),
            },
        };
        let core = Rc::new(Core {
            backend: RefCell::new(backend),
            kind,
            shard_id: config.shard_id,
            tasks: RefCell::new(Vec::new()),
            free_tasks: RefCell::new(Vec::new()),
            next_generation: Cell::new(1),
            ready: RefCell::new(VecDeque::new()),
            main_woken: Cell::new(true),
            remote,
            timers: RefCell::new(Timers::default()),
            pool,
            registered_pool,
            eventfd_buf: RefCell::new(Box::new([0u8; 8])),
            eventfd_armed: Cell::new(false),
            woken_scratch: RefCell::new(Vec::new()),
            live_tasks: Cell::new(0),
        });
        Ok(Reactor { core })
    }

    /// Backend in use.
    #[must_use]
    pub fn backend_kind(&self) -> BackendKind {
        self.core.kind
    }

    /// Ring features obtained (None on the fallback).
    #[must_use]
    pub fn ring_features(&self) -> Option<RingFeatures> {
        match &*self.core.backend.borrow() {
            Backend::Uring(ring) => Some(ring.features()),
            Backend::Epoll(_) => None,
        }
    }

    /// The shard's buffer pool.
    #[must_use]
    pub fn buffer_pool(&self) -> BufferPool {
        self.core.pool.clone()
    }

    /// True when the pool is registered with the ring (fixed-buffer opcodes in use).
    #[must_use]
    pub fn buffers_registered(&self) -> bool {
        self.core.registered_pool.is_some()
    }

    /// Runs `future` to completion on this thread, driving every spawned task meanwhile.
    ///
    /// # Panics
    /// When another reactor is already running on this thread, or the kernel interface fails
    /// in a way that leaves the reactor unable to continue.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        CONTEXT.with(|ctx| {
            let mut ctx = ctx.borrow_mut();
            assert!(ctx.is_none(), "a reactor is already running on this thread");
            *ctx = Some(Rc::clone(&self.core));
        });
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                CONTEXT.with(|ctx| {
                    let core = ctx.borrow_mut().take();
                    drop(core);
                });
            }
        }
        let _reset = Reset;
        let mut future = std::pin::pin!(future);
        let main_task = Arc::new(TaskWaker {
            id: MAIN_TASK,
            generation: 0,
            owner_thread: thread_mark(),
            queued: AtomicBool::new(false),
            remote: Arc::clone(&self.core.remote),
        });
        let main_waker = Waker::from(Arc::clone(&main_task));
        self.core.main_woken.set(true);
        loop {
            if self.core.main_woken.replace(false) {
                // Re-arm before polling, as run_task does for spawned tasks: otherwise only
                // the first wake of the block_on future is delivered and later ones are lost.
                main_task.queued.store(false, Ordering::Release);
                let mut cx = Context::from_waker(&main_waker);
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
            }
            self.core.turn();
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // Drop every task (their operations park resources in the ring), then wait for the
        // kernel to finish with every buffer before the pool memory can go away.
        let tasks: Vec<_> = self.core.tasks.borrow_mut().drain(..).collect();
        drop(tasks);
        let mut backend = self.core.backend.borrow_mut();
        if let Backend::Uring(ring) = &mut *backend {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut woken = Vec::new();
            while ring.in_flight() > 0 && Instant::now() < deadline {
                if ring.submit_and_wait(Some(Duration::from_millis(10))).is_err() {
                    break;
                }
                ring.reap(&mut woken, |_, _| {});
                woken.clear();
            }
        }
    }
}

impl Core {
    fn with_current<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
        CONTEXT.with(|ctx| {
            let ctx = ctx.borrow();
            let core = ctx.as_ref().expect("no ferrite reactor running on this thread");
            f(core)
        })
    }

    pub(crate) fn current() -> Rc<Core> {
        Core::with_current(Rc::clone)
    }

    pub(crate) fn try_current() -> Option<Rc<Core>> {
        CONTEXT.with(|ctx| ctx.try_borrow().ok().and_then(|c| c.as_ref().map(Rc::clone)))
    }

    pub(crate) fn kind(&self) -> BackendKind {
        self.kind
    }

    pub(crate) fn registered_pool(&self) -> Option<usize> {
        self.registered_pool
    }

    fn spawn_boxed(&self, future: Pin<Box<dyn Future<Output = ()>>>) -> (usize, u32) {
        let generation = self.next_generation.get();
        self.next_generation.set(generation.wrapping_add(1));
        let mut tasks = self.tasks.borrow_mut();
        let id = self.free_tasks.borrow_mut().pop().unwrap_or_else(|| {
            tasks.push(None);
            tasks.len() - 1
        });
        let waker = Arc::new(TaskWaker {
            id,
            generation,
            owner_thread: thread_mark(),
            queued: AtomicBool::new(true),
            remote: Arc::clone(&self.remote),
        });
        tasks[id] = Some(TaskEntry { generation, future: Some(future), waker });
        self.live_tasks.set(self.live_tasks.get() + 1);
        self.ready.borrow_mut().push_back((id, generation));
        (id, generation)
    }

    fn run_task(&self, id: usize, generation: u32) {
        if id == MAIN_TASK {
            self.main_woken.set(true);
            return;
        }
        let (mut future, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(Some(entry)) = tasks.get_mut(id) else { return };
            if entry.generation != generation {
                return;
            }
            let Some(future) = entry.future.take() else { return };
            entry.waker.queued.store(false, Ordering::Release);
            (future, Waker::from(Arc::clone(&entry.waker)))
        };
        let mut cx = Context::from_waker(&waker);
        let done = future.as_mut().poll(&mut cx).is_ready();
        let mut tasks = self.tasks.borrow_mut();
        let Some(slot) = tasks.get_mut(id) else { return };
        match slot {
            Some(entry) if entry.generation == generation => {
                if done {
                    *slot = None;
                    drop(tasks);
                    self.free_tasks.borrow_mut().push(id);
                    self.live_tasks.set(self.live_tasks.get() - 1);
                    drop(future);
                } else {
                    entry.future = Some(future);
                }
            }
            // The task was aborted while it ran; drop it now.
            _ => {
                drop(tasks);
                drop(future);
            }
        }
    }

    fn abort_task(&self, id: usize, generation: u32) {
        let removed = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(id) {
                Some(slot @ Some(_))
                    if slot.as_ref().is_some_and(|e| e.generation == generation) =>
                {
                    slot.take()
                }
                _ => None,
            }
        };
        if let Some(entry) = removed {
            if entry.future.is_some() {
                self.free_tasks.borrow_mut().push(id);
                self.live_tasks.set(self.live_tasks.get() - 1);
            } else {
                // Aborted from inside its own poll: the slot is freed by run_task's caller path.
                self.free_tasks.borrow_mut().push(id);
                self.live_tasks.set(self.live_tasks.get() - 1);
            }
            drop(entry);
        }
    }

    /// One turn of the loop: run ready tasks, submit, reap, wait when idle.
    fn turn(&self) {
        const BUDGET: usize = 512;
        for _ in 0..BUDGET {
            let next = self.ready.borrow_mut().pop_front();
            let Some((id, generation)) = next else { break };
            self.run_task(id, generation);
            self.submit_early();
        }
        while let Some((id, generation)) = self.remote.queue.pop() {
            self.ready.borrow_mut().push_back((id, generation));
        }
        self.fire_timers();
        let idle = self.ready.borrow().is_empty() && !self.main_woken.get();
        if idle {
            self.remote.sleeping.store(true, Ordering::SeqCst);
            let raced = !self.remote.queue.is_empty();
            let timeout = if raced { Some(Duration::ZERO) } else { self.next_timer_wait() };
            self.poll_backend(timeout);
            self.remote.sleeping.store(false, Ordering::SeqCst);
        } else {
            self.poll_backend(Some(Duration::ZERO));
        }
        while let Some((id, generation)) = self.remote.queue.pop() {
            self.ready.borrow_mut().push_back((id, generation));
        }
        self.fire_timers();
    }

    /// Hands queued SQEs to the kernel once `SUBMIT_BATCH` have piled up inside a turn. When
    /// many completions arrive together, running every woken task before the first submit
    /// leaves the device idle for the whole turn (a convoy: at QD32 on a virtio disk the tail
    /// of a turn cost ~100 us of latency per I/O); small batches keep it busy while still
    /// saving most io_uring_enter calls.
    fn submit_early(&self) {
        if let Backend::Uring(ring) = &mut *self.backend.borrow_mut() {
            if ring.unsubmitted() >= SUBMIT_BATCH {
                if let Err(err) = ring.submit() {
                    panic!("io_uring_enter failed: {err}");
                }
            }
        }
    }

    fn poll_backend(&self, timeout: Option<Duration>) {
        let mut woken = std::mem::take(&mut *self.woken_scratch.borrow_mut());
        {
            let mut backend = self.backend.borrow_mut();
            match &mut *backend {
                Backend::Uring(ring) => {
                    if !self.eventfd_armed.get() {
                        let mut buf = self.eventfd_buf.borrow_mut();
                        let entry = io_uring::opcode::Read::new(
                            io_uring::types::Fd(self.remote.eventfd()),
                            buf.as_mut_ptr(),
                            8,
                        )
                        .build()
                        .user_data(TOKEN_EVENTFD);
                        // SAFETY: the 8-byte buffer lives in the Core, which outlives the ring.
                        if unsafe { ring.push(&entry) }.is_ok() {
                            self.eventfd_armed.set(true);
                        }
                    }
                    let res = match timeout {
                        Some(t) if t.is_zero() => ring.submit(),
                        other => ring.submit_and_wait(other),
                    };
                    if let Err(err) = res {
                        panic!("io_uring_enter failed: {err}");
                    }
                    let armed = &self.eventfd_armed;
                    ring.reap(&mut woken, |token, _| {
                        if token == TOKEN_EVENTFD {
                            armed.set(false);
                        }
                    });
                }
                Backend::Epoll(epoll) => epoll.poll(timeout, &mut woken),
            }
        }
        for w in woken.drain(..) {
            w.wake();
        }
        *self.woken_scratch.borrow_mut() = woken;
    }

    fn next_timer_wait(&self) -> Option<Duration> {
        let timers = self.timers.borrow();
        timers
            .pending
            .keys()
            .next()
            .map(|(deadline, _)| deadline.saturating_duration_since(Instant::now()))
    }

    fn fire_timers(&self) {
        let now = Instant::now();
        loop {
            let fired = {
                let mut timers = self.timers.borrow_mut();
                match timers.pending.first_key_value() {
                    Some(((deadline, _), _)) if *deadline <= now => timers.pending.pop_first(),
                    _ => None,
                }
            };
            match fired {
                Some((_, waker)) => waker.wake(),
                None => break,
            }
        }
    }
}

/// Spawns a task on the current shard.
///
/// # Panics
/// When no reactor runs on this thread.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState { result: None, waiter: None }));
    let task_state = Rc::clone(&state);
    let core = Core::current();
    let task = core.spawn_boxed(Box::pin(async move {
        let out = future.await;
        let waiter = {
            let mut st = task_state.borrow_mut();
            st.result = Some(out);
            st.waiter.take()
        };
        if let Some(w) = waiter {
            w.wake();
        }
    }));
    JoinHandle { state, task }
}

struct JoinState<T> {
    result: Option<T>,
    waiter: Option<Waker>,
}

/// Awaits a spawned task's output. Dropping it detaches the task; `abort` drops the task.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
    task: (usize, u32),
}

impl<T> JoinHandle<T> {
    /// Drops the task's future now (its in-flight operations are cancelled; their buffers
    /// stay with the ring until the kernel completes them).
    pub fn abort(&self) {
        Core::current().abort_task(self.task.0, self.task.1);
    }

    /// True once the task has produced its output.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state.borrow().result.is_some()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut st = self.state.borrow_mut();
        if let Some(out) = st.result.take() {
            Poll::Ready(out)
        } else {
            st.waiter = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// Yields once to the other ready tasks of the shard.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// A timer on the shard's timer list.
pub struct Sleep {
    deadline: Instant,
    key: Option<(Instant, u64)>,
}

/// Completes after `duration`.
#[must_use]
pub fn sleep(duration: Duration) -> Sleep {
    Sleep { deadline: Instant::now() + duration, key: None }
}

/// Completes at `deadline`.
#[must_use]
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, key: None }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(key) = self.key.take() {
                Core::current().timers.borrow_mut().pending.remove(&key);
            }
            return Poll::Ready(());
        }
        let core = Core::current();
        let mut timers = core.timers.borrow_mut();
        let key = match self.key {
            Some(key) => key,
            None => {
                timers.next_id += 1;
                let key = (self.deadline, timers.next_id);
                self.key = Some(key);
                key
            }
        };
        timers.pending.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            if let Some(core) = Core::try_current() {
                if let Ok(mut timers) = core.timers.try_borrow_mut() {
                    timers.pending.remove(&key);
                }
            }
        }
    }
}

/// Error of [`timeout_after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `future` for at most `duration`; the future is dropped (and its operations cancelled)
/// when the time runs out.
///
/// # Errors
/// [`Elapsed`] when the deadline passes first.
pub async fn timeout_after<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut timer = std::pin::pin!(sleep(duration));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    })
    .await
}

/// Index of the shard running the current task.
#[must_use]
pub fn current_shard() -> usize {
    Core::with_current(|c| c.shard_id)
}

/// The current shard's buffer pool.
#[must_use]
pub fn buffer_pool() -> BufferPool {
    Core::with_current(|c| c.pool.clone())
}

/// Backend of the current shard.
#[must_use]
pub fn backend_kind() -> BackendKind {
    Core::with_current(|c| c.kind)
}

/// Number of tasks alive on the current shard (not counting the `block_on` future).
#[must_use]
pub fn live_tasks() -> usize {
    Core::with_current(|c| c.live_tasks.get())
}

/// Operations submitted to the current ring and not yet completed (0 on the fallback).
#[must_use]
pub fn ops_in_flight() -> usize {
    Core::with_current(|c| match &*c.backend.borrow() {
        Backend::Uring(ring) => ring.in_flight(),
        Backend::Epoll(e) => e.in_flight(),
    })
}

#[cfg(test)]
mod tests;
