//! Taking a buffer from a shard's pool and returning it (lock-free free list, no allocation).

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use drivers::buffer::{BufferPool, IoBuf};

fn buffer_pool(c: &mut Criterion) {
    let pool = BufferPool::new(256, 128 * 1024);
    let mut group = c.benchmark_group("buffer_pool");
    group.bench_function("get_put", |b| {
        b.iter(|| {
            let buf = pool.get().expect("pool has free buffers");
            black_box(&buf);
            drop(buf);
        });
    });
    group.bench_function("get_put_32_outstanding", |b| {
        let mut held: Vec<IoBuf> = Vec::with_capacity(32);
        b.iter(|| {
            for _ in 0..32 {
                held.push(pool.get().expect("pool has free buffers"));
            }
            black_box(&held);
            held.clear();
        });
    });
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = buffer_pool }
criterion_main!(benches);
