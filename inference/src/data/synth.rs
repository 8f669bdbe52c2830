//! Deterministic synthetic data sets with real collaborative signal, at any scale.
//!
//! # Model
//! A hidden latent-factor model decides every rating: each user and movie has an
//! 8-dimensional taste vector and a bias, and
//! `rating = round(3.55 + user bias + movie bias + 0.75·affinity + noise)` clipped to 1–5,
//! where `affinity` is the scaled dot product of the two vectors. Users' vectors lean
//! towards vectors shared by their gender, age bucket and occupation, and movies' towards
//! those of their genres, so demographics predict taste a little and genres a lot.
//! Which movies a user rates follows a Zipf-like popularity (a random rank per movie)
//! tilted by affinity: people mostly rate what they like, as in real logs. User activity
//! is log-normal: many users rate fewer than five movies, a few rate thousands.
//!
//! # Hidden truth beside the data
//! [`generate_with_truth`] also returns what the data hides ([`Hidden`]): every user's and
//! movie's bias and taste vector, and a generated runtime per movie (log-normal around
//! 105 min, 60–240). [`write_hidden`] writes them beside the data set as two CSV files, so
//! the traffic simulator can act like the users who rated it:
//! - [`TASTE_FILE`] (`taste.csv`): header `kind,id,bias,t1,…,t8`, then one row per user
//!   (`kind` = `user`) and per movie (`movie`), ids as in `users.dat`/`movies.dat`, numbers
//!   as the shortest text that reads back to the same `f32`. A user's expected rating of a
//!   movie is [`expected_stars`]: `3.55 + user bias + movie bias + 0.75·(t_u·t_m)/√8`, the
//!   rating model above without its noise.
//! - [`RUNTIMES_FILE`] (`runtimes.csv`): header `movieId,runtime`, whole minutes: the
//!   movie metadata format `movrek online-eval --movies` reads.
//!
//! Both come from streams of their own, so the data files are byte-identical to what a
//! generator without them wrote.
//!
//! # Guarantees
//! The output depends only on [`SynthParams`]: every user, movie and rating list draws
//! from its own random stream (SplitMix64 seeded by seed, kind and index), so the result
//! is identical across runs, machines and thread counts. The rating count is exact unless
//! users would need more distinct movies than the catalogue holds.

use rayon::prelude::*;

use super::movielens::ADULT_GENRE;
use super::{AgeBucket, Dataset, Gender, Movie, Rating, RatingScale, User};
pub use crate::util::SplitMix64;

/// Dimensions of the hidden taste vectors.
const DIMS: usize = 8;
/// Users per parallel work item.
const USER_CHUNK: usize = 2048;

/// Knobs of the generator. Build with struct update syntax:
/// `SynthParams { users: 1000, ..SynthParams::default() }`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthParams {
    /// Number of users (ids `1..=users`).
    pub users: usize,
    /// Number of movies (ids `1..=movies`).
    pub movies: usize,
    /// Number of ratings to draw.
    pub ratings: usize,
    /// Random seed.
    pub seed: u64,
    /// Share of users under 18.
    pub minor_share: f64,
    /// Share of movies in genre `Adult`.
    pub adult_share: f64,
    /// Zipf exponent of movie popularity (higher: a heavier head).
    pub popularity_exponent: f64,
    /// Log-normal sigma of user activity (higher: more users with few ratings and more
    /// heavy users).
    pub activity_sigma: f64,
    /// Standard deviation of the rating noise, in stars.
    pub noise: f64,
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            users: 2_000,
            movies: 1_000,
            ratings: 100_000,
            seed: 42,
            minor_share: 0.06,
            adult_share: 0.03,
            popularity_exponent: 0.9,
            activity_sigma: 1.3,
            noise: 0.5,
        }
    }
}

