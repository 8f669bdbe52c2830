//! `KnnBasic`: a faithful re-implementation of Surprise's
//! `KNNBasic(k, min_k, sim_options={'name': 'cosine', 'user_based': True})`, used as the
//! reference rating predictor on small data and as the "predicted-rating ranking" baseline.
//!
//! # Semantics (matching Surprise 1.1)
//! - Inner ids are given in order of first appearance in the training ratings, as Surprise's
//!   `Trainset` does; each item keeps its raters in input order.
//! - `sim(u, v)` is the cosine over **co-rated** items only:
//!   `Σ r_ui·r_vi / sqrt(Σ r_ui² · Σ r_vi²)`, summed in inner-item order, in `f64`;
//!   0 when the users share no item (`min_support = 1`), and exactly 1 for `u == v`.
//! - `estimate(u, i)`: the raters of `i` are ranked by similarity, highest first; ties keep
//!   the rater order of the item (Python's `heapq.nlargest(k, .., key=sim)` is stable). Of the
//!   first `k`, only those with `sim > 0` count. Fewer than `min_k` of them (or a zero sum)
//!   is "prediction impossible" and yields the global mean.
//! - Unknown user or item → the global mean. Every estimate is clipped to the rating scale.
//!
//! # Memory
//! No user×user matrix: a user's similarity row is computed on demand through the
//! item→raters index, costing `O(Σ raters of the user's items)`; batches are grouped by user
//! so each row is computed once, and users run in parallel.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::data::{Rating, RatingScale};

/// Surprise-compatible user-based kNN with cosine similarity (see the module docs).
#[derive(Clone, Debug)]
pub struct KnnBasic {
    k: usize,
    min_k: usize,
    scale: RatingScale,
    global_mean: f64,
    /// External user id → inner id (first-appearance order).
    user_inner: HashMap<u32, u32>,
    /// External item id → inner id (first-appearance order).
    item_inner: HashMap<u32, u32>,
    /// Inner item id → external id.
    item_outer: Vec<u32>,
    /// Per user: `(inner item, rating)`, stably sorted by inner item id.
    ur_offsets: Vec<usize>,
    ur_items: Vec<u32>,
    ur_values: Vec<f64>,
    /// Per item: `(inner user, rating)` in input order.
    ir_offsets: Vec<usize>,
    ir_users: Vec<u32>,
    ir_values: Vec<f64>,
}

/// Per-thread scratch for one similarity row.
struct SimScratch {
    prods: Vec<f64>,
    sq_u: Vec<f64>,
    sq_v: Vec<f64>,
    touched: Vec<u32>,
    seen: Vec<bool>,
}

impl SimScratch {
    fn new(n_users: usize) -> Self {
        SimScratch {
            prods: vec![0.0; n_users],
            sq_u: vec![0.0; n_users],
            sq_v: vec![0.0; n_users],
            touched: Vec::new(),
            seen: vec![false; n_users],
        }
    }
}

/// A computed similarity row: `sims[v]` for every inner user `v` (0 when no co-rated item).
struct SimRow {
    sims: Vec<f64>,
}

