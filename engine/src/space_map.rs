//! Space maps: the allocation bitmap of one allocation group (docs/format.md §Space maps).
//!
//! One bit per 4 KiB unit, set when allocated. The on-disk image is the bitmap as
//! little-endian u64 words, padded with zero bits to whole 4 KiB sectors, written
//! copy-on-write as a metadata object whenever the group changed in a txg.

/// An allocation bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceMap {
    units: u64,
    words: Vec<u64>,
}

impl SpaceMap {
    /// An all-free map of `units` units.
    #[must_use]
    pub fn new(units: u64) -> SpaceMap {
        let words = usize::try_from(units.div_ceil(64)).expect("space map fits in memory");
        SpaceMap { units, words: vec![0; words] }
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
        let mut changed = 0;
        for unit in start..start + n {
            let word = &mut self.words[(unit / 64) as usize];
            let mask = 1u64 << (unit % 64);
            if (*word & mask != 0) != set {
                *word ^= mask;
                changed += 1;
            }
        }
        changed
    }

    /// True when every unit of `[start, start + n)` is free.
    #[must_use]
    pub fn range_is_free(&self, start: u64, n: u64) -> bool {
        (start..start + n).all(|u| !self.is_set(u))
    }

    /// First run of `n` free units at or after `from`, wrapping once to the start.
    #[must_use]
    pub fn find_free_run(&self, from: u64, n: u64) -> Option<u64> {
        if n == 0 || n > self.units {
            return None;
        }
        let from = if from >= self.units { 0 } else { from };
        self.scan(from, self.units, n).or_else(|| self.scan(0, from.min(self.units), n))
    }

    fn scan(&self, from: u64, to: u64, n: u64) -> Option<u64> {
        let mut unit = from;
        let mut run_start = from;
        let mut run = 0;
        while unit < to {
            // Whole words at a time where possible: a full word ends any run, an empty one
            // extends it by 64.
            if unit.is_multiple_of(64) && unit + 64 <= to {
                let word = self.words[(unit / 64) as usize];
                if word == u64::MAX {
                    run = 0;
                    unit += 64;
                    run_start = unit;
                    continue;
                }
                if word == 0 {
                    if run + 64 >= n {
                        return Some(run_start);
                    }
                    run += 64;
                    unit += 64;
                    continue;
                }
            }
            if self.is_set(unit) {
                run = 0;
                run_start = unit + 1;
            } else {
                run += 1;
                if run == n {
                    return Some(run_start);
                }
            }
            unit += 1;
        }
        None
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
        Some(map)
    }
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
