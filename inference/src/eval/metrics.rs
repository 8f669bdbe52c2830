//! Pure offline-evaluation metrics: rating error (RMSE, MAE), top-k ranking quality
//! (precision@k, recall@k, NDCG@k with binary relevance), catalogue coverage and
//! per-group error. No IO, no model: callers pass predictions and rankings in.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;

use serde::Serialize;

/// Running sums for RMSE and MAE over (predicted, actual) pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorSums {
    sum_squared: f64,
    sum_absolute: f64,
    count: usize,
}

impl ErrorSums {
    /// Adds one prediction and the rating it tried to predict.
    pub fn add(&mut self, predicted: f64, actual: f64) {
        let error = predicted - actual;
        self.sum_squared += error * error;
        self.sum_absolute += error.abs();
        self.count += 1;
    }

    /// Number of pairs added.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Root mean squared error; `None` when nothing was added.
    pub fn rmse(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.sum_squared / self.count as f64).sqrt())
    }

    /// Mean absolute error; `None` when nothing was added.
    pub fn mae(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_absolute / self.count as f64)
    }
}

/// RMSE of `(predicted, actual)` pairs; `None` for an empty input.
pub fn rmse(pairs: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    sums(pairs).rmse()
}

/// MAE of `(predicted, actual)` pairs; `None` for an empty input.
pub fn mae(pairs: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    sums(pairs).mae()
}

fn sums(pairs: impl IntoIterator<Item = (f64, f64)>) -> ErrorSums {
    let mut acc = ErrorSums::default();
    for (predicted, actual) in pairs {
        acc.add(predicted, actual);
    }
    acc
}

/// Number of the first `k` ranked items that are relevant.
fn hits_at_k<S: BuildHasher>(ranked: &[u32], relevant: &HashSet<u32, S>, k: usize) -> usize {
    ranked
        .iter()
        .take(k)
        .filter(|m| relevant.contains(m))
        .count()
}

/// Precision@k: relevant items among the first `k` ranked, divided by `k` (a list shorter
/// than `k` is not rewarded for being short). `None` when `k` is 0.
pub fn precision_at_k<S: BuildHasher>(
    ranked: &[u32],
    relevant: &HashSet<u32, S>,
    k: usize,
) -> Option<f64> {
    (k > 0).then(|| hits_at_k(ranked, relevant, k) as f64 / k as f64)
}

/// Recall@k: relevant items among the first `k` ranked, divided by the number of relevant
/// items. `None` when there is no relevant item (the user cannot be scored).
pub fn recall_at_k<S: BuildHasher>(
    ranked: &[u32],
    relevant: &HashSet<u32, S>,
    k: usize,
) -> Option<f64> {
    (!relevant.is_empty()).then(|| hits_at_k(ranked, relevant, k) as f64 / relevant.len() as f64)
}

/// NDCG@k with binary relevance: DCG = Σ over relevant items at 1-based position p ≤ k of
/// 1 / log2(p + 1); IDCG is the same sum over the first min(k, #relevant) positions.
/// `None` when there is no relevant item or `k` is 0.
pub fn ndcg_at_k<S: BuildHasher>(
    ranked: &[u32],
    relevant: &HashSet<u32, S>,
    k: usize,
) -> Option<f64> {
    crate::util::ndcg(ranked, k, relevant.len(), |m| relevant.contains(&m))
}

/// Catalogue coverage: distinct items appearing in any list, divided by the catalogue
/// size. `None` for an empty catalogue.
pub fn catalog_coverage<'a>(
    lists: impl IntoIterator<Item = &'a [u32]>,
    catalogue_size: usize,
) -> Option<f64> {
    if catalogue_size == 0 {
        return None;
    }
    let distinct: HashSet<u32> = lists.into_iter().flatten().copied().collect();
    Some(distinct.len() as f64 / catalogue_size as f64)
}

/// Mean ranking quality of one ranker over many users.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RankingSummary {
    /// Cut-off for precision and recall.
    pub k: usize,
    /// Cut-off for NDCG.
    pub ndcg_k: usize,
    /// Mean precision@k over scored users.
    pub precision: f64,
    /// Mean recall@k over scored users.
    pub recall: f64,
    /// Mean NDCG at `ndcg_k` over scored users.
    pub ndcg: f64,
    /// Distinct recommended items (first `k` of each list, scored users) / catalogue size.
    pub coverage: f64,
    /// Users with at least one relevant held-out item, who were scored.
    pub users_scored: usize,
    /// Users with held-out ratings but no relevant one, skipped.
    pub users_skipped: usize,
}

/// One user's ranking metrics (the cut-offs of the [`RankingSums`] that scored them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UserScores {
    /// Precision@k.
    pub precision: f64,
    /// Recall@k.
    pub recall: f64,
    /// NDCG at the NDCG cut-off.
    pub ndcg: f64,
}

