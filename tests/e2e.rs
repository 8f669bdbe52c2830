//! End-to-end scenarios (issue 4): a real loopback control plane with a pod network, the
//! Helm-installed chart, the operator as a local process with the chart's `ServiceAccount`, a
//! real Gateway API implementation (Traefik) and the data-plane stand-in (real `movrek serve`
//! processes on their pod IPs, real Prometheus with Kubernetes discovery; real nginx standing in
//! for the legacy ingress-nginx provider) under paced traffic.
//! Each scenario asserts on cluster state, status, Events, webhooks and traffic, and prints a
//! timeline. Run them with `hack/e2e.sh`.

mod support;

#[path = "e2e/bus.rs"]
mod bus;
#[path = "e2e/cluster.rs"]
mod cluster;
#[path = "e2e/dataplane.rs"]
mod dataplane;
#[path = "e2e/gateway.rs"]
mod gateway;
#[path = "e2e/jobs.rs"]
mod jobs;
#[path = "e2e/models.rs"]
mod models;
#[path = "e2e/operator.rs"]
mod operator;
#[path = "e2e/podmonitor.rs"]
mod podmonitor;
#[path = "e2e/retrain.rs"]
mod retrain;
#[path = "../inference/tests/support/s3.rs"]
mod s3;
#[path = "e2e/timeline.rs"]
mod timeline;
#[path = "e2e/traffic.rs"]
mod traffic;
#[path = "e2e/webhook.rs"]
mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use movrek_operator::analysis::Verdict;
use movrek_operator::analysis::compare::Metric;
use movrek_operator::analysis::sequential::Finding;
use movrek_operator::crd::{Outcome, Phase, RecommenderRelease};

use cluster::Cluster;
use dataplane::{DataPlane, Setup};
use gateway::Gateway;
use models::{Model, ReleaseTarget, release_manifest, train_models};
use operator::{Operator, metric_sum};
use timeline::{ReleaseWatch, Timeline};
use traffic::{Mix, Traffic};
use webhook::Webhook;

const NAMESPACE: &str = "default";
const RELEASE: &str = "movies";
const HOST: &str = "movies.example";
/// Injected latency of models whose version contains `slow`.
const SLOW_MS: u64 = 400;
/// Share of answers a `…-failing` model version fails with a 500.
const FAILING_ERROR_RATE: &str = "0.2";

/// Canary settings every scenario starts from (seconds, not hours).
const FAST_CANARY: &str = "weight: 20\n    soakDuration: 4s\n    interval: 4s\n    \
    maxAverageLatency: 100ms\n    maxErrorRate: 0.01\n    minRequests: 20\n    failureLimit: 2\n    \
    progressDeadline: 60s";

/// What routes the release's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Router {
    /// `traffic.provider: gateway-api`: an `HTTPRoute` served by Traefik (the default).
    Gateway,
    /// `traffic.provider: ingress-nginx` (legacy): Ingresses rendered into nginx by the
    /// stand-in, because no ingress controller built here implements its canary annotations.
    LegacyIngressNginx,
}

/// Everything one scenario runs on. Fields drop in order: watchers and load first, the
/// operator, the data plane, the cluster last.
struct Env {
    timeline: Arc<Timeline>,
    watch: Option<ReleaseWatch>,
    traffic: Option<Traffic>,
    operators: Vec<Operator>,
    data: Option<DataPlane>,
    webhook: Webhook,
    models: HashMap<String, Model>,
    /// `spec.impressions` of every manifest: brokers and topic.
    impressions: Option<(String, String)>,
    /// `spec.model.credentialsSecret` of every manifest.
    model_credentials: Option<String>,
    /// Namespace of the release (and of the data-plane stand-in).
    namespace: &'static str,
    /// The release's traffic provider.
    router: Router,
    operator_kubeconfig: PathBuf,
    work: PathBuf,
    cluster: Cluster,
}

impl Env {
    /// Cluster up, chart installed, models trained, data plane and one operator running.
    async fn start(name: &str, versions: &[&str]) -> Self {
        Self::start_with(name, versions, NAMESPACE, Router::Gateway).await
    }

    /// [`Env::start`] with the legacy ingress-nginx provider.
    async fn start_legacy(name: &str, versions: &[&str]) -> Self {
        Box::pin(Self::start_with(
            name,
            versions,
            NAMESPACE,
            Router::LegacyIngressNginx,
        ))
        .await
    }

    /// [`Env::start`] with the release in `namespace`.
    async fn start_in(name: &str, versions: &[&str], namespace: &'static str) -> Self {
        Self::start_with(name, versions, namespace, Router::Gateway).await
    }

    /// [`Env::start`] with the release in `namespace`, routed by `router`.
    async fn start_with(
        name: &str,
        versions: &[&str],
        namespace: &'static str,
        router: Router,
    ) -> Self {
        let timeline = Timeline::new(name);
        let cluster = Cluster::up().await;
        timeline.mark(&format!(
            "control plane up in {:.1}s ({})",
            cluster.start_time.as_secs_f64(),
            cluster.dir.display()
        ));
        cluster.helm_install();
        timeline.mark("helm install movrek charts/movrek-operator (replicaCount=0) done");
        let operator_kubeconfig = cluster.operator_kubeconfig();
        let work = cluster.dir.parent().expect("cluster parent").join("work");
        std::fs::create_dir_all(&work).expect("create work dir");
        let models = train_models(&work, versions);
        let faults = models
            .keys()
            .filter_map(|v| {
                let fault = if v.contains("slow") {
                    ("MOVREK_FAULT_DELAY_MS", SLOW_MS.to_string())
                } else if v.contains("failing") {
                    ("MOVREK_FAULT_ERROR_RATE", FAILING_ERROR_RATE.to_owned())
                } else {
                    return None;
                };
                Some((v.clone(), vec![(fault.0.to_owned(), fault.1)]))
            })
            .collect();
        let webhook = Webhook::start().await;
        let gateway = Gateway::start(&cluster, &work.join("gateway")).await;
        timeline.mark(&format!(
            "Gateway API CRDs, GatewayClass and Gateway {} installed; Traefik serves it on {}",
            gateway::GATEWAY,
            gateway.url()
        ));
        let network = cluster.pod_network();
        timeline.mark(&format!(
            "pod network {}: pod IPs {}",
            network.name, network.pod_cidr
        ));
        let pod_monitor = cluster.render_pod_monitor();
        let prometheus_kubeconfig = cluster.prometheus_kubeconfig();
        let setup = Setup {
            client: cluster.client.clone(),
            namespace: namespace.to_owned(),
            endpoint: cluster.endpoint(),
            network,
            gateway,
            pod_monitor,
            prometheus_kubeconfig,
        };
        let data = DataPlane::start(setup, &work.join("dataplane"), faults, timeline.clone()).await;
        timeline.mark(&format!(
            "data plane up: prometheus {} (pods discovered as ServiceAccount {}/prometheus, \
             scraped as the chart's PodMonitor says), gateway {}, nginx {} (legacy stand-in)",
            data.prometheus.url(),
            cluster::PROMETHEUS_NAMESPACE,
            data.gateway_url(),
            data.nginx_url()
        ));
        let mut env = Self {
            timeline,
            watch: None,
            traffic: None,
            operators: Vec::new(),
            data: Some(data),
            webhook,
            models,
            impressions: None,
            model_credentials: None,
            namespace,
            router,
            operator_kubeconfig,
            work,
            cluster,
        };
        env.start_operator("operator-a");
        env.watch = Some(ReleaseWatch::start(
            env.releases(),
            RELEASE,
            env.timeline.clone(),
        ));
        env
    }

    fn start_operator(&mut self, identity: &str) {
        let op = Operator::start(identity, &self.operator_kubeconfig, &self.work);
        self.timeline.mark(&format!(
            "operator {identity} started (pid {:?}, ServiceAccount token)",
            op.process.pid()
        ));
        self.operators.push(op);
    }

    fn data(&self) -> &DataPlane {
        self.data.as_ref().expect("data plane runs")
    }

    /// Base URL of what routes the release's traffic: the Gateway's listener (Traefik), or
    /// nginx for the legacy ingress-nginx provider.
    fn router_url(&self) -> String {
        match self.router {
            Router::Gateway => self.data().gateway_url(),
            Router::LegacyIngressNginx => self.data().nginx_url(),
        }
    }

