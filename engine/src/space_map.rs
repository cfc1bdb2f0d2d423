//! Space maps: the allocation bitmap of one allocation group (docs/format.md §Space maps).
//!
//! One bit per 4 KiB unit, set when allocated. The on-disk image is the bitmap as
//! little-endian u64 words, padded with zero bits to whole 4 KiB sectors, written
//! copy-on-write as a metadata object whenever the group changed in a txg.
//!
//! The map also counts its free *slabs*: aligned runs of [`SLAB_UNITS`] units (one largest
//! metadata chunk) with every unit free. The allocator keeps a reserve of them out of reach
//! of data, so that however finely data fragments the free space, a txg still finds whole
//! chunks for its metadata. A slab that small metadata had to break is marked for metadata
//! (in memory only) and kept from data like a free slab until it is wholly free again, so that
//! small metadata packs into few slabs and gives them back whole.

use crate::format::{MAX_BLOCK_BYTES, SECTOR_BYTES};

/// Units in a slab: one chunk of a metadata object (128 KiB), half a bitmap word.
pub const SLAB_UNITS: u64 = MAX_BLOCK_BYTES / SECTOR_BYTES;
const _: () = assert!(SLAB_UNITS == 32, "a slab is half a bitmap word");

/// Classes of [`SpaceMap::free_run_histogram`]: runs of 1 unit up to 8,192 units (32 MiB) and
/// longer.
pub const FREE_RUN_CLASSES: usize = 14;

/// An allocation bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceMap {
    units: u64,
    words: Vec<u64>,
    /// Slabs with every unit free.
    free_slabs: u64,
    /// One bit per slab: broken by small metadata, kept from data while any of it is in use.
    metadata_slabs: Vec<u64>,
}

impl SpaceMap {
    /// An all-free map of `units` units.
    #[must_use]
    pub fn new(units: u64) -> SpaceMap {
        let words = usize::try_from(units.div_ceil(64)).expect("space map fits in memory");
        let slabs = usize::try_from((units / SLAB_UNITS).div_ceil(64)).unwrap_or(0);
        SpaceMap {
            units,
            words: vec![0; words],
            free_slabs: units / SLAB_UNITS,
            metadata_slabs: vec![0; slabs],
        }
    }

    /// Marks the slab holding `unit` as metadata's until it is wholly free again.
    pub fn mark_metadata_slab(&mut self, unit: u64) {
        self.set_metadata_slab(unit / SLAB_UNITS, true);
    }

    fn set_metadata_slab(&mut self, slab: u64, on: bool) {
        if let Some(w) = self.metadata_slabs.get_mut((slab / 64) as usize) {
            if on {
                *w |= 1 << (slab % 64);
            } else {
                *w &= !(1 << (slab % 64));
            }
        }
    }

    /// True when slab `slab` is marked as metadata's.
    #[must_use]
    pub fn is_metadata_slab(&self, slab: u64) -> bool {
        self.metadata_slabs.get((slab / 64) as usize).is_some_and(|w| w & (1 << (slab % 64)) != 0)
    }

    /// First run of `n` free units in `[lo, hi)`.
    #[must_use]
    pub fn find_free_run_between(&self, lo: u64, hi: u64, n: u64) -> Option<u64> {
        if n == 0 || hi > self.units || lo >= hi {
            return None;
        }
        self.scan(lo, hi, n, false)
    }

    /// Slabs with every unit free.
    #[must_use]
    pub fn free_slabs(&self) -> u64 {
        self.free_slabs
    }

    /// Slabs with every unit free, counted from the bitmap (what [`SpaceMap::free_slabs`]
    /// keeps up to date).
    #[must_use]
    pub fn count_free_slabs(&self) -> u64 {
        (0..self.units / SLAB_UNITS).filter(|&s| self.slab_is_free(s)).count() as u64
    }

    /// True when slab `slab` lies wholly in the map and every unit of it is free.
    fn slab_is_free(&self, slab: u64) -> bool {
        if (slab + 1) * SLAB_UNITS > self.units {
            return false;
        }
        let word = self.words[(slab / 2) as usize];
        let half = if slab.is_multiple_of(2) { word & 0xffff_ffff } else { word >> 32 };
        half == 0
    }

