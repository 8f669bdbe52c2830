//! The controller against a fake API server (tower-test): pins the API calls of a whole
//! rollout step by step, proves an unchanged release costs zero writes, and that a rollback
//! takes the canary's weight away before it scales the canary down.
//!
//! The fake keeps objects in memory: GET answers from the store (404 when absent),
//! server-side apply stores the applied object (bumping `metadata.generation` when the
//! spec changes), status patches replace `status`, merge patches edit annotations, and
//! Events are echoed. Between reconciles the test "runs the kubelet" by marking every
//! Deployment ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use kube::{Client, ResourceExt};
use movrek_operator::analysis::{AnalysisQuery, CanaryMetrics, MetricsError, MetricsSource};
use movrek_operator::controller::{Context, reconcile};
use movrek_operator::crd::{Phase, RecommenderRelease, RecommenderReleaseSpec};
use movrek_operator::metrics::Metrics;
use movrek_operator::notify::{Delivery, Notification, NotificationKind, Notifier, NotifyError};
use serde_json::{Value, json};
use tower_test::mock;

const RELEASE_PATH: &str = "/apis/movrek.dev/v1alpha1/namespaces/prod/recommenderreleases/movies";

#[derive(Default)]
struct FakeApi {
    objects: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<String>>,
}

impl FakeApi {
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn release(&self) -> RecommenderRelease {
        serde_json::from_value(self.objects.lock().unwrap()[RELEASE_PATH].clone()).unwrap()
    }

    fn object(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// Every Deployment reaches its wanted state.
    fn kubelet(&self) {
        for (path, object) in self.objects.lock().unwrap().iter_mut() {
            if path.contains("/deployments/") {
                let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
                let generation = object["metadata"]["generation"].clone();
                object["status"] = json!({
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "readyReplicas": replicas,
                    "updatedReplicas": replicas,
                });
            }
        }
    }

    fn edit_spec(&self, edit: impl FnOnce(&mut Value)) {
        let mut objects = self.objects.lock().unwrap();
        let release = objects.get_mut(RELEASE_PATH).unwrap();
        edit(&mut release["spec"]);
        let generation = release["metadata"]["generation"].as_i64().unwrap();
        release["metadata"]["generation"] = json!(generation + 1);
    }

    fn handle(
        &self,
        method: &Method,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let short = path.rsplit('/').take(2).collect::<Vec<_>>();
        let short = if path.ends_with("/status") {
            format!("{}/{}", short[1], short[0])
        } else {
            format!("{}/{}", path.rsplit('/').nth(1).unwrap_or(""), short[0])
        };
        // A repeated Event is patched into a series under a generated name.
        let short = if path.contains("/events/") {
            "event-series".to_owned()
        } else {
            short
        };
        self.log.lock().unwrap().push(format!("{method} {short}"));
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap()
        };
        let mut objects = self.objects.lock().unwrap();
        match *method {
            Method::GET => objects.get(path).map_or_else(
                || {
                    (
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"}),
                    )
                },
                |o| (StatusCode::OK, o.clone()),
            ),
            Method::POST => (StatusCode::CREATED, body),
            // The Event recorder patches a repeated Event into a series; echo it.
            Method::PATCH if path.contains("/events/") => (StatusCode::OK, body),
            Method::PATCH if path.ends_with("/status") => {
                let object = objects.get_mut(path.trim_end_matches("/status")).unwrap();
                object["status"] = body["status"].clone();
                (StatusCode::OK, object.clone())
            }
            Method::PATCH if content_type.starts_with("application/apply-patch") => {
                let mut stored = body;
                let previous = objects.get(path);
                let generation = match previous {
                    Some(p) if p["spec"] == stored["spec"] => {
                        p["metadata"]["generation"].as_i64().unwrap()
                    }
                    Some(p) => p["metadata"]["generation"].as_i64().unwrap() + 1,
                    None => 1,
                };
                stored["metadata"]["generation"] = json!(generation);
                if let Some(status) = previous.map(|p| p["status"].clone()) {
                    stored["status"] = status;
                }
                objects.insert(path.to_owned(), stored.clone());
                (StatusCode::OK, stored)
            }
            Method::PATCH => {
                let object = objects.get_mut(path).unwrap();
                if let Some(annotations) = body["metadata"]["annotations"].as_object() {
                    for (key, value) in annotations {
                        if value.is_null() {
                            object["metadata"]["annotations"]
                                .as_object_mut()
                                .unwrap()
                                .remove(key);
                        }
                    }
                }
                (StatusCode::OK, object.clone())
            }
            _ => (StatusCode::METHOD_NOT_ALLOWED, Value::Null),
        }
    }
}

