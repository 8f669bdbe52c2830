//! Training parameters of the served model: which ranking it learns ([`Algo`]) and every
//! knob of the neighbourhood, cold-start, EASE^R and implicit-ALS maths. They belong to the
//! model (they are recorded in its metadata and read while serving); [`crate::train`]
//! imports them from here.

use serde::{Deserialize, Serialize};

/// The ranking the served model computes for users with a history (`movrek train --algo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    /// User-based neighbourhood scores plus a popularity prior (the served model before
    /// learned weights).
    UserKnn,
    /// EASE^R (Steck 2019): closed-form item-item weights, pruned to the best per item.
    #[default]
    Ease,
    /// Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren and
    /// Volinsky 2008).
    Als,
}

impl Algo {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Algo; 3] = [Algo::UserKnn, Algo::Ease, Algo::Als];

    /// The kebab-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Algo::UserKnn => "user-knn",
            Algo::Ease => "ease",
            Algo::Als => "als",
        }
    }
}

/// One point of the implicit-ALS hyper-parameter grid.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlsHyper {
    /// Latent factors per user and movie.
    pub factors: usize,
    /// L2 regularisation `λ` of both factor matrices.
    pub reg: f32,
    /// Confidence slope `α`: an observed pair weighs `1 + α`, an unobserved one 1.
    pub alpha: f32,
}

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
    /// Weight `β` of the log-popularity prior added to neighbourhood scores. When
    /// `popularity_weight_candidates` is non-empty and the hold-out has enough users with a
    /// relevant rating, the trained model records the chosen candidate here instead.
    pub popularity_weight: f32,
    /// Candidate values of `popularity_weight`; training keeps the one with the best
    /// NDCG@10 on the hold-out slice (see [`train`]). Empty: use `popularity_weight` as given.
    pub popularity_weight_candidates: Vec<f32>,
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
    /// The ranking learned for users with a history.
    pub algo: Algo,
    /// EASE and ALS score only the this-many most-rated movies (ties by id); the rest of a
    /// list comes from the cold-start fill. Bounds the dense EASE solve (`n³`) and the
    /// per-request ALS dot products.
    pub learned_max_items: usize,
    /// EASE: L2 regularisation `λ` (the chosen candidate when candidates are given).
    pub ease_lambda: f32,
    /// EASE: candidate values of `ease_lambda`, chosen by validation NDCG@10.
    pub ease_lambda_candidates: Vec<f32>,
    /// EASE: weights kept per movie (largest magnitude, strongest first).
    pub ease_neighbours: usize,
    /// EASE learns from, and scores a user by, the ratings worth at least this much (the
    /// ones the user liked, e.g. 4); every rated movie is still excluded from their lists.
    /// 0: every rating (what an artifact written before this field existed reads). With
    /// `ease_min_rating_candidates` the validation split chooses it and records it here.
    #[serde(default)]
    pub ease_min_rating: f32,
    /// EASE: candidate values of `ease_min_rating`, tried with every `λ` candidate and
    /// chosen together with it by validation NDCG@10 (default 0 and 4: every rating, or the
    /// liked ones on a 5-point scale). Empty: `ease_min_rating` as given. An artifact written
    /// before this field existed reads it as empty.
    #[serde(default)]
    pub ease_min_rating_candidates: Vec<f32>,
    /// EASE, only when `precomputed_list_len` is 0: most weights one request adds up. Each
    /// rated movie contributes the first `max(1, budget / history)` weights of its row (at
    /// most `ease_neighbours`), the strongest, so a long history cannot make a request slow.
    pub ease_request_budget: usize,
    /// EASE and ALS: every personal user's list of this many movies is ranked at training
    /// time, in full (no `ease_request_budget`), and stored in the artifact; serving a list
    /// of at most this length is then a copy of its prefix (the shorter list), and a longer
    /// one is ranked in full at request time. 0: nothing is precomputed and EASE ranks every
    /// list within the budget (an artifact written before this field existed reads as 0, so
    /// it serves what it always served).
    #[serde(default)]
    pub precomputed_list_len: usize,
    /// ALS: the hyper-parameters used (the chosen grid point when a grid is given).
    pub als: AlsHyper,
    /// ALS: candidate hyper-parameters, chosen by validation NDCG@10.
    pub als_grid: Vec<AlsHyper>,
    /// ALS: most sweeps (user half-step then movie half-step); with a grid the best sweep
    /// count on the validation split is chosen and recorded here.
    pub als_iterations: usize,
    /// Fraction of training ratings carved off as the validation split that chooses the
    /// learned model's hyper-parameters (never the evaluation's test split).
    pub validation_fraction: f64,
    /// Validation users ranked per candidate at most (a seeded sample), to bound tuning time.
    pub validation_max_users: usize,
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
            popularity_weight_candidates: vec![0.0, 0.25, 0.5, 1.0, 2.0],
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
            algo: Algo::default(),
            learned_max_items: 4_000,
            ease_lambda: 250.0,
            ease_lambda_candidates: vec![
                50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
            ],
            ease_neighbours: 1_000,
            ease_min_rating: 0.0,
            ease_min_rating_candidates: vec![0.0, 4.0],
            ease_request_budget: 16_384,
            precomputed_list_len: 20,
            als: AlsHyper {
                factors: 64,
                reg: 1.0,
                alpha: 10.0,
            },
            als_grid: Vec::new(),
            als_iterations: 10,
            validation_fraction: 0.1,
            validation_max_users: 5_000,
        }
    }
}

impl TrainParams {
    /// These parameters with the fields of a JSON object file laid over them (a partial
    /// `TrainParams`, as `movrek train --params` and `movrek retrain --params` take it).
    ///
    /// # Errors
    /// The file cannot be read, is not JSON, is not an object, or a field is not valid.
    pub fn overlaid_with_file(&self, path: &std::path::Path) -> Result<TrainParams, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let bad =
            |e: serde_json::Error| format!("bad training parameters in {}: {e}", path.display());
        let mut value = serde_json::to_value(self).map_err(bad)?;
        let serde_json::Value::Object(fields) = serde_json::from_str(&text).map_err(bad)? else {
            return Err(format!(
                "{}: training parameters must be a JSON object",
                path.display()
            ));
        };
        for (key, field) in fields {
            value[key] = field;
        }
        serde_json::from_value(value).map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::TrainParams;

    #[test]
    fn a_params_file_overrides_only_its_fields_and_bad_files_say_why() {
        let dir = std::env::temp_dir().join(format!("movrek-params-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let base = TrainParams::default();
        let over = base
            .overlaid_with_file(&write("one.json", r#"{"cold_start_min_ratings": 9}"#))
            .expect("overlay");
        assert_eq!(over.cold_start_min_ratings, 9);
        assert_eq!(
            serde_json::to_value(TrainParams {
                cold_start_min_ratings: 9,
                ..base.clone()
            })
            .expect("json"),
            serde_json::to_value(&over).expect("json"),
            "every other field is the base's"
        );
        let not_object = base
            .overlaid_with_file(&write("list.json", "[1]"))
            .unwrap_err();
        assert!(not_object.contains("must be a JSON object"), "{not_object}");
        let wrong_type = base
            .overlaid_with_file(&write("bad.json", r#"{"cold_start_min_ratings": "many"}"#))
            .unwrap_err();
        assert!(
            wrong_type.contains("bad training parameters"),
            "{wrong_type}"
        );
        let missing = base
            .overlaid_with_file(&dir.join("absent.json"))
            .unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
