//! The served recommender: an immutable [`Model`] that answers "20 movies for user U" and
//! "what would U rate M", with every serving rule applied (never a rated or watched movie,
//! no adult movie for minors, cold start for thin histories, deterministic tie-breaks).
//!
//! Layout: compact dense indices (external ids in sorted vectors, so index order equals id
//! order), CSR arrays for ratings, watches, precomputed neighbourhoods and per-neighbour
//! contributions, plus precomputed cold-start lists. Everything is flat `Vec`s of `u32`,
//! `f32` or `u8`, so [`crate::artifact`] can write and load them as raw sections.
//!
//! Sub-modules: [`knn_basic`] (Surprise-exact reference predictor), [`fit`] (the training
//! maths that builds a [`Model`]), [`params`] (what training is told), [`learned`] with
//! [`ease`] and [`als`] (the learned-weight rankings), [`topk`] (deterministic top-n
//! selection).

pub mod als;
pub mod ease;
pub mod fit;
pub mod knn_basic;
pub mod learned;
pub mod params;
pub mod topk;

use std::cell::RefCell;

use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use crate::data::RatingScale;
pub use learned::Learned;
pub use params::{Algo, AlsHyper, ScoreWeight, TrainParams};

/// Which rule produced a recommendation list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecommendPath {
    /// Neighbourhood scores from the user's own history (filled from cold start if short).
    Personal,
    /// The user is known but has fewer than `cold_start_min_ratings` ratings: the list of
    /// users alike in gender, age bucket and occupation.
    ColdStart,
    /// The user is not in the model: the no-demographics list, adult movies filtered.
    UnknownUser,
}

/// A ranked list of external movie ids, best first, and how it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recommendations {
    /// External movie ids, distinct, best first.
    pub movies: Vec<u32>,
    /// The path that produced them.
    pub path: RecommendPath,
}

/// Sizes of what a model was trained on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCounts {
    /// Users known to the model (demographics, ratings or watches).
    pub users: usize,
    /// Movies known to the model (catalogue, ratings or watches).
    pub movies: usize,
    /// Ratings used after de-duplication.
    pub ratings: usize,
    /// Watched-but-not-rated (user, movie) pairs excluded from recommendations.
    pub watches: usize,
    /// Repeated (user, movie) ratings dropped; the latest timestamp was kept.
    pub duplicate_ratings_dropped: usize,
    /// Users served by the personal path (at least `cold_start_min_ratings` ratings).
    pub personal_users: usize,
    /// Precomputed cold-start lists (one per demographic group in use, plus the global one).
    pub cold_start_lists: usize,
}

/// Provenance and training facts, written into the artifact and served on `/version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Model version given at training (`spec.model.version`).
    pub version: String,
    /// SHA-256 (hex) of the training data files.
    pub data_sha256: String,
    /// Training end time, RFC 3339 UTC.
    pub trained_at: String,
    /// Parameters the model was trained with.
    pub params: TrainParams,
    /// RMSE of the default predictor on a seeded hold-out slice, if one was taken.
    pub holdout_rmse: Option<f64>,
    /// Number of hold-out ratings behind `holdout_rmse`.
    pub holdout_ratings: usize,
    /// Sizes.
    pub counts: ModelCounts,
    /// Rating scale of the training data.
    pub scale: RatingScale,
    /// Mean training rating.
    pub global_mean: f32,
    /// Wall-clock training time in seconds.
    pub train_seconds: f64,
    /// How the learned model's hyper-parameters were chosen (absent for `user-knn`, or when
    /// no candidates were given or the validation split was too small).
    #[serde(default)]
    pub validation: Option<Validation>,
}

/// The validation split carved from the training ratings, and every candidate's score on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// The algorithm tuned.
    pub algo: Algo,
    /// Ratings carved off the training data as the validation split.
    pub ratings: usize,
    /// Validation users ranked (those with a relevant validation rating, sampled).
    pub users: usize,
    /// Each candidate (as JSON of its hyper-parameters) and its mean NDCG@10 on the split.
    pub candidates: Vec<(serde_json::Value, f64)>,
    /// The chosen candidate.
    pub chosen: serde_json::Value,
    /// Seconds spent choosing.
    pub seconds: f64,
}

