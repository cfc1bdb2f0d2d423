//! A volume held in memory: sparse 1 MiB chunks, each behind its own lock.
//!
//! Used for tests of the SCSI layer and as a RAM-backed LUN. Holes (chunks never written, or
//! wholly unmapped) read as zeros and report as deallocated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockWriteGuard};

use drivers::buffer::IoBuf;
use drivers::LocalBoxFuture;

use crate::block_volume::{
    check_range, BlockVolume, CompareOutcome, LbaStatus, VolResult, VolumeError, VolumeGeometry,
};
use crate::copy_stats::{self, CopyPath};
use crate::units::{BlockCount, Lba};

const CHUNK_BYTES: u64 = 1 << 20;

type ChunkGuard<'a> = RwLockWriteGuard<'a, Option<Box<[u8]>>>;

/// A sparse in-memory volume.
pub struct MemoryVolume {
    geometry: VolumeGeometry,
    chunks: Vec<RwLock<Option<Box<[u8]>>>>,
    write_cache: AtomicBool,
}

impl MemoryVolume {
    /// A zero-filled volume of `capacity_blocks` blocks of `logical_block_bytes`.
    ///
    /// # Panics
    /// When the block size is not 512 or 4096 or the physical size is not a multiple of it.
    #[must_use]
    pub fn new(logical_block_bytes: u32, physical_block_bytes: u32, capacity_blocks: u64) -> Self {
        assert!(logical_block_bytes == 512 || logical_block_bytes == 4096);
        assert!(physical_block_bytes.is_multiple_of(logical_block_bytes));
        let bytes = capacity_blocks * u64::from(logical_block_bytes);
        let chunk_count = usize::try_from(bytes.div_ceil(CHUNK_BYTES)).expect("fits in memory");
        MemoryVolume {
            geometry: VolumeGeometry {
                logical_block_bytes,
                physical_block_bytes,
                capacity_blocks,
                thin_provisioned: true,
                unmapped_reads_zero: true,
            },
            chunks: (0..chunk_count).map(|_| RwLock::new(None)).collect(),
            write_cache: AtomicBool::new(true),
        }
    }

    fn byte_range(&self, lba: Lba, len_bytes: usize) -> VolResult<(u64, u64)> {
        let block = u64::from(self.geometry.logical_block_bytes);
        let len = len_bytes as u64;
        if !len.is_multiple_of(block) {
            return Err(VolumeError::BadLength);
        }
        check_range(self.geometry.capacity_blocks, lba, BlockCount::new(len / block))?;
        Ok((lba.offset_bytes(block), len))
    }

