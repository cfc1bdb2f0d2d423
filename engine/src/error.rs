//! Typed errors of pool operations (create, import, export, metadata operations).
//!
//! Data-path operations return [`crate::block_volume::VolumeError`]; everything that manages
//! the pool returns [`PoolError`], whose `Display` is the message an operator reads.

use std::fmt;

use drivers::error::IoError;

use crate::block_volume::VolumeError;

/// Why a pool operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// A device failed.
    Io(IoError),
    /// The pool was written by an incompatible format version.
    IncompatibleVersion {
        /// Version found on disk.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// No label or no valid uberblock: the devices do not hold a ferrite pool.
    NotAPool(String),
    /// The devices given do not form one complete pool.
    DeviceMismatch(String),
    /// A metadata block failed its checksum; the pool cannot be trusted past it.
    Corrupt(String),
    /// Not enough free space.
    NoSpace,
    /// A device is too small or a parameter is out of range.
    InvalidConfig(String),
    /// No volume or snapshot of that name.
    NotFound(String),
    /// A volume or snapshot of that name exists already.
    AlreadyExists(String),
    /// The operation is not allowed in the current state (clones depend on it, newer
    /// snapshots exist, ...).
    Busy(String),
    /// The pool is exported or failed a txg sync and accepts no more changes.
    Suspended,
    /// Another process or host has the pool imported: one line naming it.
    InUse(String),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Io(e) => write!(f, "device error: {e}"),
            PoolError::IncompatibleVersion { found, supported } => write!(
                f,
                "pool format version {found} is not supported: this ferrite reads and writes \
                 format version {supported}"
            ),
            PoolError::NotAPool(why) => write!(f, "not a ferrite pool: {why}"),
            PoolError::DeviceMismatch(why) => write!(f, "devices do not form the pool: {why}"),
            PoolError::Corrupt(why) => write!(f, "pool metadata is corrupt: {why}"),
            PoolError::NoSpace => write!(f, "no space left in pool"),
            PoolError::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            PoolError::NotFound(name) => write!(f, "no such volume or snapshot: {name}"),
            PoolError::AlreadyExists(name) => write!(f, "already exists: {name}"),
            PoolError::Busy(why) => write!(f, "busy: {why}"),
            PoolError::Suspended => write!(f, "pool is suspended or exported"),
            PoolError::InUse(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for PoolError {
    /// The device error behind a [`PoolError::Io`].
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<IoError> for PoolError {
    /// A device out of space is the pool out of space; anything else is a device error.
    fn from(err: IoError) -> PoolError {
        if err == IoError::NoSpace {
            PoolError::NoSpace
        } else {
            PoolError::Io(err)
        }
    }
}

impl From<PoolError> for VolumeError {
    fn from(err: PoolError) -> VolumeError {
        match err {
            PoolError::Io(e) => VolumeError::Io(e),
            PoolError::NoSpace => VolumeError::NoSpace,
            PoolError::Corrupt(_) => VolumeError::Io(IoError::Corrupt),
            _ => VolumeError::Io(IoError::Os(libc::EIO)),
        }
    }
}

/// Result alias for pool operations.
pub type PoolResult<T> = Result<T, PoolError>;

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn device_errors_keep_their_source_and_no_space_stays_no_space() {
        let eio = PoolError::from(IoError::Os(libc::EIO));
        assert_eq!(eio, PoolError::Io(IoError::Os(libc::EIO)));
        let source = eio.source().expect("a device error has a source");
        assert_eq!(source.to_string(), IoError::Os(libc::EIO).to_string());
        assert_eq!(PoolError::from(IoError::NoSpace), PoolError::NoSpace);
        assert!(PoolError::NoSpace.source().is_none());
    }
}