impl SplitMix64 {
    /// Index drawn with probability proportional to `weights`.
    fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.next_f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

// Stream kinds.
const KIND_GROUP: u64 = 1;
const KIND_MOVIE: u64 = 2;
const KIND_RANK: u64 = 3;
const KIND_USER: u64 = 4;
const KIND_RATINGS: u64 = 5;
const KIND_RUNTIME: u64 = 6;

/// File name of the hidden taste vectors beside a generated data set.
pub const TASTE_FILE: &str = "taste.csv";
/// File name of the generated movie runtimes beside a generated data set.
pub const RUNTIMES_FILE: &str = "runtimes.csv";

const GENRES: [(&str, f64); 18] = [
    ("Drama", 25.0),
    ("Comedy", 20.0),
    ("Thriller", 9.0),
    ("Action", 9.0),
    ("Romance", 8.0),
    ("Adventure", 5.0),
    ("Crime", 5.0),
    ("Sci-Fi", 4.0),
    ("Horror", 5.0),
    ("Children's", 3.0),
    ("War", 2.0),
    ("Documentary", 2.0),
    ("Musical", 2.0),
    ("Mystery", 2.0),
    ("Animation", 2.0),
    ("Fantasy", 2.0),
    ("Western", 1.0),
    ("Film-Noir", 1.0),
];

/// Age-bucket weights of adult users (Under18 is drawn apart, with `minor_share`).
const ADULT_AGE_WEIGHTS: [f64; 6] = [0.19, 0.36, 0.20, 0.09, 0.08, 0.06];
const OCCUPATIONS: u64 = 21;
const WORDS_A: [&str; 12] = [
    "Silent", "Broken", "Golden", "Last", "Hidden", "Wild", "Crimson", "Distant", "Midnight",
    "Lost", "Bright", "Iron",
];
const WORDS_B: [&str; 12] = [
    "River", "Empire", "Summer", "Promise", "Harbor", "Signal", "Garden", "Frontier", "Mirror",
    "Station", "Kingdom", "Echo",
];

type Taste = [f32; DIMS];

fn random_taste(rng: &mut SplitMix64) -> Taste {
    std::array::from_fn(|_| rng.normal() as f32)
}

fn dot(a: &Taste, b: &Taste) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Shared taste vectors of demographic groups and genres.
struct Groups {
    gender: [Taste; 2],
    age: [Taste; 7],
    occupation: Vec<Taste>,
    genre: Vec<Taste>,
}

impl Groups {
    fn new(seed: u64) -> Self {
        let mut index = 0;
        let mut next = || {
            index += 1;
            random_taste(&mut SplitMix64::stream(seed, KIND_GROUP, index))
        };
        Groups {
            gender: std::array::from_fn(|_| next()),
            age: std::array::from_fn(|_| next()),
            occupation: (0..OCCUPATIONS).map(|_| next()).collect(),
            genre: (0..GENRES.len()).map(|_| next()).collect(),
        }
    }
}

/// Hidden per-movie truth.
struct MovieTruth {
    taste: Taste,
    bias: f32,
    adult: bool,
}

/// Hidden per-user truth.
struct UserTruth {
    taste: Taste,
    bias: f32,
    minor: bool,
    activity: f64,
}

/// Generates a data set; see the module docs for the model and guarantees.
pub fn generate(params: &SynthParams) -> Dataset {
    generate_with_truth(params).0
}

/// One user's or movie's hidden bias and taste vector.
#[derive(Clone, Debug, PartialEq)]
pub struct HiddenEntity {
    /// Bias in stars.
    pub bias: f32,
    /// Taste vector.
    pub taste: [f32; DIMS],
}

/// What a generated data set hides: the truth behind its ratings, and movie runtimes.
#[derive(Clone, Debug, PartialEq)]
pub struct Hidden {
    /// Per user, in id order (user `i + 1` at index `i`).
    pub users: Vec<HiddenEntity>,
    /// Per movie, in id order.
    pub movies: Vec<HiddenEntity>,
    /// Runtime in whole minutes per movie, in id order.
    pub runtimes: Vec<u32>,
}

/// The expected rating (before rounding and clipping) of a movie by a user: the generator's
/// rating model without its noise.
pub fn expected_stars(user: &HiddenEntity, movie: &HiddenEntity) -> f64 {
    3.55 + f64::from(user.bias)
        + f64::from(movie.bias)
        + 0.75 * f64::from(dot(&user.taste, &movie.taste) / (DIMS as f32).sqrt())
}

/// [`generate`], and the hidden truth behind the data (see the module docs).
pub fn generate_with_truth(params: &SynthParams) -> (Dataset, Hidden) {
    let groups = Groups::new(params.seed);
    let ranks = popularity_ranks(params.seed, params.movies);
    let (movies, movie_truth): (Vec<Movie>, Vec<MovieTruth>) = (0..params.movies)
        .into_par_iter()
        .map(|i| make_movie(params, &groups, i, ranks[i]))
        .unzip();
    let popularity_cdf = popularity_cdf(params, &ranks, &movie_truth);
    let (users, user_truth): (Vec<User>, Vec<UserTruth>) = (0..params.users)
        .into_par_iter()
        .map(|i| make_user(params, &groups, i))
        .unzip();
    let counts = rating_counts(params, &user_truth);
    let ratings = make_ratings(params, &counts, &user_truth, &movie_truth, &popularity_cdf);
    let hidden = Hidden {
        users: user_truth
            .iter()
            .map(|u| HiddenEntity {
                bias: u.bias,
                taste: u.taste,
            })
            .collect(),
        movies: movie_truth
            .iter()
            .map(|m| HiddenEntity {
                bias: m.bias,
                taste: m.taste,
            })
            .collect(),
        runtimes: (0..params.movies)
            .map(|i| runtime(params.seed, i))
            .collect(),
    };
    let dataset = Dataset {
        users,
        movies,
        ratings,
        watches: Vec::new(),
        scale: RatingScale::WHOLE_STARS,
    };
    (dataset, hidden)
}

/// A movie's runtime in minutes: log-normal around 105, clipped to 60–240.
fn runtime(seed: u64, index: usize) -> u32 {
    let mut rng = SplitMix64::stream(seed, KIND_RUNTIME, index as u64);
    (105.0 * (0.2 * rng.normal()).exp())
        .round()
        .clamp(60.0, 240.0) as u32
}

/// Writes [`TASTE_FILE`] and [`RUNTIMES_FILE`] into `dir` (formats in the module docs).
///
/// # Errors
/// The first failing write.
pub fn write_hidden(hidden: &Hidden, dir: &std::path::Path) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut taste = String::from("kind,id,bias");
    for d in 1..=DIMS {
        let _ = write!(taste, ",t{d}");
    }
    taste.push('\n');
    for (kind, rows) in [("user", &hidden.users), ("movie", &hidden.movies)] {
        for (i, row) in rows.iter().enumerate() {
            let _ = write!(taste, "{kind},{},{}", i + 1, row.bias);
            for x in row.taste {
                let _ = write!(taste, ",{x}");
            }
            taste.push('\n');
        }
    }
    std::fs::write(dir.join(TASTE_FILE), taste)?;
    let mut runtimes = String::from("movieId,runtime\n");
    for (i, minutes) in hidden.runtimes.iter().enumerate() {
        let _ = writeln!(runtimes, "{},{minutes}", i + 1);
    }
    std::fs::write(dir.join(RUNTIMES_FILE), runtimes)
}

