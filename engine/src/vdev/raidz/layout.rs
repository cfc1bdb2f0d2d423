//! Where a RAID-Z block's sectors live: the node's address space striped sector by sector
//! across the children, a block split into rows of parity then data sectors, and the space a
//! block takes (docs/format.md, "RAID-Z layout").

use drivers::buffer::IoBuf;
use drivers::error::{IoError, IoResult};

/// The sector: the unit of striping, of a column's rows and of allocation.
pub const SECTOR_BYTES: u64 = 4096;

/// The shape of a RAID-Z group: `width` children, `parity` of each row's columns are parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Children (columns of a full row).
    pub width: usize,
    /// Parity sectors at the start of every row (1, 2 or 3).
    pub parity: usize,
}

/// One column of one block: the run of sectors it has on one child. A column's sectors are
/// consecutive on its child (row `j` of the block is `j` sectors further on every child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Index of the child in the group.
    pub child: usize,
    /// Byte offset on that child.
    pub child_offset_bytes: u64,
    /// Sectors of this column (one per row it takes part in).
    pub sectors: usize,
}

/// The rows of one block: `full_rows` of every column, then a short row of `parity` +
/// `last_row_data` columns when the data sectors do not fill the last row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLayout {
    /// The group's shape.
    pub geometry: Geometry,
    /// Data sectors of the block (its physical size in sectors).
    pub data_sectors: usize,
    /// Rows that use every column.
    pub full_rows: usize,
    /// Data sectors of the short last row (0: no short row).
    pub last_row_data: usize,
    /// The columns that hold any sector of the block, in row order: `parity` parity columns,
    /// then the data columns.
    pub columns: Vec<Column>,
}

impl Geometry {
    /// Data sectors of a full row.
    #[must_use]
    pub fn data_columns(self) -> usize {
        self.width - self.parity
    }

    /// Sectors of the node's address space a block of `data_sectors` occupies: its data
    /// sectors, `parity` sectors per row, rounded up to a multiple of `parity + 1` so that
    /// any freed run can hold the smallest block (one data sector and its parity).
    #[must_use]
    pub fn allocated_sectors(self, data_sectors: u64) -> u64 {
        let rows = data_sectors.div_ceil(self.data_columns() as u64);
        let used = data_sectors + rows * self.parity as u64;
        used.next_multiple_of(self.parity as u64 + 1)
    }

    /// Bytes of the node's address space a block of `physical_bytes` occupies (the size is
    /// first rounded up to whole sectors).
    #[must_use]
    pub fn allocated_bytes(self, physical_bytes: u64) -> u64 {
        self.allocated_sectors(physical_bytes.div_ceil(SECTOR_BYTES)) * SECTOR_BYTES
    }

    /// The layout of a block of `len_bytes` at `offset_bytes` of the node's address space.
    ///
    /// # Errors
    /// `InvalidInput(EINVAL)` when the offset or the length is not a whole number of
    /// sectors, or the length is zero.
    pub fn block(self, offset_bytes: u64, len_bytes: usize) -> IoResult<BlockLayout> {
        let len = len_bytes as u64;
        if len == 0
            || !len.is_multiple_of(SECTOR_BYTES)
            || !offset_bytes.is_multiple_of(SECTOR_BYTES)
        {
            return Err(IoError::InvalidInput(libc::EINVAL));
        }
        let data_sectors = (len / SECTOR_BYTES) as usize;
        let d = self.data_columns();
        let (full_rows, last_row_data) = (data_sectors / d, data_sectors % d);
        let used_columns = if full_rows > 0 { self.width } else { self.parity + last_row_data };
        let first = offset_bytes / SECTOR_BYTES;
        let columns = (0..used_columns)
            .map(|c| {
                // Node sector first + c is the column's first; the rows below it follow on
                // the same child, one sector further each.
                let sector = first + c as u64;
                let short_row = usize::from(last_row_data > 0 && c < self.parity + last_row_data);
                Column {
                    child: (sector % self.width as u64) as usize,
                    child_offset_bytes: sector / self.width as u64 * SECTOR_BYTES,
                    sectors: full_rows + short_row,
                }
            })
            .collect();
        Ok(BlockLayout { geometry: self, data_sectors, full_rows, last_row_data, columns })
    }

    /// The part of child `child`'s byte range that node range `[offset_bytes, offset_bytes +
    /// len_bytes)` covers, as (child offset, length); both in whole sectors.
    #[must_use]
    pub fn child_range(self, child: usize, offset_bytes: u64, len_bytes: u64) -> (u64, u64) {
        let w = self.width as u64;
        let (start, end) = (offset_bytes / SECTOR_BYTES, (offset_bytes + len_bytes) / SECTOR_BYTES);
        // Node sectors q * w + child for q in [first, last) lie in [start, end).
        let first = (start + w - 1 - child as u64) / w;
        let last = (end + w - 1 - child as u64) / w;
        (first * SECTOR_BYTES, (last - first) * SECTOR_BYTES)
    }
}

impl BlockLayout {
    /// The column and the sector within it of data sector `k` of the block.
    #[must_use]
    pub fn data_sector(&self, k: usize) -> (usize, usize) {
        let d = self.geometry.data_columns();
        (self.geometry.parity + k % d, k / d)
    }

    /// Bytes of column `c`.
    #[must_use]
    pub fn column_bytes(&self, c: usize) -> usize {
        self.columns[c].sectors * SECTOR_BYTES as usize
    }

    /// True when column `c` holds parity.
    #[must_use]
    pub fn is_parity(&self, c: usize) -> bool {
        c < self.geometry.parity
    }