impl KnnBasic {
    /// Fits the model on `ratings`, in the given order (order matters for exact tie-breaks,
    /// exactly as it does in Surprise). `k` is the maximum number of neighbours, `min_k` the
    /// minimum number of positive-similarity neighbours for a non-default prediction.
    pub fn fit(ratings: &[Rating], scale: RatingScale, k: usize, min_k: usize) -> Self {
        let mut user_inner: HashMap<u32, u32> = HashMap::new();
        let mut item_inner: HashMap<u32, u32> = HashMap::new();
        let mut item_outer = Vec::new();
        let mut inner_pairs = Vec::with_capacity(ratings.len());
        let mut sum = 0.0_f64;
        for r in ratings {
            let next_user = user_inner.len() as u32;
            let u = *user_inner.entry(r.user).or_insert(next_user);
            let next_item = item_inner.len() as u32;
            let i = *item_inner.entry(r.movie).or_insert_with(|| {
                item_outer.push(r.movie);
                next_item
            });
            let value = f64::from(r.value);
            sum += value;
            inner_pairs.push((u, i, value));
        }
        let n_users = user_inner.len();
        let n_items = item_inner.len();
        let global_mean = if ratings.is_empty() {
            f64::from(scale.min + scale.max) / 2.0
        } else {
            sum / ratings.len() as f64
        };

        // Item → raters, input order.
        let (ir_offsets, ir_users, ir_values) =
            group_stable(n_items, inner_pairs.iter().map(|&(u, i, r)| (i, u, r)));
        // User → items, input order, then stably sorted by inner item id.
        let (ur_offsets, mut ur_items, mut ur_values) =
            group_stable(n_users, inner_pairs.iter().map(|&(u, i, r)| (u, i, r)));
        for u in 0..n_users {
            let range = ur_offsets[u]..ur_offsets[u + 1];
            let mut row: Vec<(u32, f64)> = ur_items[range.clone()]
                .iter()
                .copied()
                .zip(ur_values[range.clone()].iter().copied())
                .collect();
            row.sort_by_key(|&(i, _)| i);
            for (slot, (i, r)) in range.zip(row) {
                ur_items[slot] = i;
                ur_values[slot] = r;
            }
        }

        KnnBasic {
            k,
            min_k,
            scale,
            global_mean,
            user_inner,
            item_inner,
            item_outer,
            ur_offsets,
            ur_items,
            ur_values,
            ir_offsets,
            ir_users,
            ir_values,
        }
    }

    /// Mean of all training ratings (Surprise's `trainset.global_mean`).
    pub fn global_mean(&self) -> f64 {
        self.global_mean
    }

    /// Number of distinct users seen in training.
    pub fn user_count(&self) -> usize {
        self.user_inner.len()
    }

    /// Number of distinct items seen in training.
    pub fn item_count(&self) -> usize {
        self.item_inner.len()
    }

    /// Cosine similarity between two external users, as Surprise computes it (0 when either
    /// is unknown or they share no item).
    pub fn similarity(&self, a: u32, b: u32) -> f64 {
        match (self.user_inner.get(&a), self.user_inner.get(&b)) {
            (Some(&ua), Some(&ub)) => {
                let mut scratch = SimScratch::new(self.user_count());
                self.sim_row(ua, &mut scratch).sims[ub as usize]
            }
            _ => 0.0,
        }
    }

    /// Predicted rating of `movie` by `user` (external ids), clipped to the scale.
    pub fn predict(&self, user: u32, movie: u32) -> f32 {
        let (Some(&u), Some(&i)) = (self.user_inner.get(&user), self.item_inner.get(&movie)) else {
            return self.clip(self.global_mean);
        };
        let mut scratch = SimScratch::new(self.user_count());
        let row = self.sim_row(u, &mut scratch);
        self.clip(self.estimate(&row, i).unwrap_or(self.global_mean))
    }

    /// Predictions for many `(user, movie)` pairs, in input order. Pairs are grouped by user
    /// so each similarity row is computed once; users run in parallel.
    pub fn predict_batch(&self, pairs: &[(u32, u32)]) -> Vec<f32> {
        let mut by_user: HashMap<u32, Vec<usize>> = HashMap::new();
        for (pos, &(user, _)) in pairs.iter().enumerate() {
            by_user.entry(user).or_default().push(pos);
        }
        let groups: Vec<(u32, Vec<usize>)> = by_user.into_iter().collect();
        let n_users = self.user_count();
        let results: Vec<Vec<(usize, f32)>> = groups
            .par_iter()
            .map_init(
                || SimScratch::new(n_users),
                |scratch, (user, positions)| {
                    let row = self.user_inner.get(user).map(|&u| self.sim_row(u, scratch));
                    positions
                        .iter()
                        .map(|&pos| {
                            let movie = pairs[pos].1;
                            let est = match (&row, self.item_inner.get(&movie)) {
                                (Some(row), Some(&i)) => {
                                    self.estimate(row, i).unwrap_or(self.global_mean)
                                }
                                _ => self.global_mean,
                            };
                            (pos, self.clip(est))
                        })
                        .collect()
                },
            )
            .collect();
        let mut out = vec![0.0; pairs.len()];
        for (pos, est) in results.into_iter().flatten() {
            out[pos] = est;
        }
        out
    }