/// Reads a [`TASTE_FILE`]: the users and movies of a [`Hidden`] (its runtimes stay empty;
/// they are movie metadata, read by [`crate::online::parse_runtimes`]).
///
/// # Errors
/// A message naming the first bad line: wrong header, field count, kind, id out of
/// sequence or a number that does not parse.
pub fn read_taste(text: &str) -> Result<Hidden, String> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, h)| h.trim_end()).unwrap_or_default();
    if !header.starts_with("kind,id,bias,t1") || header.split(',').count() != 3 + DIMS {
        return Err(format!(
            "line 1: expected the header kind,id,bias,t1..t{DIMS}, found {header:?}"
        ));
    }
    let mut hidden = Hidden {
        users: Vec::new(),
        movies: Vec::new(),
        runtimes: Vec::new(),
    };
    for (number, line) in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}: {line:?}", number + 1);
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 3 + DIMS {
            return Err(bad("wrong field count"));
        }
        let rows = match fields[0] {
            "user" => &mut hidden.users,
            "movie" => &mut hidden.movies,
            _ => return Err(bad("kind is neither user nor movie")),
        };
        if fields[1].parse::<usize>().ok() != Some(rows.len() + 1) {
            return Err(bad("ids must run 1, 2, … per kind"));
        }
        let number = |text: &str| text.parse::<f32>().map_err(|_| bad("not a number"));
        let mut taste = [0f32; DIMS];
        for (slot, text) in taste.iter_mut().zip(&fields[3..]) {
            *slot = number(text)?;
        }
        rows.push(HiddenEntity {
            bias: number(fields[2])?,
            taste,
        });
    }
    Ok(hidden)
}

