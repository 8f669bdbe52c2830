//! Training maths that turns ratings into a [`Model`]: compact indexing and
//! de-duplication, regularised biases, neighbour selection without all-pairs, per-neighbour
//! contributions, and the demographic cold-start lists. Pure functions of their inputs: no
//! IO, no clock; deterministic whatever the input order (every array is built from sorted
//! data, and parallel loops write per-user results in index order).

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::topk::{by_score_then_id, top_n_by_score};
use super::{Csr, Learned, Lists, Model, ModelCounts, ModelMetadata, ScoreWeight, TrainParams};
use crate::data::{AgeBucket, Dataset, Gender, Rating};
use crate::util::mix;

/// Ratings and watches mapped to dense indices, de-duplicated and sorted.
#[derive(Clone, Debug)]
pub struct Indexed {
    /// Sorted external user ids.
    pub users: Vec<u32>,
    /// Sorted external movie ids.
    pub movies: Vec<u32>,
    /// Ratings by user, movie indices ascending.
    pub by_user: Csr,
    /// Ratings by movie, user indices ascending.
    pub by_movie: Csr,
    /// Watched-but-not-rated movies by user.
    pub watched: Lists,
    /// Repeated (user, movie) ratings dropped (latest timestamp kept).
    pub duplicates: usize,
}

/// Maps `ratings` (and the dataset's users, movies and watches) to dense indices.
/// A repeated (user, movie) rating keeps the latest timestamp (then the higher value), so the
/// result does not depend on input order.
pub fn index(dataset: &Dataset, ratings: &[Rating]) -> Indexed {
    let mut users: Vec<u32> = dataset
        .users
        .iter()
        .map(|u| u.id)
        .chain(ratings.iter().map(|r| r.user))
        .chain(dataset.watches.iter().map(|w| w.user))
        .collect();
    users.par_sort_unstable();
    users.dedup();
    let mut movies: Vec<u32> = dataset
        .movies
        .iter()
        .map(|m| m.id)
        .chain(ratings.iter().map(|r| r.movie))
        .chain(dataset.watches.iter().map(|w| w.movie))
        .collect();
    movies.par_sort_unstable();
    movies.dedup();
    let uidx = |id: u32| users.binary_search(&id).map_or(0, |p| p as u32);
    let midx = |id: u32| movies.binary_search(&id).map_or(0, |p| p as u32);

    let mut rows: Vec<(u32, u32, i64, f32)> = ratings
        .par_iter()
        .map(|r| (uidx(r.user), midx(r.movie), r.timestamp, r.value))
        .collect();
    rows.par_sort_unstable_by(|a, b| {
        (a.0, a.1, a.2)
            .cmp(&(b.0, b.1, b.2))
            .then(a.3.total_cmp(&b.3))
    });
    // Keep the last of each (user, movie) run: latest timestamp, then highest value.
    let before = rows.len();
    let mut kept: Vec<(u32, u32, f32)> = Vec::with_capacity(rows.len());
    for (pos, row) in rows.iter().enumerate() {
        let last_of_run = rows
            .get(pos + 1)
            .is_none_or(|next| (next.0, next.1) != (row.0, row.1));
        if last_of_run {
            kept.push((row.0, row.1, row.3));
        }
    }
    drop(rows);
    let duplicates = before - kept.len();

    let by_user = csr_from_sorted(users.len(), &kept);
    let mut transposed: Vec<(u32, u32, f32)> = kept.iter().map(|&(u, m, r)| (m, u, r)).collect();
    drop(kept);
    transposed.par_sort_unstable_by_key(|&(m, u, _)| (m, u));
    let by_movie = csr_from_sorted(movies.len(), &transposed);
    drop(transposed);

    let mut watch_pairs: Vec<(u32, u32)> = dataset
        .watches
        .iter()
        .map(|w| (uidx(w.user), midx(w.movie)))
        .filter(|&(u, m)| by_user.row(u as usize).0.binary_search(&m).is_err())
        .collect();
    watch_pairs.par_sort_unstable();
    watch_pairs.dedup();
    let mut offsets = vec![0_u32; users.len() + 1];
    for &(u, _) in &watch_pairs {
        offsets[u as usize + 1] += 1;
    }
    for u in 0..users.len() {
        offsets[u + 1] += offsets[u];
    }
    let watched = Lists {
        offsets,
        items: watch_pairs.into_iter().map(|(_, m)| m).collect(),
    };

    Indexed {
        users,
        movies,
        by_user,
        by_movie,
        watched,
        duplicates,
    }
}

