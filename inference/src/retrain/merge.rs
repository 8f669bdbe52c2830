//! Appends a window of events to the previous data set, pure: deduplicates (a pair's latest
//! rating wins, a pair's furthest watch wins), counts what is new and what is unknown, and
//! holds out a seeded share of the *new* ratings, which neither the stable model (trained
//! before they existed) nor the candidate (trained without them) has seen: the two are
//! compared on data both meet for the first time.

use std::collections::{HashMap, HashSet};

use super::gate::EventFigures;
use crate::data::clean::dedup_ratings;
use crate::data::{Dataset, Rating, Watch};
use crate::util::mix;

/// The merged data and the held-out comparison set.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// Previous data plus the window, deduplicated, in canonical order (users, movies,
    /// ratings and watches sorted by id): what is published as the new data set.
    pub dataset: Dataset,
    /// `dataset` without the held-out ratings (and without watches of held-out pairs): what
    /// the candidate is trained on.
    pub train: Dataset,
    /// Held-out new ratings, sorted by (user, movie).
    pub test: Vec<Rating>,
    /// Counts for the data gate (the caller adds lines, malformed and the window's length).
    pub figures: EventFigures,
}

/// Merges `window` (the events since the last training, as ingested) into `previous`,
/// holding out `round(new ratings × test_fraction)` new ratings ranked by a hash of
/// `(seed, user, movie)`.
pub fn merge(previous: &Dataset, window: &Dataset, test_fraction: f64, seed: u64) -> Merged {
    let old_pairs: HashMap<(u32, u32), (f32, i64)> = previous
        .ratings
        .iter()
        .map(|r| ((r.user, r.movie), (r.value, r.timestamp)))
        .collect();
    let known_users: HashSet<u32> = previous
        .users
        .iter()
        .map(|u| u.id)
        .chain(previous.ratings.iter().map(|r| r.user))
        .collect();
    let known_movies: HashSet<u32> = previous
        .movies
        .iter()
        .map(|m| m.id)
        .chain(previous.ratings.iter().map(|r| r.movie))
        .collect();

    let mut figures = EventFigures::default();
    let mut fresh: Vec<Rating> = Vec::new();
    for r in &window.ratings {
        match old_pairs.get(&(r.user, r.movie)) {
            None => {
                figures.new_ratings += 1;
                figures.unknown_users += u64::from(!known_users.contains(&r.user));
                figures.unknown_movies += u64::from(!known_movies.contains(&r.movie));
                fresh.push(*r);
            }
            Some(&(value, time))
                if r.timestamp >= time && (value, time) != (r.value, r.timestamp) =>
            {
                figures.updated_ratings += 1;
            }
            Some(_) => {}
        }
    }

    let (watches, new_watches) = merge_watches(&previous.watches, &window.watches);
    figures.new_watches = new_watches;

    let mut ratings: Vec<Rating> = previous
        .ratings
        .iter()
        .chain(&window.ratings)
        .copied()
        .collect();
    dedup_ratings(&mut ratings);
    ratings.sort_unstable_by_key(|r| (r.user, r.movie));

    let mut users = previous.users.clone();
    let have: HashSet<u32> = users.iter().map(|u| u.id).collect();
    users.extend(
        window
            .users
            .iter()
            .filter(|u| !have.contains(&u.id))
            .cloned(),
    );
    users.sort_unstable_by_key(|u| u.id);
    let mut movies = previous.movies.clone();
    let have: HashSet<u32> = movies.iter().map(|m| m.id).collect();
    movies.extend(
        window
            .movies
            .iter()
            .filter(|m| !have.contains(&m.id))
            .cloned(),
    );
    movies.sort_unstable_by_key(|m| m.id);

    let test = hold_out(&fresh, test_fraction, seed);
    figures.test_ratings = test.len() as u64;
    let test_pairs: HashSet<(u32, u32)> = test.iter().map(|r| (r.user, r.movie)).collect();
    let dataset = Dataset {
        users,
        movies,
        ratings,
        watches,
        scale: previous.scale,
    };
    let train = Dataset {
        users: dataset.users.clone(),
        movies: dataset.movies.clone(),
        ratings: dataset
            .ratings
            .iter()
            .filter(|r| !test_pairs.contains(&(r.user, r.movie)))
            .copied()
            .collect(),
        watches: dataset
            .watches
            .iter()
            .filter(|w| !test_pairs.contains(&(w.user, w.movie)))
            .copied()
            .collect(),
        scale: dataset.scale,
    };
    Merged {
        dataset,
        train,
        test,
        figures,
    }
}

/// Union of watches, the furthest minute per pair (then the later time); returns them
/// sorted by pair and how many window watches changed anything.
fn merge_watches(previous: &[Watch], window: &[Watch]) -> (Vec<Watch>, u64) {
    let mut by_pair: HashMap<(u32, u32), Watch> =
        previous.iter().map(|w| ((w.user, w.movie), *w)).collect();
    let mut changed = 0;
    for w in window {
        let slot = by_pair.entry((w.user, w.movie));
        match slot {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(*w);
                changed += 1;
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if (w.minute, w.timestamp) > (o.get().minute, o.get().timestamp) {
                    o.insert(*w);
                    changed += 1;
                }
            }
        }
    }
    let mut watches: Vec<Watch> = by_pair.into_values().collect();
    watches.sort_unstable_by_key(|w| (w.user, w.movie));
    (watches, changed)
}

