//! Asynchronous operations of the current shard, each mapped to typed errors at the boundary.
//!
//! Every operation takes the buffers it uses by value and returns them with the result, so the
//! kernel never sees memory the caller could touch or free. If the future is dropped before the
//! kernel completes, the buffers stay parked with the reactor until the completion arrives
//! (io_uring) or the blocking job finishes (fallback).
//!
//! On io_uring each call is one SQE; on the epoll fallback, socket calls are non-blocking
//! syscalls retried on readiness and file calls run on the bounded blocking pool.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use crate::buffer::{IoBuf, SharedBuf, StableBytes};
use crate::epoll::{BlockingSlot, Direction};
use crate::error::{IoError, IoResult};
use crate::executor::{yield_now, Backend, BackendKind, Core};
use crate::ring::{OpId, Poll as RingPoll};

/// A file as an operation names it: a raw descriptor, or a slot of the current ring's
/// fixed-file table (io_uring only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRef {
    /// A raw file descriptor.
    Raw(RawFd),
    /// A registered file slot of the current shard's ring.
    Fixed(u32),
}

impl From<RawFd> for FileRef {
    fn from(fd: RawFd) -> Self {
        FileRef::Raw(fd)
    }
}

macro_rules! with_fd {
    ($file:expr, $fd:ident => $build:expr) => {
        match $file {
            FileRef::Raw(raw) => {
                let $fd = types::Fd(raw);
                $build
            }
            FileRef::Fixed(slot) => {
                let $fd = types::Fixed(slot);
                $build
            }
        }
    };
}

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
async unsafe fn run<T: Unpin + 'static>(
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

/// Runs `job` on the blocking pool of the current (fallback) shard.
async fn blocking<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
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
async fn readiness<R>(fd: RawFd, dir: Direction, mut attempt: impl FnMut() -> isize) -> IoResult<R>
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

fn raw_fd(file: FileRef) -> IoResult<RawFd> {
    match file {
        FileRef::Raw(fd) => Ok(fd),
        FileRef::Fixed(_) => Err(IoError::InvalidInput(libc::EBADF)),
    }
}

fn len_u32(len: usize) -> IoResult<u32> {
    u32::try_from(len).map_err(|_| IoError::InvalidInput(libc::EINVAL))
}

fn syscall_result(n: isize) -> IoResult<usize> {
    if n < 0 {
        Err(IoError::last_os_error())
    } else {
        Ok(n.unsigned_abs())
    }
}

/// Reads up to `buf.len()` bytes at `offset`. Uses the fixed-buffer opcode when `buf` comes
/// from the shard's registered pool.
pub async fn read_at(file: FileRef, mut buf: IoBuf, offset: u64) -> (IoResult<usize>, IoBuf) {
    let core = Core::current();
    let len = match len_u32(buf.len()) {
        Ok(l) => l,
        Err(e) => return (Err(e), buf),
    };
    match core.kind() {
        BackendKind::Uring => {
            let ptr = buf.as_mut_ptr();
            let fixed = buf.fixed_index().filter(|_| buf.pool_id() == core.registered_pool());
            let entry = match fixed {
                Some(index) => {
                    with_fd!(file, fd => opcode::ReadFixed::new(fd, ptr, len, index).offset(offset).build())
                }
                None => {
                    with_fd!(file, fd => opcode::Read::new(fd, ptr, len).offset(offset).build())
                }
            };
            // SAFETY: the SQE points into `buf`'s heap memory, which the op owns.
            let (res, _, buf) = unsafe { run(&core, entry, buf) }.await;
            (res.map(|n| n as usize), buf)
        }
        BackendKind::Epoll => {
            let fd = match raw_fd(file) {
                Ok(fd) => fd,
                Err(e) => return (Err(e), buf),
            };
            blocking(move || {
                let mut buf = buf;
                // SAFETY: pread into the buffer's own memory, bounded by its length.
                let n = unsafe {
                    libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t)
                };
                (syscall_result(n), buf)
            })
            .await
        }
    }
}