    /// What [`Env::router_url`] is, for messages.
    fn router_name(&self) -> &'static str {
        match self.router {
            Router::Gateway => "the gateway",
            Router::LegacyIngressNginx => "nginx",
        }
    }

    fn watch(&self) -> &ReleaseWatch {
        self.watch.as_ref().expect("watch runs")
    }

    fn releases(&self) -> Api<RecommenderRelease> {
        Api::namespaced(self.cluster.client.clone(), self.namespace)
    }

    /// The release manifest for `version` with `canary` settings (YAML, 4-space indented).
    fn manifest(&self, version: &str, canary: &str) -> String {
        let prometheus = self.data().prometheus.url();
        let target = ReleaseTarget {
            name: RELEASE,
            namespace: self.namespace,
            host: HOST,
            prometheus: &prometheus,
            webhook: &self.webhook.url,
            impressions: self
                .impressions
                .as_ref()
                .map(|(b, t)| (b.as_str(), t.as_str())),
            credentials_secret: self.model_credentials.as_deref(),
            gateway: (self.router == Router::Gateway)
                .then_some((gateway::GATEWAY, gateway::GATEWAY_NAMESPACE)),
        };
        release_manifest(&target, &self.models[version], canary)
    }

    /// Creates Secret `name` in the release namespace with key `url` = the webhook receiver.
    fn create_webhook_secret(&self, name: &str) {
        self.cluster.kubectl_ok(&[
            "-n",
            self.namespace,
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=url={}", self.webhook.url),
        ]);
    }

    fn apply_version(&self, version: &str, canary: &str) {
        self.cluster.apply(&self.manifest(version, canary));
        self.timeline
            .mark(&format!("kubectl apply rr/{RELEASE} model {version}"));
    }

    /// Waits until `version` is promoted: phase Succeeded with it on the stable track.
    async fn wait_promoted(&self, version: &str, limit: Duration) -> RecommenderRelease {
        self.wait_for(
            &format!("phase Succeeded with stable {version}"),
            limit,
            |rr| {
                rr.status.as_ref().is_some_and(|s| {
                    s.phase == Phase::Succeeded
                        && s.stable.as_ref().is_some_and(|t| t.version == version)
                })
            },
        )
        .await
    }

    /// Polls the release until `pred` holds; panics with its status after `limit`.
    async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&RecommenderRelease) -> bool,
    ) -> RecommenderRelease {
        let api = self.releases();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(rr)) = api.get_opt(RELEASE).await
                && pred(&rr)
            {
                self.timeline.mark(&format!("reached: {what}"));
                return rr;
            }
            if Instant::now() > deadline {
                let status = api
                    .get_opt(RELEASE)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|r| r.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default());
                let tails: Vec<String> = self
                    .operators
                    .iter()
                    .map(|o| o.process.log_tail(15))
                    .collect();
                panic!(
                    "timed out after {limit:?} waiting for {what}; status: {status:#?}\noperator log tail:\n{}",
                    tails.join("\n---\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for a check whose message contains `needle`; it must be Inconclusive.
    async fn wait_inconclusive_check(
        &self,
        what: &str,
        needle: &str,
        limit: Duration,
    ) -> movrek_operator::crd::AnalysisRecord {
        let rr = self
            .wait_for(what, limit, |rr| {
                rr.status
                    .as_ref()
                    .and_then(|s| s.last_analysis.as_ref())
                    .is_some_and(|a| a.message.contains(needle))
            })
            .await;
        let analysis = rr.status.and_then(|s| s.last_analysis).expect("analysis");
        assert_eq!(
            analysis.verdict,
            Verdict::Inconclusive,
            "{}",
            analysis.message
        );
        analysis
    }

    /// Whether the release was seen promoting or promoted after `since`.
    fn promoted_since(&self, since: Duration) -> bool {
        self.watch()
            .states()
            .iter()
            .any(|s| s.at > since && matches!(s.phase, Phase::Promoting | Phase::Succeeded))
    }

    async fn wait_phase(&self, phase: Phase, limit: Duration) -> RecommenderRelease {
        self.wait_for(&format!("phase {phase:?}"), limit, |rr| {
            rr.status.as_ref().is_some_and(|s| s.phase == phase)
        })
        .await
    }

    /// Applies `version` as the first model and waits until it serves through the gateway.
    async fn deploy_stable(&self, version: &str) {
        self.apply_version(version, FAST_CANARY);
        self.wait_phase(Phase::Stable, Duration::from_secs(60))
            .await;
        self.wait_serving(version, Duration::from_secs(30)).await;
    }

    /// Waits until the router answers `/recommend` with `version`.
    async fn wait_serving(&self, version: &str, limit: Duration) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        let url = format!("{}/recommend/1", self.router_url());
        loop {
            if let Ok(r) = http.get(&url).header("Host", HOST).send().await
                && r.status().is_success()
                && r.headers()
                    .get("x-model-version")
                    .and_then(|v| v.to_str().ok())
                    == Some(version)
            {
                self.timeline.mark(&format!(
                    "{} serves {version} for {HOST}",
                    self.router_name()
                ));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not serve {version} within {limit:?}",
                self.router_name()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The pods the chart's `PodMonitor` `…-inference` selects (rendered with
    /// `podMonitor.enabled=true`: its `selector.matchLabels`, its namespaces, and a container
    /// port named as its endpoint's `port`, in a phase other than Succeeded and Failed) are
    /// exactly the targets the test's Prometheus scrapes in job `movrek-inference`, and there
    /// are some; each pod in `dropped` was discovered by Prometheus and dropped. The chart still
    /// renders the `PodMonitor` the unit tests of the generated scrape configuration use
    /// ([`podmonitor::CHART_POD_MONITOR`]).
    async fn assert_scrape_matches_pod_monitor(&self, dropped: &[&str]) {
        let monitor = self.cluster.render_pod_monitor();
        let fixture: serde_json::Value =
            serde_yaml::from_str(podmonitor::CHART_POD_MONITOR).expect("fixture YAML");
        assert_eq!(
            monitor["spec"], fixture["spec"],
            "the chart's PodMonitor changed: update podmonitor::CHART_POD_MONITOR (and its tests)"
        );
        assert_eq!(monitor["metadata"]["name"], fixture["metadata"]["name"]);
        let spec = &monitor["spec"];
        let labels = spec["selector"]["matchLabels"]
            .as_object()
            .expect("PodMonitor selector.matchLabels");
        assert!(
            spec["selector"]["matchExpressions"].is_null(),
            "extend this check to matchExpressions"
        );
        let selector: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().expect("label value")))
            .collect();
        let any_namespace = spec["namespaceSelector"]["any"] == true;
        let names = spec["namespaceSelector"]["matchNames"].as_array();
        let in_namespace = any_namespace
            || names.is_some_and(|n| n.iter().any(|n| n == self.namespace))
            || self.namespace == cluster::OPERATOR_NAMESPACE;
        let port = spec["podMetricsEndpoints"][0]["port"]
            .as_str()
            .expect("podMetricsEndpoints[0].port");
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.cluster.client.clone(), self.namespace);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listed = pods
                .list(&ListParams::default().labels(&selector.join(",")))
                .await
                .expect("list pods");
            let selected: std::collections::BTreeSet<(String, String)> = listed
                .items
                .iter()
                .filter(|_| in_namespace)
                .filter(|p| {
                    !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                })
                .filter(|p| {
                    p.spec.as_ref().is_some_and(|s| {
                        s.containers.iter().any(|c| {
                            c.ports
                                .iter()
                                .flatten()
                                .any(|cp| cp.name.as_deref() == Some(port))
                        })
                    })
                })
                .map(|p| (self.namespace.to_owned(), p.name_any()))
                .collect();
            let scraped = self.data().prometheus.inference_targets().await;
            let discarded = self.data().prometheus.dropped_pod_monitor_pods().await;
            let all_dropped = dropped
                .iter()
                .all(|p| discarded.contains(&(self.namespace.to_owned(), (*p).to_owned())));
            if !selected.is_empty() && selected == scraped && all_dropped {
                self.timeline.mark(&format!(
                    "Prometheus scrapes the {} pods the chart's PodMonitor selects and dropped \
                     {dropped:?}",
                    selected.len()
                ));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the chart's PodMonitor selects {selected:?}, Prometheus scrapes {scraped:?}; \
                 it should have discovered and dropped {dropped:?}, dropped {discarded:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until traffic samples show answers from `version` (the canary got its share).
    async fn wait_serving_share(&self, version: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .samples()
            .iter()
            .any(|s| s.version.as_deref() == Some(version))
        {
            assert!(Instant::now() < deadline, "no {version} answers in 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.timeline.mark(&format!("traffic reaches {version}"));
    }

    /// Starts paced load through the gateway: 4 workers × 20 req/s.
    fn start_traffic(&mut self, limit: Duration) {
        self.traffic = Some(Traffic::start(
            &self.router_url(),
            HOST,
            4,
            Duration::from_millis(50),
            limit,
            self.timeline.epoch,
        ));
        self.timeline.mark("traffic started (4 workers × 20 req/s)");
    }

    fn samples(&self) -> Vec<traffic::Sample> {
        self.traffic
            .as_ref()
            .map(Traffic::samples)
            .unwrap_or_default()
    }

    /// Reasons of the Events recorded for the release, oldest first.
    async fn event_reasons(&self) -> Vec<String> {
        self.events()
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    /// The Events recorded for the release, oldest first.
    async fn events(&self) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.cluster.client.clone(), self.namespace);
        let list = events
            .list(&ListParams::default().fields(&format!(
                "involvedObject.kind=RecommenderRelease,involvedObject.name={RELEASE}"
            )))
            .await
            .expect("list events");
        let mut items = list.items;
        items.sort_by_key(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        });
        items
    }

    async fn deployment_replicas(&self, name: &str) -> Option<i32> {
        let api: Api<Deployment> = Api::namespaced(self.cluster.client.clone(), self.namespace);
        api.get_opt(name)
            .await
            .expect("get deployment")
            .and_then(|d| d.spec?.replicas)
    }

    /// Waits until Deployment `name` exists and returns its requested replicas. The status
    /// records a new canary before the operator applies its Deployment (the commit point), so
    /// a test that reads the Deployment right after seeing the status must wait for it.
    async fn created_deployment_replicas(&self, name: &str, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(replicas) = self.deployment_replicas(name).await {
                self.timeline
                    .mark(&format!("reached: deployment {name} exists"));
                return replicas;
            }
            assert!(
                Instant::now() < deadline,
                "deployment {name} not created within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a webhook notification whose text contains `needle` arrives.
    async fn wait_webhook(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = self
                .webhook
                .texts()
                .into_iter()
                .find(|t| t.contains(needle))
            {
                self.timeline.mark(&format!("webhook received: {t}"));
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no webhook containing {needle:?} within {limit:?}; got {:?}",
                self.webhook.texts()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asserts that every finished rollout in the release's history (promoted, rolled back or
    /// rejected; superseded ones are not announced) got exactly one webhook notification.
    async fn assert_one_notification_per_rollout(&self) {
        let Ok(Some(rr)) = self.releases().get_opt(RELEASE).await else {
            return;
        };
        let finished = rr
            .status
            .map(|s| s.history)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.outcome != Outcome::Superseded)
            .count();
        // Notifications are sent in the background: give the last one time to arrive.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.webhook.texts().len() < finished && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let texts = self.webhook.texts();
        self.timeline.mark(&format!(
            "{} notifications for {finished} finished rollouts",
            texts.len()
        ));
        assert_eq!(
            texts.len(),
            finished,
            "exactly one notification per finished rollout: {texts:?}"
        );
    }

    /// Prints resource figures of the operator(s), asserts that no reconcile of a running
    /// operator failed (an RBAC denial of the chart's least-privilege role would), and stops
    /// everything by pid.
    async fn finish(mut self) {
        self.assert_one_notification_per_rollout().await;
        for (i, op) in self.operators.iter().enumerate() {
            if op.process.pid().is_none() {
                continue;
            }
            let text = self.operators[i].metrics().await.unwrap_or_default();
            let errors = metric_sum(&text, "movrek_operator_reconcile_errors_total", &[]);
            assert!(
                errors == 0.0,
                "operator {} had {errors} failed reconciles:\n{}",
                op.identity,
                op.process.log_tail(20)
            );
        }
        for e in self.events().await {
            self.timeline.mark(&format!(
                "event {} {} ×{}: {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.count.unwrap_or(1),
                e.message.unwrap_or_default()
            ));
        }
        for op in &self.operators {
            if let (Some(rss), Some(peak)) = (op.rss_kib(), op.peak_rss_kib()) {
                self.timeline.mark(&format!(
                    "FIGURE operator {} RSS {:.1} MiB (peak {:.1} MiB)",
                    op.identity,
                    rss as f64 / 1024.0,
                    peak as f64 / 1024.0
                ));
            }
        }
        self.watch = None;
        if let Some(t) = self.traffic.take() {
            t.stop().await;
        }
        for mut op in self.operators.drain(..) {
            op.process.stop();
        }
        if let Some(d) = self.data.take() {
            let stats = d.stats();
            self.timeline.mark(&format!(
                "stand-in: {} movrek serve processes started, {} stopped, {} nginx reloads",
                stats.started, stats.stopped, stats.reloads
            ));
            d.stop().await;
            assert!(
                stats.crashed.is_empty(),
                "movrek serve exited on its own for pods {:?} (model refused?)",
                stats.crashed
            );
        }
        self.timeline
            .mark("stopped operator, data plane; cluster goes down");
    }
}

impl Env {
    /// The chart's role allows what the operator does and nothing it does not.
    fn assert_operator_permissions(&self) {
        // The chart's role allows what the operator does and nothing it does not.
        let sa = format!(
            "system:serviceaccount:{}:{}",
            cluster::OPERATOR_NAMESPACE,
            cluster::OPERATOR_SERVICE_ACCOUNT
        );
        for (verb, resource, allowed) in [
            ("patch", "deployments.apps", true),
            ("watch", "recommenderreleases.movrek.dev", true),
            ("patch", "recommenderreleases.movrek.dev/status", true),
            ("create", "events.events.k8s.io", true),
            ("get", "secrets", true),
            ("watch", "services", true),
            ("watch", "pods", true),
            ("watch", "ingresses.networking.k8s.io", true),
            ("delete", "ingresses.networking.k8s.io", true),
            ("patch", "horizontalpodautoscalers.autoscaling", true),
            ("delete", "deployments.apps", false),
            ("delete", "services", false),
            ("list", "secrets", false),
            ("get", "pods", false),
            ("patch", "recommenderreleases.movrek.dev", false),
            ("update", "recommenderreleases.movrek.dev", false),
        ] {
            // `kind/status` would name an object called "status": ask for the subresource.
            let (resource, subresource) = match resource.strip_suffix("/status") {
                Some(r) => (r, "--subresource=status"),
                None => (resource, "--subresource="),
            };
            let out = self.cluster.kubectl(&[
                "auth",
                "can-i",
                verb,
                resource,
                subresource,
                "--as",
                &sa,
                "-n",
                self.namespace,
            ]);
            let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert_eq!(
                answer,
                if allowed { "yes" } else { "no" },
                "can the operator {verb} {resource}?"
            );
        }
        self.timeline
            .mark("kubectl auth can-i: the chart's ServiceAccount has exactly the expected verbs");
    }
}

/// Pods beside the release's that the chart's `PodMonitor` must not select (name, labels,
/// container port name): s01 checks Prometheus discovers them and drops them.
const DECOYS: [(&str, &str, &str); 3] = [
    (
        "decoy-unmanaged",
        "app.kubernetes.io/name: movrek-inference",
        "http",
    ),
    (
        "decoy-other-app",
        "app.kubernetes.io/name: movrek-evaluator, app.kubernetes.io/managed-by: movrek-operator",
        "http",
    ),
    (
        "decoy-other-port",
        "app.kubernetes.io/name: movrek-inference, app.kubernetes.io/managed-by: movrek-operator",
        "metrics",
    ),
];

impl Env {
    /// Creates the [`DECOYS`] in the release namespace (kwok runs them: Running, with a pod IP;
    /// the stand-in starts no process for them, having no `inference` container).
    fn apply_pod_monitor_decoys(&self) {
        for (name, labels, port) in DECOYS {
            self.cluster.apply(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  \
                 labels: {{{labels}}}\nspec:\n  containers:\n  - name: decoy\n    \
                 image: decoy.invalid/none\n    ports:\n    - name: {port}\n      \
                 containerPort: 9100\n",
                ns = self.namespace,
            ));
        }
        self.timeline.mark(&format!(
            "pods the chart's PodMonitor must not select created: {:?}",
            DECOYS.map(|(name, _, _)| name)
        ));
    }
}

/// Scenario 1: `helm install`, `kubectl apply -f examples/recommenderrelease.yaml` (with this
/// machine's model artifact): stable ready, `kubectl wait --for=condition=Ready` returns,
/// `kubectl get rr` shows the printer columns, the example's ingress-nginx route serves the
/// model (through the legacy stand-in: the example is applied as shipped), and the test's
/// Prometheus (Kubernetes discovery, configured from the chart's `PodMonitor`) scrapes exactly
/// the pods that `PodMonitor` selects: the release's, not the [`DECOYS`] beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s01_install_and_first_deploy() {
    let env = Env::start_legacy("s01", &["v1"]).await;
    let example =
        std::fs::read_to_string(cluster::repo_root().join("examples/recommenderrelease.yaml"))
            .expect("read examples/recommenderrelease.yaml");
    let m = &env.models["v1"];
    // Point the example at the artifact trained here and at the local Prometheus; every other
    // field is the example's (its notify Secret is created here).
    env.create_webhook_secret("movrek-slack");
    let mut yaml = String::new();
    for line in example.lines() {
        let trimmed = line.trim_start();
        let replaced = if trimmed.starts_with("version:") {
            format!("    version: \"{}\"", m.version)
        } else if trimmed.starts_with("uri:") {
            format!("    uri: \"file://{}\"", m.path.display())
        } else if trimmed.starts_with("sha256:") {
            format!("    sha256: {}", m.sha256)
        } else if trimmed.starts_with("address:") {
            format!("      address: {}", env.data().prometheus.url())
        } else {
            line.to_owned()
        };
        yaml.push_str(&replaced);
        yaml.push('\n');
    }
    env.cluster.apply(&yaml);
    env.timeline
        .mark("kubectl apply -f examples/recommenderrelease.yaml");
    let out = env.cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("rr/{RELEASE}"),
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "kubectl wait failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.timeline
        .mark("kubectl wait --for=condition=Ready returned");
    let rr = env.wait_phase(Phase::Stable, Duration::from_secs(10)).await;
    let status = rr.status.expect("status");
    let stable = status.stable.expect("status.stable");
    assert_eq!(stable.version, "v1");
    assert_eq!(stable.ready_replicas, 2);
    assert_eq!(status.canary_weight, 0);
    assert_eq!(status.observed_generation, rr.metadata.generation);

    let table = env.cluster.kubectl_ok(&["get", "rr"]);
    println!("{table}");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "AGE"]
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(&row[..3], [RELEASE, "Stable", "v1"]);
    // The CANARY column is empty before any rollout, so WEIGHT is the fourth word.
    assert_eq!(row[3], "0", "{table}");

    assert_eq!(env.deployment_replicas("movies-stable").await, Some(2));
    env.assert_operator_permissions();
    env.wait_serving("v1", Duration::from_secs(30)).await;
    let reasons = env.event_reasons().await;
    assert!(reasons.contains(&"Deploying".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"Ready".to_owned()), "{reasons:?}");
    env.apply_pod_monitor_decoys();
    env.assert_scrape_matches_pod_monitor(&DECOYS.map(|(name, _, _)| name))
        .await;
    let mut delete = vec!["delete", "pod", "--wait=false"];
    delete.extend(DECOYS.map(|(name, _, _)| name));
    env.cluster.kubectl_ok(&delete);
    env.finish().await;
}

/// Scenario 2: a good new version goes canary at 20 %, soaks, passes analysis and is
/// promoted; during the soak the gateway sent ≈ 20 % of answers to it, afterwards 100 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s02_good_canary_is_promoted() {
    let mut env = Env::start("s02", &["v1", "v2"]).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(180));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A longer soak than the other scenarios, so the split is measured on enough answers.
    env.apply_version(
        "v2",
        &FAST_CANARY.replace("soakDuration: 4s", "soakDuration: 8s"),
    );
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    let rr = env.wait_promoted("v2", Duration::from_secs(90)).await;
    let status = rr.status.expect("status");
    assert_eq!(status.canary_weight, 0);
    let analysis = status.last_analysis.expect("lastAnalysis");
    assert!(
        analysis.requests.unwrap_or(0.0) >= 20.0,
        "the passing check saw at least minRequests: {analysis:?}"
    );
    let entry = status.history.first().expect("history entry");
    assert_eq!(entry.version, "v2");
    assert_eq!(entry.outcome, Outcome::Promoted);

    // Settle: the gateway must route everything to the promoted stable.
    let settled_from = env.timeline.now() + Duration::from_secs(3);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let samples = env.samples();
    let after = Mix::of(&samples, settled_from, env.timeline.now());
    env.timeline.mark(&format!("after promotion: {after}"));
    assert!(after.total_ok() >= 100, "{after}");
    assert!(
        (after.share("v2") - 1.0).abs() < f64::EPSILON,
        "100% v2 after promotion: {after}"
    );

    // The split during the soak: from the first v2 answer to the start of Promoting.
    let first_v2 = samples
        .iter()
        .find(|s| s.version.as_deref() == Some("v2"))
        .expect("a v2 answer")
        .at;
    let promoting = env
        .watch()
        .first(Phase::Promoting)
        .expect("Promoting was observed");
    let soak = Mix::of(&samples, first_v2, promoting);
    let share = soak.share("v2");
    env.timeline.mark(&format!(
        "split during soak/analysis ({:.1}s): {soak} → canary share {:.1}% (configured 20%)",
        promoting.saturating_sub(first_v2).as_secs_f64(),
        share * 100.0
    ));
    assert!(
        soak.total_ok() >= 200,
        "enough answers to judge the split: {soak}"
    );
    assert!(
        (share - 0.20).abs() <= 0.06,
        "canary share {share:.3} not within 20% ± 6 points"
    );
    let all = Mix::of(&samples, Duration::ZERO, env.timeline.now());
    assert_eq!(
        all.failed,
        0,
        "no failed request through the gateway: {all}\n{}",
        traffic::failures(&samples)
    );

    let reasons = env.event_reasons().await;
    for r in [
        "CanaryStarted",
        "CanaryReady",
        "AnalysisPassed",
        "Promoting",
        "Promoted",
    ] {
        assert!(
            reasons.iter().any(|x| x == r),
            "event {r} missing: {reasons:?}"
        );
    }
    env.wait_webhook("promoted model v2", Duration::from_secs(10))
        .await;
    assert_eq!(env.deployment_replicas("movies-canary").await, Some(0));
    let phases = env.watch().phases();
    env.timeline.mark(&format!("phases: {phases:?}"));
    env.finish().await;
}

