//! The parity of RAID-Z rows: Reed-Solomon over GF(2^8) (`reed-solomon-erasure`, chosen by
//! `benches/benches/parity.rs`; docs/performance.md). The code works byte by byte across a
//! row's columns, so the full rows of a block are encoded in one call over each column's run
//! of full-row sectors, and the short last row in a second call with the code of its own
//! data width.

use drivers::buffer::IoBuf;
use reed_solomon_erasure::galois_8::ReedSolomon;

use super::layout::{BlockLayout, Geometry, SECTOR_BYTES};

/// The codes of one group: one per number of data columns a row can have (1 to
/// width - parity), so a short last row has its own.
pub struct Parity {
    /// `codes[r - 1]` encodes rows of `r` data columns.
    codes: Vec<ReedSolomon>,
    parity: usize,
}

/// The byte range of the rows `rows` of a column.
fn rows_range(rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let s = SECTOR_BYTES as usize;
    rows.start * s..rows.end * s
}

/// True when this CPU runs the crate's SIMD kernels: on x86-64 they are compiled for Haswell
/// (`-march=haswell`: AVX2, BMI1/2, FMA, LZCNT, MOVBE) without a run-time fallback, so an
/// older CPU would stop on an illegal instruction at the first parity computed.
#[must_use]
pub fn cpu_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("lzcnt")
            && std::arch::is_x86_feature_detected!("movbe")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

impl Parity {
    /// The codes of `geometry`.
    ///
    /// # Panics
    /// When the geometry is outside what [`super::RaidZ::new`] accepts (a programmer error).
    #[must_use]
    pub fn new(geometry: Geometry) -> Parity {
        let codes = (1..=geometry.data_columns())
            .map(|r| ReedSolomon::new(r, geometry.parity).expect("1-3 parity of at most 16"))
            .collect();
        Parity { codes, parity: geometry.parity }
    }

    /// Fills the parity columns of `columns` (the block's columns in [`BlockLayout`] order,
    /// parity first) from its data columns.
    pub fn encode(&self, layout: &BlockLayout, columns: &mut [IoBuf]) {
        let p = self.parity;
        let mut rows = |range: std::ops::Range<usize>, used: usize| {
            let (parity, data) = columns[..used].split_at_mut(p);
            let data: Vec<&[u8]> = data.iter().map(|c| &c[range.clone()]).collect();
            let mut parity: Vec<&mut [u8]> =
                parity.iter_mut().map(|c| &mut c[range.clone()]).collect();
            self.codes[used - p - 1].encode_sep(&data, &mut parity).expect("shards of one size");
        };
        if layout.full_rows > 0 {
            rows(rows_range(0..layout.full_rows), layout.geometry.width);
        }
        if layout.last_row_data > 0 {
            let last = layout.full_rows;
            rows(rows_range(last..last + 1), p + layout.last_row_data);
        }
    }

    /// Rebuilds the columns marked in `missing` from the others, in place; the content of a
    /// missing column is ignored. False when more columns are missing than there are parity
    /// columns.
    pub fn rebuild(&self, layout: &BlockLayout, columns: &mut [IoBuf], missing: &[bool]) -> bool {
        let p = self.parity;
        let mut rows = |range: std::ops::Range<usize>, used: usize| {
            if !missing[..used].contains(&true) {
                return true;
            }
            let (parity, data) = columns[..used].split_at_mut(p);
            // The code's shard order: data columns, then parity columns.
            let mut shards: Vec<(&mut [u8], bool)> = data
                .iter_mut()
                .zip(&missing[p..used])
                .chain(parity.iter_mut().zip(&missing[..p]))
                .map(|(c, gone)| (&mut c[range.clone()], !gone))
                .collect();
            self.codes[used - p - 1].reconstruct(&mut shards).is_ok()
        };
        if missing.iter().filter(|m| **m).count() > p {
            return false;
        }
        let full =
            layout.full_rows == 0 || rows(rows_range(0..layout.full_rows), layout.geometry.width);
        let last = layout.full_rows;
        full && (layout.last_row_data == 0
            || rows(rows_range(last..last + 1), p + layout.last_row_data))
    }
}

#[cfg(test)]
mod tests {
    use drivers::buffer::IoBuf;

    use super::Parity;
    use crate::vdev::raidz::layout::Geometry;

    /// The code docs/format.md gives, worked by hand: for rows of 2 data sectors the parity
    /// rows of V × T⁻¹ are [3, 2], [2, 3] and [5, 4] over GF(2^8) modulo 0x11D, and a row of
    /// one data sector has parity equal to it.
    #[test]
    fn parity_is_the_documented_code() {
        let g = Geometry { width: 5, parity: 3 };
        // 3 data sectors: one full row of 2 and a short row of 1.
        let layout = g.block(0, 3 * 4096).expect("layout");
        let mut block = vec![0x80u8; 3 * 4096];
        block[4096..8192].fill(0x01);
        block[8192..].fill(0x5a);
        let mut columns: Vec<IoBuf> =
            (0..layout.columns.len()).map(|c| IoBuf::zeroed(layout.column_bytes(c))).collect();
        layout.scatter(&block, &mut columns);
        Parity::new(g).encode(&layout, &mut columns);
        // 2·0x80 = 0x1d, 3·0x80 = 0x9d, 4·0x80 = 0x3a, 5·0x80 = 0xba.
        let row0 = [0x9d ^ 0x02, 0x1d ^ 0x03, 0xba ^ 0x04];
        for (c, want) in row0.into_iter().enumerate() {
            assert!(columns[c][..4096].iter().all(|b| *b == want), "parity {c} of row 0");
            assert!(columns[c][4096..].iter().all(|b| *b == 0x5a), "parity {c} of the short row");
        }
    }
}