/// Writes `buf` at `offset`; returns the bytes written (may be short).
pub async fn write_at(file: FileRef, buf: IoBuf, offset: u64) -> (IoResult<usize>, IoBuf) {
    write_at_flags(file, buf, offset, 0).await
}

/// [`write_at`] with `pwritev2` flags (`RWF_DSYNC`: the write is durable when it completes,
/// as with `O_DSYNC`; on a device with a volatile cache the kernel sends it with FUA).
pub async fn write_at_flags(
    file: FileRef,
    buf: IoBuf,
    offset: u64,
    rw_flags: i32,
) -> (IoResult<usize>, IoBuf) {
    let core = Core::current();
    let len = match len_u32(buf.len()) {
        Ok(l) => l,
        Err(e) => return (Err(e), buf),
    };
    match core.kind() {
        BackendKind::Uring => {
            let ptr = buf.as_ptr();
            let fixed = buf.fixed_index().filter(|_| buf.pool_id() == core.registered_pool());
            let entry = match fixed {
                Some(index) => {
                    with_fd!(file, fd => opcode::WriteFixed::new(fd, ptr, len, index).offset(offset).rw_flags(rw_flags).build())
                }
                None => {
                    with_fd!(file, fd => opcode::Write::new(fd, ptr, len).offset(offset).rw_flags(rw_flags).build())
                }
            };
            // SAFETY: the SQE points into `buf`'s heap memory, which the op owns.
            let (res, _, buf) = unsafe { run(&core, entry, buf) }.await;
            (res.map(|n| n as usize), buf)
        }
        BackendKind::Epoll => {
            let fd = match raw_fd(file) {
                Ok(fd) => fd,
                Err(e) => return (Err(e), buf),
            };
            blocking(move || {
                let iov =
                    libc::iovec { iov_base: buf.as_ptr().cast_mut().cast(), iov_len: buf.len() };
                // SAFETY: pwritev2 from the buffer's own memory, bounded by its length; the
                // iovec lives across the call.
                let n = unsafe { libc::pwritev2(fd, &iov, 1, offset as libc::off_t, rw_flags) };
                (syscall_result(n), buf)
            })
            .await
        }
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, retrying short reads; end of file is an error.
pub async fn read_exact_at(file: FileRef, buf: IoBuf, offset: u64) -> (IoResult<()>, IoBuf) {
    let want = buf.len();
    let (res, mut buf) = read_at(file, buf, offset).await;
    match res {
        Ok(n) if n == want => (Ok(()), buf),
        Ok(0) => (Err(IoError::Short { expected_bytes: want, done_bytes: 0 }), buf),
        Ok(n) => {
            // Rare: finish the tail through a bounce of the remaining range.
            let mut tail = IoBuf::zeroed(want - n);
            let (res2, tail_back) = Box::pin(read_exact_at(file, tail, offset + n as u64)).await;
            tail = tail_back;
            if res2.is_ok() {
                buf[n..].copy_from_slice(&tail);
            }
            (res2, buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// Writes all of `buf` at `offset`, retrying short writes.
pub async fn write_all_at(file: FileRef, buf: IoBuf, offset: u64) -> (IoResult<()>, IoBuf) {
    let want = buf.len();
    let (res, buf) = write_at(file, buf, offset).await;
    match res {
        Ok(n) if n == want => (Ok(()), buf),
        Ok(0) => (Err(IoError::Short { expected_bytes: want, done_bytes: 0 }), buf),
        Ok(n) => {
            let tail = IoBuf::from_slice(&buf[n..]);
            let (res2, _) = Box::pin(write_all_at(file, tail, offset + n as u64)).await;
            (res2, buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// Vectored read at `offset` into every buffer in order.
pub async fn readv_at(
    file: FileRef,
    bufs: Vec<IoBuf>,
    offset: u64,
) -> (IoResult<usize>, Vec<IoBuf>) {
    vectored(file, bufs, offset, false).await
}

/// Vectored write at `offset` from every buffer in order.
pub async fn writev_at(
    file: FileRef,
    bufs: Vec<IoBuf>,
    offset: u64,
) -> (IoResult<usize>, Vec<IoBuf>) {
    vectored(file, bufs, offset, true).await
}

async fn vectored(
    file: FileRef,
    mut bufs: Vec<IoBuf>,
    offset: u64,
    write: bool,
) -> (IoResult<usize>, Vec<IoBuf>) {
    let iovecs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() })
        .collect();
    // SAFETY: every iovec points into a buffer of `bufs`, uniquely owned here.
    unsafe { vectored_owned(file, iovecs, bufs, offset, write) }.await
}

/// Vectored write at `offset` from shared buffers, in order, without assembling them; returns
/// the bytes written (may be short).
pub async fn writev_shared_at(
    file: FileRef,
    bufs: Vec<SharedBuf>,
    offset: u64,
) -> (IoResult<usize>, Vec<SharedBuf>) {
    let iovecs: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec { iov_base: b.as_ptr().cast_mut().cast(), iov_len: b.len() })
        .collect();
    // SAFETY: every iovec points into memory a view of `bufs` keeps alive and unmoved; a write
    // only reads through it.
    unsafe { vectored_owned(file, iovecs, bufs, offset, true) }.await
}

/// Runs a readv/writev over `iovecs`.
///
/// # Safety
/// Every iovec must point into memory that `owner` keeps alive and in place, writable for a
/// read, and not otherwise accessed until the operation completes.
async unsafe fn vectored_owned<T: Send + Unpin + 'static>(
    file: FileRef,
    iovecs: Vec<libc::iovec>,
    owner: T,
    offset: u64,
    write: bool,
) -> (IoResult<usize>, T) {
    let core = Core::current();
    let count = match len_u32(iovecs.len()) {
        Ok(c) => c,
        Err(e) => return (Err(e), owner),
    };
    match core.kind() {
        BackendKind::Uring => {
            let ptr = iovecs.as_ptr();
            let entry = if write {
                with_fd!(file, fd => opcode::Writev::new(fd, ptr, count).offset(offset).build())
            } else {
                with_fd!(file, fd => opcode::Readv::new(fd, ptr, count).offset(offset).build())
            };
            // SAFETY: the iovec array and the memory it points to are owned by the op.
            let (res, _, (owner, _iovecs)) =
                unsafe { run(&core, entry, (owner, SendIovecs(iovecs))) }.await;
            (res.map(|n| n as usize), owner)
        }
        BackendKind::Epoll => {
            let fd = match raw_fd(file) {
                Ok(fd) => fd,
                Err(e) => return (Err(e), owner),
            };
            let moved = SendIovecs(iovecs);
            blocking(move || {
                let iovecs = moved;
                let iov_count = libc::c_int::try_from(iovecs.0.len()).unwrap_or(libc::c_int::MAX);
                // SAFETY: the iovecs point into memory `owner` keeps alive; this closure owns
                // it until it returns.
                let n = unsafe {
                    if write {
                        libc::pwritev(fd, iovecs.0.as_ptr(), iov_count, offset as libc::off_t)
                    } else {
                        libc::preadv(fd, iovecs.0.as_ptr(), iov_count, offset as libc::off_t)
                    }
                };
                (syscall_result(n), owner)
            })
            .await
        }
    }
}

/// An iovec array moved to a blocking-pool thread together with the buffers it points into.
struct SendIovecs(Vec<libc::iovec>);
// SAFETY: the pointers reach only into IoBufs moved along with this value to the same thread.
unsafe impl Send for SendIovecs {}

/// fsync(2): data and metadata durable.
pub async fn fsync(file: FileRef) -> IoResult<()> {
    sync_file(file, false).await
}

/// fdatasync(2): data durable.
pub async fn fdatasync(file: FileRef) -> IoResult<()> {
    sync_file(file, true).await
}

async fn sync_file(file: FileRef, data_only: bool) -> IoResult<()> {
    let core = Core::current();
    match core.kind() {
        BackendKind::Uring => {
            let flags =
                if data_only { types::FsyncFlags::DATASYNC } else { types::FsyncFlags::empty() };
            let entry = with_fd!(file, fd => opcode::Fsync::new(fd).flags(flags).build());
            // SAFETY: Fsync carries no pointers.
            let (res, _, ()) = unsafe { run(&core, entry, ()) }.await;
            res.map(|_| ())
        }
        BackendKind::Epoll => {
            let fd = raw_fd(file)?;
            blocking(move || {
                // SAFETY: plain syscall on a descriptor.
                let rc = unsafe {
                    if data_only {
                        libc::fdatasync(fd)
                    } else {
                        libc::fsync(fd)
                    }
                };
                syscall_result(rc as isize).map(|_| ())
            })
            .await
        }
    }
}

/// fallocate(2) modes used by ferrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallocateMode {
    /// Reserve space (mode 0).
    Allocate,
    /// FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: deallocate, reads return zeros.
    PunchHole,
    /// FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE: make the range read as zeros.
    ZeroRange,
}

impl FallocateMode {
    fn flags(self) -> i32 {
        match self {
            FallocateMode::Allocate => 0,
            FallocateMode::PunchHole => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            FallocateMode::ZeroRange => libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        }
    }
}

/// fallocate(2) on `[offset, offset + len)`.
pub async fn fallocate(file: FileRef, mode: FallocateMode, offset: u64, len: u64) -> IoResult<()> {
    let core = Core::current();
    match core.kind() {
        BackendKind::Uring => {
            let entry = with_fd!(file, fd => opcode::Fallocate::new(fd, len).offset(offset).mode(mode.flags()).build());
            // SAFETY: Fallocate carries no pointers.
            let (res, _, ()) = unsafe { run(&core, entry, ()) }.await;
            res.map(|_| ())
        }
        BackendKind::Epoll => {
            let fd = raw_fd(file)?;
            blocking(move || {
                // SAFETY: plain syscall on a descriptor.
                let rc = unsafe {
                    libc::fallocate(fd, mode.flags(), offset as libc::off_t, len as libc::off_t)
                };
                syscall_result(rc as isize).map(|_| ())
            })
            .await
        }
    }
}

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

// ----- sockets -----

fn sockaddr_from(addr: &SocketAddr) -> (Box<libc::sockaddr_storage>, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: Box<libc::sockaddr_storage> = Box::new(unsafe { std::mem::zeroed() });
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut *storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut *storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, libc::socklen_t::try_from(len).unwrap_or(0))
}

/// Decodes a kernel-filled socket address.
#[must_use]
pub fn sockaddr_to(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*std::ptr::from_ref(storage).cast() };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*std::ptr::from_ref(storage).cast() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}

fn new_socket(addr: &SocketAddr, nonblocking: bool) -> IoResult<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let mut ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    if nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(family, ty, 0) };
    if fd < 0 {
        return Err(IoError::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: i32) -> IoResult<()> {
    // SAFETY: setsockopt with a pointer to a live i32 and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    syscall_result(rc as isize).map(|_| ())
}

/// Sets TCP_NODELAY (iSCSI PDUs are latency-sensitive).
///
/// # Errors
/// When the kernel refuses the option.
pub fn set_nodelay(fd: RawFd) -> IoResult<()> {
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Creates a listening TCP socket on `addr` (SO_REUSEADDR, backlog 1024). Non-blocking on the
/// fallback backend.
///
/// # Errors
/// When the address is in use or cannot be bound.
pub fn tcp_listen(addr: SocketAddr) -> IoResult<OwnedFd> {
    let nonblocking = Core::try_current().is_some_and(|c| c.kind() == BackendKind::Epoll);
    let fd = new_socket(&addr, nonblocking)?;
    set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let (storage, len) = sockaddr_from(&addr);
    // SAFETY: bind with a valid sockaddr of `len` bytes.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&*storage).cast(), len) };
    syscall_result(rc as isize)?;
    // SAFETY: listen on our socket.
    let rc = unsafe { libc::listen(fd.as_raw_fd(), 1024) };
    syscall_result(rc as isize)?;
    Ok(fd)
}

/// Local address of a bound socket.
///
/// # Errors
/// When getsockname fails.
pub fn local_addr(fd: RawFd) -> IoResult<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is valid; getsockname fills at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    let rc = unsafe { libc::getsockname(fd, std::ptr::from_mut(&mut storage).cast(), &mut len) };
    syscall_result(rc as isize)?;
    sockaddr_to(&storage).ok_or(IoError::InvalidInput(libc::EAFNOSUPPORT))
}

/// Accepts one connection.
pub async fn accept(listener: RawFd) -> IoResult<(OwnedFd, Option<SocketAddr>)> {
    let core = Core::current();
    match core.kind() {
        BackendKind::Uring => {
            // SAFETY: zeroed sockaddr_storage is valid.
            let mut addr: Box<(libc::sockaddr_storage, libc::socklen_t)> =
                Box::new((unsafe { std::mem::zeroed() }, 0));
            addr.1 = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let entry = opcode::Accept::new(
                types::Fd(listener),
                std::ptr::from_mut(&mut addr.0).cast(),
                std::ptr::from_mut(&mut addr.1),
            )
            .flags(libc::SOCK_CLOEXEC)
            .build();
            // SAFETY: the address buffer is boxed and owned by the op.
            let (res, _, addr) = unsafe { run(&core, entry, addr) }.await;
            let fd = res?;
            let fd = i32::try_from(fd).map_err(|_| IoError::Os(libc::EBADF))?;
            // SAFETY: the kernel returned a fresh descriptor we now own.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            Ok((owned, sockaddr_to(&addr.0)))
        }
        BackendKind::Epoll => {
            // SAFETY: zeroed sockaddr_storage is valid.
            let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let fd: i32 = readiness(listener, Direction::Read, || {
                let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                // SAFETY: accept4 fills at most `len` bytes of storage.
                unsafe {
                    libc::accept4(
                        listener,
                        std::ptr::from_mut(&mut storage).cast(),
                        &mut len,
                        libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    ) as isize
                }
            })
            .await?;
            // SAFETY: a fresh descriptor we now own.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            Ok((owned, sockaddr_to(&storage)))
        }
    }
}

/// Opens a TCP connection to `addr`.
pub async fn connect(addr: SocketAddr) -> IoResult<OwnedFd> {
    let core = Core::current();
    match core.kind() {
        BackendKind::Uring => {
            let fd = new_socket(&addr, false)?;
            let (storage, len) = sockaddr_from(&addr);
            let entry = opcode::Connect::new(
                types::Fd(fd.as_raw_fd()),
                std::ptr::from_ref(&*storage).cast(),
                len,
            )
            .build();
            // SAFETY: the address is boxed and owned by the op.
            let (res, _, _storage) = unsafe { run(&core, entry, storage) }.await;
            res?;
            Ok(fd)
        }
        BackendKind::Epoll => {
            let fd = new_socket(&addr, true)?;
            let (storage, len) = sockaddr_from(&addr);
            // SAFETY: connect with a valid sockaddr.
            let rc =
                unsafe { libc::connect(fd.as_raw_fd(), std::ptr::from_ref(&*storage).cast(), len) };
            if rc < 0 {
                let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                if err != libc::EINPROGRESS {
                    return Err(IoError::from_errno(err));
                }
                let raw = fd.as_raw_fd();
                let _: usize = readiness(raw, Direction::Write, || {
                    let mut so_error: i32 = 0;
                    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
                    // SAFETY: getsockopt into a live i32.
                    unsafe {
                        libc::getsockopt(
                            raw,
                            libc::SOL_SOCKET,
                            libc::SO_ERROR,
                            std::ptr::from_mut(&mut so_error).cast(),
                            &mut len,
                        );
                    }
                    if so_error == 0 {
                        0
                    } else {
                        // SAFETY: sets errno for the caller to read.
                        unsafe { *libc::__errno_location() = so_error };
                        -1
                    }
                })
                .await?;
            }
            Ok(fd)
        }
    }
}

/// Receives taken without the ring in a row on this thread before one goes through it (so
/// one busy connection cannot keep its shard from other work).
const EAGER_RECV_RUN: u32 = 64;

thread_local! {
    static EAGER_RECVS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether the next receive may try the socket directly: true for up to [`EAGER_RECV_RUN`]
/// receives in a row, then false once (that receive goes through the ring and its task waits
/// for the next loop turn).
fn eager_recv_allowed() -> bool {
    EAGER_RECVS.with(|c| {
        let n = c.get() + 1;
        if n > EAGER_RECV_RUN {
            c.set(0);
            false
        } else {
            c.set(n);
            true
        }
    })
}

/// Receives into `buf[range]`; returns bytes received (0 = peer closed).
pub async fn recv(fd: RawFd, mut buf: IoBuf, range: Range<usize>) -> (IoResult<usize>, IoBuf) {
    if range.end > buf.len() || range.start > range.end {
        return (Err(IoError::InvalidInput(libc::EINVAL)), buf);
    }
    let core = Core::current();
    let len = range.end - range.start;
    match core.kind() {
        BackendKind::Uring => {
            // SAFETY: range checked against the buffer length above.
            let ptr = unsafe { buf.as_mut_ptr().add(range.start) };
            if len > 0 && eager_recv_allowed() {
                // Bytes already queued on the socket are taken at once, without a trip
                // through the ring: a connection with many commands queued dispatches them
                // all in one pass, so their device I/O reaches the ring in one submission.
                // SAFETY: receives into the checked range of our buffer.
                let n = unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) };
                if n >= 0 {
                    return (Ok(n.unsigned_abs()), buf);
                }
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if errno != libc::EAGAIN && errno != libc::EINTR {
                    return (Err(IoError::from_errno(errno)), buf);
                }
            }
            let Ok(len) = len_u32(len) else {
                return (Err(IoError::InvalidInput(libc::EINVAL)), buf);
            };
            let entry = opcode::Recv::new(types::Fd(fd), ptr, len).build();
            // SAFETY: the SQE points into `buf`, owned by the op.
            let (res, _, buf) = unsafe { run(&core, entry, buf) }.await;
            (res.map(|n| n as usize), buf)
        }
        BackendKind::Epoll => {
            let res = readiness(fd, Direction::Read, || {
                // SAFETY: recv into the checked range of our buffer.
                unsafe { libc::recv(fd, buf.as_mut_ptr().add(range.start).cast(), len, 0) }
            })
            .await;
            (res, buf)
        }
    }
}

/// Receives exactly `range.len()` bytes into `buf[range]`; a closed peer is
/// [`IoError::Disconnected`].
pub async fn recv_exact(fd: RawFd, mut buf: IoBuf, range: Range<usize>) -> (IoResult<()>, IoBuf) {
    let mut pos = range.start;
    while pos < range.end {
        let (res, back) = recv(fd, buf, pos..range.end).await;
        buf = back;
        match res {
            Ok(0) => return (Err(IoError::Disconnected(libc::ECONNRESET)), buf),
            Ok(n) => pos += n,
            Err(IoError::Retry(_)) => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// Sends `buf[range]`; returns bytes sent.
pub async fn send(fd: RawFd, buf: IoBuf, range: Range<usize>) -> (IoResult<usize>, IoBuf) {
    if range.end > buf.len() || range.start > range.end {
        return (Err(IoError::InvalidInput(libc::EINVAL)), buf);
    }
    let core = Core::current();
    let len = range.end - range.start;
    match core.kind() {
        BackendKind::Uring => {
            // SAFETY: range checked above.
            let ptr = unsafe { buf.as_ptr().add(range.start) };
            let Ok(len) = len_u32(len) else {
                return (Err(IoError::InvalidInput(libc::EINVAL)), buf);
            };
            let entry =
                opcode::Send::new(types::Fd(fd), ptr, len).flags(libc::MSG_NOSIGNAL).build();
            // SAFETY: the SQE points into `buf`, owned by the op.
            let (res, _, buf) = unsafe { run(&core, entry, buf) }.await;
            (res.map(|n| n as usize), buf)
        }
        BackendKind::Epoll => {
            let res = readiness(fd, Direction::Write, || {
                // SAFETY: send from the checked range of our buffer.
                unsafe {
                    libc::send(fd, buf.as_ptr().add(range.start).cast(), len, libc::MSG_NOSIGNAL)
                }
            })
            .await;
            (res, buf)
        }
    }
}

/// Zero-copy send of `buf[range]` (IORING_OP_SEND_ZC); the buffer comes back only after the
/// kernel's notification that it no longer references it. Plain send on the fallback or when
/// the kernel lacks it.
pub async fn send_zc(fd: RawFd, buf: IoBuf, range: Range<usize>) -> (IoResult<usize>, IoBuf) {
    if range.end > buf.len() || range.start > range.end {
        return (Err(IoError::InvalidInput(libc::EINVAL)), buf);
    }
    let core = Core::current();
    let zc = match &*core.backend.borrow() {
        Backend::Uring(ring) => ring.features().send_zc,
        Backend::Epoll(_) => false,
    };
    if !zc {
        return send(fd, buf, range).await;
    }
    // SAFETY: range checked above.
    let ptr = unsafe { buf.as_ptr().add(range.start) };
    let Ok(len) = len_u32(range.end - range.start) else {
        return (Err(IoError::InvalidInput(libc::EINVAL)), buf);
    };
    let fixed = buf.fixed_index().filter(|_| buf.pool_id() == core.registered_pool());
    let entry = opcode::SendZc::new(types::Fd(fd), ptr, len)
        .buf_index(fixed)
        .flags(libc::MSG_NOSIGNAL)
        .build();
    // SAFETY: the SQE points into `buf`, owned by the op until the notification CQE.
    let (res, _, buf) = unsafe { run(&core, entry, buf) }.await;
    (res.map(|n| n as usize), buf)
}

/// Sends every buffer's range in order with one sendmsg (a vectored send, no copy).
pub async fn sendmsg(
    fd: RawFd,
    parts: Vec<(IoBuf, Range<usize>)>,
) -> (IoResult<usize>, Vec<(IoBuf, Range<usize>)>) {
    for (buf, range) in &parts {
        if range.end > buf.len() || range.start > range.end {
            return (Err(IoError::InvalidInput(libc::EINVAL)), parts);
        }
    }
    let core = Core::current();
    let iovecs: Vec<libc::iovec> = parts
        .iter()
        .map(|(buf, range)| libc::iovec {
            // SAFETY: range checked above.
            iov_base: unsafe { buf.as_ptr().add(range.start) }.cast_mut().cast(),
            iov_len: range.end - range.start,
        })
        .collect();
    // SAFETY: msghdr is plain old data; zero is a valid value.
    let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    msg.msg_iov = iovecs.as_ptr().cast_mut();
    msg.msg_iovlen = iovecs.len();
    match core.kind() {
        BackendKind::Uring => {
            let entry = opcode::SendMsg::new(types::Fd(fd), std::ptr::from_ref(&*msg))
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
            // SAFETY: msghdr, iovecs and buffers are all owned by the op.
            let (res, _, (parts, _iovecs, _msg)) =
                unsafe { run(&core, entry, (parts, SendIovecs(iovecs), msg)) }.await;
            (res.map(|n| n as usize), parts)
        }
        BackendKind::Epoll => {
            let res = readiness(fd, Direction::Write, || {
                // SAFETY: msghdr points to iovecs into buffers we own for this call.
                unsafe { libc::sendmsg(fd, std::ptr::from_ref(&*msg), libc::MSG_NOSIGNAL) }
            })
            .await;
            drop(iovecs);
            (res, parts)
        }
    }
}

/// Sends all bytes of every part, retrying partial sends.
pub async fn send_all(
    fd: RawFd,
    mut parts: Vec<(IoBuf, Range<usize>)>,
) -> (IoResult<()>, Vec<IoBuf>) {
    let original: Vec<Range<usize>> = parts.iter().map(|(_, r)| r.clone()).collect();
    loop {
        let remaining: usize = parts.iter().map(|(_, r)| r.len()).sum();
        if remaining == 0 {
            break;
        }
        let (res, back) = sendmsg(fd, parts).await;
        parts = back;
        let mut sent = match res {
            Ok(0) => return (Err(IoError::Disconnected(libc::EPIPE)), strip(parts)),
            Ok(n) => n,
            Err(IoError::Retry(_)) => 0,
            Err(e) => return (Err(e), strip(parts)),
        };
        for (_, range) in &mut parts {
            let take = sent.min(range.len());
            range.start += take;
            sent -= take;
        }
    }
    let _ = original;
    (Ok(()), strip(parts))
}

fn strip(parts: Vec<(IoBuf, Range<usize>)>) -> Vec<IoBuf> {
    parts.into_iter().map(|(b, _)| b).collect()
}

/// One piece of a vectored send: `bufs[buf_index][range]`.
pub type Segment = (usize, Range<usize>);

/// Sends the segments in order with one sendmsg; a buffer may appear in several segments
/// (a header arena holding many PDU headers, for instance). Returns the bytes sent.
pub async fn send_vectored<B: StableBytes>(
    fd: RawFd,
    bufs: Vec<B>,
    segments: &[Segment],
) -> (IoResult<usize>, Vec<B>) {
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(segments.len());
    for (index, range) in segments {
        let Some(buf) = bufs.get(*index) else {
            return (Err(IoError::InvalidInput(libc::EINVAL)), bufs);
        };
        if range.end > buf.len() || range.start > range.end {
            return (Err(IoError::InvalidInput(libc::EINVAL)), bufs);
        }
        if range.is_empty() {
            continue;
        }
        iovecs.push(libc::iovec {
            // SAFETY: range checked against the buffer above.
            iov_base: unsafe { buf.as_ptr().add(range.start) }.cast_mut().cast(),
            iov_len: range.len(),
        });
    }
    if iovecs.is_empty() {
        return (Ok(0), bufs);
    }
    let core = Core::current();
    // SAFETY: msghdr is plain old data; zero is a valid value.
    let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    msg.msg_iov = iovecs.as_ptr().cast_mut();
    msg.msg_iovlen = iovecs.len().min(1024);
    match core.kind() {
        BackendKind::Uring => {
            let entry = opcode::SendMsg::new(types::Fd(fd), std::ptr::from_ref(&*msg))
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
            // SAFETY: msghdr, iovecs and buffers are all owned by the op.
            let (res, _, (bufs, _iovecs, _msg)) =
                unsafe { run(&core, entry, (bufs, SendIovecs(iovecs), msg)) }.await;
            (res.map(|n| n as usize), bufs)
        }
        BackendKind::Epoll => {
            let res = readiness(fd, Direction::Write, || {
                // SAFETY: msghdr points to iovecs into buffers we own for this call.
                unsafe { libc::sendmsg(fd, std::ptr::from_ref(&*msg), libc::MSG_NOSIGNAL) }
            })
            .await;
            drop(iovecs);
            (res, bufs)
        }
    }
}

/// Sends every segment completely, retrying partial sends.
pub async fn send_vectored_all<B: StableBytes>(
    fd: RawFd,
    mut bufs: Vec<B>,
    segments: &[Segment],
) -> (IoResult<()>, Vec<B>) {
    let mut pending: Vec<Segment> = segments.to_vec();
    let mut first = 0;
    while first < pending.len() {
        let (res, back) = send_vectored(fd, bufs, &pending[first..]).await;
        bufs = back;
        let mut sent = match res {
            Ok(0) => return (Err(IoError::Disconnected(libc::EPIPE)), bufs),
            Ok(n) => n,
            Err(IoError::Retry(_)) => 0,
            Err(e) => return (Err(e), bufs),
        };
        while first < pending.len() && sent > 0 {
            let seg_len = pending[first].1.len();
            if sent >= seg_len {
                sent -= seg_len;
                first += 1;
            } else {
                pending[first].1.start += sent;
                sent = 0;
            }
        }
        while first < pending.len() && pending[first].1.is_empty() {
            first += 1;
        }
    }
    (Ok(()), bufs)
}
