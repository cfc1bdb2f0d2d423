//! Block devices: one trait, several backends.
//!
//! - [`uring`], a regular file or block device opened with O_DIRECT, driven through the
//!   current shard's ring (fixed files, fixed buffers);
//! - [`memory`], RAM;
//! - [`fault`], a deterministic, seeded wrapper that injects errors, latency, bit flips, torn
//!   writes and power cuts;
//! - [`sync`], pread/pwrite on the blocking pool, for the epoll fallback.
//!
//! [`open_device`] picks the file-backed backend that suits the current shard.
//!
//! Offsets and lengths are in bytes and must be multiples of `logical_block_bytes`; buffers
//! must be 4 KiB aligned (every [`IoBuf`] is).

use std::path::Path;
use std::sync::Arc;

use crate::buffer::{IoBuf, SharedBuf};
use crate::error::{IoError, IoResult};
use crate::executor::{self, BackendChoice, BackendKind};
use crate::LocalBoxFuture;

pub mod fault;
mod file;
pub mod memory;
pub mod nvme_health;
pub mod prng;
pub mod sync;
pub mod uring;

/// Fixed facts about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Human-readable name (path or kind).
    pub name: String,
    /// Usable size.
    pub size_bytes: u64,
    /// Smallest addressable unit (BLKSSZGET for block devices, 512 or 4096 for files).
    pub logical_block_bytes: u32,
    /// Atomic write unit (BLKPBSZGET for block devices).
    pub physical_block_bytes: u32,
    /// The device can deallocate ranges (discard / punch hole).
    pub supports_discard: bool,
}

/// Allocation state of a run of bytes (see [`BlockDevice::allocation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The run is backed by storage (it may still hold zeros); false: deallocated, reads zeros.
    pub mapped: bool,
    /// Length of the run from the queried offset, at least one logical block and at most the
    /// queried length.
    pub run_bytes: u64,
}

/// The block device interface. Futures run on the calling shard; the device object itself is
/// shared by every shard.
pub trait BlockDevice: Send + Sync {
    /// Fixed facts.
    fn info(&self) -> &DeviceInfo;

    /// Reads `buf.len()` bytes at `offset_bytes` into `buf` (all or error).
    fn read(&self, buf: IoBuf, offset_bytes: u64) -> LocalBoxFuture<'_, (IoResult<()>, IoBuf)>;

    /// Writes all of `buf` at `offset_bytes` (all or error). Not durable until a flush
    /// completes after it.
    fn write(&self, buf: IoBuf, offset_bytes: u64) -> LocalBoxFuture<'_, (IoResult<()>, IoBuf)>;

    /// True when [`BlockDevice::write_vectored`] writes the buffers in place (one vectored
    /// write); false when it assembles them into one buffer first (the default), which a
    /// caller counting copies should know.
    fn writes_vectored(&self) -> bool {
        false
    }

    /// Writes `bufs` back to back at `offset_bytes` (all or error). Each buffer must be 4 KiB
    /// aligned in memory and a whole number of logical blocks long. The default assembles one
    /// buffer and calls [`BlockDevice::write`].
    fn write_vectored(
        &self,
        bufs: Vec<SharedBuf>,
        offset_bytes: u64,
    ) -> LocalBoxFuture<'_, IoResult<()>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut one = IoBuf::zeroed(total);
        let mut at = 0;
        for b in &bufs {
            one[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        Box::pin(async move { self.write(one, offset_bytes).await.0 })
    }

    /// True when [`BlockDevice::write_durable`] makes its write durable by itself (a
    /// `RWF_DSYNC` write, sent with FUA where the device has a volatile cache), so a caller
    /// needs no flush after it; false when it writes and then flushes the whole device.
    fn durable_writes(&self) -> bool {
        false
    }

    /// Writes all of `buf` at `offset_bytes`, durable when the future completes. The default
    /// writes, then flushes the device.
    fn write_durable(
        &self,
        buf: IoBuf,
        offset_bytes: u64,
    ) -> LocalBoxFuture<'_, (IoResult<()>, IoBuf)> {
        Box::pin(async move {
            let (res, buf) = self.write(buf, offset_bytes).await;
            match res {
                Ok(()) => (self.flush().await, buf),
                Err(e) => (Err(e), buf),
            }
        })
    }

