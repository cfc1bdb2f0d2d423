//! Healing a RAID-Z block: combinatorial reconstruction after a failed check, and scrub.
//!
//! Every column of the block is read, parity included. The block is then rebuilt assuming
//! each set of up to `parity` columns bad in turn (the columns whose read failed always among
//! them, then the fewest others first), until the assembled data passes the block's check, as
//! ZFS reconstructs RAID-Z. The verified data is encoded again, and every column that differs
//! from what was read (or could not be read) is rewritten.

use std::sync::atomic::Ordering;

use drivers::buffer::IoBuf;
use drivers::error::IoResult;

use super::layout::{self, BlockLayout};
use super::RaidZ;
use crate::vdev::{BlockCheck, Reconstruction, ScrubOutcome};

/// Every `k`-subset of `0..n`, in lexicographic order.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    (k - 1..n)
        .flat_map(|last| {
            subsets(last, k - 1).into_iter().map(move |mut s| {
                s.push(last);
                s
            })
        })
        .collect()
}

/// What healing one block did.
struct Healed {
    /// The verified data.
    data: IoBuf,
    /// Columns found bad: unreadable, or read with content that differs from the rebuilt one.
    bad_columns: u32,
    /// Bytes rewritten.
    repaired_bytes: u64,
}

impl RaidZ {
    /// Looks for the block among `columns` (every column as read; `failed` marks the ones
    /// whose read failed): rebuilds it assuming the failed columns and each set of up to
    /// `parity` columns in all bad, fewest first, and returns the first assembly that passes
    /// `verify`.
    fn search(
        &self,
        layout: &BlockLayout,
        columns: &[IoBuf],
        failed: &[bool],
        verify: &dyn Fn(&[u8]) -> bool,
    ) -> Option<IoBuf> {
        let p = self.geometry.parity;
        let known = failed.iter().filter(|f| **f).count();
        if known > p {
            return None;
        }
        let others: Vec<usize> = (0..columns.len()).filter(|c| !failed[*c]).collect();
        let mut work: Vec<IoBuf> = columns.iter().map(|c| IoBuf::from_slice(c)).collect();
        let mut data = IoBuf::zeroed(layout.data_sectors * layout::SECTOR_BYTES as usize);
        for extra in 0..=p - known {
            for set in subsets(others.len(), extra) {
                let mut missing = failed.to_vec();
                for i in &set {
                    missing[others[*i]] = true;
                }
                if self.parity.rebuild(layout, &mut work, &missing) {
                    layout.gather(&work, &mut data);
                    if verify(&data) {
                        return Some(data);
                    }
                }
                for i in &set {
                    work[others[*i]].copy_from_slice(&columns[others[*i]]);
                }
            }
        }
        None
    }

    /// Rewrites every column of the block that differs from the one `data` encodes to, or
    /// whose read failed (`failed`); counts a checksum error on each leaf whose column was
    /// read with wrong content, and the bytes rewritten on each leaf.
    async fn repair(
        &self,
        layout: &BlockLayout,
        columns: &[IoBuf],
        failed: &[bool],
        data: IoBuf,
    ) -> Healed {
        let good = self.encode_columns(layout, &data);
        let mut rewrite = Vec::new();
        for (c, buf) in good.into_iter().enumerate() {
            if failed[c] {
                rewrite.push((c, buf));
            } else if buf[..] != columns[c][..] {
                self.children[layout.columns[c].child].count_checksum_error();
                rewrite.push((c, buf));
            }
        }
        let bad_columns = rewrite.len() as u32;
        let mut repaired_bytes = 0;
        for (c, res) in self.write_columns(layout, rewrite, false).await {
            if res.is_ok() {
                let bytes = layout.column_bytes(c) as u64;
                let leaf = &self.children[layout.columns[c].child];
                leaf.errors().repaired_bytes.fetch_add(bytes, Ordering::Relaxed);
                repaired_bytes += bytes;
            }
        }
        Healed { data, bad_columns, repaired_bytes }
    }

