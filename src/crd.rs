//! The `RecommenderRelease` custom resource (`movrek.dev/v1alpha1`): spec, status and the
//! schema rules the API server enforces (bounds and CEL `x-kubernetes-validations`).
//!
//! Every field name here is binding (see `DESIGN.md`). Durations are Go-style strings
//! (`12h`, `1m30s`, `500ms`); [`DurationString::parse`] reads them, and the schema rejects
//! malformed or non-positive ones before they reach the operator.

use std::{borrow::Cow, fmt, time::Duration};

use k8s_openapi::{
    api::core::v1::ResourceRequirements,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::analysis::compare::{Metric, Report, StepCounts};
use crate::analysis::sequential::Finding;
use crate::analysis::{Analysis, Verdict};

/// API group of every movrek resource.
pub const GROUP: &str = "movrek.dev";
/// Annotation a person sets to override the operator: `promote`, `abort` or `retry`.
pub const ACTION_ANNOTATION: &str = "movrek.dev/action";
/// Maximum number of rollouts kept in `status.history`.
pub const HISTORY_LIMIT: usize = 10;

/// Desired state of one recommender: the inference image, the model it serves, and how a
/// new model is rolled out.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "movrek.dev",
    version = "v1alpha1",
    kind = "RecommenderRelease",
    plural = "recommenderreleases",
    shortname = "rr",
    namespaced,
    status = "RecommenderReleaseStatus",
    derive = "PartialEq",
    doc = "A movie-recommendation model served on Kubernetes and changed by canary rollouts",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Stable","type":"string","jsonPath":".status.stable.version"}"#,
    printcolumn = r#"{"name":"Canary","type":"string","jsonPath":".status.canary.version"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"Expected","type":"string","jsonPath":".status.rollout.expectedPass","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(cel)]
#[serde(rename_all = "camelCase")]
pub struct RecommenderReleaseSpec {
    /// The inference server image (`movrek serve`).
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.image is required"))]
    #[schemars(length(max = 512))]
    pub image: String,
    /// The model artifact to serve; changing it (or the image) starts a rollout.
    pub model: ModelSpec,
    /// Replicas of the stable Deployment.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// Container port of the inference server.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Compute resources passed to every inference pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// How traffic is split between the stable and canary tracks.
    #[serde(default)]
    // No schema default: the default provider (gateway-api) needs `parentRefs`, so a default
    // object would fail the CEL rule and the API server would refuse the CRD itself.
    #[schemars(transform = without_default)]
    pub traffic: TrafficSpec,
    /// Canary rollout and analysis settings.
    #[serde(default)]
    pub canary: CanarySpec,
    /// Where promotions, rollbacks and rejections are announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,
    /// A `HorizontalPodAutoscaler` owns the stable replicas (and optionally the canary's);
    /// `replicas` is then only the starting point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Seconds a terminating inference pod keeps serving before it is sent SIGTERM (a
    /// `preStop` `sleep`), so endpoints and routers stop sending it requests first; 0 turns
    /// the drain off.
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 120))]
    pub drain_seconds: i32,
    /// Publish every answered recommendation list to Kafka (the evaluator's impressions,
    /// docs/events.md): both tracks' pods get the brokers and the topic. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impressions: Option<ImpressionsSpec>,
}

/// Where the inference pods publish impressions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(cel)]
#[serde(rename_all = "camelCase")]
pub struct ImpressionsSpec {
    /// Bootstrap brokers, `host:port[,host:port…]` (`MOVREK_KAFKA_BROKERS`).
    #[x_kube(validation = Rule::new("self.matches('^[^,:\\\\s]+:[0-9]+(,[^,:\\\\s]+:[0-9]+)*$')")
        .message("spec.impressions.brokers must be host:port[,host:port...]"))]
    pub brokers: String,
    /// Topic (`MOVREK_IMPRESSIONS_TOPIC`).
    #[serde(default = "default_impressions_topic")]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9._-]{1,249}$')")
        .message("spec.impressions.topic must be a Kafka topic name"))]
    pub topic: String,
}

fn default_impressions_topic() -> String {
    "impressions".to_owned()
}

fn default_drain_seconds() -> i32 {
    5
}

