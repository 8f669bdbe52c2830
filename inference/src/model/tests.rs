//! Behaviour of the served model on the hand-made fixture.

use std::collections::HashSet;

use super::fixtures::{self, ADULT, ADULT_MOVIES, COLD_MINOR, MINOR, UNKNOWN_AGE, WATCHER};
use super::{Algo, AlsHyper, Model, RecommendPath};
use crate::data::{Dataset, Rating, RatingScale};
use crate::train::{TrainParams, train};

fn params() -> TrainParams {
    TrainParams {
        cold_start_min_group_users: 2,
        // Few factors: the fixture has twelve movies, and debug builds solve slowly.
        als: AlsHyper {
            factors: 4,
            reg: 1.0,
            alpha: 10.0,
        },
        ..TrainParams::default()
    }
}

/// [`params`] once per algorithm: every serving rule must hold for each.
fn every_algo() -> impl Iterator<Item = TrainParams> {
    Algo::ALL
        .into_iter()
        .map(|algo| TrainParams { algo, ..params() })
}

fn model_of(dataset: &Dataset, params: &TrainParams) -> Model {
    train(dataset, params, "test", "digest").expect("fixture trains")
}

/// Movies `user` may be recommended: the catalogue minus rated, watched and (if filtered)
/// adult movies.
fn allowed(dataset: &Dataset, user: u32, filter_adult: bool) -> HashSet<u32> {
    let seen: HashSet<u32> = dataset
        .ratings
        .iter()
        .filter(|r| r.user == user)
        .map(|r| r.movie)
        .chain(
            dataset
                .watches
                .iter()
                .filter(|w| w.user == user)
                .map(|w| w.movie),
        )
        .collect();
    dataset
        .movies
        .iter()
        .filter(|m| !(seen.contains(&m.id) || (filter_adult && m.adult)))
        .map(|m| m.id)
        .collect()
}

fn as_set(ids: &[u32]) -> HashSet<u32> {
    let set: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "ids are not distinct: {ids:?}");
    set
}

#[test]
fn never_recommends_rated_or_watched_movies() {
    for params in every_algo() {
        let data = fixtures::dataset();
        let model = model_of(&data, &params);
        for user in [ADULT, WATCHER, MINOR, UNKNOWN_AGE, COLD_MINOR] {
            let recs = model.recommend(user, 20);
            let filter = user != ADULT;
            assert_eq!(
                as_set(&recs.movies),
                allowed(&data, user, filter),
                "user {user}"
            );
        }
    }
}

#[test]
fn minors_unknown_ages_and_unknown_users_never_get_adult_movies() {
    for params in every_algo() {
        let data = fixtures::dataset();
        let model = model_of(&data, &params);
        for user in [MINOR, COLD_MINOR, UNKNOWN_AGE, WATCHER, 999] {
            let recs = model.recommend(user, 20);
            assert!(
                recs.movies.iter().all(|m| !ADULT_MOVIES.contains(m)),
                "user {user}: {recs:?}"
            );
        }
        // The adult would get them (they are the best rated movies among the neighbours), and so
        // does the unknown-age user when the safe default is switched off.
        let data_adult_ok = allowed(&data, UNKNOWN_AGE, false);
        let lenient = model_of(
            &data,
            &TrainParams {
                filter_adult_unknown_age: false,
                ..params.clone()
            },
        );
        assert_eq!(
            as_set(&lenient.recommend(UNKNOWN_AGE, 20).movies),
            data_adult_ok
        );
        assert!(data_adult_ok.contains(&11) && data_adult_ok.contains(&12));
    }
}

#[test]
fn path_depends_on_history_length() {
    for params in every_algo() {
        let data = fixtures::dataset();
        let model = model_of(&data, &params);
        assert_eq!(model.recommend(MINOR, 5).path, RecommendPath::Personal);
        assert_eq!(
            model.recommend(COLD_MINOR, 5).path,
            RecommendPath::ColdStart
        );
        assert_eq!(model.recommend(WATCHER, 5).path, RecommendPath::ColdStart);
        assert_eq!(model.recommend(999, 5).path, RecommendPath::UnknownUser);
        assert!(model.contains_user(WATCHER) && !model.contains_user(999));
        // Raising the threshold above the minor's 7 ratings moves them to cold start.
        let strict = model_of(
            &data,
            &TrainParams {
                cold_start_min_ratings: 8,
                ..params.clone()
            },
        );
        assert_eq!(strict.recommend(MINOR, 5).path, RecommendPath::ColdStart);
    }
}

