//! [`UringDevice`]: a regular file or block device opened with O_DIRECT and driven through the
//! current shard's ring.
//!
//! The device object is shared by every shard, but a fixed-file slot belongs to one ring, so
//! each shard registers the descriptor lazily in its own ring the first time it uses the
//! device and remembers the slot in a thread-local table keyed by (device, reactor). Reads and
//! writes go through [`crate::ops::read_at`]/[`crate::ops::write_at`], which use the
//! fixed-buffer opcodes when the buffer comes from the shard's registered pool. On the epoll
//! fallback there is no fixed-file table ([`crate::ops::register_file`] hands back the raw
//! descriptor) and the same calls run on the blocking pool.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::blockdev::file::{self, DeviceFile};
use crate::buffer::BufferPool;
use crate::error::IoResult;
use crate::executor::{self, BackendKind};
use crate::ops::{self, FileRef};

static NEXT_DEVICE_ID: AtomicU64 = AtomicU64::new(1);

/// One fixed-file registration of a device in one reactor's ring.
struct FixedEntry {
    /// Keeps the reactor's pool alive so its id (the key) cannot be reused by another reactor
    /// while the entry exists.
    pool: BufferPool,
    file: FileRef,
    /// Dead once the device is dropped; the slot is then released by the next sweep.
    device_alive: Weak<()>,
}

thread_local! {
    /// (device id, reactor pool id) → slot in that reactor's fixed-file table.
    static FIXED_FILES: RefCell<BTreeMap<(u64, usize), FixedEntry>> =
        const { RefCell::new(BTreeMap::new()) };
}

/// A file or block device on io_uring with fixed files and fixed buffers.
pub struct UringDevice {
    file: DeviceFile,
    id: u64,
    alive: Arc<()>,
}

impl UringDevice {
    /// Opens an existing regular file or block device (O_DIRECT where the file system allows
    /// it) and probes its geometry: BLKGETSIZE64/BLKSSZGET/BLKPBSZGET for block devices;
    /// `statx(STATX_DIOALIGN)` (or `st_blksize`) and 4096-byte physical blocks for files.
    ///
    /// # Errors
    /// When the path cannot be opened, is neither a file nor a block device, or is empty.
    pub fn open(path: &Path) -> IoResult<UringDevice> {
        Ok(UringDevice::from_file(DeviceFile::open(path)?))
    }

    /// Opens an existing regular file or block device for reading only (every write fails),
    /// as [`UringDevice::open`] otherwise.
    ///
    /// # Errors
    /// As for [`UringDevice::open`].
    pub fn open_read_only(path: &Path) -> IoResult<UringDevice> {
        Ok(UringDevice::from_file(DeviceFile::open_read_only(path)?))
    }

    /// Creates a sparse regular file of `size_bytes` (or resizes an existing one) and opens it.
    ///
    /// # Errors
    /// As for [`UringDevice::open`], and when the file cannot be created or sized.
    pub fn create_file(path: &Path, size_bytes: u64) -> IoResult<UringDevice> {
        Ok(UringDevice::from_file(DeviceFile::create(path, size_bytes)?))
    }

    fn from_file(file: DeviceFile) -> UringDevice {
        UringDevice {
            file,
            id: NEXT_DEVICE_ID.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
        }
    }

    /// True when the descriptor was opened with O_DIRECT.
    #[must_use]
    pub fn is_direct(&self) -> bool {
        self.file.is_direct()
    }

    /// How the current shard names the file: its fixed-file slot (registered on first use),
    /// or the raw descriptor on the fallback or when the shard's table is full.
    ///
    /// # Panics
    /// When no reactor runs on this thread.
    #[must_use]
    pub fn file_ref(&self) -> FileRef {
        let raw = FileRef::Raw(self.file.raw_fd());
        if executor::backend_kind() == BackendKind::Epoll {
            return raw;
        }
        let pool = executor::buffer_pool();
        let key = (self.id, pool.id());
        FIXED_FILES.with(|table| {
            let mut table = table.borrow_mut();
            if let Some(entry) = table.get(&key) {
                return entry.file;
            }
            sweep_dropped_devices(&mut table, pool.id());
            // A full table is not an error: the raw descriptor works, only a little slower.
            let file = ops::register_file(self.file.raw_fd()).unwrap_or(raw);
            table.insert(key, FixedEntry { pool, file, device_alive: Arc::downgrade(&self.alive) });
            file
        })
    }
}

/// Releases the slots of dropped devices in the current reactor's ring, and forgets entries of
/// dropped devices in other reactors (those rings release their slots when they are dropped).
fn sweep_dropped_devices(table: &mut BTreeMap<(u64, usize), FixedEntry>, current_pool: usize) {
    table.retain(|_, entry| {
        if entry.device_alive.strong_count() > 0 {
            return true;
        }
        if entry.pool.id() == current_pool {
            ops::unregister_file(entry.file);
        }
        false
    });
}

file::impl_file_block_device!(UringDevice);