/// Scenario 3: a slow canary (`MOVREK_FAULT_DELAY_MS` = 400 ms against a 100 ms limit) is
/// rolled back; Event and webhook arrive; the stable track is never interrupted (0 failed
/// requests through the gateway). Prints the breach-to-rollback time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s03_slow_canary_is_rolled_back() {
    let mut env = Env::start("s03", &["v1", "v2-slow"]).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(180));
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.apply_version("v2-slow", FAST_CANARY);
    let rr = env
        .wait_phase(Phase::RolledBack, Duration::from_secs(90))
        .await;
    let status = rr.status.expect("status");
    assert_eq!(status.canary_weight, 0);
    assert_eq!(
        status.stable.as_ref().map(|s| s.version.as_str()),
        Some("v1")
    );
    assert_eq!(
        status.failed_checks, 2,
        "rolled back after failureLimit checks"
    );
    let analysis = status.last_analysis.expect("lastAnalysis");
    assert!(
        analysis.average_latency_seconds.unwrap_or(0.0) > 0.1,
        "the failing check measured the slow canary: {analysis:?}"
    );
    let entry = status.history.first().expect("history entry");
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v2-slow", Outcome::RolledBack)
    );
    let rolled_back_at = env.timeline.now();

    // After the rollback the gateway routes nothing to the canary.
    let settled_from = rolled_back_at + Duration::from_secs(2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let samples = env.samples();
    let after = Mix::of(&samples, settled_from, env.timeline.now());
    env.timeline.mark(&format!("after rollback: {after}"));
    assert!((after.share("v1") - 1.0).abs() < f64::EPSILON, "{after}");

    // Breach: the first slow answer through the gateway.
    let breach = samples
        .iter()
        .find(|s| s.version.as_deref() == Some("v2-slow"))
        .expect("the slow canary answered")
        .at;
    // Rollback: the first observed status with the canary weight back at 0.
    let rolling_back = env
        .watch()
        .states()
        .iter()
        .find(|s| s.at > breach && s.weight == 0)
        .map_or(rolled_back_at, |s| s.at);
    let last_slow = samples
        .iter()
        .rev()
        .find(|s| s.version.as_deref() == Some("v2-slow"))
        .expect("slow answers")
        .at;
    env.timeline.mark(&format!(
        "FIGURE breach-to-rollback: {:.1}s to status weight 0, {:.1}s to the last slow answer \
         through the gateway (soak 4s, checks every 4s, failureLimit 2)",
        rolling_back.saturating_sub(breach).as_secs_f64(),
        last_slow.saturating_sub(breach).as_secs_f64()
    ));
    let all = Mix::of(&samples, Duration::ZERO, env.timeline.now());
    env.timeline.mark(&format!("all traffic: {all}"));
    assert_eq!(
        all.failed,
        0,
        "stable never interrupted: {all}\n{}",
        traffic::failures(&samples)
    );

    let reasons = env.event_reasons().await;
    for r in ["CanaryStarted", "AnalysisFailed", "RollingBack"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "event {r} missing: {reasons:?}"
        );
    }
    env.wait_webhook("rolled back model v2-slow", Duration::from_secs(10))
        .await;
    assert_eq!(env.deployment_replicas("movies-canary").await, Some(0));
    env.finish().await;
}

/// Scenario 8: invalid manifests are rejected by the API server with the CRD's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s08_invalid_manifests_are_rejected() {
    // Legacy provider: the invalid manifests are variations of an ingress-nginx one.
    let env = Env::start_legacy("s08", &["v1"]).await;
    let good = env.manifest("v1", FAST_CANARY);
    let cases: [(&str, String, &[&str]); 5] = [
        (
            "weight 150",
            good.replace("weight: 20", "weight: 150"),
            &["spec.canary.weight", "less than or equal to 100"],
        ),
        (
            "negative duration",
            good.replace("soakDuration: 4s", "soakDuration: -5s"),
            &["spec.canary.soakDuration", "durations must be positive"],
        ),
        (
            "missing image",
            good.replace("  image: registry.example/movrek-inference:0.1.0\n", ""),
            &["spec.image", "Required value"],
        ),
        (
            "empty image",
            good.replace(
                "image: registry.example/movrek-inference:0.1.0",
                "image: \"\"",
            ),
            &["spec.image is required"],
        ),
        (
            "unknown provider",
            good.replace("provider: ingress-nginx", "provider: istio"),
            &["spec.traffic.provider", "Unsupported value: \"istio\""],
        ),
    ];
    for (what, yaml, wanted) in &cases {
        assert_ne!(yaml, &good, "case {what} changed nothing");
        let out = env.cluster.kubectl_stdin(&["apply", "-f", "-"], yaml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        env.timeline.mark(&format!("{what}: {}", stderr.trim()));
        assert!(!out.status.success(), "{what} was accepted");
        for w in *wanted {
            assert!(stderr.contains(w), "{what}: {w:?} not in {stderr}");
        }
    }
    let list = env
        .releases()
        .list(&ListParams::default())
        .await
        .expect("list");
    assert!(list.items.is_empty(), "nothing was stored");
    // The untouched manifest is accepted (the cases above failed for their one change).
    env.cluster.apply(&good);
    env.wait_phase(Phase::Stable, Duration::from_secs(60)).await;
    env.finish().await;
}

/// Canary settings that never judge on their own (a person decides).
const MANUAL_CANARY: &str = "weight: 20\n    soakDuration: 10m\n    interval: 4s\n    \
    maxAverageLatency: 100ms\n    minRequests: 20\n    failureLimit: 2\n    progressDeadline: 60s";

impl Env {
    fn annotate(&self, action: &str) {
        self.cluster.kubectl_ok(&[
            "annotate",
            "--overwrite",
            &format!("rr/{RELEASE}"),
            &format!("movrek.dev/action={action}"),
        ]);
        self.timeline.mark(&format!(
            "kubectl annotate rr/{RELEASE} movrek.dev/action={action}"
        ));
    }

    /// Waits until status records `value` as the handled action; the annotation stays.
    async fn wait_action_handled(&self, value: &str) {
        let rr = self
            .wait_for(
                &format!("movrek.dev/action={value} handled"),
                Duration::from_secs(30),
                |rr| {
                    rr.status
                        .as_ref()
                        .and_then(|s| s.last_handled_action.as_deref())
                        == Some(value)
                },
            )
            .await;
        assert_eq!(
            rr.annotations()
                .get("movrek.dev/action")
                .map(String::as_str),
            Some(value),
            "the annotation is kept (a GitOps tool would re-apply it)"
        );
    }

    /// Waits for `phase` with `stable` serving.
    async fn wait_outcome(
        &self,
        phase: Phase,
        stable: &str,
        limit: Duration,
    ) -> RecommenderRelease {
        self.wait_for(
            &format!("phase {phase:?} with stable {stable}"),
            limit,
            |rr| {
                rr.status.as_ref().is_some_and(|s| {
                    s.phase == phase && s.stable.as_ref().is_some_and(|t| t.version == stable)
                })
            },
        )
        .await
    }

    /// Asserts no request through the gateway failed so far.
    fn assert_no_failed_requests(&self) {
        let samples = self.samples();
        let all = Mix::of(&samples, Duration::ZERO, self.timeline.now());
        self.timeline.mark(&format!("all traffic: {all}"));
        assert_eq!(
            all.failed,
            0,
            "requests failed through the gateway: {all}\n{}",
            traffic::failures(&samples)
        );
    }

    /// Asserts the router answered only with `version` over the last `window` (after settling).
    async fn assert_all_traffic_on(&self, version: &str) {
        let from = self.timeline.now() + Duration::from_secs(2);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mix = Mix::of(&self.samples(), from, self.timeline.now());
        self.timeline.mark(&format!("traffic now: {mix}"));
        assert!(mix.total_ok() >= 50, "{mix}");
        assert!(
            (mix.share(version) - 1.0).abs() < f64::EPSILON,
            "all traffic on {version}: {mix}"
        );
    }
}

/// Scenario 7: `movrek.dev/action=promote` and `=abort` during a soak that would last 10
/// minutes, then `=retry` of the rolled-back version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s07_manual_promote_abort_retry() {
    let mut env = Env::start("s07", &["v1", "v2", "v3"]).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(240));

    // promote
    env.apply_version("v2", MANUAL_CANARY);
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    // A 10-minute soak only waits for a timer: kstatus readers see no reconciliation.
    let out = env.cluster.kubectl(&[
        "wait",
        "--for=condition=Reconciling=False",
        &format!("rr/{RELEASE}"),
        "--timeout=10s",
    ]);
    assert!(out.status.success(), "Reconciling is False while soaking");
    env.annotate("promote");
    let rr = env
        .wait_outcome(Phase::Succeeded, "v2", Duration::from_secs(60))
        .await;
    env.wait_action_handled("promote").await;
    let status = rr.status.expect("status");
    assert_eq!(status.history[0].version, "v2");
    assert_eq!(status.history[0].outcome, Outcome::Promoted);
    env.assert_all_traffic_on("v2").await;

    // abort
    // This rollout announces through `notify.secretRef` (the chart lets the operator `get`
    // Secrets): the abort's webhook proves the read.
    env.create_webhook_secret("movrek-hook");
    let via_secret = env.manifest("v3", MANUAL_CANARY).replace(
        &format!("    webhookUrl: {}\n", env.webhook.url),
        "    secretRef:\n      name: movrek-hook\n      key: url\n",
    );
    assert!(via_secret.contains("secretRef"), "{via_secret}");
    env.cluster.apply(&via_secret);
    env.timeline
        .mark("kubectl apply rr/movies model v3 (notify.secretRef movrek-hook)");
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    env.annotate("abort");
    let rr = env
        .wait_outcome(Phase::RolledBack, "v2", Duration::from_secs(60))
        .await;
    env.wait_action_handled("abort").await;
    let status = rr.status.expect("status");
    assert_eq!(status.canary_weight, 0);
    assert_eq!(status.history[0].version, "v3");
    assert_eq!(status.history[0].outcome, Outcome::RolledBack);
    assert!(
        status.history[0].reason.contains("abort"),
        "history says why: {:?}",
        status.history[0]
    );
    assert!(status.blocked.is_some(), "v3 is blocked until retried");
    env.wait_webhook("rolled back model v3", Duration::from_secs(10))
        .await;
    env.assert_all_traffic_on("v2").await;
    assert_eq!(env.deployment_replicas("movies-canary").await, Some(0));

    // retry: the rolled-back v3 starts again; this time a person promotes it.
    env.annotate("retry");
    env.wait_for("canary v3 soaking again", Duration::from_secs(60), |rr| {
        rr.status.as_ref().is_some_and(|s| {
            s.phase == Phase::Soaking && s.canary.as_ref().is_some_and(|c| c.version == "v3")
        })
    })
    .await;
    env.wait_action_handled("retry").await;
    env.annotate("promote");
    env.wait_outcome(Phase::Succeeded, "v3", Duration::from_secs(60))
        .await;
    env.assert_all_traffic_on("v3").await;
    env.assert_no_failed_requests();
    let reasons = env.event_reasons().await;
    for r in ["RetryRequested", "Promoted", "RollingBack"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "event {r} missing: {reasons:?}"
        );
    }
    env.finish().await;
}

