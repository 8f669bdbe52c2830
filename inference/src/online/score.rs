//! The scoring rule of the original system: list-position band × watch-fraction band for a
//! watch, list-position band × rating/5 for a rating, and their sum for a user × movie pair.
//!
//! Band edges are compared in integer arithmetic (`10·minutes < 2·runtime`, …), so a
//! fraction of exactly 20 %, 50 % or 70 % falls in the upper band, as the rule's
//! half-open intervals say, whatever the runtime.

use serde::Serialize;

/// Longest list the position bands cover: a movie at position 21 or later counts as not
/// in the list (and is no hit), as hit rate@20 defines it.
pub const LIST_LENGTH: usize = 20;

/// Score of a movie that was not in the list (positions 1–20).
pub const NOT_IN_LIST: f64 = 0.01;

/// Highest score one pair can reach: `10 × 5` for the watch part plus `10 × 5/5` for the
/// rating part.
pub const MAX_PAIR_SCORE: f64 = 60.0;

/// Where the watched or rated movie stood in the attributed list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Position {
    /// 1-based position, 1–20.
    Listed(u8),
    /// Absent from the list, or beyond position 20.
    NotListed,
}

impl Position {
    /// The position of `movie` in `list` (first occurrence), banded to the first 20.
    pub fn of<T: PartialEq>(list: &[T], movie: &T) -> Self {
        list.iter()
            .take(LIST_LENGTH)
            .position(|m| m == movie)
            .map_or(Position::NotListed, |i| Position::Listed(i as u8 + 1))
    }

    /// True when the movie was in the list (a hit).
    pub fn is_hit(self) -> bool {
        matches!(self, Position::Listed(_))
    }

    /// Index of the position band: 0 for 1–5, 1 for 6–10, 2 for 11–15, 3 for 16–20;
    /// `None` when not listed.
    pub fn band(self) -> Option<usize> {
        match self {
            Position::Listed(p @ 1..=20) => Some(usize::from(p - 1) / 5),
            Position::Listed(_) | Position::NotListed => None,
        }
    }

    /// The list score, out of 10: top 5 → 10, 6–10 → 8, 11–15 → 5, 16–20 → 3,
    /// not in the list → 0.01.
    pub fn score(self) -> f64 {
        match self.band() {
            Some(0) => 10.0,
            Some(1) => 8.0,
            Some(2) => 5.0,
            Some(_) => 3.0,
            None => NOT_IN_LIST,
        }
    }
}

/// The watch-fraction score, out of 5, of `minutes` watched of a movie `runtime` minutes
/// long: `[0, 20 %)` → 1, `[20 %, 50 %)` → 3, `[50 %, 70 %)` → 4, `[70 %, 100 %]` → 5.
/// More minutes than the runtime count as 100 %. `None` when the runtime is 0 (unknown).
pub fn watch_band(minutes: u32, runtime: u32) -> Option<u8> {
    if runtime == 0 {
        return None;
    }
    // fraction < p/10  ⇔  10·minutes < p·runtime, exact in integers.
    let (tenfold, runtime) = (10 * u64::from(minutes), u64::from(runtime));
    Some(if tenfold < 2 * runtime {
        1
    } else if tenfold < 5 * runtime {
        3
    } else if tenfold < 7 * runtime {
        4
    } else {
        5
    })
}

/// The watch part of a pair: list score × watch-fraction score (at most 50).
pub fn watch_part(position: Position, minutes: u32, runtime: u32) -> Option<f64> {
    watch_band(minutes, runtime).map(|band| position.score() * f64::from(band))
}

/// The rating part of a pair: list score × rating/5 (at most 10).
pub fn rating_part(position: Position, rating: u8) -> f64 {
    position.score() * f64::from(rating) / 5.0
}

/// Why a pair has no score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Unscored {
    /// It was watched, but the movie's runtime is unknown, so its watch fraction is too.
    /// The pair is left out whole rather than scored on its rating alone, which would
    /// bias the version's mean downwards.
    UnknownRuntime,
}

/// What one user did with one movie after one impression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairActions {
    /// The movie's place in the attributed list.
    pub position: Position,
    /// Furthest minute watched (the number of minutes watched), if watched.
    pub minutes: Option<u32>,
    /// The rating (1–5), if rated.
    pub rating: Option<u8>,
}