    /// Free slabs among those `[start, start + n)` touches.
    fn free_slabs_touched(&self, start: u64, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let (first, last) = (start / SLAB_UNITS, (start + n - 1) / SLAB_UNITS);
        (first..=last).filter(|&s| self.slab_is_free(s)).count() as u64
    }

    /// True when `unit` is allocated, or lies in a free slab or a metadata slab and `spare`
    /// asks to keep those for metadata.
    fn is_taken(&self, unit: u64, spare: bool) -> bool {
        let slab = unit / SLAB_UNITS;
        self.is_set(unit) || (spare && (self.slab_is_free(slab) || self.is_metadata_slab(slab)))
    }

    /// Units covered.
    #[must_use]
    pub fn units(&self) -> u64 {
        self.units
    }

    /// True when `unit` is allocated.
    #[must_use]
    pub fn is_set(&self, unit: u64) -> bool {
        let w = self.words[(unit / 64) as usize];
        w & (1 << (unit % 64)) != 0
    }

    /// Marks `[start, start + n)` allocated (`set`) or free. Returns how many bits changed.
    pub fn set_range(&mut self, start: u64, n: u64, set: bool) -> u64 {
        assert!(start + n <= self.units, "space map range out of bounds");
        let free_before = self.free_slabs_touched(start, n);
        let mut changed = 0;
        for unit in start..start + n {
            let word = &mut self.words[(unit / 64) as usize];
            let mask = 1u64 << (unit % 64);
            if (*word & mask != 0) != set {
                *word ^= mask;
                changed += 1;
            }
        }
        let free_after = self.free_slabs_touched(start, n);
        if !set && free_after > 0 {
            // A metadata slab wholly free again is an ordinary free slab.
            for slab in start / SLAB_UNITS..=(start + n - 1) / SLAB_UNITS {
                if self.slab_is_free(slab) {
                    self.set_metadata_slab(slab, false);
                }
            }
        }
        self.free_slabs = self.free_slabs + free_after - free_before;
        changed
    }

    /// True when every unit of `[start, start + n)` is free (and, with `spare`, outside
    /// free slabs).
    #[must_use]
    pub fn range_is_free(&self, start: u64, n: u64, spare: bool) -> bool {
        if n == 0 {
            return true;
        }
        if start + n > self.units {
            return false;
        }
        let end = start + n;
        (start / 64..end.div_ceil(64))
            .all(|index| self.taken_word(index, spare) & range_mask(index * 64, start, end) == 0)
    }

    /// First run of `n` free units at or after `from` that takes no unit of a free slab,
    /// wrapping once to the start: where data may go while the free slabs are reserved.
    #[must_use]
    pub fn find_free_run_sparing_slabs(&self, from: u64, n: u64) -> Option<u64> {
        if n == 0 || n > self.units {
            return None;
        }
        let from = if from >= self.units { 0 } else { from };
        self.scan(from, self.units, n, true).or_else(|| self.scan(0, from.min(self.units), n, true))
    }

    /// First run of `slabs` whole free slabs at or after unit `from`, wrapping once: where a
    /// metadata object's full chunks go, so that freeing them gives whole slabs back.
    #[must_use]
    pub fn find_free_slabs(&self, from: u64, slabs: u64) -> Option<u64> {
        let total = self.units / SLAB_UNITS;
        if slabs == 0 || slabs > total || self.free_slabs < slabs {
            return None;
        }
        let first = (from / SLAB_UNITS).min(total);
        let search = |lo: u64, hi: u64| {
            let mut run = 0;
            for s in lo..hi {
                run = if self.slab_is_free(s) { run + 1 } else { 0 };
                if run == slabs {
                    return Some((s + 1 - slabs) * SLAB_UNITS);
                }
            }
            None
        };
        search(first, total).or_else(|| search(0, (first + slabs).min(total)))
    }

    /// First run of `n` free units at or after `from`, wrapping once to the start.
    #[must_use]
    pub fn find_free_run(&self, from: u64, n: u64) -> Option<u64> {
        if n == 0 || n > self.units {
            return None;
        }
        let from = if from >= self.units { 0 } else { from };
        self.scan(from, self.units, n, false)
            .or_else(|| self.scan(0, from.min(self.units), n, false))
    }