/// Autoscaling of the inference Deployments by `HorizontalPodAutoscalers` the operator
/// applies (`<name>-stable`, and `<name>-canary` when `canary` is set).
///
/// # Caveats
/// The operator stops setting `spec.replicas` of an autoscaled Deployment. Server-side apply
/// then drops the field the operator used to own, so switching an existing release to
/// autoscaling starts the stable Deployment from one pod until the HPA scales it up.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(cel)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("spec.autoscaling.minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Fewest stable pods.
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most stable pods.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU utilisation (percent of the request) the HPA aims for.
    #[serde(
        default = "default_target_cpu",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percent: i32,
    /// Give the canary its own HPA while a rollout runs (its floor is the canary's share of
    /// the observed stable pods); without it the canary is sized once from that share.
    #[serde(default)]
    pub canary: bool,
}

fn default_target_cpu() -> i32 {
    70
}

/// Drops the `default` keyword from a field's schema.
fn without_default(schema: &mut Schema) {
    schema.remove("default");
}

fn default_replicas() -> i32 {
    2
}

fn default_port() -> i32 {
    8082
}

/// One versioned model artifact.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(cel)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Model version, e.g. `v7`; a new version starts a rollout.
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.model.version is required"))]
    #[schemars(length(max = 63))]
    pub version: String,
    /// Where the pods read the artifact from: `s3://bucket/key`, `gs://bucket/key`,
    /// `az://container/key` (object storage; credentials from `credentialsSecret`),
    /// `http://`, `https://` or `file://`. `movrek publish` prints it.
    #[x_kube(validation = Rule::new("self.matches('^(https?|file|s3|gs|az)://.+')")
        .message("spec.model.uri must start with s3://, gs://, az://, http://, https:// or file://"))]
    #[schemars(length(max = 2048))]
    pub uri: String,
    /// SHA-256 of the artifact, 64 lowercase hex digits; the server refuses a mismatch.
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{64}$')")
        .message("spec.model.sha256 must be 64 lowercase hex digits"))]
    #[schemars(length(max = 64))]
    pub sha256: String,
    /// RMSE from the training report; gated by `canary.maxRmse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("spec.model.offlineRmse must be >= 0"))]
    pub offline_rmse: Option<f64>,
    /// Name of a Secret in the release's namespace whose keys become environment variables of
    /// every inference pod of the release (stable and canary), for the model store's
    /// credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`; `GOOGLE_SERVICE_ACCOUNT_KEY`; `AZURE_STORAGE_ACCOUNT_NAME`,
    /// `AZURE_STORAGE_ACCOUNT_KEY` … The pod contract's own `MOVREK_*` variables win over
    /// keys of the same name. Absent: the pods use their service account's workload
    /// identity, or nothing (public http(s), `file://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("spec.model.credentialsSecret must be a Secret name (lowercase DNS subdomain)"))]
    #[schemars(length(max = 253))]
    pub credentials_secret: Option<String>,
    /// Where the model came from: data digest, events consumed, parent version, offline and
    /// fairness figures. `movrek retrain` writes it with the version; the operator copies it
    /// into the release's `status.history` when the version's rollout ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ModelProvenance>,
}

/// A model's provenance, as `movrek retrain` records it in the version's `model.json`. Every
/// field is optional: a model trained by hand may say less.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelProvenance {
    /// SHA-256 of the training data set (`dataset.json` beside the artifact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub data_digest: Option<String>,
    /// URI of the training data set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub data_uri: Option<String>,
    /// The events added to the parent's data to make this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_range: Option<EventRange>,
    /// The version this one was trained from (the one stable served then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub parent_version: Option<String>,
    /// NDCG@10 on the held-out new ratings (`offlineRmse` is the RMSE on the same ratings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_ndcg10: Option<f64>,
    /// The same RMSE and NDCG@10 of the parent version on the same ratings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_rmse: Option<f64>,
    /// The parent's NDCG@10 on the same ratings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ndcg10: Option<f64>,
    /// Worst-to-best gap per demographic dimension and metric (the fairness gate's figures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub fairness_gaps: Vec<FairnessGap>,
}

/// The events a version consumed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EventRange {
    /// `kafka://brokers/topic`, or the event log files read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048))]
    pub source: String,
    /// Kafka offsets read, per partition: `PARTITION:FROM-TO` comma-separated, `TO`
    /// exclusive (e.g. `0:1200-1450,1:980-1210`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub offsets: Option<String>,
    /// Time of the earliest event read (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub first_event: Option<String>,
    /// Time of the latest event read (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub last_event: Option<String>,
}

