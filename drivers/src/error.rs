//! Typed I/O errors, mapped explicitly from errno at the kernel boundary.

use std::fmt;

/// An operating error from the kernel or a device, with its errno kept for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// EINTR / EAGAIN surfaced after retries were exhausted (should be rare).
    Retry(i32),
    /// ECANCELED: the operation was cancelled before it completed.
    Canceled,
    /// ETIME / ETIMEDOUT.
    TimedOut,
    /// EINVAL, EFAULT, EBADF: an argument the kernel refused.
    InvalidInput(i32),
    /// EOPNOTSUPP / ENOTSUP / ENOSYS: the device or kernel lacks the feature.
    Unsupported(i32),
    /// ENOSPC / EDQUOT.
    NoSpace,
    /// EIO, ENXIO, EILSEQ, ENODATA, EBADMSG: the medium failed.
    Medium(i32),
    /// ECONNRESET, EPIPE, ENOTCONN, ECONNABORTED: the peer is gone.
    Disconnected(i32),
    /// ECONNREFUSED.
    Refused,
    /// EADDRINUSE / EADDRNOTAVAIL.
    AddressUnavailable(i32),
    /// EACCES / EPERM.
    PermissionDenied(i32),
    /// ENOENT.
    NotFound,
    /// ENOMEM / ENOBUFS / EMFILE / ENFILE: a resource ran out.
    Resource(i32),
    /// A short read or write where the operation required the whole length.
    Short { expected_bytes: usize, done_bytes: usize },
    /// Data read back failed its integrity check (checksum, stamp).
    Corrupt,
    /// A simulated failure injected by the fault device.
    Injected,
    /// Any other errno.
    Os(i32),
}

impl IoError {
    /// Maps a positive errno to its typed error.
    #[must_use]
    pub fn from_errno(errno: i32) -> IoError {
        match errno {
            libc::EINTR | libc::EAGAIN => IoError::Retry(errno),
            libc::ECANCELED => IoError::Canceled,
            libc::ETIME | libc::ETIMEDOUT => IoError::TimedOut,
            libc::EINVAL | libc::EFAULT | libc::EBADF => IoError::InvalidInput(errno),
            libc::EOPNOTSUPP | libc::ENOSYS => IoError::Unsupported(errno),
            libc::ENOSPC | libc::EDQUOT => IoError::NoSpace,
            libc::EIO | libc::ENXIO | libc::EILSEQ | libc::ENODATA | libc::EBADMSG => {
                IoError::Medium(errno)
            }
            libc::ECONNRESET
            | libc::EPIPE
            | libc::ENOTCONN
            | libc::ECONNABORTED
            | libc::ESHUTDOWN => IoError::Disconnected(errno),
            libc::ECONNREFUSED => IoError::Refused,
            libc::EADDRINUSE | libc::EADDRNOTAVAIL => IoError::AddressUnavailable(errno),
            libc::EACCES | libc::EPERM => IoError::PermissionDenied(errno),
            libc::ENOENT => IoError::NotFound,
            libc::ENOMEM | libc::ENOBUFS | libc::EMFILE | libc::ENFILE => IoError::Resource(errno),
            other => IoError::Os(other),
        }
    }

    /// Maps a CQE result (negative errno on failure) to `Ok(value)` or the typed error.
    pub fn check(res: i32) -> Result<u32, IoError> {
        if res < 0 {
            Err(IoError::from_errno(-res))
        } else {
            Ok(res.unsigned_abs())
        }
    }

    /// Maps the current `errno` after a failed libc call.
    #[must_use]
    pub fn last_os_error() -> IoError {
        IoError::from_errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }

    /// True for errors where the peer closed the connection.
    #[must_use]
    pub fn is_disconnect(&self) -> bool {
        matches!(self, IoError::Disconnected(_) | IoError::Short { .. })
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Short { expected_bytes, done_bytes } => {
                write!(f, "short transfer: {done_bytes} of {expected_bytes} bytes")
            }
            IoError::Corrupt => write!(f, "data failed its integrity check"),
            IoError::Injected => write!(f, "injected fault"),
            IoError::Canceled => write!(f, "operation cancelled"),
            IoError::TimedOut => write!(f, "operation timed out"),
            IoError::NoSpace => write!(f, "no space left on device"),
            IoError::NotFound => write!(f, "no such file or directory"),
            IoError::Refused => write!(f, "connection refused"),
            IoError::Retry(e)
            | IoError::InvalidInput(e)
            | IoError::Unsupported(e)
            | IoError::Medium(e)
            | IoError::Disconnected(e)
            | IoError::AddressUnavailable(e)
            | IoError::PermissionDenied(e)
            | IoError::Resource(e)
            | IoError::Os(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
        }
    }
}

impl std::error::Error for IoError {}

impl From<std::io::Error> for IoError {
    fn from(err: std::io::Error) -> IoError {
        IoError::from_errno(err.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<nix::errno::Errno> for IoError {
    fn from(err: nix::errno::Errno) -> IoError {
        IoError::from_errno(err as i32)
    }
}

/// Result alias for driver operations.
pub type IoResult<T> = Result<T, IoError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping_is_explicit() {
        assert_eq!(IoError::from_errno(libc::ECANCELED), IoError::Canceled);
        assert_eq!(IoError::from_errno(libc::ENOSPC), IoError::NoSpace);
        assert_eq!(IoError::from_errno(libc::EIO), IoError::Medium(libc::EIO));
        assert_eq!(IoError::check(-libc::EPIPE), Err(IoError::Disconnected(libc::EPIPE)));
        assert_eq!(IoError::check(42), Ok(42));
    }
}
