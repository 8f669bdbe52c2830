//! `evaluate`: trains the served model and `KnnBasic` on a training set, scores both on
//! held-out ratings, ranks with the served model, `KnnBasic` and popularity, and fills an
//! [`EvalReport`]. The metric maths lives in [`super::metrics`].

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{AgeBucket, Dataset, Rating, User};
use crate::model::Model;
use crate::model::knn_basic::KnnBasic;
use crate::train::{self, TrainParams};

use super::metrics::{self, ErrorSums, RankingSums};
use super::report::{
    EvalReport, GroupErrors, Predictor, Ranker, RankingQuality, RatingAccuracy, SplitSummary,
    Timings,
};
use super::{EvalError, age_label, catalogue_size, gender_label, occupation_label};

/// Evaluation parameters. Every field has a default, so a partial JSON object is valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalParams {
    /// Parameters of the served model; `k` and `min_k` also configure `KnnBasic`.
    /// The default turns the model's own hold-out measurement off (this evaluation
    /// measures on its own held-out set, and training time should not include it).
    pub train: TrainParams,
    /// Cut-off of precision and recall (20: the served list length).
    pub top_k: usize,
    /// Cut-off of NDCG (10).
    pub ndcg_k: usize,
    /// A held-out rating at or above this is relevant (4.0).
    pub relevance_threshold: f32,
    /// Rank for at most this many test users (a seeded sample by user id); `None` = all.
    /// `KnnBasic` ranking predicts every unrated movie, which is slow on big data.
    pub max_ranking_users: Option<usize>,
}

impl Default for EvalParams {
    fn default() -> Self {
        EvalParams {
            train: TrainParams {
                holdout_fraction: 0.0,
                ..TrainParams::default()
            },
            top_k: 20,
            ndcg_k: 10,
            relevance_threshold: 4.0,
            max_ranking_users: None,
        }
    }
}

/// Trains on `train`, evaluates on `test`.
///
/// # What is measured
/// - RMSE/MAE of `KnnBasic` (k, `min_k` from `params.train`) and of `Model::predict`.
/// - Precision@`top_k`, recall@`top_k`, NDCG@`ndcg_k` and catalogue coverage of three
///   rankings: `Model::recommend`; every training movie the user has not rated, by
///   `KnnBasic` estimate (ties by id); and training popularity (rating count, ties by id)
///   minus the user's rated movies. A held-out rating ≥ `relevance_threshold` is relevant;
///   test users with no relevant rating are skipped and counted.
/// - RMSE of both predictors per gender, age bucket and occupation (`unknown` when the
///   user has no demographics in `train.users`).
///
/// # Errors
/// Empty training or test ratings, zero cut-offs, or a training failure.
pub fn evaluate(
    train: &Dataset,
    test: &[Rating],
    params: &EvalParams,
) -> Result<EvalReport, EvalError> {
    let started = Instant::now();
    if train.ratings.is_empty() {
        return Err(EvalError::EmptyTrain);
    }
    if test.is_empty() {
        return Err(EvalError::EmptyTest);
    }
    if params.top_k == 0 || params.ndcg_k == 0 {
        return Err(EvalError::BadParam("top_k and ndcg_k must be at least 1"));
    }
    if !params.relevance_threshold.is_finite() {
        return Err(EvalError::BadParam(
            "relevance_threshold must be a finite number",
        ));
    }

    let t = Instant::now();
    let model = train::train(train, &params.train, "eval", "")
        .map_err(|e| EvalError::Train(Box::new(e)))?;
    let served_train_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let knn = KnnBasic::fit(
        &train.ratings,
        train.scale,
        params.train.k,
        params.train.min_k,
    );
    let knn_basic_fit_seconds = t.elapsed().as_secs_f64();

    let pairs: Vec<(u32, u32)> = test.iter().map(|r| (r.user, r.movie)).collect();
    let t = Instant::now();
    let knn_predictions = knn.predict_batch(&pairs);
    let knn_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let default_predictions: Vec<f32> = pairs
        .par_iter()
        .map(|&(u, m)| model.predict(u, m))
        .collect();
    let default_seconds = t.elapsed().as_secs_f64();

    let rating = vec![
        accuracy(Predictor::KnnBasic, test, &knn_predictions, knn_seconds),
        accuracy(
            Predictor::Default,
            test,
            &default_predictions,
            default_seconds,
        ),
    ];
    let groups = group_errors(&train.users, test, &default_predictions, &knn_predictions);

    let rated = rated_by_user(&train.ratings);
    let users = ranking_users(test, params);
    let relevant = relevant_by_user(test, params.relevance_threshold);
    let list_len = params.top_k.max(params.ndcg_k);
    let catalogue = catalogue_size(train);
    let popular = popularity_order(&train.ratings);
    let no_exclusions = HashSet::new();
    let empty = HashSet::new();

    let rank = |ranker: Ranker| {
        let t = Instant::now();
        let lists: Vec<Vec<u32>> = users
            .par_iter()
            .map(|&user| match ranker {
                Ranker::Served => model_list(&model, user, list_len),
                Ranker::KnnBasic => knn.rank_unrated(user, &no_exclusions, list_len),
                Ranker::Popularity => {
                    top_unrated(&popular, rated.get(&user).unwrap_or(&empty), list_len)
                }
            })
            .collect();
        let mut quality = quality_of(ranker, &users, &lists, &relevant, params, catalogue);
        quality.seconds = t.elapsed().as_secs_f64();
        quality
    };
    let ranking = [Ranker::Served, Ranker::KnnBasic, Ranker::Popularity]
        .into_iter()
        .map(rank)
        .collect();

    let params_json = serde_json::to_value(params).expect("parameters serialise to JSON");
    let served_model = serde_json::json!({
        "params": model.metadata().params,
        "validation": model.metadata().validation,
    });
    Ok(EvalReport {
        split: split_summary(train, test),
        params: params_json,
        served_model,
        rating,
        ranking,
        groups,
        timings: Timings {
            served_train_seconds,
            knn_basic_fit_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
        },
    })
}