/// Accumulates per-user ranking metrics; users without a relevant item are skipped and
/// counted, never scored as zero.
#[derive(Clone, Debug)]
pub struct RankingSums {
    k: usize,
    ndcg_k: usize,
    precision: f64,
    recall: f64,
    ndcg: f64,
    scored: usize,
    skipped: usize,
    recommended: HashSet<u32>,
}

impl RankingSums {
    /// Empty sums for precision/recall@`k` and NDCG@`ndcg_k`.
    pub fn new(k: usize, ndcg_k: usize) -> Self {
        Self {
            k,
            ndcg_k,
            precision: 0.0,
            recall: 0.0,
            ndcg: 0.0,
            scored: 0,
            skipped: 0,
            recommended: HashSet::new(),
        }
    }

    /// Scores one user's ranked list against their relevant held-out items and returns
    /// that user's scores; `None` (and counted as skipped) without a relevant item.
    pub fn add<S: BuildHasher>(
        &mut self,
        ranked: &[u32],
        relevant: &HashSet<u32, S>,
    ) -> Option<UserScores> {
        let (Some(precision), Some(recall), Some(ndcg)) = (
            precision_at_k(ranked, relevant, self.k),
            recall_at_k(ranked, relevant, self.k),
            ndcg_at_k(ranked, relevant, self.ndcg_k),
        ) else {
            self.skipped += 1;
            return None;
        };
        self.precision += precision;
        self.recall += recall;
        self.ndcg += ndcg;
        self.scored += 1;
        self.recommended.extend(ranked.iter().take(self.k).copied());
        Some(UserScores {
            precision,
            recall,
            ndcg,
        })
    }

    /// Means over scored users (0 when none was scored) and coverage of `catalogue_size`.
    pub fn summary(&self, catalogue_size: usize) -> RankingSummary {
        let mean = |sum: f64| {
            if self.scored == 0 {
                0.0
            } else {
                sum / self.scored as f64
            }
        };
        let coverage = if catalogue_size == 0 {
            0.0
        } else {
            self.recommended.len() as f64 / catalogue_size as f64
        };
        RankingSummary {
            k: self.k,
            ndcg_k: self.ndcg_k,
            precision: mean(self.precision),
            recall: mean(self.recall),
            ndcg: mean(self.ndcg),
            coverage,
            users_scored: self.scored,
            users_skipped: self.skipped,
        }
    }
}

/// RMSE of two predictors within one group of users.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupError {
    /// Group label (e.g. `F`, `25-34`, `engineer`, or `unknown`).
    pub group: String,
    /// Held-out ratings of users in the group.
    pub ratings: usize,
    /// RMSE of the default predictor.
    pub rmse_default: f64,
    /// RMSE of knn-basic.
    pub rmse_knn_basic: f64,
}

/// Order of group labels in reports: numeric labels by value (ML-1M occupation codes),
/// then other labels alphabetically, `unknown` last.
fn label_order(label: &str) -> (u8, u64, &str) {
    match (label, label.parse::<u64>()) {
        ("unknown", _) => (2, 0, label),
        (_, Ok(n)) => (0, n, label),
        _ => (1, 0, label),
    }
}

