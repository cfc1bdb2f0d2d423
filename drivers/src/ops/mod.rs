//! Asynchronous operations of the current shard, each mapped to typed errors at the boundary.
//!
//! Every operation takes the buffers it uses by value and returns them with the result, so the
//! kernel never sees memory the caller could touch or free. If the future is dropped before the
//! kernel completes, the buffers stay parked with the reactor until the completion arrives
//! (io_uring) or the blocking job finishes (fallback).
//!
//! On io_uring each call is one SQE; on the epoll fallback, socket calls are non-blocking
//! syscalls retried on readiness and file calls run on the bounded blocking pool.

use std::os::fd::RawFd;

use crate::error::{IoError, IoResult};

// Defined before the submodules, which build their SQEs with it.
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

mod control;
mod fallback;
mod file;
mod socket;
mod stream;
mod uring_op;

pub use control::{cancel_fd, close, nop, register_file, timeout, unregister_file};
pub use file::{
    fallocate, fdatasync, fsync, read_at, read_exact_at, readv_at, write_all_at, write_at,
    write_at_flags, writev_at, writev_shared_at, FallocateMode,
};
pub use socket::{accept, connect, local_addr, set_nodelay, sockaddr_to, tcp_listen};
pub use stream::{
    recv, recv_exact, send, send_all, send_vectored, send_vectored_all, send_zc, sendmsg, Segment,
};

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

/// An iovec array moved to a blocking-pool thread together with the buffers it points into.
struct SendIovecs(Vec<libc::iovec>);
// SAFETY: the pointers reach only into IoBufs moved along with this value to the same thread.
unsafe impl Send for SendIovecs {}
