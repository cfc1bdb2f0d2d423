//! A RAID-Z group (RAID-Z1, Z2, Z3): the node's address space striped sector by sector across
//! its children, each block written whole as rows of parity and data sectors with its own
//! width (no read-modify-write, no write hole), and read back from its data columns alone.
//!
//! - [`layout`]: where a block's sectors live, and the space it takes (`allocated_bytes`);
//!   docs/format.md, "RAID-Z layout".
//! - [`parity`]: the Reed-Solomon code of the rows.
//! - `heal`: reconstruct (combinatorial, after a failed check) and scrub.
//!
//! A device error on a data column makes it missing: the read takes the parity columns and
//! rebuilds it (a degraded read). A block whose data fails its check is rebuilt by trying
//! which columns are bad ([`RaidZ::reconstruct`]).

mod heal;
pub mod layout;
pub mod parity;
#[cfg(test)]
mod tests;

use std::fmt;

use drivers::buffer::{IoBuf, SharedBuf};
use drivers::error::{IoError, IoResult};

use self::layout::{BlockLayout, Geometry};
use self::parity::Parity;
use super::{BufResult, Leaf};
use crate::join::join_all;

/// Most children a group takes. Reconstruction tries every set of up to `parity` columns
/// that may be bad (at 16 children and parity 3, 16 + 120 + 560 rebuilds of the block), a
/// wider row wastes more of a small block's sectors to padding and makes a rebuild read more
/// devices, and the pool's labels describe at most 32 devices; wider pools stripe several
/// groups.
pub const MAX_CHILDREN: usize = 16;

/// A RAID-Z group over its children, all leaves.
pub struct RaidZ {
    children: Vec<Leaf>,
    geometry: Geometry,
    parity: Parity,
}

/// Why a group cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaidZConfigError {
    /// Parity outside 1..=3.
    Parity(usize),
    /// Fewer than parity + 2 children.
    TooFewChildren {
        /// Parity asked for.
        parity: usize,
        /// Children given.
        children: usize,
    },
    /// More than [`MAX_CHILDREN`] children.
    TooManyChildren {
        /// Children given.
        children: usize,
    },
    /// The CPU lacks the instructions the parity kernels are built for
    /// ([`parity::cpu_supported`]).
    Cpu,
}

impl fmt::Display for RaidZConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RaidZConfigError::Parity(p) => {
                write!(f, "raidz parity {p} is not supported: parity must be 1, 2 or 3")
            }
            RaidZConfigError::TooFewChildren { parity, children } => write!(
                f,
                "raidz{parity} needs at least {} devices (parity + 2), got {children}",
                parity + 2
            ),
            RaidZConfigError::TooManyChildren { children } => write!(
                f,
                "a raidz group takes at most {MAX_CHILDREN} devices, got {children}: \
                 stripe several groups instead"
            ),
            RaidZConfigError::Cpu => f.write_str(
                "raidz parity needs an x86-64 CPU with AVX2, BMI2 and FMA (Haswell or later): \
                 use mirrors on this machine",
            ),
        }
    }
}

impl std::error::Error for RaidZConfigError {}

/// The first error of a set of column I/Os, if any.
fn first_error(results: impl IntoIterator<Item = IoResult<()>>) -> IoResult<()> {
    results.into_iter().collect()
}

impl RaidZ {
    /// A group of `parity` (1 to 3) over `children` (parity + 2 to [`MAX_CHILDREN`]), in
    /// column order, on a CPU that runs the parity kernels.
    ///
    /// # Errors
    /// [`RaidZConfigError`] naming the rule broken.
    pub fn new(children: Vec<Leaf>, parity: usize) -> Result<RaidZ, RaidZConfigError> {
        if !(1..=3).contains(&parity) {
            return Err(RaidZConfigError::Parity(parity));
        }
        if children.len() < parity + 2 {
            return Err(RaidZConfigError::TooFewChildren { parity, children: children.len() });
        }
        if children.len() > MAX_CHILDREN {
            return Err(RaidZConfigError::TooManyChildren { children: children.len() });
        }
        if !parity::cpu_supported() {
            return Err(RaidZConfigError::Cpu);
        }
        let geometry = Geometry { width: children.len(), parity };
        Ok(RaidZ { children, geometry, parity: Parity::new(geometry) })
    }

