//! Socket operations, timeout, cancel, close and nop of `ops` over 127.0.0.1.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use drivers::buffer::IoBuf;
use drivers::error::IoError;
use drivers::executor::{self, BackendChoice};
use drivers::ops;

use crate::support::{on_each_backend, pattern, reactor};

/// A connected (client, server) pair over loopback.
async fn connected_pair() -> (OwnedFd, OwnedFd) {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let listener = ops::tcp_listen(any).expect("listen");
    let addr = ops::local_addr(listener.as_raw_fd()).expect("local address");
    let accept = executor::spawn(async move {
        let res = ops::accept(listener.as_raw_fd()).await;
        ops::close(listener).await.expect("close listener");
        res
    });
    let client = ops::connect(addr).await.expect("connect");
    let (server, peer) = accept.await.expect("accept");
    assert_eq!(peer.map(|p| p.ip()), Some(addr.ip()));
    ops::set_nodelay(client.as_raw_fd()).expect("nodelay");
    (client, server)
}

/// Runs `test` on the reactor of each backend this machine has, with a connected pair.
fn with_a_pair_on_each_backend<F: std::future::Future<Output = ()>>(
    test: impl Fn(BackendChoice, OwnedFd, OwnedFd) -> F,
) {
    on_each_backend(|backend| {
        let test = &test;
        async move {
            let (client, server) = connected_pair().await;
            test(backend, client, server).await;
        }
    });
}

#[test]
fn tcp_send_recv_sendmsg_send_zc_and_close() {
    with_a_pair_on_each_backend(|_, client, server| async move {
        let (c, s) = (client.as_raw_fd(), server.as_raw_fd());

        // send / recv_exact
        let hello = pattern(40, 3000);
        let (res, _) = ops::send(c, IoBuf::from_slice(&hello), 0..3000).await;
        assert_eq!(res.expect("send"), 3000);
        let (res, got) = ops::recv_exact(s, IoBuf::zeroed(3000), 0..3000).await;
        res.expect("recv_exact");
        assert_eq!(&got[..], &hello[..]);

        // sendmsg: three parts with sub-ranges, delivered in order
        let parts: Vec<(IoBuf, std::ops::Range<usize>)> =
            (0..3u64).map(|i| (IoBuf::from_slice(&pattern(50 + i, 1000)), 100..900)).collect();
        let expected: Vec<u8> = parts.iter().flat_map(|(b, r)| b[r.clone()].to_vec()).collect();
        let (res, _) = ops::send_all(c, parts).await;
        res.expect("send_all over sendmsg");
        let (res, got) = ops::recv_exact(s, IoBuf::zeroed(expected.len()), 0..expected.len()).await;
        res.expect("recv sendmsg payload");
        assert_eq!(&got[..], &expected[..]);
        let (res, _) = ops::sendmsg(
            c,
            vec![(IoBuf::from_slice(b"ab"), 0..2), (IoBuf::from_slice(b"cd"), 0..2)],
        )
        .await;
        assert_eq!(res.expect("sendmsg"), 4);
        let (res, got) = ops::recv_exact(s, IoBuf::zeroed(4), 0..4).await;
        res.expect("recv");
        assert_eq!(&got[..], b"abcd");

        // send_zc from a registered pool buffer; the buffer comes back after the notification
        let pool = executor::buffer_pool();
        let mut zc = pool.get().expect("pool buffer");
        zc.set_len(8192);
        zc.copy_from_slice(&pattern(60, 8192));
        let mut sent = 0;
        while sent < 8192 {
            let (res, back) = ops::send_zc(c, zc, sent..8192).await;
            zc = back;
            sent += res.expect("send_zc");
        }
        let (res, got) = ops::recv_exact(s, IoBuf::zeroed(8192), 0..8192).await;
        res.expect("recv zero-copy payload");
        assert_eq!(&got[..], &zc[..]);

        // recv into a sub-range and the reply path
        let (res, _) = ops::send(s, IoBuf::from_slice(b"pong"), 0..4).await;
        assert_eq!(res.expect("reply"), 4);
        let (res, got) = ops::recv_exact(c, IoBuf::zeroed(16), 10..14).await;
        res.expect("recv into a sub-range");
        assert_eq!(&got[10..14], b"pong");

        // close: the peer sees end of stream
        ops::close(client).await.expect("close");
        let (res, _) = ops::recv(s, IoBuf::zeroed(16), 0..16).await;
        assert_eq!(res.expect("recv after peer close"), 0);
        ops::close(server).await.expect("close server");
    });
}

