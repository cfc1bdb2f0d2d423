//! Owned, 4 KiB-aligned I/O buffers and the per-shard pool they come from.
//!
//! An [`IoBuf`] is the unit of buffer ownership in ferrite: an operation takes it by value and
//! hands it back with the completion, a cross-shard message carries it, and dropping it returns
//! pooled memory to its pool from whatever thread drops it. Memory is zero-initialised when it
//! is allocated, so every byte up to the capacity is always initialised and `set_len` is safe.

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use crossbeam::queue::ArrayQueue;

/// Alignment of every I/O buffer: enough for O_DIRECT on 512- and 4096-byte devices.
pub const BUFFER_ALIGN_BYTES: usize = 4096;

enum Origin {
    /// Allocated on its own (`zeroed`, `from_slice`); freed on drop.
    Heap,
    /// A slot of a [`BufferPool`]; returned to the pool on drop.
    Pool { pool: Arc<PoolShared>, index: u16 },
}

/// An owned, aligned byte buffer with a length (`len`) inside a fixed capacity.
pub struct IoBuf {
    ptr: NonNull<u8>,
    capacity_bytes: usize,
    len_bytes: usize,
    origin: Origin,
}

// SAFETY: an IoBuf uniquely owns its memory (heap allocation or pool slot handed out once), so
// moving it to another thread moves that ownership; the pool it may return to is thread-safe.
unsafe impl Send for IoBuf {}
// SAFETY: shared references only give `&[u8]` access; no interior mutability.
unsafe impl Sync for IoBuf {}

/// Allocates at least `bytes` (rounded up to the alignment, at least one alignment unit),
/// zeroed when `zero` is set; returns the memory and its size. The caller initialises every
/// byte of an unzeroed allocation before it reads one.
fn heap_alloc(bytes: usize, zero: bool) -> (NonNull<u8>, usize) {
    let alloc_bytes = bytes.max(1).next_multiple_of(BUFFER_ALIGN_BYTES);
    let layout = Layout::from_size_align(alloc_bytes, BUFFER_ALIGN_BYTES)
        .expect("buffer layout within isize::MAX");
    // SAFETY: layout has a non-zero size.
    let raw = unsafe {
        if zero {
            alloc_zeroed(layout)
        } else {
            alloc(layout)
        }
    };
    let Some(ptr) = NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
    (ptr, alloc_bytes)
}

impl IoBuf {
    /// A heap buffer of `capacity_bytes` (rounded up to the alignment), zeroed, with `len` equal
    /// to `capacity_bytes`.
    #[must_use]
    pub fn zeroed(capacity_bytes: usize) -> IoBuf {
        let (ptr, alloc_bytes) = heap_alloc(capacity_bytes, true);
        IoBuf { ptr, capacity_bytes: alloc_bytes, len_bytes: capacity_bytes, origin: Origin::Heap }
    }

    /// A heap buffer holding a copy of `data` (the rest of its capacity zeroed). The copy is
    /// the only pass over the bytes: they are not zeroed first.
    #[must_use]
    pub fn from_slice(data: &[u8]) -> IoBuf {
        let (ptr, alloc_bytes) = heap_alloc(data.len(), false);
        // SAFETY: the allocation holds alloc_bytes >= data.len() bytes and does not overlap
        // `data`; after the copy and the fill every byte up to the capacity is initialised,
        // which the type's invariant requires.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.as_ptr(), data.len());
            std::ptr::write_bytes(ptr.as_ptr().add(data.len()), 0, alloc_bytes - data.len());
        }
        IoBuf { ptr, capacity_bytes: alloc_bytes, len_bytes: data.len(), origin: Origin::Heap }
    }

    /// Bytes currently in use.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len_bytes
    }

    /// True when `len() == 0`.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    /// Bytes the buffer can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity_bytes
    }

    /// Sets the length. Every byte below the capacity is initialised (zeroed at allocation or
    /// written since), so this is safe.
    ///
    /// # Panics
    /// When `len_bytes` exceeds the capacity (a programmer error).
    pub fn set_len(&mut self, len_bytes: usize) {
        assert!(len_bytes <= self.capacity_bytes, "IoBuf::set_len past capacity");
        self.len_bytes = len_bytes;
    }

    /// Index of this buffer in its pool's registration with the ring, for fixed-buffer
    /// operations; `None` for heap buffers.
    #[must_use]
    pub fn fixed_index(&self) -> Option<u16> {
        match &self.origin {
            Origin::Pool { index, .. } => Some(*index),
            Origin::Heap => None,
        }
    }

    /// Identity of the pool this buffer belongs to (to check it is registered with a ring).
    #[must_use]
    pub fn pool_id(&self) -> Option<usize> {
        match &self.origin {
            Origin::Pool { pool, .. } => Some(Arc::as_ptr(pool) as usize),
            Origin::Heap => None,
        }
    }

    /// Raw pointer to the first byte, for building SQEs. Valid while `self` is alive.
    #[must_use]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Raw mutable pointer to the first byte, for building SQEs. Valid while `self` is alive.
    #[must_use]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The whole capacity as a mutable slice, regardless of `len`.
    #[must_use]
    pub fn full_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for capacity_bytes initialised bytes and uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity_bytes) }
    }
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len_bytes (<= capacity) initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len_bytes) }
    }
}