#[test]
fn returns_exactly_n_distinct_ids_when_the_catalogue_allows() {
    for params in every_algo() {
        let data = fixtures::dataset();
        let model = model_of(&data, &params);
        for n in 0..=8 {
            let recs = model.recommend(COLD_MINOR, n);
            assert_eq!(recs.movies.len(), n);
            as_set(&recs.movies);
        }
        // The unknown user may get the 10 non-adult movies and no more.
        let recs = model.recommend(999, 20);
        assert_eq!(as_set(&recs.movies), (1..=10).collect());
    }
}

#[test]
fn personal_ranking_prefers_what_similar_users_liked() {
    let data = fixtures::dataset();
    let params = || TrainParams {
        algo: Algo::UserKnn,
        ..self::params()
    };
    // Unfiltered, the unknown-age user may get 4, 8, 11 and 12; the adult movies, rated 5 by
    // every neighbour who saw them, must come first.
    let model = model_of(
        &data,
        &TrainParams {
            filter_adult_unknown_age: false,
            ..params()
        },
    );
    let recs = model.recommend(UNKNOWN_AGE, 20);
    assert_eq!(recs.path, RecommendPath::Personal);
    assert_eq!(
        as_set(&recs.movies[..2]),
        ADULT_MOVIES.into_iter().collect()
    );
}

#[test]
fn equal_scores_are_ordered_by_movie_id() {
    let rating = |user, movie| Rating {
        user,
        movie,
        value: 4.0,
        timestamp: 0,
    };
    let data = Dataset {
        users: Vec::new(),
        movies: Vec::new(),
        ratings: vec![
            rating(1, 5),
            rating(2, 5),
            rating(1, 3),
            rating(2, 3),
            rating(3, 1),
        ],
        watches: Vec::new(),
        scale: RatingScale::WHOLE_STARS,
    };
    let model = model_of(&data, &params());
    // 3 and 5 tie (same raters, same ratings); 1 has fewer raters.
    assert_eq!(model.recommend(42, 3).movies, vec![3, 5, 1]);
}

fn normalised(mut model: Model) -> Model {
    model.meta.trained_at = String::new();
    model.meta.train_seconds = 0.0;
    model
}

#[test]
fn training_is_deterministic_and_independent_of_input_order() {
    for params in every_algo() {
        let data = fixtures::dataset();
        let a = normalised(model_of(&data, &params));
        let b = normalised(model_of(&data, &params));
        assert_eq!(a, b);
        let mut shuffled = data.clone();
        shuffled.ratings.reverse();
        shuffled.ratings.rotate_left(7);
        shuffled.users.reverse();
        shuffled.movies.reverse();
        shuffled.watches.reverse();
        let c = normalised(model_of(&shuffled, &params));
        assert_eq!(a, c);
        for user in 1..=10 {
            assert_eq!(a.recommend(user, 20), a.recommend(user, 20));
        }
    }
}

#[test]
fn duplicate_ratings_keep_the_latest() {
    let mut data = fixtures::dataset();
    let first = data.ratings[0];
    data.ratings.push(Rating {
        value: 1.0,
        timestamp: first.timestamp + 1,
        ..first
    });
    let model = model_of(&data, &params());
    assert_eq!(model.metadata().counts.duplicate_ratings_dropped, 1);
    assert_eq!(model.metadata().counts.ratings, data.ratings.len() - 1);
    let u = model.users.binary_search(&first.user).unwrap();
    let j = model.movies.binary_search(&first.movie).unwrap() as u32;
    let (items, values) = model.ratings.row(u);
    assert!((values[items.binary_search(&j).unwrap()] - 1.0).abs() < f32::EPSILON);
}

