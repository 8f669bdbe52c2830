//! Rating data in memory — users, movies, explicit ratings and watch events — as loaded
//! from MovieLens files, the simulator's event log, or the synthetic generator.
//!
//! These types are the contract between loading ([`crate::data`]) and modelling
//! ([`crate::model`]). Ids are the *external* ids found in the files; the model maps
//! them to compact indices itself.
//!
//! Submodules: [`load_dir`]/[`load_ratings_file`] read files (layout detection, digest),
//! [`movielens`] parses and writes the MovieLens formats, [`parse`] holds the byte-level
//! helpers and the parallel line parser, [`clean`] resolves duplicates and counts unknown
//! ids, [`quality`] is the report every load returns, [`synth`] generates data sets and
//! [`events`] ingests the simulator's event log.

#![allow(
    clippy::doc_markdown,
    reason = "the docs name data sets and sites (MovieLens, IMDb), not code items"
)]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod clean;
pub mod events;
mod load;
pub mod movielens;
pub mod parse;
pub mod quality;
pub mod synth;

pub use load::{Loaded, load_dir, load_ratings_file};
pub use movielens::write_ml1m;
pub use quality::QualityReport;

/// Everything that can go wrong loading, generating, writing or ingesting data. Bad
/// *lines* are not errors: they are dropped and counted in the [`QualityReport`].
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A directory holds no known layout.
    #[error(
        "no data set in {}: expected ratings.dat+movies.dat (MovieLens 1M), u.data+u.item \
         (100k) or ratings.csv+movies.csv (latest)",
        dir.display()
    )]
    UnknownLayout {
        /// The directory.
        dir: PathBuf,
    },
    /// A ratings file whose format could not be recognised (or an empty one).
    #[error("{}: not a MovieLens ratings file (first line {first_line:?})", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// Its first line, shortened.
        first_line: String,
    },
    /// Not one valid rating was found.
    #[error(
        "{}: no valid ratings ({rows} lines, {malformed} malformed, {out_of_range} out of range)",
        path.display()
    )]
    NoRatings {
        /// The ratings file.
        path: PathBuf,
        /// Non-blank lines read.
        rows: u64,
        /// Malformed lines.
        malformed: u64,
        /// Out-of-range ratings.
        out_of_range: u64,
    },
    /// A value that the ML-1M format cannot represent (it contains a separator).
    #[error(
        "cannot write {what} of id {id} in ML-1M format: {text:?} contains a separator or line break"
    )]
    Unwritable {
        /// Which field.
        what: &'static str,
        /// The user or movie id.
        id: u32,
        /// The value.
        text: String,
    },
    /// A report could not be serialised.
    #[error("cannot serialise {}", path.display())]
    Json {
        /// The file being written.
        path: PathBuf,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// A user's gender as MovieLens records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Gender {
    /// `F` in MovieLens files.
    Female,
    /// `M` in MovieLens files.
    Male,
}

/// Age bucket, as MovieLens 1M encodes ages (`1`, `18`, `25`, `35`, `45`, `50`, `56`).
///
/// MovieLens 100k stores exact ages; [`AgeBucket::from_years`] maps them onto the same
/// buckets so that both data sets share one cold-start grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AgeBucket {
    /// Under 18 (ML-1M code 1). Users in this bucket never see adult movies.
    Under18,
    /// 18–24 (code 18).
    From18To24,
    /// 25–34 (code 25).
    From25To34,
    /// 35–44 (code 35).
    From35To44,
    /// 45–49 (code 45).
    From45To49,
    /// 50–55 (code 50).
    From50To55,
    /// 56 and over (code 56).
    Over56,
}

impl AgeBucket {
    /// All buckets, youngest first.
    pub const ALL: [AgeBucket; 7] = [
        AgeBucket::Under18,
        AgeBucket::From18To24,
        AgeBucket::From25To34,
        AgeBucket::From35To44,
        AgeBucket::From45To49,
        AgeBucket::From50To55,
        AgeBucket::Over56,
    ];

