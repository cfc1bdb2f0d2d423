//! Operations that move no data: a no-op, a timeout, cancelling and closing descriptors, and
//! the ring's fixed-file table.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, types};

use super::uring_op::run;
use super::FileRef;
use crate::error::{IoError, IoResult};
use crate::executor::{yield_now, Backend, BackendKind, Core};

/// A no-op through the ring (measures the submission/completion round trip).
pub async fn nop() -> IoResult<()> {
    let core = Core::current();
    match core.kind() {
        BackendKind::Uring => {
            // SAFETY: Nop carries no pointers.
            let (res, _, ()) = unsafe { run(&core, opcode::Nop::new().build(), ()) }.await;
            res.map(|_| ())
        }
        BackendKind::Epoll => {
            yield_now().await;
            Ok(())
        }
    }
}

/// IORING_OP_TIMEOUT: completes after `duration` (on the fallback, a reactor timer).
pub async fn timeout(duration: Duration) -> IoResult<()> {
    let core = Core::current();
    match core.kind() {
        BackendKind::Uring => {
            let ts = Box::new(types::Timespec::from(duration));
            let entry = opcode::Timeout::new(std::ptr::from_ref(&*ts)).build();
            // SAFETY: the timespec is boxed and owned by the op.
            let (res, _, _ts) = unsafe { run(&core, entry, ts) }.await;
            match res {
                Ok(_) | Err(IoError::TimedOut) => Ok(()),
                Err(e) => Err(e),
            }
        }
        BackendKind::Epoll => {
            crate::executor::sleep(duration).await;
            Ok(())
        }
    }
}

/// Cancels every operation in flight on `fd` (IORING_ASYNC_CANCEL_FD | ALL). Returns how many
/// were cancelled; each cancelled future completes with [`IoError::Canceled`].
pub async fn cancel_fd(fd: RawFd) -> IoResult<u32> {
    let core = Core::current();
    match core.kind() {
        BackendKind::Uring => {
            let builder = types::CancelBuilder::fd(types::Fd(fd)).all();
            let entry = opcode::AsyncCancel2::new(builder).build();
            // SAFETY: AsyncCancel2 carries no pointers.
            let (res, _, ()) = unsafe { run(&core, entry, ()) }.await;
            match res {
                Ok(n) => Ok(n),
                Err(IoError::NotFound) => Ok(0),
                Err(e) => Err(e),
            }
        }
        BackendKind::Epoll => {
            if let Backend::Epoll(e) = &mut *core.backend.borrow_mut() {
                e.deregister(fd);
            }
            Ok(0)
        }
    }
}

/// Closes `fd` through the ring.
pub async fn close(fd: OwnedFd) -> IoResult<()> {
    let core = Core::current();
    let raw = fd.as_raw_fd();
    match core.kind() {
        BackendKind::Uring => {
            let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
            // SAFETY: Close carries no pointers; we gave up ownership of the fd above.
            let (res, _, ()) =
                unsafe { run(&core, opcode::Close::new(types::Fd(raw)).build(), ()) }.await;
            res.map(|_| ())
        }
        BackendKind::Epoll => {
            if let Backend::Epoll(e) = &mut *core.backend.borrow_mut() {
                e.deregister(raw);
            }
            drop(fd);
            Ok(())
        }
    }
}

/// Registers `fd` in the current ring's fixed-file table. On the fallback returns the raw fd.
///
/// # Errors
/// When the table is full or the kernel refuses.
pub fn register_file(fd: RawFd) -> IoResult<FileRef> {
    let core = Core::current();
    let mut backend = core.backend.borrow_mut();
    match &mut *backend {
        Backend::Uring(ring) => ring.register_file(fd).map(FileRef::Fixed),
        Backend::Epoll(_) => Ok(FileRef::Raw(fd)),
    }
}

/// Releases a fixed-file slot of the current ring.
pub fn unregister_file(file: FileRef) {
    if let FileRef::Fixed(slot) = file {
        if let Some(core) = Core::try_current() {
            if let Backend::Uring(ring) = &mut *core.backend.borrow_mut() {
                ring.unregister_file(slot);
            }
        }
    }
}