/// Scores `lists` (aligned with `users`) against the relevant held-out movies: the means,
/// coverage and each scored user's metrics (`seconds` is left for the caller).
fn quality_of(
    ranker: Ranker,
    users: &[u32],
    lists: &[Vec<u32>],
    relevant: &HashMap<u32, HashSet<u32>>,
    params: &EvalParams,
    catalogue: usize,
) -> RankingQuality {
    let empty = HashSet::new();
    let mut sums = RankingSums::new(params.top_k, params.ndcg_k);
    let per_user = users
        .iter()
        .zip(lists)
        .filter_map(|(&user, list)| {
            let scores = sums.add(list, relevant.get(&user).unwrap_or(&empty))?;
            Some((user, scores))
        })
        .collect();
    RankingQuality {
        ranker,
        summary: sums.summary(catalogue),
        seconds: 0.0,
        per_user,
    }
}

fn model_list(model: &Model, user: u32, n: usize) -> Vec<u32> {
    model.recommend(user, n).movies
}

fn accuracy(
    predictor: Predictor,
    test: &[Rating],
    predictions: &[f32],
    predict_seconds: f64,
) -> RatingAccuracy {
    let mut sums = ErrorSums::default();
    for (r, &p) in test.iter().zip(predictions) {
        sums.add(f64::from(p), f64::from(r.value));
    }
    RatingAccuracy {
        predictor,
        rmse: sums.rmse().unwrap_or(0.0),
        mae: sums.mae().unwrap_or(0.0),
        ratings: sums.count(),
        predict_seconds,
    }
}

/// Per-group RMSE by gender, age bucket and occupation.
fn group_errors(users: &[User], test: &[Rating], default: &[f32], knn: &[f32]) -> GroupErrors {
    let by_id: HashMap<u32, &User> = users.iter().map(|u| (u.id, u)).collect();
    let rows = || {
        test.iter().zip(default).zip(knn).map(|((r, &d), &k)| {
            (
                by_id.get(&r.user).copied(),
                f64::from(d),
                f64::from(k),
                f64::from(r.value),
            )
        })
    };
    GroupErrors {
        gender: metrics::group_rmse(
            rows().map(|(u, d, k, a)| (gender_label(u.and_then(|u| u.gender)), d, k, a)),
        ),
        age: in_age_order(metrics::group_rmse(
            rows().map(|(u, d, k, a)| (age_label(u.and_then(|u| u.age)), d, k, a)),
        )),
        occupation: metrics::group_rmse(rows().map(|(u, d, k, a)| (occupation_label(u), d, k, a))),
    }
}

/// Age groups youngest first, `unknown` last.
fn in_age_order(mut groups: Vec<metrics::GroupError>) -> Vec<metrics::GroupError> {
    let rank = |label: &str| {
        AgeBucket::ALL
            .into_iter()
            .position(|b| age_label(Some(b)) == label)
            .unwrap_or(AgeBucket::ALL.len())
    };
    groups.sort_by_key(|g| rank(&g.group));
    groups
}

