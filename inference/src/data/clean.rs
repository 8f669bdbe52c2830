//! Cross-record checks after parsing, pure and parallel: rating deduplication (latest
//! timestamp wins), repeated ids in users/movies files, and the unknown-id and
//! missing-demographics counts of the [`QualityReport`].

use std::collections::HashSet;

use rayon::prelude::*;

use super::parse::{LineError, Rejected};
use super::quality::QualityReport;
use super::{Movie, Rating, User};

/// Sorts ratings by (user, movie) and keeps one rating per pair: the latest timestamp,
/// and on equal timestamps the one that came later in the input. Returns how many were
/// dropped. Input already sorted with no repeated pair is left untouched (checked in one
/// parallel pass, so the common case costs no sort).
pub fn dedup_ratings(ratings: &mut Vec<Rating>) -> u64 {
    let strictly_sorted = ratings
        .par_windows(2)
        .all(|w| (w[0].user, w[0].movie) < (w[1].user, w[1].movie));
    if strictly_sorted {
        return 0;
    }
    // Stable: among equal (user, movie, timestamp) the input order is kept, so the last
    // of each group is the latest line.
    ratings.par_sort_by(|a, b| {
        (a.user, a.movie)
            .cmp(&(b.user, b.movie))
            .then(a.timestamp.cmp(&b.timestamp))
    });
    let before = ratings.len();
    let mut write = 0;
    for read in 0..before {
        let last_of_group = ratings.get(read + 1).is_none_or(|next| {
            (next.user, next.movie) != (ratings[read].user, ratings[read].movie)
        });
        if last_of_group {
            ratings[write] = ratings[read];
            write += 1;
        }
    }
    ratings.truncate(write);
    (before - write) as u64
}

/// Keeps the first record per id; later ones are returned as rejected lines.
pub fn dedup_by_id<T>(numbered: Vec<(u64, T)>, id: impl Fn(&T) -> u32) -> (Vec<T>, Vec<Rejected>) {
    let mut seen = HashSet::with_capacity(numbered.len());
    let mut kept = Vec::with_capacity(numbered.len());
    let mut rejected = Vec::new();
    for (line, item) in numbered {
        let key = id(&item);
        if seen.insert(key) {
            kept.push(item);
        } else {
            rejected.push(Rejected {
                line,
                error: LineError::DuplicateId { id: key },
            });
        }
    }
    (kept, rejected)
}

/// A set of u32 ids with fast parallel lookups: a bitmap for ids up to 2^28, a sorted
/// vector otherwise.
#[derive(Debug)]
pub enum IdSet {
    /// One bit per id.
    Bitmap(Vec<u64>),
    /// Sorted, deduplicated ids.
    Sorted(Vec<u32>),
}

const BITMAP_LIMIT: u32 = 1 << 28;

impl IdSet {
    /// Builds the set from any ids.
    pub fn new(ids: impl Iterator<Item = u32> + Clone) -> Self {
        let max = ids.clone().max().unwrap_or(0);
        if max < BITMAP_LIMIT {
            let mut bits = vec![0u64; max as usize / 64 + 1];
            for id in ids {
                bits[id as usize / 64] |= 1 << (id % 64);
            }
            IdSet::Bitmap(bits)
        } else {
            let mut sorted: Vec<u32> = ids.collect();
            sorted.sort_unstable();
            sorted.dedup();
            IdSet::Sorted(sorted)
        }
    }

    /// True when `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        match self {
            IdSet::Bitmap(bits) => bits
                .get(id as usize / 64)
                .is_some_and(|word| word & (1 << (id % 64)) != 0),
            IdSet::Sorted(sorted) => sorted.binary_search(&id).is_ok(),
        }
    }
}