    /// The group's shape.
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The children, in column order.
    #[must_use]
    pub fn leaves(&self) -> &[Leaf] {
        &self.children
    }

    /// Bytes of the address space a block of `physical_bytes` takes: its sectors, `parity`
    /// per row, rounded up to a multiple of `parity + 1` sectors ([`Geometry::allocated_bytes`]).
    #[must_use]
    pub fn allocated_bytes(&self, physical_bytes: u64) -> u64 {
        self.geometry.allocated_bytes(physical_bytes)
    }

    /// Reads columns `which` of `layout` concurrently: every column's buffer (empty where not
    /// read) and the error of each column read that failed.
    async fn read_columns(
        &self,
        layout: &BlockLayout,
        which: impl Fn(usize) -> bool,
    ) -> (Vec<IoBuf>, Vec<Option<IoError>>) {
        let reads = layout.columns.iter().enumerate().map(|(c, col)| {
            let (leaf, wanted) = (&self.children[col.child], which(c));
            let buf = IoBuf::zeroed(if wanted { layout.column_bytes(c) } else { 0 });
            async move {
                if wanted {
                    leaf.read_into(col.child_offset_bytes, buf).await
                } else {
                    (Ok(()), buf)
                }
            }
        });
        join_all(reads.collect()).await.into_iter().map(|(res, buf)| (buf, res.err())).unzip()
    }

    /// Writes `columns` (column index and content) of `layout` concurrently; each column's
    /// result, in the same order.
    async fn write_columns(
        &self,
        layout: &BlockLayout,
        columns: Vec<(usize, IoBuf)>,
        durable: bool,
    ) -> Vec<(usize, IoResult<()>)> {
        let writes = columns.into_iter().map(|(c, buf)| {
            let col = layout.columns[c];
            let leaf = &self.children[col.child];
            async move { (c, leaf.write(col.child_offset_bytes, buf, durable).await.0) }
        });
        join_all(writes.collect()).await
    }

    /// Every column of the block `data` laid out by `layout`, parity computed.
    fn encode_columns(&self, layout: &BlockLayout, data: &[u8]) -> Vec<IoBuf> {
        let mut columns: Vec<IoBuf> =
            (0..layout.columns.len()).map(|c| IoBuf::zeroed(layout.column_bytes(c))).collect();
        layout.scatter(data, &mut columns);
        self.parity.encode(layout, &mut columns);
        columns
    }

    /// Reads the block of `out.len()` bytes at `offset_bytes` into `out` from its data
    /// columns; a column whose read fails is rebuilt from the parity columns.
    async fn read_block(&self, offset_bytes: u64, out: &mut [u8]) -> IoResult<()> {
        let layout = self.geometry.block(offset_bytes, out.len())?;
        let (mut columns, mut errors) = self.read_columns(&layout, |c| !layout.is_parity(c)).await;
        if errors.iter().all(Option::is_none) {
            layout.gather(&columns, out);
            return Ok(());
        }
        // Degraded: read the parity and rebuild the data columns that failed.
        let (parity, parity_errors) = self.read_columns(&layout, |c| layout.is_parity(c)).await;
        let p = self.geometry.parity;
        for (c, (buf, err)) in parity.into_iter().zip(parity_errors).enumerate().take(p) {
            (columns[c], errors[c]) = (buf, err);
        }
        let missing: Vec<bool> = errors.iter().map(Option::is_some).collect();
        if !self.parity.rebuild(&layout, &mut columns, &missing) {
            return Err(errors.into_iter().flatten().next().expect("a column failed"));
        }
        layout.gather(&columns, out);
        Ok(())
    }