/// Scenario 4: a canary that gets no traffic is inconclusive and is rolled back at the
/// deadline (`max(progressDeadline, failureLimit × interval)`); status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s04_no_canary_traffic_is_inconclusive() {
    let env = Env::start("s04", &["v1", "v2"]).await;
    env.deploy_stable("v1").await;
    // No traffic at all: the canary's series stay empty.
    env.apply_version(
        "v2",
        &FAST_CANARY.replace("progressDeadline: 60s", "progressDeadline: 12s"),
    );
    let rr = env
        .wait_phase(Phase::RolledBack, Duration::from_secs(90))
        .await;
    let rolled_back_at = env.timeline.now();
    let analysis_at = env.watch().first(Phase::Analyzing).expect("Analyzing seen");
    env.timeline.mark(&format!(
        "rolled back {:.1}s after analysis began (budget 12s)",
        rolled_back_at.saturating_sub(analysis_at).as_secs_f64()
    ));
    let status = rr.status.expect("status");
    assert_eq!(
        status.stable.as_ref().map(|s| s.version.as_str()),
        Some("v1")
    );
    assert_eq!(
        status.failed_checks, 0,
        "nothing failed; it was inconclusive"
    );
    let last = status.last_analysis.expect("lastAnalysis");
    assert_eq!(last.verdict, Verdict::Inconclusive);
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("no passing check within 12s"),
        "status says why: {message}"
    );
    assert!(
        last.message.contains("no data") || last.message.contains("fewer than minRequests"),
        "{last:?}"
    );
    assert!(
        rolled_back_at.saturating_sub(analysis_at) >= Duration::from_secs(11),
        "not before the deadline"
    );
    let reasons = env.event_reasons().await;
    assert!(
        reasons.iter().any(|r| r == "AnalysisInconclusive"),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r == "RollingBack"), "{reasons:?}");
    env.wait_webhook("rolled back model v2", Duration::from_secs(10))
        .await;
    env.finish().await;
}

/// Scenario 5: a spec change mid-soak restarts the rollout with the newest version, which
/// is then promoted; the superseded version is in the history and never reaches stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s05_spec_change_mid_soak_restarts() {
    let mut env = Env::start("s05", &["v1", "v2", "v3"]).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(180));
    env.apply_version("v2", MANUAL_CANARY);
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    env.wait_serving_share("v2").await;
    env.apply_version("v3", FAST_CANARY);
    env.wait_for("canary v3 replaces v2", Duration::from_secs(60), |rr| {
        rr.status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| c.version == "v3")
    })
    .await;
    let rr = env
        .wait_outcome(Phase::Succeeded, "v3", Duration::from_secs(90))
        .await;
    let status = rr.status.expect("status");
    let v2 = status
        .history
        .iter()
        .find(|h| h.version == "v2")
        .expect("v2 in history");
    assert_eq!(v2.outcome, Outcome::Superseded);
    assert_eq!(status.history[0].version, "v3");
    assert_eq!(status.history[0].outcome, Outcome::Promoted);
    assert!(
        env.watch()
            .states()
            .iter()
            .all(|s| s.stable.as_deref() != Some("v2")),
        "v2 never became stable"
    );
    env.assert_all_traffic_on("v3").await;
    env.assert_no_failed_requests();
    let reasons = env.event_reasons().await;
    assert!(
        reasons.iter().any(|r| r == "RolloutRestarted"),
        "{reasons:?}"
    );
    env.finish().await;
}

impl Env {
    /// SIGKILLs operator `index` (by pid) and returns when it is gone.
    fn kill_operator(&mut self, index: usize) {
        let op = &mut self.operators[index];
        let pid = op.process.pid();
        op.process.stop();
        self.timeline.mark(&format!(
            "SIGKILL operator {} (pid {pid:?})",
            self.operators[index].identity
        ));
    }

