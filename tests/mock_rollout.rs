//! The controller against a fake API server (tower-test): pins the API calls of a whole
//! rollout step by step, proves an unchanged release costs zero API requests (children come
//! from the watch caches), that status is written first and conditionally (a stale release
//! gets 409 and changes nothing), and that a rollback takes the canary's weight away before
//! it scales the canary down.
//!
//! The fake keeps objects in memory with a `resourceVersion` each: server-side apply stores
//! the applied object (bumping `metadata.generation` when the spec changes), a status apply
//! carrying a `resourceVersion` other than the stored one gets 409, DELETE removes, and Events
//! are echoed. Before each reconcile the test "delivers the watch events" by loading every
//! stored child into the controller's caches, and between reconciles it "runs the kubelet" by
//! marking every Deployment ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use movrek_operator::admission::Urgency;
use movrek_operator::analysis::{AnalysisQuery, CanaryMetrics, MetricsError, MetricsSource};
use movrek_operator::cache::{Kind, Writers};
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
    version: AtomicI64,
    /// Another field manager owns a status field: an apply without force gets 409.
    foreign_status_field: std::sync::atomic::AtomicBool,
}

fn conflict() -> (StatusCode, Value) {
    (
        StatusCode::CONFLICT,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
               "code": 409, "message": "the object has been modified; please apply your changes to the latest version and try again"}),
    )
}

impl FakeApi {
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn release(&self) -> RecommenderRelease {
        serde_json::from_value(self.objects.lock().unwrap()[RELEASE_PATH].clone()).unwrap()
    }

    /// Stores a new release `name` (never reconciled) beside `movies`; returns it.
    fn add_release(&self, name: &str) -> RecommenderRelease {
        let mut rr = self.release();
        rr.metadata.name = Some(name.to_owned());
        rr.metadata.uid = Some(format!("{name}-uid"));
        rr.metadata.generation = Some(1);
        rr.metadata.resource_version = Some(self.next_version());
        rr.status = None;
        let path = RELEASE_PATH.replace("/movies", &format!("/{name}"));
        self.objects
            .lock()
            .unwrap()
            .insert(path, serde_json::to_value(&rr).unwrap());
        rr
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
        self.edit_release(|release| {
            edit(&mut release["spec"]);
            let generation = release["metadata"]["generation"].as_i64().unwrap();
            release["metadata"]["generation"] = json!(generation + 1);
        });
    }

    /// Edits the stored release as a person would (a new `resourceVersion`).
    fn edit_release(&self, edit: impl FnOnce(&mut Value)) {
        self.edit(RELEASE_PATH, edit);
    }

    /// Edits any stored object (a new `resourceVersion`).
    fn edit(&self, path: &str, edit: impl FnOnce(&mut Value)) {
        let version = self.next_version();
        let mut objects = self.objects.lock().unwrap();
        let object = objects.get_mut(path).unwrap();
        edit(object);
        object["metadata"]["resourceVersion"] = json!(version);
    }

    fn next_version(&self) -> String {
        (self.version.fetch_add(1, Ordering::SeqCst) + 1).to_string()
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
                let read = &body["metadata"]["resourceVersion"];
                if !read.is_null() && *read != object["metadata"]["resourceVersion"] {
                    return conflict();
                }
                if object["status"] != body["status"] {
                    object["status"] = body["status"].clone();
                    object["metadata"]["resourceVersion"] = json!(self.next_version());
                }
                (StatusCode::OK, object.clone())
            }
            Method::DELETE => match objects.remove(path) {
                Some(_) => (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
            },
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
                stored["metadata"]["resourceVersion"] = json!(self.next_version());
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
    writers: Mutex<Writers>,
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
        Self::with_concurrency(0)
    }

