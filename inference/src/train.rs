//! Training: validates a [`Dataset`], measures a hold-out RMSE on a seeded slice, and builds
//! the served [`Model`] with its provenance metadata. The maths lives in
//! [`crate::model::fit`]; this module owns the parameters, input checks and the pipeline.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Rating};
use crate::model::fit::{self, mix};
use crate::model::{Model, ModelCounts, ModelMetadata};

/// How a neighbour's rating of a movie weighs in the served ranking score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreWeight {
    /// 1 per rated movie: "my neighbours watched it".
    Binary,
    /// `rating / scale max`: liked movies count more.
    Rating,
    /// `rating − neighbour's mean rating`: disliked movies count against.
    Centered,
}

/// Training parameters. Every field has a default, so a partial JSON object is valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainParams {
    /// `KnnBasic` reference: maximum neighbours per prediction (Surprise `k`).
    pub k: usize,
    /// `KnnBasic` reference: minimum positive-similarity neighbours (Surprise `min_k`).
    pub min_k: usize,
    /// Neighbours kept per user in the served model.
    pub neighbours: usize,
    /// Raters visited per movie when gathering neighbour candidates (deterministic sample).
    pub candidate_raters_per_item: usize,
    /// Candidates per user that get an exact similarity.
    pub rerank_candidates: usize,
    /// Overlap shrinkage `λ` in `cos · c/(c + λ)`.
    pub overlap_shrinkage: f32,
    /// Movies each user contributes as a neighbour (their best rated).
    pub contributions_per_neighbour: usize,
    /// Weight of a neighbour's rating in the ranking score.
    pub score_weight: ScoreWeight,
    /// Weight `β` of the log-popularity prior added to neighbourhood scores.
    pub popularity_weight: f32,
    /// Users with fewer ratings than this take the cold-start path.
    pub cold_start_min_ratings: usize,
    /// A demographic group needs this many users with ratings, else it backs off.
    pub cold_start_min_group_users: usize,
    /// Length of each precomputed cold-start list.
    pub cold_start_list_len: usize,
    /// Pseudo-count `k` of the Bayesian means in cold-start scores.
    pub cold_start_prior_strength: f32,
    /// Weight `α` of the Bayesian mean rating against log-popularity in cold-start scores.
    pub cold_start_quality_weight: f32,
    /// Regularisation of user biases.
    pub bias_reg_user: f32,
    /// Regularisation of movie biases.
    pub bias_reg_item: f32,
    /// Alternating least-squares epochs for the biases.
    pub bias_epochs: usize,
    /// Shrinkage added to the similarity sum of the rating predictor's residual.
    pub residual_shrinkage: f32,
    /// Apply the adult filter to users whose age is unknown (the safe default).
    pub filter_adult_unknown_age: bool,
    /// Fraction of ratings held out to measure RMSE (0 disables).
    pub holdout_fraction: f64,
    /// Cap on hold-out ratings, so the measurement stays cheap on big data.
    pub holdout_max_ratings: usize,
    /// Seed of every pseudo-random choice (hold-out split, rater samples).
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            k: 40,
            min_k: 1,
            neighbours: 50,
            candidate_raters_per_item: 64,
            rerank_candidates: 50,
            overlap_shrinkage: 2.0,
            contributions_per_neighbour: 100,
            score_weight: ScoreWeight::Rating,
            popularity_weight: 0.5,
            cold_start_min_ratings: 5,
            cold_start_min_group_users: 30,
            cold_start_list_len: 200,
            cold_start_prior_strength: 10.0,
            cold_start_quality_weight: 1.0,
            bias_reg_user: 15.0,
            bias_reg_item: 10.0,
            bias_epochs: 10,
            residual_shrinkage: 1.0,
            filter_adult_unknown_age: true,
            holdout_fraction: 0.05,
            holdout_max_ratings: 5_000,
            seed: 42,
        }
    }
}

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
    };
    let (holdout_rmse, holdout_ratings) = match holdout(dataset, params, &meta) {
        Some((rmse, n)) => (Some(rmse), n),
        None => (None, 0),
    };
    let ix = fit::index(dataset, &dataset.ratings);
    let mut model = fit::build_model(dataset, ix, params, None, meta);
    model.meta.holdout_rmse = holdout_rmse;
    model.meta.holdout_ratings = holdout_ratings;
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
    if params.cold_start_prior_strength <= 0.0 {
        return Err(TrainError::InvalidParam {
            name: "cold_start_prior_strength",
            reason: "must be > 0".into(),
        });
    }
    Ok(())
}

/// True when the seeded split puts `(user, movie)` in the hold-out slice.
pub fn in_holdout(seed: u64, rating: &Rating, fraction: f64) -> bool {
    let h = mix(seed ^ (u64::from(rating.user) << 32 | u64::from(rating.movie)));
    ((h >> 11) as f64 / (1_u64 << 53) as f64) < fraction
}

fn holdout(dataset: &Dataset, params: &TrainParams, meta: &ModelMetadata) -> Option<(f64, usize)> {
    if params.holdout_fraction <= 0.0 {
        return None;
    }
    let fraction = params
        .holdout_fraction
        .min(params.holdout_max_ratings as f64 / dataset.ratings.len() as f64);
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
    let model = fit::build_model(dataset, ix, params, Some(&wanted), meta.clone());
    let sq: f64 = test
        .iter()
        .map(|r| {
            let err = f64::from(model.predict(r.user, r.movie)) - f64::from(r.value);
            err * err
        })
        .sum();
    Some(((sq / test.len() as f64).sqrt(), test.len()))
}