    /// The units of word `index` that a search may not take, as bits: allocated units and,
    /// with `spare`, every unit of a free or metadata slab.
    fn taken_word(&self, index: u64, spare: bool) -> u64 {
        let word = self.words[index as usize];
        if !spare {
            return word;
        }
        let mut taken = word;
        for (half, mask) in [(0u64, 0xffff_ffffu64), (1, 0xffff_ffff_0000_0000)] {
            let slab = index * 2 + half;
            if (word & mask == 0 && (slab + 1) * SLAB_UNITS <= self.units)
                || self.is_metadata_slab(slab)
            {
                taken |= mask;
            }
        }
        taken
    }

    /// First run of `n` units in `[from, to)` none of which is taken (see
    /// [`SpaceMap::taken_word`]), a word at a time: free runs and taken runs inside a word
    /// are skipped by counting trailing bits, so a fragmented map costs a step per run, not
    /// per unit.
    fn scan(&self, from: u64, to: u64, n: u64, spare: bool) -> Option<u64> {
        if n == 0 || from >= to {
            return None;
        }
        let (mut run_start, mut run) = (from, 0u64);
        for index in from / 64..to.div_ceil(64) {
            let base = index * 64;
            // Bit k set: unit base + k may be taken. Units outside [from, to) may not.
            let free = !self.taken_word(index, spare) & range_mask(base, from, to);
            if free == u64::MAX {
                if run == 0 {
                    run_start = base;
                }
                if run + 64 >= n {
                    return Some(run_start);
                }
                run += 64;
                continue;
            }
            let mut pos = 0u32;
            while pos < 64 {
                let rest = free >> pos;
                if rest == 0 {
                    run = 0;
                    break;
                }
                if rest & 1 == 0 {
                    run = 0;
                    pos += rest.trailing_zeros();
                    continue;
                }
                let len = rest.trailing_ones();
                if run == 0 {
                    run_start = base + u64::from(pos);
                }
                if run + u64::from(len) >= n {
                    return Some(run_start);
                }
                run += u64::from(len);
                pos += len;
            }
        }
        None
    }

    /// First run of `n` units in `[from, to)` none of which is taken, one unit at a time: the
    /// definition [`SpaceMap::scan`] must agree with (the fuzz target compares them).
    #[must_use]
    pub fn scan_by_unit(&self, from: u64, to: u64, n: u64, spare: bool) -> Option<u64> {
        let (mut run_start, mut run) = (from, 0);
        for unit in from..to.min(self.units) {
            if self.is_taken(unit, spare) {
                run = 0;
                run_start = unit + 1;
            } else {
                run += 1;
                if run == n {
                    return Some(run_start);
                }
            }
        }
        None
    }

    /// [`SpaceMap::scan`] as the fuzz target calls it.
    #[must_use]
    pub fn scan_by_word(&self, from: u64, to: u64, n: u64, spare: bool) -> Option<u64> {
        self.scan(from, to.min(self.units), n, spare)
    }

    /// Free units by the length of the free run they lie in: entry `k` counts the units of
    /// runs of `2^k` to `2^(k+1) - 1` units (the last entry also every longer run). What a
    /// sync's data can be placed in, and how long its device writes can be (`FERRITE_TXG_TRACE`
    /// prints the pool's sum).
    #[must_use]
    pub fn free_run_histogram(&self) -> [u64; FREE_RUN_CLASSES] {
        let mut classes = [0u64; FREE_RUN_CLASSES];
        let mut close = |run: u64| {
            if run > 0 {
                let class = (63 - run.leading_zeros()) as usize;
                classes[class.min(FREE_RUN_CLASSES - 1)] += run;
            }
        };
        let mut run = 0u64;
        for index in 0..self.words.len() as u64 {
            let free = !self.words[index as usize] & range_mask(index * 64, 0, self.units);
            for (pos, len) in set_runs(free) {
                if pos > 0 {
                    close(run);
                    run = 0;
                }
                run += u64::from(len);
            }
            if free >> 63 == 0 {
                close(run);
                run = 0;
            }
        }
        close(run);
        classes
    }