    /// The `n` training items with the highest predicted rating for `user` among those the
    /// user has not rated and that are not in `exclude` — the original system's ranking.
    /// Ties are broken by movie id, ascending. An unknown user gets the global mean for every
    /// item, hence the lowest ids.
    pub fn rank_unrated(&self, user: u32, exclude: &HashSet<u32>, n: usize) -> Vec<u32> {
        let rated: HashSet<u32> = match self.user_inner.get(&user) {
            Some(&u) => {
                let range = self.ur_offsets[u as usize]..self.ur_offsets[u as usize + 1];
                self.ur_items[range].iter().copied().collect()
            }
            None => HashSet::new(),
        };
        let row = self.user_inner.get(&user).map(|&u| {
            let mut scratch = SimScratch::new(self.user_count());
            self.sim_row(u, &mut scratch)
        });
        // Scores stay in f64 (as in Surprise): f32 rounding would merge estimates just under the
        // scale maximum into ties and reorder them by id.
        let mut scored: Vec<(f64, u32)> = (0..self.item_count() as u32)
            .filter(|i| !rated.contains(i))
            .map(|i| (i, self.item_outer[i as usize]))
            .filter(|(_, ext)| !exclude.contains(ext))
            .map(|(i, ext)| {
                let est = row
                    .as_ref()
                    .and_then(|row| self.estimate(row, i))
                    .unwrap_or(self.global_mean);
                (self.clip_f64(est), ext)
            })
            .collect();
        super::topk::top_n_by_score(&mut scored, n)
    }

    fn clip(&self, est: f64) -> f32 {
        self.clip_f64(est) as f32
    }

    fn clip_f64(&self, est: f64) -> f64 {
        est.clamp(f64::from(self.scale.min), f64::from(self.scale.max))
    }

    /// Surprise's `cosine` restricted to the row of inner user `u`.
    fn sim_row(&self, u: u32, s: &mut SimScratch) -> SimRow {
        let urange = self.ur_offsets[u as usize]..self.ur_offsets[u as usize + 1];
        for (&item, &ru) in self.ur_items[urange.clone()]
            .iter()
            .zip(&self.ur_values[urange])
        {
            let irange = self.ir_offsets[item as usize]..self.ir_offsets[item as usize + 1];
            for (&v, &rv) in self.ir_users[irange.clone()]
                .iter()
                .zip(&self.ir_values[irange])
            {
                let vi = v as usize;
                if !s.seen[vi] {
                    s.seen[vi] = true;
                    s.touched.push(v);
                }
                s.prods[vi] += ru * rv;
                s.sq_u[vi] += ru * ru;
                s.sq_v[vi] += rv * rv;
            }
        }
        let mut sims = vec![0.0; self.user_count()];
        for &v in &s.touched {
            let vi = v as usize;
            let denom = (s.sq_u[vi] * s.sq_v[vi]).sqrt();
            let sim = s.prods[vi] / denom;
            sims[vi] = if sim.is_nan() { 0.0 } else { sim };
            s.prods[vi] = 0.0;
            s.sq_u[vi] = 0.0;
            s.sq_v[vi] = 0.0;
            s.seen[vi] = false;
        }
        s.touched.clear();
        sims[u as usize] = 1.0;
        SimRow { sims }
    }

    /// `KNNBasic.estimate` for inner item `i`; `None` means "prediction impossible".
    fn estimate(&self, row: &SimRow, i: u32) -> Option<f64> {
        let range = self.ir_offsets[i as usize]..self.ir_offsets[i as usize + 1];
        let mut neighbours: Vec<(f64, usize, f64)> = self.ir_users[range.clone()]
            .iter()
            .zip(&self.ir_values[range])
            .enumerate()
            .map(|(pos, (&v, &r))| (row.sims[v as usize], pos, r))
            .collect();
        // Highest similarity first; equal similarities keep rater order (stable nlargest).
        let order =
            |a: &(f64, usize, f64), b: &(f64, usize, f64)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if neighbours.len() > self.k && self.k > 0 {
            neighbours.select_nth_unstable_by(self.k - 1, order);
        }
        neighbours.truncate(self.k);
        neighbours.sort_by(order);
        let mut sum_sim = 0.0_f64;
        let mut sum_ratings = 0.0_f64;
        let mut actual_k = 0_usize;
        for &(sim, _, r) in &neighbours {
            if sim > 0.0 {
                sum_sim += sim;
                sum_ratings += sim * r;
                actual_k += 1;
            }
        }
        if actual_k < self.min_k || sum_sim == 0.0 {
            return None;
        }
        Some(sum_ratings / sum_sim)
    }
}

