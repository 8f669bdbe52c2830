//! The seeded train/test split of a data set's ratings, and its files: `train.csv`,
//! `test.csv` (the `MovieLens` "latest" CSV layout) and `split.json`, so that a peer implementation
//! (Surprise, under `bench/surprise/`) evaluates exactly the same pairs.

use std::collections::HashSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::{Dataset, Rating};

use super::EvalError;
use crate::util::mix;

/// Splits `dataset`'s ratings into a training set and held-out test ratings.
///
/// # Guarantees
/// - Exactly `round(n × test_fraction)` ratings are held out.
/// - Deterministic for a given `seed`, and independent of the ratings' input order: each
///   rating is ranked by a hash of `(seed, user, movie)` (input position only breaks ties
///   between duplicate pairs), and the lowest-ranked ratings are held out.
/// - The training set keeps its ratings in input order, and keeps users, movies and the
///   scale. Watches of a held-out (user, movie) pair are dropped from it, so a model does
///   not exclude the very movie the test expects it to find.
/// - Test ratings come out sorted by (user, movie).
pub fn split(
    dataset: &Dataset,
    test_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Vec<Rating>), EvalError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(EvalError::BadTestFraction(test_fraction));
    }
    let n = dataset.ratings.len();
    let n_test = (n as f64 * test_fraction).round() as usize;
    let seed_hash = mix(seed);
    let mut order: Vec<(u64, usize)> = dataset
        .ratings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                mix(seed_hash ^ (u64::from(r.user) << 32 | u64::from(r.movie))),
                i,
            )
        })
        .collect();
    order.sort_unstable();
    let mut held_out = vec![false; n];
    for &(_, i) in &order[..n_test] {
        held_out[i] = true;
    }

    let mut train_ratings = Vec::with_capacity(n - n_test);
    let mut test = Vec::with_capacity(n_test);
    for (rating, &out) in dataset.ratings.iter().zip(&held_out) {
        if out {
            test.push(*rating);
        } else {
            train_ratings.push(*rating);
        }
    }
    test.sort_by_key(|r| (r.user, r.movie, r.timestamp));

    let test_pairs: HashSet<(u32, u32)> = test.iter().map(|r| (r.user, r.movie)).collect();
    let train = Dataset {
        users: dataset.users.clone(),
        movies: dataset.movies.clone(),
        ratings: train_ratings,
        watches: dataset
            .watches
            .iter()
            .filter(|w| !test_pairs.contains(&(w.user, w.movie)))
            .copied()
            .collect(),
        scale: dataset.scale,
    };
    Ok((train, test))
}

/// What [`write_split`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitFiles {
    /// `train.csv`.
    pub train: PathBuf,
    /// `test.csv`.
    pub test: PathBuf,
    /// `split.json`: scale and counts, for readers that cannot infer the scale.
    pub meta: PathBuf,
}

#[derive(Serialize)]
struct SplitMeta {
    format: &'static str,
    rating_min: f32,
    rating_max: f32,
    train_ratings: usize,
    test_ratings: usize,
    catalogue: usize,
}

/// Header of both CSV files (the `MovieLens` "latest" layout).
pub const CSV_HEADER: &str = "userId,movieId,rating,timestamp";

/// Writes `train.csv` and `test.csv` (header [`CSV_HEADER`], ratings in the given order,
/// values printed exactly as stored) and `split.json` (scale, counts, catalogue size) into
/// `dir`, creating it if needed.
pub fn write_split(train: &Dataset, test: &[Rating], dir: &Path) -> Result<SplitFiles, EvalError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvalError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let files = SplitFiles {
        train: dir.join("train.csv"),
        test: dir.join("test.csv"),
        meta: dir.join("split.json"),
    };
    write_csv(&files.train, &train.ratings).map_err(io_err(&files.train))?;
    write_csv(&files.test, test).map_err(io_err(&files.test))?;
    let meta = SplitMeta {
        format: "movielens-latest-csv",
        rating_min: train.scale.min,
        rating_max: train.scale.max,
        train_ratings: train.ratings.len(),
        test_ratings: test.len(),
        catalogue: super::catalogue_size(train),
    };
    let json = serde_json::to_string_pretty(&meta).expect("plain struct serialises");
    fs::write(&files.meta, json + "\n").map_err(io_err(&files.meta))?;
    Ok(files)
}

