//! The epoll fallback produces byte-for-byte the same file as io_uring for the same workload.

use drivers::blockdev::open_device;
use drivers::blockdev::prng::SplitMix64;
use drivers::blockdev::BlockDevice;
use drivers::buffer::IoBuf;
use drivers::executor::{self, BackendChoice};

use crate::support::{reactor, BACKENDS};

const FILE_BYTES: u64 = 4 << 20;
const UNIT: u64 = 4096;
const OPS: usize = 600;
const SEED: u64 = 0xfe11_0b5e;

/// A seeded mix of writes (pooled and heap buffers), verified reads, discards, write-zeroes
/// and flushes, checked against an in-memory model that it returns.
async fn workload(dev: &dyn BlockDevice, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut model = vec![0u8; FILE_BYTES as usize];
    let pool = executor::buffer_pool();
    for step in 0..OPS {
        let units = 1 + rng.below(16);
        let offset = rng.below(FILE_BYTES / UNIT - units) * UNIT;
        let len = (units * UNIT) as usize;
        let range = offset as usize..offset as usize + len;
        match rng.below(100) {
            0..=59 => {
                let mut data = vec![0u8; len];
                rng.fill(&mut data);
                let buf = if rng.below(2) == 0 {
                    let mut b = pool.get().expect("pool buffer");
                    b.set_len(len);
                    b.copy_from_slice(&data);
                    b
                } else {
                    IoBuf::from_slice(&data)
                };
                let (res, _) = dev.write(buf, offset).await;
                res.unwrap_or_else(|e| panic!("step {step}: write: {e}"));
                model[range].copy_from_slice(&data);
            }
            60..=79 => {
                let (res, buf) = dev.read(IoBuf::zeroed(len), offset).await;
                res.unwrap_or_else(|e| panic!("step {step}: read: {e}"));
                assert_eq!(&buf[..], &model[range], "step {step}: read returns the last write");
            }
            80..=87 => {
                dev.discard(offset, len as u64)
                    .await
                    .unwrap_or_else(|e| panic!("step {step}: discard: {e}"));
                model[range].fill(0);
            }
            88..=95 => {
                dev.write_zeroes(offset, len as u64)
                    .await
                    .unwrap_or_else(|e| panic!("step {step}: zeroes: {e}"));
                model[range].fill(0);
            }
            _ => dev.flush().await.unwrap_or_else(|e| panic!("step {step}: flush: {e}")),
        }
    }
    dev.flush().await.expect("final flush");
    model
}

#[test]
fn uring_and_epoll_backends_write_identical_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut images = Vec::new();
    for backend in BACKENDS {
        let Some(r) = reactor(backend) else { continue };
        let path = dir.path().join(format!("{backend:?}.img"));
        std::fs::File::create(&path).and_then(|f| f.set_len(FILE_BYTES)).expect("create file");
        let model = r.block_on(async {
            let dev = open_device(&path, BackendChoice::Auto).expect("open device");
            workload(dev.as_ref(), SEED).await
        });
        let image = std::fs::read(&path).expect("read image");
        assert!(image == model, "{backend:?}: the file differs from the model");
        images.push((backend, image));
    }
    if let [(a, first), (b, second)] = &images[..] {
        let first_difference = first.iter().zip(second).position(|(x, y)| x != y);
        assert_eq!(first_difference, None, "{a:?} and {b:?} files differ");
        assert_eq!(first.len(), second.len());
    }
}
