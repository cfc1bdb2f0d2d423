//! [`MemoryDevice`]: a block device in RAM, for tests, the simulator and the in-memory volume.
//!
//! Memory is allocated lazily in fixed-size chunks, each behind its own lock, so shards
//! touching different chunks never contend and a large, mostly empty device costs only its
//! chunk table. A never-written (or discarded) chunk reads as zeros. Requests spanning several
//! chunks lock them one at a time: concurrent overlapping requests are not atomic with each
//! other, as on a real device.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::blockdev::{check_request, Allocation, BlockDevice, DeviceInfo};
use crate::buffer::{IoBuf, SharedBuf};
use crate::error::IoResult;
use crate::LocalBoxFuture;

/// Default chunk size: 64 KiB.
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;
/// Upper bound on the chunk table (16 Mi entries, 16 GiB at the default chunk size).
pub const MAX_CHUNKS: u64 = 1 << 24;

type Chunk = Option<Box<[u8]>>;

/// A sparse RAM block device, shareable by every shard.
pub struct MemoryDevice {
    info: DeviceInfo,
    chunk_bytes: usize,
    chunks: Box<[Mutex<Chunk>]>,
}

impl MemoryDevice {
    /// A device of `size_bytes` with `logical_block_bytes` sectors, 4096-byte physical blocks
    /// (or the logical size when larger) and 64 KiB chunks.
    ///
    /// # Panics
    /// When the geometry is invalid (a programmer error): the block size is not a power of two
    /// of at least 512, or the size is zero or not a multiple of it, or exceeds the chunk table.
    #[must_use]
    pub fn new(size_bytes: u64, logical_block_bytes: u32) -> MemoryDevice {
        MemoryDevice::with_geometry(
            size_bytes,
            logical_block_bytes,
            4096.max(logical_block_bytes),
            DEFAULT_CHUNK_BYTES,
        )
    }

    /// A device with explicit physical block and chunk sizes.
    ///
    /// # Panics
    /// As for [`MemoryDevice::new`], and when `physical_block_bytes` or `chunk_bytes` is not a
    /// multiple of the logical block size.
    #[must_use]
    pub fn with_geometry(
        size_bytes: u64,
        logical_block_bytes: u32,
        physical_block_bytes: u32,
        chunk_bytes: usize,
    ) -> MemoryDevice {
        assert!(
            logical_block_bytes.is_power_of_two() && logical_block_bytes >= 512,
            "bad logical block size"
        );
        let block = u64::from(logical_block_bytes);
        assert!(
            size_bytes > 0 && size_bytes.is_multiple_of(block),
            "size must be a non-zero multiple of the block size"
        );
        assert!(
            physical_block_bytes.is_multiple_of(logical_block_bytes),
            "physical block must be a multiple of logical"
        );
        assert!(
            chunk_bytes > 0 && (chunk_bytes as u64).is_multiple_of(block),
            "chunk must be a multiple of the block size"
        );
        let count = size_bytes.div_ceil(chunk_bytes as u64);
        assert!(count <= MAX_CHUNKS, "memory device chunk table too large");
        let chunks = (0..count).map(|_| Mutex::new(None)).collect();
        MemoryDevice {
            info: DeviceInfo {
                name: format!("memory:{size_bytes}"),
                size_bytes,
                logical_block_bytes,
                physical_block_bytes,
                supports_discard: true,
            },
            chunk_bytes,
            chunks,
        }
    }

    /// Bytes of RAM currently backing written chunks.
    #[must_use]
    pub fn allocated_bytes(&self) -> u64 {
        let allocated = self.chunks.iter().filter(|c| lock(c).is_some()).count();
        allocated as u64 * self.chunk_bytes as u64
    }

    /// Backs every chunk with RAM now, each page written once, so later writes cost a copy
    /// only (benchmarks that measure the engine on this device, not the kernel's first-touch
    /// page faults). Discarding a whole chunk still frees it.
    pub fn allocate_all(&self) {
        let chunk_bytes = self.chunk_bytes;
        for chunk in &*self.chunks {
            let mut c = lock(chunk);
            let data = c.get_or_insert_with(|| vec![0u8; chunk_bytes].into_boxed_slice());
            for page in data.chunks_mut(4096) {
                // SAFETY: `page` is a live, exclusively borrowed, non-empty slice; writing its
                // first byte (a zero over a zero) makes the kernel back the page now.
                unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
            }
        }
    }