/// The pair's score: watch part + rating part, a missing part counting 0.
///
/// # Errors
/// [`Unscored::UnknownRuntime`] when the pair was watched and `runtime` is `None` or 0.
pub fn pair_score(actions: PairActions, runtime: Option<u32>) -> Result<f64, Unscored> {
    let watch = match actions.minutes {
        None => 0.0,
        Some(minutes) => runtime
            .and_then(|r| watch_part(actions.position, minutes, r))
            .ok_or(Unscored::UnknownRuntime)?,
    };
    let rating = actions
        .rating
        .map_or(0.0, |r| rating_part(actions.position, r));
    Ok(watch + rating)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn every_position_band() {
        let list: Vec<u32> = (100..125).collect();
        let cases = [
            (100, Position::Listed(1), 10.0),
            (104, Position::Listed(5), 10.0),
            (105, Position::Listed(6), 8.0),
            (109, Position::Listed(10), 8.0),
            (110, Position::Listed(11), 5.0),
            (114, Position::Listed(15), 5.0),
            (115, Position::Listed(16), 3.0),
            (119, Position::Listed(20), 3.0),
            (120, Position::NotListed, 0.01),
            (999, Position::NotListed, 0.01),
        ];
        for (movie, position, score) in cases {
            assert_eq!(Position::of(&list, &movie), position, "movie {movie}");
            assert!(close(position.score(), score), "{position:?}");
            assert_eq!(position.is_hit(), position != Position::NotListed);
        }
        assert_eq!(Position::of(&[7u32, 7], &7), Position::Listed(1));
        assert_eq!(Position::of::<u32>(&[], &7), Position::NotListed);
    }

    #[test]
    fn every_watch_band_and_its_edges() {
        // Runtime 100: the band edges fall on whole minutes.
        let cases = [
            (0, 1),
            (19, 1),
            (20, 3),
            (49, 3),
            (50, 4),
            (69, 4),
            (70, 5),
            (100, 5),
            (250, 5),
        ];
        for (minutes, band) in cases {
            assert_eq!(watch_band(minutes, 100), Some(band), "{minutes}/100");
        }
        // Runtime 7: 20 % is 1.4 min, 50 % 3.5 min, 70 % 4.9 min.
        let bands: Vec<u8> = (0..=7).map(|m| watch_band(m, 7).unwrap()).collect();
        assert_eq!(bands, vec![1, 1, 3, 3, 4, 5, 5, 5]);
        // Exact edges on a runtime that is not a multiple of 10: 6, 15 and 21 of 30.
        assert_eq!(watch_band(5, 30), Some(1));
        assert_eq!(watch_band(6, 30), Some(3));
        assert_eq!(watch_band(15, 30), Some(4));
        assert_eq!(watch_band(20, 30), Some(4));
        assert_eq!(watch_band(21, 30), Some(5));
        assert_eq!(watch_band(u32::MAX, 1), Some(5));
        assert_eq!(watch_band(5, 0), None);
    }

    #[test]
    fn watch_and_rating_parts() {
        assert!(close(
            watch_part(Position::Listed(3), 80, 100).unwrap(),
            50.0
        ));
        assert!(close(
            watch_part(Position::Listed(7), 30, 100).unwrap(),
            24.0
        ));
        assert!(close(
            watch_part(Position::Listed(12), 55, 100).unwrap(),
            20.0
        ));
        assert!(close(
            watch_part(Position::Listed(20), 10, 100).unwrap(),
            3.0
        ));
        assert!(close(
            watch_part(Position::NotListed, 90, 100).unwrap(),
            0.05
        ));
        assert!(close(rating_part(Position::Listed(1), 5), 10.0));
        assert!(close(rating_part(Position::Listed(8), 4), 6.4));
        assert!(close(rating_part(Position::Listed(15), 1), 1.0));
        assert!(close(rating_part(Position::Listed(17), 3), 1.8));
        assert!(close(rating_part(Position::NotListed, 5), 0.01));
    }

    #[test]
    fn a_pair_sums_its_parts_and_a_missing_part_counts_zero() {
        let both = PairActions {
            position: Position::Listed(2),
            minutes: Some(60),
            rating: Some(4),
        };
        // 10 × 4 (60 % watched) + 10 × 4/5.
        assert!(close(pair_score(both, Some(100)).unwrap(), 48.0));
        let watch_only = PairActions {
            rating: None,
            ..both
        };
        assert!(close(pair_score(watch_only, Some(100)).unwrap(), 40.0));
        let rating_only = PairActions {
            minutes: None,
            ..both
        };
        assert!(close(pair_score(rating_only, None).unwrap(), 8.0));
        let nothing = PairActions {
            minutes: None,
            rating: None,
            ..both
        };
        assert!(close(pair_score(nothing, None).unwrap(), 0.0));
        let best = PairActions {
            position: Position::Listed(1),
            minutes: Some(120),
            rating: Some(5),
        };
        assert!(close(pair_score(best, Some(120)).unwrap(), MAX_PAIR_SCORE));
        let absent = PairActions {
            position: Position::NotListed,
            minutes: Some(10),
            rating: Some(5),
        };
        // 0.01 × 1 + 0.01 × 1.
        assert!(close(pair_score(absent, Some(100)).unwrap(), 0.02));
    }

    #[test]
    fn a_watch_of_unknown_length_is_unscored() {
        let watched = PairActions {
            position: Position::Listed(1),
            minutes: Some(30),
            rating: Some(5),
        };
        assert_eq!(pair_score(watched, None), Err(Unscored::UnknownRuntime));
        assert_eq!(pair_score(watched, Some(0)), Err(Unscored::UnknownRuntime));
    }
}
