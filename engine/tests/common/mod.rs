//! Helpers shared by the engine's integration tests.

#![allow(dead_code)]

use std::sync::Arc;

use drivers::blockdev::memory::MemoryDevice;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::executor::{Reactor, ReactorConfig};
use engine::block_volume::BlockVolume;
use engine::inspect::InspectReport;
use engine::units::Lba;
use engine::{CreateOptions, Pool, PoolTunables};

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
    let (res, buf) = vol.read(Lba::new(lba), IoBuf::zeroed(len)).await;
    res.expect("read");
    buf.to_vec()
}

/// Writes `data` at `lba` (write-back); the write must succeed.
pub async fn write_at(vol: &dyn BlockVolume, lba: u64, data: &[u8]) {
    let (res, _) = vol.write(Lba::new(lba), IoBuf::from_slice(data), false).await;
    res.expect("write");
}

/// xorshift64: the random history is the same on every run of a seed (a nonzero one).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 4 KiB block `value`: equal values give equal blocks (so a dedup volume shares them),
/// different values different ones.
pub fn block(value: u64) -> IoBuf {
    let mut data = vec![0u8; 4096];
    for (i, chunk) in data.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(value.wrapping_mul(0x9e37_79b9) ^ i as u64).to_le_bytes());
    }
    IoBuf::from_slice(&data)
}

/// Writes `buf` at `lba`, FUA when `fua` is set; the write must succeed.
pub async fn write_buf(vol: &dyn BlockVolume, lba: u64, buf: IoBuf, fua: bool) {
    let (res, _) = vol.write(Lba::new(lba), buf, fua).await;
    res.expect("write");
}

/// Bytes `seed`, `seed + 1`, ... (mod 251 steps): a pattern that tells blocks and offsets apart.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

/// A memory device of `mib` MiB with 512-byte sectors, as itself (to read or damage its
/// bytes) and as the pool's device.
pub fn memory_device(mib: u64) -> (Arc<MemoryDevice>, Arc<dyn BlockDevice>) {
    let mem = Arc::new(MemoryDevice::new(mib << 20, 512));
    let dev: Arc<dyn BlockDevice> = Arc::clone(&mem) as Arc<dyn BlockDevice>;
    (mem, dev)
}

/// A copy of `mem` as it is now: what a power cut leaves (memory devices have no cache).
pub fn crash_copy(mem: &MemoryDevice) -> Arc<MemoryDevice> {
    let size = mem.info().size_bytes;
    let copy = MemoryDevice::new(size, 512);
    let mut buf = vec![0u8; 1 << 20];
    for off in (0..size).step_by(buf.len()) {
        mem.read_into(&mut buf, off).expect("read");
        copy.write_from(&buf, off).expect("write");
    }
    Arc::new(copy)
}

/// Creates a pool on `dev` alone.
pub async fn create(dev: &Arc<dyn BlockDevice>, options: CreateOptions) -> Arc<Pool> {
    Pool::create(vec![Arc::clone(dev)], None, options).await.expect("create")
}

/// Imports the pool on `dev` with the default tunables.
pub async fn import(dev: &Arc<dyn BlockDevice>) -> Arc<Pool> {
    Pool::import(vec![Arc::clone(dev)], PoolTunables::default()).await.expect("import")
}

/// Inspects the pool on `dev` offline; it must be clean.
pub async fn inspect_clean(dev: &Arc<dyn BlockDevice>) -> InspectReport {
    let report = engine::inspect::inspect(vec![Arc::clone(dev)]).await.expect("inspect");
    assert!(report.is_clean(), "{report}");
    report
}

/// Runs `test` on a new reactor with a new pool (`options`) on a memory device of `mib` MiB;
/// `test` gets the pool and the device.
pub fn with_new_pool<F, Fut>(mib: u64, options: CreateOptions, test: F)
where
    F: FnOnce(Arc<Pool>, Arc<dyn BlockDevice>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dev = device(mib);
    reactor().block_on(async move { test(create(&dev, options).await, dev).await });
}
