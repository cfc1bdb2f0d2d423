//! File operations: positioned reads and writes (plain, fixed-buffer, vectored), fsync,
//! fdatasync and fallocate.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::fallback::blocking;
use super::uring_op::run;
use super::{len_u32, raw_fd, syscall_result, FileRef, SendIovecs};
use crate::buffer::{IoBuf, SharedBuf};
use crate::error::{IoError, IoResult};
use crate::executor::{BackendKind, Core};

/// Reads up to `buf.len()` bytes at `offset`. Uses the fixed-buffer opcode when `buf` comes
/// from the shard's registered pool.
pub async fn read_at(file: FileRef, buf: IoBuf, offset: u64) -> (IoResult<usize>, IoBuf) {
    let sqe = |buf: &mut IoBuf, len, fixed| {
        let ptr = buf.as_mut_ptr();
        match fixed {
            Some(index) => {
                with_fd!(file, fd => opcode::ReadFixed::new(fd, ptr, len, index).offset(offset).build())
            }
            None => with_fd!(file, fd => opcode::Read::new(fd, ptr, len).offset(offset).build()),
        }
    };
    let syscall = move |fd, buf: &mut IoBuf| {
        // SAFETY: pread into the buffer's own memory, bounded by its length.
        unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t) }
    };
    // SAFETY: the SQE points into `buf`, bounded by its length.
    unsafe { positioned(file, buf, sqe, syscall) }.await
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
    let sqe = |buf: &mut IoBuf, len, fixed| {
        let ptr = buf.as_ptr();
        match fixed {
            Some(index) => {
                with_fd!(file, fd => opcode::WriteFixed::new(fd, ptr, len, index).offset(offset).rw_flags(rw_flags).build())
            }
            None => {
                with_fd!(file, fd => opcode::Write::new(fd, ptr, len).offset(offset).rw_flags(rw_flags).build())
            }
        }
    };
    let syscall = move |fd, buf: &mut IoBuf| {
        let iov = libc::iovec { iov_base: buf.as_ptr().cast_mut().cast(), iov_len: buf.len() };
        // SAFETY: pwritev2 from the buffer's own memory, bounded by its length; the iovec
        // lives across the call.
        unsafe { libc::pwritev2(fd, &iov, 1, offset as libc::off_t, rw_flags) }
    };
    // SAFETY: the SQE points into `buf`, bounded by its length.
    unsafe { positioned(file, buf, sqe, syscall) }.await
}

/// One positioned read or write of `buf`: on io_uring the SQE `sqe` builds from the buffer, its
/// length and its fixed-buffer index (when it comes from the shard's registered pool); on the
/// fallback `syscall` (a positioned read or write on the descriptor) on the blocking pool.
///
/// # Safety
/// The SQE `sqe` builds may point only into the buffer it is given, within its length.
async unsafe fn positioned(
    file: FileRef,
    mut buf: IoBuf,
    sqe: impl FnOnce(&mut IoBuf, u32, Option<u16>) -> squeue::Entry,
    syscall: impl FnOnce(RawFd, &mut IoBuf) -> isize + Send + 'static,
) -> (IoResult<usize>, IoBuf) {
    let core = Core::current();
    let len = match len_u32(buf.len()) {
        Ok(l) => l,
        Err(e) => return (Err(e), buf),
    };
    match core.kind() {
        BackendKind::Uring => {
            let fixed = buf.fixed_index().filter(|_| buf.pool_id() == core.registered_pool());
            let entry = sqe(&mut buf, len, fixed);
            // SAFETY: the SQE points into `buf`'s heap memory (the caller's promise), which the
            // op owns.
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
                let n = syscall(fd, &mut buf);
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

/// fsync(2): data and metadata durable.
pub async fn fsync(file: FileRef) -> IoResult<()> {
    sync_file(file, false).await
}

/// fdatasync(2): data durable.
pub async fn fdatasync(file: FileRef) -> IoResult<()> {
    sync_file(file, true).await
}

async fn sync_file(file: FileRef, data_only: bool) -> IoResult<()> {
    let flags = if data_only { types::FsyncFlags::DATASYNC } else { types::FsyncFlags::empty() };
    let sqe = || with_fd!(file, fd => opcode::Fsync::new(fd).flags(flags).build());
    unbuffered(file, sqe, move |fd| {
        // SAFETY: plain syscall on a descriptor.
        unsafe {
            if data_only {
                libc::fdatasync(fd)
            } else {
                libc::fsync(fd)
            }
        }
    })
    .await
}

/// An operation on `file` that carries no buffer: the SQE `sqe` builds on io_uring, `syscall`
/// on the fallback's blocking pool.
async fn unbuffered(
    file: FileRef,
    sqe: impl FnOnce() -> squeue::Entry,
    syscall: impl FnOnce(RawFd) -> libc::c_int + Send + 'static,
) -> IoResult<()> {
    let core = Core::current();
    match core.kind() {
        BackendKind::Uring => {
            // SAFETY: the SQE carries no pointers.
            let (res, _, ()) = unsafe { run(&core, sqe(), ()) }.await;
            res.map(|_| ())
        }
        BackendKind::Epoll => {
            let fd = raw_fd(file)?;
            blocking(move || syscall_result(syscall(fd) as isize).map(|_| ())).await
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
    let sqe = || with_fd!(file, fd => opcode::Fallocate::new(fd, len).offset(offset).mode(mode.flags()).build());
    unbuffered(file, sqe, move |fd| {
        // SAFETY: plain syscall on a descriptor.
        unsafe { libc::fallocate(fd, mode.flags(), offset as libc::off_t, len as libc::off_t) }
    })
    .await
}
