//! File operations of `ops` on a real file in a temporary directory, on both backends.

use std::os::fd::AsRawFd;

use drivers::buffer::IoBuf;
use drivers::executor::{self, BackendChoice, BackendKind};
use drivers::ops::{self, FallocateMode, FileRef};

use crate::support::{pattern, reactor, BACKENDS};

const FILE_BYTES: u64 = 1 << 20;

fn temp_file(dir: &tempfile::TempDir) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("data"))
        .expect("create file");
    file.set_len(FILE_BYTES).expect("size file");
    file
}

/// Runs `test` on each backend's reactor with a new temporary file (its descriptor).
fn with_each_backend_file<F: std::future::Future<Output = ()>>(test: impl Fn(FileRef) -> F) {
    for backend in BACKENDS {
        let Some(r) = reactor(backend) else { continue };
        let dir = tempfile::tempdir().expect("tempdir");
        let file = temp_file(&dir);
        r.block_on(test(FileRef::Raw(file.as_raw_fd())));
    }
}

#[test]
fn read_write_with_pool_and_heap_buffers() {
    for backend in BACKENDS {
        let Some(r) = reactor(backend) else { continue };
        if backend == BackendChoice::Uring {
            assert!(r.buffers_registered(), "the pool must be registered with the ring");
        } else {
            assert!(!r.buffers_registered(), "no ring, no registration");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = temp_file(&dir);
        let fd = FileRef::Raw(file.as_raw_fd());
        r.block_on(async {
            let pool = executor::buffer_pool();
            let mut fixed = pool.get().expect("pool buffer");
            assert_eq!(fixed.pool_id(), Some(pool.id()));
            assert!(fixed.fixed_index().is_some());
            fixed.set_len(16384);
            fixed.copy_from_slice(&pattern(1, 16384));
            let (res, fixed) = ops::write_at(fd, fixed, 0).await;
            assert_eq!(res.expect("write from pool buffer"), 16384);

            let heap = IoBuf::from_slice(&pattern(2, 8192));
            let (res, heap) = ops::write_at(fd, heap, 65536).await;
            assert_eq!(res.expect("write from heap buffer"), 8192);

            // Read each back into the other kind of buffer.
            let (res, back) = ops::read_at(fd, IoBuf::zeroed(16384), 0).await;
            assert_eq!(res.expect("read into heap"), 16384);
            assert_eq!(&back[..], &fixed[..]);
            let mut into_pool = pool.get().expect("pool buffer");
            into_pool.set_len(8192);
            let (res, into_pool) = ops::read_at(fd, into_pool, 65536).await;
            assert_eq!(res.expect("read into pool buffer"), 8192);
            assert_eq!(&into_pool[..], &heap[..]);

            let (res, _) = ops::read_exact_at(fd, IoBuf::zeroed(4096), FILE_BYTES).await;
            assert!(res.is_err(), "reading past the end must not succeed");
            let (res, _) = ops::write_all_at(fd, IoBuf::from_slice(&pattern(3, 4096)), 4096).await;
            res.expect("write_all_at");
        });
        assert_eq!(
            std::fs::read(dir.path().join("data")).expect("read file")[4096..8192],
            pattern(3, 4096)[..]
        );
    }
}

#[test]
fn vectored_read_and_write() {
    with_each_backend_file(|fd| async move {
        let parts: Vec<IoBuf> =
            (0..3).map(|i| IoBuf::from_slice(&pattern(10 + i, 4096 * (i as usize + 1)))).collect();
        let expected: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        let (res, _parts) = ops::writev_at(fd, parts, 8192).await;
        assert_eq!(res.expect("writev"), expected.len());
        let bufs = vec![IoBuf::zeroed(8192), IoBuf::zeroed(16384)];
        let (res, bufs) = ops::readv_at(fd, bufs, 8192).await;
        assert_eq!(res.expect("readv"), 24576);
        let got: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(got, expected);
    });
}

#[test]
fn sync_and_fallocate_punch_hole_and_zero_range() {
    with_each_backend_file(|fd| async move {
        let data = pattern(20, 65536);
        let (res, _) = ops::write_all_at(fd, IoBuf::from_slice(&data), 0).await;
        res.expect("write");
        ops::fsync(fd).await.expect("fsync");
        ops::fdatasync(fd).await.expect("fdatasync");
        ops::fallocate(fd, FallocateMode::Allocate, 0, FILE_BYTES).await.expect("allocate");
        ops::fallocate(fd, FallocateMode::PunchHole, 8192, 8192).await.expect("punch hole");
        ops::fallocate(fd, FallocateMode::ZeroRange, 32768, 4096).await.expect("zero range");
        let (res, back) = ops::read_exact_at(fd, IoBuf::zeroed(65536), 0).await;
        res.expect("read back");
        let mut expected = data.clone();
        expected[8192..16384].fill(0);
        expected[32768..36864].fill(0);
        assert_eq!(
            &back[..],
            &expected[..],
            "punched and zeroed ranges read as zeros, the rest is intact"
        );
    });
}

#[test]
fn registered_file_reads_and_writes() {
    for backend in BACKENDS {
        let Some(r) = reactor(backend) else { continue };
        let dir = tempfile::tempdir().expect("tempdir");
        let file = temp_file(&dir);
        r.block_on(async {
            let fixed = ops::register_file(file.as_raw_fd()).expect("register file");
            match executor::backend_kind() {
                BackendKind::Uring => {
                    assert!(matches!(fixed, FileRef::Fixed(_)), "a ring slot, got {fixed:?}");
                }
                BackendKind::Epoll => assert_eq!(fixed, FileRef::Raw(file.as_raw_fd())),
            }
            let pool = executor::buffer_pool();
            let mut buf = pool.get().expect("pool buffer");
            buf.set_len(4096);
            buf.copy_from_slice(&pattern(30, 4096));
            let (res, buf) = ops::write_at(fixed, buf, 4096).await;
            assert_eq!(res.expect("fixed-file write"), 4096);
            let (res, back) = ops::read_at(fixed, IoBuf::zeroed(4096), 4096).await;
            assert_eq!(res.expect("fixed-file read"), 4096);
            assert_eq!(&back[..], &buf[..]);
            ops::fdatasync(fixed).await.expect("fixed-file fdatasync");
            ops::unregister_file(fixed);
        });
    }
}