fn write_csv(path: &Path, ratings: &[Rating]) -> std::io::Result<()> {
    let mut out = BufWriter::new(fs::File::create(path)?);
    writeln!(out, "{CSV_HEADER}")?;
    for r in ratings {
        writeln!(out, "{},{},{},{}", r.user, r.movie, r.value, r.timestamp)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{RatingScale, Watch};

    fn dataset(n_users: u32, n_movies: u32) -> Dataset {
        let mut ratings = Vec::new();
        for user in 1..=n_users {
            for movie in 1..=n_movies {
                if (user * 7 + movie * 3) % 4 != 0 {
                    ratings.push(Rating {
                        user,
                        movie,
                        value: ((user + movie) % 5 + 1) as f32,
                        timestamp: i64::from(user * 1000 + movie),
                    });
                }
            }
        }
        Dataset {
            users: Vec::new(),
            movies: Vec::new(),
            ratings,
            watches: Vec::new(),
            scale: RatingScale::WHOLE_STARS,
        }
    }

    fn pairs(ratings: &[Rating]) -> Vec<(u32, u32)> {
        let mut p: Vec<_> = ratings.iter().map(|r| (r.user, r.movie)).collect();
        p.sort_unstable();
        p
    }

    #[test]
    fn holds_out_the_exact_fraction_and_partitions_the_ratings() {
        let data = dataset(30, 40);
        let n = data.ratings.len();
        let (train, test) = split(&data, 0.2, 7).unwrap();
        assert_eq!(test.len(), (n as f64 * 0.2).round() as usize);
        assert_eq!(train.ratings.len() + test.len(), n);
        let mut all = pairs(&train.ratings);
        all.extend(pairs(&test));
        all.sort_unstable();
        assert_eq!(all, pairs(&data.ratings));
    }

    #[test]
    fn same_seed_same_split_regardless_of_input_order() {
        let data = dataset(20, 30);
        let (_, test_a) = split(&data, 0.2, 42).unwrap();
        let mut reversed = data.clone();
        reversed.ratings.reverse();
        let (_, test_b) = split(&reversed, 0.2, 42).unwrap();
        assert_eq!(test_a, test_b);
        let (_, test_c) = split(&data, 0.2, 43).unwrap();
        assert_ne!(pairs(&test_a), pairs(&test_c));
    }

    #[test]
    fn train_keeps_input_order() {
        let data = dataset(10, 10);
        let (train, _) = split(&data, 0.3, 1).unwrap();
        let positions: Vec<usize> = train
            .ratings
            .iter()
            .map(|r| data.ratings.iter().position(|d| d == r).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn drops_watches_of_held_out_pairs_only() {
        let mut data = dataset(10, 10);
        data.watches = data
            .ratings
            .iter()
            .map(|r| Watch {
                user: r.user,
                movie: r.movie,
                minute: 3,
                timestamp: 0,
            })
            .collect();
        let (train, test) = split(&data, 0.25, 9).unwrap();
        assert_eq!(train.watches.len(), data.watches.len() - test.len());
        let held: HashSet<(u32, u32)> = test.iter().map(|r| (r.user, r.movie)).collect();
        assert!(
            train
                .watches
                .iter()
                .all(|w| !held.contains(&(w.user, w.movie)))
        );
    }

    #[test]
    fn rejects_fractions_outside_zero_one() {
        let data = dataset(3, 3);
        for bad in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(
                split(&data, bad, 1),
                Err(EvalError::BadTestFraction(_))
            ));
        }
    }

    #[test]
    fn writes_files_that_read_back_to_the_same_pairs() {
        let mut data = dataset(8, 9);
        data.ratings[0].value = 3.5;
        data.scale = RatingScale::HALF_STARS;
        let (train, test) = split(&data, 0.2, 5).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = write_split(&train, &test, dir.path()).unwrap();
        for (path, want) in [(&files.train, &train.ratings), (&files.test, &test)] {
            let contents = fs::read_to_string(path).unwrap();
            let mut lines = contents.lines();
            assert_eq!(lines.next(), Some(CSV_HEADER));
            let got: Vec<Rating> = lines
                .map(|line| {
                    let f: Vec<&str> = line.split(',').collect();
                    Rating {
                        user: f[0].parse().unwrap(),
                        movie: f[1].parse().unwrap(),
                        value: f[2].parse().unwrap(),
                        timestamp: f[3].parse().unwrap(),
                    }
                })
                .collect();
            assert_eq!(&got, want);
        }
        let meta: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&files.meta).unwrap()).unwrap();
        assert_eq!(meta["rating_min"], 0.5);
        assert_eq!(meta["test_ratings"], test.len());
        assert_eq!(meta["catalogue"], 9);
    }
}
