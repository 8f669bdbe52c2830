//! The evaluation report: what [`super::evaluate`] measured, serialisable as one JSON
//! object and printable as a short table.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::metrics::{GroupError, RankingSummary, UserScores};

/// A rating predictor whose error is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Predictor {
    /// `KnnBasic`: Surprise's `KNNBasic` semantics.
    KnnBasic,
    /// The served model's default rating predictor (`Model::predict`).
    Default,
}

impl Predictor {
    /// Name used in tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Predictor::KnnBasic => "knn-basic",
            Predictor::Default => "default",
        }
    }
}

/// A top-k ranking whose quality is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ranker {
    /// The served ranking, `Model::recommend`.
    Served,
    /// Every unrated movie ranked by its `KnnBasic` predicted rating (ties by movie id).
    KnnBasic,
    /// Most-rated movies in the training set the user has not rated (ties by movie id).
    Popularity,
}

impl Ranker {
    /// Name used in tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Ranker::Served => "served",
            Ranker::KnnBasic => "knn-basic",
            Ranker::Popularity => "popularity",
        }
    }
}

/// Sizes of the evaluated split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitSummary {
    /// Training ratings.
    pub train_ratings: usize,
    /// Held-out ratings.
    pub test_ratings: usize,
    /// Distinct users in the training ratings.
    pub train_users: usize,
    /// Distinct users in the held-out ratings.
    pub test_users: usize,
    /// Held-out ratings whose user has no training rating.
    pub test_ratings_unknown_user: usize,
    /// Catalogue size used for coverage: distinct movie ids in the movie list and the
    /// training ratings.
    pub catalogue: usize,
}

/// Error of one rating predictor on the held-out ratings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RatingAccuracy {
    /// Which predictor.
    pub predictor: Predictor,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Held-out ratings predicted.
    pub ratings: usize,
    /// Seconds spent predicting them.
    pub predict_seconds: f64,
}

/// Ranking quality of one ranker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RankingQuality {
    /// Which ranker.
    pub ranker: Ranker,
    /// Mean metrics over the scored users.
    #[serde(flatten)]
    pub summary: RankingSummary,
    /// Seconds spent producing all the lists.
    pub seconds: f64,
    /// Each scored user's metrics, ascending by user, for paired comparisons with peers
    /// (`movrek eval --per-user-out`); not part of the JSON report.
    #[serde(skip)]
    pub per_user: Vec<(u32, UserScores)>,
}

/// Per-group RMSE of both predictors, by demographic dimension.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GroupErrors {
    /// By gender (`F`, `M`, `unknown`).
    pub gender: Vec<GroupError>,
    /// By age bucket (`<18`, `18-24`, …, `56+`, `unknown`).
    pub age: Vec<GroupError>,
    /// By occupation as recorded (`unknown` when missing).
    pub occupation: Vec<GroupError>,
}

/// Wall-clock seconds of the training steps and of the whole evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timings {
    /// `train::train` of the served model.
    pub served_train_seconds: f64,
    /// `KnnBasic::fit`.
    pub knn_basic_fit_seconds: f64,
    /// Everything, end to end.
    pub total_seconds: f64,
}

/// Everything one evaluation measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// Sizes of the split.
    pub split: SplitSummary,
    /// Parameters used (as JSON, so the report carries the model's training parameters).
    pub params: serde_json::Value,
    /// The served model as trained: its parameters with every choice made on the
    /// validation split written in (`params`), and that choice's record (`validation`).
    pub served_model: serde_json::Value,
    /// Rating error per predictor.
    pub rating: Vec<RatingAccuracy>,
    /// Ranking quality per ranker.
    pub ranking: Vec<RankingQuality>,
    /// Per-group RMSE.
    pub groups: GroupErrors,
    /// Timings.
    pub timings: Timings,
}

impl EvalReport {
    /// Writes every ranker's per-user metrics as CSV (`ranker,user,precision,recall,ndcg`,
    /// rankers in report order, users ascending): the input of a paired comparison with a
    /// peer that writes the same columns for the same split (`bench/peers/`).
    pub fn write_per_user(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        writeln!(out, "ranker,user,precision,recall,ndcg")?;
        for quality in &self.ranking {
            for (user, s) in &quality.per_user {
                writeln!(
                    out,
                    "{},{user},{},{},{}",
                    quality.ranker.label(),
                    // `+ 0.0` writes a negative zero as 0.
                    s.precision + 0.0,
                    s.recall + 0.0,
                    s.ndcg + 0.0
                )?;
            }
        }
        Ok(())
    }

    /// The error of `predictor`, if measured.
    pub fn rating_of(&self, predictor: Predictor) -> Option<&RatingAccuracy> {
        self.rating.iter().find(|r| r.predictor == predictor)
    }

    /// The ranking quality of `ranker`, if measured.
    pub fn ranking_of(&self, ranker: Ranker) -> Option<&RankingQuality> {
        self.ranking.iter().find(|r| r.ranker == ranker)
    }

    /// A readable multi-line table of the whole report.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let s = &self.split;
        let _ = writeln!(
            out,
            "split: {} train / {} test ratings, {} train users, {} test users \
             ({} test ratings of unknown users), catalogue {} movies",
            s.train_ratings,
            s.test_ratings,
            s.train_users,
            s.test_users,
            s.test_ratings_unknown_user,
            s.catalogue
        );
        let _ = writeln!(
            out,
            "\nrating error       RMSE      MAE   ratings  predict s"
        );
        for r in &self.rating {
            let _ = writeln!(
                out,
                "  {:<14} {:>8.4} {:>8.4} {:>9} {:>10.3}",
                r.predictor.label(),
                r.rmse,
                r.mae,
                r.ratings,
                r.predict_seconds
            );
        }
        if let Some(algo) = self.served_model["params"]["algo"].as_str() {
            let _ = writeln!(
                out,
                "\nserved model: {algo}, validation choice {}",
                self.served_model["validation"]["chosen"]
            );
        }
        if let Some(first) = self.ranking.first() {
            let (k, nk) = (first.summary.k, first.summary.ndcg_k);
            let _ = writeln!(
                out,
                "\nranking          {:>8} {:>8} {:>8} {:>8}   users scored/skipped  seconds",
                format!("P@{k}"),
                format!("R@{k}"),
                format!("NDCG@{nk}"),
                "coverage"
            );
        }
        for r in &self.ranking {
            let m = &r.summary;
            let _ = writeln!(
                out,
                "  {:<14} {:>8.4} {:>8.4} {:>8.4} {:>8.4}   {:>8}/{:<8}    {:>8.3}",
                r.ranker.label(),
                m.precision,
                m.recall,
                m.ndcg,
                m.coverage,
                m.users_scored,
                m.users_skipped,
                r.seconds
            );
        }
        let _ = writeln!(
            out,
            "\nRMSE by group              ratings  default  knn-basic"
        );
        for (dimension, groups) in [
            ("gender", &self.groups.gender),
            ("age", &self.groups.age),
            ("occupation", &self.groups.occupation),
        ] {
            for g in groups {
                let _ = writeln!(
                    out,
                    "  {:<24} {:>9} {:>8.4} {:>10.4}",
                    format!("{dimension}={}", g.group),
                    g.ratings,
                    g.rmse_default,
                    g.rmse_knn_basic
                );
            }
        }
        let t = &self.timings;
        let _ = writeln!(
            out,
            "\ntimings: served train {:.3} s, knn-basic fit {:.3} s, total {:.3} s",
            t.served_train_seconds, t.knn_basic_fit_seconds, t.total_seconds
        );
        out
    }
}