    /// Reads every column of the block and heals it: `Ok(None)` when no set of columns
    /// assumed bad gives data that passes `verify` (a checksum error is then counted on every
    /// column read, as any of them may be bad).
    ///
    /// # Errors
    /// `InvalidInput` for a range not in whole sectors; a device error when more columns
    /// failed to read than there is parity.
    async fn heal(&self, block: BlockCheck<'_>) -> IoResult<Option<Healed>> {
        let layout = self.geometry.block(block.offset_bytes, block.len_bytes)?;
        let (columns, errors) = self.read_columns(&layout, |_| true).await;
        let failed: Vec<bool> = errors.iter().map(Option::is_some).collect();
        if failed.iter().filter(|f| **f).count() > self.geometry.parity {
            return Err(errors.into_iter().flatten().next().expect("a column failed"));
        }
        let Some(data) = self.search(&layout, &columns, &failed, block.verify) else {
            for (c, col) in layout.columns.iter().enumerate() {
                if !failed[c] {
                    self.children[col.child].count_checksum_error();
                }
            }
            return Ok(None);
        };
        Ok(Some(self.repair(&layout, &columns, &failed, data).await))
    }

    /// Reconstruct and heal, after a read of the block of `len_bytes` at `offset_bytes`
    /// returned data that fails `verify`: reads every column, parity included, and rebuilds
    /// the block assuming in turn each set of up to `parity` columns bad (data or parity;
    /// columns whose read fails first, fewest first) until the data passes `verify`. Each
    /// column that was read with wrong content is counted on its leaf
    /// ([`crate::vdev::Leaf::count_checksum_error`]); every bad or unreadable column is
    /// rewritten with its rebuilt content (the leaf's `repaired_bytes`).
    ///
    /// [`Reconstruction::NoOtherCopy`] when no set verifies (each column read is then
    /// counted, as any may be bad) or too many columns cannot be read.
    pub async fn reconstruct(&self, block: BlockCheck<'_>) -> Reconstruction {
        match self.heal(block).await {
            Ok(Some(healed)) => Reconstruction::Healed(healed.data),
            Ok(None) | Err(_) => Reconstruction::NoOtherCopy,
        }
    }

    /// Scrubs the block of `len_bytes` at `offset_bytes`: reads every data and parity column,
    /// checks the data with `verify` and the parity against the data, and rewrites every
    /// column found bad (rebuilding the data as [`RaidZ::reconstruct`] does when it fails its
    /// check). One stripe is checked; `bad_copies` counts the bad columns.
    ///
    /// # Errors
    /// `InvalidInput` for a range not in whole sectors; a device error when more columns
    /// failed to read than there is parity (nothing could be checked).
    pub async fn scrub(&self, block: BlockCheck<'_>) -> IoResult<ScrubOutcome> {
        let checked = ScrubOutcome { copies_checked: 1, ..ScrubOutcome::default() };
        match self.heal(block).await? {
            Some(healed) => Ok(ScrubOutcome {
                bad_copies: healed.bad_columns,
                repaired_bytes: healed.repaired_bytes,
                ..checked
            }),
            None => {
                let columns =
                    self.geometry.block(block.offset_bytes, block.len_bytes)?.columns.len();
                Ok(ScrubOutcome { bad_copies: columns as u32, unrepairable: true, ..checked })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subsets;

    #[test]
    fn subsets_lists_each_once_in_order() {
        assert_eq!(subsets(4, 0), vec![Vec::<usize>::new()]);
        assert_eq!(subsets(3, 1), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(
            subsets(4, 2),
            vec![vec![0, 1], vec![0, 2], vec![1, 2], vec![0, 3], vec![1, 3], vec![2, 3]]
        );
        assert_eq!(subsets(16, 3).len(), 560);
        assert!(subsets(2, 3).is_empty());
    }
}