    /// Copies `dst.len()` bytes at `offset_bytes` into `dst`, without the async wrapper.
    ///
    /// # Errors
    /// [`crate::error::IoError::InvalidInput`] when misaligned or out of bounds.
    pub fn read_into(&self, dst: &mut [u8], offset_bytes: u64) -> IoResult<()> {
        check_request(&self.info, offset_bytes, dst.len() as u64)?;
        self.for_each_piece(offset_bytes, dst.len(), |chunk, range, pos| match chunk.as_ref() {
            Some(data) => dst[pos..pos + range.len()].copy_from_slice(&data[range]),
            None => dst[pos..pos + range.len()].fill(0),
        });
        Ok(())
    }

    /// Copies `src` to `offset_bytes`, without the async wrapper.
    ///
    /// # Errors
    /// [`crate::error::IoError::InvalidInput`] when misaligned or out of bounds.
    pub fn write_from(&self, src: &[u8], offset_bytes: u64) -> IoResult<()> {
        check_request(&self.info, offset_bytes, src.len() as u64)?;
        let chunk_bytes = self.chunk_bytes;
        self.for_each_piece(offset_bytes, src.len(), |chunk, range, pos| {
            let data = chunk.get_or_insert_with(|| vec![0u8; chunk_bytes].into_boxed_slice());
            data[range.clone()].copy_from_slice(&src[pos..pos + range.len()]);
        });
        Ok(())
    }

    /// Makes a range read as zeros, freeing every chunk it covers entirely.
    ///
    /// # Errors
    /// [`crate::error::IoError::InvalidInput`] when misaligned or out of bounds.
    pub fn zero_range(&self, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
        check_request(&self.info, offset_bytes, len_bytes)?;
        let len = usize::try_from(len_bytes)
            .map_err(|_| crate::error::IoError::InvalidInput(libc::EINVAL))?;
        let chunk_bytes = self.chunk_bytes;
        self.for_each_piece(offset_bytes, len, |chunk, range, _| {
            if range.len() == chunk_bytes {
                *chunk = None;
            } else if let Some(data) = chunk.as_mut() {
                data[range].fill(0);
            }
        });
        Ok(())
    }

    /// Allocation at `offset_bytes` of a range of `len_bytes`: a chunk never written or wholly
    /// discarded is deallocated; any other chunk is mapped (even where it holds zeros).
    ///
    /// # Errors
    /// [`crate::error::IoError::InvalidInput`] when misaligned or out of bounds.
    pub fn allocation_of(&self, offset_bytes: u64, len_bytes: u64) -> IoResult<Allocation> {
        check_request(&self.info, offset_bytes, len_bytes)?;
        let chunk_bytes = self.chunk_bytes as u64;
        let end = offset_bytes + len_bytes;
        let is_mapped = |at: u64| {
            let index = usize::try_from(at / chunk_bytes).expect("chunk index fits the table");
            lock(&self.chunks[index]).is_some()
        };
        let mapped = is_mapped(offset_bytes);
        let mut at = (offset_bytes / chunk_bytes + 1) * chunk_bytes;
        while at < end && is_mapped(at) == mapped {
            at += chunk_bytes;
        }
        Ok(Allocation { mapped, run_bytes: at.min(end) - offset_bytes })
    }

    /// Calls `f(chunk, range inside the chunk, position in the request)` for each chunk the
    /// (already validated) request touches, holding that chunk's lock.
    fn for_each_piece(
        &self,
        offset_bytes: u64,
        len_bytes: usize,
        mut f: impl FnMut(&mut Chunk, std::ops::Range<usize>, usize),
    ) {
        let chunk_bytes = self.chunk_bytes as u64;
        let mut pos = 0usize;
        while pos < len_bytes {
            let at = offset_bytes + pos as u64;
            let index = usize::try_from(at / chunk_bytes).expect("chunk index fits the table");
            let start = (at % chunk_bytes) as usize;
            let take = (self.chunk_bytes - start).min(len_bytes - pos);
            f(&mut lock(&self.chunks[index]), start..start + take, pos);
            pos += take;
        }
    }
}

