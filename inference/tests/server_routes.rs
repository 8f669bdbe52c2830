//! Route tests through the handler (`respond`, no socket) with a small hand-built
//! recommender: status codes, bodies, headers, readiness, draining, metrics text, overload
//! shedding and fault injection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use movrek_inference::server::{
    AppState, Faults, LoadedModel, Recommender, ServedPath, StateConfig, Track, respond,
};

/// Recommends `user+1, user+2, ...`; users ≥ 1000 are "unknown", users 500..1000 "cold".
#[derive(Debug)]
struct Counting;

impl Recommender for Counting {
    fn recommend(&self, user: u32, n: usize) -> (Vec<u32>, ServedPath) {
        let path = match user {
            0..500 => ServedPath::Personal,
            500..1000 => ServedPath::ColdStart,
            _ => ServedPath::UnknownUser,
        };
        let first = user.saturating_add(1);
        ((first..).take(n).collect(), path)
    }
    fn version(&self) -> &'static str {
        "v-test"
    }
    fn data_sha256(&self) -> &'static str {
        "d474"
    }
    fn provenance(&self) -> serde_json::Value {
        serde_json::json!({ "version": "v-test", "holdout_rmse": 0.9 })
    }
}

fn config(max_inflight: usize, faults: Faults) -> StateConfig {
    StateConfig {
        release: "movies".into(),
        track: Track::Canary,
        announced_version: Some("v-test".into()),
        max_inflight,
        model_threads: 2,
        faults,
        ..StateConfig::default()
    }
}

/// A collected answer.
struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn status(&self) -> http::StatusCode {
        self.status
    }
    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
    fn body(&self) -> &Bytes {
        &self.body
    }
}

fn loaded_state(max_inflight: usize, faults: Faults) -> Arc<AppState> {
    let state = AppState::new(config(max_inflight, faults));
    assert!(state.set_model(LoadedModel {
        recommender: Arc::new(Counting),
        artifact_sha256: "a57".into(),
    }));
    Arc::new(state)
}

async fn get(state: &Arc<AppState>, path: &str) -> Answer {
    request(state, "GET", path).await
}

async fn request(state: &Arc<AppState>, method: &str, path: &str) -> Answer {
    let method = http::Method::from_bytes(method.as_bytes()).expect("method");
    let (parts, body) = respond(state, &method, path).await.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("full body").to_bytes(),
    }
}

fn body(response: &Answer) -> &str {
    std::str::from_utf8(response.body()).expect("utf-8 body")
}