/// Canary figures the test sets.
#[derive(Clone, Default)]
struct FixedMetrics(Arc<Mutex<Option<CanaryMetrics>>>);

impl MetricsSource for FixedMetrics {
    fn canary_metrics(
        &self,
        _q: &AnalysisQuery,
    ) -> impl Future<Output = Result<CanaryMetrics, MetricsError>> + Send {
        let figures = *self.0.lock().unwrap();
        async move { figures.ok_or(MetricsError::NoData) }
    }
}

/// Records notifications instead of sending them.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Notification>>>);

impl Notifier for Recorded {
    fn send(
        &self,
        _url: &str,
        event: &Notification,
    ) -> impl Future<Output = Result<Delivery, NotifyError>> + Send {
        self.0.lock().unwrap().push(event.clone());
        async { Ok(Delivery { attempts: 1 }) }
    }
}

struct Harness {
    api: Arc<FakeApi>,
    ctx: Arc<Context<FixedMetrics, Recorded>>,
    metrics: Arc<Metrics>,
    figures: FixedMetrics,
    sent: Recorded,
    clock: Arc<AtomicI64>,
}

fn healthy() -> CanaryMetrics {
    CanaryMetrics {
        average_latency_seconds: Some(0.08),
        p99_latency_seconds: Some(0.2),
        error_rate: Some(0.0),
        requests: Some(1200.0),
    }
}

fn slow() -> CanaryMetrics {
    CanaryMetrics {
        average_latency_seconds: Some(0.81),
        ..healthy()
    }
}

impl Harness {
    fn new() -> Self {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api = Arc::new(FakeApi::default());
        let spec: RecommenderReleaseSpec = serde_json::from_value(json!({
            "image": "img:1",
            "model": {"version": "v1", "uri": "file:///m/v1", "sha256": "a".repeat(64)},
            "traffic": {"provider": "ingress-nginx", "host": "movies.example"},
            "canary": {"soakDuration": "10m", "interval": "1m", "progressDeadline": "5m"},
            "notify": {"webhookUrl": "http://127.0.0.1:9/hook"}
        }))
        .unwrap();
        let mut rr = RecommenderRelease::new("movies", spec);
        rr.metadata.namespace = Some("prod".into());
        rr.metadata.uid = Some("0d9c6f1e-uid".into());
        rr.metadata.generation = Some(1);
        api.objects
            .lock()
            .unwrap()
            .insert(RELEASE_PATH.to_owned(), serde_json::to_value(&rr).unwrap());

        let server = api.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let content_type = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = request.into_body().collect_bytes().await.unwrap();
                let (status, answer) = server.handle(&method, &path, &content_type, &body);
                send.send_response(
                    Response::builder()
                        .status(status)
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });

        let metrics = Arc::new(Metrics::new());
        let figures = FixedMetrics::default();
        let sent = Recorded::default();
        let clock = Arc::new(AtomicI64::new(1_767_225_600));
        let mut ctx = Context::new(
            Client::new(service, "default"),
            figures.clone(),
            sent.clone(),
            metrics.clone(),
        );
        let tick = clock.clone();
        ctx.clock = Arc::new(move || Timestamp::from_second(tick.load(Ordering::SeqCst)).unwrap());
        Self {
            api,
            ctx: Arc::new(ctx),
            metrics,
            figures,
            sent,
            clock,
        }
    }

    /// One reconcile at `t` seconds after the start; returns the API calls it made.
    async fn reconcile_at(&self, t: i64) -> Vec<String> {
        self.clock.store(1_767_225_600 + t, Ordering::SeqCst);
        self.api.take_log();
        reconcile(Arc::new(self.api.release()), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
        // Notifications go out on a spawned task; let it run.
        tokio::task::yield_now().await;
        self.api.take_log()
    }

    fn phase(&self) -> Phase {
        self.api.release().status.unwrap().phase
    }

    fn canary_weight_annotation(&self) -> String {
        let ingress = self
            .api
            .object("/apis/networking.k8s.io/v1/namespaces/prod/ingresses/movies-canary")
            .unwrap();
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

const OBSERVE: [&str; 2] = [
    "GET deployments/movies-stable",
    "GET deployments/movies-canary",
];
const READ_ROUTING: [&str; 5] = [
    "GET services/movies-stable",
    "GET services/movies-canary",
    "GET services/movies",
    "GET ingresses/movies",
    "GET ingresses/movies-canary",
];

fn calls(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| (*s).to_owned()))
        .collect()
}

