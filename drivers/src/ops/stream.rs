//! Data over a connected socket: receives (taken straight from the socket while bytes are
//! queued), plain, zero-copy and vectored sends, and their retry-until-done forms.

use std::ops::Range;
use std::os::fd::RawFd;

use io_uring::{opcode, types};

use super::fallback::readiness;
use super::uring_op::run;
use super::{len_u32, SendIovecs};
use crate::buffer::{IoBuf, StableBytes};
use crate::epoll::Direction;
use crate::error::{IoError, IoResult};
use crate::executor::{Backend, BackendKind, Core};

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
    let iovecs: Vec<libc::iovec> = parts
        .iter()
        .map(|(buf, range)| libc::iovec {
            // SAFETY: range checked above.
            iov_base: unsafe { buf.as_ptr().add(range.start) }.cast_mut().cast(),
            iov_len: range.end - range.start,
        })
        .collect();
    // SAFETY: every iovec points into a buffer of `parts`, within its checked range.
    unsafe { sendmsg_owned(fd, iovecs, parts) }.await
}

/// One sendmsg of `iovecs`.
///
/// # Safety
/// Every iovec must point into heap memory that `owner` keeps alive and in place until the
/// operation completes.
async unsafe fn sendmsg_owned<T: Unpin + 'static>(
    fd: RawFd,
    iovecs: Vec<libc::iovec>,
    owner: T,
) -> (IoResult<usize>, T) {
    let core = Core::current();
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
            let (res, _, (owner, _iovecs, _msg)) =
                unsafe { run(&core, entry, (owner, SendIovecs(iovecs), msg)) }.await;
            (res.map(|n| n as usize), owner)
        }
        BackendKind::Epoll => {
            let res = readiness(fd, Direction::Write, || {
                // SAFETY: msghdr points to iovecs into buffers we own for this call.
                unsafe { libc::sendmsg(fd, std::ptr::from_ref(&*msg), libc::MSG_NOSIGNAL) }
            })
            .await;
            drop(iovecs);
            (res, owner)
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
    // One sendmsg takes at most 1024 (UIO_MAXIOV); the caller sends the rest next.
    iovecs.truncate(1024);
    // SAFETY: every iovec points into a buffer of `bufs`, within its checked range.
    unsafe { sendmsg_owned(fd, iovecs, bufs) }.await
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