fn version_header(response: &Answer) -> &str {
    response
        .headers()
        .get("x-model-version")
        .expect("X-Model-Version header")
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn recommend_returns_twenty_comma_separated_ids() {
    let state = loaded_state(8, Faults::default());
    let response = get(&state, "/recommend/41").await;
    assert_eq!(response.status(), 200);
    let expected: Vec<String> = (42..62).map(|i| i.to_string()).collect();
    assert_eq!(body(&response), expected.join(","));
    assert_eq!(version_header(&response), "v-test");
}

#[tokio::test]
async fn bad_user_ids_are_400_with_a_one_line_reason() {
    let state = loaded_state(8, Faults::default());
    for path in [
        "/recommend/abc",
        "/recommend/-3",
        "/recommend/4294967296",
        "/recommend/",
        "/recommend",
        "/recommend/1.5",
        "/recommend/%31",
    ] {
        let response = get(&state, path).await;
        assert_eq!(response.status(), 400, "{path}");
        let reason = body(&response);
        assert!(
            !reason.is_empty() && !reason.contains('\n'),
            "{path}: {reason:?}"
        );
        assert_eq!(version_header(&response), "v-test", "{path}");
    }
    assert!(body(&get(&state, "/recommend/-3").await).contains("negative"));
    assert!(body(&get(&state, "/recommend/4294967296").await).contains("4294967295"));
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_headers() {
    let state = loaded_state(8, Faults::default());
    let response = get(&state, "/nope").await;
    assert_eq!(response.status(), 404);
    assert_eq!(version_header(&response), "v-test");
    let response = get(&state, "/recommend/1/2").await;
    assert_eq!(response.status(), 404);

    for (method, path) in [
        ("POST", "/recommend/1"),
        ("DELETE", "/metrics"),
        ("PUT", "/healthz"),
    ] {
        let response = request(&state, method, path).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        assert_eq!(version_header(&response), "v-test");
    }
    // CONNECT (authority-form: no path) is 405 too, and HEAD is served like GET.
    let response = request(&state, "CONNECT", "").await;
    assert_eq!(response.status(), 405);
    assert_eq!(version_header(&response), "v-test");
    let response = request(&state, "HEAD", "/recommend/41").await;
    assert_eq!(response.status(), 200);
    let text = get_text(&state, "/metrics").await;
    assert!(
        text.contains("route=\"other\",status=\"405\"} 1"),
        "CONNECT counted under other: {text}"
    );
}

#[tokio::test]
async fn draining_turns_readyz_503_keeps_serving_and_closes_connections() {
    let state = loaded_state(8, Faults::default());
    let response = get(&state, "/readyz").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("connection").is_none());
    state.drain.signal(std::time::Instant::now());
    let response = get(&state, "/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(body(&response), "draining");
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(response.headers()["retry-after"], "1");
    let response = get(&state, "/recommend/1").await;
    assert_eq!(response.status(), 200, "still serving while draining");
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(get(&state, "/healthz").await.status(), 200);
    assert!(
        get_text(&state, "/metrics")
            .await
            .contains("movrek_draining{")
    );
}

#[tokio::test]
async fn readyz_is_503_until_the_model_is_installed() {
    let state = Arc::new(AppState::new(config(8, Faults::default())));
    assert_eq!(get(&state, "/healthz").await.status(), 200);
    let response = get(&state, "/readyz").await;
    assert_eq!(response.status(), 503);
    // The announced version is on the header even before loading.
    assert_eq!(version_header(&response), "v-test");
    let response = get(&state, "/recommend/1").await;
    assert_eq!(response.status(), 503);
    let version: serde_json::Value =
        serde_json::from_slice(get(&state, "/version").await.body()).unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(version["ready"], false);
    assert!(get_text(&state, "/metrics").await.contains(
        "movrek_model_ready{release=\"movies\",track=\"canary\",model_version=\"v-test\"} 0"
    ));

    assert!(state.set_model(LoadedModel {
        recommender: Arc::new(Counting),
        artifact_sha256: "a57".into(),
    }));
    assert_eq!(get(&state, "/readyz").await.status(), 200);
    assert_eq!(get(&state, "/recommend/1").await.status(), 200);
}

#[tokio::test]
async fn header_says_none_when_no_version_is_known_yet() {
    let mut cfg = config(8, Faults::default());
    cfg.announced_version = None;
    let state = Arc::new(AppState::new(cfg));
    assert_eq!(version_header(&get(&state, "/readyz").await), "none");
}

async fn get_text(state: &Arc<AppState>, path: &str) -> String {
    let response = get(state, path).await;
    assert_eq!(response.status(), 200, "{path}");
    body(&response).to_owned()
}

#[tokio::test]
async fn version_reports_model_provenance_and_labels() {
    let state = loaded_state(8, Faults::default());
    let response = get(&state, "/version").await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let value: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(value["ready"], true);
    assert_eq!(value["model_version"], "v-test");
    assert_eq!(value["artifact_sha256"], "a57");
    assert_eq!(value["model"]["holdout_rmse"], 0.9);
    assert_eq!(value["release"], "movies");
    assert_eq!(value["track"], "canary");
    assert!(value["server_version"].is_string());
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let state = loaded_state(8, Faults::default());
    for path in [
        "/recommend/1",
        "/recommend/2",
        "/recommend/700",
        "/recommend/5000",
        "/recommend/x",
        "/zzz",
    ] {
        get(&state, path).await;
    }
    let text = get_text(&state, "/metrics").await;
    let base = "release=\"movies\",track=\"canary\",model_version=\"v-test\"";
    for line in [
        format!("movrek_requests_total{{{base},route=\"/recommend\",status=\"200\"}} 4"),
        format!("movrek_requests_total{{{base},route=\"/recommend\",status=\"400\"}} 1"),
        format!("movrek_requests_total{{{base},route=\"other\",status=\"404\"}} 1"),
        format!("movrek_request_duration_seconds_count{{{base},route=\"/recommend\"}} 5"),
        format!("movrek_recommendations_total{{{base},path=\"personal\"}} 2"),
        format!("movrek_recommendations_total{{{base},path=\"cold_start\"}} 1"),
        format!("movrek_recommendations_total{{{base},path=\"unknown_user\"}} 1"),
        format!("movrek_model_info{{{base},artifact_sha256=\"a57\",data_sha256=\"d474\"}} 1"),
        format!("movrek_model_ready{{{base}}} 1"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // The route label is the template: raw paths never become label values.
    assert!(!text.contains("/recommend/1"));
    assert!(text.contains("# TYPE movrek_request_duration_seconds histogram"));
    assert!(text.contains(&format!(
        "movrek_request_duration_seconds_bucket{{{base},route=\"/recommend\",le=\"+Inf\"}} 5"
    )));
}

#[tokio::test]
async fn overload_beyond_the_inflight_limit_is_shed_with_503() {
    let delay = Faults {
        delay: Duration::from_millis(300),
        ..Faults::default()
    };
    let state = loaded_state(1, delay);
    let (a, b) = tokio::join!(get(&state, "/recommend/1"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let response = get(&state, "/recommend/2").await;
        (response, started.elapsed())
    });
    assert_eq!(a.status(), 200);
    let (shed, took) = b;
    assert_eq!(shed.status(), 503);
    assert!(body(&shed).contains("overloaded"));
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(version_header(&shed), "v-test");
    // Shed at once, not queued behind the slow request.
    assert!(took < Duration::from_millis(200), "shedding took {took:?}");
    // The slot is free again afterwards.
    assert_eq!(get(&state, "/recommend/3").await.status(), 200);
    let text = get_text(&state, "/metrics").await;
    assert!(
        text.contains("route=\"/recommend\",status=\"503\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn fault_injection_fails_the_configured_fraction_and_delays() {
    let faults = Faults {
        error_rate: 0.25,
        ..Faults::default()
    };
    let state = loaded_state(8, faults);
    let mut failed = 0;
    for user in 0..40 {
        let response = get(&state, &format!("/recommend/{user}")).await;
        match response.status().as_u16() {
            500 => {
                failed += 1;
                assert_eq!(version_header(&response), "v-test");
            }
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(failed, 10);
    // Probes are never faulted.
    assert_eq!(get(&state, "/healthz").await.status(), 200);

    let slow = loaded_state(
        8,
        Faults {
            delay: Duration::from_millis(120),
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    assert_eq!(get(&slow, "/recommend/1").await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(120));
    let text = get_text(&slow, "/metrics").await;
    // The delay is part of the measured latency: the one request lands above 100 ms.
    assert!(
        text.contains("route=\"/recommend\",le=\"0.1\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_queue_longer_than_the_wait_bound_is_shed_at_once_and_probes_never_wait() {
    // One compute thread, 30 ms of model CPU per request, at most 40 ms of queueing: once
    // the pool has measured the service time, a request that would queue behind two others
    // is refused at once instead of waiting.
    let state = {
        let state = AppState::new(StateConfig {
            model_threads: 1,
            max_queue_wait: Duration::from_millis(40),
            faults: Faults {
                cpu: Duration::from_millis(30),
                ..Faults::default()
            },
            ..config(100, Faults::default())
        });
        assert!(state.set_model(LoadedModel {
            recommender: Arc::new(Counting),
            artifact_sha256: "a57".into(),
        }));
        Arc::new(state)
    };
    assert_eq!(get(&state, "/recommend/1").await.status(), 200);
    let burst = (0..8).map(|u| {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let answer = get(&state, &format!("/recommend/{u}")).await;
            (answer.status().as_u16(), started.elapsed())
        })
    });
    let burst: Vec<_> = burst.collect();
    // A probe during the burst answers at once: it never touches the pool.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let started = std::time::Instant::now();
    assert_eq!(get(&state, "/healthz").await.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(20));
    let mut served = 0;
    for task in burst {
        let (status, took) = task.await.unwrap();
        match status {
            200 => {
                served += 1;
                // Admitted: the wait bound plus its own 30 ms, plus scheduling slack.
                assert!(
                    took < Duration::from_millis(40 + 30 + 60),
                    "admitted took {took:?}"
                );
            }
            503 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!((1..8).contains(&served), "served {served} of 8");
}