fn writes(log: &[String]) -> usize {
    log.iter().filter(|c| !c.starts_with("GET ")).count()
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom: splitting it hides the order
async fn a_full_rollout_makes_exactly_these_calls() {
    let h = Harness::new();

    // First apply: every child created, stable straight to v1.
    let log = h.reconcile_at(0).await;
    assert_eq!(
        log,
        calls(&[
            &OBSERVE,
            &[
                "GET services/movies-stable",
                "PATCH services/movies-stable",
                "GET services/movies-canary",
                "PATCH services/movies-canary",
                "GET services/movies",
                "PATCH services/movies",
                "GET ingresses/movies",
                "PATCH ingresses/movies",
                "GET ingresses/movies-canary",
                "PATCH ingresses/movies-canary",
                "PATCH deployments/movies-stable",
                "PATCH movies/status",
                "POST prod/events",
            ]
        ])
    );
    assert_eq!(h.phase(), Phase::Initializing);

    // Pods ready: status only.
    h.api.kubelet();
    let log = h.reconcile_at(10).await;
    assert_eq!(
        log,
        calls(&[
            &OBSERVE,
            &READ_ROUTING,
            &["PATCH movies/status", "POST prod/events"]
        ])
    );
    assert_eq!(h.phase(), Phase::Stable);

    // Idle: reads only.
    let log = h.reconcile_at(100).await;
    assert_eq!(log, calls(&[&OBSERVE, &READ_ROUTING]));

    // New model: the canary Deployment appears, no traffic yet.
    h.api.edit_spec(|spec| {
        spec["model"]["version"] = json!("v2");
        spec["model"]["uri"] = json!("file:///m/v2");
    });
    let log = h.reconcile_at(200).await;
    assert_eq!(
        log,
        calls(&[
            &OBSERVE,
            &READ_ROUTING,
            &[
                "PATCH deployments/movies-canary",
                "PATCH movies/status",
                "POST prod/events"
            ]
        ])
    );
    assert_eq!(h.phase(), Phase::Progressing);
    assert_eq!(h.canary_weight_annotation(), "0");

    // Canary ready: the canary Ingress gets 20%.
    h.api.kubelet();
    let log = h.reconcile_at(230).await;
    assert_eq!(
        log,
        calls(&[
            &OBSERVE,
            &READ_ROUTING,
            &[
                "PATCH ingresses/movies-canary",
                "PATCH movies/status",
                "POST prod/events"
            ]
        ])
    );
    assert_eq!(h.canary_weight_annotation(), "20");
    assert_eq!(h.phase(), Phase::Soaking);

    // Soak over, healthy figures: promotion moves the stable Deployment to v2.
    *h.figures.0.lock().unwrap() = Some(healthy());
    let log = h.reconcile_at(230 + 600).await;
    assert_eq!(
        log,
        calls(&[
            &OBSERVE,
            &READ_ROUTING,
            &[
                "PATCH deployments/movies-stable",
                "PATCH movies/status",
                "POST prod/events",
                "POST prod/events",
                "POST prod/events",
            ]
        ])
    );
    assert_eq!(h.phase(), Phase::Promoting);

    // Stable serves v2: weight 0 first, then the canary scales to 0.
    h.api.kubelet();
    let log = h.reconcile_at(900).await;
    assert_eq!(
        log,
        calls(&[
            &OBSERVE,
            &READ_ROUTING,
            &[
                "PATCH ingresses/movies-canary",
                "PATCH deployments/movies-canary",
                "PATCH movies/status",
                "POST prod/events",
            ]
        ])
    );
    assert_eq!(h.phase(), Phase::Succeeded);
    assert_eq!(h.canary_weight_annotation(), "0");
    let sent = h.sent.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::Promoted);
    assert_eq!(sent[0].version, "v2");

    // The canary drains (ready count goes to 0 in status once), then idle again.
    h.api.kubelet();
    h.reconcile_at(910).await;
    let before = h.metrics.writes_total();
    let log = h.reconcile_at(5000).await;
    assert_eq!(writes(&log), 0, "writes per idle reconcile: {log:?}");
    assert_eq!(h.metrics.writes_total(), before);
    let stable = h
        .api
        .object("/apis/apps/v1/namespaces/prod/deployments/movies-stable")
        .unwrap();
    let env = &stable["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "MOVREK_MODEL_VERSION" && e["value"] == "v2")
    );
    assert_eq!(
        stable["metadata"]["ownerReferences"][0]["uid"],
        json!("0d9c6f1e-uid"),
        "children are owned by the release"
    );
}

