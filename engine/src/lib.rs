//! ferrite engine: the volumes LUNs are served from.
//!
//! The SCSI layer knows volumes only through [`block_volume::BlockVolume`]; every volume kind
//! (memory, file, pool) implements it.

pub mod block_volume;
pub mod device_volume;
pub mod memory_volume;
pub mod range_lock;
