//! Small primitives shared across the crate, each with one home: the `SplitMix64` hash and
//! generator (seeded splits, samples, synthetic data) and binary-relevance NDCG (training's
//! hold-out choices and offline evaluation). FNV-1a (stable ids for slugs) and error chains
//! are the operator's too, so their home is `movrek-contract`; they are re-exported here.
//!
//! `SplitMix64` is Steele, Lea and Flood, "Fast splittable pseudorandom number generators"
//! (OOPSLA 2014); NDCG is Järvelin and Kekäläinen, "Cumulated gain-based evaluation of IR
//! techniques" (TOIS 2002).

pub use movrek_contract::{error_chain, fnv1a32};

/// The `SplitMix64` increment (2^64 / golden ratio).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The `SplitMix64` output function: a bijective, well-mixed scramble of `z`.
pub fn finalise(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fixed, portable 64-bit hash of `x` for deterministic sampling and splits: one
/// `SplitMix64` step from state `x` (`finalise(x + GOLDEN)`).
pub fn mix(x: u64) -> u64 {
    finalise(x.wrapping_add(GOLDEN))
}

/// `SplitMix64`: a tiny, fast, well-mixed 64-bit generator; enough for synthetic data and
/// seeded initialisation.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// An independent stream for one entity: `kind` separates users, movies, ratings, …
    pub fn stream(seed: u64, kind: u64, index: u64) -> Self {
        SplitMix64(finalise(
            seed ^ finalise(kind.wrapping_mul(GOLDEN) ^ finalise(index.wrapping_add(GOLDEN))),
        ))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        finalise(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias worth mentioning at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// NDCG@k with binary relevance: DCG = Σ over relevant items at 1-based position p ≤ k of
/// 1 / log2(p + 1); IDCG is the same sum over the first `min(k, relevant_count)` positions.
/// `is_relevant` says whether an id is relevant; `relevant_count` is how many are.
/// `None` when there is no relevant item or `k` is 0.
pub fn ndcg(
    ranked: &[u32],
    k: usize,
    relevant_count: usize,
    is_relevant: impl Fn(u32) -> bool,
) -> Option<f64> {
    let ideal_len = k.min(relevant_count);
    if ideal_len == 0 {
        return None;
    }
    let gain = |position: usize| 1.0 / ((position + 1) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|&(_, &m)| is_relevant(m))
        .map(|(i, _)| gain(i + 1))
        .sum();
    let idcg: f64 = (1..=ideal_len).map(gain).sum();
    Some(dcg / idcg)
}

/// [`ndcg`] against a sorted, distinct slice of relevant ids; 0 when it is undefined.
pub fn ndcg_sorted(ranked: &[u32], relevant: &[u32], k: usize) -> f64 {
    ndcg(ranked, k, relevant.len(), |m| {
        relevant.binary_search(&m).is_ok()
    })
    .unwrap_or(0.0)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs of the reference C implementation seeded with 0.
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn ndcg_matches_a_hand_computed_value() {
        // Hits at positions 2 and 3: (1/log2 3 + 1/log2 4) / (1 + 1/log2 3).
        let want = (1.0 / 3_f64.log2() + 0.5) / (1.0 + 1.0 / 3_f64.log2());
        assert!((ndcg_sorted(&[5, 1, 9], &[1, 9], 10) - want).abs() < 1e-12);
        assert!((ndcg_sorted(&[1, 9, 5], &[1, 9], 10) - 1.0).abs() < 1e-12);
        assert!(ndcg_sorted(&[1, 9], &[1, 9], 0).abs() < f64::EPSILON);
        assert!(ndcg_sorted(&[4, 5], &[1, 9], 10).abs() < f64::EPSILON);
        assert_eq!(ndcg(&[1], 10, 0, |_| true), None);
    }
}
