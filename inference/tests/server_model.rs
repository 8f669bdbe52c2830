//! Route tests with a real trained [`Model`] behind the server: the serving rules seen
//! through HTTP (no re-recommendation, adult filter for a minor, unknown users get a full
//! cold-start list) and the recommendation-path counters.

use std::collections::HashSet;
use std::sync::Arc;

use http_body_util::BodyExt as _;
use movrek_inference::data::{AgeBucket, Dataset, Gender, Movie, Rating, RatingScale, User};
use movrek_inference::server::{AppState, LoadedModel, StateConfig, Track, respond};
use movrek_inference::train::{TrainParams, train};

const MINOR: u32 = 2;
const THIN: u32 = 41;
const ADULT_MOVIES: std::ops::RangeInclusive<u32> = 51..=60;

/// 40 users with 15 ratings each over movies 1–50; movies 51–60 are adult and users 3–40
/// also rate 51–55 at 5 stars, so only the filter keeps them from the minor (user 2), while
/// user 1, an adult with no adult ratings, gets them. User 41 has two ratings (cold start).
fn dataset() -> Dataset {
    let users = (1..=41)
        .map(|id| User {
            id,
            gender: Some(if id % 2 == 0 {
                Gender::Female
            } else {
                Gender::Male
            }),
            age: Some(if id == MINOR {
                AgeBucket::Under18
            } else {
                AgeBucket::From25To34
            }),
            occupation: Some("4".into()),
        })
        .collect();
    let movies = (1..=60)
        .map(|id| Movie {
            id,
            title: format!("Movie {id}"),
            year: Some(1990),
            genres: vec!["Drama".into()],
            adult: ADULT_MOVIES.contains(&id),
            external_rating: None,
        })
        .collect();
    let mut ratings = Vec::new();
    let mut rate = |user: u32, movie: u32, value: f32| {
        ratings.push(Rating {
            user,
            movie,
            value,
            timestamp: 0,
        });
    };
    for user in 1..=40_u32 {
        let mut seen = HashSet::new();
        for k in 0..15_u32 {
            let movie = (user * 7 + k * 3) % 50 + 1;
            if seen.insert(movie) {
                rate(user, movie, (1 + (user + movie) % 5) as f32);
            }
        }
        if user != MINOR && user != 1 {
            for movie in 51..=55 {
                rate(user, movie, 5.0);
            }
        }
    }
    rate(THIN, 1, 4.0);
    rate(THIN, 2, 3.0);
    Dataset {
        users,
        movies,
        ratings,
        watches: Vec::new(),
        scale: RatingScale::WHOLE_STARS,
    }
}

fn state(data: &Dataset) -> Arc<AppState> {
    let model = train(data, &TrainParams::default(), "v-real", "data-digest").expect("train");
    let state = AppState::new(StateConfig {
        release: "movies".into(),
        track: Track::Stable,
        announced_version: None,
        max_inflight: 16,
        ..StateConfig::default()
    });
    assert!(state.set_model(LoadedModel {
        recommender: Arc::new(model),
        artifact_sha256: "artifact-digest".into(),
    }));
    Arc::new(state)
}

async fn list(state: &Arc<AppState>, user: u32) -> Vec<u32> {
    let response = respond(state, &http::Method::GET, &format!("/recommend/{user}")).await;
    assert_eq!(response.status(), 200, "user {user}");
    assert_eq!(response.headers()["x-model-version"], "v-real");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = std::str::from_utf8(&bytes).unwrap();
    assert!(!body.contains(' ') && !body.ends_with('\n'), "{body:?}");
    body.split(',')
        .map(|id| id.parse().expect("numeric id"))
        .collect()
}

#[tokio::test]
async fn rated_movies_are_never_recommended_again() {
    let data = dataset();
    let state = state(&data);
    for user in 1..=41 {
        let ids = list(&state, user).await;
        assert_eq!(ids.len(), 20, "user {user}");
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 20, "duplicates");
        let rated: HashSet<u32> = data
            .ratings
            .iter()
            .filter(|r| r.user == user)
            .map(|r| r.movie)
            .collect();
        assert!(
            ids.iter().all(|m| !rated.contains(m)),
            "user {user} got a rated movie: {ids:?}"
        );
    }
}

#[tokio::test]
async fn a_minor_never_gets_adult_movies_but_adults_may() {
    let data = dataset();
    let state = state(&data);
    let minor = list(&state, MINOR).await;
    assert!(
        minor.iter().all(|m| !ADULT_MOVIES.contains(m)),
        "minor got an adult movie: {minor:?}"
    );
    // Without the filter they would be there: user 1, an adult with a like history, gets them.
    let adult = list(&state, 1).await;
    assert!(
        adult.iter().any(|m| ADULT_MOVIES.contains(m)),
        "the fixture does not exercise the filter: {adult:?}"
    );
}

#[tokio::test]
async fn unknown_users_get_twenty_non_adult_ids_and_paths_are_counted() {
    let data = dataset();
    let state = state(&data);
    let unknown = list(&state, 4_000_000).await;
    assert_eq!(unknown.len(), 20);
    assert!(unknown.iter().all(|m| !ADULT_MOVIES.contains(m)));
    assert_eq!(list(&state, 4_000_000).await, unknown, "deterministic");
    list(&state, THIN).await;
    list(&state, 1).await;

    let response = respond(&state, &http::Method::GET, "/metrics").await;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&bytes).unwrap();
    let base = "release=\"movies\",track=\"stable\",model_version=\"v-real\"";
    for (path, n) in [("unknown_user", 2), ("cold_start", 1), ("personal", 1)] {
        let line = format!("movrek_recommendations_total{{{base},path=\"{path}\"}} {n}");
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    assert!(text.contains("data_sha256=\"data-digest\""));
}
