//! The synthetic generator end to end: determinism by seed, the shape of what it draws,
//! real signal in the ratings, and a lossless ML-1M write → load round trip.

use std::collections::HashMap;

use movrek_inference::data::synth::{SynthParams, generate};
use movrek_inference::data::{AgeBucket, Dataset, load_dir, write_ml1m};

fn params(seed: u64) -> SynthParams {
    SynthParams {
        users: 20_000,
        movies: 600,
        ratings: 250_000,
        seed,
        ..SynthParams::default()
    }
}

fn digest_of(data: &Dataset) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_ml1m(data, dir.path()).unwrap();
    load_dir(dir.path()).unwrap().sha256
}

#[test]
fn same_seed_same_files_other_seed_other_files() {
    let small = |seed| SynthParams {
        users: 500,
        movies: 100,
        ratings: 5_000,
        seed,
        ..SynthParams::default()
    };
    let a = digest_of(&generate(&small(1)));
    assert_eq!(a, digest_of(&generate(&small(1))));
    assert_ne!(a, digest_of(&generate(&small(2))));
}

#[test]
fn shape_long_tails_minors_and_adult_movies() {
    let data = generate(&params(11));
    let mut per_user: HashMap<u32, usize> = HashMap::new();
    let mut per_movie: HashMap<u32, usize> = HashMap::new();
    for r in &data.ratings {
        *per_user.entry(r.user).or_default() += 1;
        *per_movie.entry(r.movie).or_default() += 1;
    }
    let light = per_user.values().filter(|&&n| n < 5).count() as f64 / data.users.len() as f64;
    assert!(light > 0.25, "share of users with < 5 ratings: {light}");
    let heaviest = per_user.values().copied().max().unwrap();
    assert!(heaviest > 200, "heaviest user has only {heaviest} ratings");

    let mut movie_counts: Vec<usize> = per_movie.values().copied().collect();
    movie_counts.sort_unstable_by(|a, b| b.cmp(a));
    let head: usize = movie_counts[..data.movies.len() / 10].iter().sum();
    let head_share = head as f64 / data.ratings.len() as f64;
    assert!(
        head_share > 0.4,
        "top 10% of movies hold only {head_share} of ratings"
    );

    let minors = data
        .users
        .iter()
        .filter(|u| u.age == Some(AgeBucket::Under18))
        .count();
    assert!(minors > 500 && minors < 2_000, "{minors} minors");
    let adult = data.movies.iter().filter(|m| m.adult).count();
    assert!(adult > 3 && adult < 60, "{adult} adult movies");
    assert!(
        data.movies
            .iter()
            .filter(|m| m.adult)
            .all(|m| m.genres.iter().any(|g| g == "Adult"))
    );
}

/// Held-out RMSE of a predictor over a deterministic 1-in-5 split.
fn held_out_rmse(data: &Dataset, group_of: impl Fn(u32) -> u32) -> f64 {
    let is_test = |i: usize| i.is_multiple_of(5);
    let mut sums: HashMap<(u32, u32), (f64, f64)> = HashMap::new();
    let mut movie_sums: HashMap<u32, (f64, f64)> = HashMap::new();
    for (i, r) in data.ratings.iter().enumerate() {
        if !is_test(i) {
            let entry = sums.entry((group_of(r.user), r.movie)).or_default();
            entry.0 += f64::from(r.value);
            entry.1 += 1.0;
            let entry = movie_sums.entry(r.movie).or_default();
            entry.0 += f64::from(r.value);
            entry.1 += 1.0;
        }
    }
    let (mut err, mut n) = (0.0, 0.0);
    for (i, r) in data.ratings.iter().enumerate() {
        if is_test(i) {
            let (ms, mc) = movie_sums.get(&r.movie).copied().unwrap_or((3.5, 1.0));
            let movie_mean = ms / mc;
            let (gs, gc) = sums
                .get(&(group_of(r.user), r.movie))
                .copied()
                .unwrap_or_default();
            // Shrink the group mean towards the movie mean.
            let predicted = (gs + 10.0 * movie_mean) / (gc + 10.0);
            err += (predicted - f64::from(r.value)).powi(2);
            n += 1.0;
        }
    }
    (err / n).sqrt()
}

#[test]
fn demographics_carry_taste_signal() {
    let data = generate(&params(5));
    let demographic: HashMap<u32, u32> = data
        .users
        .iter()
        .map(|u| {
            let gender = u32::from(u.gender == data.users[0].gender);
            let age = AgeBucket::ALL
                .iter()
                .position(|&a| Some(a) == u.age)
                .unwrap() as u32;
            (u.id, gender * 10 + age)
        })
        .collect();
    let by_movie_only = held_out_rmse(&data, |_| 0);
    let by_demographics = held_out_rmse(&data, |user| demographic[&user]);
    assert!(
        by_demographics < by_movie_only - 0.01,
        "demographic RMSE {by_demographics} vs movie-mean RMSE {by_movie_only}"
    );
}

#[test]
fn ml1m_round_trip_is_lossless() {
    let mut data = generate(&SynthParams {
        users: 300,
        movies: 80,
        ratings: 4_000,
        seed: 3,
        ..SynthParams::default()
    });
    // Fields only imdb.csv can carry must survive too.
    data.movies[0].external_rating = Some(7.5);
    data.movies[1].adult = true;
    data.movies[1].genres.retain(|g| g != "Adult");
    data.users[0].occupation = None;
    let dir = tempfile::tempdir().unwrap();
    write_ml1m(&data, dir.path()).unwrap();
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded.report.malformed, 0, "{}", loaded.report.to_table());
    assert_eq!(loaded.report.missing_demographics, 1);
    assert_eq!(loaded.dataset, data);
}