    /// Reads the block of `len_bytes` at `offset_bytes` (a whole number of sectors) into a
    /// new buffer: only the data columns, or, when a device fails, the parity too, and the
    /// missing columns rebuilt.
    ///
    /// # Errors
    /// `InvalidInput` for a range not in whole sectors; a device error when more columns
    /// failed than there is parity.
    pub async fn read(&self, offset_bytes: u64, len_bytes: usize) -> IoResult<IoBuf> {
        let mut buf = IoBuf::zeroed(len_bytes);
        self.read_block(offset_bytes, &mut buf).await.map(|()| buf)
    }

    /// [`RaidZ::read`] into `buf` (its length), which comes back either way.
    ///
    /// # Errors
    /// As [`RaidZ::read`].
    pub async fn read_into(&self, offset_bytes: u64, mut buf: IoBuf) -> BufResult {
        let res = self.read_block(offset_bytes, &mut buf).await;
        (res, buf)
    }

    /// Writes the block `data` at `offset_bytes`: every column, parity computed, at once.
    async fn write_block(&self, offset_bytes: u64, data: &[u8], durable: bool) -> IoResult<()> {
        let layout = self.geometry.block(offset_bytes, data.len())?;
        let columns = self.encode_columns(&layout, data).into_iter().enumerate().collect();
        let results = self.write_columns(&layout, columns, durable).await;
        first_error(results.into_iter().map(|(_, res)| res))
    }

    /// Writes the block `buf` (a whole number of sectors) at `offset_bytes`, the start of
    /// its allocation: every data and parity column concurrently, the whole stripe at once
    /// (the block is new, copy-on-write: nothing is read back or merged). Durable when it
    /// completes if `durable` is set. The buffer comes back.
    ///
    /// # Errors
    /// `InvalidInput` for a range not in whole sectors; the first device error of any column
    /// (the leaf counts it): a block is not taken as written on fewer columns than it has.
    pub async fn write(&self, offset_bytes: u64, buf: IoBuf, durable: bool) -> BufResult {
        let res = self.write_block(offset_bytes, &buf, durable).await;
        (res, buf)
    }

    /// True when every child makes each durable write durable by itself.
    #[must_use]
    pub fn durable_writes(&self) -> bool {
        self.children.iter().all(Leaf::durable_writes)
    }

    /// Writes a run of blocks: each buffer of `bufs` is one block (a whole number of
    /// sectors), and block `i` starts at `offset_bytes` plus the [`RaidZ::allocated_bytes`]
    /// of the blocks before it, not their lengths: the run is laid out as the allocator gave
    /// it out. All the blocks' columns are written concurrently.
    ///
    /// # Errors
    /// As [`RaidZ::write`], for any block.
    pub async fn write_vectored(&self, offset_bytes: u64, bufs: Vec<SharedBuf>) -> IoResult<()> {
        let mut at = offset_bytes;
        let blocks = bufs.iter().map(|buf| {
            let start = at;
            at += self.allocated_bytes(buf.len() as u64);
            self.write_block(start, buf, false)
        });
        first_error(join_all(blocks.collect()).await)
    }

    /// Flushes every child, concurrently.
    ///
    /// # Errors
    /// The first device error.
    pub async fn flush(&self) -> IoResult<()> {
        first_error(join_all(self.children.iter().map(Leaf::flush).collect()).await)
    }

    /// Deallocates `len_bytes` at `offset_bytes` of the address space (whole sectors): on each
    /// child, the run of its sectors the range covers.
    ///
    /// # Errors
    /// `InvalidInput(EINVAL)` for a range not in whole sectors; the first device error.
    pub async fn trim(&self, offset_bytes: u64, len_bytes: u64) -> IoResult<()> {
        let sector = layout::SECTOR_BYTES;
        if !offset_bytes.is_multiple_of(sector) || !len_bytes.is_multiple_of(sector) {
            return Err(IoError::InvalidInput(libc::EINVAL));
        }
        let trims = self.children.iter().enumerate().map(|(i, leaf)| {
            let (child_offset, child_len) = self.geometry.child_range(i, offset_bytes, len_bytes);
            async move {
                if child_len == 0 {
                    return Ok(());
                }
                leaf.trim(child_offset, child_len).await
            }
        });
        first_error(join_all(trims.collect()).await)
    }
}