/// A random permutation: `ranks[movie]` is its popularity rank (0 = most popular).
fn popularity_ranks(seed: u64, movies: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..movies as u32).collect();
    let mut rng = SplitMix64::stream(seed, KIND_RANK, 0);
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut ranks = vec![0u32; movies];
    for (rank, &movie) in order.iter().enumerate() {
        ranks[movie as usize] = rank as u32;
    }
    ranks
}

fn make_movie(
    params: &SynthParams,
    groups: &Groups,
    index: usize,
    rank: u32,
) -> (Movie, MovieTruth) {
    let mut rng = SplitMix64::stream(params.seed, KIND_MOVIE, index as u64);
    let genre_count = 1 + rng.weighted(&[0.45, 0.35, 0.20]);
    let weights: Vec<f64> = GENRES.iter().map(|(_, w)| *w).collect();
    let mut picked: Vec<usize> = Vec::with_capacity(genre_count);
    while picked.len() < genre_count {
        let g = rng.weighted(&weights);
        if !picked.contains(&g) {
            picked.push(g);
        }
    }
    picked.sort_unstable();
    let adult = rng.next_f64() < params.adult_share;
    let mut genres: Vec<String> = picked.iter().map(|&g| GENRES[g].0.to_owned()).collect();
    if adult {
        genres.push(ADULT_GENRE.to_owned());
    }
    let age = (-(1.0 - rng.next_f64()).ln() * 15.0).floor() as u16;
    let year = 2020u16.saturating_sub(age).max(1920);
    let title = format!(
        "{} {} {}",
        WORDS_A[rng.below(WORDS_A.len() as u64) as usize],
        WORDS_B[rng.below(WORDS_B.len() as u64) as usize],
        index + 1
    );
    let genre_share = 0.8 / (picked.len() as f32).sqrt();
    let own = random_taste(&mut rng);
    let taste: Taste = std::array::from_fn(|d| {
        picked.iter().map(|&g| groups.genre[g][d]).sum::<f32>() * genre_share + 0.6 * own[d]
    });
    // Popular movies are a little better on average, as in real data.
    let rank_fraction = f64::from(rank) / params.movies.max(1) as f64;
    let bias = (0.35 * rng.normal() + 0.3 * (0.5 - rank_fraction)) as f32;
    let movie = Movie {
        id: index as u32 + 1,
        title,
        year: Some(year),
        genres,
        adult,
        external_rating: None,
    };
    (movie, MovieTruth { taste, bias, adult })
}

/// Cumulative popularity weights in movie order (Zipf over ranks; adult movies rarer).
fn popularity_cdf(params: &SynthParams, ranks: &[u32], truth: &[MovieTruth]) -> Vec<f64> {
    let mut total = 0.0;
    ranks
        .iter()
        .zip(truth)
        .map(|(&rank, t)| {
            let mut weight = (f64::from(rank) + 3.0).powf(-params.popularity_exponent);
            if t.adult {
                weight *= 0.3;
            }
            total += weight;
            total
        })
        .collect()
}

