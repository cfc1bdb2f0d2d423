//! Round trip of one IORING_OP_NOP through a shard's reactor: submit, io_uring_enter, reap,
//! wake the task. The floor under every ring operation.

mod common;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use drivers::executor::{spawn, Reactor, ReactorConfig};
use drivers::ops;

fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig { buffer_count: 4, buffer_bytes: 4096, ..Default::default() })
        .expect("reactor")
}

fn ring_nop(c: &mut Criterion) {
    let reactor = reactor();
    let mut group = c.benchmark_group("ring_nop");
    group.bench_function("one_in_flight", |b| {
        b.iter_custom(|iters| {
            reactor.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    ops::nop().await.expect("nop");
                }
                start.elapsed()
            })
        });
    });
    // 32 tasks with one NOP each in flight: the reactor batches their SQEs per enter.
    group.bench_function("32_in_flight_per_op", |b| {
        b.iter_custom(|iters| {
            reactor.block_on(async move {
                let per_task = iters.div_ceil(32);
                let start = Instant::now();
                let tasks: Vec<_> = (0..32)
                    .map(|_| {
                        spawn(async move {
                            for _ in 0..per_task {
                                ops::nop().await.expect("nop");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
                let elapsed = start.elapsed();
                // Report per operation actually run.
                elapsed.mul_f64(iters as f64 / (per_task * 32) as f64)
            })
        });
    });
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = ring_nop }
criterion_main!(benches);
