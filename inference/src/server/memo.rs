//! A per-user memo of served answers, bounded by a memory budget.
//!
//! A process serves one immutable model for its whole life, and a known user's list is a
//! pure function of the model and the user id (every serving rule — no rated or watched
//! movie, no adult movie under the adult filter, the demographic cold start, deterministic
//! ties — is applied by the model before the list reaches the memo). So the first answer
//! for a user can be kept and sent again, body bytes included, without running the model or
//! formatting the ids.
//!
//! # Guarantees
//! - Only lists the model served from a user's own row are kept ([`ServedPath::Personal`]
//!   and [`ServedPath::ColdStart`]), so the keys are users known to the model: a client
//!   asking for arbitrary ids cannot fill the memo.
//! - The memo never holds more than its budget of (estimated) bytes; once full it keeps what
//!   it has and stops storing (no eviction: every entry stays valid for the process's life).
//! - A hit is the same `Arc<Answer>` the first request built: the same ids and body.
//!
//! # Caveats
//! Lists of unknown users are not kept (each would be a new key); they stay on the model
//! path, which for them is a short walk down the precomputed generic list.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::http::join_ids;
use super::metrics::ServedPath;

/// One answered list: the ids (for the impression), the body they make, and the model path.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// External movie ids, best first.
    pub movies: Box<[u32]>,
    /// The response body: the ids comma-separated.
    pub body: Bytes,
    /// The model path that produced the list.
    pub path: ServedPath,
}

impl Answer {
    /// The answer for `movies` served by `path`.
    pub fn new(movies: Vec<u32>, path: ServedPath) -> Self {
        let body = Bytes::from(join_ids(&movies));
        Self {
            movies: movies.into_boxed_slice(),
            body,
            path,
        }
    }

    /// Bytes this answer holds while kept in the memo: its own allocations plus
    /// [`ENTRY_OVERHEAD`].
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Answer>()
            + std::mem::size_of_val(&*self.movies)
            + self.body.len()
            + ENTRY_OVERHEAD
    }
}

/// Bytes counted per entry beyond the answer's own: the `Arc` counts, the map slot and its
/// spare capacity (a hash map at most doubles its slots), and allocator headers.
pub const ENTRY_OVERHEAD: usize = 96;

/// Default memory budget of the memo: 64 MiB, room for about 200,000 users' lists of 20.
pub const DEFAULT_BUDGET_BYTES: usize = 64 << 20;

const SHARDS: usize = 16;

/// Fibonacci hashing of a user id: one multiply; a bijection, so no two ids collide in
/// full, and the high bits (which pick the shard and hashbrown's tag) mix every input bit.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserHasher(u64);

impl Hasher for UserHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(GOLDEN);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

type Shard = RwLock<HashMap<u32, Arc<Answer>, BuildHasherDefault<UserHasher>>>;

/// What the memo did so far, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoCounts {
    /// Requests answered from the memo.
    pub hits: u64,
    /// Requests that found nothing and ran the model.
    pub misses: u64,
    /// Users whose answer is kept.
    pub entries: u64,
    /// Estimated bytes the kept answers hold.
    pub bytes: u64,
    /// The budget.
    pub budget_bytes: u64,
}

/// The memo: sharded maps from user id to answer, and a byte budget.
#[derive(Debug)]
pub struct Memo {
    shards: Box<[Shard]>,
    budget: usize,
    bytes: AtomicUsize,
    entries: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Memo {
    /// An empty memo that keeps at most `budget_bytes` of answers.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            budget: budget_bytes,
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, user: u32) -> &Shard {
        let mut hasher = UserHasher::default();
        hasher.write_u32(user);
        &self.shards[(hasher.finish() >> 60) as usize % SHARDS]
    }

