//! Helpers shared by the engine's integration tests.

#![allow(dead_code)]

use std::sync::Arc;

use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::executor::{Reactor, ReactorConfig};

/// A small reactor for a test thread.
pub fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
        .expect("reactor")
}

/// A memory device of `mib` MiB with 512-byte sectors.
pub fn device(mib: u64) -> Arc<dyn BlockDevice> {
    Arc::new(MemoryDevice::new(mib << 20, 512))
}