fn split_summary(train: &Dataset, test: &[Rating]) -> SplitSummary {
    let train_users: HashSet<u32> = train.ratings.iter().map(|r| r.user).collect();
    let test_users: HashSet<u32> = test.iter().map(|r| r.user).collect();
    SplitSummary {
        train_ratings: train.ratings.len(),
        test_ratings: test.len(),
        train_users: train_users.len(),
        test_users: test_users.len(),
        test_ratings_unknown_user: test
            .iter()
            .filter(|r| !train_users.contains(&r.user))
            .count(),
        catalogue: catalogue_size(train),
    }
}

/// Movies each user rated in training.
fn rated_by_user(ratings: &[Rating]) -> HashMap<u32, HashSet<u32>> {
    let mut rated: HashMap<u32, HashSet<u32>> = HashMap::new();
    for r in ratings {
        rated.entry(r.user).or_default().insert(r.movie);
    }
    rated
}

/// Held-out movies rated at or above `threshold`, per user (users with none map to an
/// empty set, so they are counted as skipped).
fn relevant_by_user(test: &[Rating], threshold: f32) -> HashMap<u32, HashSet<u32>> {
    let mut relevant: HashMap<u32, HashSet<u32>> = HashMap::new();
    for r in test {
        let set = relevant.entry(r.user).or_default();
        if r.value >= threshold {
            set.insert(r.movie);
        }
    }
    relevant
}

/// The test users to rank for, ascending; a seeded sample when capped.
fn ranking_users(test: &[Rating], params: &EvalParams) -> Vec<u32> {
    let mut users: Vec<u32> = test.iter().map(|r| r.user).collect();
    users.sort_unstable();
    users.dedup();
    if let Some(cap) = params.max_ranking_users
        && users.len() > cap
    {
        let seed = params.train.seed;
        users.sort_by_key(|&u| (crate::util::mix(seed ^ u64::from(u)), u));
        users.truncate(cap);
        users.sort_unstable();
    }
    users
}

/// Training movies by number of ratings, most first, ties by ascending id.
pub fn popularity_order(ratings: &[Rating]) -> Vec<u32> {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for r in ratings {
        *counts.entry(r.movie).or_default() += 1;
    }
    let mut order: Vec<(usize, u32)> = counts.into_iter().map(|(m, c)| (c, m)).collect();
    order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    order.into_iter().map(|(_, m)| m).collect()
}

/// The first `n` movies of `order` not in `rated`.
pub fn top_unrated<S: std::hash::BuildHasher>(
    order: &[u32],
    rated: &HashSet<u32, S>,
    n: usize,
) -> Vec<u32> {
    order
        .iter()
        .filter(|m| !rated.contains(m))
        .take(n)
        .copied()
        .collect()
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

    #[test]
    fn popularity_counts_ratings_and_breaks_ties_by_id() {
        let ratings = [
            r(1, 30, 1.0),
            r(2, 30, 5.0),
            r(1, 20, 4.0),
            r(3, 10, 2.0),
            r(4, 40, 3.0),
        ];
        assert_eq!(popularity_order(&ratings), [30, 10, 20, 40]);
        let rated: HashSet<u32> = [30, 20].into_iter().collect();
        assert_eq!(
            top_unrated(&popularity_order(&ratings), &rated, 5),
            [10, 40]
        );
        assert_eq!(top_unrated(&popularity_order(&ratings), &rated, 1), [10]);
    }

    #[test]
    fn relevance_uses_the_threshold_and_keeps_users_without_relevant_items() {
        let test = [r(1, 10, 4.0), r(1, 11, 3.5), r(2, 12, 2.0), r(3, 13, 5.0)];
        let rel = relevant_by_user(&test, 4.0);
        assert_eq!(rel[&1], [10].into_iter().collect());
        assert!(rel[&2].is_empty());
        assert_eq!(rel.len(), 3);
    }

    #[test]
    fn age_groups_run_youngest_first() {
        let groups = ["unknown", "56+", "<18", "25-34"]
            .map(|g| metrics::group_rmse([(g, 1.0, 1.0, 1.0)]).remove(0))
            .to_vec();
        let labels: Vec<String> = in_age_order(groups).into_iter().map(|g| g.group).collect();
        assert_eq!(labels, ["<18", "25-34", "56+", "unknown"]);
    }

    #[test]
    fn ranking_user_sample_is_seeded_and_capped() {
        let test: Vec<Rating> = (1..=50).map(|u| r(u, 1, 4.0)).collect();
        let mut params = EvalParams::default();
        assert_eq!(ranking_users(&test, &params).len(), 50);
        params.max_ranking_users = Some(10);
        let a = ranking_users(&test, &params);
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, ranking_users(&test, &params));
        params.train.seed += 1;
        assert_ne!(a, ranking_users(&test, &params));
    }
}