#[tokio::test]
async fn the_failing_check_that_reaches_the_limit_removes_traffic_before_pods() {
    let h = Harness::new();
    h.reconcile_at(0).await;
    h.api.kubelet();
    h.reconcile_at(1).await;
    h.api
        .edit_spec(|spec| spec["model"]["version"] = json!("v2"));
    h.reconcile_at(2).await;
    h.api.kubelet();
    h.reconcile_at(3).await;
    assert_eq!(h.phase(), Phase::Soaking);
    *h.figures.0.lock().unwrap() = Some(slow());
    h.reconcile_at(603).await;
    h.reconcile_at(663).await;
    assert_eq!(h.phase(), Phase::Analyzing);
    let started = std::time::Instant::now();
    let log = h.reconcile_at(723).await;
    let took = started.elapsed();
    assert_eq!(
        log,
        calls(&[
            &OBSERVE,
            &READ_ROUTING,
            &[
                "PATCH ingresses/movies-canary",
                "PATCH deployments/movies-canary",
                "PATCH movies/status",
                // The third AnalysisFailed repeats the first two: kube's recorder makes it a series.
                "PATCH event-series",
                "POST prod/events",
            ]
        ])
    );
    assert_eq!(h.canary_weight_annotation(), "0");
    assert_eq!(h.phase(), Phase::RollingBack);
    println!("failing check -> weight 0 (fake API server): {took:?}");
    let sent = h.sent.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, NotificationKind::RolledBack);
    assert!(sent[0].reason.contains("3 of 3"), "{}", sent[0].reason);

    h.api.kubelet();
    h.reconcile_at(730).await;
    assert_eq!(h.phase(), Phase::RolledBack);
    let log = h.reconcile_at(9000).await;
    assert_eq!(writes(&log), 0, "a rolled-back release stays put: {log:?}");
}

#[tokio::test]
async fn the_action_annotation_is_removed_once_consumed() {
    let h = Harness::new();
    h.reconcile_at(0).await;
    h.api.kubelet();
    h.reconcile_at(1).await;
    h.api
        .edit_spec(|spec| spec["model"]["version"] = json!("v2"));
    h.reconcile_at(2).await;
    h.api.kubelet();
    h.reconcile_at(3).await;
    {
        let mut objects = h.api.objects.lock().unwrap();
        objects.get_mut(RELEASE_PATH).unwrap()["metadata"]["annotations"] =
            json!({"movrek.dev/action": "promote", "team": "recs"});
    }
    let log = h.reconcile_at(4).await;
    assert!(
        log.contains(&"PATCH recommenderreleases/movies".to_owned()),
        "{log:?}"
    );
    let release = h.api.release();
    assert_eq!(
        release.annotations().get("team").map(String::as_str),
        Some("recs")
    );
    assert!(!release.annotations().contains_key("movrek.dev/action"));
    assert_eq!(h.phase(), Phase::Promoting);
}