/// One fairness gap of a model.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FairnessGap {
    /// `gender`, `age` or `occupation`.
    #[schemars(length(max = 32))]
    pub dimension: String,
    /// `rmse` or `ndcg`.
    #[schemars(length(max = 16))]
    pub metric: String,
    /// Worst group minus best group, in the metric's "worse" direction (>= 0).
    pub gap: f64,
    /// The gap's growth over the parent version's on the same ratings (> 0: less fair).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<f64>,
    /// The worst group's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub worst: Option<String>,
}

/// Traffic routing settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(cel)]
#[x_kube(validation = Rule::new(
    "self.provider != 'gateway-api' || (has(self.parentRefs) && size(self.parentRefs) > 0)"
).message("spec.traffic.parentRefs is required when provider is gateway-api"))]
#[serde(rename_all = "camelCase")]
pub struct TrafficSpec {
    /// Which router splits traffic.
    #[serde(default)]
    pub provider: TrafficProvider,
    /// Host name served by the Ingress (ingress-nginx) or `HTTPRoute` (gateway-api).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `ingressClassName` of the Ingresses (ingress-nginx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Gateways the `HTTPRoute` attaches to (gateway-api).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub parent_refs: Vec<ParentRef>,
}

/// The traffic router implementation.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TrafficProvider {
    /// Legacy (ingress-nginx is retired upstream since March 2026): primary Ingress plus a
    /// canary Ingress with `nginx.ingress.kubernetes.io/canary-weight`.
    IngressNginx,
    /// The default: one `HTTPRoute` with weighted `backendRefs`.
    #[default]
    GatewayApi,
    /// The shared Service; weight approximated by replica counts.
    Replicas,
}

/// A Gateway API parent reference.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Gateway name.
    pub name: String,
    /// Gateway namespace; the release's namespace when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Canary rollout and analysis settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(cel)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// Percent of traffic sent to the canary (used when `stepWeights` is empty).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
    /// Progressive weights, strictly increasing, each 1–100; the canary is judged at each
    /// step and promoted after the last one. Empty: one step at `weight`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(w, w >= 1 && w <= 100)")
        .message("spec.canary.stepWeights must each be between 1 and 100"))]
    #[x_kube(validation = Rule::new("self.isSorted() && self.all(w, self.indexOf(w) == self.lastIndexOf(w))")
        .message("spec.canary.stepWeights must be strictly increasing"))]
    pub step_weights: Vec<i32>,
    /// Wait after the canary gets traffic before the first check.
    #[serde(default = "default_soak")]
    pub soak_duration: DurationString,
    /// Time between two checks while analysing.
    #[serde(default = "default_interval")]
    pub interval: DurationString,
    /// Highest acceptable average latency of the canary (the original promotion rule).
    #[serde(default = "default_max_average_latency")]
    pub max_average_latency: DurationString,
    /// Highest acceptable p99 latency of the canary; not checked when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_latency: Option<DurationString>,
    /// Highest acceptable share of 5xx answers (0–1).
    #[serde(default = "default_max_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// Requests the canary must have served in the window for a verdict; fewer is
    /// inconclusive, never a pass.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 0))]
    pub min_requests: i64,
    /// Failed checks that trigger a rollback.
    #[serde(default = "default_failure_limit")]
    #[x_kube(validation = Rule::new("self >= 1").message("spec.canary.failureLimit must be at least 1"))]
    pub failure_limit: i32,
    /// Time the canary pods have to become ready (and the longest a step may stay
    /// inconclusive beyond `failureLimit × interval`).
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: DurationString,
    /// Container restarts of the canary pods that roll the canary back at once (a crash loop
    /// that Prometheus never sees).
    #[serde(default = "default_max_restarts")]
    #[schemars(range(min = 0))]
    pub max_restarts: i32,
    /// Refuse to start a canary whose `model.offlineRmse` is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.canary.maxRmse must be > 0"))]
    pub max_rmse: Option<f64>,
    /// Prometheus that scrapes the inference pods.
    #[serde(default)]
    pub prometheus: PrometheusSpec,
    /// Compare the canary with stable by anytime-valid sequential tests on errors, slow
    /// requests and online recommendation quality (see `analysis::sequential`). Absent: the
    /// canary is judged on the absolute limits above only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSpec>,
}