/// Compressed sparse rows with one `f32` per entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Csr {
    /// `offsets[r]..offsets[r + 1]` is row `r`; `offsets.len() == rows + 1`.
    pub offsets: Vec<u32>,
    /// Column index of each entry.
    pub cols: Vec<u32>,
    /// Value of each entry.
    pub vals: Vec<f32>,
}

/// Compressed sparse rows of indices only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lists {
    /// `offsets[r]..offsets[r + 1]` is row `r`; `offsets.len() == rows + 1`.
    pub offsets: Vec<u32>,
    /// Entries.
    pub items: Vec<u32>,
}

impl Lists {
    /// Lists built from rows in order.
    pub fn from_rows<R: IntoIterator<Item = u32>>(rows: impl IntoIterator<Item = R>) -> Self {
        let rows = rows.into_iter();
        let mut offsets = Vec::with_capacity(rows.size_hint().0 + 1);
        offsets.push(0_u32);
        let mut items = Vec::new();
        for row in rows {
            items.extend(row);
            offsets.push(items.len() as u32);
        }
        Self { offsets, items }
    }
}

impl Csr {
    /// Row `r` as `(cols, vals)`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let range = self.offsets[r] as usize..self.offsets[r + 1] as usize;
        (&self.cols[range.clone()], &self.vals[range])
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn validate(&self, name: &str, rows: usize, col_bound: usize) -> Result<(), String> {
        validate_offsets(name, &self.offsets, rows, self.cols.len())?;
        if self.vals.len() != self.cols.len() {
            return Err(format!(
                "{name}: {} values for {} entries",
                self.vals.len(),
                self.cols.len()
            ));
        }
        validate_bound(name, &self.cols, col_bound)?;
        if let Some(pos) = self.vals.iter().position(|v| !v.is_finite()) {
            return Err(format!("{name}: non-finite value at entry {pos}"));
        }
        Ok(())
    }
}

impl Lists {
    /// Row `r`.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.items[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn validate(&self, name: &str, rows: usize, bound: usize) -> Result<(), String> {
        validate_offsets(name, &self.offsets, rows, self.items.len())?;
        validate_bound(name, &self.items, bound)
    }
}

fn validate_offsets(
    name: &str,
    offsets: &[u32],
    rows: usize,
    entries: usize,
) -> Result<(), String> {
    if offsets.len() != rows + 1 {
        return Err(format!("{name}: {} offsets for {rows} rows", offsets.len()));
    }
    if offsets[0] != 0 || offsets[rows] as usize != entries {
        return Err(format!("{name}: offsets do not span the {entries} entries"));
    }
    if offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err(format!("{name}: offsets decrease"));
    }
    Ok(())
}

fn validate_bound(name: &str, values: &[u32], bound: usize) -> Result<(), String> {
    match values.iter().position(|&v| v as usize >= bound) {
        Some(pos) => Err(format!(
            "{name}: index {} at entry {pos} is out of range {bound}",
            values[pos]
        )),
        None => Ok(()),
    }
}