/// Groups `(key, col, value)` triples by key into CSR arrays, keeping input order per key.
fn group_stable(
    n_keys: usize,
    triples: impl Iterator<Item = (u32, u32, f64)> + Clone,
) -> (Vec<usize>, Vec<u32>, Vec<f64>) {
    let mut offsets = vec![0_usize; n_keys + 1];
    for (key, _, _) in triples.clone() {
        offsets[key as usize + 1] += 1;
    }
    for k in 0..n_keys {
        offsets[k + 1] += offsets[k];
    }
    let total = offsets[n_keys];
    let mut cols = vec![0_u32; total];
    let mut values = vec![0.0_f64; total];
    let mut cursor = offsets.clone();
    for (key, col, value) in triples {
        let slot = cursor[key as usize];
        cols[slot] = col;
        values[slot] = value;
        cursor[key as usize] += 1;
    }
    (offsets, cols, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(user: u32, movie: u32, value: f32) -> Rating {
        Rating {
            user,
            movie,
            value,
            timestamp: 0,
        }
    }

    /// Four users, four movies, hand-computed below.
    ///
    /// ```text
    ///        m10 m20 m30 m40
    /// u1      5   3   .   1
    /// u2      4   .   4   .
    /// u3      .   2   5   4
    /// u4      1   .   .   .
    /// ```
    fn four_users() -> Vec<Rating> {
        vec![
            r(1, 10, 5.0),
            r(1, 20, 3.0),
            r(1, 40, 1.0),
            r(2, 10, 4.0),
            r(2, 30, 4.0),
            r(3, 20, 2.0),
            r(3, 30, 5.0),
            r(3, 40, 4.0),
            r(4, 10, 1.0),
        ]
    }

    #[test]
    fn cosine_over_co_rated_items_only() {
        let m = KnnBasic::fit(&four_users(), RatingScale::WHOLE_STARS, 40, 1);
        // u1·u3 share m20 (3,2) and m40 (1,4): (6+4)/sqrt((9+1)(4+16)) = 10/sqrt(200).
        let expected = 10.0 / 200.0_f64.sqrt();
        assert!((m.similarity(1, 3) - expected).abs() < 1e-15);
        assert!((m.similarity(3, 1) - expected).abs() < 1e-15);
        // u1·u2 share only m10: 20/sqrt(25·16) = 1.
        assert!((m.similarity(1, 2) - 1.0).abs() < 1e-15);
        // u2·u3 share only m30 → 1; u3·u4 share nothing → 0.
        assert!((m.similarity(2, 3) - 1.0).abs() < 1e-15);
        assert!(m.similarity(3, 4).abs() < f64::EPSILON);
        assert!((m.similarity(4, 4) - 1.0).abs() < f64::EPSILON);
        assert!(m.similarity(4, 99).abs() < f64::EPSILON);
    }

    #[test]
    fn prediction_is_similarity_weighted_mean_of_raters() {
        let m = KnnBasic::fit(&four_users(), RatingScale::WHOLE_STARS, 40, 1);
        // u2 on m20: raters u1 (sim 1, r 3) and u3 (sim 1, r 2) → 2.5.
        assert!((m.predict(2, 20) - 2.5).abs() < 1e-6);
        // u4 on m20: u4 shares m10 with u1 (sim 1) but nothing with u3 (sim 0) → 3.
        assert!((m.predict(4, 20) - 3.0).abs() < 1e-6);
        // u1 on m30: u2 (sim 1, r 4), u3 (sim 10/sqrt200, r 5).
        let s13 = 10.0 / 200.0_f64.sqrt();
        let expected = (4.0 + s13 * 5.0) / (1.0 + s13);
        assert!((f64::from(m.predict(1, 30)) - expected).abs() < 1e-6);
    }

    #[test]
    fn k_limits_neighbours_and_ties_keep_rater_order() {
        // u2 on m20 with k=1: u1 and u3 both have sim exactly 1; u1 rated m20 first → 3.
        let m = KnnBasic::fit(&four_users(), RatingScale::WHOLE_STARS, 1, 1);
        assert!((m.predict(2, 20) - 3.0).abs() < 1e-6);
        // Same data with u3's rating of m20 listed before u1's → u3 wins the tie → 2.
        let mut reordered = four_users();
        let pos = reordered
            .iter()
            .position(|x| x.user == 3 && x.movie == 20)
            .unwrap();
        let moved = reordered.remove(pos);
        reordered.insert(0, moved);
        let m = KnnBasic::fit(&reordered, RatingScale::WHOLE_STARS, 1, 1);
        assert!((m.predict(2, 20) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn min_k_and_unknown_ids_fall_back_to_global_mean() {
        let data = four_users();
        let mean = data.iter().map(|x| f64::from(x.value)).sum::<f64>() / data.len() as f64;
        // u4 on m30: raters u2 (sim 1 via m10) and u3 (sim 0) → actual_k = 1 < min_k = 2.
        let m = KnnBasic::fit(&data, RatingScale::WHOLE_STARS, 40, 2);
        assert!((f64::from(m.predict(4, 30)) - mean).abs() < 1e-6);
        // With min_k = 1 the same prediction is u2's rating.
        let m1 = KnnBasic::fit(&data, RatingScale::WHOLE_STARS, 40, 1);
        assert!((m1.predict(4, 30) - 4.0).abs() < 1e-6);
        assert!((f64::from(m1.predict(99, 10)) - mean).abs() < 1e-6);
        assert!((f64::from(m1.predict(1, 99)) - mean).abs() < 1e-6);
        // u3 on m10 shares nothing with u4 → only positive sims count (u1, u2).
        assert!(m1.predict(3, 10) > 1.0);
    }

    #[test]
    fn estimates_are_clipped_to_the_scale() {
        // A scale narrower than the data forces clipping of both fallback and estimate.
        let narrow = RatingScale { min: 2.0, max: 3.0 };
        let m = KnnBasic::fit(&four_users(), narrow, 40, 1);
        assert!((m.predict(4, 30) - 3.0).abs() < 1e-6); // estimate 4 → 3
        assert!((m.predict(4, 20) - 3.0).abs() < 1e-6);
        let m = KnnBasic::fit(&[r(1, 1, 1.0), r(2, 1, 1.0), r(2, 2, 1.0)], narrow, 40, 1);
        assert!((m.predict(1, 2) - 2.0).abs() < 1e-6); // estimate 1 → 2
    }

    #[test]
    fn batch_matches_single_predictions_in_input_order() {
        let m = KnnBasic::fit(&four_users(), RatingScale::WHOLE_STARS, 40, 1);
        let pairs = [
            (1, 30),
            (2, 20),
            (4, 20),
            (99, 10),
            (1, 99),
            (2, 40),
            (1, 30),
        ];
        let batch = m.predict_batch(&pairs);
        let single: Vec<f32> = pairs.iter().map(|&(u, i)| m.predict(u, i)).collect();
        assert_eq!(batch, single);
    }

    #[test]
    fn rank_unrated_orders_by_estimate_then_id() {
        let m = KnnBasic::fit(&four_users(), RatingScale::WHOLE_STARS, 40, 1);
        // u4 rated only m10. m20 → 3 (u1), m30 → 4 (u2), m40 → 1 (u1 only positive).
        assert_eq!(m.rank_unrated(4, &HashSet::new(), 10), vec![30, 20, 40]);
        let exclude: HashSet<u32> = [30].into_iter().collect();
        assert_eq!(m.rank_unrated(4, &exclude, 1), vec![20]);
        // Unknown user: every item at the global mean → ids ascending.
        assert_eq!(m.rank_unrated(99, &HashSet::new(), 2), vec![10, 20]);
    }
}