/// The canary-versus-stable judge. Every enabled metric must be shown no worse than stable
/// (by more than its tolerance) to pass; a regression on any of them rolls back at once. The
/// absolute limits (`maxAverageLatency`, `maxP99Latency`, `maxErrorRate`) stay guardrails.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(cel)]
#[serde(rename_all = "camelCase")]
pub struct JudgeSpec {
    /// Highest probability of rolling back a canary that is no worse than stable, over all
    /// metrics and however many checks run; also the level of each non-inferiority test.
    #[serde(default = "default_alpha")]
    #[x_kube(validation = Rule::new("self > 0.0 && self < 0.5").message("spec.canary.judge.alpha must be in (0, 0.5)"))]
    pub alpha: f64,
    /// A request slower than this is a slow request. Must be a bucket bound of the inference
    /// server's latency histogram (25ms, 50ms, 100ms, 250ms, 500ms, 1s, 2.5s, 5s, 10s…).
    #[serde(default = "default_slow_request")]
    pub slow_request: DurationString,
    /// 5xx answers per request.
    #[serde(default = "default_errors_metric")]
    pub errors: JudgeMetricSpec,
    /// Slow requests per request.
    #[serde(default = "default_slow_metric")]
    pub slow_requests: JudgeMetricSpec,
    /// Mean online score of a recommendation list, from `movrek evaluate`.
    #[serde(default = "default_score_metric")]
    pub score: JudgeMetricSpec,
    /// Share of scored lists with a hit, from `movrek evaluate`.
    #[serde(default = "default_hits_metric")]
    pub hits: JudgeMetricSpec,
    /// What a step that is still undecided at its deadline does: `Rollback` (the default) or
    /// `Promote` when every guardrail holds — an explicit choice to ship on missing evidence.
    #[serde(default)]
    pub on_inconclusive: InconclusiveAction,
}

/// One judged metric.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(cel)]
#[serde(rename_all = "camelCase")]
pub struct JudgeMetricSpec {
    /// Judge this metric.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Relative tolerance: the canary is no worse when its rate is at most `1 + tolerance`
    /// times stable's (errors, slow requests), or its mean at least `1 − tolerance` times
    /// stable's (score, hits).
    #[x_kube(validation = Rule::new("self >= 0.0 && self < 1.0").message("tolerance must be in [0, 1)"))]
    pub tolerance: f64,
    /// Errors and slow requests: a canary whose own rate is shown below this is no worse,
    /// whatever stable does (rare events never establish a ratio). Default: `maxErrorRate`
    /// for errors, 0.01 for slow requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self < 1.0").message("floor must be in (0, 1)"))]
    pub floor: Option<f64>,
}

/// What an undecided judge does at the step's deadline.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InconclusiveAction {
    /// Roll the canary back.
    #[default]
    Rollback,
    /// Promote (or advance the step) when every guardrail holds.
    Promote,
}

impl Default for JudgeSpec {
    fn default() -> Self {
        Self {
            alpha: default_alpha(),
            slow_request: default_slow_request(),
            errors: default_errors_metric(),
            slow_requests: default_slow_metric(),
            score: default_score_metric(),
            hits: default_hits_metric(),
            on_inconclusive: InconclusiveAction::default(),
        }
    }
}

fn default_alpha() -> f64 {
    0.05
}
fn default_slow_request() -> DurationString {
    DurationString::from("250ms")
}
fn default_true() -> bool {
    true
}
fn metric(tolerance: f64) -> JudgeMetricSpec {
    JudgeMetricSpec {
        enabled: true,
        tolerance,
        floor: None,
    }
}
fn default_errors_metric() -> JudgeMetricSpec {
    metric(0.5)
}
fn default_slow_metric() -> JudgeMetricSpec {
    JudgeMetricSpec {
        floor: Some(0.01),
        ..metric(0.25)
    }
}
fn default_score_metric() -> JudgeMetricSpec {
    metric(0.05)
}
fn default_hits_metric() -> JudgeMetricSpec {
    metric(0.2)
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            weight: default_weight(),
            step_weights: Vec::new(),
            soak_duration: default_soak(),
            interval: default_interval(),
            max_average_latency: default_max_average_latency(),
            max_p99_latency: None,
            max_error_rate: default_max_error_rate(),
            min_requests: default_min_requests(),
            failure_limit: default_failure_limit(),
            progress_deadline: default_progress_deadline(),
            max_restarts: default_max_restarts(),
            max_rmse: None,
            prometheus: PrometheusSpec::default(),
            judge: None,
        }
    }
}