    /// Holder of the leader-election Lease.
    fn lease_holder(&self) -> String {
        let out = self.cluster.kubectl(&[
            "-n",
            cluster::OPERATOR_NAMESPACE,
            "get",
            "lease",
            "movrek-operator",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    async fn wait_lease_holder(&self, identity: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.lease_holder() != identity {
            assert!(
                Instant::now() < deadline,
                "{identity} did not take the Lease within {limit:?} (holder {:?})",
                self.lease_holder()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.timeline.mark(&format!("Lease held by {identity}"));
    }

    /// Reconciles and API writes operator `index` reports.
    async fn operator_counts(&self, index: usize) -> (f64, f64) {
        let text = self.operators[index].metrics().await.unwrap_or_default();
        (
            metric_sum(
                &text,
                "movrek_operator_reconcile_duration_seconds_count",
                &[],
            ),
            metric_sum(&text, "movrek_operator_api_writes_total", &[]),
        )
    }
}

/// Requests the operator's reconciles cause, from the API server's `apiserver_request_total`:
/// GETs of the children's kinds, and writes (children, Events, release status).
fn operator_requests(apiserver_metrics: &str) -> (f64, f64) {
    let m = |verb: &str, resource: &str| {
        metric_sum(
            apiserver_metrics,
            "apiserver_request_total",
            &[
                &format!("verb=\"{verb}\""),
                &format!("resource=\"{resource}\""),
            ],
        )
    };
    let kinds = ["deployments", "services", "ingresses", "httproutes"];
    let gets = kinds.iter().map(|k| m("GET", k)).sum();
    let mut writes: f64 = kinds
        .iter()
        .chain(&["events"])
        .flat_map(|k| ["POST", "PATCH", "PUT", "DELETE"].map(|v| m(v, k)))
        .sum();
    writes += metric_sum(
        apiserver_metrics,
        "apiserver_request_total",
        &[
            "verb=\"PATCH\"",
            "resource=\"recommenderreleases\"",
            "subresource=\"status\"",
        ],
    );
    (gets, writes)
}

/// Scenario 1 addendum: the API requests of one idle reconcile. A metadata-only change (an
/// unrelated annotation) triggers reconciles that must read and write nothing: the children
/// come from the watch caches. A status-only change (edited by hand) triggers no reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s01b_idle_reconcile_api_requests() {
    // Legacy provider: the counts were taken with Ingresses (HTTPRoutes are counted too).
    let env = Env::start_legacy("s01b", &["v1"]).await;
    env.deploy_stable("v1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (r0, w0) = env.operator_counts(0).await;
    let (g0, x0) = operator_requests(&env.cluster.apiserver_metrics().await);
    let touches = 5;
    for i in 0..touches {
        env.cluster.kubectl_ok(&[
            "annotate",
            "--overwrite",
            &format!("rr/{RELEASE}"),
            &format!("e2e.movrek.dev/touch={i}"),
        ]);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (r1, w1) = env.operator_counts(0).await;
    let (g1, x1) = operator_requests(&env.cluster.apiserver_metrics().await);
    let reconciles = r1 - r0;
    env.timeline.mark(&format!(
        "FIGURE idle reconciles: {reconciles} after {touches} annotation touches; API GETs {} \
         ({:.1} per reconcile), API writes {} (operator counted {})",
        g1 - g0,
        (g1 - g0) / reconciles.max(1.0),
        x1 - x0,
        w1 - w0
    ));
    assert!(reconciles >= 1.0, "touches trigger reconciles");
    assert!(
        (g1 - g0).abs() < f64::EPSILON,
        "an idle reconcile reads nothing from the API server"
    );
    assert!(
        (w1 - w0).abs() < f64::EPSILON,
        "an idle reconcile writes nothing"
    );
    assert!(
        (x1 - x0).abs() < f64::EPSILON,
        "the API server saw no write"
    );

    // A status-only change does not wake the operator.
    env.cluster.kubectl_ok(&[
        "patch",
        &format!("rr/{RELEASE}"),
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"message":"edited by hand"}}"#,
    ]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (r2, _) = env.operator_counts(0).await;
    env.timeline.mark(&format!(
        "FIGURE reconciles after a status-only change: {}",
        r2 - r1
    ));
    assert!(
        (r2 - r1).abs() < f64::EPSILON,
        "a status-only change triggers no reconcile"
    );
    env.finish().await;
}

/// Scenario 12 (issue 8): object lifecycle on the real API server. A Service deleted by hand
/// and a canary weight edited by hand are healed from the watches; a provider change zeroes
/// and then deletes the old Ingresses (status records the provider); a foreground deletion
/// (as Argo CD does it) gets no more writes and the release's metric series go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s12_lifecycle_heal_provider_change_deletion() {
    // Legacy provider: heals a hand-edited canary Ingress, then moves off ingress-nginx.
    let env = Env::start_legacy("s12", &["v1"]).await;
    env.deploy_stable("v1").await;

    env.cluster
        .kubectl_ok(&["delete", "service", "movies-canary", "--wait=true"]);
    env.timeline.mark("kubectl delete service movies-canary");
    env.wait_until("Service movies-canary recreated", || {
        env.cluster
            .kubectl(&["get", "service", "movies-canary"])
            .status
            .success()
    })
    .await;

    env.cluster.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "ingress",
        "movies-canary",
        "nginx.ingress.kubernetes.io/canary-weight=50",
    ]);
    env.timeline.mark("canary Ingress weight set to 50 by hand");
    env.wait_until("canary Ingress weight healed to 0", || {
        env.cluster.kubectl_ok(&[
            "get",
            "ingress",
            "movies-canary",
            "-o",
            "jsonpath={.metadata.annotations.nginx\\.ingress\\.kubernetes\\.io/canary-weight}",
        ]) == "0"
    })
    .await;

    let replicas = env
        .manifest("v1", FAST_CANARY)
        .replace("provider: ingress-nginx", "provider: replicas");
    env.cluster.apply(&replicas);
    env.timeline
        .mark("kubectl apply: traffic.provider replicas");
    env.wait_until("old Ingresses deleted", || {
        env.cluster
            .kubectl_ok(&["get", "ingress", "-o", "name"])
            .trim()
            .is_empty()
    })
    .await;
    let rr = env
        .wait_for(
            "status records provider replicas",
            Duration::from_secs(30),
            |rr| {
                rr.status.as_ref().and_then(|s| s.traffic_provider)
                    == Some(movrek_operator::crd::TrafficProvider::Replicas)
            },
        )
        .await;
    assert_eq!(rr.status.expect("status").phase, Phase::Stable);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, writes_before) = env.operator_counts(0).await;
    env.cluster.kubectl_ok(&[
        "delete",
        &format!("rr/{RELEASE}"),
        "--cascade=foreground",
        "--wait=false",
    ]);
    env.timeline
        .mark("kubectl delete rr --cascade=foreground (as Argo CD does)");
    let op = &env.operators[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = op.metrics().await.unwrap_or_default();
        if !text.contains(&format!("release=\"{RELEASE}\"")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the release's metric series are still exported"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.timeline
        .mark("operator forgot the release's metric series");
    env.wait_until("release and children gone", || {
        env.cluster
            .kubectl_ok(&["get", "rr,deployments,services", "-o", "name"])
            .lines()
            .all(|l| l.ends_with("/kubernetes"))
    })
    .await;
    let (_, writes_after) = env.operator_counts(0).await;
    assert!(
        (writes_after - writes_before).abs() < f64::EPSILON,
        "no write to a release being deleted ({} writes)",
        writes_after - writes_before
    );
    env.finish().await;
}

impl Env {
    /// Polls `check` every 200 ms for up to 30 s.
    async fn wait_until(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.timeline.mark(&format!("reached: {what}"));
    }
}

/// Scenario 6: the operator is killed (SIGKILL) during the soak, during analysis (after the
/// first failed check of a slow canary) and during Promoting when the watch catches that short
/// phase, and restarted each time: the rollouts end exactly as without the kills; the failing
/// rollout keeps its failed-check count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s06_operator_killed_in_each_phase() {
    let mut env = Env::start("s06", &["v1", "v2", "v3-slow"]).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(300));
    let canary = FAST_CANARY.replace("soakDuration: 4s", "soakDuration: 6s");
    let mut restarts = 0;

    env.apply_version("v2", &canary);
    // A passing first check goes from Soaking straight to Promoting, so the kill during
    // analysis is done in the failing rollout below, which stays Analyzing for two checks.
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    env.kill_operator(env.operators.len() - 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    restarts += 1;
    env.start_operator(&format!("operator-r{restarts}"));
    // Promoting lasts a fraction of a second under kwok: kill there only if it is caught.
    let rr = env
        .wait_for(
            "phase Promoting or Succeeded",
            Duration::from_secs(90),
            |rr| {
                rr.status
                    .as_ref()
                    .is_some_and(|s| matches!(s.phase, Phase::Promoting | Phase::Succeeded))
            },
        )
        .await;
    if rr.status.as_ref().map(|s| s.phase) == Some(Phase::Promoting) {
        env.kill_operator(env.operators.len() - 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        restarts += 1;
        env.start_operator(&format!("operator-r{restarts}"));
    } else {
        env.timeline
            .mark("Promoting was over before the watch saw it; no kill in Promoting");
    }
    let rr = env
        .wait_outcome(Phase::Succeeded, "v2", Duration::from_secs(90))
        .await;
    let status = rr.status.expect("status");
    let v2: Vec<_> = status
        .history
        .iter()
        .filter(|h| h.version == "v2")
        .collect();
    assert_eq!(v2.len(), 1, "one history entry for v2: {v2:?}");
    assert_eq!(v2[0].outcome, Outcome::Promoted);
    env.assert_all_traffic_on("v2").await;

    // A failing rollout: kill after the first failed check; the count survives the restart.
    env.apply_version("v3-slow", &canary);
    env.wait_for("first failed check", Duration::from_secs(90), |rr| {
        rr.status.as_ref().is_some_and(|s| s.failed_checks == 1)
    })
    .await;
    env.kill_operator(env.operators.len() - 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    restarts += 1;
    env.start_operator(&format!("operator-r{restarts}"));
    let rr = env
        .wait_outcome(Phase::RolledBack, "v2", Duration::from_secs(90))
        .await;
    let status = rr.status.expect("status");
    assert_eq!(
        status.failed_checks, 2,
        "the failed check before the kill counted"
    );
    assert_eq!(status.history[0].version, "v3-slow");
    assert_eq!(status.history[0].outcome, Outcome::RolledBack);
    env.assert_all_traffic_on("v2").await;
    env.assert_no_failed_requests();
    let hooks = env.webhook.texts();
    assert_eq!(
        hooks
            .iter()
            .filter(|t| t.contains("promoted model v2"))
            .count(),
        1,
        "one promotion notice despite restarts: {hooks:?}"
    );
    env.timeline
        .mark(&format!("{restarts} SIGKILL + restarts, same outcomes"));
    env.finish().await;
}

/// Scenario 9: two operator replicas; exactly one (the Lease holder) reconciles; killing it
/// hands over to the other, which finishes the next rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s09_two_replicas_hand_over() {
    let mut env = Env::start("s09", &["v1", "v2"]).await;
    env.wait_lease_holder("operator-a", Duration::from_secs(30))
        .await;
    env.start_operator("operator-b");
    env.deploy_stable("v1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ra, wa) = env.operator_counts(0).await;
    let (rb, wb) = env.operator_counts(1).await;
    env.timeline.mark(&format!(
        "operator-a: {ra} reconciles, {wa} writes; operator-b: {rb} reconciles, {wb} writes"
    ));
    assert!(ra >= 1.0 && wa >= 1.0, "the leader reconciles");
    assert!(rb == 0.0 && wb == 0.0, "the follower does nothing");
    assert_eq!(env.lease_holder(), "operator-a");

    env.start_traffic(Duration::from_secs(180));
    env.kill_operator(0);
    let killed = env.timeline.now();
    env.apply_version("v2", FAST_CANARY);
    env.wait_lease_holder("operator-b", Duration::from_secs(30))
        .await;
    env.timeline.mark(&format!(
        "FIGURE hand-over: operator-b leads {:.1}s after the SIGKILL (Lease {}s)",
        env.timeline.now().saturating_sub(killed).as_secs_f64(),
        operator::LEASE_SECONDS
    ));
    env.wait_outcome(Phase::Succeeded, "v2", Duration::from_secs(90))
        .await;
    let (rb, wb) = env.operator_counts(1).await;
    assert!(
        rb >= 1.0 && wb >= 1.0,
        "operator-b took over: {rb} reconciles, {wb} writes"
    );
    env.assert_all_traffic_on("v2").await;
    env.assert_no_failed_requests();
    env.finish().await;
}

/// Scenario 10: Prometheus stops during the rollout: no promotion, status says Prometheus
/// is unreachable; the rollout resumes and promotes once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s10_prometheus_outage_blocks_promotion() {
    let mut env = Env::start("s10", &["v1", "v2"]).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(180));
    env.apply_version("v2", FAST_CANARY);
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.data.as_mut().expect("data plane").prometheus.kill();
    let down_at = env.timeline.now();
    env.timeline
        .mark("Prometheus killed (by pid) during the soak");
    let rr = env
        .wait_for(
            "status says Prometheus is unreachable",
            Duration::from_secs(30),
            |rr| {
                rr.status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| m.contains("unreachable"))
            },
        )
        .await;
    let status = rr.status.expect("status");
    assert_eq!(status.phase, Phase::Analyzing);
    let last = status.last_analysis.expect("lastAnalysis");
    assert_eq!(last.verdict, Verdict::Inconclusive);
    assert!(last.message.contains("unreachable"), "{last:?}");
    // Stay down for a few more checks: nothing may be promoted meanwhile.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!env.promoted_since(down_at), "promoted without figures");
    env.data
        .as_mut()
        .expect("data plane")
        .prometheus
        .resume()
        .await;
    env.timeline
        .mark("Prometheus started again (same port and data)");
    let rr = env
        .wait_outcome(Phase::Succeeded, "v2", Duration::from_secs(60))
        .await;
    let last = rr
        .status
        .and_then(|s| s.last_analysis)
        .expect("lastAnalysis");
    assert_eq!(last.verdict, Verdict::Pass);
    env.assert_all_traffic_on("v2").await;
    env.assert_no_failed_requests();
    env.finish().await;
}

/// Scenario 11 (issue 8, item 2): leadership never splits.
/// - Rolling update: the leader gets SIGTERM, releases the Lease, and the follower leads well
///   before the Lease could have expired (the hand-over time is a FIGURE).
/// - A leader frozen (SIGSTOP) past its Lease loses it to a follower; when it wakes up
///   (SIGCONT) with reconciles due, it sends no write at all and follows again.
/// - Throughout, a replica that does not lead sends no write (its own write counter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom as a timeline"
)]
async fn s11_leadership_never_splits() {
    /// Sends `signal` (e.g. `-STOP`, `-CONT`) to a process by pid.
    fn signal_pid(pid: u32, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// (leader gauge, writes sent, writes refused) from one replica's `/metrics`.
    async fn leader_counts(op: &Operator) -> (f64, f64, f64) {
        let text = op.metrics().await.unwrap_or_default();
        (
            metric_sum(&text, "movrek_operator_leader", &[]),
            metric_sum(&text, "movrek_operator_leader_writes_total", &[]),
            metric_sum(&text, "movrek_operator_leader_writes_refused_total", &[]),
        )
    }

    let mut env = Env::start("s11", &["v1", "v2"]).await;
    env.wait_lease_holder("operator-a", Duration::from_secs(30))
        .await;
    env.start_operator("operator-b");
    env.deploy_stable("v1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a_leads, a_writes, _) = leader_counts(&env.operators[0]).await;
    let (b_leads, b_writes, b_refused) = leader_counts(&env.operators[1]).await;
    env.timeline.mark(&format!(
        "operator-a leads={a_leads} writes={a_writes}; operator-b leads={b_leads} writes={b_writes} refused={b_refused}"
    ));
    assert!(
        a_leads > 0.5 && a_writes >= 1.0,
        "operator-a leads and writes"
    );
    assert!(
        b_leads < 0.5 && b_writes < 0.5,
        "the follower sends no write"
    );

    // Rolling update: SIGTERM the leader (as the kubelet does), a follower is already waiting.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.cluster.client.clone(), cluster::OPERATOR_NAMESPACE);
    let sent = Instant::now();
    let handover = tokio::spawn(async move {
        loop {
            let holder = leases
                .get_opt("movrek-operator")
                .await
                .expect("read the Lease")
                .and_then(|l| l.spec?.holder_identity);
            if holder.as_deref() == Some("operator-b") {
                return sent.elapsed();
            }
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "operator-b did not take over (holder {holder:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    tokio::task::block_in_place(|| env.operators[0].process.terminate(Duration::from_secs(10)));
    let handover = handover.await.expect("watch the Lease");
    env.timeline.mark(&format!(
        "FIGURE rolling update: operator-b leads {:.2}s after SIGTERM to operator-a (Lease {}s)",
        handover.as_secs_f64(),
        operator::LEASE_SECONDS
    ));
    assert!(
        handover < Duration::from_secs(operator::LEASE_SECONDS),
        "the Lease was released, not left to expire: {handover:?}"
    );

    // The new pod of the rolling update joins as follower; then the leader freezes.
    env.start_operator("operator-c");
    env.start_traffic(Duration::from_secs(180));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, c_writes, _) = leader_counts(&env.operators[2]).await;
    assert!(c_writes < 0.5, "operator-c follows and sends no write");
    let (_, b_before, _) = leader_counts(&env.operators[1]).await;
    let b_pid = env.operators[1].process.pid().expect("operator-b runs");
    signal_pid(b_pid, "-STOP");
    env.timeline.mark(&format!(
        "SIGSTOP operator-b (leader; {b_before} writes so far)"
    ));
    env.wait_lease_holder("operator-c", Duration::from_secs(30))
        .await;
    // Work is due when operator-b wakes: a new version to roll out.
    env.apply_version("v2", FAST_CANARY);
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal_pid(b_pid, "-CONT");
    env.timeline.mark("SIGCONT operator-b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (b_leads, b_after, b_refused) = leader_counts(&env.operators[1]).await;
    env.timeline.mark(&format!(
        "FIGURE operator-b after losing the Lease: {} writes sent ({b_refused} refused), leads={b_leads}",
        b_after - b_before
    ));
    assert!(b_leads < 0.5, "operator-b follows again");
    assert!(
        (b_after - b_before).abs() < 0.5,
        "operator-b wrote {} times after it lost the Lease",
        b_after - b_before
    );
    env.wait_outcome(Phase::Succeeded, "v2", Duration::from_secs(90))
        .await;
    let (c_leads, c_writes, _) = leader_counts(&env.operators[2]).await;
    let (_, b_end, _) = leader_counts(&env.operators[1]).await;
    assert!(c_leads > 0.5 && c_writes >= 1.0, "operator-c rolled v2 out");
    assert!(
        (b_end - b_before).abs() < 0.5,
        "operator-b stayed silent: {b_end} vs {b_before}"
    );
    // Reconciles that woke up with it may have failed on refused writes: not a failure of
    // this run. (Traffic shares are the rollout scenarios' business, not this one's.)
    env.operators[1].process.stop();
    env.timeline
        .mark("operator-b stopped (by pid) before the error check");
    env.finish().await;
}

/// Scenario 13 (issue 8, item 5): a canary whose container restarts is rolled back during the
/// soak on `maxRestarts` (default 3), with no help from Prometheus. The kubelet's restart count
/// is written into one canary pod's status (kwok runs no containers to crash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s13_crash_looping_canary_is_rolled_back_on_restarts() {
    let env = Env::start("s13", &["v1", "v2"]).await;
    env.deploy_stable("v1").await;
    env.apply_version("v2", MANUAL_CANARY);
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    let pods = env.cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "movrek.dev/release=movies,movrek.dev/track=canary",
        "-o",
        "name",
    ]);
    let pod = pods.lines().next().expect("a canary pod").to_owned();
    let status = r#"{"status":{"containerStatuses":[{"name":"inference","ready":true,
        "started":true,"restartCount":4,"image":"registry.example/movrek-inference:0.1.0",
        "imageID":"","state":{"running":{}}}]}}"#;
    env.cluster.kubectl_ok(&[
        "patch",
        &pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    env.timeline.mark(&format!(
        "{pod}: 4 container restarts written to its status"
    ));
    let rr = env
        .wait_outcome(Phase::RolledBack, "v1", Duration::from_secs(30))
        .await;
    let status = rr.status.expect("status");
    let entry = status.history.first().expect("history entry");
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v2", Outcome::RolledBack)
    );
    assert!(
        entry.reason.contains("restarted 4 times"),
        "history says why: {}",
        entry.reason
    );
    assert!(
        status.last_analysis.is_none(),
        "no Prometheus check was needed: {:?}",
        status.last_analysis
    );
    env.wait_webhook("rolled back model v2", Duration::from_secs(10))
        .await;
    env.finish().await;
}

/// Scenario 14 (issue 8, item 6): with `spec.autoscaling` the operator applies the HPA and
/// leaves the stable Deployment's replicas to it: a scale to 4 (as the HPA would) stays, and
/// the canary is sized from those 4 pods (50% with ingress-nginx: 2 pods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s14_autoscaled_stable_replicas_are_left_to_the_hpa() {
    let env = Env::start("s14", &["v1", "v2"]).await;
    let autoscaled = |yaml: String| {
        yaml.replace(
            "  replicas: 2\n",
            "  replicas: 2\n  autoscaling:\n    minReplicas: 2\n    maxReplicas: 6\n",
        )
    };
    env.cluster
        .apply(&autoscaled(env.manifest("v1", FAST_CANARY)));
    env.wait_phase(Phase::Stable, Duration::from_secs(60)).await;
    let hpa = env.cluster.kubectl_ok(&[
        "get",
        "hpa",
        "movies-stable",
        "-o",
        "jsonpath={.spec.minReplicas}/{.spec.maxReplicas}/{.spec.scaleTargetRef.name}",
    ]);
    assert_eq!(hpa, "2/6/movies-stable");
    env.cluster
        .kubectl_ok(&["scale", "deployment", "movies-stable", "--replicas=4"]);
    env.timeline
        .mark("kubectl scale deployment movies-stable --replicas=4 (as the HPA would)");
    env.wait_for("status sees 4 stable pods", Duration::from_secs(30), |rr| {
        rr.status
            .as_ref()
            .and_then(|s| s.stable.as_ref())
            .is_some_and(|t| t.replicas == 4 && t.ready_replicas == 4)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.deployment_replicas("movies-stable").await,
        Some(4),
        "the operator did not take the replicas back"
    );
    env.cluster.apply(&autoscaled(
        env.manifest("v2", &FAST_CANARY.replace("weight: 20", "weight: 50")),
    ));
    env.wait_for("canary v2 requested", Duration::from_secs(30), |rr| {
        rr.status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| c.version == "v2")
    })
    .await;
    assert_eq!(
        env.created_deployment_replicas("movies-canary", Duration::from_secs(30))
            .await,
        2,
        "50% of the 4 stable pods"
    );
    env.finish().await;
}

/// The canary settings of scenario 15: the judge compares errors and slow requests with
/// stable (no evaluator runs here, so quality is off); the error guardrail is set out of reach
/// (50 %) so that only the comparison can roll back.
const JUDGED_CANARY: &str = "weight: 50\n    soakDuration: 8s\n    interval: 4s\n    \
    maxAverageLatency: 300ms\n    maxErrorRate: 0.5\n    minRequests: 20\n    failureLimit: 2\n    \
    progressDeadline: 3m\n    judge:\n      alpha: 0.05\n      slowRequest: 250ms\n      \
    errors: { tolerance: 0.5, floor: 0.02 }\n      score: { tolerance: 0.05, enabled: false }\n      \
    hits: { tolerance: 0.2, enabled: false }";

