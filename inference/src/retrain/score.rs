//! Scores one model on held-out ratings: RMSE and NDCG@k overall and per gender, age
//! bucket and occupation — the figures the model gates compare. Both the candidate and the
//! stable model are scored by this one function on the same ratings.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use super::gate::{Dimension, GroupScore, ModelScore};
use crate::data::{Rating, User};
use crate::eval::metrics::ErrorSums;
use crate::eval::{age_label, gender_label, occupation_label};
use crate::model::Model;

/// Held-out ratings at or above this are relevant for NDCG (as `movrek eval`).
pub const RELEVANCE_THRESHOLD: f32 = 4.0;

/// The group label of `user` in `dimension`.
fn label(dimension: Dimension, user: Option<&User>) -> &str {
    match dimension {
        Dimension::Gender => gender_label(user.and_then(|u| u.gender)),
        Dimension::Age => age_label(user.and_then(|u| u.age)),
        Dimension::Occupation => occupation_label(user),
    }
}

/// Movies each user rated or watched in `train`: what every compared model must leave out
/// of its lists, so that a model trained on less data is not scored down for recommending
/// what the user has meanwhile rated (a list entry that can never be relevant).
pub fn known_by_user(train: &crate::data::Dataset) -> HashMap<u32, HashSet<u32>> {
    let mut known: HashMap<u32, HashSet<u32>> = HashMap::new();
    for (user, movie) in train
        .ratings
        .iter()
        .map(|r| (r.user, r.movie))
        .chain(train.watches.iter().map(|w| (w.user, w.movie)))
    {
        known.entry(user).or_default().insert(movie);
    }
    known
}

/// Scores `model` on `test` (in any order). `users` give the demographics; a user missing
/// from them is `unknown` in every dimension. NDCG@`k` ranks the first `k` movies of
/// `model.recommend` that are not in `known` for the user, for each test user with at least
/// one relevant held-out rating.
#[allow(
    clippy::implicit_hasher,
    reason = "`known` comes from `known_by_user`, std hashers"
)]
pub fn score(
    model: &Model,
    users: &[User],
    test: &[Rating],
    known: &HashMap<u32, HashSet<u32>>,
    k: usize,
) -> ModelScore {
    let by_id: HashMap<u32, &User> = users.iter().map(|u| (u.id, u)).collect();
    let predictions: Vec<f64> = test
        .par_iter()
        .map(|r| f64::from(model.predict(r.user, r.movie)))
        .collect();
    let mut relevant: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for r in test {
        let entry = relevant.entry(r.user).or_default();
        if r.value >= RELEVANCE_THRESHOLD {
            entry.push(r.movie);
        }
    }
    relevant.retain(|_, movies| !movies.is_empty());
    let ranked: Vec<(u32, f64)> = relevant
        .par_iter()
        .map(|(&user, movies)| {
            let mut sorted = movies.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let empty = HashSet::new();
            let skip = known.get(&user).unwrap_or(&empty);
            let list: Vec<u32> = model
                .recommend(user, k + skip.len())
                .movies
                .into_iter()
                .filter(|m| !skip.contains(m))
                .take(k)
                .collect();
            (user, crate::util::ndcg_sorted(&list, &sorted, k))
        })
        .collect();

    let mut overall = ErrorSums::default();
    // (dimension, label) → (error sums, ndcg sum, users)
    let mut groups: BTreeMap<(Dimension, String), (ErrorSums, f64, usize)> = BTreeMap::new();
    for (r, &p) in test.iter().zip(&predictions) {
        overall.add(p, f64::from(r.value));
        let user = by_id.get(&r.user).copied();
        for dimension in Dimension::ALL {
            let key = (dimension, label(dimension, user).to_owned());
            groups.entry(key).or_default().0.add(p, f64::from(r.value));
        }
    }
    for &(user_id, ndcg) in &ranked {
        let user = by_id.get(&user_id).copied();
        for dimension in Dimension::ALL {
            let key = (dimension, label(dimension, user).to_owned());
            let entry = groups.entry(key).or_default();
            entry.1 += ndcg;
            entry.2 += 1;
        }
    }
    let ndcg_sum: f64 = ranked.iter().map(|(_, n)| n).sum();
    ModelScore {
        version: model.metadata().version.clone(),
        rmse: overall.rmse().unwrap_or(f64::NAN),
        ndcg: if ranked.is_empty() {
            0.0
        } else {
            ndcg_sum / ranked.len() as f64
        },
        ndcg_k: k,
        ratings: overall.count(),
        users: ranked.len(),
        groups: groups
            .into_iter()
            .map(|((dimension, group), (sums, ndcg, users))| GroupScore {
                dimension,
                group,
                ratings: sums.count(),
                rmse: sums.rmse(),
                users,
                ndcg: (users > 0).then(|| ndcg / users as f64),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{SynthParams, generate};
    use crate::train::{TrainParams, train};

    #[test]
    fn groups_partition_the_ratings_and_users_in_every_dimension() {
        let data = generate(&SynthParams {
            users: 120,
            movies: 150,
            ratings: 6000,
            ..SynthParams::default()
        });
        let (train_set, test) = crate::eval::split(&data, 0.2, 7).unwrap();
        let model = train(&train_set, &TrainParams::default(), "v1", "d").unwrap();
        let known = known_by_user(&train_set);
        let s = score(&model, &data.users, &test, &known, 10);
        assert_eq!(s.ratings, test.len());
        assert!(s.rmse > 0.0 && s.rmse < 2.0, "{}", s.rmse);
        assert!(s.users > 0 && (0.0..=1.0).contains(&s.ndcg));
        for dimension in Dimension::ALL {
            let of: Vec<&GroupScore> = s
                .groups
                .iter()
                .filter(|g| g.dimension == dimension)
                .collect();
            assert_eq!(of.iter().map(|g| g.ratings).sum::<usize>(), s.ratings);
            assert_eq!(of.iter().map(|g| g.users).sum::<usize>(), s.users);
            // The overall NDCG is the user-weighted mean of the groups'.
            let weighted: f64 = of
                .iter()
                .map(|g| g.ndcg.unwrap_or(0.0) * g.users as f64)
                .sum::<f64>()
                / s.users as f64;
            assert!((weighted - s.ndcg).abs() < 1e-9);
        }
        // Deterministic.
        assert_eq!(s, score(&model, &data.users, &test, &known, 10));
        // The model excludes its own training movies already: the same lists either way.
        assert_eq!(s, score(&model, &data.users, &test, &HashMap::new(), 10));
    }

    #[test]
    fn users_without_demographics_are_unknown() {
        let data = generate(&SynthParams {
            users: 60,
            movies: 80,
            ratings: 2000,
            ..SynthParams::default()
        });
        let (train_set, test) = crate::eval::split(&data, 0.2, 3).unwrap();
        let model = train(&train_set, &TrainParams::default(), "v1", "d").unwrap();
        let s = score(&model, &[], &test, &HashMap::new(), 10);
        let labels: Vec<&str> = s.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(labels, ["unknown"; 3]);
    }
}