fn default_weight() -> i32 {
    20
}
fn default_soak() -> DurationString {
    DurationString::from("12h")
}
fn default_interval() -> DurationString {
    DurationString::from("1m")
}
fn default_max_average_latency() -> DurationString {
    DurationString::from("500ms")
}
fn default_max_error_rate() -> f64 {
    0.01
}
fn default_min_requests() -> i64 {
    100
}
fn default_failure_limit() -> i32 {
    3
}
fn default_progress_deadline() -> DurationString {
    DurationString::from("10m")
}
fn default_max_restarts() -> i32 {
    3
}

/// Prometheus connection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(cel)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL of the Prometheus HTTP API.
    #[serde(default = "default_prometheus_address")]
    #[x_kube(validation = Rule::new("self.matches('^https?://.+')")
        .message("spec.canary.prometheus.address must be an http:// or https:// URL"))]
    #[schemars(length(max = 2048))]
    pub address: String,
}

impl Default for PrometheusSpec {
    fn default() -> Self {
        Self {
            address: default_prometheus_address(),
        }
    }
}

fn default_prometheus_address() -> String {
    "http://prometheus.monitoring:9090".to_owned()
}

/// Where notifications go.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(cel)]
#[x_kube(validation = Rule::new("has(self.webhookUrl) != has(self.secretRef)")
    .message("spec.notify needs exactly one of webhookUrl or secretRef"))]
#[serde(rename_all = "camelCase")]
pub struct NotifySpec {
    /// Slack-compatible incoming-webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https?://.+')")
        .message("spec.notify.webhookUrl must be an http:// or https:// URL"))]
    #[schemars(length(max = 2048))]
    pub webhook_url: Option<String>,
    /// A Secret key in the release's namespace holding the webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the release's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_secret_key")]
    pub key: String,
}

fn default_secret_key() -> String {
    "url".to_owned()
}

// ---------------------------------------------------------------------------------------
// Durations

/// A positive Go-style duration string: one or more `<number><unit>` with units `ms`, `s`,
/// `m`, `h` (e.g. `12h`, `1m30s`, `0.5s`, `500ms`).
///
/// The text is kept as the user wrote it (so the spec round-trips unchanged); call
/// [`DurationString::parse`] for the value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct DurationString(pub String);

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// Empty text.
    #[error("empty duration")]
    Empty,
    /// A part that is not `<number><unit>`.
    #[error("invalid duration {text:?}: expected e.g. 12h, 1m30s or 500ms")]
    Malformed {
        /// The text as given.
        text: String,
    },
    /// A unit other than ms, s, m, h.
    #[error("invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m or h)")]
    UnknownUnit {
        /// The text as given.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// Not one of the bucket bounds of the inference server's latency histogram.
    #[error(
        "invalid duration {text:?}: must be a latency bucket bound of movrek serve \
         (10ms, 25ms, 50ms, 100ms, 250ms, 500ms, 1s, 2.5s, 5s or 10s)"
    )]
    NotABucket {
        /// The text as given.
        text: String,
    },
    /// Zero, or too large to represent.
    #[error("invalid duration {text:?}: must be positive and under 10 years")]
    OutOfRange {
        /// The text as given.
        text: String,
    },
}

