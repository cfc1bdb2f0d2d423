//! A cancelled operation keeps its pool buffer until the kernel completes it (io_uring).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use drivers::buffer::{BufferPool, IoBuf};
use drivers::executor::{self, BackendChoice};
use drivers::ops;

use crate::support::reactor;

async fn pair() -> (OwnedFd, OwnedFd) {
    let listener = ops::tcp_listen("127.0.0.1:0".parse().expect("address")).expect("listen");
    let addr = ops::local_addr(listener.as_raw_fd()).expect("local address");
    let accept = executor::spawn(async move { ops::accept(listener.as_raw_fd()).await });
    let client = ops::connect(addr).await.expect("connect");
    let (server, _) = accept.await.expect("accept");
    (client, server)
}

/// Runs `test` on the io_uring reactor (none: nothing to test) with the server end of a
/// connected socket pair, the shard's buffer pool, the count of its free buffers, and one
/// buffer taken from it.
fn with_a_pool_buffer<F: std::future::Future<Output = ()>>(
    test: impl FnOnce(RawFd, BufferPool, usize, IoBuf) -> F,
) {
    let Some(r) = reactor(BackendChoice::Uring) else { return };
    r.block_on(async {
        let (_client, server) = pair().await;
        let pool = executor::buffer_pool();
        let before = pool.available();
        let buf = pool.get().expect("pool buffer");
        test(server.as_raw_fd(), pool, before, buf).await;
    });
}

/// Waits (bounded) until the ring has nothing in flight, then checks the buffer came home.
async fn buffer_returns_after_cancel(pool: &BufferPool, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while executor::ops_in_flight() > 0 {
        assert!(Instant::now() < deadline, "the cancellation never completed");
        executor::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(pool.available(), before, "the buffer returns to the pool once the kernel is done");
}

#[test]
fn recv_dropped_by_timeout_keeps_its_buffer_until_the_kernel_completes() {
    with_a_pool_buffer(|server, pool, before, buf| async move {
        let res =
            executor::timeout_after(Duration::from_millis(20), ops::recv(server, buf, 0..4096))
                .await;
        assert!(res.is_err(), "nothing was sent, the recv must time out");
        assert!(executor::ops_in_flight() > 0, "the cancelled recv is still in the kernel");
        assert_eq!(pool.available(), before - 1, "the kernel may still write into the buffer");
        buffer_returns_after_cancel(&pool, before).await;
    });
}

#[test]
fn recv_in_an_aborted_task_keeps_its_buffer_until_the_kernel_completes() {
    with_a_pool_buffer(|server, pool, before, buf| async move {
        let task = executor::spawn(async move { ops::recv(server, buf, 0..4096).await.0 });
        while executor::ops_in_flight() == 0 {
            executor::yield_now().await;
        }
        task.abort();
        assert_eq!(executor::live_tasks(), 0, "the task is gone");
        assert!(executor::ops_in_flight() > 0, "its recv is still in the kernel");
        assert_eq!(pool.available(), before - 1, "the buffer stays parked with the ring");
        buffer_returns_after_cancel(&pool, before).await;
    });
}