fn make_user(params: &SynthParams, groups: &Groups, index: usize) -> (User, UserTruth) {
    let mut rng = SplitMix64::stream(params.seed, KIND_USER, index as u64);
    let gender = if rng.next_f64() < 0.71 {
        Gender::Male
    } else {
        Gender::Female
    };
    let age = if rng.next_f64() < params.minor_share {
        AgeBucket::Under18
    } else {
        AgeBucket::ALL[1 + rng.weighted(&ADULT_AGE_WEIGHTS)]
    };
    let occupation = rng.below(OCCUPATIONS) as usize;
    let own = random_taste(&mut rng);
    let gender_taste = &groups.gender[usize::from(gender == Gender::Male)];
    let age_taste = &groups.age[AgeBucket::ALL.iter().position(|&a| a == age).unwrap_or(0)];
    let occupation_taste = &groups.occupation[occupation];
    let taste: Taste = std::array::from_fn(|d| {
        (0.5 * gender_taste[d] + 0.5 * age_taste[d] + 0.4 * occupation_taste[d] + 0.7 * own[d])
            / 1.07
    });
    let bias = (0.3 * rng.normal()) as f32;
    let activity = (params.activity_sigma * rng.normal()).exp();
    let user = User {
        id: index as u32 + 1,
        gender: Some(gender),
        age: Some(age),
        occupation: Some(occupation.to_string()),
    };
    let truth = UserTruth {
        taste,
        bias,
        minor: age.is_minor(),
        activity,
    };
    (user, truth)
}

/// Ratings per user: everyone gets one when there are enough ratings, the rest is shared
/// in proportion to activity with exact rounding of the running sum. Users above the
/// catalogue size are capped and their excess goes, one rating per round, to the most
/// active users with room left, so the total is exact whenever the catalogue allows.
fn rating_counts(params: &SynthParams, users: &[UserTruth]) -> Vec<usize> {
    let cap = params.movies;
    let base = usize::from(params.ratings >= params.users && cap > 0);
    let extra = params.ratings - base * params.users;
    let total_weight: f64 = users.iter().map(|u| u.activity).sum();
    let mut running = 0.0;
    let mut assigned = 0usize;
    let mut counts: Vec<usize> = users
        .iter()
        .map(|u| {
            running += u.activity;
            let target = (extra as f64 * running / total_weight).round() as usize;
            let share = target.saturating_sub(assigned);
            assigned = assigned.max(target);
            base + share
        })
        .collect();
    let excess: usize = counts.iter().map(|&n| n.saturating_sub(cap)).sum();
    if excess == 0 {
        return counts;
    }
    for n in &mut counts {
        *n = (*n).min(cap);
    }
    let mut by_activity: Vec<usize> = (0..users.len()).collect();
    by_activity.sort_by(|&a, &b| {
        users[b]
            .activity
            .total_cmp(&users[a].activity)
            .then(a.cmp(&b))
    });
    let mut left = excess;
    while left > 0 {
        let before = left;
        for &user in &by_activity {
            if left == 0 {
                break;
            }
            if counts[user] < cap {
                counts[user] += 1;
                left -= 1;
            }
        }
        if left == before {
            break; // every user rates the whole catalogue
        }
    }
    counts
}

fn affinity(user: &UserTruth, movie: &MovieTruth) -> f32 {
    dot(&user.taste, &movie.taste) / (DIMS as f32).sqrt()
}

/// Probability that a user who comes across a movie rates it.
fn acceptance(user: &UserTruth, movie: &MovieTruth) -> f64 {
    let liking = 1.0 / (1.0 + (-1.5 * f64::from(affinity(user, movie))).exp());
    let p = 0.15 + 0.85 * liking;
    if user.minor && movie.adult {
        p * 0.1
    } else {
        p
    }
}

fn make_ratings(
    params: &SynthParams,
    counts: &[usize],
    users: &[UserTruth],
    movies: &[MovieTruth],
    cdf: &[f64],
) -> Vec<Rating> {
    let total: usize = counts.iter().sum();
    let mut ratings = vec![
        Rating {
            user: 0,
            movie: 0,
            value: 0.0,
            timestamp: 0,
        };
        total
    ];
    // Carve the output into one slice per chunk of users, then fill chunks in parallel.
    let mut slices: Vec<(usize, &mut [Rating])> = Vec::with_capacity(counts.len() / USER_CHUNK + 1);
    let mut rest = ratings.as_mut_slice();
    for (chunk_index, chunk_counts) in counts.chunks(USER_CHUNK).enumerate() {
        let (head, tail) = rest.split_at_mut(chunk_counts.iter().sum());
        slices.push((chunk_index * USER_CHUNK, head));
        rest = tail;
    }
    slices.into_par_iter().for_each(|(first_user, out)| {
        let mut picked = Vec::new();
        let mut filled = 0;
        for user in first_user..(first_user + USER_CHUNK).min(counts.len()) {
            let n = counts[user];
            let mut rng = SplitMix64::stream(params.seed, KIND_RATINGS, user as u64);
            pick_movies(&mut rng, &users[user], movies, cdf, n, &mut picked);
            let start = 946_684_800 + rng.below(20 * 365 * 86_400) as i64;
            for (slot, &movie) in out[filled..filled + n].iter_mut().zip(&picked) {
                *slot = rate(
                    params,
                    &mut rng,
                    user,
                    &users[user],
                    movie,
                    &movies[movie as usize],
                    start,
                );
            }
            filled += n;
        }
    });
    ratings
}