/// Upper bound for any duration the operator accepts (10 years).
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl DurationString {
    /// Parses the text into a positive [`Duration`].
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl From<&str> for DurationString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Display for DurationString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a positive Go-style duration (`12h`, `1m30s`, `500ms`, `0.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed {
        text: text.to_owned(),
    };
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(malformed)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return Err(malformed());
        }
        let value: f64 = number.parse().map_err(|_| malformed())?;
        let seconds_per_unit = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(malformed()),
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        total += value * seconds_per_unit;
        rest = next;
    }
    if total <= 0.0 || total > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::OutOfRange {
            text: text.to_owned(),
        });
    }
    Ok(Duration::from_secs_f64(total))
}

impl JsonSchema for DurationString {
    fn schema_name() -> Cow<'static, str> {
        "DurationString".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A positive duration such as 12h, 1m30s or 500ms (units ms, s, m, h)",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": "duration(self) > duration('0s')",
                "message": "durations must be positive, e.g. 12h, 30s or 500ms"
            }]
        })
    }
}

// ---------------------------------------------------------------------------------------
// Status

/// Observed state; everything a restarted operator needs to resume a rollout.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RecommenderReleaseStatus {
    /// Where the release is in its lifecycle.
    #[serde(default)]
    pub phase: Phase,
    /// Human-readable reason for the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the current phase began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Time>,
    /// The model serving the stable track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<TrackStatus>,
    /// The model on the canary track (the last one tried once no rollout runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<TrackStatus>,
    /// Percent of traffic the router currently sends to the canary.
    #[serde(default)]
    pub canary_weight: i32,
    /// The rollout in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutProgress>,
    /// Failed checks in the current rollout.
    #[serde(default)]
    pub failed_checks: i32,
    /// The most recent canary check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<AnalysisRecord>,
    /// A target that was rolled back or rejected; it is not retried until the spec changes
    /// or `movrek.dev/action=retry` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<BlockedTarget>,
    /// `Ready`, `Progressing`, `Degraded`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last [`HISTORY_LIMIT`] finished rollouts, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The traffic provider whose routing objects the operator applied last; a different
    /// `spec.traffic.provider` retires them (canary weight 0, then deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_provider: Option<TrafficProvider>,
    /// The `movrek.dev/action` value already acted on. The annotation is never removed (a
    /// value kept in Git must not fire on every sync); a new value fires once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_action: Option<String>,
}

/// Lifecycle phase of a release.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Phase {
    /// First deploy: the stable track is starting.
    #[default]
    Initializing,
    /// The stable track serves the spec's model; nothing to do.
    Stable,
    /// A canary is starting and waits for its pods.
    Progressing,
    /// The canary receives traffic; waiting `soakDuration` before judging.
    Soaking,
    /// Checking the canary every `interval`.
    Analyzing,
    /// The stable track takes the canary's model.
    Promoting,
    /// Canary weight back to 0, canary scaling to 0.
    RollingBack,
    /// The last rollout was promoted.
    Succeeded,
    /// The last rollout was rolled back; the stable model keeps serving.
    RolledBack,
    /// The new model failed the offline gate; no canary was started.
    Rejected,
    /// The stable track could not become ready, or the spec cannot be used.
    Failed,
}

impl Phase {
    /// Every phase, in declaration order (for metrics).
    pub const ALL: [Phase; 11] = [
        Phase::Initializing,
        Phase::Stable,
        Phase::Progressing,
        Phase::Soaking,
        Phase::Analyzing,
        Phase::Promoting,
        Phase::RollingBack,
        Phase::Succeeded,
        Phase::RolledBack,
        Phase::Rejected,
        Phase::Failed,
    ];

    /// The phase name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Initializing => "Initializing",
            Phase::Stable => "Stable",
            Phase::Progressing => "Progressing",
            Phase::Soaking => "Soaking",
            Phase::Analyzing => "Analyzing",
            Phase::Promoting => "Promoting",
            Phase::RollingBack => "RollingBack",
            Phase::Succeeded => "Succeeded",
            Phase::RolledBack => "RolledBack",
            Phase::Rejected => "Rejected",
            Phase::Failed => "Failed",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a model track runs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrackStatus {
    /// Model version.
    pub version: String,
    /// Inference image.
    pub image: String,
    /// Model artifact URI.
    pub model_uri: String,
    /// Model artifact SHA-256.
    pub model_sha256: String,
    /// Replicas the operator asks for.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods last observed.
    #[serde(default)]
    pub ready_replicas: i32,
}

/// Progress markers of the rollout in progress.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgress {
    /// Version under rollout.
    pub version: String,
    /// Image under rollout.
    pub image: String,
    /// Fingerprint of the spec parts the rollout depends on (target + canary settings);
    /// a different fingerprint restarts the rollout.
    pub fingerprint: String,
    /// When the rollout started (the canary Deployment was requested).
    pub started_at: Time,
    /// Index into the step weights.
    #[serde(default)]
    pub step: i32,
    /// When the canary became ready (soak start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_ready_at: Option<Time>,
    /// When checks began for the current step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_started_at: Option<Time>,
    /// When the last check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_at: Option<Time>,
    /// When the canary stopped being ready after having been ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_unready_since: Option<Time>,
    /// Seconds the canary was unready after first becoming ready, summed over every
    /// unready spell that ended (a crash loop that is briefly ready still runs out of time).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub canary_unready_seconds: i64,
    /// Most container restarts seen across the canary pods.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub canary_restarts: i32,
    /// When the last fail-fast check of the soak ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_check_at: Option<Time>,
    /// When promotion began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoting_at: Option<Time>,
    /// When the rollback began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_back_at: Option<Time>,
    /// Why the rollout is ending (promotion or rollback), once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The stable model before promotion began, restored if the promotion is aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_stable: Option<TrackStatus>,
    /// When the current step's weight took effect: the judge counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// The judge's counts of every finished step (the current one is read from Prometheus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judged_steps: Vec<StepCounts>,
    /// The judge's forecast for the current step, made at its first check from stable's
    /// traffic: how long after the step began an identical canary is expected to pass
    /// (`35m`), or `not within 30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_pass: Option<String>,
    /// The same forecast in seconds (absent when it is `not within 30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_pass_seconds: Option<i64>,
    /// Whether the forecast falls within the time the step has (soak and inconclusive
    /// budget); the `DecisionInTime` condition shows it while the step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_in_time: Option<bool>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

/// One canary check as recorded in status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRecord {
    /// Average latency in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_latency_seconds: Option<f64>,
    /// p99 latency in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_latency_seconds: Option<f64>,
    /// Share of 5xx answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Requests served in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// When the check ran.
    pub time: Time,
    /// Why (thresholds, figures, or the query error).
    pub message: String,
    /// The canary-versus-stable comparison, when `spec.canary.judge` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonRecord>,
}

/// The judge's figures at one check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonRecord {
    /// The comparison's own verdict (guardrails aside).
    pub verdict: Verdict,
    /// Observed canary share of requests in the steps so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_share: Option<f64>,
    /// E-value of the sample-ratio test (a mismatch at `≥ 1/alpha`).
    pub mismatch_evidence: f64,
    /// Per metric.
    pub metrics: Vec<MetricRecord>,
}