/// Fills the report's totals and cross-file counts.
///
/// `ratings` must be sorted by user (as [`dedup_ratings`] leaves them). `users_file` and
/// `movies_file` say whether those files existed: without them nothing is "unknown".
pub fn cross_check(
    report: &mut QualityReport,
    users: &[User],
    users_file: bool,
    movies: &[Movie],
    movies_file: bool,
    ratings: &[Rating],
) {
    let user_ids = IdSet::new(users.iter().map(|u| u.id));
    let movie_ids = IdSet::new(movies.iter().map(|m| m.id));
    let first_of_user = |i: usize| i == 0 || ratings[i].user != ratings[i - 1].user;
    let raters_without_profile = (0..ratings.len())
        .into_par_iter()
        .filter(|&i| first_of_user(i) && !(users_file && user_ids.contains(ratings[i].user)))
        .count() as u64;
    if users_file {
        report.unknown_users = ratings
            .par_iter()
            .filter(|r| !user_ids.contains(r.user))
            .count() as u64;
    }
    if movies_file {
        report.unknown_movies = ratings
            .par_iter()
            .filter(|r| !movie_ids.contains(r.movie))
            .count() as u64;
    }
    let incomplete_profiles = users
        .iter()
        .filter(|u| u.gender.is_none() || u.age.is_none() || u.occupation.is_none())
        .count() as u64;
    report.ratings = ratings.len() as u64;
    report.movies = movies.len() as u64;
    report.users = users.len() as u64 + raters_without_profile;
    report.missing_demographics = incomplete_profiles + raters_without_profile;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::quality::Format;

    fn r(user: u32, movie: u32, value: f32, timestamp: i64) -> Rating {
        Rating {
            user,
            movie,
            value,
            timestamp,
        }
    }

    #[test]
    fn latest_timestamp_wins_then_later_line() {
        let mut ratings = vec![
            r(2, 1, 1.0, 50),
            r(1, 5, 2.0, 10),
            r(1, 5, 4.0, 30),
            r(1, 5, 3.0, 20),
            r(2, 1, 5.0, 50),
        ];
        assert_eq!(dedup_ratings(&mut ratings), 3);
        assert_eq!(ratings, vec![r(1, 5, 4.0, 30), r(2, 1, 5.0, 50)]);
    }

    #[test]
    fn sorted_unique_input_is_untouched() {
        let mut ratings = vec![r(1, 1, 1.0, 9), r(1, 2, 1.0, 1), r(3, 1, 1.0, 5)];
        let copy = ratings.clone();
        assert_eq!(dedup_ratings(&mut ratings), 0);
        assert_eq!(ratings, copy);
    }

    #[test]
    fn repeated_ids_keep_the_first() {
        let (kept, rejected) = dedup_by_id(vec![(1, 7u32), (2, 8), (3, 7)], |&x| x);
        assert_eq!(kept, vec![7, 8]);
        assert_eq!(rejected[0].line, 3);
    }

    #[test]
    fn id_sets_agree_in_both_representations() {
        let small = IdSet::new([3u32, 64, 1000].into_iter());
        let large = IdSet::new([3u32, 64, u32::MAX].into_iter());
        assert!(matches!(small, IdSet::Bitmap(_)));
        assert!(matches!(large, IdSet::Sorted(_)));
        for set in [&small, &large] {
            assert!(set.contains(3) && set.contains(64));
            assert!(!set.contains(4) && !set.contains(65));
        }
        assert!(!small.contains(u32::MAX));
        assert!(large.contains(u32::MAX));
    }

    #[test]
    fn unknown_ids_are_counted_and_kept() {
        let users = vec![User {
            id: 1,
            gender: None,
            age: None,
            occupation: None,
        }];
        let movies = vec![Movie {
            id: 10,
            title: "x".into(),
            year: None,
            genres: vec![],
            adult: false,
            external_rating: None,
        }];
        let ratings = vec![
            r(1, 10, 3.0, 0),
            r(1, 11, 3.0, 0),
            r(2, 10, 3.0, 0),
            r(2, 12, 3.0, 0),
        ];
        let mut report = QualityReport::new(Format::Ml1m);
        cross_check(&mut report, &users, true, &movies, true, &ratings);
        assert_eq!(report.unknown_users, 2);
        assert_eq!(report.unknown_movies, 2);
        assert_eq!(report.users, 2);
        assert_eq!(report.missing_demographics, 2);
        let mut report = QualityReport::new(Format::MlLatest);
        cross_check(&mut report, &[], false, &movies, true, &ratings);
        assert_eq!(
            (
                report.unknown_users,
                report.users,
                report.missing_demographics
            ),
            (0, 2, 2)
        );
    }
}