/// Scenario 15 (issue 10): the judge on the real control plane and real Prometheus. A canary
/// failing 20 % of its answers is rolled back by the comparison with stable during its soak —
/// not by `failureLimit` and not by the guardrail — and an identical canary is then promoted
/// once shown no worse than stable on every metric. Prints the first-failure-to-rollback time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s15_the_judge_rolls_back_a_worse_canary_and_promotes_an_identical_one() {
    let mut env = Env::start("s15", &["v1", "v2-failing", "v3"]).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(300));
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.apply_version("v2-failing", JUDGED_CANARY);
    let rr = env
        .wait_phase(Phase::RolledBack, Duration::from_secs(90))
        .await;
    let status = rr.status.expect("status");
    assert_eq!(status.canary_weight, 0);
    assert_eq!(
        status.failed_checks, 0,
        "the judge does not wait for failureLimit"
    );
    let analysis = status.last_analysis.clone().expect("lastAnalysis");
    let comparison = analysis
        .comparison
        .clone()
        .expect("the comparison is recorded");
    assert_eq!(comparison.verdict, Verdict::Fail, "{}", analysis.message);
    let errors = comparison
        .metrics
        .iter()
        .find(|m| m.metric == Metric::Errors)
        .expect("errors compared");
    assert_eq!(errors.finding, Finding::Regression, "{}", analysis.message);
    assert!(
        errors.canary.unwrap_or(0.0) > 0.05 && errors.stable.unwrap_or(1.0) < 0.01,
        "{errors:?}"
    );
    let entry = status.history.first().expect("history entry");
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v2-failing", Outcome::RolledBack)
    );
    assert!(
        entry.reason.contains("worse than stable on errors"),
        "{}",
        entry.reason
    );
    let samples = env.samples();
    let first_failure = samples.iter().find(|s| s.status >= 500).map(|s| s.at);
    let rolled_back = env
        .watch()
        .states()
        .iter()
        .find(|s| first_failure.is_some_and(|f| s.at > f) && s.weight == 0)
        .map(|s| s.at);
    if let (Some(failure), Some(back)) = (first_failure, rolled_back) {
        env.timeline.mark(&format!(
            "FIGURE judge: first failed answer through the gateway → weight 0 in {:.1}s (soak 8s, \
             a compared check every 4s); message: {}",
            back.saturating_sub(failure).as_secs_f64(),
            analysis.message
        ));
    }
    env.wait_webhook("rolled back model v2-failing", Duration::from_secs(10))
        .await;

    // An identical canary: promoted once every compared metric is shown no worse.
    env.apply_version("v3", JUDGED_CANARY);
    let rr = env.wait_promoted("v3", Duration::from_secs(150)).await;
    let status = rr.status.expect("status");
    let entry = status.history.first().expect("history entry");
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v3", Outcome::Promoted)
    );
    let passed = entry.last_analysis.clone().expect("the deciding check");
    let comparison = passed.comparison.expect("compared");
    assert_eq!(comparison.verdict, Verdict::Pass, "{}", passed.message);
    assert!(
        comparison
            .metrics
            .iter()
            .all(|m| m.finding == Finding::NoWorse),
        "{}",
        passed.message
    );
    env.timeline
        .mark(&format!("v3 promoted: {}", passed.message));
    let reasons = env.event_reasons().await;
    assert!(
        !reasons.iter().any(|r| r == "SampleRatioMismatch"),
        "the gateway splits as configured: {reasons:?}"
    );
    env.finish().await;
}

/// Scenario 17 (issue 10): a broken split. Besides the users who come through the ingress, a
/// client pinned to a stable pod (bypassing the ingress, as a stale client or a
/// misconfigured mesh would) skews the split the canary was given. The judge reports the
/// sample-ratio mismatch (a Warning Event, the reason in status), never compares the tracks
/// on the skewed counts, never promotes, and rolls the canary back at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s17_a_broken_split_is_reported_and_never_promoted() {
    let mut env = Env::start("s17", &["v1", "v2"]).await;
    env.deploy_stable("v1").await;
    let pinned = env
        .data()
        .pod_urls("stable")
        .into_iter()
        .next()
        .expect("a ready stable pod");
    env.start_traffic(Duration::from_secs(150));
    let stray = Traffic::start(
        &pinned,
        HOST,
        2,
        Duration::from_millis(50),
        Duration::from_secs(150),
        env.timeline.epoch,
    );
    env.timeline.mark(&format!(
        "a client pinned to stable pod {pinned}: 2 × 20 req/s beside the ingress's users"
    ));
    // Scenario 15's judge with a short deadline: an undecided step ends in 50 s.
    let canary = JUDGED_CANARY.replace("progressDeadline: 3m", "progressDeadline: 50s");
    assert_ne!(canary, JUDGED_CANARY);
    env.apply_version("v2", &canary);
    let analysis = env
        .wait_inconclusive_check(
            "a check reports the sample-ratio mismatch",
            "sample ratio mismatch",
            Duration::from_secs(60),
        )
        .await;
    env.timeline
        .mark(&format!("reported: {}", analysis.message));
    let rr = env
        .wait_phase(Phase::RolledBack, Duration::from_secs(90))
        .await;
    let status = rr.status.expect("status");
    assert!(
        !env.watch()
            .phases()
            .iter()
            .any(|p| matches!(p, Phase::Promoting | Phase::Succeeded)),
        "a skewed split was promoted: {:?}",
        env.watch().phases()
    );
    let entry = status.history.first().expect("history entry");
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v2", Outcome::RolledBack)
    );
    let reasons = env.event_reasons().await;
    assert!(
        reasons.iter().any(|r| r == "SampleRatioMismatch"),
        "a Warning Event names the mismatch: {reasons:?}"
    );
    let strays = stray.stop().await;
    assert!(
        strays.iter().filter(|s| s.status == 200).count() > 100,
        "the pinned client was served"
    );
    env.timeline.mark(&format!("rolled back: {}", entry.reason));
    env.finish().await;
}

/// The canary settings of scenario 16: every metric judged, quality included; the guardrails
/// (latency, errors) are loose enough that only the comparison can roll back.
const QUALITY_CANARY: &str = "weight: 50\n    soakDuration: 8s\n    interval: 4s\n    \
    maxAverageLatency: 300ms\n    maxErrorRate: 0.5\n    minRequests: 20\n    failureLimit: 2\n    \
    progressDeadline: 6m\n    judge:\n      alpha: 0.05\n      slowRequest: 250ms\n      \
    errors: { tolerance: 0.5, floor: 0.02 }\n      score: { tolerance: 0.05 }\n      \
    hits: { tolerance: 0.2 }";

/// `movrek simulate --live` users of scenario 16: 25 sessions/s through the gateway (by virtual
/// host) for at most 700 s, their watches and ratings to the `events` topic.
fn simulated_users(env: &Env, bus: &bus::Bus, events: &str) -> support::ChildGuard {
    let mut simulate = Command::new(support::movrek_bin());
    simulate
        .args(["simulate", "--target", &env.router_url(), "--host", HOST])
        .arg("--data")
        .arg(env.work.join("data"))
        .args(["--rate", "25", "--duration", "700", "--concurrency", "8"])
        .args([
            "--unknown-share",
            "0",
            "--malformed-share",
            "0",
            "--burst-share",
            "0",
        ])
        .args(["--minute-seconds", "1", "--live", "--quiet"])
        .args(["--sink", &format!("kafka://{}/{events}", bus.bootstrap)]);
    support::ChildGuard::spawn("movrek simulate", simulate, &env.work.join("simulate.log"))
}

/// Scenario 16 (issue 10): a canary that answers as fast as stable but recommends badly (a
/// model trained on scrambled users) is rolled back on online quality while every latency and
/// error figure is fine; then an identical canary (A/A) is promoted on quality, but not while
/// the evaluator is down. The whole loop is real: `movrek simulate` users go through the gateway,
/// the pods publish impressions to a real Kafka broker (`spec.impressions`), the users'
/// watches and ratings go to it too, `movrek evaluate` scores them, Prometheus scrapes it, and
/// the operator's judge reads the score and hits per track.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s16_quality_a_bad_canary_is_rolled_back_an_identical_one_promoted() {
    let mut env = Env::start("s16", &["v1", "v2-random", "v3"]).await;
    let bus = bus::Bus::start(&env.work);
    let tag = format!("s16-{}", std::process::id());
    let (impressions, events) = (format!("impressions-{tag}"), format!("events-{tag}"));
    bus.create_topic(&impressions);
    bus.create_topic(&events);
    env.timeline.mark(&format!(
        "Kafka {} topics {impressions}, {events}",
        bus.bootstrap
    ));
    env.impressions = Some((bus.bootstrap.clone(), impressions.clone()));
    env.deploy_stable("v1").await;
    let mut evaluator = bus::Evaluator::start(
        &bus,
        &impressions,
        &events,
        &tag,
        &env.work.join("evaluate.log"),
    )
    .await;
    env.data().prometheus.scrape_evaluator(evaluator.addr);
    env.timeline
        .mark(&format!("movrek evaluate on {}, scraped", evaluator.addr));
    let users = simulated_users(&env, &bus, &events);
    env.timeline
        .mark("movrek simulate --live: 25 sessions/s through the gateway for at most 700 s");
    let scored = evaluator
        .wait_scored(RELEASE, "stable", Duration::from_secs(150))
        .await;
    env.timeline.mark(&format!(
        "the evaluator scores stable's lists ({scored} so far)"
    ));
    env.apply_version("v2-random", QUALITY_CANARY);
    let rr = env
        .wait_phase(Phase::RolledBack, Duration::from_secs(300))
        .await;
    let status = rr.status.expect("status");
    assert_eq!(status.failed_checks, 0, "no guardrail failed");
    let analysis = status.last_analysis.clone().expect("lastAnalysis");
    env.timeline
        .mark(&format!("deciding check: {}", analysis.message));
    let comparison = analysis.comparison.clone().expect("compared");
    assert_eq!(comparison.verdict, Verdict::Fail, "{}", analysis.message);
    let finding = |metric: Metric| {
        comparison
            .metrics
            .iter()
            .find(|m| m.metric == metric)
            .map(|m| m.finding)
    };
    assert!(
        [Metric::Score, Metric::Hits]
            .iter()
            .any(|&m| finding(m) == Some(Finding::Regression)),
        "rolled back on quality: {}",
        analysis.message
    );
    for m in [Metric::Errors, Metric::SlowRequests] {
        assert_ne!(
            finding(m),
            Some(Finding::Regression),
            "{}",
            analysis.message
        );
    }
    let score = comparison
        .metrics
        .iter()
        .find(|m| m.metric == Metric::Score)
        .expect("score compared");
    assert!(
        score.canary.is_some() && score.stable.is_some(),
        "the evaluator's figures reached the judge for both tracks: {score:?}"
    );
    let entry = status.history.first().expect("history entry");
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v2-random", Outcome::RolledBack)
    );
    identical_canary_waits_out_an_evaluator_outage(&env, &mut evaluator).await;
    // A broker started here keeps its pid file under the cluster's temp dir, which `finish`
    // removes: stop it first (with the processes that use it).
    drop((users, evaluator, bus));
    env.finish().await;
}

/// Second half of scenario 16: an identical canary (A/A); the evaluator is killed once the
/// canary is compared, and the canary is not promoted while the evaluator is silent, however
/// good the frozen figures look; restarted (same consumer group and state topic), it resumes
/// and the canary is promoted with score and hits shown no worse.
async fn identical_canary_waits_out_an_evaluator_outage(env: &Env, evaluator: &mut bus::Evaluator) {
    let check_time = |rr: &RecommenderRelease| {
        rr.status
            .as_ref()
            .and_then(|s| s.last_analysis.as_ref())
            .map(|a| a.time.clone())
    };
    let before = env
        .releases()
        .get(RELEASE)
        .await
        .ok()
        .and_then(|rr| check_time(&rr));
    // Quality judged with a tolerance an e2e run can show in a minute or two (score ≥ 0.8 ×
    // stable's; the default 0.05 needs thousands of scored lists).
    let canary = QUALITY_CANARY.replace("score: { tolerance: 0.05 }", "score: { tolerance: 0.2 }");
    assert_ne!(canary, QUALITY_CANARY);
    env.apply_version("v3", &canary);
    env.wait_for(
        "the first compared check of v3",
        Duration::from_secs(60),
        |rr| {
            check_time(rr) != before
                && rr.status.as_ref().is_some_and(|s| {
                    s.canary.as_ref().is_some_and(|t| t.version == "v3")
                        && s.last_analysis
                            .as_ref()
                            .is_some_and(|a| a.comparison.is_some())
                })
        },
    )
    .await;
    evaluator.kill();
    let down_at = env.timeline.now();
    env.timeline.mark("movrek evaluate killed (by pid)");
    let analysis = env
        .wait_inconclusive_check(
            "a check says the evaluator is silent",
            "online evaluator reports nothing",
            Duration::from_secs(30),
        )
        .await;
    env.timeline
        .mark(&format!("while down: {}", analysis.message));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        !env.promoted_since(down_at),
        "promoted while the evaluator was down"
    );
    evaluator.resume().await;
    env.timeline
        .mark("movrek evaluate started again (same group, state topic and port)");
    let rr = env.wait_promoted("v3", Duration::from_secs(300)).await;
    let entry = rr
        .status
        .and_then(|s| s.history.into_iter().next())
        .expect("history entry");
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v3", Outcome::Promoted)
    );
    let passed = entry.last_analysis.expect("the deciding check");
    let comparison = passed.comparison.expect("compared");
    assert_eq!(comparison.verdict, Verdict::Pass, "{}", passed.message);
    for m in [Metric::Score, Metric::Hits] {
        let result = comparison
            .metrics
            .iter()
            .find(|r| r.metric == m)
            .expect("quality compared");
        assert_eq!(result.finding, Finding::NoWorse, "{}", passed.message);
    }
    env.timeline
        .mark(&format!("v3 promoted: {}", passed.message));
}

/// Secret holding the model store's credentials (`AWS_*`), for the pods and the Job alike.
const STORE_SECRET: &str = "model-store";
/// Sessions of simulated users per retraining window: enough new ratings that a fifth of
/// them held out passes the data gate's `min_test_ratings` (50).
const WINDOW_SESSIONS: u64 = 1500;
/// Malformed lines of the corrupted burst (scenario 18): all of the second window, and
/// under 5 % of the third (which reads them again, after thousands of good lines).
const CORRUPTED_LINES: usize = 40;