    /// Copies the block's data sectors out of `columns` into `block`.
    pub fn gather(&self, columns: &[IoBuf], block: &mut [u8]) {
        let s = SECTOR_BYTES as usize;
        for (k, out) in block.chunks_exact_mut(s).enumerate() {
            let (c, row) = self.data_sector(k);
            out.copy_from_slice(&columns[c][row * s..(row + 1) * s]);
        }
    }

    /// Copies `block`'s data sectors into their places in `columns` (parity columns are left
    /// as they are).
    pub fn scatter(&self, block: &[u8], columns: &mut [IoBuf]) {
        let s = SECTOR_BYTES as usize;
        for (k, src) in block.chunks_exact(s).enumerate() {
            let (c, row) = self.data_sector(k);
            columns[c][row * s..(row + 1) * s].copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Column, Geometry, SECTOR_BYTES};

    fn geometry(width: usize, parity: usize) -> Geometry {
        Geometry { width, parity }
    }

    /// Worked by hand: data sectors, plus `parity` per row (rows of width - parity data
    /// sectors, the last one possibly short), rounded up to a multiple of parity + 1.
    #[test]
    fn allocated_bytes_by_hand() {
        let k = 4096u64;
        let cases = [
            // (width, parity, physical, allocated)
            (3, 1, 4 * k, 6 * k),    // 4 data, 2 rows of 2: 4 + 2 = 6 sectors
            (3, 1, 3 * k, 6 * k),    // 3 data, rows 2 + 1: 3 + 2 = 5, round to 6
            (3, 1, k, 2 * k),        // 1 data + 1 parity
            (5, 1, 10 * k, 14 * k),  // 10 data, rows 4 + 4 + 2: 10 + 3 = 13, round to 14
            (5, 1, 32 * k, 40 * k),  // 32 data, 8 rows: 40
            (6, 2, k, 3 * k),        // 1 data + 2 parity = 3
            (6, 2, 5 * k, 9 * k),    // rows 4 + 1: 5 + 4 = 9
            (6, 2, 32 * k, 48 * k),  // 8 rows: 32 + 16 = 48
            (7, 3, k, 4 * k),        // 1 + 3
            (7, 3, 2 * k, 8 * k),    // 2 + 3 = 5, round to 8
            (7, 3, 32 * k, 56 * k),  // 8 rows of 4: 32 + 24 = 56
            (7, 3, 9 * k, 20 * k),   // rows 4 + 4 + 1: 9 + 9 = 18, round to 20
            (16, 3, 13 * k, 16 * k), // one full row: 13 + 3
        ];
        for (width, parity, physical, allocated) in cases {
            assert_eq!(
                geometry(width, parity).allocated_bytes(physical),
                allocated,
                "width {width} parity {parity} {physical} bytes"
            );
        }
        assert_eq!(geometry(5, 1).allocated_bytes(100), 2 * k, "rounded up to a sector first");
    }

    #[test]
    fn block_columns_follow_the_node_sectors() {
        // Width 5, parity 1, 6 data sectors at node sector 7: rows of 4 data, so one full row
        // and a short row of parity + 2 data. Column c starts at node sector 7 + c.
        let layout = geometry(5, 1).block(7 * SECTOR_BYTES, 6 * 4096).expect("layout");
        assert_eq!((layout.full_rows, layout.last_row_data), (1, 2));
        let col = |child, sector: u64, sectors| Column {
            child,
            child_offset_bytes: sector * SECTOR_BYTES,
            sectors,
        };
        assert_eq!(
            layout.columns,
            vec![col(2, 1, 2), col(3, 1, 2), col(4, 1, 2), col(0, 2, 1), col(1, 2, 1)]
        );
        assert_eq!(layout.data_sector(4), (1, 1), "sector 4 opens the short row");
        // Smaller than a row: only parity + data columns are used.
        let small = geometry(7, 3).block(0, 2 * 4096).expect("layout");
        assert_eq!(small.columns.len(), 5);
        assert!(geometry(5, 1).block(100, 4096).is_err(), "offset not a sector");
        assert!(geometry(5, 1).block(0, 100).is_err(), "length not a sector");
    }

    /// The worked example of docs/format.md, "RAID-Z layout".
    #[test]
    fn the_documented_example() {
        let g = geometry(5, 1);
        assert_eq!(g.allocated_bytes(40 * 1024), 57344);
        let layout = g.block(28672, 40 * 1024).expect("layout");
        let placed: Vec<(usize, u64, usize)> = layout
            .columns
            .iter()
            .map(|c| (c.child, c.child_offset_bytes / SECTOR_BYTES, c.sectors))
            .collect();
        assert_eq!(placed, vec![(2, 1, 3), (3, 1, 3), (4, 1, 3), (0, 2, 2), (1, 2, 2)]);
        assert_eq!((layout.data_sector(8), layout.data_sector(9)), ((1, 2), (2, 2)));
    }

    #[test]
    fn child_range_covers_exactly_the_node_sectors_of_that_child() {
        let g = geometry(4, 1);
        // Node sectors 3..10: child 0 has 4 and 8 (its sectors 1, 2), child 3 has 3 and 7.
        let (off, len) = (3 * SECTOR_BYTES, 7 * SECTOR_BYTES);
        assert_eq!(g.child_range(0, off, len), (SECTOR_BYTES, 2 * SECTOR_BYTES));
        assert_eq!(g.child_range(1, off, len), (SECTOR_BYTES, 2 * SECTOR_BYTES));
        assert_eq!(g.child_range(2, off, len), (SECTOR_BYTES, SECTOR_BYTES));
        assert_eq!(g.child_range(3, off, len), (0, 2 * SECTOR_BYTES));
    }
}