    /// Allocated units.
    #[must_use]
    pub fn allocated_units(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The on-disk image, padded to whole sectors.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.resize(out.len().next_multiple_of(4096).max(4096), 0);
        out
    }

    /// Decodes an image of a map of `units` units. `None` when it is too short or has bits set
    /// past the end.
    #[must_use]
    pub fn decode(units: u64, bytes: &[u8]) -> Option<SpaceMap> {
        // Check the length before allocating: `units` may come from a damaged label.
        let need = usize::try_from(units.div_ceil(64)).ok()?.checked_mul(8)?;
        if bytes.len() < need {
            return None;
        }
        let mut map = SpaceMap::new(units);
        for (word, b) in map.words.iter_mut().zip(bytes[..need].chunks_exact(8)) {
            *word = u64::from_le_bytes(b.try_into().ok()?);
        }
        let tail = units % 64;
        if tail != 0 {
            let last = *map.words.last()?;
            if last >> tail != 0 {
                return None;
            }
        }
        map.free_slabs = map.count_free_slabs();
        Some(map)
    }
}

/// The runs of set bits of `bits`, lowest first, as (first bit, length): a word of a map is
/// walked a run at a time, not a bit at a time.
fn set_runs(bits: u64) -> impl Iterator<Item = (u32, u32)> {
    let mut pos = 0u32;
    std::iter::from_fn(move || {
        let rest = bits.checked_shr(pos).filter(|&r| r != 0)?;
        let start = pos + rest.trailing_zeros();
        let len = (bits >> start).trailing_ones();
        pos = start + len;
        Some((start, len))
    })
}

