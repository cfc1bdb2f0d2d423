//! io_uring submission and completion: an operation owns the resources its SQE points into
//! from submission until its completion is reaped, and parks them with the ring when dropped
//! before then.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring::squeue;

use crate::error::{IoError, IoResult};
use crate::executor::{Backend, Core};
use crate::ring::{OpId, Poll as RingPoll};

/// An operation submitted to the ring, holding the resources its SQE points into.
struct UringOp<T: Unpin + 'static> {
    id: Option<OpId>,
    resources: Option<T>,
    core: Rc<Core>,
}

impl<T: Unpin + 'static> Future for UringOp<T> {
    type Output = (i32, u32, T);
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let id = this.id.expect("UringOp polled after completion");
        let polled = match &mut *this.core.backend.borrow_mut() {
            Backend::Uring(ring) => ring.poll(id, cx.waker()),
            Backend::Epoll(_) => unreachable!("uring op on the epoll backend"),
        };
        match polled {
            RingPoll::Ready { result, flags } => {
                this.id = None;
                let resources = this.resources.take().expect("resources present until completion");
                Poll::Ready((result, flags, resources))
            }
            RingPoll::Pending => Poll::Pending,
        }
    }
}

impl<T: Unpin + 'static> Drop for UringOp<T> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let resources: Box<dyn std::any::Any> = Box::new(self.resources.take());
            match self.core.backend.try_borrow_mut() {
                Ok(mut backend) => {
                    if let Backend::Uring(ring) = &mut *backend {
                        ring.abandon(id, resources);
                    }
                }
                // The kernel may still write into these buffers and nothing can park them
                // now: leaking them is the only safe choice (never reached in practice: no
                // op is dropped while the reactor holds the backend).
                Err(_) => std::mem::forget(resources),
            }
        }
    }
}

/// Submits `entry`, whose pointers reach only into heap memory owned by `resources`.
///
/// # Safety
/// Every pointer in `entry` must point into memory owned by `resources` (heap memory that does
/// not move when `resources` moves) or be otherwise valid until completion.
unsafe fn submit<T: Unpin + 'static>(
    core: &Rc<Core>,
    entry: squeue::Entry,
    resources: T,
) -> Result<UringOp<T>, (IoError, T)> {
    let started = match &mut *core.backend.borrow_mut() {
        // SAFETY: forwarded from the caller; `resources` is kept by the op until completion.
        Backend::Uring(ring) => unsafe { ring.start(entry) },
        Backend::Epoll(_) => Err(IoError::Unsupported(libc::ENOSYS)),
    };
    match started {
        Ok(id) => Ok(UringOp { id: Some(id), resources: Some(resources), core: Rc::clone(core) }),
        Err(e) => Err((e, resources)),
    }
}

/// Runs `entry` to completion and returns (result, flags, resources).
///
/// # Safety
/// As for [`submit`].
pub(super) async unsafe fn run<T: Unpin + 'static>(
    core: &Rc<Core>,
    entry: squeue::Entry,
    resources: T,
) -> (IoResult<u32>, u32, T) {
    // SAFETY: forwarded from the caller.
    match unsafe { submit(core, entry, resources) } {
        Ok(op) => {
            let (res, flags, resources) = op.await;
            (IoError::check(res), flags, resources)
        }
        Err((e, resources)) => (Err(e), 0, resources),
    }
}
