//! Heap settings for a storage process.
//!
//! The engine holds its dirty data as block-sized allocations that live for one txg (up to the
//! dirty limit, hundreds of MiB) and are freed together when the txg is durable; a sync also
//! builds megabyte write buffers. With glibc's defaults each thread allocates from its own
//! arena of 64 MiB heaps that are unmapped as soon as they empty, and allocations of 128 KiB
//! and more are separate mappings, so every txg's data landed in fresh pages again: a page
//! fault per 4 KiB and an `mprotect` per heap growth. [`keep_freed_memory`] makes the process
//! allocate from one arena that keeps freed memory for reuse instead.

/// Freed memory the heap keeps for reuse before it returns any to the kernel.
pub const KEEP_FREED_BYTES: usize = 1 << 30;

/// Largest allocation served from the heap rather than by its own mapping (glibc's maximum).
pub const HEAP_ALLOCATION_MAX_BYTES: usize = 32 << 20;

/// Applies the heap settings above. Call once at the start of `main`, before any thread is
/// spawned. A no-op where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let keep = libc::c_int::try_from(KEEP_FREED_BYTES).unwrap_or(libc::c_int::MAX);
        let mmap = libc::c_int::try_from(HEAP_ALLOCATION_MAX_BYTES).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes allocator parameters; it is called before other
        // threads exist, and a rejected value (return 0) leaves glibc's default in place.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_TRIM_THRESHOLD, keep);
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
        }
    }
}
