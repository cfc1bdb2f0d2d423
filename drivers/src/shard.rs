//! Shards: one pinned thread per core, each running its own reactor.

use std::future::Future;
use std::thread::JoinHandle;

use crate::error::{IoError, IoResult};
use crate::executor::{Reactor, ReactorConfig};

/// Pins the calling thread to `cpu`.
///
/// # Errors
/// When the kernel refuses the affinity mask.
pub fn pin_to_cpu(cpu: usize) -> IoResult<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(IoError::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(IoError::from)
}

/// Number of CPUs this process may run on.
#[must_use]
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Starts `count` shard threads. Shard `i` is pinned to CPU `i % available_cpus()` when `pin`
/// is set, builds its reactor from `config` (with `shard_id = i`) and runs `main(i)` to
/// completion. Returns one join handle per shard.
///
/// # Errors
/// When a thread cannot be spawned.
pub fn start_shards<F, Fut, R>(
    count: usize,
    config: &ReactorConfig,
    pin: bool,
    main: F,
) -> IoResult<Vec<JoinHandle<IoResult<R>>>>
where
    F: Fn(usize, &Reactor) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = R>,
    R: Send + 'static,
{
    let cpus = available_cpus();
    (0..count)
        .map(|shard_id| {
            let config = ReactorConfig { shard_id, ..config.clone() };
            let main = main.clone();
            std::thread::Builder::new()
                .name(format!("ferrite-shard-{shard_id}"))
                .spawn(move || {
                    if pin {
                        pin_to_cpu(shard_id % cpus)?;
                    }
                    let reactor = Reactor::new(&config)?;
                    let fut = main(shard_id, &reactor);
                    Ok(reactor.block_on(fut))
                })
                .map_err(IoError::from)
        })
        .collect()
}
