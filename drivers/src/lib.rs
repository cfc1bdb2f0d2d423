//! ferrite drivers: everything that talks to the kernel.
//!
//! One [`executor::Reactor`] per shard owns an io_uring ring (or the epoll fallback), runs
//! `!Send` tasks, and completes the operations in [`ops`]. Buffers ([`buffer::IoBuf`]) move
//! through the ring by value. Block devices implement [`blockdev::BlockDevice`].

pub mod atomic_waker;
pub mod blockdev;
pub mod buffer;
pub mod copy_stats;
mod epoll;
pub mod error;
pub mod executor;
pub mod heap;
pub mod histogram;
pub mod mailbox;
pub mod ops;
pub mod remote;
pub mod ring;
pub mod shard;

use std::future::Future;
use std::pin::Pin;

/// A boxed, `!Send` future running on the current shard.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
