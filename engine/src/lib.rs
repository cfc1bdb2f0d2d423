//! ferrite engine: the volumes LUNs are served from.
//!
//! The SCSI layer knows volumes only through [`block_volume::BlockVolume`]; every volume kind
//! (memory, file, pool) implements it. The pool engine ([`pool::Pool`]) stores volumes
//! copy-on-write with end-to-end checksums, transaction groups, an intent log and snapshots;
//! docs/format.md describes what it puts on disk.

pub mod allocator;
pub mod async_lock;
pub mod block_pointer;
pub mod block_tree;
pub mod block_volume;
pub mod cache;
pub mod compress;
/// Payload copy counters; they live beside the buffers they count, in `drivers`.
pub use drivers::copy_stats;
pub mod dataset;
pub mod ddt;
pub mod device_volume;
pub mod error;
pub mod format;
pub mod fuzz;
pub mod inspect;
mod join;
pub mod label;
pub mod memory_volume;
pub mod meta;
pub mod object;
mod offload;
pub mod owner;
pub mod partition;
pub mod pool;
pub mod pool_root;
pub mod range_lock;
pub mod record;
pub mod reduction;
pub mod rewind;
pub mod route;
pub mod scrub;
pub mod snapshot;
pub mod space_map;
pub mod txg;
pub mod uberblock;
pub mod units;
pub mod vdev;
pub mod volume;
pub mod zil;

pub use error::{PoolError, PoolResult};
pub use pool::{
    CreateOptions, DeviceHealth, GroupHealth, Pool, PoolSpace, PoolTunables, VolumeOptions,
};
pub use units::{BlockCount, Lba, PartitionId, ShardId, TxgId, VolumeBlock};
pub use volume::PoolVolume;
