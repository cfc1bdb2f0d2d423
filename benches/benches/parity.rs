//! Reed-Solomon parity for RAID-Z stripes: encoding a stripe's parity columns and rebuilding
//! lost data columns, with the two crates ferrite could use (`reed-solomon-erasure`, GF(2^8)
//! matrix code with its SIMD C kernels, and `reed-solomon-simd`, the O(n log n) Leopard code
//! over GF(2^16)). Stripes of 4+1, 4+2, 8+2 and 8+3 columns (data + parity) of 4 KiB and
//! 32 KiB; throughput is in data bytes. Both crates run in the same process so a noisy machine
//! biases them alike.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reed_solomon_erasure::galois_8::ReedSolomon;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// (data columns, parity columns) of the stripes measured.
const WIDTHS: [(usize, usize); 4] = [(4, 1), (4, 2), (8, 2), (8, 3)];
/// Column sizes measured.
const COLUMN_BYTES: [usize; 2] = [4096, 32 * 1024];

/// `data` columns of `len` bytes, each a different pattern.
fn columns(data: usize, len: usize) -> Vec<Vec<u8>> {
    (0..data)
        .map(|c| (0..len).map(|i| (i.wrapping_mul(31) ^ c.wrapping_mul(131)) as u8).collect())
        .collect()
}

fn label(data: usize, parity: usize, len: usize, lost: Option<usize>) -> String {
    let size = format!("{}K", len / 1024);
    match lost {
        None => format!("{data}+{parity}/{size}"),
        Some(lost) => format!("{data}+{parity}/{size}/lost{lost}"),
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("parity_encode");
    for (data, parity) in WIDTHS {
        for len in COLUMN_BYTES {
            group.throughput(Throughput::Bytes((data * len) as u64));
            let cols = columns(data, len);
            let mut out = vec![vec![0u8; len]; parity];
            let rs = ReedSolomon::new(data, parity).expect("code");
            let id = label(data, parity, len, None);
            group.bench_function(BenchmarkId::new("erasure", &id), |b| {
                b.iter(|| {
                    rs.encode_sep(&cols, &mut out).expect("encode");
                    black_box(&out);
                });
            });
            let mut enc = ReedSolomonEncoder::new(data, parity, len).expect("encoder");
            group.bench_function(BenchmarkId::new("simd", &id), |b| {
                b.iter(|| {
                    enc.reset(data, parity, len).expect("reset");
                    for col in &cols {
                        enc.add_original_shard(col).expect("shard");
                    }
                    let result = enc.encode().expect("encode");
                    for (dst, src) in out.iter_mut().zip(result.recovery_iter()) {
                        dst.copy_from_slice(src);
                    }
                    black_box(&out);
                });
            });
        }
    }
    group.finish();
}

/// Rebuilding the first `lost` data columns from the rest and the parity.
fn rebuild(c: &mut Criterion) {
    let mut group = c.benchmark_group("parity_rebuild");
    for (data, parity) in WIDTHS {
        for len in COLUMN_BYTES {
            let cols = columns(data, len);
            let rs = ReedSolomon::new(data, parity).expect("code");
            let mut par = vec![vec![0u8; len]; parity];
            rs.encode_sep(&cols, &mut par).expect("encode");
            for lost in 1..=parity {
                group.throughput(Throughput::Bytes((data * len) as u64));
                let id = label(data, parity, len, Some(lost));
                let mut shards: Vec<Vec<u8>> = cols.iter().chain(&par).cloned().collect();
                group.bench_function(BenchmarkId::new("erasure", &id), |b| {
                    b.iter(|| {
                        let mut slots: Vec<(&mut [u8], bool)> = shards
                            .iter_mut()
                            .enumerate()
                            .map(|(i, s)| (s.as_mut_slice(), i >= lost))
                            .collect();
                        rs.reconstruct_data(&mut slots).expect("rebuild");
                        black_box(&slots);
                    });
                });
                assert_eq!(shards[..data], cols[..], "erasure rebuilt the data");
                let simd_par = reed_solomon_simd::encode(data, parity, &cols).expect("encode");
                let mut dec = ReedSolomonDecoder::new(data, parity, len).expect("decoder");
                let mut rebuilt = vec![vec![0u8; len]; lost];
                group.bench_function(BenchmarkId::new("simd", &id), |b| {
                    b.iter(|| {
                        dec.reset(data, parity, len).expect("reset");
                        for (i, col) in cols.iter().enumerate().skip(lost) {
                            dec.add_original_shard(i, col).expect("shard");
                        }
                        for (i, p) in simd_par.iter().enumerate().take(lost) {
                            dec.add_recovery_shard(i, p).expect("shard");
                        }
                        let result = dec.decode().expect("decode");
                        for (i, dst) in rebuilt.iter_mut().enumerate() {
                            dst.copy_from_slice(result.restored_original(i).expect("restored"));
                        }
                        black_box(&rebuilt);
                    });
                });
                assert_eq!(rebuilt[..], cols[..lost], "simd rebuilt the data");
            }
        }
    }
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = encode, rebuild }
criterion_main!(benches);