    /// The bucket holding an exact age in years.
    pub fn from_years(years: u32) -> Self {
        match years {
            0..=17 => AgeBucket::Under18,
            18..=24 => AgeBucket::From18To24,
            25..=34 => AgeBucket::From25To34,
            35..=44 => AgeBucket::From35To44,
            45..=49 => AgeBucket::From45To49,
            50..=55 => AgeBucket::From50To55,
            _ => AgeBucket::Over56,
        }
    }

    /// The bucket for an ML-1M age code; `None` for a code ML-1M does not define.
    pub fn from_ml1m_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.ml1m_code() == code)
    }

    /// The ML-1M age code of this bucket.
    pub fn ml1m_code(self) -> u32 {
        match self {
            AgeBucket::Under18 => 1,
            AgeBucket::From18To24 => 18,
            AgeBucket::From25To34 => 25,
            AgeBucket::From35To44 => 35,
            AgeBucket::From45To49 => 45,
            AgeBucket::From50To55 => 50,
            AgeBucket::Over56 => 56,
        }
    }

    /// True for users under 18: the adult filter applies to them.
    pub fn is_minor(self) -> bool {
        self == AgeBucket::Under18
    }
}

/// One user and the demographics the cold-start path groups by. Any field may be
/// missing (MovieLens "latest" has no demographics at all).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// External user id.
    pub id: u32,
    /// Gender, if known.
    pub gender: Option<Gender>,
    /// Age bucket, if known. The served model's adult filter treats an unknown age like a
    /// minor's by default (`TrainParams::filter_adult_unknown_age`), whether or not the data
    /// set has demographics.
    pub age: Option<AgeBucket>,
    /// Occupation name (ML-100k) or ML-1M occupation code as text, if known.
    pub occupation: Option<String>,
}

/// One movie.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Movie {
    /// External movie id.
    pub id: u32,
    /// Title without the trailing "(year)".
    pub title: String,
    /// Release year, if the title or file gives one.
    pub year: Option<u16>,
    /// Genres in file order.
    pub genres: Vec<String>,
    /// Adult content: genre `Adult`, or MPAA NC-17 from the IMDb join.
    pub adult: bool,
    /// External (IMDb) mean rating on a 1–10 scale, if joined.
    pub external_rating: Option<f32>,
}

/// One explicit rating.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    /// External user id.
    pub user: u32,
    /// External movie id.
    pub movie: u32,
    /// Rating value on the data set's [`RatingScale`].
    pub value: f32,
    /// Unix seconds; 0 when unknown.
    pub timestamp: i64,
}

/// One watch event after per-user×movie deduplication (furthest minute kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// External user id.
    pub user: u32,
    /// External movie id.
    pub movie: u32,
    /// Furthest minute watched.
    pub minute: u32,
    /// Unix seconds of the last watch line kept.
    pub timestamp: i64,
}

/// The closed range ratings live in (1–5 for MovieLens 100k/1M, 0.5–5 for "latest").
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatingScale {
    /// Lowest valid rating.
    pub min: f32,
    /// Highest valid rating.
    pub max: f32,
}

impl RatingScale {
    /// MovieLens 100k and 1M, and the event log: whole stars 1–5.
    pub const WHOLE_STARS: RatingScale = RatingScale { min: 1.0, max: 5.0 };
    /// MovieLens "latest": half stars 0.5–5.
    pub const HALF_STARS: RatingScale = RatingScale { min: 0.5, max: 5.0 };

    /// True when `value` lies inside the scale.
    pub fn contains(self, value: f32) -> bool {
        value >= self.min && value <= self.max
    }

    /// `value` clipped into the scale.
    pub fn clip(self, value: f32) -> f32 {
        value.clamp(self.min, self.max)
    }
}

/// A whole data set in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Users with demographics. May be empty when the source has none; users that only
    /// appear in ratings are still valid users.
    pub users: Vec<User>,
    /// Movie catalogue.
    pub movies: Vec<Movie>,
    /// Explicit ratings.
    pub ratings: Vec<Rating>,
    /// Watch events (never recommended again, like rated movies).
    pub watches: Vec<Watch>,
    /// The rating scale.
    pub scale: RatingScale,
}