fn csr_from_sorted(rows: usize, sorted: &[(u32, u32, f32)]) -> Csr {
    let mut offsets = vec![0_u32; rows + 1];
    for &(r, _, _) in sorted {
        offsets[r as usize + 1] += 1;
    }
    for r in 0..rows {
        offsets[r + 1] += offsets[r];
    }
    Csr {
        offsets,
        cols: sorted.iter().map(|&(_, c, _)| c).collect(),
        vals: sorted.iter().map(|&(_, _, v)| v).collect(),
    }
}

/// Global mean and regularised biases by alternating least squares (as Surprise's
/// `baseline_als`): `b_u = Σ(r − μ − b_i)/(λ_u + n_u)`, `b_i = Σ(r − μ − b_u)/(λ_i + n_i)`.
pub fn biases(ix: &Indexed, params: &TrainParams) -> (f32, Vec<f32>, Vec<f32>) {
    let n = ix.by_user.vals.len();
    if n == 0 {
        return (0.0, vec![0.0; ix.users.len()], vec![0.0; ix.movies.len()]);
    }
    let mean = (ix.by_user.vals.iter().map(|&r| f64::from(r)).sum::<f64>() / n as f64) as f32;
    let mut bu = vec![0.0_f32; ix.users.len()];
    let mut bi = vec![0.0_f32; ix.movies.len()];
    for _ in 0..params.bias_epochs {
        bu = (0..ix.users.len())
            .into_par_iter()
            .map(|u| {
                let (items, vals) = ix.by_user.row(u);
                let sum: f32 = items
                    .iter()
                    .zip(vals)
                    .map(|(&j, &r)| r - mean - bi[j as usize])
                    .sum();
                sum / (params.bias_reg_user + items.len() as f32)
            })
            .collect();
        bi = (0..ix.movies.len())
            .into_par_iter()
            .map(|j| {
                let (raters, vals) = ix.by_movie.row(j);
                let sum: f32 = raters
                    .iter()
                    .zip(vals)
                    .map(|(&u, &r)| r - mean - bu[u as usize])
                    .sum();
                sum / (params.bias_reg_item + raters.len() as f32)
            })
            .collect();
    }
    (mean, bu, bi)
}

struct NeighbourScratch {
    acc: Vec<f32>,
    stamp: Vec<u32>,
    touched: Vec<u32>,
    dense: Vec<f32>,
    candidates: Vec<(f32, u32)>,
}

