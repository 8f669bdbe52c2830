//! Training: validates a [`Dataset`], measures a hold-out RMSE on a seeded slice, chooses
//! the ranking's popularity weight on the same slice (`user-knn`) or the learned model's
//! hyper-parameters on a validation split ([`learned`]), and builds the served [`Model`] with
//! its provenance metadata. The maths lives in [`crate::model`] (the parameters too, since
//! they belong to the model); this module owns the input checks and the pipeline.

mod learned;

use std::time::Instant;

use crate::data::{Dataset, Rating};
use crate::model::fit;
pub use crate::model::{Algo, AlsHyper, ScoreWeight, TrainParams};
use crate::model::{Model, ModelCounts, ModelMetadata};
use crate::util::{mix, ndcg_sorted};

/// Why training refused its input.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// No ratings at all.
    #[error("the dataset has no ratings")]
    NoRatings,
    /// A rating is NaN or outside the dataset's scale.
    #[error("rating {value} by user {user} for movie {movie} is outside the scale {min}..={max}")]
    RatingOutOfScale {
        /// External user id.
        user: u32,
        /// External movie id.
        movie: u32,
        /// The bad value.
        value: f32,
        /// Scale minimum.
        min: f32,
        /// Scale maximum.
        max: f32,
    },
    /// The scale itself is unusable (min ≤ 0, min ≥ max, or not finite).
    #[error("invalid rating scale {min}..={max}: need 0 < min < max")]
    InvalidScale {
        /// Scale minimum.
        min: f32,
        /// Scale maximum.
        max: f32,
    },
    /// More ratings than the artifact's 32-bit offsets can index.
    #[error("{0} ratings exceed the model limit of 4294967295")]
    TooManyRatings(usize),
    /// The EASE solve failed.
    #[error("training the EASE model failed")]
    Ease(#[from] crate::model::ease::EaseError),
    /// A parameter is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Trains the served model on `dataset`. `version` and `data_sha256` are recorded in the
/// metadata. When `params.holdout_fraction > 0`, a seeded slice of ratings (at most
/// `holdout_max_ratings`) is held out, a model is fitted on the rest (neighbours only for the
/// users in the slice) and the default predictor's RMSE is recorded; the final model is then
/// trained on all ratings.
///
/// The same hold-out model chooses the ranking's popularity weight: every value in
/// `popularity_weight_candidates` ranks 10 movies for each hold-out user with a relevant
/// held-out rating (at least 80% of the scale maximum), and the best mean NDCG@10 wins
/// (earlier candidate on ties). Data sets differ — on MovieLens the neighbourhood beats
/// popularity, on popularity-driven data it does not — so the weight is measured, not fixed.
/// With fewer than [`MIN_TUNING_USERS`] such users the configured weight is kept. When
/// `holdout_fraction` is 0 and candidates are given, a slice of [`TUNING_FRACTION`] is held
/// out for the choice alone (no RMSE is recorded). That choice is made for `user-knn` only.
///
/// For `ease` and `als` the hyper-parameters are chosen on a validation split carved from
/// `dataset` (`validation_fraction` of its ratings, seeded; see [`learned`]): each candidate
/// is fitted on the rest and the served list's mean NDCG@10 over validation users decides.
/// The choice and every candidate's score are recorded in the metadata
/// (`ModelMetadata::validation`); the final learned weights are fitted on all ratings.
pub fn train(
    dataset: &Dataset,
    params: &TrainParams,
    version: &str,
    data_sha256: &str,
) -> Result<Model, TrainError> {
    let started = Instant::now();
    check(dataset, params)?;
    let meta = ModelMetadata {
        version: version.to_owned(),
        data_sha256: data_sha256.to_owned(),
        trained_at: String::new(),
        params: params.clone(),
        holdout_rmse: None,
        holdout_ratings: 0,
        counts: ModelCounts::default(),
        scale: dataset.scale,
        global_mean: 0.0,
        train_seconds: 0.0,
        validation: None,
    };
    let found = holdout(dataset, params, &meta).unwrap_or_default();
    let mut params = params.clone();
    if let Some(beta) = found.popularity_weight {
        params.popularity_weight = beta;
    }
    let validation = match learned::choose(dataset, &params, &meta)? {
        Some((chosen, validation)) => {
            params = chosen;
            Some(validation)
        }
        None => None,
    };
    let meta = ModelMetadata {
        params: params.clone(),
        validation,
        ..meta
    };
    let ix = fit::index(dataset, &dataset.ratings);
    let mut model = fit::build_model(dataset, ix, &params, None, meta);
    model.learned = learned::fit_final(&model, &params)?;
    model.precompute_lists();
    if let Some((rmse, n)) = found.rmse {
        model.meta.holdout_rmse = Some(rmse);
        model.meta.holdout_ratings = n;
    }
    model.meta.trained_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    model.meta.train_seconds = started.elapsed().as_secs_f64();
    Ok(model)
}

fn check(dataset: &Dataset, params: &TrainParams) -> Result<(), TrainError> {
    let scale = dataset.scale;
    if !(scale.min.is_finite() && scale.max.is_finite() && scale.min > 0.0 && scale.min < scale.max)
    {
        return Err(TrainError::InvalidScale {
            min: scale.min,
            max: scale.max,
        });
    }
    if dataset.ratings.is_empty() {
        return Err(TrainError::NoRatings);
    }
    if dataset.ratings.len() > u32::MAX as usize {
        return Err(TrainError::TooManyRatings(dataset.ratings.len()));
    }
    if let Some(bad) = dataset.ratings.iter().find(|r| !scale.contains(r.value)) {
        return Err(TrainError::RatingOutOfScale {
            user: bad.user,
            movie: bad.movie,
            value: bad.value,
            min: scale.min,
            max: scale.max,
        });
    }
    if !(0.0..0.5).contains(&params.holdout_fraction) {
        return Err(TrainError::InvalidParam {
            name: "holdout_fraction",
            reason: format!("{} is not in [0, 0.5)", params.holdout_fraction),
        });
    }
    for (name, value) in [
        ("overlap_shrinkage", params.overlap_shrinkage),
        ("popularity_weight", params.popularity_weight),
        (
            "popularity_weight_candidates",
            params
                .popularity_weight_candidates
                .iter()
                .copied()
                .find(|v| !(v.is_finite() && *v >= 0.0))
                .unwrap_or(0.0),
        ),
        (
            "cold_start_prior_strength",
            params.cold_start_prior_strength,
        ),
        (
            "cold_start_quality_weight",
            params.cold_start_quality_weight,
        ),
        ("bias_reg_user", params.bias_reg_user),
        ("bias_reg_item", params.bias_reg_item),
        ("residual_shrinkage", params.residual_shrinkage),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(TrainError::InvalidParam {
                name,
                reason: format!("{value} must be finite and >= 0"),
            });
        }
    }
    check_learned(params)?;
    if params.cold_start_prior_strength <= 0.0 {
        return Err(TrainError::InvalidParam {
            name: "cold_start_prior_strength",
            reason: "must be > 0".into(),
        });
    }
    Ok(())
}

