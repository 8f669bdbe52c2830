//! The one handler: classify, admit, answer, count, log. No IO of its own: the connection
//! layer ([`super::conn`]) feeds it parsed requests and writes what it returns.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response};
use http_body_util::Full;

use super::admission::{Outcome, model_work};
use super::drain;
use super::memo::Answer;
use super::metrics::{ServedPath, Status};
use super::route::{ALLOWED_METHODS, Route, RouteLabel};
use super::state::AppState;

/// Movies per recommendation list (the pod contract).
pub const LIST_LEN: usize = 20;

/// The `X-Model-Version` response header.
pub const MODEL_VERSION_HEADER: HeaderName = HeaderName::from_static("x-model-version");

/// The `X-Impression-Id` response header of a 200 from `/recommend`: the id of the
/// impression record (see [`crate::bus::impression`]).
pub const IMPRESSION_ID_HEADER: HeaderName = HeaderName::from_static("x-impression-id");

/// Response body type.
pub type Body = Full<Bytes>;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const PROMETHEUS_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
const CLOSE: HeaderValue = HeaderValue::from_static("close");
/// Seconds a client should wait before retrying a 503.
const RETRY_SECONDS: HeaderValue = HeaderValue::from_static("1");

/// Answers one parsed request (the body, if any, is never read).
pub async fn handle<B>(state: &Arc<AppState>, request: &Request<B>) -> Response<Body> {
    respond(state, request.method(), request.uri().path()).await
}

/// Answers `method` on `path`: every request gets a status, `X-Model-Version`, and a count in
/// `movrek_requests_total`; 503s carry `Retry-After`, 405s `Allow`, and while draining every
/// answer carries `Connection: close`.
pub async fn respond(state: &Arc<AppState>, method: &Method, path: &str) -> Response<Body> {
    let started = Instant::now();
    let route = Route::classify(method, path);
    let phase = state.drain.phase();
    let mut served = None;
    let mut impression = None;
    let (status, body, content_type) = match route {
        Route::Recommend(user) => match recommend(state, user).await {
            Ok(answer) => {
                served = Some(answer.path);
                impression = Some(state.impression(user, &answer.movies));
                (Status::Ok, answer.body.clone(), TEXT)
            }
            Err((status, reason)) => (status, Bytes::from_static(reason.as_bytes()), TEXT),
        },
        Route::BadUserId(reason) => (Status::BadRequest, Bytes::from(reason.to_string()), TEXT),
        Route::Healthz => (Status::Ok, Bytes::from_static(b"ok"), TEXT),
        Route::Readyz => {
            let loaded = state.model().is_some();
            let (status, body): (_, &'static str) = if drain::ready(phase, loaded) {
                (Status::Ok, "ready")
            } else if loaded {
                (Status::Unavailable, "draining")
            } else {
                (Status::Unavailable, "model not loaded yet")
            };
            (status, Bytes::from_static(body.as_bytes()), TEXT)
        }
        Route::Version => (Status::Ok, Bytes::from(version_json(state)), JSON),
        Route::Metrics => (
            Status::Ok,
            Bytes::from(state.render_metrics()),
            PROMETHEUS_TEXT,
        ),
        Route::MethodNotAllowed(_) => (
            Status::MethodNotAllowed,
            Bytes::from_static(b"use GET or HEAD"),
            TEXT,
        ),
        Route::NotFound => (Status::NotFound, Bytes::from_static(b"no such path"), TEXT),
    };

    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status.code();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(MODEL_VERSION_HEADER, state.version_header());
    if let Some(id) = impression.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert(IMPRESSION_ID_HEADER, id);
    }
    match status {
        Status::MethodNotAllowed => {
            headers.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        Status::Unavailable => {
            headers.insert(RETRY_AFTER, RETRY_SECONDS);
        }
        _ => {}
    }
    if drain::close_after_answer(phase) {
        headers.insert(CONNECTION, CLOSE);
    }

    let elapsed = started.elapsed();
    state.metrics.record(route.label(), status, elapsed);
    log_request(state, method, path, route, status, elapsed, served);
    response
}

/// One `movrek::request` line: INFO for `/recommend` (user, status, latency, model path),
/// DEBUG for everything else.
fn log_request(
    state: &AppState,
    method: &Method,
    path: &str,
    route: Route,
    status: Status,
    elapsed: std::time::Duration,
    served: Option<ServedPath>,
) {
    let label = route.label();
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
            method = method.as_str(),
            model_version = state.model_version_label(),
            status = code,
            latency_us,
            route = label.as_str(),
        );
    }
}

/// The answer when the handler panicked (the panic itself is logged by the panic hook).
pub fn panicked(state: &AppState) -> Response<Body> {
    state.metrics.record(
        RouteLabel::Other,
        Status::InternalError,
        std::time::Duration::ZERO,
    );
    let mut response = Response::new(Full::new(Bytes::from_static(b"internal error")));
    *response.status_mut() = Status::InternalError.code();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, TEXT);
    headers.insert(MODEL_VERSION_HEADER, state.version_header());
    headers.insert(CONNECTION, CLOSE);
    response
}

/// `/recommend/{user}`: not ready → 503; not admitted → 503; injected fault → 500; the
/// memo's answer when it keeps one; shed after waiting → 503; else the model's list, which
/// the memo then keeps.
async fn recommend(
    state: &Arc<AppState>,
    user: u32,
) -> Result<Arc<Answer>, (Status, &'static str)> {
    let Some(model) = state.model() else {
        return Err((Status::Unavailable, "model not loaded yet"));
    };
    let _slot = state
        .admit()
        .map_err(|shed| (Status::Unavailable, shed.message()))?;
    let faults = state.config().faults;
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if state.next_request_fails() {
        return Err((Status::InternalError, "injected fault"));
    }
    let memo = state.memo();
    if let Some(answer) = memo.and_then(|memo| memo.get(user)) {
        state.metrics.record_served(answer.path);
        return Ok(answer);
    }
    let work = model_work(Arc::clone(&model.recommender), user, LIST_LEN, faults.cpu);
    match state.pool().run(work).await {
        Outcome::Served(movies, path) => {
            state.metrics.record_served(path);
            let answer = Arc::new(Answer::new(movies, path));
            if let Some(memo) = memo {
                memo.insert(user, &answer);
            }
            Ok(answer)
        }
        Outcome::Shed(shed) => Err((Status::Unavailable, shed.message())),
    }
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
