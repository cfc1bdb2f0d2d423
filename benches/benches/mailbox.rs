//! Cross-shard message round trip: the bench thread (shard 0, its own reactor) sends a buffer
//! to an echo shard thread (shard 1, pinned, its own reactor) and awaits it back. Each leg
//! moves ownership of the buffer without copying and may wake the other reactor through its
//! eventfd.

mod common;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use drivers::buffer::IoBuf;
use drivers::executor::{Reactor, ReactorConfig};
use drivers::mailbox::mailbox;
use drivers::shard;

fn config(shard_id: usize) -> ReactorConfig {
    ReactorConfig { shard_id, buffer_count: 4, buffer_bytes: 4096, ..Default::default() }
}

fn mailbox_round_trip(c: &mut Criterion) {
    let (to_echo, echo_rx) = mailbox::<IoBuf>(64);
    let (echo_tx, from_echo) = mailbox::<IoBuf>(64);
    let cpus = shard::available_cpus();
    let echo = std::thread::Builder::new()
        .name("ferrite-shard-1".into())
        .spawn(move || {
            let _ = shard::pin_to_cpu(1 % cpus);
            let reactor = Reactor::new(&config(1)).expect("echo reactor");
            reactor.block_on(async move {
                while let Some(buf) = echo_rx.recv().await {
                    if echo_tx.send(buf).await.is_err() {
                        break;
                    }
                }
            });
        })
        .expect("spawn echo shard");
    let _ = shard::pin_to_cpu(0);
    let reactor = Reactor::new(&config(0)).expect("reactor");
    let mut slot = Some(IoBuf::zeroed(4096));
    c.bench_function("mailbox/round_trip_2_shards", |b| {
        b.iter_custom(|iters| {
            let mut buf = slot.take().expect("buffer is home between samples");
            let (elapsed, back) = reactor.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    if to_echo.send(buf).await.is_err() {
                        panic!("echo shard gone");
                    }
                    buf = from_echo.recv().await.expect("echo shard replies");
                }
                (start.elapsed(), buf)
            });
            slot = Some(back);
            elapsed
        });
    });
    drop(to_echo);
    echo.join().expect("echo shard");
}

criterion_group! { name = benches; config = common::config(); targets = mailbox_round_trip }
criterion_main!(benches);