fn rate(
    params: &SynthParams,
    rng: &mut SplitMix64,
    user_index: usize,
    user: &UserTruth,
    movie_index: u32,
    movie: &MovieTruth,
    start: i64,
) -> Rating {
    let raw = 3.55
        + f64::from(user.bias)
        + f64::from(movie.bias)
        + 0.75 * f64::from(affinity(user, movie))
        + params.noise * rng.normal();
    // `expected_stars` is this expression without the noise term; keep the two in step.
    Rating {
        user: user_index as u32 + 1,
        movie: movie_index + 1,
        value: raw.round().clamp(1.0, 5.0) as f32,
        timestamp: start + rng.below(2 * 365 * 86_400) as i64,
    }
}

/// Fills `picked` with `n` distinct movie indices in ascending order.
fn pick_movies(
    rng: &mut SplitMix64,
    user: &UserTruth,
    movies: &[MovieTruth],
    cdf: &[f64],
    n: usize,
    picked: &mut Vec<u32>,
) {
    picked.clear();
    if n == 0 {
        return;
    }
    if n * 4 > movies.len() {
        pick_by_keys(rng, user, movies, cdf, n, picked);
        return;
    }
    let total = cdf[cdf.len() - 1];
    while picked.len() < n {
        for _ in picked.len()..n {
            loop {
                let x = rng.next_f64() * total;
                let movie = cdf.partition_point(|&c| c <= x).min(movies.len() - 1);
                if rng.next_f64() < acceptance(user, &movies[movie]) {
                    picked.push(movie as u32);
                    break;
                }
            }
        }
        picked.sort_unstable();
        picked.dedup();
    }
}

