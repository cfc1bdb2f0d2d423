//! Shared helpers: reactors per backend (skipping io_uring with a printed reason when the
//! kernel refuses it, failing instead under `FERRITE_REQUIRE_URING=1`) and seeded data.

use drivers::blockdev::prng::SplitMix64;
use drivers::executor::{self, BackendChoice, Reactor, ReactorConfig};

/// Buffers in each test reactor's pool.
pub const POOL_BUFFERS: usize = 32;
/// Size of each pooled buffer.
pub const POOL_BUFFER_BYTES: usize = 64 * 1024;

/// A reactor on `backend`, or `None` (with the reason printed) when io_uring is unavailable.
pub fn reactor(backend: BackendChoice) -> Option<Reactor> {
    let config = ReactorConfig {
        backend,
        ring_entries: 64,
        buffer_count: POOL_BUFFERS,
        buffer_bytes: POOL_BUFFER_BYTES,
        blocking_threads: 2,
        ..Default::default()
    };
    match Reactor::new(&config) {
        Ok(r) => Some(r),
        Err(err) if backend == BackendChoice::Uring && executor::uring_required() => {
            panic!("io_uring unavailable ({err}) and FERRITE_REQUIRE_URING=1 requires it")
        }
        Err(err) if backend == BackendChoice::Uring => {
            eprintln!("skipping the io_uring half of this test: io_uring unavailable ({err})");
            None
        }
        Err(err) => panic!("epoll reactor: {err}"),
    }
}

/// The explicit backends every backend-generic test runs on.
pub const BACKENDS: [BackendChoice; 2] = [BackendChoice::Uring, BackendChoice::Epoll];

/// `len` seeded bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    SplitMix64::new(seed).fill(&mut data);
    data
}

/// Runs `test` on the reactor of each backend this machine has.
pub fn on_each_backend<F: std::future::Future<Output = ()>>(test: impl Fn(BackendChoice) -> F) {
    for backend in BACKENDS {
        let Some(r) = reactor(backend) else { continue };
        r.block_on(test(backend));
    }
}