/// The trained recommender. Immutable once built; `Send + Sync`, so one `Arc<Model>` serves
/// every request thread.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub(crate) meta: ModelMetadata,
    /// Sorted external user ids; the position is the dense user index.
    pub(crate) users: Vec<u32>,
    /// Sorted external movie ids; the position is the dense movie index.
    pub(crate) movies: Vec<u32>,
    /// Ratings by user, movie indices ascending.
    pub(crate) ratings: Csr,
    /// Watched-but-not-rated movies by user, ascending.
    pub(crate) watched: Lists,
    /// Neighbours by user: neighbour index and similarity, best first.
    pub(crate) neighbours: Csr,
    /// What each user contributes as a neighbour: movie index and weight (capped per user).
    pub(crate) contributions: Csr,
    /// Regularised user biases.
    pub(crate) user_bias: Vec<f32>,
    /// Regularised movie biases.
    pub(crate) movie_bias: Vec<f32>,
    /// Popularity prior per movie in `[0, 1]` (log-scaled rating count).
    pub(crate) movie_prior: Vec<f32>,
    /// 1 when the adult filter applies to the user.
    pub(crate) user_filter_adult: Vec<u8>,
    /// Cold-start list index per user.
    pub(crate) user_cold_list: Vec<u32>,
    /// 1 for adult movies.
    pub(crate) movie_adult: Vec<u8>,
    /// Every movie index, most rated first (ties by id) — the last-resort fill.
    pub(crate) popularity_order: Vec<u32>,
    /// Cold-start lists of movie indices, best first; list 0 is the no-demographics list.
    pub(crate) cold_lists: Lists,
    /// EASE weights or ALS factors (empty for `user-knn`).
    pub(crate) learned: Learned,
    /// Per user, the list of `precomputed_list_len` movie indices served to them, best first
    /// (empty rows for cold-start users; no rows at all when nothing was precomputed).
    pub(crate) precomputed: Lists,
}

/// Per-thread scoring buffers, reused across requests.
#[derive(Default)]
struct Scratch {
    score: Vec<f32>,
    stamp: Vec<u32>,
    epoch: u32,
    touched: Vec<u32>,
    candidates: Vec<(f32, u32)>,
}

impl Scratch {
    /// Starts a request over `n_movies` movies: every movie is "untouched".
    fn begin(&mut self, n_movies: usize) {
        if self.score.len() != n_movies {
            self.score = vec![0.0; n_movies];
            self.stamp = vec![0; n_movies];
            self.epoch = 0;
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamp.fill(0);
            self.epoch = 1;
        }
        self.touched.clear();
        self.candidates.clear();
    }

    fn block(&mut self, j: u32) {
        self.stamp[j as usize] = self.epoch;
        self.score[j as usize] = f32::NEG_INFINITY;
    }

    fn is_blocked(&self, j: u32) -> bool {
        self.stamp[j as usize] == self.epoch && self.score[j as usize] == f32::NEG_INFINITY
    }

    /// Appends the best `n` of `candidates` to `chosen`, blocks them, and hands the buffer
    /// back to the scratch.
    fn take_best(&mut self, mut candidates: Vec<(f32, u32)>, chosen: &mut Vec<u32>, n: usize) {
        let first = chosen.len();
        topk::append_top_n_by_score(&mut candidates, n, chosen);
        self.candidates = candidates;
        for &j in &chosen[first..] {
            self.block(j);
        }
    }

