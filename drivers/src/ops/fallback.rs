//! How an operation runs on the epoll fallback: file calls as jobs on the shard's bounded
//! blocking pool, socket calls as non-blocking syscalls retried on readiness.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::task::Poll;

use crate::epoll::{BlockingSlot, Direction};
use crate::error::{IoError, IoResult};
use crate::executor::{yield_now, Backend, Core};

/// Runs `job` on the blocking pool of the current (fallback) shard.
pub(super) async fn blocking<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    let core = Core::current();
    let slot = BlockingSlot::<T>::new();
    let job_slot = std::sync::Arc::clone(&slot);
    let counter = match &*core.backend.borrow() {
        Backend::Epoll(e) => e.in_flight_counter(),
        Backend::Uring(_) => unreachable!("blocking job on the io_uring backend"),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let job_counter = std::sync::Arc::clone(&counter);
    let mut job: Box<dyn FnOnce() + Send> = Box::new(move || {
        let value = job();
        job_slot.complete(value);
        job_counter.fetch_sub(1, Ordering::Relaxed);
    });
    loop {
        let rejected = match &*core.backend.borrow() {
            Backend::Epoll(e) => e.submit_job(job),
            Backend::Uring(_) => unreachable!(),
        };
        match rejected {
            Ok(()) => break,
            Err(back) => {
                job = back;
                yield_now().await;
            }
        }
    }
    std::future::poll_fn(|cx| {
        let mut result = slot.result.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = result.take() {
            return Poll::Ready(v);
        }
        *slot.waker.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Retries a non-blocking socket call on readiness (fallback backend).
pub(super) async fn readiness<R>(
    fd: RawFd,
    dir: Direction,
    mut attempt: impl FnMut() -> isize,
) -> IoResult<R>
where
    R: TryFrom<isize>,
{
    let core = Core::current();
    loop {
        std::future::poll_fn(|cx| match &mut *core.backend.borrow_mut() {
            Backend::Epoll(e) => e.poll_ready(fd, dir, cx),
            Backend::Uring(_) => Poll::Ready(Err(IoError::Unsupported(libc::ENOSYS))),
        })
        .await?;
        let n = attempt();
        if n >= 0 {
            return R::try_from(n).map_err(|_| IoError::Os(libc::EOVERFLOW));
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        match errno {
            libc::EAGAIN => {
                if let Backend::Epoll(e) = &mut *core.backend.borrow_mut() {
                    e.clear_ready(fd, dir);
                }
            }
            libc::EINTR => {}
            other => return Err(IoError::from_errno(other)),
        }
    }
}