impl DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for len_bytes initialised bytes and uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len_bytes) }
    }
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBuf")
            .field("len", &self.len_bytes)
            .field("capacity", &self.capacity_bytes)
            .field("fixed_index", &self.fixed_index())
            .finish()
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        match &self.origin {
            Origin::Heap => {
                let layout = Layout::from_size_align(self.capacity_bytes, BUFFER_ALIGN_BYTES)
                    .expect("layout was valid at allocation");
                // SAFETY: allocated by `heap_alloc` with exactly this layout, freed once.
                unsafe { dealloc(self.ptr.as_ptr(), layout) };
            }
            Origin::Pool { pool, index } => {
                // The slot was taken from this queue, so there is always room to put it back.
                let pushed = pool.free.push(*index);
                assert!(pushed.is_ok(), "buffer pool free list overflow");
            }
        }
    }
}

/// A shared, read-only view of part of an [`IoBuf`]. Data received or read once is kept in
/// its buffer and referenced from everywhere it is needed (dirty blocks, cache entries, Data-In
/// segments, vectored device writes) instead of being copied; the buffer, and its pool slot,
/// are released with the last view. The bytes never move while a view exists.
#[derive(Clone)]
pub struct SharedBuf {
    buf: Arc<IoBuf>,
    start: usize,
    end: usize,
}

/// Length of the shared zero buffer behind [`SharedBuf::zeros`].
pub const SHARED_ZEROS_BYTES: usize = 128 * 1024;

impl SharedBuf {
    /// Shares all of `buf` (its current `len`).
    #[must_use]
    pub fn new(buf: IoBuf) -> SharedBuf {
        let end = buf.len();
        SharedBuf { buf: Arc::new(buf), start: 0, end }
    }

    /// A view of `range` of this view (relative offsets).
    ///
    /// # Panics
    /// When the range lies outside this view (a programmer error).
    #[must_use]
    pub fn slice(&self, range: Range<usize>) -> SharedBuf {
        assert!(range.start <= range.end && range.end <= self.len(), "SharedBuf::slice past end");
        SharedBuf {
            buf: Arc::clone(&self.buf),
            start: self.start + range.start,
            end: self.start + range.end,
        }
    }

    /// `len` zero bytes from one process-wide zero buffer (holes, unwritten blocks).
    ///
    /// # Panics
    /// When `len` exceeds [`SHARED_ZEROS_BYTES`].
    #[must_use]
    pub fn zeros(len: usize) -> SharedBuf {
        static ZEROS: OnceLock<SharedBuf> = OnceLock::new();
        ZEROS.get_or_init(|| SharedBuf::new(IoBuf::zeroed(SHARED_ZEROS_BYTES))).slice(0..len)
    }

    /// True when the view starts on a [`BUFFER_ALIGN_BYTES`] boundary of memory, as O_DIRECT
    /// transfers need.
    #[must_use]
    pub fn is_aligned(&self) -> bool {
        (self.buf.as_ptr() as usize + self.start).is_multiple_of(BUFFER_ALIGN_BYTES)
    }