/// Largest learned catalogue for EASE: its dense solve holds three `n × n` matrices.
pub const EASE_MAX_ITEMS: usize = 16_384;

fn check_learned(params: &TrainParams) -> Result<(), TrainError> {
    let invalid =
        |name: &'static str, reason: String| Err(TrainError::InvalidParam { name, reason });
    if !(0.0..0.5).contains(&params.validation_fraction) {
        return invalid(
            "validation_fraction",
            format!("{} is not in [0, 0.5)", params.validation_fraction),
        );
    }
    if params.algo == Algo::UserKnn {
        return Ok(());
    }
    if params.learned_max_items == 0 {
        return invalid("learned_max_items", "must be at least 1".into());
    }
    match params.algo {
        Algo::UserKnn => {}
        Algo::Ease => {
            if params.learned_max_items > EASE_MAX_ITEMS {
                return invalid(
                    "learned_max_items",
                    format!(
                        "{} exceeds the EASE limit {EASE_MAX_ITEMS}",
                        params.learned_max_items
                    ),
                );
            }
            if params.ease_neighbours == 0 || params.ease_request_budget == 0 {
                return invalid(
                    "ease_neighbours",
                    "ease_neighbours and ease_request_budget must be at least 1".into(),
                );
            }
            let lambdas =
                std::iter::once(&params.ease_lambda).chain(&params.ease_lambda_candidates);
            if let Some(bad) = lambdas.copied().find(|l| !(l.is_finite() && *l > 0.0)) {
                return invalid("ease_lambda", format!("{bad} must be finite and > 0"));
            }
            let min_ratings =
                std::iter::once(&params.ease_min_rating).chain(&params.ease_min_rating_candidates);
            if let Some(bad) = min_ratings.copied().find(|m| !m.is_finite()) {
                return invalid("ease_min_rating", format!("{bad} must be finite"));
            }
        }
        Algo::Als => {
            if params.als_iterations == 0 {
                return invalid("als_iterations", "must be at least 1".into());
            }
            for h in std::iter::once(&params.als).chain(&params.als_grid) {
                if !(1..=512).contains(&h.factors) {
                    return invalid("als.factors", format!("{} is not in 1..=512", h.factors));
                }
                if !(h.reg.is_finite() && h.reg > 0.0 && h.alpha.is_finite() && h.alpha >= 0.0) {
                    return invalid(
                        "als",
                        format!("reg {} must be > 0 and alpha {} >= 0", h.reg, h.alpha),
                    );
                }
            }
        }
    }
    Ok(())
}