/// What scenario 18 runs on besides the [`Env`]: the store (v1 published there), the broker
/// and the events topic, and the receiver of `movrek retrain`'s notifications (the release's
/// own webhook only hears of rollouts).
struct Retraining {
    s3: s3::S3,
    prefix: String,
    bus: bus::Bus,
    topic: String,
    hook: Webhook,
}

/// One retraining Job run to its end: its final condition, the exit code of each of its
/// pods, and the notifications those runs sent.
struct JobRun {
    outcome: String,
    exit_codes: Vec<i32>,
    notifications: Vec<serde_json::Value>,
    logs: String,
}

impl Retraining {
    /// Publishes v1 to a fresh store prefix, puts the store's credentials in a Secret the
    /// release and the Job both name, creates the events topic, and switches the chart's
    /// retraining `CronJob` on for the release (`helm upgrade`), with `--data` for the first
    /// run (v1 was not trained by `movrek retrain`, so its data set is not in the store).
    async fn set_up(env: &mut Env) -> Self {
        let s3 = s3::S3::start(&cluster::repo_root(), &env.work.join("s3"));
        let prefix = s3.fresh_prefix("e2e-s18");
        // v1, and so every candidate (trained with its parent's parameters), learns EASE^R
        // from every rating. With the default's liked ratings the ranking gate refuses the
        // first candidate on this window (−0.042 NDCG@10), though by the simulated users'
        // hidden taste it is as good as v1: the held-out ratings are of movies v1 itself
        // showed, which favours v1 (BENCHMARKS.md, "The retraining gate and exposure
        // bias"; another window refuses every-rating candidates the same way). On this
        // window the every-rating candidate's gate verdict and the hidden taste agree, and
        // this scenario is about the loop, not about that bias.
        let every_rating = models::train_one(
            &env.work,
            &env.work.join("data"),
            "v1",
            Some(r#"{"ease_min_rating": 0, "ease_min_rating_candidates": []}"#),
        );
        let v1 = retrain::publish(&every_rating, &s3, &prefix, RELEASE);
        env.timeline
            .mark(&format!("movrek publish v1 → {}", v1.uri));
        env.models.insert("v1".to_owned(), v1);
        let mut secret = vec![
            "-n",
            env.namespace,
            "create",
            "secret",
            "generic",
            STORE_SECRET,
        ];
        let literals: Vec<String> = s3
            .env
            .iter()
            .map(|(k, v)| format!("--from-literal={k}={v}"))
            .collect();
        secret.extend(literals.iter().map(String::as_str));
        env.cluster.kubectl_ok(&secret);
        env.model_credentials = Some(STORE_SECRET.to_owned());
        let bus = bus::Bus::start(&env.work);
        let topic = format!("events-s18-{}", std::process::id());
        bus.create_topic(&topic);
        let hook = Webhook::start().await;
        let data = format!("{{--data={}}}", env.work.join("data").display());
        env.cluster.helm_upgrade(&[
            ("retrain.enabled", "true"),
            ("retrain.release", RELEASE),
            ("retrain.store", prefix.as_str()),
            ("kafka.brokers", bus.bootstrap.as_str()),
            ("kafka.topics.events", topic.as_str()),
            ("retrain.webhookUrl", hook.url.as_str()),
            ("retrain.credentialsSecret", STORE_SECRET),
            ("retrain.extraArgs", data.as_str()),
        ]);
        env.timeline.mark(&format!(
            "helm upgrade: retraining CronJob on for {RELEASE} (store {prefix}, events kafka://{}/{topic})",
            bus.bootstrap
        ));
        Self {
            s3,
            prefix,
            bus,
            topic,
            hook,
        }
    }

    /// Simulated users (seed `seed`) go through the gateway, their actions to the events topic.
    async fn traffic_to_events(&self, env: &Env, seed: u64) -> u64 {
        let sink = format!("kafka://{}/{}", self.bus.bootstrap, self.topic);
        let router = env.router_url();
        let users = retrain::Users {
            target: &router,
            host: HOST,
            data: &env.work.join("data"),
            sink: &sink,
        };
        let summary = retrain::simulate(&users, WINDOW_SESSIONS, seed, &env.work).await;
        let tally = &summary["tally"];
        let lines = tally["lines"].as_u64().expect("tally.lines");
        env.timeline.mark(&format!(
            "movrek simulate (seed {seed}): {} requests through the gateway, {} ratings, {lines} lines to Kafka",
            tally["requests"], tally["ratings"]
        ));
        lines
    }

    /// Creates Job `name` from the chart's `CronJob` (with `extra` arguments) and waits for
    /// it to end; the stand-in runs its pods.
    async fn run_job(&self, env: &Env, name: &str, extra: &[String]) -> JobRun {
        let before = self.hook.bodies().len();
        let client = &env.cluster.client;
        retrain::create_job(client, env.namespace, name, extra).await;
        env.timeline.mark(&format!(
            "Job {name} created from cronjob/{}",
            retrain::CRONJOB
        ));
        let job = retrain::wait_job(client, env.namespace, name, Duration::from_secs(180)).await;
        let outcome = retrain::job_outcome(&job).expect("finished");
        let runs: Vec<jobs::JobPodRun> = env
            .data()
            .stats()
            .jobs
            .into_iter()
            .filter(|r| r.pod.starts_with(&format!("{name}-")))
            .collect();
        let logs = runs
            .iter()
            .map(|r| format!("--- {}:\n{}", r.pod, env.data().pod_log(&r.pod)))
            .collect::<Vec<_>>()
            .join("\n");
        let notifications = self.hook.bodies()[before..].to_vec();
        env.timeline.mark(&format!(
            "Job {name} {outcome}: pods exited {:?}, {} notifications",
            runs.iter().map(|r| r.exit_code).collect::<Vec<_>>(),
            notifications.len()
        ));
        JobRun {
            outcome,
            exit_codes: runs.iter().map(|r| r.exit_code).collect(),
            notifications,
            logs,
        }
    }

    /// The versions published under the release, and the files of each.
    async fn published(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for version in self
            .s3
            .children(&format!("{}/{RELEASE}", self.prefix))
            .await
        {
            let files = self
                .s3
                .children(&format!("{}/{RELEASE}/{version}", self.prefix))
                .await;
            out.push((version, files));
        }
        out
    }
}

/// Scenario 18 (issue 12), the retraining loop end to end on the local control plane: v1
/// is served from the S3-compatible store (moto) with the credentials the release names;
/// simulated users go through the release's route and their watches and ratings reach Kafka;
/// a Job made from the chart's retraining `CronJob` — run by the data-plane stand-in as a
/// kubelet would, with the Job's `ServiceAccount` and the real Job controller — trains v2,
/// publishes it, and hands it to the release by server-side apply; the operator canaries it
/// from the store and promotes it, and the history carries its provenance. A second Job,
/// whose window is a burst of malformed lines, is refused by the data gate; a third, whose
/// model is made worse on purpose, by the ranking gate. Every run notifies; no refused run
/// touches the release or the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s18_retraining_job_trains_publishes_and_is_canaried() {
    let mut env = Env::start_in("s18", &["v1"], cluster::OPERATOR_NAMESPACE).await;
    let retraining = Retraining::set_up(&mut env).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(300));
    let v2 = retraining_publishes_v2_and_the_operator_promotes_it(&env, &retraining).await;
    corrupted_events_are_refused_by_the_data_gate(&env, &retraining, &v2).await;
    a_worse_model_is_refused_by_the_ranking_gate(&env, &retraining, &v2).await;
    let samples = env.samples();
    let all = Mix::of(&samples, Duration::ZERO, env.timeline.now());
    env.timeline
        .mark(&format!("paced traffic over the scenario: {all}"));
    assert_eq!(
        all.failed,
        0,
        "no request failed through the gateway: {all}\n{}",
        traffic::failures(&samples)
    );
    // The store and a broker started here keep their pid files under the cluster's temp
    // dir, which `finish` removes: stop them first.
    drop(retraining);
    env.finish().await;
}

/// First run: the Job trains v2 from the window, publishes it and applies `spec.model`; the
/// operator canaries and promotes it. Returns v2's version name.
async fn retraining_publishes_v2_and_the_operator_promotes_it(
    env: &Env,
    retraining: &Retraining,
) -> String {
    let lines = retraining.traffic_to_events(env, 1).await;
    let run = retraining.run_job(env, "retrain-1", &[]).await;
    let (v2, candidate_ndcg) = assert_published(&run, lines);
    env.timeline.mark(&format!(
        "retrain published {v2}: {}",
        run.notifications[0]["text"]
    ));
    let sha256 = assert_handed_off(env, retraining, &v2).await;
    assert_store_holds(retraining, &v2, &sha256).await;
    let promoted = env.wait_promoted(&v2, Duration::from_secs(120)).await;
    let entry = promoted
        .status
        .and_then(|s| s.history.into_iter().next())
        .expect("a history entry");
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        (v2.as_str(), Outcome::Promoted)
    );
    let provenance = entry.provenance.expect("v2's provenance in status.history");
    assert_provenance(&provenance, retraining, lines, candidate_ndcg);
    env.timeline.mark(&format!(
        "{v2} promoted; history provenance: parent v1, data {}",
        provenance.data_digest.unwrap_or_default()
    ));
    env.wait_serving(&v2, Duration::from_secs(30)).await;
    v2
}

/// The first run published: its pod exited 0, the Job completed, and its one notification
/// names v2, its parent v1 and the window's figures (every line the users wrote read once).
/// Returns v2's name and its NDCG@10 on the held-out ratings.
fn assert_published(run: &JobRun, lines: u64) -> (String, f64) {
    assert_eq!(
        (run.outcome.as_str(), run.exit_codes.as_slice()),
        ("Complete", &[0][..]),
        "the first run publishes:\n{}",
        run.logs
    );
    assert_eq!(run.notifications.len(), 1, "{:?}", run.notifications);
    let note = &run.notifications[0]["movrek"];
    assert_eq!(
        (
            note["kind"].as_str(),
            note["outcome"].as_str(),
            note["parent"].as_str()
        ),
        (Some("retrain"), Some("published"), Some("v1")),
        "{note}"
    );
    let events = &note["figures"]["events"];
    assert_eq!(
        events["lines"].as_u64(),
        Some(lines),
        "every line read once: {events}"
    );
    assert_eq!(events["malformed"].as_u64(), Some(0), "{events}");
    assert!(events["test_ratings"].as_u64() >= Some(50), "{events}");
    let version = note["version"].as_str().expect("version").to_owned();
    let ndcg = note["figures"]["gates"]["candidate_ndcg"]
        .as_f64()
        .expect("gates.candidate_ndcg");
    (version, ndcg)
}

/// The release's `spec.model` names v2 where the store holds it, applied by field manager
/// `movrek-retrain`. Returns the artifact digest it names.
async fn assert_handed_off(env: &Env, retraining: &Retraining, v2: &str) -> String {
    let rr = env.releases().get(RELEASE).await.expect("get release");
    let model = &rr.spec.model;
    assert_eq!(model.version, v2, "spec.model.version handed off");
    let expected_uri = format!("{}/{RELEASE}/{v2}/model.movrek", retraining.prefix);
    assert_eq!(model.uri, expected_uri);
    assert!(
        rr.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some("movrek-retrain")
                && m.operation.as_deref() == Some("Apply")
                && m.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0.pointer("/f:spec/f:model/f:version").is_some())
        }),
        "spec.model.version is owned by field manager movrek-retrain: {:?}",
        rr.managed_fields()
    );
    model.sha256.clone()
}

/// v2's provenance in the history: its parent, the topic and offsets it read (exactly the
/// window's lines), its data digest and offline NDCG.
fn assert_provenance(
    provenance: &movrek_operator::crd::ModelProvenance,
    retraining: &Retraining,
    lines: u64,
    candidate_ndcg: f64,
) {
    assert_eq!(provenance.parent_version.as_deref(), Some("v1"));
    let range = provenance.event_range.as_ref().expect("eventRange");
    assert_eq!(
        range.source,
        format!("kafka://{}/{}", retraining.bus.bootstrap, retraining.topic)
    );
    let read: i64 = range
        .offsets
        .as_deref()
        .expect("offsets")
        .split(',')
        .map(|p| {
            let (from, to) = p
                .split_once(':')
                .and_then(|(_, r)| r.split_once('-'))
                .expect("P:FROM-TO");
            to.parse::<i64>().expect("TO") - from.parse::<i64>().expect("FROM")
        })
        .sum();
    assert_eq!(
        read, lines as i64,
        "the offsets cover the window: {range:?}"
    );
    let digest = provenance.data_digest.as_deref().unwrap_or_default();
    assert_eq!(digest.len(), 64, "dataDigest {digest:?}");
    assert_eq!(
        provenance.offline_ndcg10,
        Some((candidate_ndcg * 10_000.0).round() / 10_000.0)
    );
}