    /// The buffer back, when this is its only view and covers all of it; the view otherwise.
    ///
    /// # Errors
    /// `self`, unchanged, when other views exist or this one is partial.
    pub fn into_iobuf(self) -> Result<IoBuf, SharedBuf> {
        if self.start != 0 || self.end != self.buf.len() {
            return Err(self);
        }
        let (start, end) = (self.start, self.end);
        Arc::try_unwrap(self.buf).map_err(|buf| SharedBuf { buf, start, end })
    }

    /// True when `self` and `other` view the same buffer.
    #[must_use]
    pub fn same_buffer(&self, other: &SharedBuf) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }
}

impl Deref for SharedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl PartialEq for SharedBuf {
    fn eq(&self, other: &SharedBuf) -> bool {
        **self == **other
    }
}

impl Eq for SharedBuf {}

impl AsRef<[u8]> for SharedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for SharedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBuf").field("start", &self.start).field("end", &self.end).finish()
    }
}

/// Owned bytes that stay at one address while their owner is moved (heap or pool memory) and
/// are not written while the owner is held, so an operation may keep the owner while the
/// kernel reads the bytes.
///
/// # Safety
/// `deref` must return the same memory for as long as the value lives, wherever it is
/// moved, and nothing may write that memory while the value is held by an operation.
pub unsafe trait StableBytes: Deref<Target = [u8]> + Unpin + 'static {}

// SAFETY: an IoBuf's memory is a separate allocation (or pool slot) it owns; moving the IoBuf
// does not move it, and writing needs `&mut`, which an operation holding it never gives out.
unsafe impl StableBytes for IoBuf {}
// SAFETY: a SharedBuf keeps its IoBuf alive through an Arc and gives only shared access.
unsafe impl StableBytes for SharedBuf {}

/// Shared part of a pool: one aligned region cut into equal slots and a lock-free free list.
pub struct PoolShared {
    base: NonNull<u8>,
    region_layout: Layout,
    buffer_bytes: usize,
    count: usize,
    free: ArrayQueue<u16>,
}

// SAFETY: the region is only reached through IoBufs, each owning one distinct slot; the free list
// is a lock-free queue.
unsafe impl Send for PoolShared {}
// SAFETY: as above; shared access never touches slot memory.
unsafe impl Sync for PoolShared {}

impl Drop for PoolShared {
    fn drop(&mut self) {
        // SAFETY: allocated in BufferPool::new with this layout; every IoBuf holds an Arc, so no
        // slot is alive when the last Arc goes.
        unsafe { dealloc(self.base.as_ptr(), self.region_layout) };
    }
}

/// A bounded pool of equal, aligned buffers, normally one per shard and registered with its
/// ring so reads and writes can use fixed-buffer opcodes.
#[derive(Clone)]
pub struct BufferPool {
    shared: Arc<PoolShared>,
}

impl BufferPool {
    /// Allocates `count` buffers of `buffer_bytes` (rounded up to 4 KiB) in one region.
    ///
    /// # Panics
    /// When `count` is 0 or above 16384 (the ring's registration limit).
    #[must_use]
    pub fn new(count: usize, buffer_bytes: usize) -> BufferPool {
        assert!(count > 0 && count <= 16384, "buffer pool count out of range");
        let buffer_bytes = buffer_bytes.max(1).next_multiple_of(BUFFER_ALIGN_BYTES);
        let region_layout = Layout::from_size_align(buffer_bytes * count, BUFFER_ALIGN_BYTES)
            .expect("pool layout within isize::MAX");
        // SAFETY: non-zero size.
        let raw = unsafe { alloc_zeroed(region_layout) };
        let Some(base) = NonNull::new(raw) else { std::alloc::handle_alloc_error(region_layout) };
        let free = ArrayQueue::new(count);
        for i in 0..count {
            let index = u16::try_from(i).expect("count <= 16384");
            let pushed = free.push(index);
            assert!(pushed.is_ok());
        }
        BufferPool {
            shared: Arc::new(PoolShared { base, region_layout, buffer_bytes, count, free }),
        }
    }