/// True when the seeded split puts `(user, movie)` in the hold-out slice.
pub fn in_holdout(seed: u64, rating: &Rating, fraction: f64) -> bool {
    let h = mix(seed ^ (u64::from(rating.user) << 32 | u64::from(rating.movie)));
    ((h >> 11) as f64 / (1_u64 << 53) as f64) < fraction
}

/// Hold-out slice taken for choosing the popularity weight when `holdout_fraction` is 0.
pub const TUNING_FRACTION: f64 = 0.05;
/// Hold-out users with a relevant rating needed before the popularity weight is chosen.
pub const MIN_TUNING_USERS: usize = 50;

/// What the hold-out model measured.
#[derive(Debug, Default)]
struct Holdout {
    /// Default predictor RMSE and the number of hold-out ratings behind it.
    rmse: Option<(f64, usize)>,
    /// The popularity weight with the best hold-out NDCG@10.
    popularity_weight: Option<f32>,
}

fn holdout(dataset: &Dataset, params: &TrainParams, meta: &ModelMetadata) -> Option<Holdout> {
    let want_rmse = params.holdout_fraction > 0.0;
    let want_tuning =
        params.algo == Algo::UserKnn && !params.popularity_weight_candidates.is_empty();
    if !(want_rmse || want_tuning) {
        return None;
    }
    let base = if want_rmse {
        params.holdout_fraction
    } else {
        TUNING_FRACTION
    };
    let fraction = base.min(params.holdout_max_ratings as f64 / dataset.ratings.len() as f64);
    let (test, train): (Vec<Rating>, Vec<Rating>) = dataset
        .ratings
        .iter()
        .partition(|r| in_holdout(params.seed, r, fraction));
    if test.is_empty() || train.is_empty() {
        return None;
    }
    let ix = fit::index(dataset, &train);
    let mut wanted = vec![false; ix.users.len()];
    for r in &test {
        if let Ok(u) = ix.users.binary_search(&r.user) {
            wanted[u] = true;
        }
    }
    let mut model = fit::build_model(dataset, ix, params, Some(&wanted), meta.clone());
    let rmse = want_rmse.then(|| {
        let sq: f64 = test
            .iter()
            .map(|r| {
                let err = f64::from(model.predict(r.user, r.movie)) - f64::from(r.value);
                err * err
            })
            .sum();
        ((sq / test.len() as f64).sqrt(), test.len())
    });
    let popularity_weight = if want_tuning {
        let relevant = relevant_by_user(&test, 0.8 * dataset.scale.max);
        choose_popularity_weight(
            &relevant,
            &params.popularity_weight_candidates,
            |beta, user| {
                model.meta.params.popularity_weight = beta;
                model.recommend(user, TUNING_NDCG_K).movies
            },
        )
    } else {
        None
    };
    Some(Holdout {
        rmse,
        popularity_weight,
    })
}

/// NDCG cut-off used to choose the popularity weight (the served list's head).
const TUNING_NDCG_K: usize = 10;

/// Held-out movies rated at least `threshold`, per user, users ascending (only users with
/// at least one).
fn relevant_by_user(test: &[Rating], threshold: f32) -> Vec<(u32, Vec<u32>)> {
    let mut pairs: Vec<(u32, u32)> = test
        .iter()
        .filter(|r| r.value >= threshold)
        .map(|r| (r.user, r.movie))
        .collect();
    pairs.sort_unstable();
    let mut out: Vec<(u32, Vec<u32>)> = Vec::new();
    for (user, movie) in pairs {
        match out.last_mut() {
            Some((u, movies)) if *u == user => movies.push(movie),
            _ => out.push((user, vec![movie])),
        }
    }
    out
}

