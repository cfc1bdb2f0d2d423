//! Sockets: addresses, listening, accepting and connecting.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types};

use super::fallback::readiness;
use super::syscall_result;
use super::uring_op::run;
use crate::epoll::Direction;
use crate::error::{IoError, IoResult};
use crate::executor::{BackendKind, Core};

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