    /// Takes a free buffer (its `len` is the full buffer size), or `None` when all are in use.
    #[must_use]
    pub fn get(&self) -> Option<IoBuf> {
        let index = self.shared.free.pop()?;
        let offset = usize::from(index) * self.shared.buffer_bytes;
        // SAFETY: offset is inside the region (index < count).
        let ptr = unsafe { NonNull::new_unchecked(self.shared.base.as_ptr().add(offset)) };
        Some(IoBuf {
            ptr,
            capacity_bytes: self.shared.buffer_bytes,
            len_bytes: self.shared.buffer_bytes,
            origin: Origin::Pool { pool: Arc::clone(&self.shared), index },
        })
    }

    /// Size of each buffer.
    #[must_use]
    pub fn buffer_bytes(&self) -> usize {
        self.shared.buffer_bytes
    }

    /// Number of buffers in the pool.
    #[must_use]
    pub fn count(&self) -> usize {
        self.shared.count
    }

    /// Buffers currently free.
    #[must_use]
    pub fn available(&self) -> usize {
        self.shared.free.len()
    }

    /// Identity matching [`IoBuf::pool_id`].
    #[must_use]
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// The iovecs describing every slot, in index order, for `io_uring_register_buffers`.
    #[must_use]
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.shared.count)
            .map(|i| libc::iovec {
                // SAFETY: inside the region.
                iov_base: unsafe { self.shared.base.as_ptr().add(i * self.shared.buffer_bytes) }
                    .cast(),
                iov_len: self.shared.buffer_bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buffer_is_aligned_and_zeroed() {
        let buf = IoBuf::zeroed(5000);
        assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGN_BYTES, 0);
        assert_eq!(buf.len(), 5000);
        assert_eq!(buf.capacity(), 8192);
        assert!(buf.iter().all(|b| *b == 0));
    }

    #[test]
    fn a_copied_buffer_holds_the_data_and_zeros_past_it() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 + 1).collect();
        let mut buf = IoBuf::from_slice(&data);
        assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGN_BYTES, 0);
        assert_eq!(&buf[..], &data[..]);
        assert_eq!(buf.capacity(), 8192);
        assert!(buf.full_mut()[5000..].iter().all(|b| *b == 0));
        assert_eq!(IoBuf::from_slice(&[]).capacity(), 4096);
    }

    #[test]
    fn pool_is_bounded_and_returns_on_drop_from_another_thread() {
        let pool = BufferPool::new(2, 4096);
        let a = pool.get().expect("first");
        let b = pool.get().expect("second");
        assert!(pool.get().is_none(), "pool must be bounded");
        assert_ne!(a.fixed_index(), b.fixed_index());
        std::thread::spawn(move || drop(a)).join().expect("thread");
        assert_eq!(pool.available(), 1);
        drop(b);
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn shared_views_keep_the_bytes_and_release_the_slot_with_the_last_view() {
        let pool = BufferPool::new(1, 8192);
        let mut buf = pool.get().expect("buffer");
        buf[4096] = 9;
        let whole = SharedBuf::new(buf);
        let half = whole.slice(4096..8192);
        assert!(half.is_aligned() && half.same_buffer(&whole));
        assert_eq!(half[0], 9);
        assert_eq!(half.slice(0..1).len(), 1);
        drop(whole);
        assert_eq!(pool.available(), 0, "a view still holds the slot");
        drop(half);
        assert_eq!(pool.available(), 1);
        assert!(SharedBuf::zeros(4096).iter().all(|b| *b == 0));
        let one = SharedBuf::new(IoBuf::zeroed(4096));
        let other = one.clone();
        let one = one.into_iobuf().expect_err("two views");
        drop(other);
        assert_eq!(one.into_iobuf().map(|b| b.len()).ok(), Some(4096));
    }

    #[test]
    fn set_len_within_capacity() {
        let mut buf = IoBuf::zeroed(4096);
        buf.set_len(512);
        assert_eq!(buf.len(), 512);
        buf[0] = 7;
        buf.set_len(4096);
        assert_eq!(buf[0], 7);
    }
}
