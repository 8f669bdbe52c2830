//! The warp filter and the one handler behind it: classify, answer, count, log.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use warp::Filter;
use warp::http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue};
use warp::http::{Method, Response};

use super::metrics::{ServedPath, Status};
use super::route::{Route, RouteLabel};
use super::state::AppState;

/// Movies per recommendation list (the pod contract).
pub const LIST_LEN: usize = 20;

/// The `X-Model-Version` response header.
pub const MODEL_VERSION_HEADER: HeaderName = HeaderName::from_static("x-model-version");

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const PROMETHEUS_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

/// Every route of the server as one warp filter that never rejects: unknown paths and
/// wrong methods are answered here (404/405) so that they too carry `X-Model-Version` and
/// are counted.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response<String>,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::any().map(move || Arc::clone(&state)))
        .then(
            |method: Method, path: warp::path::FullPath, state| async move {
                handle(&state, &method, path.as_str()).await
            },
        )
}

/// Answers one request.
async fn handle(state: &Arc<AppState>, method: &Method, path: &str) -> Response<String> {
    let started = Instant::now();
    let route = Route::classify(method, path);
    let mut served = None;
    let (status, body, content_type) = match route {
        Route::Recommend(user) => {
            let (status, body, path) = recommend(state, user).await;
            served = path;
            (status, body, TEXT)
        }
        Route::BadUserId(reason) => (Status::BadRequest, reason.to_string(), TEXT),
        Route::Healthz => (Status::Ok, "ok".to_owned(), TEXT),
        Route::Readyz => match state.model() {
            Some(_) => (Status::Ok, "ready".to_owned(), TEXT),
            None => (Status::Unavailable, "model not loaded yet".to_owned(), TEXT),
        },
        Route::Version => (Status::Ok, version_json(state), JSON),
        Route::Metrics => (Status::Ok, state.render_metrics(), PROMETHEUS_TEXT),
        Route::MethodNotAllowed(_) => (Status::MethodNotAllowed, "use GET".to_owned(), TEXT),
        Route::NotFound => (Status::NotFound, "no such path".to_owned(), TEXT),
    };

    let mut response = Response::new(body);
    *response.status_mut() = status.code();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(MODEL_VERSION_HEADER, state.version_header());
    if status == Status::MethodNotAllowed {
        headers.insert(ALLOW, HeaderValue::from_static("GET"));
    }

    let elapsed = started.elapsed();
    let label = route.label();
    state.metrics.record(label, status, elapsed);
    let latency_us = elapsed.as_micros() as u64;
    let code = status.code().as_u16();
    if label == RouteLabel::Recommend {
        let user = match route {
            Route::Recommend(user) => Some(user),
            _ => None,
        };
        tracing::info!(
            target: "movrek::request",
            user,
            model_version = state.model_version_label(),
            status = code,
            latency_us,
            route = label.as_str(),
            served = served.map(ServedPath::as_str),
        );
    } else {
        tracing::debug!(
            target: "movrek::request",
            path,
            model_version = state.model_version_label(),
            status = code,
            latency_us,
            route = label.as_str(),
        );
    }
    response
}

/// `/recommend/{user}`: not ready → 503; over the in-flight limit → 503; injected fault →
/// 500; else the model's list as comma-separated ids and the path that produced it.
async fn recommend(state: &Arc<AppState>, user: u32) -> (Status, String, Option<ServedPath>) {
    let Some(model) = state.model() else {
        return (Status::Unavailable, "model not loaded yet".to_owned(), None);
    };
    let Some(_slot) = state.try_acquire() else {
        return (
            Status::Unavailable,
            "overloaded: too many requests in flight".to_owned(),
            None,
        );
    };
    let faults = state.config().faults;
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if state.next_request_fails() {
        return (Status::InternalError, "injected fault".to_owned(), None);
    }
    let (movies, path) = model.recommender.recommend(user, LIST_LEN);
    state.metrics.record_served(path);
    (Status::Ok, join_ids(&movies), Some(path))
}

/// `1,2,3`: ids comma-separated, no spaces, no trailing newline.
pub fn join_ids(ids: &[u32]) -> String {
    let mut out = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{id}");
    }
    out
}

/// `/version`: the model's provenance plus what this process adds (artifact digest, labels,
/// server version). Before the model loads, `model` is `null` and `ready` is false.
fn version_json(state: &AppState) -> String {
    let config = state.config();
    let model = state.model();
    let value = serde_json::json!({
        "ready": model.is_some(),
        "model_version": state.model_version_label(),
        "announced_model_version": config.announced_version,
        "artifact_sha256": model.map(|m| m.artifact_sha256.as_str()),
        "model": model.map(|m| m.recommender.provenance()),
        "release": config.release,
        "track": config.track.as_str(),
        "server_version": env!("CARGO_PKG_VERSION"),
    });
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_joined_without_spaces_or_newline() {
        assert_eq!(join_ids(&[]), "");
        assert_eq!(join_ids(&[7]), "7");
        assert_eq!(join_ids(&[1, 20, 4_294_967_295]), "1,20,4294967295");
    }
}
