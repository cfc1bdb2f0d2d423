//! The pool's devices and verified block I/O.
//!
//! Every metadata and data read goes through [`DeviceSet::read_block`], which checks the
//! block's xxh3-128 against its pointer before anyone sees the bytes, and counts failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use drivers::blockdev::BlockDevice;
use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::{IoError, IoResult};

use crate::block_pointer::BlockPointer;
use crate::copy_stats::{self, CopyPath};
use crate::format::checksum;
use crate::join::join_all;

/// True when `stored` matches the checksum `bp` carries (xxh3-128, or the BLAKE3 fingerprint
/// of a deduplicated block).
#[must_use]
pub fn verifies(bp: &BlockPointer, stored: &[u8]) -> bool {
    if bp.checksum_type == crate::ddt::CHECKSUM_BLAKE3_192 {
        crate::ddt::fingerprint(bp.compression, bp.logical_bytes, stored)
            == crate::ddt::bp_fingerprint(bp)
    } else {
        checksum(stored) == bp.checksum
    }
}

/// Why a verified read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReadError {
    /// The device failed.
    Io(IoError),
    /// The bytes did not match the pointer's checksum (or the pointer is malformed).
    Checksum,
}

/// Counters of the device layer.
#[derive(Debug, Default)]
pub struct DeviceStats {
    /// Blocks whose checksum did not verify on read.
    pub checksum_errors: AtomicU64,
    /// Device reads that failed.
    pub read_errors: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// Device write requests.
    pub writes: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Device flushes.
    pub flushes: AtomicU64,
}

/// The devices of a pool, by index.
pub struct DeviceSet {
    devices: Vec<Arc<dyn BlockDevice>>,
    /// Counters.
    pub stats: DeviceStats,
}

impl DeviceSet {
    /// Wraps the devices in pool order.
    #[must_use]
    pub fn new(devices: Vec<Arc<dyn BlockDevice>>) -> DeviceSet {
        DeviceSet { devices, stats: DeviceStats::default() }
    }

    /// Number of devices.
    #[must_use]
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when there are no devices.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Device `index`.
    #[must_use]
    pub fn device(&self, index: usize) -> &Arc<dyn BlockDevice> {
        &self.devices[index]
    }