    /// A harness whose reconciles pass a gate of `limit` slots (0: no limit).
    fn with_concurrency(limit: u16) -> Self {
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
        rr.metadata.resource_version = Some("1".into());
        api.version.store(1, Ordering::SeqCst);
        api.objects
            .lock()
            .unwrap()
            .insert(RELEASE_PATH.to_owned(), serde_json::to_value(&rr).unwrap());

        let server = api.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let forced = request.uri().query().unwrap_or("").contains("force=true");
                let content_type = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = request.into_body().collect_bytes().await.unwrap();
                let (status, answer) = if path.ends_with("/status")
                    && !forced
                    && server.foreign_status_field.load(Ordering::SeqCst)
                {
                    server
                        .log
                        .lock()
                        .unwrap()
                        .push("PATCH movies/status".to_owned());
                    (
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "Conflict", "code": 409,
                               "message": "Apply failed with 1 conflict: conflict with \"kubectl-patch\": .status.message"}),
                    )
                } else {
                    server.handle(&method, &path, &content_type, &body)
                };
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
        )
        .with_concurrency(limit);
        let tick = clock.clone();
        ctx.clock = Arc::new(move || Timestamp::from_second(tick.load(Ordering::SeqCst)).unwrap());
        let writers = ctx.caches.take_writers().expect("fresh caches");
        for kind in Kind::ALL {
            ctx.caches.set_watched(kind, true);
        }
        Self {
            api,
            writers: Mutex::new(writers),
            ctx: Arc::new(ctx),
            metrics,
            figures,
            sent,
            clock,
        }
    }

    /// The watches deliver: every stored child is in the caches, deleted ones are gone.
    fn sync_caches(&self) {
        fn load<K: serde::de::DeserializeOwned + kube::Resource + Clone>(
            writer: &mut Writer<K>,
            objects: &BTreeMap<String, Value>,
            marker: &str,
        ) where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            writer.apply_watcher_event(&watcher::Event::Init);
            for (path, object) in objects {
                // The watches select on the release label.
                let labelled = object["metadata"]["labels"]["movrek.dev/release"].is_string();
                if path.contains(marker) && labelled {
                    let typed: K = serde_json::from_value(object.clone()).unwrap();
                    writer.apply_watcher_event(&watcher::Event::InitApply(typed));
                }
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
        }
        let objects = self.api.objects.lock().unwrap().clone();
        let mut w = self.writers.lock().unwrap();
        load(&mut w.deployments, &objects, "/deployments/");
        load(&mut w.services, &objects, "/services/");
        load(&mut w.ingresses, &objects, "/ingresses/");
        load(&mut w.routes, &objects, "/httproutes/");
        load(&mut w.autoscalers, &objects, "/horizontalpodautoscalers/");
        load(&mut w.pods, &objects, "/pods/");
    }

    /// One reconcile at `t` seconds after the start of the stored release; returns the API
    /// calls it made.
    /// v1 stable (t = 0, 1), then v2 asked for (t = 2) and its canary ready (t = 3).
    async fn canary_v2_ready() -> Self {
        let h = Self::new();
        h.reconcile_at(0).await;
        h.api.kubelet();
        h.reconcile_at(1).await;
        h.api
            .edit_spec(|spec| spec["model"]["version"] = json!("v2"));
        h.reconcile_at(2).await;
        h.api.kubelet();
        h.reconcile_at(3).await;
        h
    }

    async fn reconcile_at(&self, t: i64) -> Vec<String> {
        self.reconcile_with(t, self.api.release()).await.1
    }

    /// One reconcile at `t` of `release` as the (possibly stale) cache has it.
    async fn reconcile_with(&self, t: i64, release: RecommenderRelease) -> (Action, Vec<String>) {
        self.clock.store(1_767_225_600 + t, Ordering::SeqCst);
        self.sync_caches();
        self.api.take_log();
        let action = reconcile(Arc::new(release), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
        // Notifications go out on a spawned task; let it run.
        tokio::task::yield_now().await;
        (action, self.api.take_log())
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

const STATUS: &str = "PATCH movies/status";
const EVENT: &str = "POST prod/events";

fn calls(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

fn writes(log: &[String]) -> usize {
    log.iter().filter(|c| !c.starts_with("GET ")).count()
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom: splitting it hides the order
async fn a_full_rollout_makes_exactly_these_calls() {
    let h = Harness::new();

    // First apply: status first (the commit), then every child created, stable straight to v1.
    let log = h.reconcile_at(0).await;
    assert_eq!(
        log,
        calls(&[
            STATUS,
            "PATCH services/movies-stable",
            "PATCH services/movies-canary",
            "PATCH services/movies",
            "PATCH ingresses/movies",
            "PATCH ingresses/movies-canary",
            "PATCH deployments/movies-stable",
            EVENT,
        ])
    );
    assert_eq!(h.phase(), Phase::Initializing);

    // Pods ready: status only, and not a single read.
    h.api.kubelet();
    let log = h.reconcile_at(10).await;
    assert_eq!(log, calls(&[STATUS, EVENT]));
    assert_eq!(h.phase(), Phase::Stable);

    // Idle: no API request at all.
    let log = h.reconcile_at(100).await;
    assert_eq!(log, calls(&[]), "API requests per idle reconcile");

    // New model: the canary Deployment appears, no traffic yet.
    h.api.edit_spec(|spec| {
        spec["model"]["version"] = json!("v2");
        spec["model"]["uri"] = json!("file:///m/v2");
    });
    let log = h.reconcile_at(200).await;
    assert_eq!(
        log,
        calls(&[STATUS, "PATCH deployments/movies-canary", EVENT])
    );
    assert_eq!(h.phase(), Phase::Progressing);
    assert_eq!(h.canary_weight_annotation(), "0");

    // Canary ready: the canary Ingress gets 20%.
    h.api.kubelet();
    let log = h.reconcile_at(230).await;
    assert_eq!(
        log,
        calls(&[STATUS, "PATCH ingresses/movies-canary", EVENT])
    );
    assert_eq!(h.canary_weight_annotation(), "20");
    assert_eq!(h.phase(), Phase::Soaking);

    // Soak over, healthy figures: promotion moves the stable Deployment to v2.
    *h.figures.0.lock().unwrap() = Some(healthy());
    let log = h.reconcile_at(230 + 600).await;
    assert_eq!(
        log,
        calls(&[
            STATUS,
            "PATCH deployments/movies-stable",
            EVENT,
            EVENT,
            EVENT,
        ])
    );
    assert_eq!(h.phase(), Phase::Promoting);

    // Stable serves v2: weight 0 first, then the canary scales to 0.
    h.api.kubelet();
    let log = h.reconcile_at(900).await;
    assert_eq!(
        log,
        calls(&[
            STATUS,
            "PATCH ingresses/movies-canary",
            "PATCH deployments/movies-canary",
            EVENT,
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
    assert!(log.is_empty(), "API requests per idle reconcile: {log:?}");
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

/// v1 stable, v2 soaking with slow figures until one check failed; returns the harness.
async fn analysing_a_slow_canary() -> Harness {
    let h = Harness::canary_v2_ready().await;
    assert_eq!(h.phase(), Phase::Soaking);
    *h.figures.0.lock().unwrap() = Some(slow());
    h.reconcile_at(603).await;
    h.reconcile_at(663).await;
    assert_eq!(h.phase(), Phase::Analyzing);
    h
}

#[tokio::test]
async fn the_failing_check_that_reaches_the_limit_removes_traffic_before_pods() {
    let h = analysing_a_slow_canary().await;
    let started = std::time::Instant::now();
    let log = h.reconcile_at(723).await;
    let took = started.elapsed();
    assert_eq!(
        log,
        calls(&[
            STATUS,
            "PATCH ingresses/movies-canary",
            "PATCH deployments/movies-canary",
            // The third AnalysisFailed repeats the first two: it is counted into their series.
            "PATCH event-series",
            EVENT,
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
async fn a_stale_release_gets_409_and_acts_on_nothing() {
    let h = analysing_a_slow_canary().await;
    // The cache still holds the release as it was before the rollback below.
    let stale = h.api.release();
    h.reconcile_at(723).await;
    assert_eq!(h.phase(), Phase::RollingBack);
    h.api.kubelet();
    assert_eq!(h.sent.0.lock().unwrap().len(), 1);

    // The owned watch wakes the controller with fresh Deployments and the stale release,
    // whose status is still Analyzing; the figures now look healthy. Acting on it would
    // promote the canary that was just rolled back.
    *h.figures.0.lock().unwrap() = Some(healthy());
    let (action, log) = h.reconcile_with(724, stale.clone()).await;
    assert_eq!(log, calls(&[STATUS]), "only the refused commit");
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(1)));
    assert!(
        h.metrics
            .render()
            .contains("movrek_operator_stale_reads_total 1"),
        "counted as a stale read, not as a failure"
    );
    assert_eq!(h.phase(), Phase::RollingBack);
    let stable_deployment = h
        .api
        .object("/apis/apps/v1/namespaces/prod/deployments/movies-stable")
        .unwrap();
    assert!(
        stable_deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "MOVREK_MODEL_VERSION" && e["value"] == "v1"),
        "the stable track was not moved to the rolled-back model"
    );
    assert_eq!(h.canary_weight_annotation(), "0");
    assert_eq!(
        h.sent.0.lock().unwrap().len(),
        1,
        "one notification per rollout"
    );

    // Children that differ from a stale status are not applied either: the commit comes first.
    h.api.edit(
        "/apis/networking.k8s.io/v1/namespaces/prod/ingresses/movies-canary",
        |i| i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] = json!("20"),
    );
    let (_, log) = h.reconcile_with(725, stale).await;
    assert_eq!(log, calls(&[STATUS]));
    // The fresh release heals the hand edit (after a no-op, version-checked commit).
    let log = h.reconcile_at(726).await;
    assert_eq!(log, calls(&[STATUS, "PATCH ingresses/movies-canary"]));
    assert_eq!(h.canary_weight_annotation(), "0");
}

/// At a start over 1,000 releases, kube-runtime's own bound took waiting reconciles in
/// arbitrary order, and follow-ups of the first releases (pods Ready: a status write and an
/// Event each) overtook the first reconcile of releases not looked at yet. With every slot
/// busy, the gate lets in releases whose spec was never observed first, in arrival order, and
/// only then a settled release re-checked. (With the gate off, `with_concurrency(0)`, the
/// commits come in arrival order and this test fails.)
#[tokio::test]
async fn with_every_slot_busy_unobserved_releases_go_before_settled_ones() {
    let h = Harness::with_concurrency(1);
    h.reconcile_at(0).await;
    assert_eq!(h.phase(), Phase::Initializing);
    // Its pods became Ready: a routine follow-up (status → Stable) is due; two new releases.
    h.api.kubelet();
    let books = h.api.add_release("books");
    let shows = h.api.add_release("shows");
    h.sync_caches();
    h.api.take_log();
    let busy = h.ctx.admission.admit(Urgency::Routine).await;
    let mut tasks = Vec::new();
    for rr in [h.api.release(), books, shows] {
        let ctx = h.ctx.clone();
        tasks.push(tokio::spawn(async move {
            reconcile(Arc::new(rr), ctx)
                .await
                .expect("reconcile succeeds")
        }));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(h.api.take_log(), calls(&[]), "all three wait for the slot");
    drop(busy);
    for t in tasks {
        t.await.unwrap();
    }
    let commits: Vec<_> = h
        .api
        .take_log()
        .into_iter()
        .filter(|c| c.ends_with("/status"))
        .collect();
    assert_eq!(
        commits,
        calls(&[
            "PATCH books/status",
            "PATCH shows/status",
            "PATCH movies/status"
        ])
    );
    assert_eq!(h.phase(), Phase::Stable);
}

/// kube-runtime polls every reconcile future in one task, all of them on each wake-up of any;
/// with up to a thousand waiting at the gate that slowed the running ones. A reconcile runs
/// in a task of its own: it makes progress without its future being polled again, and
/// dropping the future stops it.
#[tokio::test]
async fn a_reconcile_runs_in_its_own_task_and_stops_when_its_future_is_dropped() {
    let h = Harness::new();
    h.sync_caches();
    h.api.take_log();
    let mut running = Box::pin(reconcile(Arc::new(h.api.release()), h.ctx.clone()));
    assert!(futures::poll!(&mut running).is_pending());
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let log = h.api.take_log();
    assert!(
        log.contains(&"PATCH deployments/movies-stable".to_owned()),
        "the whole first deployment went out without another poll: {log:?}"
    );
    running.await.expect("reconcile succeeds");

    // A reconcile waiting for the slot that `busy` holds is dropped: it never runs.
    let h = Harness::with_concurrency(1);
    h.sync_caches();
    let busy = h.ctx.admission.admit(Urgency::Routine).await;
    let mut waiting = Box::pin(reconcile(Arc::new(h.api.release()), h.ctx.clone()));
    assert!(futures::poll!(&mut waiting).is_pending());
    drop(waiting);
    drop(busy);
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        h.api.take_log(),
        calls(&[]),
        "the dropped reconcile did nothing"
    );
    assert_eq!(h.ctx.admission.load(), (0, 0, 0), "and gave its slot back");
}

#[tokio::test]
async fn the_action_annotation_is_recorded_in_status_not_removed() {
    let h = Harness::canary_v2_ready().await;
    h.api.edit_release(|rr| {
        rr["metadata"]["annotations"] = json!({"movrek.dev/action": "promote", "team": "recs"});
    });
    let log = h.reconcile_at(4).await;
    assert!(
        !log.iter()
            .any(|c| c.starts_with("PATCH recommenderreleases/")),
        "the release itself is never patched: {log:?}"
    );
    let release = h.api.release();
    assert_eq!(
        release
            .annotations()
            .get("movrek.dev/action")
            .map(String::as_str),
        Some("promote"),
        "the annotation stays (a GitOps tool keeps it)"
    );
    let status = release.status.unwrap();
    assert_eq!(status.last_handled_action.as_deref(), Some("promote"));
    assert_eq!(status.phase, Phase::Promoting);
}

#[tokio::test]
async fn a_release_being_deleted_gets_no_request_and_its_series_go() {
    let h = Harness::new();
    h.reconcile_at(0).await;
    assert!(h.metrics.render().contains(r#"release="movies""#));
    h.api.edit_release(|rr| {
        rr["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:10:00Z");
        rr["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    });
    let log = h.reconcile_at(5).await;
    assert!(log.is_empty(), "{log:?}");
    assert!(!h.metrics.render().contains(r#"release="movies""#));
}

#[tokio::test]
async fn a_provider_change_zeroes_the_old_canary_route_then_deletes_it() {
    let h = Harness::canary_v2_ready().await;
    assert_eq!(h.canary_weight_annotation(), "20");
    h.api
        .edit_spec(|spec| spec["traffic"] = json!({"provider": "replicas"}));
    let log = h.reconcile_at(4).await;
    assert!(
        log.contains(&"PATCH ingresses/movies-canary".to_owned()),
        "{log:?}"
    );
    assert!(!log.iter().any(|c| c.starts_with("DELETE")), "{log:?}");
    assert_eq!(h.canary_weight_annotation(), "0");
    let log = h.reconcile_at(5).await;
    assert_eq!(
        log,
        calls(&[
            STATUS,
            "DELETE ingresses/movies",
            "DELETE ingresses/movies-canary"
        ])
    );
    assert_eq!(
        h.api.release().status.unwrap().traffic_provider,
        Some(movrek_operator::crd::TrafficProvider::Replicas)
    );
    let log = h.reconcile_at(6).await;
    assert!(log.is_empty(), "{log:?}");
}

const STABLE: &str = "/apis/apps/v1/namespaces/prod/deployments/movies-stable";

#[tokio::test]
async fn a_deployment_from_before_the_release_label_keeps_its_selector() {
    let h = Harness::new();
    h.reconcile_at(0).await;
    h.api.kubelet();
    h.reconcile_at(1).await;
    // As an operator before 0.1 made it: selected on app.kubernetes.io/instance, unlabelled.
    h.api.edit(STABLE, |d| {
        let legacy = json!({"app.kubernetes.io/instance": "movies", "movrek.dev/track": "stable"});
        d["metadata"]["labels"] = legacy.clone();
        d["spec"]["selector"]["matchLabels"] = legacy.clone();
        d["spec"]["template"]["metadata"]["labels"] = legacy;
    });
    let log = h.reconcile_at(2).await;
    assert_eq!(
        &log[..1],
        ["GET deployments/movies-stable"],
        "read once: the cache cannot see it"
    );
    assert!(
        log.contains(&"PATCH deployments/movies-stable".to_owned()),
        "{log:?}"
    );
    let d = h.api.object(STABLE).unwrap();
    assert_eq!(
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], "movies",
        "the immutable selector is kept"
    );
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["movrek.dev/release"], "movies");
    assert_eq!(pod_labels["app.kubernetes.io/instance"], "movies");
    let service = h
        .api
        .object("/api/v1/namespaces/prod/services/movies-stable")
        .unwrap();
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/instance"], "movies",
        "the Service keeps selecting the pods the old selector has"
    );
    // Labelled now: back in the cache, and idle costs nothing again.
    h.reconcile_at(3).await;
    let log = h.reconcile_at(4).await;
    assert!(log.is_empty(), "{log:?}");
}

#[tokio::test]
async fn a_status_field_owned_by_another_manager_is_taken_back_on_the_read_version() {
    let h = Harness::new();
    h.reconcile_at(0).await;
    h.api.kubelet();
    // Someone ran `kubectl patch --subresource=status`: a plain apply conflicts over fields.
    h.api.foreign_status_field.store(true, Ordering::SeqCst);
    let log = h.reconcile_at(10).await;
    assert_eq!(
        log,
        calls(&[STATUS, STATUS, EVENT]),
        "retried with force once"
    );
    assert_eq!(h.phase(), Phase::Stable);
    // A stale read still gets 409 with force: the version check is not bypassed.
    h.api.foreign_status_field.store(false, Ordering::SeqCst);
    h.api
        .edit_spec(|spec| spec["model"]["version"] = json!("v2"));
    let stale = h.api.release();
    h.reconcile_at(20).await;
    assert_eq!(h.phase(), Phase::Progressing);
    h.api.foreign_status_field.store(true, Ordering::SeqCst);
    let (action, log) = h.reconcile_with(21, stale).await;
    assert_eq!(log, calls(&[STATUS, STATUS]));
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(1)));
}
