//! The fallback backend: epoll readiness (mio) for sockets and a bounded blocking pool for
//! file I/O, for kernels or sandboxes where io_uring is unavailable.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam::channel::{bounded, Sender, TrySendError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};

use crate::error::{IoError, IoResult};
use crate::executor::Remote;

const TOKEN_EVENTFD: Token = Token(usize::MAX);
const BLOCKING_QUEUE_DEPTH: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Readiness {
    readable: bool,
    writable: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

/// Direction of socket readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

pub(crate) struct EpollDriver {
    poll: mio::Poll,
    events: Events,
    sources: HashMap<RawFd, Readiness>,
    jobs: Sender<Job>,
    eventfd: RawFd,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl EpollDriver {
    pub(crate) fn new(remote: &Arc<Remote>, threads: usize) -> IoResult<EpollDriver> {
        let poll = mio::Poll::new()?;
        let efd = remote.eventfd();
        poll.registry().register(&mut SourceFd(&efd), TOKEN_EVENTFD, Interest::READABLE)?;
        let (jobs, rx) = bounded::<Job>(BLOCKING_QUEUE_DEPTH);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("ferrite-blocking-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .map_err(IoError::from)?;
        }
        Ok(EpollDriver {
            poll,
            events: Events::with_capacity(256),
            sources: HashMap::new(),
            jobs,
            eventfd: efd,
            in_flight: Arc::default(),
        })
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn poll(&mut self, timeout: Option<Duration>, woken: &mut Vec<Waker>) {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(e) => panic!("epoll_wait failed: {e}"),
        }
        for event in &self.events {
            if event.token() == TOKEN_EVENTFD {
                continue;
            }
            let Ok(fd) = RawFd::try_from(event.token().0) else { continue };
            let Some(state) = self.sources.get_mut(&fd) else { continue };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                state.readable = true;
                woken.extend(state.read_waker.take());
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                state.writable = true;
                woken.extend(state.write_waker.take());
            }
        }
        // Drain the eventfd so the next cross-thread wake-up edge-triggers again.
        let mut buf = [0u8; 8];
        loop {
            // SAFETY: reads at most 8 bytes into a stack buffer from the reactor's eventfd,
            // which the reactor's Remote keeps open for as long as this driver exists.
            let n = unsafe { libc::read(self.eventfd, buf.as_mut_ptr().cast(), 8) };
            if n <= 0 {
                break;
            }
        }
    }

    /// Checks readiness of `fd`; registers the waker and returns Pending when not ready.
    pub(crate) fn poll_ready(
        &mut self,
        fd: RawFd,
        dir: Direction,
        cx: &Context<'_>,
    ) -> Poll<IoResult<()>> {
        if !self.sources.contains_key(&fd) {
            let Ok(token) = usize::try_from(fd) else {
                return Poll::Ready(Err(IoError::InvalidInput(libc::EBADF)));
            };
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                return Poll::Ready(Err(IoError::from(e)));
            }
            self.sources
                .insert(fd, Readiness { readable: true, writable: true, ..Default::default() });
        }
        let state = self.sources.get_mut(&fd).expect("inserted above");
        let (ready, waker) = match dir {
            Direction::Read => (&mut state.readable, &mut state.read_waker),
            Direction::Write => (&mut state.writable, &mut state.write_waker),
        };
        if *ready {
            return Poll::Ready(Ok(()));
        }
        // A descriptor closed without `ops::close` (a plain drop) left its entry here while
        // epoll forgot it with the file; a new socket that reuses the number would then never
        // see an event. Adding it again tells the two apart: EEXIST means it is still the
        // registered file, success means it is a new one, which we treat as ready.
        match self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(fd.unsigned_abs() as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            Ok(()) => {
                *state = Readiness { readable: true, writable: true, ..Default::default() };
                Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(IoError::from(e))),
        }
    }

    /// The last attempt on `fd` hit EAGAIN: wait for the next edge.
    pub(crate) fn clear_ready(&mut self, fd: RawFd, dir: Direction) {
        if let Some(state) = self.sources.get_mut(&fd) {
            match dir {
                Direction::Read => state.readable = false,
                Direction::Write => state.writable = false,
            }
        }
    }

    /// Forgets `fd` before it is closed.
    pub(crate) fn deregister(&mut self, fd: RawFd) {
        if let Some(state) = self.sources.remove(&fd) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            for w in state.read_waker.into_iter().chain(state.write_waker) {
                w.wake();
            }
        }
    }

    /// Queues a job on the blocking pool; returns it when the queue is full.
    pub(crate) fn submit_job(&self, job: Job) -> Result<(), Job> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(job),
        }
    }

    pub(crate) fn in_flight_counter(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        Arc::clone(&self.in_flight)
    }
}

/// Result slot shared between a blocking job and the future awaiting it.
pub(crate) struct BlockingSlot<T> {
    pub(crate) result: Mutex<Option<T>>,
    pub(crate) waker: Mutex<Option<Waker>>,
}

impl<T> BlockingSlot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(BlockingSlot { result: Mutex::new(None), waker: Mutex::new(None) })
    }

    pub(crate) fn complete(&self, value: T) {
        *self.result.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
        let waker = self.waker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}