    /// Reads `len_bytes` at `offset_bytes` of device `device`.
    ///
    /// # Errors
    /// The device's error, or `InvalidInput` for an unknown device index.
    pub async fn read(&self, device: u16, offset_bytes: u64, len_bytes: usize) -> IoResult<IoBuf> {
        let Some(dev) = self.devices.get(usize::from(device)) else {
            return Err(IoError::InvalidInput(libc::ENXIO));
        };
        let (res, buf) = dev.read(IoBuf::zeroed(len_bytes), offset_bytes).await;
        self.stats.read_bytes.fetch_add(len_bytes as u64, Ordering::Relaxed);
        if res.is_err() {
            self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        res.map(|()| buf)
    }

    /// Reads `buf.len()` bytes at `offset_bytes` of device `device` into `buf`, which comes
    /// back either way (for a caller that reuses its buffers).
    ///
    /// # Errors
    /// The device's error, or `InvalidInput` for an unknown device index.
    pub async fn read_into(
        &self,
        device: u16,
        offset_bytes: u64,
        buf: IoBuf,
    ) -> (IoResult<()>, IoBuf) {
        let Some(dev) = self.devices.get(usize::from(device)) else {
            return (Err(IoError::InvalidInput(libc::ENXIO)), buf);
        };
        self.stats.read_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let (res, buf) = dev.read(buf, offset_bytes).await;
        if res.is_err() {
            self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        (res, buf)
    }

    /// Writes `buf` at `offset_bytes` of device `device`; returns the buffer.
    ///
    /// # Errors
    /// The device's error.
    pub async fn write(&self, device: u16, offset_bytes: u64, buf: IoBuf) -> (IoResult<()>, IoBuf) {
        self.write_with(device, offset_bytes, buf, false).await
    }

    /// [`DeviceSet::write`], durable when it completes if `durable` is set (see
    /// [`BlockDevice::write_durable`]).
    ///
    /// # Errors
    /// The device's error.
    pub async fn write_with(
        &self,
        device: u16,
        offset_bytes: u64,
        buf: IoBuf,
        durable: bool,
    ) -> (IoResult<()>, IoBuf) {
        let Some(dev) = self.devices.get(usize::from(device)) else {
            return (Err(IoError::InvalidInput(libc::ENXIO)), buf);
        };
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        if durable {
            dev.write_durable(buf, offset_bytes).await
        } else {
            dev.write(buf, offset_bytes).await
        }
    }

    /// True when device `device` makes each durable [`DeviceSet::write_with`] durable by itself, so
    /// no flush is needed after those writes.
    #[must_use]
    pub fn durable_writes(&self, device: u16) -> bool {
        self.devices.get(usize::from(device)).is_some_and(|d| d.durable_writes())
    }

    /// Writes `bufs` back to back at `offset_bytes` of device `device` straight from their
    /// memory (one vectored write). A device without vectored writes, or a buffer not aligned
    /// for direct I/O (memory on 4 KiB, length on the device block), gets one assembled buffer
    /// instead: that copy is counted as
    /// [`CopyPath::SyncWrite`].
    ///
    /// # Errors
    /// The device's error.
    pub async fn write_vectored(
        &self,
        device: u16,
        offset_bytes: u64,
        bufs: Vec<SharedBuf>,
    ) -> IoResult<()> {
        let Some(dev) = self.devices.get(usize::from(device)) else {
            return Err(IoError::InvalidInput(libc::ENXIO));
        };
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(total as u64, Ordering::Relaxed);
        // Direct I/O wants every piece aligned in memory and a whole number of device blocks.
        let unit = dev.info().logical_block_bytes as usize;
        let in_place =
            bufs.iter().all(|b| b.is_aligned() && unit > 0 && b.len().is_multiple_of(unit));
        if dev.writes_vectored() && in_place {
            return dev.write_vectored(bufs, offset_bytes).await;
        }
        let mut one = IoBuf::zeroed(total);
        let mut at = 0;
        for b in &bufs {
            one[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        copy_stats::record(CopyPath::SyncWrite, total);
        dev.write(one, offset_bytes).await.0
    }

    /// Reads the block behind `bp` and verifies it. The buffer holds `physical_bytes`.
    ///
    /// # Errors
    /// [`BlockReadError::Checksum`] when the content does not verify (counted),
    /// [`BlockReadError::Io`] when the device fails.
    pub async fn read_block(&self, bp: &BlockPointer) -> Result<IoBuf, BlockReadError> {
        if bp.is_hole()
            || !bp.physical_bytes.is_multiple_of(4096)
            || !bp.offset_bytes.is_multiple_of(4096)
        {
            self.stats.checksum_errors.fetch_add(1, Ordering::Relaxed);
            return Err(BlockReadError::Checksum);
        }
        let buf = self.read(bp.device, bp.offset_bytes, bp.physical_bytes as usize).await.map_err(
            |e| match e {
                // A pointer past the end of a device is a metadata error, not a device one.
                IoError::InvalidInput(_) => BlockReadError::Checksum,
                other => BlockReadError::Io(other),
            },
        )?;
        if !verifies(bp, &buf) {
            self.stats.checksum_errors.fetch_add(1, Ordering::Relaxed);
            return Err(BlockReadError::Checksum);
        }
        Ok(buf)
    }

    /// Flushes every device, concurrently.
    ///
    /// # Errors
    /// The first device error.
    pub async fn flush_all(&self) -> IoResult<()> {
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        let results = join_all(self.devices.iter().map(|d| d.flush()).collect()).await;
        results.into_iter().collect()
    }

    /// Flushes one device.
    ///
    /// # Errors
    /// The device's error.
    pub async fn flush(&self, device: u16) -> IoResult<()> {
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        match self.devices.get(usize::from(device)) {
            Some(d) => d.flush().await,
            None => Err(IoError::InvalidInput(libc::ENXIO)),
        }
    }
}
