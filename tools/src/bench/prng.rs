//! Fast, seedable pseudo-random numbers for offsets and op mixes (not for cryptography).

/// SplitMix64 step: used to derive independent seeds and to fill data patterns.
#[must_use]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64* generator: one multiply and three shifts per number.
#[derive(Debug, Clone)]
pub struct Xorshift64 {
    state: u64,
}

impl Xorshift64 {
    /// A generator whose stream depends on `seed` (any value, zero included).
    #[must_use]
    pub fn new(seed: u64) -> Xorshift64 {
        let mut s = seed;
        let state = splitmix64(&mut s);
        Xorshift64 { state: if state == 0 { 0x2545_F491_4F6C_DD1D } else { state } }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` without division (Lemire's multiply-high); `bound` > 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Xorshift64::new(7);
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let v = rng.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn different_seeds_give_different_streams() {
        let (mut a, mut b) = (Xorshift64::new(1), Xorshift64::new(2));
        assert_ne!(a.next_u64(), b.next_u64());
        assert_eq!(Xorshift64::new(5).next_u64(), Xorshift64::new(5).next_u64());
    }
}
