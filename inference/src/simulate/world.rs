//! What the simulator knows that the server does not: who the users are (known ones, minors)
//! and their hidden taste, plus movie runtimes and which movies are adult.
//!
//! Hidden taste comes from one of two places:
//! - a synthetic set written by `movrek generate` carries its latent factors in
//!   [`crate::data::synth::TASTE_FILE`]; a user's taste for a movie is the generator's
//!   expected rating ([`crate::data::synth::expected_stars`]);
//! - any other set (e.g. `ml-latest-small`) is split with a seed exactly as `movrek eval`
//!   splits it ([`crate::eval::split`]), and the held-out ratings stand for the taste: a
//!   user likes what they rated in the held-out part, and the taste says nothing about other
//!   movies. The served model must be trained on the training part of the same split
//!   (`movrek eval --split-out` writes it) for the comparison to be fair.
//!
//! Either way a user has *seen* the movies they rated in the data the server was trained on
//! (the whole set, or the split's training part): the taste says nothing about seeing one
//! again ([`World::stars`] is `None`), so a list of already-seen favourites earns little.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::data::synth::{self, Hidden, RUNTIMES_FILE, TASTE_FILE};
use crate::data::{Dataset, load_dir};
use crate::online::{MovieKey, MovieKeys, Runtimes, parse_runtimes};
use crate::util::SplitMix64;

/// Runtime assumed for every movie of a set without runtimes: the same 100 minutes
/// `movrek online-eval` assumes without `--movies`.
pub const DEFAULT_RUNTIME_MINUTES: u32 = 100;

/// Movies a user considers when choosing an organic watch under a latent taste: the best
/// of this many drawn uniformly from the catalogue.
const ORGANIC_CANDIDATES: usize = 30;

/// The hidden taste of the simulated users.
#[derive(Debug)]
pub enum HiddenTaste {
    /// Latent factors of a synthetic set (users and movies by id − 1).
    Latent(Hidden),
    /// Held-out ratings per user, sorted by movie.
    HeldOut(HashMap<u32, Vec<(u32, f32)>>),
}

impl HiddenTaste {
    /// The expected rating of `movie` by the user whose taste is `taste_user`; `None` when
    /// the taste says nothing about it.
    pub fn stars(&self, taste_user: u32, movie: u32) -> Option<f64> {
        match self {
            HiddenTaste::Latent(hidden) => {
                let user = hidden.users.get(taste_user.checked_sub(1)? as usize)?;
                let movie = hidden.movies.get(movie.checked_sub(1)? as usize)?;
                Some(synth::expected_stars(user, movie))
            }
            HiddenTaste::HeldOut(ratings) => {
                let rated = ratings.get(&taste_user)?;
                let at = rated.binary_search_by_key(&movie, |&(m, _)| m).ok()?;
                Some(f64::from(rated[at].1))
            }
        }
    }

    /// A movie the user finds outside the list: under a latent taste the best of
    /// [`ORGANIC_CANDIDATES`] random non-excluded movies, under held-out ratings one of the
    /// user's held-out movies at random.
    pub fn organic(
        &self,
        taste_user: u32,
        excluded: impl Fn(u32) -> bool,
        rng: &mut SplitMix64,
    ) -> Option<u32> {
        match self {
            HiddenTaste::Latent(hidden) => {
                let movies = hidden.movies.len() as u64;
                if movies == 0 {
                    return None;
                }
                (0..ORGANIC_CANDIDATES)
                    .map(|_| rng.below(movies) as u32 + 1)
                    .filter(|&m| !excluded(m))
                    .map(|m| (m, self.stars(taste_user, m).unwrap_or(0.0)))
                    .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                    .map(|(m, _)| m)
            }
            HiddenTaste::HeldOut(ratings) => {
                let rated = ratings.get(&taste_user)?;
                let pick = rated[rng.below(rated.len() as u64) as usize].0;
                (!excluded(pick)).then_some(pick)
            }
        }
    }
}

/// A user the server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persona {
    /// User id (sent to the server, written in the log).
    pub id: u32,
    /// Under 18 per the users file.
    pub minor: bool,
}

/// Everything the simulator reads from a data directory.
#[derive(Debug)]
pub struct World {
    /// The hidden taste.
    pub taste: HiddenTaste,
    /// Known users with a taste, by id.
    pub known: Vec<Persona>,
    /// Largest user id in the data; unknown users get ids above it.
    pub max_user: u32,
    /// Adult movies (never to be shown to minors).
    pub adult: HashSet<u32>,
    /// Movie runtimes for watch fractions.
    pub runtimes: Runtimes,
    /// Where taste and runtimes came from, in words (for the summary).
    pub source: String,
    /// Movies each user has already seen (rated in the training data), sorted.
    pub seen: HashMap<u32, Vec<u32>>,
}