/// Top-`params.neighbours` neighbours of each user in `wanted` (all users when `None`) by
/// cosine over FULL rating vectors, shrunk by overlap: `cos · c/(c + λ)` with `c` the number
/// of co-rated movies.
///
/// No all-pairs: candidates come from the movie→raters index, visiting at most
/// `candidate_raters_per_item` raters per movie (a fixed pseudo-random sample, scaled up by
/// the sampling ratio), and only the best `rerank_candidates` get an exact sparse dot product.
pub fn neighbours(ix: &Indexed, params: &TrainParams, wanted: Option<&[bool]>) -> Csr {
    let nu = ix.users.len();
    let nm = ix.movies.len();
    let norms: Vec<f32> = (0..nu)
        .into_par_iter()
        .map(|u| {
            ix.by_user
                .row(u)
                .1
                .iter()
                .map(|r| r * r)
                .sum::<f32>()
                .sqrt()
        })
        .collect();
    // Deterministic per-movie sample of raters.
    let cap = params.candidate_raters_per_item.max(1);
    let seed = params.seed;
    let samples: Vec<(Vec<(u32, f32)>, f32)> = (0..nm)
        .into_par_iter()
        .map(|j| {
            let (raters, vals) = ix.by_movie.row(j);
            let mut all: Vec<(u32, f32)> =
                raters.iter().copied().zip(vals.iter().copied()).collect();
            if all.len() <= cap {
                return (all, 1.0);
            }
            let factor = all.len() as f32 / cap as f32;
            all.sort_unstable_by_key(|&(u, _)| (mix(seed ^ ((j as u64) << 32) ^ u64::from(u)), u));
            all.truncate(cap);
            (all, factor)
        })
        .collect();
    let search = NeighbourSearch {
        ix,
        norms: &norms,
        samples: &samples,
        k: params.neighbours,
        rerank: params.rerank_candidates.max(params.neighbours),
        shrink: params.overlap_shrinkage,
    };
    let rows: Vec<Vec<(u32, f32)>> = (0..nu)
        .into_par_iter()
        .map_init(
            || NeighbourScratch {
                acc: vec![0.0; nu],
                stamp: vec![u32::MAX; nu],
                touched: Vec::new(),
                dense: vec![0.0; nm],
                candidates: Vec::new(),
            },
            |s, u| {
                if wanted.is_some_and(|w| !w[u]) {
                    Vec::new()
                } else {
                    search.of(u, s)
                }
            },
        )
        .collect();
    rows_to_csr(rows)
}

/// Everything the per-user neighbour search reads.
struct NeighbourSearch<'a> {
    ix: &'a Indexed,
    norms: &'a [f32],
    samples: &'a [(Vec<(u32, f32)>, f32)],
    k: usize,
    rerank: usize,
    shrink: f32,
}

impl NeighbourSearch<'_> {
    /// Neighbours of user `u` as `(index, similarity)`, best first.
    fn of(&self, u: usize, s: &mut NeighbourScratch) -> Vec<(u32, f32)> {
        if self.k == 0 || self.norms[u] <= 0.0 {
            return Vec::new();
        }
        let (items, ratings) = self.ix.by_user.row(u);
        // 1. Estimated dot products through the sampled inverted index.
        for (&j, &r) in items.iter().zip(ratings) {
            let (sample, factor) = &self.samples[j as usize];
            for &(v, rv) in sample {
                let vi = v as usize;
                if vi == u {
                    continue;
                }
                if s.stamp[vi] != u as u32 {
                    s.stamp[vi] = u as u32;
                    s.acc[vi] = 0.0;
                    s.touched.push(v);
                }
                s.acc[vi] += r * rv * factor;
            }
        }
        s.candidates.clear();
        s.candidates.extend(
            s.touched
                .iter()
                .map(|&v| (s.acc[v as usize] / self.norms[v as usize], v)),
        );
        s.touched.clear();
        if s.candidates.len() > self.rerank {
            s.candidates
                .select_nth_unstable_by(self.rerank - 1, by_score_then_id);
            s.candidates.truncate(self.rerank);
        }
        // 2. Exact similarity for the best candidates, against a dense copy of u's ratings.
        for (&j, &r) in items.iter().zip(ratings) {
            s.dense[j as usize] = r;
        }
        let mut exact: Vec<(f32, u32)> = s
            .candidates
            .iter()
            .filter_map(|&(_, v)| {
                let sim = self.exact_similarity(u, v as usize, &s.dense);
                (sim > 0.0 && sim.is_finite()).then_some((sim, v))
            })
            .collect();
        for &j in items {
            s.dense[j as usize] = 0.0;
        }
        if exact.len() > self.k {
            exact.select_nth_unstable_by(self.k - 1, by_score_then_id);
            exact.truncate(self.k);
        }
        exact.sort_unstable_by(by_score_then_id);
        exact.into_iter().map(|(sim, v)| (v, sim)).collect()
    }

    /// Shrunk full-vector cosine between `u` (given densely) and `v`.
    fn exact_similarity(&self, u: usize, v: usize, dense_u: &[f32]) -> f32 {
        let (items, ratings) = self.ix.by_user.row(v);
        let mut dot = 0.0_f32;
        let mut common = 0.0_f32;
        for (&j, &rv) in items.iter().zip(ratings) {
            let ru = dense_u[j as usize];
            if ru != 0.0 {
                dot += ru * rv;
                common += 1.0;
            }
        }
        let cos = dot / (self.norms[u] * self.norms[v]);
        cos * common / (common + self.shrink)
    }
}