/// v2's files are in the store beside v1, and its record names the artifact's digest.
async fn assert_store_holds(retraining: &Retraining, v2: &str, sha256: &str) {
    let published = retraining.published().await;
    let files: Vec<String> = [
        "dataset.json",
        "fairness.json",
        "model.json",
        "model.movrek",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut expected = vec![
        (
            "v1".to_owned(),
            vec!["model.json".to_owned(), "model.movrek".to_owned()],
        ),
        (v2.to_owned(), files),
    ];
    expected.sort();
    assert_eq!(
        published, expected,
        "what the store holds under {}/{RELEASE}",
        retraining.prefix
    );
    let uri = format!("{}/{RELEASE}/{v2}/model.json", retraining.prefix);
    let record: serde_json::Value =
        serde_json::from_slice(&retraining.s3.read(&uri).await).expect("model.json is JSON");
    assert_eq!(record["version"], v2, "{record}");
    assert_eq!(record["sha256"], sha256, "{record}");
    assert_eq!(record["offline"]["parent"], "v1", "{record}");
}

/// The release and the store are as the first run left them.
async fn assert_unchanged(env: &Env, retraining: &Retraining, v2: &str) {
    let rr = env.releases().get(RELEASE).await.expect("get release");
    let status = rr.status.expect("status");
    assert_eq!(rr.spec.model.version, v2, "spec.model unchanged");
    assert!(
        matches!(status.phase, Phase::Succeeded | Phase::Stable),
        "no rollout started: phase {:?}",
        status.phase
    );
    assert_eq!(status.stable.map(|s| s.version), Some(v2.to_owned()));
    assert_eq!(
        status
            .history
            .first()
            .map(|h| (h.version.as_str(), h.outcome)),
        Some((v2, Outcome::Promoted)),
        "no rollout since v2's in the history"
    );
    let versions: Vec<String> = retraining
        .published()
        .await
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    let mut expected = vec!["v1".to_owned(), v2.to_owned()];
    expected.sort();
    assert_eq!(versions, expected, "nothing published");
}

/// The refused run of a Job: its pod exited 3 (refused), the Job failed at once (the chart's
/// `podFailurePolicy` does not retry a refusal, whatever `backoffLimit` allows), and the run
/// said why in one notification.
fn assert_refused(run: &JobRun, backoff_limit: i32) {
    assert_eq!(
        run.outcome, "Failed",
        "a refusal fails the Job:\n{}",
        run.logs
    );
    assert_eq!(
        run.exit_codes,
        [3],
        "one run, exit 3 (refused), not retried (backoffLimit {backoff_limit}):\n{}",
        run.logs
    );
    assert_eq!(
        run.notifications.len(),
        1,
        "one notification: {:?}",
        run.notifications
    );
}

/// The chart's `backoffLimit` for retraining Jobs.
async fn chart_backoff_limit(env: &Env) -> i32 {
    let cronjob = Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(
        env.cluster.client.clone(),
        env.namespace,
    )
    .get(retrain::CRONJOB)
    .await
    .expect("the retraining CronJob");
    cronjob
        .spec
        .and_then(|s| s.job_template.spec)
        .and_then(|s| s.backoff_limit)
        .unwrap_or(6)
}

/// Second run: the window is a burst of malformed lines; the data gate refuses it.
async fn corrupted_events_are_refused_by_the_data_gate(
    env: &Env,
    retraining: &Retraining,
    v2: &str,
) {
    let burst: Vec<String> = (0..CORRUPTED_LINES)
        .map(|i| match i % 3 {
            0 => format!("corrupted record {i} \u{fffd}\u{fffd}"),
            1 => format!("2026-12-04T10:{:02}:00,{i},GET /rate/", i % 60),
            _ => format!("{i},GET /data/m/"),
        })
        .collect();
    retraining.bus.produce(&retraining.topic, &burst);
    env.timeline.mark(&format!(
        "{CORRUPTED_LINES} malformed lines produced to the events topic"
    ));
    let backoff_limit = chart_backoff_limit(env).await;
    let run = retraining.run_job(env, "retrain-2", &[]).await;
    assert_refused(&run, backoff_limit);
    for body in &run.notifications {
        let note = &body["movrek"];
        assert_eq!(
            (note["outcome"].as_str(), note["parent"].as_str()),
            (Some("data-refused"), Some(v2)),
            "{body}"
        );
        let events = &note["figures"]["events"];
        let corrupted = CORRUPTED_LINES as u64;
        assert_eq!(
            (events["lines"].as_u64(), events["malformed"].as_u64()),
            (Some(corrupted), Some(corrupted)),
            "{events}"
        );
        let text = body["text"].as_str().unwrap_or_default();
        assert!(text.contains("malformed lines 100.00 % > 5.00 %"), "{text}");
    }
    env.timeline
        .mark(&format!("refused: {}", run.notifications[0]["text"]));
    assert_unchanged(env, retraining, v2).await;
}

/// Third run: good traffic again (the burst is now under 5 % of the window), but training
/// parameters that send every user down the cold-start path (a popularity list by
/// demographic instead of a personal ranking); the ranking gate refuses the candidate.
async fn a_worse_model_is_refused_by_the_ranking_gate(
    env: &Env,
    retraining: &Retraining,
    v2: &str,
) {
    let lines = retraining.traffic_to_events(env, 3).await;
    let corrupted = CORRUPTED_LINES as u64;
    assert!(
        corrupted * 20 < lines + corrupted,
        "the burst is under 5 % of the window"
    );
    let params = env.work.join("worse-params.json");
    std::fs::write(&params, r#"{"cold_start_min_ratings": 1000000}"#).expect("write params");
    let backoff_limit = chart_backoff_limit(env).await;
    let extra = [format!("--params={}", params.display())];
    let run = retraining.run_job(env, "retrain-3", &extra).await;
    assert_refused(&run, backoff_limit);
    for body in &run.notifications {
        let note = &body["movrek"];
        assert_eq!(
            (note["outcome"].as_str(), note["parent"].as_str()),
            (Some("model-refused"), Some(v2)),
            "{body}"
        );
        let text = body["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("NDCG") && text.contains("worse than stable"),
            "refused by the ranking gate: {text}"
        );
        let gates = &note["figures"]["gates"];
        let (candidate, stable) = (
            gates["candidate_ndcg"].as_f64(),
            gates["stable_ndcg"].as_f64(),
        );
        assert!(
            candidate.zip(stable).is_some_and(|(c, s)| c + 0.02 < s),
            "NDCG@10 below stable's by more than the tolerance: {gates}"
        );
    }
    env.timeline
        .mark(&format!("refused: {}", run.notifications[0]["text"]));
    assert_unchanged(env, retraining, v2).await;
}

/// Polls the release's `HTTPRoute` every 20 ms until its canary backend has `weight`; returns
/// when that was seen (since the timeline's epoch): the operator's route write, as read back
/// from the API server (at most 20 ms plus one GET after it).
async fn route_written(env: &Env, weight: i32, limit: Duration) -> Duration {
    use movrek_operator::router::{http_route_resource, live::http_route_canary_weight};
    let routes: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.cluster.client.clone(),
        env.namespace,
        &http_route_resource(),
    );
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(route)) = routes.get_opt(RELEASE).await
            && http_route_canary_weight(&route) == Some(weight)
        {
            let at = env.timeline.now();
            env.timeline.mark(&format!(
                "HTTPRoute {RELEASE}: canary weight {weight} written"
            ));
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "HTTPRoute {RELEASE} never got canary weight {weight} in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` GETs of `/recommend/{user}` on `base` with `Host: HOST`, `concurrency` at a time over
/// kept-alive connections, bounded by `limit`: (answers per `X-Model-Version`, failures,
/// each request's latency).
async fn burst(
    base: &str,
    n: usize,
    concurrency: usize,
    limit: Duration,
) -> (HashMap<String, u64>, u64, Vec<Duration>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + limit;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, next, base) = (http.clone(), next.clone(), base.to_owned());
            tokio::spawn(async move {
                let (mut versions, mut failed, mut times) = (HashMap::new(), 0u64, Vec::new());
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n || Instant::now() >= deadline {
                        break;
                    }
                    let started = Instant::now();
                    let answer = http
                        .get(format!("{base}/recommend/{}", i % 300 + 1))
                        .header("Host", HOST)
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status().is_success() => {
                            let v = r
                                .headers()
                                .get("x-model-version")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("?")
                                .to_owned();
                            if r.bytes().await.is_ok() {
                                times.push(started.elapsed());
                                *versions.entry(v).or_insert(0u64) += 1;
                            } else {
                                failed += 1;
                            }
                        }
                        _ => failed += 1,
                    }
                }
                (versions, failed, times)
            })
        })
        .collect();
    let (mut versions, mut failed, mut times) = (HashMap::new(), 0, Vec::new());
    for t in tasks {
        let (v, f, d) = t.await.expect("burst task");
        for (k, c) in v {
            *versions.entry(k).or_insert(0) += c;
        }
        failed += f;
        times.extend(d);
    }
    times.sort_unstable();
    (versions, failed, times)
}

/// The `q` quantile (nearest rank) of sorted `times`, in milliseconds.
fn quantile_ms(times: &[Duration], q: f64) -> f64 {
    assert!(!times.is_empty(), "no samples");
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within the slice"
    )]
    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
    times[rank - 1].as_secs_f64() * 1e3
}

/// Wilson score interval (Wilson 1927, "Probable inference, the law of succession, and
/// statistical inference", JASA 22) for `k` successes in `n` trials at z = 1.96 (95 %).
#[allow(clippy::cast_precision_loss, reason = "request counts")]
fn wilson95(k: u64, n: u64) -> (f64, f64) {
    let (k, n, z) = (k as f64, n as f64, 1.96_f64);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (centre - half, centre + half)
}

/// Prints the gateway's added latency: p50/p99 of 2,000 sequential requests through Traefik
/// and straight to a stable pod (same client, kept-alive connections).
async fn added_latency(env: &Env, gateway: &str) {
    let pod = env
        .data()
        .pod_urls("stable")
        .into_iter()
        .next()
        .expect("a ready stable pod");
    let (_, f1, through) = burst(gateway, 2000, 1, Duration::from_secs(120)).await;
    let (_, f2, direct) = burst(&pod, 2000, 1, Duration::from_secs(120)).await;
    assert_eq!((f1, f2), (0, 0), "requests failed in the latency runs");
    env.timeline.mark(&format!(
        "FIGURE gateway: latency of {} sequential requests through Traefik p50 {:.2} ms p99 {:.2} ms; \
         straight to pod {pod}: {} requests p50 {:.2} ms p99 {:.2} ms; added p50 {:.2} ms p99 {:.2} ms",
        through.len(),
        quantile_ms(&through, 0.5),
        quantile_ms(&through, 0.99),
        direct.len(),
        quantile_ms(&direct, 0.5),
        quantile_ms(&direct, 0.99),
        quantile_ms(&through, 0.5) - quantile_ms(&direct, 0.5),
        quantile_ms(&through, 0.99) - quantile_ms(&direct, 0.99),
    ));
}

/// Scenario 19 (issue 11, the figures of BENCHMARKS.md "Through the real gateway"): Traefik
/// serving the operator's weighted `HTTPRoute` during a canary at 20 %. Prints FIGURE lines:
/// the split over 6,000 requests with its 95 % Wilson interval; p50/p99 of 2,000 sequential
/// requests through the gateway and straight to a stable pod; the time from the operator's
/// route write (weight 20, then 0 on an abort) to the new split at the gateway; failed
/// requests during a promotion and a rollback under paced traffic. Asserts what must hold
/// whatever the machine's speed: the interval contains 20 %, no request failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: run hack/e2e.sh"]
async fn s19_gateway_split_latency_and_route_propagation() {
    let mut env = Env::start("s19", &["v1", "v2", "v3"]).await;
    env.deploy_stable("v1").await;
    env.start_traffic(Duration::from_secs(400));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Route write (weight 20) → first canary answer at the gateway.
    env.apply_version("v2", MANUAL_CANARY);
    let written = route_written(&env, 20, Duration::from_secs(60)).await;
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    env.wait_serving_share("v2").await;
    let first_v2 = env
        .samples()
        .iter()
        .filter(|s| s.version.as_deref() == Some("v2"))
        .map(|s| s.at)
        .min()
        .expect("a v2 answer");
    env.timeline.mark(&format!(
        "FIGURE gateway: HTTPRoute weight 20 written → first canary answer through Traefik in {:.2}s \
         (paced traffic 80 req/s, fresh connection each)",
        first_v2.saturating_sub(written).as_secs_f64()
    ));

    // The split over 6,000 requests, 8 at a time.
    let gateway = env.router_url();
    let (versions, failed, _) = burst(&gateway, 6000, 8, Duration::from_secs(180)).await;
    let canary = versions.get("v2").copied().unwrap_or(0);
    let n: u64 = versions.values().sum();
    let (lo, hi) = wilson95(canary, n);
    #[allow(clippy::cast_precision_loss, reason = "request counts")]
    let share = canary as f64 / n as f64;
    env.timeline.mark(&format!(
        "FIGURE gateway: split at weight 20 over {n} requests: canary {canary} = {:.2}% \
         (95% Wilson interval {:.2}–{:.2}%), {failed} failed",
        share * 100.0,
        lo * 100.0,
        hi * 100.0
    ));
    assert!(n >= 5000, "{n} answers: the burst ran out of time");
    assert_eq!(failed, 0, "requests failed through the gateway");
    assert!(
        lo <= 0.20 && 0.20 <= hi,
        "the 95% interval {lo:.4}–{hi:.4} misses the configured 20%"
    );

    added_latency(&env, &gateway).await;

    // Promotion under paced traffic.
    let promote_from = env.timeline.now();
    env.annotate("promote");
    env.wait_outcome(Phase::Succeeded, "v2", Duration::from_secs(90))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Mix::of(&env.samples(), promote_from, env.timeline.now());
    env.timeline.mark(&format!(
        "FIGURE gateway: promotion under paced traffic: {} answers, {} failed",
        window.total_ok(),
        window.failed
    ));
    env.assert_no_failed_requests();

    // Rollback: a canary v3, aborted; route write (weight 0) → last canary answer.
    env.apply_version("v3", MANUAL_CANARY);
    route_written(&env, 20, Duration::from_secs(60)).await;
    env.wait_phase(Phase::Soaking, Duration::from_secs(60))
        .await;
    env.wait_serving_share("v3").await;
    let abort_from = env.timeline.now();
    env.annotate("abort");
    let zeroed = route_written(&env, 0, Duration::from_secs(60)).await;
    env.wait_outcome(Phase::RolledBack, "v2", Duration::from_secs(90))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let samples = env.samples();
    let last_v3 = samples
        .iter()
        .filter(|s| s.version.as_deref() == Some("v3"))
        .map(|s| s.at)
        .max()
        .expect("v3 answers");
    env.timeline.mark(&format!(
        "FIGURE gateway: HTTPRoute weight 0 written → last canary answer through Traefik {:.2}s later",
        last_v3.saturating_sub(zeroed).as_secs_f64()
    ));
    let window = Mix::of(&samples, abort_from, env.timeline.now());
    env.timeline.mark(&format!(
        "FIGURE gateway: rollback under paced traffic: {} answers, {} failed",
        window.total_ok(),
        window.failed
    ));
    env.assert_no_failed_requests();
    env.finish().await;
}
