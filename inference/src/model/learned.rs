//! The learned-weight part of the served model ([`Learned`]): pruned EASE^R item-item
//! weights or implicit-ALS factors, built from the model's own rating rows by
//! [`super::ease`] and [`super::als`], and the invariants a loaded artifact must meet.

use super::als::{self, Factors};
use super::ease::{self, EaseError};
use super::{AlsHyper, Csr, Lists, validate_bound};

/// What the learned ranking keeps for serving. Empty parts belong to the other algorithm.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Learned {
    /// EASE: row `j` (a movie index) lists the movies a rating of `j` adds to, with the
    /// weight. Either no rows at all or one row per movie.
    pub item_weights: Csr,
    /// ALS: the movie index of each factor row, ascending.
    pub factor_movies: Vec<u32>,
    /// ALS: `factor_movies.len() × k` movie factors, row-major.
    pub movie_factors: Vec<f32>,
    /// ALS: `users × k` user factors, row-major.
    pub user_factors: Vec<f32>,
}

impl Learned {
    /// Factors per row (0 without ALS factors).
    pub fn factors(&self) -> usize {
        if self.factor_movies.is_empty() {
            0
        } else {
            self.movie_factors.len() / self.factor_movies.len()
        }
    }

    /// Checks shapes, bounds and finiteness against `users` × `movies`.
    pub(crate) fn validate(&self, users: usize, movies: usize) -> Result<(), String> {
        if !self.item_weights.offsets.is_empty() {
            self.item_weights.validate("item_weights", movies, movies)?;
        }
        if self.factor_movies.is_empty() {
            if !(self.movie_factors.is_empty() && self.user_factors.is_empty()) {
                return Err("factors without factor movies".into());
            }
            return Ok(());
        }
        validate_bound("factor_movies", &self.factor_movies, movies)?;
        if self.factor_movies.windows(2).any(|w| w[0] >= w[1]) {
            return Err("factor_movies are not strictly ascending".into());
        }
        let k = self.factors();
        if k == 0 || self.movie_factors.len() != k * self.factor_movies.len() {
            return Err(format!(
                "movie_factors: {} values for {} movies",
                self.movie_factors.len(),
                self.factor_movies.len()
            ));
        }
        if self.user_factors.len() != k * users {
            return Err(format!(
                "user_factors: {} values, expected {users} users × {k}",
                self.user_factors.len()
            ));
        }
        if self
            .movie_factors
            .iter()
            .chain(&self.user_factors)
            .any(|v| !v.is_finite())
        {
            return Err("non-finite factor".into());
        }
        Ok(())
    }
}

/// The `max` most-rated movies (ties by lower index), ascending by index. Movies nobody
/// rated are never learned.
pub fn learned_movies(ratings: &Csr, movies: usize, max: usize) -> Vec<u32> {
    let mut counts = vec![0_u32; movies];
    for &j in &ratings.cols {
        counts[j as usize] += 1;
    }
    let mut order: Vec<(u32, u32)> = counts
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c > 0)
        .map(|(j, &c)| (c, j as u32))
        .collect();
    order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    order.truncate(max);
    let mut chosen: Vec<u32> = order.into_iter().map(|(_, j)| j).collect();
    chosen.sort_unstable();
    chosen
}

/// Each rating row's learned movies as positions in `learned` (ascending, since both the
/// row and `learned` are ascending).
pub fn learned_columns(ratings: &Csr, learned: &[u32], movies: usize) -> Lists {
    let mut position = vec![u32::MAX; movies];
    for (p, &j) in learned.iter().enumerate() {
        position[j as usize] = p as u32;
    }
    Lists::from_rows((0..ratings.rows()).map(|u| {
        ratings
            .row(u)
            .0
            .iter()
            .map(|&j| position[j as usize])
            .filter(|&p| p != u32::MAX)
    }))
}

/// The entries of `ratings` worth at least `min_rating` (every entry when `min_rating` is
/// not above the lowest rating): what EASE learns from and scores with, so that it models
/// what users liked, not only what they chose to rate.
pub fn liked(ratings: &Csr, min_rating: f32) -> Csr {
    super::fit::rows_to_csr(
        (0..ratings.rows())
            .map(|u| {
                let (items, values) = ratings.row(u);
                items
                    .iter()
                    .zip(values)
                    .filter(|&(_, &v)| v >= min_rating)
                    .map(|(&j, &v)| (j, v))
                    .collect()
            })
            .collect(),
    )
}

/// The EASE Gram matrix of a model's ratings over its learned movies; the expensive part
/// that every candidate `λ` shares.
#[derive(Debug)]
pub struct EaseInput {
    learned: Vec<u32>,
    gram: Vec<u32>,
    movies: usize,
}

impl EaseInput {
    /// Gram matrix of `ratings` over the `max_items` most-rated of `movies`.
    pub fn new(ratings: &Csr, movies: usize, max_items: usize) -> Self {
        let learned = learned_movies(ratings, movies, max_items);
        let columns = learned_columns(ratings, &learned, movies);
        let gram = ease::gram(&columns, learned.len());
        EaseInput {
            learned,
            gram,
            movies,
        }
    }

    /// Solves for `lambda` and keeps `keep` weights per movie.
    pub fn solve(&self, lambda: f32, keep: usize) -> Result<Learned, EaseError> {
        let n = self.learned.len();
        let b = ease::weights(&self.gram, n, f64::from(lambda))?;
        let rows = ease::prune(&b, keep);
        drop(b);
        let mut by_movie: Vec<Vec<(u32, f32)>> = vec![Vec::new(); self.movies];
        for (p, row) in rows.into_iter().enumerate() {
            by_movie[self.learned[p] as usize] = row
                .into_iter()
                .map(|(c, w)| (self.learned[c as usize], w))
                .collect();
        }
        Ok(Learned {
            item_weights: super::fit::rows_to_csr(by_movie),
            ..Learned::default()
        })
    }
}

/// Implicit ALS over the `max_items` most-rated movies of `ratings`; `after_sweep(sweep,
/// learned)` sees the model after each sweep.
pub fn fit_als(
    ratings: &Csr,
    movies: usize,
    max_items: usize,
    hyper: &AlsHyper,
    iterations: usize,
    seed: u64,
    mut after_sweep: impl FnMut(usize, &Learned),
) -> Learned {
    let learned = learned_movies(ratings, movies, max_items);
    let by_user = learned_columns(ratings, &learned, movies);
    let by_item = als::transpose(&by_user, learned.len());
    let pack = |f: &Factors| Learned {
        item_weights: Csr::default(),
        factor_movies: learned.clone(),
        movie_factors: f.items.clone(),
        user_factors: f.users.clone(),
    };
    let f = als::fit(&by_user, &by_item, hyper, iterations, seed, |sweep, f| {
        after_sweep(sweep, &pack(f));
    });
    pack(&f)
}