    fn add(&mut self, j: u32, value: f32) {
        let jj = j as usize;
        if self.stamp[jj] != self.epoch {
            self.stamp[jj] = self.epoch;
            self.score[jj] = 0.0;
            self.touched.push(j);
        }
        self.score[jj] += value;
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Model {
    /// Provenance and training facts.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    /// Users known to the model.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Movies known to the model.
    pub fn movie_count(&self) -> usize {
        self.movies.len()
    }

    /// True when `user` is known to the model (it may still take the cold-start path).
    pub fn contains_user(&self, user: u32) -> bool {
        self.users.binary_search(&user).is_ok()
    }

    /// The default rating predictor: regularised baseline `μ + b_u + b_i` plus the
    /// similarity-weighted, shrunk residual of the user's precomputed neighbours who rated
    /// the movie; clipped to the rating scale. Unknown ids fall back to the parts known.
    pub fn predict(&self, user: u32, movie: u32) -> f32 {
        let mean = self.meta.global_mean;
        let u = self.users.binary_search(&user).ok();
        let j = self.movies.binary_search(&movie).ok();
        let mut est = mean;
        if let Some(u) = u {
            est += self.user_bias[u];
        }
        if let Some(j) = j {
            est += self.movie_bias[j];
        }
        if let (Some(u), Some(j)) = (u, j) {
            let (nbrs, sims) = self.neighbours.row(u);
            let mut num = 0.0_f32;
            let mut den = 0.0_f32;
            for (&v, &s) in nbrs.iter().zip(sims) {
                let (items, values) = self.ratings.row(v as usize);
                if let Ok(p) = items.binary_search(&(j as u32)) {
                    let baseline = mean + self.user_bias[v as usize] + self.movie_bias[j];
                    num += s * (values[p] - baseline);
                    den += s;
                }
            }
            if den > 0.0 {
                est += num / (den + self.meta.params.residual_shrinkage);
            }
        }
        self.meta.scale.clip(est)
    }

    /// Up to `n` distinct external movie ids for `user`, best first — exactly `n` whenever
    /// the catalogue has that many movies the user may get. Deterministic.
    ///
    /// # Guarantees
    /// Never a movie the user rated or watched; never an adult movie when the adult filter
    /// applies (minors, unknown users, and unknown ages unless
    /// `TrainParams::filter_adult_unknown_age` is off); ties by ascending movie id.
    pub fn recommend(&self, user: u32, n: usize) -> Recommendations {
        let mut movies = Vec::with_capacity(n.min(self.movies.len()));
        let path = self.recommend_into(user, n, &mut movies);
        Recommendations { movies, path }
    }

    /// [`Model::recommend`] into a caller's buffer: `out` is cleared, then holds the list.
    /// Allocates nothing when `out` has room for the list (at most `min(n, movies)` ids) and
    /// this thread has served a request before (its scoring buffers are reused).
    pub fn recommend_into(&self, user: u32, n: usize, out: &mut Vec<u32>) -> RecommendPath {
        out.clear();
        let u = self.users.binary_search(&user).ok();
        let path = match u.and_then(|u| self.precomputed_list(u, n)) {
            Some(list) => {
                out.extend_from_slice(list);
                RecommendPath::Personal
            }
            None => self.rank_into(u, n, out),
        };
        for j in out.iter_mut() {
            *j = self.movies[*j as usize];
        }
        path
    }

    /// The first `n` movie indices of user index `u`'s precomputed list, when it has one
    /// that long.
    fn precomputed_list(&self, u: usize, n: usize) -> Option<&[u32]> {
        if self.precomputed.rows() == 0 {
            return None;
        }
        self.precomputed.row(u).get(..n)
    }

    /// Ranks the list of `n` movie indices of user index `u` (`None`: a user the model does
    /// not know) into `out` (empty), never reading the precomputed lists: what
    /// [`Model::precompute_lists`] stores and what longer lists use.
    fn rank_into(&self, u: Option<usize>, n: usize, out: &mut Vec<u32>) -> RecommendPath {
        SCRATCH.with(|cell| {
            let mut s = cell.borrow_mut();
            s.begin(self.movies.len());
            // `out` holds dense movie indices until the final mapping to external ids.
            match u {
                None => {
                    self.fill(&mut s, 0, true, out, n);
                    RecommendPath::UnknownUser
                }
                Some(u) => {
                    for &j in self.ratings.row(u).0.iter().chain(self.watched.row(u)) {
                        s.block(j);
                    }
                    let adult = self.user_filter_adult[u] != 0;
                    let list = self.user_cold_list[u] as usize;
                    let personal =
                        self.ratings.row(u).0.len() >= self.meta.params.cold_start_min_ratings;
                    if personal {
                        match self.meta.params.algo {
                            Algo::UserKnn => self.personal(&mut s, u, adult, out, n),
                            Algo::Ease => self.personal_ease(&mut s, u, adult, out, n),
                            Algo::Als => self.personal_als(&mut s, u, adult, out, n),
                        }
                    }
                    self.fill(&mut s, list, adult, out, n);
                    if personal {
                        RecommendPath::Personal
                    } else {
                        RecommendPath::ColdStart
                    }
                }
            }
        })
    }

    /// Computes and stores every personal user's list of `precomputed_list_len` movies
    /// (the learned rankings only: `user-knn` ranks in microseconds). Each is exactly what
    /// [`Model::recommend`] would rank for that user; serving then copies a prefix.
    pub fn precompute_lists(&mut self) {
        let len = self.meta.params.precomputed_list_len;
        self.precomputed = Lists::default();
        if len == 0 || self.meta.params.algo == Algo::UserKnn {
            return;
        }
        let min_ratings = self.meta.params.cold_start_min_ratings;
        let model = &*self;
        let rows: Vec<Vec<u32>> = (0..model.users.len())
            .into_par_iter()
            .map(|u| {
                let mut list = Vec::new();
                if model.ratings.row(u).0.len() >= min_ratings {
                    list.reserve_exact(len);
                    model.rank_into(Some(u), len, &mut list);
                }
                list
            })
            .collect();
        self.precomputed = Lists::from_rows(rows);
    }

    /// Whether movie index `j` is kept out of the list: an adult movie when `adult`
    /// (the adult filter) is on.
    fn hidden(&self, adult: bool, j: u32) -> bool {
        adult && self.movie_adult[j as usize] != 0
    }

    /// Neighbourhood scores: `Σ_v sim(u,v)·w_vj / Σ_v sim(u,v) + β·prior_j`; appends the
    /// best `n` to `chosen` and blocks them.
    fn personal(&self, s: &mut Scratch, u: usize, adult: bool, chosen: &mut Vec<u32>, n: usize) {
        let (nbrs, sims) = self.neighbours.row(u);
        let total: f32 = sims.iter().sum();
        if total <= 0.0 {
            return;
        }
        for (&v, &sim) in nbrs.iter().zip(sims) {
            let (items, weights) = self.contributions.row(v as usize);
            let scale = sim / total;
            for (&j, &w) in items.iter().zip(weights) {
                s.add(j, scale * w);
            }
        }
        let beta = self.meta.params.popularity_weight;
        let mut candidates = std::mem::take(&mut s.candidates);
        candidates.extend(s.touched.iter().filter_map(|&j| {
            let score = s.score[j as usize];
            let allowed = score.is_finite() && !self.hidden(adult, j);
            allowed.then(|| (score + beta * self.movie_prior[j as usize], j))
        }));
        s.take_best(candidates, chosen, n);
    }

    /// EASE scores `Σ_{i liked} B_ij` over the pruned weight rows of the movies the user
    /// rated at least `ease_min_rating` (only when nothing is precomputed, each row's
    /// strongest `ease_request_budget / liked` weights); appends the best `n` to `chosen`
    /// and blocks them.
    fn personal_ease(
        &self,
        s: &mut Scratch,
        u: usize,
        adult: bool,
        chosen: &mut Vec<u32>,
        n: usize,
    ) {
        if self.learned.item_weights.rows() == 0 {
            return;
        }
        let (rated_movies, values) = self.ratings.row(u);
        let min_rating = self.meta.params.ease_min_rating;
        let liked = || {
            rated_movies
                .iter()
                .zip(values)
                .filter(move |&(_, &v)| v >= min_rating)
                .map(|(&j, _)| j)
        };
        let budget = if self.meta.params.precomputed_list_len > 0 {
            usize::MAX
        } else {
            self.meta.params.ease_request_budget
        };
        let per_movie = (budget / liked().count().max(1)).max(1);
        for rated in liked() {
            let (items, weights) = self.learned.item_weights.row(rated as usize);
            for (&movie, &weight) in items.iter().zip(weights).take(per_movie) {
                s.add(movie, weight);
            }
        }
        let mut candidates = std::mem::take(&mut s.candidates);
        candidates.extend(s.touched.iter().filter_map(|&movie| {
            let score = s.score[movie as usize];
            let allowed = score.is_finite() && !self.hidden(adult, movie);
            allowed.then_some((score, movie))
        }));
        s.take_best(candidates, chosen, n);
    }

    /// ALS scores `x_u · y_j` over every factor movie the user may get; appends the best
    /// `n` to `chosen` and blocks them.
    fn personal_als(
        &self,
        s: &mut Scratch,
        u: usize,
        adult: bool,
        chosen: &mut Vec<u32>,
        n: usize,
    ) {
        let factors = self.learned.factors();
        if factors == 0 {
            return;
        }
        let user = &self.learned.user_factors[u * factors..(u + 1) * factors];
        let mut candidates = std::mem::take(&mut s.candidates);
        candidates.extend(
            self.learned
                .factor_movies
                .iter()
                .zip(self.learned.movie_factors.chunks_exact(factors))
                .filter(|&(&movie, _)| !(s.is_blocked(movie) || self.hidden(adult, movie)))
                .map(|(&movie, item)| (dot(user, item), movie)),
        );
        s.take_best(candidates, chosen, n);
    }

    /// Appends to `chosen` from cold-start list `list`, then from global popularity, skipping
    /// blocked (rated, watched, already chosen) and filtered movies, until `n` are chosen.
    fn fill(&self, s: &mut Scratch, list: usize, adult: bool, chosen: &mut Vec<u32>, n: usize) {
        let sources = self
            .cold_lists
            .row(list)
            .iter()
            .chain(&self.popularity_order);
        for &j in sources {
            if chosen.len() >= n {
                break;
            }
            if s.is_blocked(j) || self.hidden(adult, j) {
                continue;
            }
            s.block(j);
            chosen.push(j);
        }
    }

    /// Checks every internal invariant a loaded artifact must satisfy before serving (array
    /// lengths, offsets, index bounds, finite values), so a corrupt file is refused instead
    /// of panicking at request time.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let nu = self.users.len();
        let nm = self.movies.len();
        if self.users.windows(2).any(|w| w[0] >= w[1]) {
            return Err("user ids are not strictly ascending".into());
        }
        if self.movies.windows(2).any(|w| w[0] >= w[1]) {
            return Err("movie ids are not strictly ascending".into());
        }
        self.ratings.validate("ratings", nu, nm)?;
        self.watched.validate("watched", nu, nm)?;
        self.neighbours.validate("neighbours", nu, nu)?;
        self.contributions.validate("contributions", nu, nm)?;
        for (name, len, want) in [
            ("user_bias", self.user_bias.len(), nu),
            ("user_filter_adult", self.user_filter_adult.len(), nu),
            ("user_cold_list", self.user_cold_list.len(), nu),
            ("movie_bias", self.movie_bias.len(), nm),
            ("movie_prior", self.movie_prior.len(), nm),
            ("movie_adult", self.movie_adult.len(), nm),
            ("popularity_order", self.popularity_order.len(), nm),
        ] {
            if len != want {
                return Err(format!("{name}: length {len}, expected {want}"));
            }
        }
        for u in 0..nu {
            if self.ratings.row(u).0.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("ratings row {u} is not strictly ascending"));
            }
        }
        if self.cold_lists.rows() == 0 {
            return Err("no cold-start list".into());
        }
        self.cold_lists
            .validate("cold_lists", self.cold_lists.rows(), nm)?;
        validate_bound(
            "user_cold_list",
            &self.user_cold_list,
            self.cold_lists.rows(),
        )?;
        validate_bound("popularity_order", &self.popularity_order, nm)?;
        if [&self.user_bias, &self.movie_bias, &self.movie_prior]
            .iter()
            .any(|v| v.iter().any(|x| !x.is_finite()))
        {
            return Err("non-finite bias or prior".into());
        }
        if !self.meta.global_mean.is_finite() {
            return Err("non-finite global mean".into());
        }
        self.learned.validate(nu, nm)?;
        if self.precomputed.rows() > 0 {
            self.precomputed.validate("precomputed", nu, nm)?;
            let len = self.meta.params.precomputed_list_len;
            if let Some(u) = (0..nu).find(|&u| self.precomputed.row(u).len() > len) {
                return Err(format!(
                    "precomputed: row {u} is longer than precomputed_list_len {len}"
                ));
            }
        }
        match self.meta.params.algo {
            Algo::Ease if self.learned.item_weights.rows() != nm => {
                Err("an EASE model without its item weights".into())
            }
            Algo::Als if self.learned.factors() == 0 => {
                Err("an ALS model without its factors".into())
            }
            _ => Ok(()),
        }
    }
}

/// Dot product in four independent lanes, so the compiler can vectorise it.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0_f32; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for l in 0..4 {
            lanes[l] += a[l] * b[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
