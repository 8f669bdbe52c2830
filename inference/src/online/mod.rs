//! Online evaluation: how good were the lists users were shown, judged by what they did
//! next. Pure functions of records; no IO beyond the generic reader in [`log`].
//!
//! # The scoring rule
//! It is the original system's (`MovRekE2E`, issue 9): a watch or rating is credited to the
//! user's latest recommendation list (impression) inside the attribution window (30 min by
//! default, see [`join`]), and scored by where the movie stood in that list
//! ([`score::Position::score`], out of 10: positions 1–5 → 10, 6–10 → 8, 11–15 → 5,
//! 16–20 → 3, not in the list → 0.01) times, for a watch, the watched fraction of the
//! movie's runtime ([`score::watch_band`], out of 5: `[0, 20 %)` → 1, `[20 %, 50 %)` → 3,
//! `[50 %, 70 %)` → 4, `[70 %, 100 %]` → 5) and, for a rating, rating/5. A user × movie ×
//! impression pair scores its watch part plus its rating part, a missing part counting 0,
//! so a pair scores at most 60. Minutes watched are the furthest minute seen; the runtime
//! comes from movie metadata, and a watched pair whose runtime is unknown is left unscored
//! and counted ([`score::Unscored`]) rather than guessed. A hit is a scored pair whose
//! movie was in positions 1–20.
//!
//! # What it produces
//! Per release, track and model version ([`aggregate::VersionStats`]): impressions,
//! scored pairs, score sum and sum of squares, hits (per position band), unattributed
//! actions and a score histogram: the counts a Prometheus exporter publishes and a
//! canary judge compares. Global counts ([`aggregate::EvalCounts`]) say what happened to
//! malformed, oversized, out-of-order and duplicate records; none of them panics.
//!
//! # Scope
//! Pairs are scored when their impression's window closes: at the end of a log
//! ([`join::Evaluator::finish`]), or as the watermark of a live stream passes
//! ([`join::Evaluator::close_through`], driven by [`stream::Stream`] in `movrek evaluate`).

pub mod aggregate;
pub mod join;
pub mod log;
pub mod merge;
pub mod score;
pub mod stream;
mod users;

pub use aggregate::{
    EvalCounts, OnlineReport, ScoreHistogram, VersionKey, VersionRow, VersionStats,
};
pub use join::{DEFAULT_WINDOW_SECONDS, Evaluator, MovieKey, Record};
pub use log::{LogEvaluation, MovieKeys, Runtimes, evaluate_log, parse_runtimes};