    /// Makes every write completed before this call durable.
    fn flush(&self) -> LocalBoxFuture<'_, IoResult<()>>;

    /// Deallocates a range; it reads back as zeros.
    fn discard(&self, offset_bytes: u64, len_bytes: u64) -> LocalBoxFuture<'_, IoResult<()>>;

    /// Makes a range read back as zeros.
    fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> LocalBoxFuture<'_, IoResult<()>>;

    /// Takes this device's exclusive claim for as long as this object lives, so that no
    /// other process can claim it meanwhile: an OFD write lock on a regular file, an `O_EXCL`
    /// open of a block device. `Ok(true)` when this object holds it, `Ok(false)` when another
    /// open does. The default, for devices no other process can open (RAM), is `Ok(true)`.
    ///
    /// # Errors
    /// [`IoError::Unsupported`] when the file system has no such locks.
    fn claim_exclusive(&self) -> IoResult<bool> {
        Ok(true)
    }

    /// Gives up the claim [`BlockDevice::claim_exclusive`] took (nothing when none is held).
    fn release_exclusive(&self) {}

    /// True when another open holds this device's exclusive claim (see
    /// [`BlockDevice::claim_exclusive`]). Takes nothing. The default is `Ok(false)`.
    ///
    /// # Errors
    /// [`IoError::Unsupported`] when the file system has no such locks.
    fn claimed_elsewhere(&self) -> IoResult<bool> {
        Ok(false)
    }

    /// True when [`BlockDevice::allocation`] tells deallocated ranges apart (a sparse file, RAM);
    /// false when it reports everything mapped because the device does not say (the default).
    fn reports_allocation(&self) -> bool {
        false
    }

    /// Whether the bytes at `offset_bytes` are mapped or deallocated, and how far that state
    /// runs within `len_bytes` (a non-zero multiple of the logical block size). A device that
    /// does not track allocation reports the whole range mapped (the default), which is always
    /// a truthful answer: a mapped block may hold zeros.
    fn allocation(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> LocalBoxFuture<'_, IoResult<Allocation>> {
        let res = check_request(self.info(), offset_bytes, len_bytes)
            .map(|()| Allocation { mapped: true, run_bytes: len_bytes });
        Box::pin(std::future::ready(res))
    }
}

/// Checks alignment and bounds of a request against `info`.
///
/// # Errors
/// [`crate::error::IoError::InvalidInput`] when misaligned or past the end.
pub fn check_request(info: &DeviceInfo, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
    let block = u64::from(info.logical_block_bytes);
    let end = offset_bytes.checked_add(len_bytes);
    if !offset_bytes.is_multiple_of(block)
        || !len_bytes.is_multiple_of(block)
        || end.is_none_or(|e| e > info.size_bytes)
    {
        return Err(IoError::InvalidInput(libc::EINVAL));
    }
    Ok(())
}

/// Opens a file or block device with the backend `choice` asks for: [`uring::UringDevice`] for
/// [`BackendChoice::Uring`], [`sync::SyncDevice`] for [`BackendChoice::Epoll`], and for
/// [`BackendChoice::Auto`] whichever matches the current shard's backend (the reactor already
/// logged which one it runs).
///
/// # Errors
/// [`IoError::Unsupported`] when io_uring is asked for on a shard running the epoll fallback;
/// otherwise as for [`uring::UringDevice::open`].
///
/// # Panics
/// When no reactor runs on this thread.
pub fn open_device(path: &Path, choice: BackendChoice) -> IoResult<Arc<dyn BlockDevice>> {
    let kind = executor::backend_kind();
    let use_uring = match choice {
        BackendChoice::Auto => kind == BackendKind::Uring,
        BackendChoice::Uring if kind == BackendKind::Epoll => {
            return Err(IoError::Unsupported(libc::ENOSYS))
        }
        BackendChoice::Uring => true,
        BackendChoice::Epoll => false,
    };
    if use_uring {
        Ok(Arc::new(uring::UringDevice::open(path)?))
    } else {
        Ok(Arc::new(sync::SyncDevice::open(path)?))
    }
}