impl World {
    /// The hidden expected rating of `movie` by `taste_user`, `None` when the taste says
    /// nothing about it or the user has already seen it.
    pub fn stars(&self, taste_user: u32, movie: u32) -> Option<f64> {
        if self.has_seen(taste_user, movie) {
            return None;
        }
        self.taste.stars(taste_user, movie)
    }

    /// True when `taste_user` rated `movie` in the training data.
    pub fn has_seen(&self, taste_user: u32, movie: u32) -> bool {
        self.seen
            .get(&taste_user)
            .is_some_and(|movies| movies.binary_search(&movie).is_ok())
    }

    /// The runtime of a movie (the default when unknown).
    pub fn runtime(&self, movie: u32) -> u32 {
        self.runtimes
            .get(MovieKey(u64::from(movie)))
            .unwrap_or(DEFAULT_RUNTIME_MINUTES)
    }

    /// Builds the world of a loaded data set: latent taste when `hidden` is given, else the
    /// `held_out` ratings; `seen` are the ratings the server trained on.
    pub fn new(
        dataset: &Dataset,
        hidden: Option<Hidden>,
        held_out: &[crate::data::Rating],
        seen: &[crate::data::Rating],
        runtimes: Runtimes,
        source: String,
    ) -> Self {
        let minors: HashSet<u32> = dataset
            .users
            .iter()
            .filter(|u| u.age.is_some_and(crate::data::AgeBucket::is_minor))
            .map(|u| u.id)
            .collect();
        let rating_users = dataset.ratings.iter().map(|r| r.user);
        let max_user = dataset
            .users
            .iter()
            .map(|u| u.id)
            .chain(rating_users)
            .chain(held_out.iter().map(|r| r.user))
            .max()
            .unwrap_or(0);
        let taste = if let Some(hidden) = hidden {
            HiddenTaste::Latent(hidden)
        } else {
            let mut by_user: HashMap<u32, Vec<(u32, f32)>> = HashMap::new();
            for r in held_out {
                by_user.entry(r.user).or_default().push((r.movie, r.value));
            }
            for rated in by_user.values_mut() {
                rated.sort_by_key(|&(m, _)| m);
                rated.dedup_by_key(|&mut (m, _)| m);
            }
            HiddenTaste::HeldOut(by_user)
        };
        let mut ids: Vec<u32> = match &taste {
            HiddenTaste::Latent(h) => (1..=h.users.len() as u32).collect(),
            HiddenTaste::HeldOut(by_user) => by_user.keys().copied().collect(),
        };
        ids.sort_unstable();
        let known = ids
            .into_iter()
            .map(|id| Persona {
                id,
                minor: minors.contains(&id),
            })
            .collect();
        let adult = dataset
            .movies
            .iter()
            .filter(|m| m.adult)
            .map(|m| m.id)
            .collect();
        let mut by_user: HashMap<u32, Vec<u32>> = HashMap::new();
        for r in seen {
            by_user.entry(r.user).or_default().push(r.movie);
        }
        for movies in by_user.values_mut() {
            movies.sort_unstable();
            movies.dedup();
        }
        World {
            taste,
            known,
            max_user,
            adult,
            runtimes,
            source,
            seen: by_user,
        }
    }

    /// Taste of an unknown user id: that of a known user picked by a hash of the id, so the
    /// same unknown id always behaves alike.
    pub fn taste_of_unknown(&self, id: u32) -> u32 {
        let n = self.known.len().max(1) as u64;
        self.known
            .get((crate::util::mix(u64::from(id)) % n) as usize)
            .map_or(0, |p| p.id)
    }
}

/// Options for [`load_world`].
#[derive(Clone, Debug)]
pub struct WorldSource<'a> {
    /// Data directory.
    pub dir: &'a Path,
    /// Seed of the split (held-out taste only).
    pub split_seed: u64,
    /// Held-out fraction of the split.
    pub test_fraction: f64,
}

