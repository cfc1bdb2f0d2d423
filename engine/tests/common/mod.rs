//! Helpers shared by the engine's integration tests.

#![allow(dead_code)]

use std::sync::Arc;

use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::executor::{Reactor, ReactorConfig};
use engine::block_volume::BlockVolume;

/// A small reactor for a test thread.
pub fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
        .expect("reactor")
}

/// A memory device of `mib` MiB with 512-byte sectors.
pub fn device(mib: u64) -> Arc<dyn BlockDevice> {
    Arc::new(MemoryDevice::new(mib << 20, 512))
}

/// Reads `len` bytes at `lba`; the read must succeed.
pub async fn read_at(vol: &dyn BlockVolume, lba: u64, len: usize) -> Vec<u8> {
    let (res, buf) = vol.read(lba, IoBuf::zeroed(len)).await;
    res.expect("read");
    buf.to_vec()
}

/// Writes `data` at `lba` (write-back); the write must succeed.
pub async fn write_at(vol: &dyn BlockVolume, lba: u64, data: &[u8]) {
    let (res, _) = vol.write(lba, IoBuf::from_slice(data), false).await;
    res.expect("write");
}