/// One metric at one check: both tracks' figures, the evidence and the finding.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricRecord {
    /// Which metric.
    pub metric: Metric,
    /// The canary's rate (errors, slow requests, hits) or mean score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<f64>,
    /// Stable's, the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    /// Canary over stable (rates) or canary minus stable (score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    /// Evidence of a regression (rejects at `≥ k/alpha` for `k` metrics).
    pub regression_evidence: f64,
    /// Evidence that the canary is no worse (rejects at `≥ 1/alpha`).
    pub no_worse_evidence: f64,
    /// What the tests concluded.
    pub finding: Finding,
    /// Exposure (requests or scored lists) the metric likely still needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_more: Option<f64>,
}

impl MetricRecord {
    /// The metric's result as the judge had it.
    pub fn to_result(&self) -> crate::analysis::compare::MetricResult {
        crate::analysis::compare::MetricResult {
            metric: self.metric,
            outcome: crate::analysis::sequential::Outcome {
                finding: self.finding,
                canary: self.canary,
                stable: self.stable,
                effect: self.effect,
                regression_evidence: self.regression_evidence,
                no_worse_evidence: self.no_worse_evidence,
                needs_more: self.needs_more,
            },
        }
    }
}

impl ComparisonRecord {
    /// Records a judge report.
    pub fn from_report(report: &Report) -> Self {
        Self {
            verdict: report.verdict,
            canary_share: report.canary_share,
            mismatch_evidence: report.mismatch_evidence,
            metrics: report
                .metrics
                .iter()
                .map(|m| MetricRecord {
                    metric: m.metric,
                    canary: m.outcome.canary,
                    stable: m.outcome.stable,
                    effect: m.outcome.effect,
                    regression_evidence: m.outcome.regression_evidence,
                    no_worse_evidence: m.outcome.no_worse_evidence,
                    finding: m.outcome.finding,
                    needs_more: m.outcome.needs_more,
                })
                .collect(),
        }
    }
}