#[test]
fn predictions_stay_in_scale_and_fall_back_for_unknown_ids() {
    let data = fixtures::dataset();
    let model = model_of(&data, &params());
    for user in [1, 2, 7, 8, 9, 10, 999] {
        for movie in 0..=13 {
            let p = model.predict(user, movie);
            assert!((1.0..=5.0).contains(&p), "{user}/{movie}: {p}");
        }
    }
    let mean = model.metadata().global_mean;
    assert!((model.predict(999, 999) - mean).abs() < 1e-6);
    // Loved adult movies predict above the mean for an adult.
    assert!(model.predict(ADULT, 11) > mean);
    assert!(model.metadata().holdout_rmse.is_none_or(f64::is_finite));
}

#[test]
fn bad_input_is_refused() {
    let mut data = fixtures::dataset();
    data.ratings[3].value = 7.0;
    assert!(matches!(
        train(&data, &params(), "v", "d"),
        Err(crate::train::TrainError::RatingOutOfScale { value, .. }) if (value - 7.0).abs() < f32::EPSILON
    ));
    data.ratings.clear();
    assert!(matches!(
        train(&data, &params(), "v", "d"),
        Err(crate::train::TrainError::NoRatings)
    ));
}

#[test]
fn recommend_into_reuses_one_buffer_and_matches_recommend() {
    for params in every_algo() {
        let data = fixtures::dataset();
        let model = model_of(&data, &params);
        let users = [ADULT, WATCHER, MINOR, UNKNOWN_AGE, COLD_MINOR, 999];
        // A dirty buffer with room for the largest list: every call must clear it, never grow it,
        // and leave exactly what `recommend` returns, whatever the previous user and length were.
        let mut out = vec![u32::MAX; 7];
        out.reserve(model.movie_count());
        let (ptr, capacity) = (out.as_ptr(), out.capacity());
        for n in [20, 0, 1, 3, model.movie_count() + 5, 2] {
            for &user in users.iter().chain(users.iter().rev()) {
                let path = model.recommend_into(user, n, &mut out);
                let fresh = model.recommend(user, n);
                assert_eq!(
                    (&out, path),
                    (&fresh.movies, fresh.path),
                    "user {user}, n {n}"
                );
                assert_eq!((out.as_ptr(), out.capacity()), (ptr, capacity));
            }
        }
    }
}