/// Reads a data directory: `taste.csv` beside it means latent taste, else a seeded split's
/// held-out ratings; `runtimes.csv` beside it gives runtimes, else every movie is
/// [`DEFAULT_RUNTIME_MINUTES`] long (said in [`World::source`]).
///
/// # Errors
/// A message when the data, the taste file or the runtimes file cannot be read or parsed.
pub fn load_world(source: &WorldSource<'_>) -> Result<World, String> {
    let dir = source.dir;
    let loaded = load_dir(dir).map_err(|e| format!("cannot load {}: {e}", dir.display()))?;
    let taste_path = dir.join(TASTE_FILE);
    let (hidden, held_out, seen, taste_words) = if taste_path.is_file() {
        let text = std::fs::read_to_string(&taste_path)
            .map_err(|e| format!("cannot read {}: {e}", taste_path.display()))?;
        let hidden =
            synth::read_taste(&text).map_err(|e| format!("{}: {e}", taste_path.display()))?;
        (
            Some(hidden),
            Vec::new(),
            loaded.dataset.ratings.clone(),
            format!("latent taste from {}", taste_path.display()),
        )
    } else {
        let (train, test) =
            crate::eval::split(&loaded.dataset, source.test_fraction, source.split_seed)
                .map_err(|e| format!("cannot split {}: {e}", dir.display()))?;
        let words = format!(
            "held-out ratings of the split (seed {}, test fraction {}) of {}",
            source.split_seed,
            source.test_fraction,
            dir.display()
        );
        (None, test, train.ratings, words)
    };
    let runtimes_path = dir.join(RUNTIMES_FILE);
    let (runtimes, runtime_words) = if runtimes_path.is_file() {
        let bytes = std::fs::read(&runtimes_path)
            .map_err(|e| format!("cannot read {}: {e}", runtimes_path.display()))?;
        let (known, bad) = parse_runtimes(&bytes, &mut MovieKeys::default())
            .map_err(|e| format!("{}: {e}", runtimes_path.display()))?;
        let words = format!(
            "runtimes of {} movies from {} ({bad} unreadable rows; others {DEFAULT_RUNTIME_MINUTES} min)",
            known.len(),
            runtimes_path.display()
        );
        (
            Runtimes {
                known,
                default: Some(DEFAULT_RUNTIME_MINUTES),
            },
            words,
        )
    } else {
        (
            Runtimes {
                known: HashMap::new(),
                default: Some(DEFAULT_RUNTIME_MINUTES),
            },
            format!(
                "no {RUNTIMES_FILE} in {}: the data has no runtimes, every movie is taken as \
                 {DEFAULT_RUNTIME_MINUTES} min (pass the same to online-eval)",
                dir.display()
            ),
        )
    };
    let world = World::new(
        &loaded.dataset,
        hidden,
        &held_out,
        &seen,
        runtimes,
        format!("{taste_words}; {runtime_words}"),
    );
    if world.known.is_empty() {
        return Err(format!("{}: no user has a hidden taste", dir.display()));
    }
    Ok(world)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rating;

    fn rating(user: u32, movie: u32, value: f32) -> Rating {
        Rating {
            user,
            movie,
            value,
            timestamp: 0,
        }
    }

    #[test]
    fn held_out_ratings_are_the_taste_and_seen_movies_say_nothing() {
        let dataset = Dataset {
            users: Vec::new(),
            movies: Vec::new(),
            ratings: vec![rating(1, 10, 4.0), rating(2, 10, 2.0)],
            watches: Vec::new(),
            scale: crate::data::RatingScale::WHOLE_STARS,
        };
        let held_out = [rating(1, 20, 4.5), rating(1, 30, 1.0), rating(3, 20, 3.0)];
        let seen = [rating(1, 10, 4.0), rating(1, 30, 1.0)];
        let world = World::new(
            &dataset,
            None,
            &held_out,
            &seen,
            Runtimes::default(),
            String::new(),
        );
        let ids: Vec<u32> = world.known.iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![1, 3], "users with a held-out taste");
        assert_eq!(world.max_user, 3);
        assert_eq!(world.stars(1, 20), Some(4.5));
        assert_eq!(world.stars(1, 30), None, "seen: no taste for a rewatch");
        assert_eq!(world.taste.stars(1, 30), Some(1.0));
        assert_eq!(world.stars(1, 99), None);
        assert_eq!(world.runtime(20), DEFAULT_RUNTIME_MINUTES);
        let mut rng = SplitMix64::new(1);
        for _ in 0..50 {
            let pick = world.taste.organic(1, |m| world.has_seen(1, m), &mut rng);
            assert!(pick.is_none() || pick == Some(20), "{pick:?}");
        }
        assert!([1, 3].contains(&world.taste_of_unknown(1_000)));
    }
}