/// Weighted sampling without replacement over the whole catalogue (Efraimidis–Spirakis
/// keys), for users who rate a large share of it.
fn pick_by_keys(
    rng: &mut SplitMix64,
    user: &UserTruth,
    movies: &[MovieTruth],
    cdf: &[f64],
    n: usize,
    picked: &mut Vec<u32>,
) {
    let mut keys: Vec<(f64, u32)> = movies
        .iter()
        .enumerate()
        .map(|(i, movie)| {
            let popularity = cdf[i] - if i == 0 { 0.0 } else { cdf[i - 1] };
            let weight = popularity * acceptance(user, movie);
            let u = 1.0 - rng.next_f64();
            (u.ln() / weight, i as u32)
        })
        .collect();
    let by_key_desc = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if n < keys.len() {
        keys.select_nth_unstable_by(n - 1, by_key_desc);
    }
    picked.extend(keys[..n].iter().map(|&(_, i)| i));
    picked.sort_unstable();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthParams {
        SynthParams {
            users: 3_000,
            movies: 400,
            ratings: 40_000,
            seed: 7,
            ..SynthParams::default()
        }
    }

    #[test]
    fn splitmix_is_uniform_enough_and_bounded() {
        let mut rng = SplitMix64::new(1);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let x = rng.below(10);
            buckets[x as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (9_000..11_000).contains(&b)),
            "{buckets:?}"
        );
        let mean: f64 = (0..100_000).map(|_| rng.normal()).sum::<f64>() / 100_000.0;
        assert!(mean.abs() < 0.02, "{mean}");
    }

    #[test]
    fn exact_rating_count_sorted_and_unique() {
        let data = generate(&small());
        assert_eq!(data.ratings.len(), 40_000);
        assert_eq!(data.users.len(), 3_000);
        assert_eq!(data.movies.len(), 400);
        assert!(
            data.ratings
                .windows(2)
                .all(|w| (w[0].user, w[0].movie) < (w[1].user, w[1].movie))
        );
        assert!(
            data.ratings
                .iter()
                .all(|r| (1.0..=5.0).contains(&r.value) && r.value.fract() == 0.0)
        );
        assert!(
            data.ratings
                .iter()
                .all(|r| r.movie >= 1 && r.movie <= 400 && r.user >= 1)
        );
    }

    #[test]
    fn tiny_catalogues_cap_heavy_users() {
        let data = generate(&SynthParams {
            users: 10,
            movies: 5,
            ratings: 1_000,
            ..SynthParams::default()
        });
        // Everyone is capped at the catalogue: all 50 pairs, no more.
        assert_eq!(data.ratings.len(), 50);
        let mut per_user = [0usize; 11];
        for r in &data.ratings {
            per_user[r.user as usize] += 1;
        }
        assert!(per_user.iter().all(|&n| n <= 5));
    }

    #[test]
    fn empty_parameters_give_an_empty_set() {
        let data = generate(&SynthParams {
            users: 0,
            movies: 0,
            ratings: 0,
            ..SynthParams::default()
        });
        assert!(data.ratings.is_empty() && data.users.is_empty());
        let no_movies = generate(&SynthParams {
            users: 5,
            movies: 0,
            ratings: 10,
            ..SynthParams::default()
        });
        assert!(no_movies.ratings.is_empty());
    }

    #[test]
    fn result_does_not_depend_on_thread_count() {
        let params = small();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| generate(&params));
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| generate(&params));
        assert_eq!(one, three);
    }

    #[test]
    fn hidden_truth_round_trips_and_leaves_the_data_unchanged() {
        let params = SynthParams {
            users: 40,
            movies: 30,
            ratings: 300,
            ..SynthParams::default()
        };
        let (data, hidden) = generate_with_truth(&params);
        assert_eq!(data, generate(&params));
        assert_eq!((hidden.users.len(), hidden.movies.len()), (40, 30));
        assert!(hidden.runtimes.iter().all(|m| (60..=240).contains(m)));
        let dir = tempfile::tempdir().unwrap();
        write_hidden(&hidden, dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(TASTE_FILE)).unwrap();
        let back = read_taste(&text).unwrap();
        assert_eq!(
            (back.users, back.movies),
            (hidden.users.clone(), hidden.movies.clone())
        );
        let runtimes = std::fs::read(dir.path().join(RUNTIMES_FILE)).unwrap();
        let (known, bad) =
            crate::online::parse_runtimes(&runtimes, &mut crate::online::MovieKeys::default())
                .unwrap();
        assert_eq!((known.len(), bad), (30, 0));
        // The ratings follow the expected stars: high expectations, high ratings.
        let mean = |keep: &dyn Fn(f64) -> bool| {
            let picked: Vec<f64> = data
                .ratings
                .iter()
                .filter(|r| {
                    let u = &hidden.users[r.user as usize - 1];
                    let m = &hidden.movies[r.movie as usize - 1];
                    keep(expected_stars(u, m))
                })
                .map(|r| f64::from(r.value))
                .collect();
            picked.iter().sum::<f64>() / picked.len() as f64
        };
        assert!(mean(&|e| e > 4.0) > mean(&|e| e < 3.0) + 1.0);
        assert!(read_taste("kind,id\n").is_err());
        assert!(read_taste(&text.replacen("user,1,", "user,2,", 1)).is_err());
    }

    #[test]
    fn heavy_users_sample_without_replacement() {
        let data = generate(&SynthParams {
            users: 50,
            movies: 200,
            ratings: 5_000,
            activity_sigma: 2.0,
            ..SynthParams::default()
        });
        let mut per_user = [0usize; 51];
        for r in &data.ratings {
            per_user[r.user as usize] += 1;
        }
        // Users above 50 ratings went through the whole-catalogue sampler.
        assert!(per_user.iter().any(|&n| n > 50));
        assert!(per_user.iter().all(|&n| n <= 200));
        assert!(
            data.ratings
                .windows(2)
                .all(|w| (w[0].user, w[0].movie) < (w[1].user, w[1].movie))
        );
    }
}