    /// Visits every chunk piece of `[start, start + len)` as (chunk index, offset in chunk,
    /// offset in the request, length).
    fn pieces(start: u64, len: u64) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        let mut pos = start;
        let end = start + len;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let chunk = pos / CHUNK_BYTES;
            let in_chunk = pos % CHUNK_BYTES;
            let n = (CHUNK_BYTES - in_chunk).min(end - pos);
            let item = (
                usize::try_from(chunk).ok()?,
                usize::try_from(in_chunk).ok()?,
                usize::try_from(pos - start).ok()?,
                usize::try_from(n).ok()?,
            );
            pos += n;
            Some(item)
        })
    }

    fn chunk_len(&self, index: usize) -> usize {
        let total = self.geometry.capacity_bytes();
        let start = index as u64 * CHUNK_BYTES;
        usize::try_from((total - start).min(CHUNK_BYTES)).expect("chunk fits")
    }

    fn read_sync(&self, lba: Lba, buf: &mut [u8]) -> VolResult<()> {
        let (start, len) = self.byte_range(lba, buf.len())?;
        for (chunk, off, req_off, n) in Self::pieces(start, len) {
            let guard =
                self.chunks[chunk].read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let dst = &mut buf[req_off..req_off + n];
            match guard.as_deref() {
                Some(data) => {
                    // A memory volume's store is its own memory: reads and writes copy.
                    dst.copy_from_slice(&data[off..off + n]);
                    copy_stats::record(CopyPath::VolumeRead, n);
                }
                None => dst.fill(0),
            }
        }
        Ok(())
    }

    fn write_sync(&self, lba: Lba, buf: &[u8]) -> VolResult<()> {
        let (start, len) = self.byte_range(lba, buf.len())?;
        for (chunk, off, req_off, n) in Self::pieces(start, len) {
            let mut guard = self.lock_chunk(chunk);
            let chunk_len = self.chunk_len(chunk);
            let data = guard.get_or_insert_with(|| vec![0u8; chunk_len].into_boxed_slice());
            data[off..off + n].copy_from_slice(&buf[req_off..req_off + n]);
            copy_stats::record(CopyPath::VolumeWrite, n);
        }
        Ok(())
    }

    fn lock_chunk(&self, chunk: usize) -> RwLockWriteGuard<'_, Option<Box<[u8]>>> {
        self.chunks[chunk].write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn zero_sync(&self, lba: Lba, blocks: BlockCount) -> VolResult<()> {
        check_range(self.geometry.capacity_blocks, lba, blocks)?;
        let block = u64::from(self.geometry.logical_block_bytes);
        for (chunk, off, _, n) in Self::pieces(lba.offset_bytes(block), blocks.get() * block) {
            let mut guard = self.lock_chunk(chunk);
            if off == 0 && n == self.chunk_len(chunk) {
                *guard = None;
            } else if let Some(data) = guard.as_mut() {
                data[off..off + n].fill(0);
                if data.iter().all(|b| *b == 0) {
                    *guard = None;
                }
            }
        }
        Ok(())
    }

    fn compare_and_write_sync(
        &self,
        lba: Lba,
        compare: &[u8],
        write: &[u8],
    ) -> VolResult<CompareOutcome> {
        if compare.len() != write.len() {
            return Err(VolumeError::BadLength);
        }
        let (start, len) = self.byte_range(lba, compare.len())?;
        // Lock every chunk of the range in ascending order so no write interleaves.
        let mut guards: Vec<(usize, ChunkGuard<'_>)> = Vec::new();
        for (chunk, _, _, _) in Self::pieces(start, len) {
            guards.push((chunk, self.lock_chunk(chunk)));
        }
        for (i, (chunk, off, req_off, n)) in Self::pieces(start, len).enumerate() {
            debug_assert_eq!(guards[i].0, chunk);
            let current = guards[i].1.as_deref();
            for k in 0..n {
                let have = current.map_or(0, |d| d[off + k]);
                if have != compare[req_off + k] {
                    return Ok(CompareOutcome::Miscompare { offset_bytes: (req_off + k) as u64 });
                }
            }
        }
        for (i, (chunk, off, req_off, n)) in Self::pieces(start, len).enumerate() {
            let chunk_len = self.chunk_len(chunk);
            let data = guards[i].1.get_or_insert_with(|| vec![0u8; chunk_len].into_boxed_slice());
            data[off..off + n].copy_from_slice(&write[req_off..req_off + n]);
            copy_stats::record(CopyPath::VolumeWrite, n);
        }
        Ok(CompareOutcome::Written)
    }

    fn status_sync(&self, lba: Lba) -> VolResult<LbaStatus> {
        check_range(self.geometry.capacity_blocks, lba, BlockCount::new(1))?;
        let block = u64::from(self.geometry.logical_block_bytes);
        let blocks_per_chunk = CHUNK_BYTES / block;
        let mapped_at = |chunk: usize| {
            self.chunks[chunk].read().unwrap_or_else(std::sync::PoisonError::into_inner).is_some()
        };
        let first =
            usize::try_from(lba.get() / blocks_per_chunk).map_err(|_| VolumeError::OutOfRange)?;
        let mapped = mapped_at(first);
        let mut end_chunk = first + 1;
        while end_chunk < self.chunks.len() && mapped_at(end_chunk) == mapped {
            end_chunk += 1;
        }
        let end_lba = (end_chunk as u64 * blocks_per_chunk).min(self.geometry.capacity_blocks);
        Ok(LbaStatus { mapped, run_blocks: end_lba - lba.get() })
    }
}

impl BlockVolume for MemoryVolume {
    fn geometry(&self) -> VolumeGeometry {
        self.geometry
    }

    fn read(&self, lba: Lba, mut buf: IoBuf) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        let res = self.read_sync(lba, &mut buf);
        Box::pin(async move { (res, buf) })
    }

    fn write(
        &self,
        lba: Lba,
        buf: IoBuf,
        _fua: bool,
    ) -> LocalBoxFuture<'_, (VolResult<()>, IoBuf)> {
        let res = self.write_sync(lba, &buf);
        Box::pin(async move { (res, buf) })
    }

    fn unmap(&self, lba: Lba, blocks: BlockCount) -> LocalBoxFuture<'_, VolResult<()>> {
        let res = self.zero_sync(lba, blocks);
        Box::pin(async move { res })
    }

    fn write_zeroes(&self, lba: Lba, blocks: BlockCount) -> LocalBoxFuture<'_, VolResult<()>> {
        let res = self.zero_sync(lba, blocks);
        Box::pin(async move { res })
    }

    fn flush(&self) -> LocalBoxFuture<'_, VolResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn compare_and_write(
        &self,
        lba: Lba,
        compare: IoBuf,
        write: IoBuf,
        _fua: bool,
    ) -> LocalBoxFuture<'_, VolResult<CompareOutcome>> {
        let res = self.compare_and_write_sync(lba, &compare, &write);
        Box::pin(async move { res })
    }

    fn lba_status(&self, lba: Lba) -> LocalBoxFuture<'_, VolResult<LbaStatus>> {
        let res = self.status_sync(lba);
        Box::pin(async move { res })
    }

    fn set_write_cache(&self, enabled: bool) {
        self.write_cache.store(enabled, Ordering::Relaxed);
    }

    fn write_cache(&self) -> bool {
        self.write_cache.load(Ordering::Relaxed)
    }
}