/// The bits of the word starting at unit `base` that lie in `[lo, hi)` (which overlaps it).
fn range_mask(base: u64, lo: u64, hi: u64) -> u64 {
    let mut mask = u64::MAX;
    if base < lo {
        mask &= u64::MAX << (lo - base);
    }
    if hi - base < 64 {
        mask &= (1u64 << (hi - base)) - 1;
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found_and_wrap() {
        let mut m = SpaceMap::new(200);
        assert_eq!(m.set_range(0, 130, true), 130);
        assert_eq!(m.find_free_run(0, 10), Some(130));
        assert_eq!(m.find_free_run(195, 10), Some(130));
        m.set_range(130, 70, true);
        assert_eq!(m.find_free_run(0, 1), None);
        assert_eq!(m.allocated_units(), 200);
    }

    #[test]
    fn free_slabs_are_counted_and_spared() {
        let mut m = SpaceMap::new(4 * SLAB_UNITS + 10);
        assert_eq!(m.free_slabs(), 4);
        // A hole of 3 units in slab 0; slabs 1 to 3 free.
        m.set_range(0, SLAB_UNITS, true);
        m.set_range(5, 3, false);
        assert_eq!((m.free_slabs(), m.count_free_slabs()), (3, 3));
        assert_eq!(m.find_free_run(0, 3), Some(5));
        assert_eq!(m.find_free_run_sparing_slabs(8, 3), Some(4 * SLAB_UNITS));
        assert_eq!(m.find_free_run_sparing_slabs(0, 3), Some(5));
        // The only other places are free slabs or the tail past the last whole slab.
        assert_eq!(m.find_free_run_sparing_slabs(0, 4), Some(4 * SLAB_UNITS));
        assert_eq!(m.find_free_run_sparing_slabs(0, 11), None);
        assert_eq!(m.find_free_slabs(0, 2), Some(SLAB_UNITS));
        assert_eq!(m.find_free_slabs(0, 4), None);
        // Small metadata breaks slab 2 and marks it: data spares the rest of it.
        m.mark_metadata_slab(2 * SLAB_UNITS);
        m.set_range(2 * SLAB_UNITS, 2, true);
        assert_eq!(m.free_slabs(), 2);
        assert!(m.is_metadata_slab(2));
        assert!(!m.range_is_free(2 * SLAB_UNITS + 2, 4, true));
        assert!(m.range_is_free(2 * SLAB_UNITS + 2, 4, false));
        // Wholly free again, it is an ordinary free slab.
        m.set_range(2 * SLAB_UNITS, 2, false);
        assert_eq!(m.free_slabs(), 3);
        assert!(!m.is_metadata_slab(2));
        let decoded = SpaceMap::decode(m.units(), &m.encode()).expect("image");
        assert_eq!(decoded.free_slabs(), 3);
    }

    /// xorshift64 from `seed`.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// `m` cut up by `count` random ranges of under `max_len` units, each taken (with odds
    /// `taken_of - 1` in `taken_of`) or freed.
    fn scatter(
        m: &mut SpaceMap,
        next: &mut impl FnMut() -> u64,
        count: u64,
        max_len: u64,
        taken_of: u64,
    ) {
        let units = m.units();
        for _ in 0..count {
            let start = next() % units;
            let len = (next() % max_len).min(units - start);
            m.set_range(start, len, !next().is_multiple_of(taken_of));
        }
    }

    #[test]
    fn word_search_agrees_with_unit_search_on_fragmented_maps() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for units in [1, 63, 64, 65, 200, 1000, 4 * SLAB_UNITS + 10] {
            let mut m = SpaceMap::new(units);
            scatter(&mut m, &mut next, units / 3, 9, 4);
            m.mark_metadata_slab(next() % units);
            for _ in 0..300 {
                let from = next() % (units + 1);
                let to = from + next() % (units + 1 - from);
                let n = next() % 80;
                for spare in [false, true] {
                    assert_eq!(
                        m.scan_by_word(from, to, n, spare),
                        m.scan_by_unit(from, to, n, spare),
                        "{units} units: {n} in [{from}, {to}), spare {spare}"
                    );
                    let n = n.min(units);
                    let start = from.min(units - n);
                    let unit_wise = (start..start + n).all(|u| !m.is_taken(u, spare));
                    assert_eq!(m.range_is_free(start, n, spare), unit_wise);
                }
            }
        }
    }

    #[test]
    fn free_run_histogram_counts_each_free_unit_in_its_run_class() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for units in [1, 63, 64, 65, 130, 1000, 20_000] {
            let mut m = SpaceMap::new(units);
            assert_eq!(m.free_run_histogram().iter().sum::<u64>(), units);
            scatter(&mut m, &mut next, units / 4, 70, 3);
            // Unit by unit: each free run's length, its units added to its class.
            let mut expected = [0u64; FREE_RUN_CLASSES];
            let mut run = 0u64;
            for unit in 0..=units {
                if unit < units && !m.is_set(unit) {
                    run += 1;
                } else if run > 0 {
                    let class = (63 - run.leading_zeros()) as usize;
                    expected[class.min(FREE_RUN_CLASSES - 1)] += run;
                    run = 0;
                }
            }
            let got = m.free_run_histogram();
            assert_eq!(got, expected, "{units} units");
            assert_eq!(got.iter().sum::<u64>(), units - m.allocated_units());
        }
        let mut m = SpaceMap::new(20_000);
        m.set_range(0, 3, true);
        m.set_range(5, 1, true);
        assert_eq!(m.free_run_histogram()[1], 2, "the run of 2 free units");
        assert_eq!(m.free_run_histogram()[FREE_RUN_CLASSES - 1], 20_000 - 6, "the long tail");
    }

    #[test]
    fn image_round_trips() {
        let mut m = SpaceMap::new(100);
        m.set_range(3, 40, true);
        let image = m.encode();
        assert_eq!(image.len(), 4096);
        assert_eq!(SpaceMap::decode(100, &image), Some(m));
        let mut bad = image.clone();
        bad[15] = 0xff; // bits past unit 100
        assert_eq!(SpaceMap::decode(100, &bad), None);
    }

    #[test]
    fn short_images_are_refused_before_allocating() {
        let image = SpaceMap::new(128).encode();
        assert_eq!(SpaceMap::decode(129, &image[..16]), None);
        assert_eq!(SpaceMap::decode(128, &image[..15]), None);
        // A unit count no image could cover (from a damaged label) is refused, not allocated.
        assert_eq!(SpaceMap::decode(u64::MAX, &image), None);
        assert_eq!(SpaceMap::decode(128, &image[..16]), Some(SpaceMap::new(128)));
    }
}
