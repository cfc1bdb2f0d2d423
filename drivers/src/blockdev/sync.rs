//! [`SyncDevice`]: the file-backed device for shards running the epoll fallback.
//!
//! It issues plain pread/pwrite/fdatasync/fallocate on the raw descriptor through the
//! [`crate::ops`] functions. Under the epoll backend those run on the reactor's bounded blocking
//! pool (`ReactorConfig::blocking_threads` threads, a bounded job queue that pushes back by
//! yielding), so this device needs no pool of its own and shares the shard's bound on blocking
//! threads. It uses no fixed files and no fixed buffers, so it also works, unoptimised, on an
//! io_uring shard (the same calls then become plain ring operations on the raw descriptor).

use std::path::Path;

use crate::blockdev::file::{self, DeviceFile};
use crate::error::IoResult;
use crate::ops::FileRef;

/// A file or block device driven by blocking syscalls on the fallback's blocking pool.
pub struct SyncDevice {
    file: DeviceFile,
}

impl SyncDevice {
    /// Opens an existing regular file or block device (O_DIRECT where allowed) and probes its
    /// geometry exactly as [`super::uring::UringDevice::open`] does.
    ///
    /// # Errors
    /// When the path cannot be opened, is neither a file nor a block device, or is empty.
    pub fn open(path: &Path) -> IoResult<SyncDevice> {
        Ok(SyncDevice { file: DeviceFile::open(path)? })
    }

    /// Creates a sparse regular file of `size_bytes` (or resizes an existing one) and opens it.
    ///
    /// # Errors
    /// As for [`SyncDevice::open`], and when the file cannot be created or sized.
    pub fn create_file(path: &Path, size_bytes: u64) -> IoResult<SyncDevice> {
        Ok(SyncDevice { file: DeviceFile::create(path, size_bytes)? })
    }

    /// True when the descriptor was opened with O_DIRECT.
    #[must_use]
    pub fn is_direct(&self) -> bool {
        self.file.is_direct()
    }

    fn file_ref(&self) -> FileRef {
        FileRef::Raw(self.file.raw_fd())
    }
}

file::impl_file_block_device!(SyncDevice);