/// The seeded hold-out of `fresh` ratings, sorted by (user, movie).
fn hold_out(fresh: &[Rating], test_fraction: f64, seed: u64) -> Vec<Rating> {
    let n_test = (fresh.len() as f64 * test_fraction.clamp(0.0, 1.0)).round() as usize;
    let seed_hash = mix(seed);
    let mut ranked: Vec<(u64, Rating)> = fresh
        .iter()
        .map(|r| {
            let pair = u64::from(r.user) << 32 | u64::from(r.movie);
            (mix(seed_hash ^ pair), *r)
        })
        .collect();
    ranked.sort_unstable_by_key(|(rank, r)| (*rank, r.user, r.movie));
    let mut test: Vec<Rating> = ranked.into_iter().take(n_test).map(|(_, r)| r).collect();
    test.sort_unstable_by_key(|r| (r.user, r.movie));
    test
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{RatingScale, User};

    fn r(user: u32, movie: u32, value: f32, timestamp: i64) -> Rating {
        Rating {
            user,
            movie,
            value,
            timestamp,
        }
    }

    fn data(ratings: Vec<Rating>, watches: Vec<Watch>) -> Dataset {
        let mut users: Vec<u32> = ratings.iter().map(|r| r.user).collect();
        users.sort_unstable();
        users.dedup();
        Dataset {
            users: users
                .into_iter()
                .map(|id| User {
                    id,
                    gender: None,
                    age: None,
                    occupation: Some("writer".into()),
                })
                .collect(),
            movies: Vec::new(),
            ratings,
            watches,
            scale: RatingScale::WHOLE_STARS,
        }
    }

    #[test]
    fn appends_dedups_and_counts_what_is_new() {
        let previous = data(vec![r(1, 10, 4.0, 100), r(2, 10, 3.0, 100)], vec![]);
        let mut window = data(
            vec![
                r(1, 10, 4.0, 100), // a re-read of an old rating: not new
                r(2, 10, 5.0, 200), // re-rated later: updated, latest wins
                r(1, 11, 2.0, 300), // new pair
                r(9, 12, 5.0, 300), // new pair, unknown user and movie
            ],
            vec![Watch {
                user: 1,
                movie: 11,
                minute: 30,
                timestamp: 300,
            }],
        );
        window.users.retain(|u| u.id == 9);
        window.users[0].occupation = None;
        let merged = merge(&previous, &window, 0.0, 1);
        assert_eq!(
            merged.dataset.ratings,
            [
                r(1, 10, 4.0, 100),
                r(1, 11, 2.0, 300),
                r(2, 10, 5.0, 200),
                r(9, 12, 5.0, 300)
            ]
        );
        let f = &merged.figures;
        assert_eq!(
            (
                f.new_ratings,
                f.updated_ratings,
                f.new_watches,
                f.unknown_users,
                f.unknown_movies
            ),
            (2, 1, 1, 1, 2)
        );
        // The previous user keeps its demographics; the new one is added without.
        assert_eq!(merged.dataset.users.len(), 3);
        assert_eq!(
            merged.dataset.users[0].occupation.as_deref(),
            Some("writer")
        );
        assert!(merged.test.is_empty());
        assert_eq!(merged.train, merged.dataset);
    }

    #[test]
    fn re_reading_the_same_window_changes_nothing() {
        let previous = data(vec![r(1, 10, 4.0, 100)], vec![]);
        let window = data(vec![r(1, 11, 2.0, 300)], vec![]);
        let once = merge(&previous, &window, 0.0, 1);
        let twice = merge(&once.dataset, &window, 0.0, 1);
        assert!(twice.figures.is_empty());
        assert_eq!(twice.dataset, once.dataset);
    }

    #[test]
    fn only_new_ratings_are_held_out_and_removed_from_training() {
        let previous = data((0..50).map(|m| r(1, m, 3.0, 1)).collect(), vec![]);
        let fresh: Vec<Rating> = (0..200).map(|m| r(2, m, 4.0, 5)).collect();
        let watches = vec![Watch {
            user: 2,
            movie: 0,
            minute: 5,
            timestamp: 5,
        }];
        let merged = merge(&previous, &data(fresh, watches), 0.25, 9);
        assert_eq!(merged.test.len(), 50);
        assert!(merged.test.iter().all(|t| t.user == 2));
        assert_eq!(merged.train.ratings.len(), 250 - 50);
        assert_eq!(merged.dataset.ratings.len(), 250);
        let held: HashSet<(u32, u32)> = merged.test.iter().map(|t| (t.user, t.movie)).collect();
        assert!(
            merged
                .train
                .ratings
                .iter()
                .all(|t| !held.contains(&(t.user, t.movie)))
        );
        assert_eq!(
            merged.train.watches.is_empty(),
            held.contains(&(2, 0)),
            "a held-out pair's watch leaves the training set"
        );
        // Seeded: same seed, same hold-out; another seed, another.
        let again = merge(
            &previous,
            &data((0..200).map(|m| r(2, m, 4.0, 5)).collect(), vec![]),
            0.25,
            9,
        );
        assert_eq!(again.test, merged.test);
        let other = merge(
            &previous,
            &data((0..200).map(|m| r(2, m, 4.0, 5)).collect(), vec![]),
            0.25,
            10,
        );
        assert_ne!(other.test, merged.test);
    }
}
