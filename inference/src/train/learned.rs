//! Training of the learned-weight rankings: the validation split carved from the training
//! ratings, the choice on it of EASE^R's `λ` and minimum liked rating or of ALS's factors,
//! regularisation, confidence and sweep count (mean NDCG@10 of the served list, every
//! serving rule applied), and the final fit on all training ratings. The maths lives in
//! [`crate::model::ease`] and [`crate::model::als`].

use std::time::Instant;

use serde_json::json;

use super::{MIN_TUNING_USERS, TUNING_NDCG_K, TrainError, in_holdout, relevant_by_user};
use crate::data::{Dataset, Rating};
use crate::model::learned::{EaseInput, fit_als, liked};
use crate::model::{Algo, Learned, Model, ModelMetadata, TrainParams, Validation, fit};
use crate::util::{mix, ndcg_sorted};

/// Salt that separates the validation split from the RMSE hold-out slice.
const VALIDATION_SALT: u64 = 0x005E_ED0F_7A11_DA7E;

/// The learned part of the model fitted on `model`'s own ratings with `params` as given.
pub(super) fn fit_final(model: &Model, params: &TrainParams) -> Result<Learned, TrainError> {
    let movies = model.movies.len();
    Ok(match params.algo {
        Algo::UserKnn => Learned::default(),
        Algo::Ease => EaseInput::new(
            &liked(&model.ratings, params.ease_min_rating),
            movies,
            params.learned_max_items,
        )
        .solve(params.ease_lambda, params.ease_neighbours)?,
        Algo::Als => fit_als(
            &model.ratings,
            movies,
            params.learned_max_items,
            &params.als,
            params.als_iterations,
            params.seed,
            |_, _| {},
        ),
    })
}

/// Chooses the learned algorithm's hyper-parameters on a validation split of `dataset`'s
/// ratings (`validation_fraction` of them, seeded, disjoint from nothing the caller
/// evaluates on: it only sees training data). Returns the parameters with the choice
/// written in, and the record of every candidate; `None` for `user-knn`, with no
/// candidates, or with fewer than [`MIN_TUNING_USERS`] validation users.
pub(super) fn choose(
    dataset: &Dataset,
    params: &TrainParams,
    meta: &ModelMetadata,
) -> Result<Option<(TrainParams, Validation)>, TrainError> {
    let started = Instant::now();
    let tunable = match params.algo {
        Algo::UserKnn => false,
        Algo::Ease => {
            !(params.ease_lambda_candidates.is_empty()
                && params.ease_min_rating_candidates.is_empty())
        }
        Algo::Als => !params.als_grid.is_empty() || params.als_iterations > 1,
    };
    if !tunable || params.validation_fraction <= 0.0 {
        return Ok(None);
    }
    let salted = params.seed ^ VALIDATION_SALT;
    let (held, kept): (Vec<Rating>, Vec<Rating>) = dataset
        .ratings
        .iter()
        .partition(|r| in_holdout(salted, r, params.validation_fraction));
    let relevant = sample(
        relevant_by_user(&held, 0.8 * dataset.scale.max),
        params.validation_max_users,
        salted,
    );
    if kept.is_empty() || relevant.len() < MIN_TUNING_USERS {
        return Ok(None);
    }
    let ix = fit::index(dataset, &kept);
    let nobody = vec![false; ix.users.len()];
    let mut model = fit::build_model(dataset, ix, params, Some(&nobody), meta.clone());
    let score = |model: &Model| -> f64 {
        let total: f64 = relevant
            .iter()
            .map(|(user, movies)| {
                ndcg_sorted(
                    &model.recommend(*user, TUNING_NDCG_K).movies,
                    movies,
                    TUNING_NDCG_K,
                )
            })
            .sum();
        total / relevant.len() as f64
    };
    let (chosen, scored, best) = match params.algo {
        Algo::UserKnn => return Ok(None),
        Algo::Ease => tune_ease(&mut model, params, &score)?,
        Algo::Als => tune_als(&mut model, params, &score),
    };
    let best_json = scored.get(best).map(|(c, _)| c.clone()).unwrap_or_default();
    let validation = Validation {
        algo: params.algo,
        ratings: held.len(),
        users: relevant.len(),
        candidates: scored,
        chosen: best_json,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Some((chosen, validation)))
}