/// Two tastes: users 1..=20 rate five of movies 1..=6, users 21..=40 five of 7..=12; which
/// one a user misses cycles with the user id.
fn two_tastes() -> Dataset {
    let mut ratings = Vec::new();
    for user in 1..=40_u32 {
        let own = if user <= 20 { 1..=6 } else { 7..=12 };
        let skip = own.start() + user % 6;
        for movie in own.filter(|&m| m != skip) {
            ratings.push(Rating {
                user,
                movie,
                value: 4.0,
                timestamp: 0,
            });
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

#[test]
fn learned_models_rank_the_users_own_taste_first() {
    let data = two_tastes();
    for algo in [Algo::Ease, Algo::Als] {
        let model = model_of(
            &data,
            &TrainParams {
                algo,
                ease_lambda: 5.0,
                ease_lambda_candidates: Vec::new(),
                als: AlsHyper {
                    factors: 2,
                    reg: 1.0,
                    alpha: 5.0,
                },
                als_iterations: 8,
                filter_adult_unknown_age: false,
                ..params()
            },
        );
        for user in [1_u32, 2, 21, 22] {
            let recs = model.recommend(user, 1);
            assert_eq!(recs.path, RecommendPath::Personal);
            let own = if user <= 20 { 1..=6 } else { 7..=12 };
            // The one own-taste movie the user has not rated comes first.
            assert_eq!(
                recs.movies,
                vec![own.start() + user % 6],
                "{algo:?} user {user}: {:?}",
                model.recommend(user, 5)
            );
        }
    }
}

#[test]
fn a_learned_model_without_its_weights_is_refused() {
    let data = fixtures::dataset();
    for algo in [Algo::Ease, Algo::Als] {
        let mut model = model_of(&data, &TrainParams { algo, ..params() });
        assert_eq!(model.validate(), Ok(()));
        model.learned = super::Learned::default();
        assert!(model.validate().is_err(), "{algo:?}");
    }
}

#[test]
fn the_ease_request_budget_takes_each_rated_rows_strongest_weights() {
    let data = two_tastes();
    let base = TrainParams {
        algo: Algo::Ease,
        ease_lambda: 5.0,
        ease_lambda_candidates: Vec::new(),
        ..params()
    };
    let full = model_of(&data, &base);
    // Every user rates five movies; a budget of ten gives each rated row its two strongest
    // weights (rows hold five). The top movie is then the best hand-summed score among
    // unrated movies, whenever those weights reach one.
    // The budget applies only where nothing is precomputed.
    let tight = model_of(
        &data,
        &TrainParams {
            ease_request_budget: 10,
            precomputed_list_len: 0,
            ..base.clone()
        },
    );
    let mut checked = 0;
    for user in 1..=40_u32 {
        let u = tight.users.binary_search(&user).unwrap();
        let history = tight.ratings.row(u).0.to_vec();
        assert_eq!(history.len(), 5);
        let mut score: std::collections::BTreeMap<u32, f32> = std::collections::BTreeMap::new();
        for &i in &history {
            let (cols, vals) = tight.learned.item_weights.row(i as usize);
            assert!(cols.len() > 2);
            for (&j, &w) in cols.iter().zip(vals).take(2) {
                *score.entry(j).or_default() += w;
            }
        }
        let best = score
            .iter()
            .filter(|(j, _)| !history.contains(j))
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(&j, _)| tight.movies[j as usize]);
        if best.is_some() {
            assert_eq!(tight.recommend(user, 1).movies.first().copied(), best);
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no user's strongest weights reach an unrated movie"
    );
    // A budget that covers every stored weight serves what the unbudgeted sum gives.
    let roomy = model_of(
        &data,
        &TrainParams {
            ease_request_budget: 5 * base.ease_neighbours,
            precomputed_list_len: 0,
            ..base
        },
    );
    for user in [1, 21] {
        assert_eq!(roomy.recommend(user, 6), full.recommend(user, 6));
    }
}

/// The precomputed lists are a cache, never a different answer: for every user (known,
/// cold-start, unknown) and list length (shorter, equal, longer than the precomputed one),
/// the model serves what it ranks in full with nothing precomputed.
#[test]
fn precomputed_lists_serve_exactly_what_full_ranking_gives() {
    let data = fixtures::dataset();
    for params in every_algo() {
        let model = model_of(&data, &params);
        let rows = model.precomputed.rows();
        if params.algo == Algo::UserKnn {
            assert_eq!(rows, 0, "user-knn precomputes nothing");
            continue;
        }
        assert_eq!(rows, model.users.len(), "{:?}", params.algo);
        let stored = (0..rows)
            .filter(|&u| !model.precomputed.row(u).is_empty())
            .count();
        assert_eq!(
            stored, model.meta.counts.personal_users,
            "{:?}",
            params.algo
        );
        let mut live = model.clone();
        live.precomputed = super::Lists::default();
        let len = params.precomputed_list_len;
        for user in data.users.iter().map(|u| u.id).chain([999_999]) {
            for n in [1, 5, len, len + 3] {
                assert_eq!(
                    model.recommend(user, n),
                    live.recommend(user, n),
                    "{:?} user {user} n {n}",
                    params.algo
                );
            }
        }
    }
}

/// Metadata written before `precomputed_list_len`, `ease_min_rating` and its candidates
/// existed reads them as 0 or empty (nothing precomputed, the request budget applies, every
/// rating counts), so an old artifact ranks as it did; new training precomputes by default
/// and lets the validation split choose between every rating and the liked ones.
#[test]
fn fields_missing_from_old_metadata_read_as_zero() {
    let old: TrainParams = serde_json::from_str("{}").unwrap();
    assert_eq!(old.precomputed_list_len, 0);
    assert_eq!(old.ease_min_rating.to_bits(), 0.0_f32.to_bits());
    assert!(old.ease_min_rating_candidates.is_empty());
    let new = TrainParams::default();
    assert_eq!(new.precomputed_list_len, 20);
    assert_eq!(new.ease_min_rating.to_bits(), 0.0_f32.to_bits());
    assert_eq!(new.ease_min_rating_candidates, [0.0, 4.0]);
}

/// EASE learns from liked ratings only: its weights do not depend on the ratings below
/// `ease_min_rating` (changing a disliked rating's value changes no weight), but they do
/// with a threshold of 0.
#[test]
fn ease_weights_come_from_liked_ratings_only() {
    let data = fixtures::dataset();
    let params = TrainParams {
        algo: Algo::Ease,
        ease_lambda_candidates: Vec::new(),
        ease_min_rating: 4.0,
        ..params()
    };
    let disliked = data
        .ratings
        .iter()
        .position(|r| r.value < params.ease_min_rating)
        .expect("the fixture has a disliked rating");
    let mut lower = data.clone();
    lower.ratings[disliked].value = data.scale.min;
    assert_ne!(lower.ratings[disliked], data.ratings[disliked]);
    let weights = |d: &Dataset, p: &TrainParams| model_of(d, p).learned.item_weights;
    assert_eq!(weights(&data, &params), weights(&lower, &params));
    let every = TrainParams {
        ease_min_rating: 0.0,
        ..params.clone()
    };
    let mut liked_now = data.clone();
    liked_now.ratings[disliked].value = params.ease_min_rating;
    assert_ne!(weights(&data, &params), weights(&liked_now, &params));
    assert_eq!(weights(&data, &every), weights(&liked_now, &every));
}

/// Two tastes of twelve movies; every user gives 5 to eight of their own taste's and 1 to
/// eight of the other's (which ones cycles with the user id). Every rating, liked or not,
/// co-occurs as much with either taste, so only the liked ratings tell the tastes apart.
fn liked_and_disliked_tastes() -> Dataset {
    let mut ratings = Vec::new();
    for user in 1..=400_u32 {
        let (own, other) = if user % 2 == 0 { (0, 12) } else { (12, 0) };
        for k in 0..8 {
            for (first, value, start) in [(own, 5.0, user), (other, 1.0, 5 * user)] {
                ratings.push(Rating {
                    user,
                    movie: 1 + first + (start + k) % 12,
                    value,
                    timestamp: 0,
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

/// The validation split chooses EASE's minimum liked rating with `λ`, from every pair, and
/// records each pair's score: on data where only the liked ratings carry the taste, 4 wins.
#[test]
fn validation_chooses_the_liked_ratings_when_only_they_carry_the_taste() {
    let data = liked_and_disliked_tastes();
    let params = TrainParams {
        algo: Algo::Ease,
        ease_lambda_candidates: vec![5.0, 50.0],
        ease_min_rating_candidates: vec![0.0, 4.0],
        ..params()
    };
    let model = model_of(&data, &params);
    let chosen = &model.meta.params;
    assert_eq!(chosen.ease_min_rating.to_bits(), 4.0_f32.to_bits());
    let validation = model.meta.validation.as_ref().expect("tuned on validation");
    let pairs: Vec<(f64, f64)> = validation
        .candidates
        .iter()
        .map(|(c, _)| {
            (
                c["ease_min_rating"].as_f64().expect("min rating"),
                c["ease_lambda"].as_f64().expect("lambda"),
            )
        })
        .collect();
    assert_eq!(pairs, [(0.0, 5.0), (0.0, 50.0), (4.0, 5.0), (4.0, 50.0)]);
    let score = |min: f64, lambda: f64| {
        validation.candidates[pairs.iter().position(|&p| p == (min, lambda)).unwrap()].1
    };
    for lambda in [5.0, 50.0] {
        assert!(
            score(4.0, lambda) > score(0.0, lambda) + 0.05,
            "{validation:?}"
        );
    }
    assert_eq!(
        validation.chosen["ease_lambda"].as_f64(),
        Some(f64::from(chosen.ease_lambda))
    );
    // Served lists follow the choice: an even user's own unrated movies come first.
    let list = model.recommend(2, 4).movies;
    assert!(list.iter().all(|m| (1..=12).contains(m)), "{list:?}");
}

/// A non-finite candidate minimum rating is refused by name before any fitting.
#[test]
fn a_non_finite_minimum_rating_candidate_is_refused() {
    let err = train(
        &liked_and_disliked_tastes(),
        &TrainParams {
            algo: Algo::Ease,
            ease_min_rating_candidates: vec![0.0, f32::NAN],
            ..params()
        },
        "test",
        "digest",
    )
    .unwrap_err();
    assert!(err.to_string().contains("ease_min_rating"), "{err}");
}