/// Packs per-row `(column, value)` lists into a [`Csr`].
pub(crate) fn rows_to_csr(rows: Vec<Vec<(u32, f32)>>) -> Csr {
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0_u32);
    let total = rows.iter().map(Vec::len).sum();
    let mut cols = Vec::with_capacity(total);
    let mut vals = Vec::with_capacity(total);
    for row in rows {
        for (c, v) in row {
            cols.push(c);
            vals.push(v);
        }
        offsets.push(cols.len() as u32);
    }
    Csr {
        offsets,
        cols,
        vals,
    }
}

/// Number of ratings per movie.
fn movie_counts(ix: &Indexed) -> Vec<u32> {
    (0..ix.movies.len())
        .map(|j| ix.by_movie.row(j).0.len() as u32)
        .collect()
}

/// What each user contributes to a neighbour's scores: their `contributions_per_neighbour`
/// best-rated movies (ties: more popular, then lower id) with weights per
/// [`ScoreWeight`].
pub fn contributions(ix: &Indexed, params: &TrainParams, max_rating: f32) -> Csr {
    let counts = movie_counts(ix);
    let cap = params.contributions_per_neighbour;
    let rows: Vec<Vec<(u32, f32)>> = (0..ix.users.len())
        .into_par_iter()
        .map(|u| {
            let (items, vals) = ix.by_user.row(u);
            let mean = if vals.is_empty() {
                0.0
            } else {
                vals.iter().sum::<f32>() / vals.len() as f32
            };
            let mut row: Vec<(u32, f32)> =
                items.iter().copied().zip(vals.iter().copied()).collect();
            row.sort_unstable_by(|a, b| {
                b.1.total_cmp(&a.1)
                    .then(counts[b.0 as usize].cmp(&counts[a.0 as usize]))
                    .then(a.0.cmp(&b.0))
            });
            row.truncate(cap);
            row.into_iter()
                .map(|(j, r)| {
                    let w = match params.score_weight {
                        ScoreWeight::Binary => 1.0,
                        ScoreWeight::Rating => r / max_rating,
                        ScoreWeight::Centered => r - mean,
                    };
                    (j, w)
                })
                .filter(|&(_, w)| w != 0.0)
                .collect()
        })
        .collect();
    rows_to_csr(rows)
}

/// A demographic group at one back-off level. Level 0 is everyone; 1 adds the age bucket,
/// 2 the gender, 3 the occupation.
type GroupKey = (u8, u8, u8, u32);

/// Cold-start lists and the list each user gets.
#[derive(Clone, Debug)]
pub struct ColdStart {
    /// Lists of movie indices, best first; list 0 is the no-demographics list.
    pub lists: Lists,
    /// List index per user.
    pub user_list: Vec<u32>,
}