/// Per-group RMSE of two predictors. Each item is `(group label, default prediction,
/// knn-basic prediction, actual)`. Groups come out in a fixed order that does not depend
/// on input order: numeric labels by value, other labels alphabetically, `unknown` last.
pub fn group_rmse<'a>(rows: impl IntoIterator<Item = (&'a str, f64, f64, f64)>) -> Vec<GroupError> {
    let mut groups: BTreeMap<(u8, u64, &str), (ErrorSums, ErrorSums)> = BTreeMap::new();
    for (group, default, knn, actual) in rows {
        let entry = groups.entry(label_order(group)).or_default();
        entry.0.add(default, actual);
        entry.1.add(knn, actual);
    }
    groups
        .into_iter()
        .map(|((_, _, group), (default, knn))| GroupError {
            group: group.to_owned(),
            ratings: default.count(),
            rmse_default: default.rmse().unwrap_or(0.0),
            rmse_knn_basic: knn.rmse().unwrap_or(0.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> HashSet<u32> {
        ids.iter().copied().collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn rmse_and_mae_by_hand() {
        // errors: +1, -2, 0, +3 → squares 1,4,0,9 (sum 14), abs 1,2,0,3 (sum 6)
        let pairs = [(4.0, 3.0), (1.0, 3.0), (2.5, 2.5), (5.0, 2.0)];
        assert!(close(rmse(pairs).unwrap(), (14.0_f64 / 4.0).sqrt()));
        assert!(close(mae(pairs).unwrap(), 1.5));
        assert_eq!(rmse([]), None);
        assert_eq!(mae([]), None);
    }

    #[test]
    fn precision_counts_hits_over_k_even_for_short_lists() {
        let relevant = set(&[2, 5, 9]);
        assert!(close(
            precision_at_k(&[1, 2, 3, 5], &relevant, 4).unwrap(),
            0.5
        ));
        // Only the first k count.
        assert!(close(
            precision_at_k(&[1, 3, 2, 5], &relevant, 2).unwrap(),
            0.0
        ));
        // Two items listed, k = 4: 1 hit / 4.
        assert!(close(precision_at_k(&[9, 7], &relevant, 4).unwrap(), 0.25));
        assert_eq!(precision_at_k(&[1], &relevant, 0), None);
    }

    #[test]
    fn recall_divides_by_relevant_count() {
        let relevant = set(&[2, 5, 9, 11]);
        assert!(close(recall_at_k(&[2, 3, 5], &relevant, 3).unwrap(), 0.5));
        assert!(close(recall_at_k(&[2, 3, 5], &relevant, 1).unwrap(), 0.25));
        assert_eq!(recall_at_k(&[2, 3], &set(&[]), 3), None);
    }

    #[test]
    fn ndcg_by_hand() {
        // Relevant {a=10, b=20}; ranking [30, 10, 40, 20], k = 4.
        // DCG = 1/log2(3) + 1/log2(5); IDCG (2 relevant) = 1/log2(2) + 1/log2(3).
        let relevant = set(&[10, 20]);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!(close(
            ndcg_at_k(&[30, 10, 40, 20], &relevant, 4).unwrap(),
            dcg / idcg
        ));
        // Perfect ordering scores 1.
        assert!(close(ndcg_at_k(&[10, 20, 30], &relevant, 3).unwrap(), 1.0));
        // No hit scores 0.
        assert!(close(ndcg_at_k(&[1, 2, 3], &relevant, 3).unwrap(), 0.0));
        assert_eq!(ndcg_at_k(&[1, 2], &set(&[]), 10), None);
    }

    #[test]
    fn ndcg_ideal_is_capped_at_k() {
        // 5 relevant, k = 2: IDCG uses min(k, #relevant) = 2 positions, so two hits in the
        // first two slots score exactly 1.
        let relevant = set(&[1, 2, 3, 4, 5]);
        assert!(close(ndcg_at_k(&[1, 2, 9], &relevant, 2).unwrap(), 1.0));
        // One hit at position 2 of k = 2: (1/log2 3) / (1 + 1/log2 3).
        let want = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!(close(ndcg_at_k(&[9, 3], &relevant, 2).unwrap(), want));
    }

    #[test]
    fn coverage_counts_distinct_items() {
        let lists: [&[u32]; 3] = [&[1, 2, 3], &[2, 3, 4], &[]];
        assert!(close(catalog_coverage(lists, 8).unwrap(), 0.5));
        assert_eq!(catalog_coverage(lists, 0), None);
    }

    #[test]
    fn ranking_sums_skip_users_without_relevant_items() {
        let mut sums = RankingSums::new(2, 2);
        sums.add(&[1, 2], &set(&[1])); // p = 0.5, r = 1, ndcg = 1
        sums.add(&[3, 4], &set(&[4, 5])); // p = 0.5, r = 0.5, ndcg = (1/log2 3)/(1+1/log2 3)
        sums.add(&[7, 8], &set(&[])); // skipped, its items do not count for coverage
        let s = sums.summary(10);
        assert_eq!((s.users_scored, s.users_skipped), (2, 1));
        assert!(close(s.precision, 0.5));
        assert!(close(s.recall, 0.75));
        let second = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!(close(s.ndcg, f64::midpoint(1.0, second)));
        assert!(close(s.coverage, 0.4));
    }

    #[test]
    fn group_rmse_groups_and_sorts() {
        let rows = [
            ("M", 4.0, 3.0, 3.0),
            ("F", 2.0, 2.0, 4.0),
            ("M", 2.0, 3.0, 4.0),
            ("unknown", 3.0, 3.0, 3.0),
        ];
        let groups = group_rmse(rows);
        let labels: Vec<&str> = groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(labels, ["F", "M", "unknown"]);
        let numeric = group_rmse(["unknown", "10", "2", "writer", "0"].map(|g| (g, 1.0, 1.0, 1.0)));
        let labels: Vec<&str> = numeric.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(labels, ["0", "2", "10", "writer", "unknown"]);
        assert_eq!(groups[1].ratings, 2);
        // M default errors +1, -2 → sqrt(5/2); knn errors 0, -1 → sqrt(1/2).
        assert!(close(groups[1].rmse_default, 2.5f64.sqrt()));
        assert!(close(groups[1].rmse_knn_basic, 0.5f64.sqrt()));
        assert!(close(groups[0].rmse_default, 2.0));
        assert!(close(groups[2].rmse_knn_basic, 0.0));
    }
}
