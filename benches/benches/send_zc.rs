//! Plain send against zero-copy send (IORING_OP_SEND_ZC) on a loopback TCP connection, 4 KiB
//! and 128 KiB messages, 8 in flight: whether the Data-In path would gain from `send_zc`.
//!
//! A reader thread drains the other end. A zero-copy send completes twice (the send, then the
//! notification that the buffer is free again); its buffer is reused only after the second.
//! Criterion reports the time per message and the throughput; the ratio of the two modes at
//! one size is the answer for this machine. On loopback the kernel copies a zero-copy
//! payload when it delivers it, so zero copy can only add work there; a NIC with scatter-gather
//! DMA is where it pays.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use io_uring::{cqueue, opcode, types, IoUring};

const DEPTH: usize = 8;

/// A connected pair: the sending end, and a thread reading everything from the other.
fn connection() -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sender = TcpStream::connect(addr).expect("connect");
    let (mut receiver, _) = listener.accept().expect("accept");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while matches!(receiver.read(&mut buf), Ok(n) if n > 0) {}
    });
    sender.set_nodelay(true).expect("nodelay");
    sender
}

/// Sends `count` messages of `buffers[i].len()` bytes, `DEPTH` in flight; returns the time.
fn run(ring: &mut IoUring, fd: i32, buffers: &[Vec<u8>], count: u64, zero_copy: bool) -> Duration {
    let start = Instant::now();
    let mut issued = 0u64;
    // Per buffer: CQEs still expected before it can be reused.
    let mut pending = [0u8; DEPTH];
    let mut done = 0u64;
    while done < count {
        for (i, buf) in buffers.iter().enumerate() {
            if pending[i] != 0 || issued >= count {
                continue;
            }
            let len = u32::try_from(buf.len()).expect("message fits u32");
            let entry = if zero_copy {
                opcode::SendZc::new(types::Fd(fd), buf.as_ptr(), len).build()
            } else {
                opcode::Send::new(types::Fd(fd), buf.as_ptr(), len).build()
            };
            // SAFETY: the buffer outlives the operation: it is not touched or freed until
            // every CQE of the operation (send, and notification for zero copy) has arrived.
            unsafe { ring.submission().push(&entry.user_data(i as u64)).expect("queue room") };
            pending[i] = if zero_copy { 2 } else { 1 };
            issued += 1;
        }
        ring.submit_and_wait(1).expect("submit");
        for cqe in ring.completion() {
            let i = usize::try_from(cqe.user_data()).expect("index");
            if cqueue::notif(cqe.flags()) {
                pending[i] -= 1;
                continue;
            }
            assert!(cqe.result() >= 0, "send failed: {}", cqe.result());
            // A short send on a blocking-style loopback socket does not happen at these sizes;
            // count it as the whole message either way (throughput, not a protocol).
            pending[i] -= if zero_copy && !cqueue::more(cqe.flags()) { 2 } else { 1 };
            done += 1;
        }
    }
    // Wait for the last notifications so no buffer is in use when the next run starts.
    while pending.iter().any(|p| *p != 0) {
        ring.submit_and_wait(1).expect("submit");
        for cqe in ring.completion() {
            let i = usize::try_from(cqe.user_data()).expect("index");
            pending[i] = pending[i].saturating_sub(1);
        }
    }
    start.elapsed()
}

fn send_zc(c: &mut Criterion) {
    let sender = connection();
    let fd = sender.as_raw_fd();
    let mut ring = IoUring::new(64).expect("io_uring");
    for size in [4096usize, 128 * 1024] {
        let buffers: Vec<Vec<u8>> = (0..DEPTH).map(|i| vec![i as u8 + 1; size]).collect();
        let mut group = c.benchmark_group(format!("send_{}k", size / 1024));
        group.throughput(Throughput::Bytes(size as u64));
        for (name, zero_copy) in [("send", false), ("send_zc", true)] {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| run(&mut ring, fd, &buffers, iters, zero_copy));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, send_zc);
criterion_main!(benches);