impl AnalysisRecord {
    /// Records an analysis that ran at `time`.
    pub fn from_analysis(analysis: &Analysis, time: Time) -> Self {
        Self {
            average_latency_seconds: analysis.metrics.average_latency_seconds,
            p99_latency_seconds: analysis.metrics.p99_latency_seconds,
            error_rate: analysis.metrics.error_rate,
            requests: analysis.metrics.requests,
            verdict: analysis.verdict,
            time,
            message: analysis.reason.clone(),
            comparison: analysis
                .comparison
                .as_ref()
                .map(ComparisonRecord::from_report),
        }
    }
}

/// A rollout target that must not be retried automatically.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlockedTarget {
    /// Version that was rolled back or rejected.
    pub version: String,
    /// Its image.
    pub image: String,
    /// Fingerprint of the spec it came from.
    pub fingerprint: String,
    /// `RolledBack` or `Rejected`.
    pub outcome: Outcome,
    /// Why.
    pub reason: String,
}

/// How a rollout ended.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The canary became stable.
    Promoted,
    /// The canary was withdrawn.
    RolledBack,
    /// The offline gate refused the model.
    Rejected,
    /// The spec changed before the rollout finished.
    Superseded,
}

impl Outcome {
    /// Every outcome (for metrics).
    pub const ALL: [Outcome; 4] = [
        Outcome::Promoted,
        Outcome::RolledBack,
        Outcome::Rejected,
        Outcome::Superseded,
    ];

    /// The outcome name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Promoted => "Promoted",
            Outcome::RolledBack => "RolledBack",
            Outcome::Rejected => "Rejected",
            Outcome::Superseded => "Superseded",
        }
    }
}

/// One finished rollout: the provenance trail.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Version that was rolled out.
    pub version: String,
    /// Its image.
    pub image: String,
    /// Its artifact digest.
    pub model_sha256: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why.
    pub reason: String,
    /// The last check's figures, if any ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<AnalysisRecord>,
    /// Failed checks counted.
    #[serde(default)]
    pub failed_checks: i32,
    /// When it ended.
    pub time: Time,
    /// The model's provenance (`spec.model.provenance` of the version), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ModelProvenance>,
}

/// The CRD as YAML, exactly as `movrek-operator crd` prints it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&RecommenderRelease::crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_parse_go_style() {
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h0m1s"), Ok(Duration::from_secs(3601)));
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("0s"),
            Err(DurationError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_duration("12"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("h"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration(".5s"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("3d"),
            Err(DurationError::UnknownUnit { unit, .. }) if unit == "d"
        ));
        assert!(matches!(
            parse_duration("99999999h"),
            Err(DurationError::OutOfRange { .. })
        ));
    }

    #[test]
    fn defaults_match_design() {
        let spec: RecommenderReleaseSpec = serde_json::from_value(json!({
            "image": "img:1",
            "model": {"version": "v1", "uri": "file:///m", "sha256": "0".repeat(64)}
        }))
        .unwrap();
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.port, 8082);
        assert_eq!(spec.traffic.provider, TrafficProvider::GatewayApi);
        assert_eq!(spec.canary.weight, 20);
        assert_eq!(
            spec.canary.soak_duration.parse(),
            Ok(Duration::from_secs(12 * 3600))
        );
        assert_eq!(spec.canary.interval.parse(), Ok(Duration::from_secs(60)));
        assert_eq!(
            spec.canary.max_average_latency.parse(),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(spec.canary.failure_limit, 3);
        assert_eq!(spec.canary.min_requests, 100);
    }

    #[test]
    fn provider_names_are_kebab_case() {
        for (name, provider) in [
            ("ingress-nginx", TrafficProvider::IngressNginx),
            ("gateway-api", TrafficProvider::GatewayApi),
            ("replicas", TrafficProvider::Replicas),
        ] {
            assert_eq!(serde_json::to_value(provider).unwrap(), json!(name));
        }
        let err = serde_json::from_value::<TrafficProvider>(json!("istio")).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn crd_has_names_columns_and_status() {
        let crd = RecommenderRelease::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.names.short_names, Some(vec!["rr".to_owned()]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["Phase", "Stable", "Canary", "Weight", "Expected", "Age"]
        );
        // The forecast only in `kubectl get rr -o wide`: the default columns stay as designed.
        let expected = &version.additional_printer_columns.as_ref().unwrap()[4];
        assert_eq!(expected.priority, Some(1));
    }
}