    /// The kept answer for `user`, counted as a hit, or `None`, counted as a miss.
    pub fn get(&self, user: u32) -> Option<Arc<Answer>> {
        let found = self
            .shard(user)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&user)
            .cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `answer` for `user` if it is a list of the user's own (personal or cold start)
    /// and fits the budget. Returns whether it is kept now (false also when another request
    /// kept the same user's answer first).
    pub fn insert(&self, user: u32, answer: &Arc<Answer>) -> bool {
        if !matches!(answer.path, ServedPath::Personal | ServedPath::ColdStart) {
            return false;
        }
        let size = answer.footprint();
        let reserved = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(size).filter(|&total| total <= self.budget)
            })
            .is_ok();
        if !reserved {
            return false;
        }
        let mut shard = self
            .shard(user)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.contains_key(&user) {
            drop(shard);
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        shard.insert(user, Arc::clone(answer));
        self.entries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Hits, misses, entries and bytes so far.
    pub fn counts(&self) -> MemoCounts {
        MemoCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed) as u64,
            bytes: self.bytes.load(Ordering::Relaxed) as u64,
            budget_bytes: self.budget as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(first: u32, path: ServedPath) -> Arc<Answer> {
        Arc::new(Answer::new((first..first + 20).collect(), path))
    }

    #[test]
    fn a_kept_answer_comes_back_and_hits_and_misses_are_counted() {
        let memo = Memo::new(DEFAULT_BUDGET_BYTES);
        assert_eq!(memo.get(7), None);
        let kept = answer(1, ServedPath::Personal);
        assert!(memo.insert(7, &kept));
        assert!(
            !memo.insert(7, &answer(2, ServedPath::Personal)),
            "first wins"
        );
        let hit = memo.get(7).expect("kept");
        assert!(Arc::ptr_eq(&hit, &kept));
        assert_eq!(
            &hit.body[..],
            b"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20"
        );
        let counts = memo.counts();
        assert_eq!((counts.hits, counts.misses, counts.entries), (1, 1, 1));
        assert_eq!(counts.bytes, kept.footprint() as u64);
    }

    #[test]
    fn unknown_users_lists_are_not_kept() {
        let memo = Memo::new(DEFAULT_BUDGET_BYTES);
        assert!(!memo.insert(1_000_000, &answer(1, ServedPath::UnknownUser)));
        assert!(memo.insert(9, &answer(1, ServedPath::ColdStart)));
        assert_eq!(memo.counts().entries, 1);
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let one = answer(1, ServedPath::Personal).footprint();
        let memo = Memo::new(3 * one + one / 2);
        let kept = (0..10_u32)
            .filter(|&user| memo.insert(user, &answer(user, ServedPath::Personal)))
            .count();
        assert_eq!(kept, 3);
        let counts = memo.counts();
        assert_eq!(counts.entries, 3);
        assert!(counts.bytes <= counts.budget_bytes);
        assert!((0..3).all(|user| memo.get(user).is_some()));
        assert!((3..10).all(|user| memo.get(user).is_none()));
        let disabled = Memo::new(0);
        assert!(!disabled.insert(1, &answer(1, ServedPath::Personal)));
    }

    mod through_the_handler {
        use std::collections::HashSet;
        use std::sync::Arc;

        use http_body_util::BodyExt as _;

        use super::super::{Answer, DEFAULT_BUDGET_BYTES, ServedPath};
        use crate::model::fixtures::{self, ADULT_MOVIES, COLD_MINOR, MINOR, WATCHER};
        use crate::model::{Algo, Model, RecommendPath, TrainParams};
        use crate::server::{AppState, LoadedModel, StateConfig, join_ids, respond};

        const UNKNOWN: u32 = 4_000_000;

        fn model(algo: Algo) -> Model {
            let params = TrainParams {
                algo,
                cold_start_min_group_users: 2,
                als: crate::model::AlsHyper {
                    factors: 4,
                    reg: 1.0,
                    alpha: 10.0,
                },
                ..TrainParams::default()
            };
            crate::train::train(&fixtures::dataset(), &params, "v-memo", "digest").expect("trains")
        }

        fn state(model: &Model, memo_bytes: usize) -> Arc<AppState> {
            let state = AppState::new(StateConfig {
                model_threads: 1,
                memo_bytes,
                ..StateConfig::default()
            });
            assert!(state.set_model(LoadedModel {
                recommender: Arc::new(model.clone()),
                artifact_sha256: "a57".into(),
            }));
            Arc::new(state)
        }

        async fn body(state: &Arc<AppState>, path: &str) -> String {
            let response = respond(state, &http::Method::GET, path).await;
            assert_eq!(response.status(), 200, "{path}");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8(bytes.to_vec()).unwrap()
        }

        fn seen(user: u32) -> HashSet<u32> {
            let data = fixtures::dataset();
            let rated = data
                .ratings
                .iter()
                .filter(|r| r.user == user)
                .map(|r| r.movie);
            let watched = data
                .watches
                .iter()
                .filter(|w| w.user == user)
                .map(|w| w.movie);
            rated.chain(watched).collect()
        }

        #[tokio::test]
        async fn kept_answers_are_exactly_the_models_with_every_serving_rule() {
            for algo in Algo::ALL {
                let model = model(algo);
                let cached = state(&model, DEFAULT_BUDGET_BYTES);
                let uncached = state(&model, 0);
                assert!(uncached.memo().is_none());
                let users: Vec<u32> = (1..=10).chain([UNKNOWN]).collect();
                for round in 0..3 {
                    for &user in &users {
                        let path = format!("/recommend/{user}");
                        let direct = model.recommend(user, 20);
                        let expected = join_ids(&direct.movies);
                        assert_eq!(
                            body(&cached, &path).await,
                            expected,
                            "{algo:?} {user} {round}"
                        );
                        assert_eq!(body(&uncached, &path).await, expected, "{algo:?} {user}");
                        let ids: Vec<u32> =
                            expected.split(',').map(|id| id.parse().unwrap()).collect();
                        // Twelve movies in the fixture: lists are as long as the rules allow.
                        let distinct: HashSet<u32> = ids.iter().copied().collect();
                        assert_eq!(distinct.len(), ids.len(), "{algo:?} {user}: {ids:?}");
                        let seen = seen(user);
                        assert!(
                            ids.iter().all(|m| !seen.contains(m)),
                            "{algo:?} {user}: {ids:?}"
                        );
                        if [MINOR, COLD_MINOR, UNKNOWN].contains(&user) {
                            assert!(
                                ids.iter().all(|m| !ADULT_MOVIES.contains(m)),
                                "{algo:?} {user}"
                            );
                        }
                        let cold = [COLD_MINOR, WATCHER].contains(&user);
                        assert_eq!(
                            direct.path == RecommendPath::ColdStart,
                            cold,
                            "{algo:?} {user}"
                        );
                    }
                }
                // Ten known users kept on their first request; the unknown one never.
                let counts = cached.memo().unwrap().counts();
                assert_eq!(counts.entries, 10, "{algo:?}");
                assert_eq!(counts.misses, 10 + 3, "{algo:?}");
                assert_eq!(counts.hits, 2 * 10, "{algo:?}");
                let text = body(&cached, "/metrics").await;
                let base = "release=\"movrek\",track=\"stable\",model_version=\"v-memo\"";
                for line in [
                    format!("movrek_memo_hits_total{{{base}}} 20"),
                    format!("movrek_memo_misses_total{{{base}}} 13"),
                    format!("movrek_memo_entries{{{base}}} 10"),
                ] {
                    assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
                }
            }
        }

        #[tokio::test]
        async fn a_small_budget_keeps_few_users_and_the_rest_are_still_served() {
            let model = model(Algo::Ease);
            let one = Answer::new(model.recommend(1, 20).movies, ServedPath::Personal).footprint();
            let state = state(&model, 2 * one);
            for _ in 0..2 {
                for user in 1..=8 {
                    let expected = join_ids(&model.recommend(user, 20).movies);
                    assert_eq!(body(&state, &format!("/recommend/{user}")).await, expected);
                }
            }
            let counts = state.memo().unwrap().counts();
            assert!(counts.bytes <= counts.budget_bytes, "{counts:?}");
            assert!((1..=2).contains(&counts.entries), "{counts:?}");
            assert_eq!(counts.hits + counts.misses, 16);
            assert_eq!(counts.hits, counts.entries, "{counts:?}");
        }

        #[tokio::test]
        async fn a_cpu_fault_turns_the_memo_off() {
            let state = AppState::new(StateConfig {
                faults: crate::server::Faults {
                    cpu: std::time::Duration::from_micros(1),
                    ..crate::server::Faults::default()
                },
                ..StateConfig::default()
            });
            assert!(state.memo().is_none());
        }
    }
}
