//! Offline evaluation: the seeded train/test split (and its files for a peer), rating
//! error and ranking quality of the served model against `knn-basic` and popularity,
//! per-group error, and SVG charts of the result.
//!
//! [`metrics`] holds the pure maths; [`split`](mod@split) the split and its files;
//! [`report`] the serialisable result; [`plots`] the charts; [`evaluate()`] wires the
//! models to the metrics.

mod evaluate;
pub mod metrics;
pub mod plots;
pub mod report;
pub mod split;

use std::collections::HashSet;
use std::path::PathBuf;

pub use evaluate::{EvalParams, evaluate, popularity_order, top_unrated};
pub use report::{EvalReport, Predictor, Ranker};
pub use split::{split, write_split};

use crate::data::{AgeBucket, Dataset, Gender, User};

/// Errors of evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The test fraction must lie strictly between 0 and 1.
    #[error("test fraction must be > 0 and < 1, got {0}")]
    BadTestFraction(f64),
    /// Nothing to evaluate.
    #[error("no held-out ratings to evaluate")]
    EmptyTest,
    /// Nothing to train on.
    #[error("no training ratings")]
    EmptyTrain,
    /// A parameter is out of range.
    #[error("bad evaluation parameter: {0}")]
    BadParam(&'static str),
    /// Training the served model failed.
    #[error("training the served model failed")]
    Train(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Reading or writing a file failed.
    #[error("cannot write {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Catalogue size for coverage: distinct movie ids in the movie list and in the ratings
/// (a ratings-only data set has no movie list).
pub fn catalogue_size(dataset: &Dataset) -> usize {
    let ids: HashSet<u32> = dataset
        .movies
        .iter()
        .map(|m| m.id)
        .chain(dataset.ratings.iter().map(|r| r.movie))
        .collect();
    ids.len()
}

/// Label of a gender group.
pub fn gender_label(gender: Option<Gender>) -> &'static str {
    match gender {
        Some(Gender::Female) => "F",
        Some(Gender::Male) => "M",
        None => "unknown",
    }
}

/// Label of an age group.
pub fn age_label(age: Option<AgeBucket>) -> &'static str {
    match age {
        Some(AgeBucket::Under18) => "<18",
        Some(AgeBucket::From18To24) => "18-24",
        Some(AgeBucket::From25To34) => "25-34",
        Some(AgeBucket::From35To44) => "35-44",
        Some(AgeBucket::From45To49) => "45-49",
        Some(AgeBucket::From50To55) => "50-55",
        Some(AgeBucket::Over56) => "56+",
        None => "unknown",
    }
}

/// Label of an occupation group (`unknown` for a missing or blank occupation).
pub fn occupation_label(user: Option<&User>) -> &str {
    match user.and_then(|u| u.occupation.as_deref()).map(str::trim) {
        Some(o) if !o.is_empty() => o,
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fall_back_to_unknown() {
        assert_eq!(gender_label(Some(Gender::Female)), "F");
        assert_eq!(gender_label(None), "unknown");
        assert_eq!(age_label(Some(AgeBucket::Under18)), "<18");
        assert_eq!(age_label(Some(AgeBucket::Over56)), "56+");
        assert_eq!(age_label(None), "unknown");
        let mut user = User {
            id: 1,
            gender: None,
            age: None,
            occupation: Some("  ".into()),
        };
        assert_eq!(occupation_label(Some(&user)), "unknown");
        user.occupation = Some("writer".into());
        assert_eq!(occupation_label(Some(&user)), "writer");
        assert_eq!(occupation_label(None), "unknown");
    }
}