/// Every candidate with its validation score, and the best one's position (earliest on ties).
type Scored = Vec<(serde_json::Value, f64)>;

/// Tries every `ease_min_rating_candidates` × `ease_lambda_candidates` pair (an empty list
/// stands for the configured value) on `model` (fitted on the non-validation ratings);
/// returns the parameters with the best pair, the scores and the best position. The Gram
/// matrix is built once per minimum rating and shared by its `λ`s.
fn tune_ease(
    model: &mut Model,
    params: &TrainParams,
    score: &dyn Fn(&Model) -> f64,
) -> Result<(TrainParams, Scored, usize), TrainError> {
    let or_configured = |candidates: &[f32], configured: f32| {
        if candidates.is_empty() {
            vec![configured]
        } else {
            candidates.to_vec()
        }
    };
    let min_ratings = or_configured(&params.ease_min_rating_candidates, params.ease_min_rating);
    let lambdas = or_configured(&params.ease_lambda_candidates, params.ease_lambda);
    let mut chosen = params.clone();
    let mut scored: Scored = Vec::new();
    let mut best = 0;
    for min_rating in min_ratings {
        let input = EaseInput::new(
            &liked(&model.ratings, min_rating),
            model.movies.len(),
            params.learned_max_items,
        );
        // Serving scores a user by the same liked ratings the weights were learned from.
        model.meta.params.ease_min_rating = min_rating;
        for &lambda in &lambdas {
            model.learned = input.solve(lambda, params.ease_neighbours)?;
            let ndcg = score(model);
            if scored.get(best).is_none_or(|(_, b)| ndcg > *b) {
                best = scored.len();
                chosen.ease_lambda = lambda;
                chosen.ease_min_rating = min_rating;
            }
            scored.push((
                json!({ "ease_lambda": lambda, "ease_min_rating": min_rating }),
                ndcg,
            ));
        }
    }
    Ok((chosen, scored, best))
}

/// Fits ALS for every grid point (or `params.als` alone), scoring after every sweep; returns
/// the parameters with the best point and sweep count, the scores and the best position.
fn tune_als(
    model: &mut Model,
    params: &TrainParams,
    score: &dyn Fn(&Model) -> f64,
) -> (TrainParams, Scored, usize) {
    let grid = if params.als_grid.is_empty() {
        vec![params.als]
    } else {
        params.als_grid.clone()
    };
    let mut chosen = params.clone();
    let mut scored: Scored = Vec::new();
    let mut best = 0;
    let ratings = model.ratings.clone();
    let movies = model.movies.len();
    for hyper in grid {
        fit_als(
            &ratings,
            movies,
            params.learned_max_items,
            &hyper,
            params.als_iterations,
            params.seed,
            |sweep, learned| {
                model.learned = learned.clone();
                let ndcg = score(model);
                if scored.get(best).is_none_or(|(_, b)| ndcg > *b) {
                    best = scored.len();
                    chosen.als = hyper;
                    chosen.als_iterations = sweep;
                }
                scored.push((
                    json!({
                        "factors": hyper.factors,
                        "reg": hyper.reg,
                        "alpha": hyper.alpha,
                        "als_iterations": sweep,
                    }),
                    ndcg,
                ));
            },
        );
    }
    (chosen, scored, best)
}

/// At most `max` users of `relevant` (a seeded sample by user id), ascending.
fn sample(mut relevant: Vec<(u32, Vec<u32>)>, max: usize, seed: u64) -> Vec<(u32, Vec<u32>)> {
    if relevant.len() > max {
        relevant.sort_by_key(|(u, _)| (mix(seed ^ u64::from(*u)), *u));
        relevant.truncate(max);
        relevant.sort_unstable_by_key(|(u, _)| *u);
    }
    relevant
}