/// The cold-start list index of every user (0 = everyone) and the number of lists.
fn user_groups(ix: &Indexed, dataset: &Dataset, min_group_users: usize) -> (Vec<u32>, usize) {
    let nu = ix.users.len();
    let mut occupations: Vec<&str> = dataset
        .users
        .iter()
        .filter_map(|u| u.occupation.as_deref())
        .collect();
    occupations.sort_unstable();
    occupations.dedup();
    let mut demo: Vec<(Option<Gender>, Option<AgeBucket>, Option<u32>)> =
        vec![(None, None, None); nu];
    for user in &dataset.users {
        if let Ok(u) = ix.users.binary_search(&user.id) {
            let occ = user
                .occupation
                .as_deref()
                .and_then(|o| occupations.binary_search(&o).ok())
                .map(|p| p as u32);
            demo[u] = (user.gender, user.age, occ);
        }
    }
    let keys_of = |(g, a, o): (Option<Gender>, Option<AgeBucket>, Option<u32>)| -> Vec<GroupKey> {
        let g = g.map_or(0, |g| if g == Gender::Female { 1 } else { 2 });
        let a = a.map(|a| a.ml1m_code() as u8);
        let mut keys = vec![(0, 0, 0, 0)];
        if let Some(a) = a {
            keys.push((1, 0, a, 0));
            if g != 0 {
                keys.push((2, g, a, 0));
                if let Some(o) = o {
                    keys.push((3, g, a, o + 1));
                }
            }
        }
        keys
    };
    let mut sizes: BTreeMap<GroupKey, usize> = BTreeMap::new();
    for (u, &d) in demo.iter().enumerate() {
        if ix.by_user.row(u).0.is_empty() {
            continue;
        }
        for key in keys_of(d) {
            *sizes.entry(key).or_default() += 1;
        }
    }
    let resolved: Vec<GroupKey> = demo
        .iter()
        .map(|&d| {
            keys_of(d)
                .into_iter()
                .rev()
                .find(|k| k.0 == 0 || sizes.get(k).copied().unwrap_or(0) >= min_group_users)
                .unwrap_or((0, 0, 0, 0))
        })
        .collect();
    let mut list_ids: BTreeMap<GroupKey, u32> = BTreeMap::new();
    list_ids.insert((0, 0, 0, 0), 0);
    for key in &resolved {
        let next = list_ids.len() as u32;
        list_ids.entry(*key).or_insert(next);
    }
    // Renumber in key order (level 0 first) so ids do not depend on user order.
    for (id, value) in list_ids.values_mut().enumerate() {
        *value = id as u32;
    }
    let user_list: Vec<u32> = resolved.iter().map(|k| list_ids[k]).collect();

    (user_list, list_ids.len())
}

/// Each movie's Bayesian mean rating with pseudo-count `k`, centred on its `IMDb` rating
/// (rescaled to the scale) when known, else on the global mean.
fn movie_quality_priors(ix: &Indexed, dataset: &Dataset, k: f32, mean: f32) -> Vec<f32> {
    let nm = ix.movies.len();
    let scale = dataset.scale;
    let mut external: Vec<Option<f32>> = vec![None; nm];
    for movie in &dataset.movies {
        if let (Ok(j), Some(ext)) = (ix.movies.binary_search(&movie.id), movie.external_rating)
            && ext.is_finite()
        {
            let scaled = scale.min + (ext.clamp(1.0, 10.0) - 1.0) / 9.0 * (scale.max - scale.min);
            external[j] = Some(scaled);
        }
    }
    let prior: Vec<f32> = (0..nm)
        .map(|j| {
            let vals = ix.by_movie.row(j).1;
            let centre = external[j].unwrap_or(mean);
            (vals.iter().sum::<f32>() + k * centre) / (vals.len() as f32 + k)
        })
        .collect();
    prior
}