#[test]
fn timeout_and_nop() {
    on_each_backend(|_| async move {
        ops::nop().await.expect("nop");
        let start = Instant::now();
        ops::timeout(Duration::from_millis(20)).await.expect("timeout");
        assert!(start.elapsed() >= Duration::from_millis(20), "timeout completed early");
    });
}

#[test]
fn cancel_fd_cancels_a_pending_recv() {
    // On the epoll fallback cancel_fd only forgets the descriptor's readiness (nothing is
    // queued in a kernel ring to cancel), so this behaviour is io_uring's.
    let Some(r) = reactor(BackendChoice::Uring) else { return };
    r.block_on(async {
        let (client, server) = connected_pair().await;
        let s = server.as_raw_fd();
        let pending =
            executor::spawn(async move { ops::recv(s, IoBuf::zeroed(4096), 0..4096).await.0 });
        while executor::ops_in_flight() == 0 {
            executor::yield_now().await;
        }
        let cancelled = ops::cancel_fd(s).await.expect("cancel_fd");
        assert!(cancelled >= 1, "the pending recv must be found");
        assert_eq!(pending.await, Err(IoError::Canceled));
        assert_eq!(ops::cancel_fd(s).await.expect("cancel nothing"), 0);
        drop(client);
        drop(server);
    });
}

#[test]
fn descriptor_numbers_reused_after_a_plain_drop_still_work() {
    // Sockets dropped without ops::close leave their numbers to the next sockets; the fallback
    // must not mistake a new socket for the old one it already knew.
    on_each_backend(|backend| async move {
        for round in 0..3u64 {
            let (client, server) = connected_pair().await;
            // Wait once on each socket so the reactor tracks them, then drop them plainly.
            let pending = executor::timeout_after(
                Duration::from_millis(5),
                ops::recv(server.as_raw_fd(), IoBuf::zeroed(16), 0..16),
            )
            .await;
            assert!(pending.is_err(), "round {round}: nothing was sent yet");
            let data = pattern(70 + round, 100);
            let (res, _) = ops::send(client.as_raw_fd(), IoBuf::from_slice(&data), 0..100).await;
            assert_eq!(res.expect("send"), 100);
            let got = executor::timeout_after(
                Duration::from_secs(5),
                ops::recv_exact(server.as_raw_fd(), IoBuf::zeroed(100), 0..100),
            )
            .await
            .unwrap_or_else(|_| {
                panic!("{backend:?} round {round}: recv on a reused descriptor hung")
            });
            got.0.expect("recv");
            assert_eq!(&got.1[..], &data[..]);
            drop(client);
            drop(server);
        }
    });
}

#[test]
fn queued_messages_arrive_in_order_and_a_long_run_of_them_lets_other_tasks_run() {
    with_a_pair_on_each_backend(|backend, client, server| async move {
        let (c, s) = (client.as_raw_fd(), server.as_raw_fd());
        // 300 headers' worth of 48-byte messages already queued on the socket: taken one
        // after another, in order, whether straight from the socket or through the ring.
        let count = 300;
        let stream = pattern(77, 48 * count);
        let (res, _) = ops::send(c, IoBuf::from_slice(&stream), 0..stream.len()).await;
        assert_eq!(res.expect("send"), stream.len());
        let ticked = std::rc::Rc::new(std::cell::Cell::new(false));
        let t = std::rc::Rc::clone(&ticked);
        let ticker = executor::spawn(async move { t.set(true) });
        let mut buf = IoBuf::zeroed(48);
        let mut ticked_before_end = false;
        for i in 0..count {
            let (res, back) = ops::recv_exact(s, buf, 0..48).await;
            buf = back;
            res.expect("recv");
            assert_eq!(&buf[..], &stream[i * 48..(i + 1) * 48], "message {i}");
            ticked_before_end |= ticked.get();
        }
        if backend == BackendChoice::Uring {
            assert!(ticked_before_end, "a run of queued receives never gave way");
        }
        ticker.await;
        // Nothing queued: the receive waits for bytes that come later.
        let late = executor::spawn(async move {
            executor::sleep(Duration::from_millis(20)).await;
            let (res, _) = ops::send(c, IoBuf::from_slice(b"late"), 0..4).await;
            res.expect("send late")
        });
        let (res, got) = ops::recv_exact(s, IoBuf::zeroed(4), 0..4).await;
        res.expect("recv late");
        assert_eq!(&got[..], b"late");
        assert_eq!(late.await, 4);
        // A closed peer reads as disconnected.
        ops::close(client).await.expect("close");
        let (res, _) = ops::recv_exact(s, IoBuf::zeroed(4), 0..4).await;
        assert!(matches!(res, Err(IoError::Disconnected(_))), "{res:?}");
    });
}