/// The candidate whose rankings (`rank(beta, user)`) have the best mean NDCG@10 over the
/// users in `relevant` (earlier candidate on ties); `None` below [`MIN_TUNING_USERS`] users.
fn choose_popularity_weight(
    relevant: &[(u32, Vec<u32>)],
    candidates: &[f32],
    mut rank: impl FnMut(f32, u32) -> Vec<u32>,
) -> Option<f32> {
    if relevant.len() < MIN_TUNING_USERS {
        return None;
    }
    let mut best: Option<(f64, f32)> = None;
    for &beta in candidates {
        let total: f64 = relevant
            .iter()
            .map(|(user, movies)| ndcg_sorted(&rank(beta, *user), movies, TUNING_NDCG_K))
            .sum();
        if best.is_none_or(|(score, _)| total > score) {
            best = Some((total, beta));
        }
    }
    best.map(|(_, beta)| beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{SynthParams, generate};

    #[test]
    fn the_weight_with_the_best_holdout_ndcg_wins_and_ties_keep_the_earlier() {
        let relevant: Vec<(u32, Vec<u32>)> = (0..MIN_TUNING_USERS as u32)
            .map(|u| (u, vec![100 + u]))
            .collect();
        // β = 1 puts each user's relevant movie first, β = 2 second, others miss it.
        let rank = |beta: f32, user: u32| match beta {
            1.0 => vec![100 + user, 1, 2],
            2.0 => vec![1, 100 + user, 2],
            _ => vec![1, 2, 3],
        };
        assert_eq!(
            choose_popularity_weight(&relevant, &[0.0, 2.0, 1.0], rank),
            Some(1.0)
        );
        assert_eq!(
            choose_popularity_weight(&relevant, &[0.0, 0.5], rank),
            Some(0.0)
        );
        assert_eq!(choose_popularity_weight(&relevant, &[], rank), None);
        assert_eq!(
            choose_popularity_weight(&relevant[1..], &[0.0, 1.0], rank),
            None,
            "too few users to choose"
        );
    }

    #[test]
    fn relevant_ratings_are_grouped_by_user() {
        let r = |user, movie, value| Rating {
            user,
            movie,
            value,
            timestamp: 0,
        };
        let test = [r(2, 7, 5.0), r(1, 3, 4.0), r(2, 1, 4.5), r(1, 4, 3.5)];
        assert_eq!(
            relevant_by_user(&test, 4.0),
            vec![(1, vec![3]), (2, vec![1, 7])]
        );
    }

    #[test]
    fn training_records_the_chosen_popularity_weight() {
        let data = generate(&SynthParams {
            users: 400,
            movies: 300,
            ratings: 30_000,
            ..SynthParams::default()
        });
        let only = TrainParams {
            algo: Algo::UserKnn,
            popularity_weight_candidates: vec![0.75],
            ..TrainParams::default()
        };
        let model = train(&data, &only, "v", "d").unwrap();
        assert!((model.metadata().params.popularity_weight - 0.75).abs() < f32::EPSILON);
        // Without a separate RMSE hold-out the choice still happens, and no RMSE is recorded.
        let no_rmse = TrainParams {
            holdout_fraction: 0.0,
            ..only.clone()
        };
        let model = train(&data, &no_rmse, "v", "d").unwrap();
        assert!((model.metadata().params.popularity_weight - 0.75).abs() < f32::EPSILON);
        assert_eq!(model.metadata().holdout_rmse, None);
        // No candidates: the configured weight stays.
        let fixed = TrainParams {
            popularity_weight_candidates: Vec::new(),
            ..only
        };
        let model = train(&data, &fixed, "v", "d").unwrap();
        assert!((model.metadata().params.popularity_weight - 0.5).abs() < f32::EPSILON);
    }

    #[test]
    fn a_bad_candidate_weight_is_refused() {
        let data = generate(&SynthParams {
            users: 50,
            movies: 40,
            ratings: 500,
            ..SynthParams::default()
        });
        for bad in [f32::NAN, -1.0, f32::INFINITY] {
            let params = TrainParams {
                popularity_weight_candidates: vec![0.5, bad],
                ..TrainParams::default()
            };
            assert!(matches!(
                train(&data, &params, "v", "d"),
                Err(TrainError::InvalidParam {
                    name: "popularity_weight_candidates",
                    ..
                })
            ));
        }
    }
}