/// A chunk lock; a panic while it was held cannot leave the bytes in an unsafe state, so a
/// poisoned lock is simply taken over.
fn lock(chunk: &Mutex<Chunk>) -> MutexGuard<'_, Chunk> {
    chunk.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BlockDevice for MemoryDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn read(&self, mut buf: IoBuf, offset_bytes: u64) -> LocalBoxFuture<'_, (IoResult<()>, IoBuf)> {
        let res = self.read_into(&mut buf, offset_bytes);
        Box::pin(std::future::ready((res, buf)))
    }

    fn write(&self, buf: IoBuf, offset_bytes: u64) -> LocalBoxFuture<'_, (IoResult<()>, IoBuf)> {
        let res = self.write_from(&buf, offset_bytes);
        Box::pin(std::future::ready((res, buf)))
    }

    fn writes_vectored(&self) -> bool {
        true
    }

    fn write_vectored(
        &self,
        bufs: Vec<SharedBuf>,
        offset_bytes: u64,
    ) -> LocalBoxFuture<'_, IoResult<()>> {
        // The device's store is RAM: each buffer goes straight into it, as a DMA would.
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        if let Err(e) = check_request(&self.info, offset_bytes, total) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let mut at = offset_bytes;
        let mut res = Ok(());
        for b in &bufs {
            res = self.write_from(b, at);
            if res.is_err() {
                break;
            }
            at += b.len() as u64;
        }
        Box::pin(std::future::ready(res))
    }

    fn flush(&self) -> LocalBoxFuture<'_, IoResult<()>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn discard(&self, offset_bytes: u64, len_bytes: u64) -> LocalBoxFuture<'_, IoResult<()>> {
        Box::pin(std::future::ready(self.zero_range(offset_bytes, len_bytes)))
    }

    fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> LocalBoxFuture<'_, IoResult<()>> {
        Box::pin(std::future::ready(self.zero_range(offset_bytes, len_bytes)))
    }

    fn reports_allocation(&self) -> bool {
        true
    }

    fn allocation(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> LocalBoxFuture<'_, IoResult<Allocation>> {
        Box::pin(std::future::ready(self.allocation_of(offset_bytes, len_bytes)))
    }
}

impl std::fmt::Debug for MemoryDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDevice")
            .field("info", &self.info)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_all_backs_every_chunk_and_reads_zeros() {
        let dev = MemoryDevice::with_geometry(1 << 20, 512, 4096, 8192);
        dev.allocate_all();
        assert_eq!(dev.allocated_bytes(), 1 << 20);
        let mut back = vec![0xffu8; 1 << 20];
        dev.read_into(&mut back, 0).expect("read");
        assert!(back.iter().all(|&b| b == 0));
        dev.write_from(&[7u8; 4096], 8192).expect("write");
        dev.read_into(&mut back[..4096], 8192).expect("read");
        assert!(back[..4096].iter().all(|&b| b == 7));
    }

    #[test]
    fn sparse_chunks_and_cross_chunk_requests() {
        let dev = MemoryDevice::with_geometry(1 << 20, 512, 4096, 8192);
        assert_eq!(dev.allocated_bytes(), 0);
        let data: Vec<u8> = (0..12288u32).map(|i| (i % 251) as u8).collect();
        dev.write_from(&data, 4096).expect("write");
        assert_eq!(dev.allocated_bytes(), 2 * 8192);
        let mut back = vec![0xffu8; 12288];
        dev.read_into(&mut back, 4096).expect("read");
        assert_eq!(back, data);
        dev.zero_range(8192, 8192).expect("zero a whole chunk");
        assert_eq!(dev.allocated_bytes(), 8192);
        dev.read_into(&mut back, 4096).expect("read");
        assert_eq!(&back[..4096], &data[..4096]);
        assert!(back[4096..].iter().all(|b| *b == 0));
    }
}