/// Builds the cold-start lists. Each user is put in the finest group (gender + age bucket +
/// occupation → gender + age → age → everyone) that has at least
/// `cold_start_min_group_users` users with ratings. A group's score for movie `j` is
/// `ln(1 + n_gj) + α·(m̂_gj − μ)`: popularity within the group plus the group's Bayesian mean
/// rating `m̂_gj = (Σ_g r + k·p_j)/(n_gj + k)`, whose prior `p_j` is the movie's own Bayesian
/// mean, itself shrunk towards the `IMDb` rating (rescaled) when known, else towards `μ`.
pub fn cold_start(ix: &Indexed, dataset: &Dataset, params: &TrainParams, mean: f32) -> ColdStart {
    let nu = ix.users.len();
    let nm = ix.movies.len();
    let k = params.cold_start_prior_strength;
    let (user_list, n_lists) = user_groups(ix, dataset, params.cold_start_min_group_users);
    let prior = movie_quality_priors(ix, dataset, k, mean);
    // Members of each list.
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); n_lists];
    for (u, &l) in user_list.iter().enumerate() {
        members[l as usize].push(u as u32);
    }
    members[0] = (0..nu as u32).collect();
    let alpha = params.cold_start_quality_weight;
    let len = params.cold_start_list_len;
    let lists: Vec<Vec<u32>> = members
        .par_iter()
        .map(|users| {
            let mut n = vec![0_u32; nm];
            let mut sum = vec![0.0_f32; nm];
            for &u in users {
                let (items, vals) = ix.by_user.row(u as usize);
                for (&j, &r) in items.iter().zip(vals) {
                    n[j as usize] += 1;
                    sum[j as usize] += r;
                }
            }
            let mut scored: Vec<(f32, u32)> = (0..nm)
                .filter(|&j| n[j] > 0)
                .map(|j| {
                    let bayes = (sum[j] + k * prior[j]) / (n[j] as f32 + k);
                    ((n[j] as f32).ln_1p() + alpha * (bayes - mean), j as u32)
                })
                .collect();
            top_n_by_score(&mut scored, len)
        })
        .collect();
    ColdStart {
        lists: Lists::from_rows(lists),
        user_list,
    }
}

/// Assembles a [`Model`] from indexed data. `neighbour_users` restricts the (costly)
/// neighbour search to some users (the hold-out model only needs its test users).
pub fn build_model(
    dataset: &Dataset,
    ix: Indexed,
    params: &TrainParams,
    neighbour_users: Option<&[bool]>,
    mut meta: ModelMetadata,
) -> Model {
    let (mean, user_bias, movie_bias) = biases(&ix, params);
    let neighbours = neighbours(&ix, params, neighbour_users);
    let contributions = contributions(&ix, params, dataset.scale.max);
    let cold = cold_start(&ix, dataset, params, mean);
    let counts = movie_counts(&ix);
    let max_count = counts.iter().copied().max().unwrap_or(0);
    let denom = (max_count as f32).ln_1p().max(f32::MIN_POSITIVE);
    let movie_prior: Vec<f32> = counts.iter().map(|&c| (c as f32).ln_1p() / denom).collect();
    let mut popularity: Vec<(f32, u32)> = counts
        .iter()
        .enumerate()
        .map(|(j, &c)| (c as f32, j as u32))
        .collect();
    popularity.sort_unstable_by(by_score_then_id);
    let popularity_order: Vec<u32> = popularity.into_iter().map(|(_, j)| j).collect();

    let mut movie_adult = vec![0_u8; ix.movies.len()];
    for movie in &dataset.movies {
        if movie.adult
            && let Ok(j) = ix.movies.binary_search(&movie.id)
        {
            movie_adult[j] = 1;
        }
    }
    let mut user_filter_adult = vec![u8::from(params.filter_adult_unknown_age); ix.users.len()];
    for user in &dataset.users {
        if let Ok(u) = ix.users.binary_search(&user.id) {
            user_filter_adult[u] = match user.age {
                Some(age) => u8::from(age.is_minor()),
                None => u8::from(params.filter_adult_unknown_age),
            };
        }
    }

    meta.global_mean = mean;
    meta.scale = dataset.scale;
    meta.counts = ModelCounts {
        users: ix.users.len(),
        movies: ix.movies.len(),
        ratings: ix.by_user.vals.len(),
        watches: ix.watched.items.len(),
        duplicate_ratings_dropped: ix.duplicates,
        personal_users: (0..ix.users.len())
            .filter(|&u| ix.by_user.row(u).0.len() >= params.cold_start_min_ratings)
            .count(),
        cold_start_lists: cold.lists.rows(),
    };
    Model {
        meta,
        users: ix.users,
        movies: ix.movies,
        ratings: ix.by_user,
        watched: ix.watched,
        neighbours,
        contributions,
        user_bias,
        movie_bias,
        movie_prior,
        user_filter_adult,
        user_cold_list: cold.user_list,
        movie_adult,
        popularity_order,
        cold_lists: cold.lists,
        learned: Learned::default(),
        precomputed: Lists::default(),
    }
}
