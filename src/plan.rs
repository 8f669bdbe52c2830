//! The rollout decision: a pure function from (release, observed children, last analysis,
//! now) to the next status, the desired children, Events, notifications and the exact
//! time to look again. No IO, no clock, no `async`: the controller observes, calls
//! [`plan`], and applies the result.
//!
//! # Rules
//! - First apply: the spec's model goes straight to the stable track (`Initializing` →
//!   `Stable`; `Failed` when the stable pods are not ready by `progressDeadline`).
//! - A new target (image, model version, URI or digest) starts a canary (`Progressing`); a
//!   model whose `offlineRmse` exceeds `canary.maxRmse` is `Rejected` before any canary.
//! - Canary ready → it gets the first step weight and `Soaking` starts; not ready by
//!   `progressDeadline` → rollback. A canary that stops being ready for `progressDeadline`
//!   is rolled back too.
//! - After `soakDuration`, `Analyzing`: one check every `interval`. Pass → next step weight,
//!   or `Promoting` after the last step (the stable track takes the canary's model; once
//!   the stable pods run it, weight 0, canary to 0, `Succeeded`). `failureLimit` failed
//!   checks → rollback.
//! - Inconclusive deadline: a step that has had no passing check
//!   `max(progressDeadline, failureLimit × interval)` after its checks began is rolled back.
//! - Rollback: weight 0 and canary to 0 at once (`RollingBack`), `RolledBack` when the
//!   canary has no pods. The target is blocked: it is not retried until the rollout
//!   fingerprint (target + canary settings) changes or `movrek.dev/action=retry` is set.
//! - A spec change mid-rollout restarts the rollout with the newest spec (the old one goes
//!   to history as `Superseded`); a spec reverted to the stable model cancels it.
//! - `movrek.dev/action=promote|abort|retry` (optionally `:<anything>` after it) acts once
//!   per value: status records the value handled (`lastHandledAction`) and the annotation
//!   stays, so a value kept in Git does not fire on every sync; `promote` skips the remaining
//!   checks, `abort` rolls back, `retry` unblocks.
//! - Canary health Prometheus cannot see: more than `maxRestarts` container restarts roll
//!   back at once; unready spells after the canary was first ready add up against
//!   `progressDeadline`; during the soak a check every `interval` rolls back a canary whose
//!   error rate is above `maxErrorRate` on `minRequests` (fail-fast).
//! - A check that cannot reach Prometheus pauses the analysis clock (the inconclusive budget
//!   is not spent); a check that reaches it and finds no data spends it.
//! - An `HTTPRoute` its Gateway refuses (`Accepted` or `ResolvedRefs` False) stalls the
//!   rollout with the Gateway's message.
//! - Routing objects of an earlier `traffic.provider` get canary weight 0, then are deleted.
//! - With `spec.autoscaling` an HPA owns the stable replicas; the canary is sized from the
//!   observed stable replicas.
//! - A release being deleted gets an empty plan: nothing is applied.
//! - `Reconciling` is True only while the operator waits for children (pods, routes); a soak
//!   or the time between checks leaves it False.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::analysis::compare::{JudgeConfig, Metric, MetricConfig, forecast_pass};
use crate::analysis::prometheus::LATENCY_BUCKETS_SECONDS;
use crate::analysis::{
    Analysis, AnalysisQuery, JudgeRequest, Thresholds, Track, TrackVersions, Verdict,
};
use crate::crd::{
    ACTION_ANNOTATION, AnalysisRecord, BlockedTarget, DurationError, HISTORY_LIMIT, HistoryEntry,
    InconclusiveAction, JudgeSpec, ModelSpec, Outcome, Phase, RecommenderRelease,
    RecommenderReleaseSpec, RecommenderReleaseStatus, RolloutProgress, TrackStatus,
    TrafficProvider,
};

/// How long to wait before asking again when a check is due but no analysis was supplied.
const ANALYSIS_PENDING_RETRY: Duration = Duration::from_secs(1);
/// Scored lists stable needs in a step before its rate is projected into a forecast.
const FORECAST_MIN_SCORED: f64 = 30.0;

/// What the controller saw of the children before planning.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The `<name>-stable` Deployment, if it exists.
    pub stable: Option<DeploymentState>,
    /// The `<name>-canary` Deployment, if it exists.
    pub canary: Option<DeploymentState>,
    /// The analysis run for this reconcile (only when the previous plan asked for one).
    pub analysis: Option<Analysis>,
    /// The metrics backend could not be reached for [`Observed::analysis`]: the analysis
    /// clock pauses instead of spending the inconclusive budget.
    pub metrics_unreachable: bool,
    /// Container restarts summed over the pods of the canary Deployment that run the
    /// rollout's model.
    pub canary_restarts: i32,
    /// Why the router refuses the routing object (an `HTTPRoute` whose parent reports
    /// `Accepted` or `ResolvedRefs` False), if it does.
    pub route_problem: Option<String>,
    /// Routing objects of providers other than the spec's that still exist.
    pub other_routes: Vec<LiveRoutes>,
}

/// Routing objects of one provider found in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRoutes {
    /// Their provider.
    pub provider: TrafficProvider,
    /// The weight their canary route still sends (`None` when it has no canary route).
    pub canary_weight: Option<i32>,
}

/// What to do with the routing objects of a provider the spec no longer names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retirement {
    /// Apply them once more with canary weight 0.
    ZeroWeight(TrafficProvider),
    /// Delete them (their canary route already sends nothing).
    Delete(TrafficProvider),
}

/// The parts of a Deployment the plan reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentState {
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// `status.updatedReplicas`.
    pub updated_replicas: i32,
    /// `status.replicas` (pods of any revision, terminating ones excluded).
    pub current_replicas: i32,
    /// The model version of the pod template (`MOVREK_MODEL_VERSION`).
    pub model_version: Option<String>,
    /// The image of the pod template.
    pub image: Option<String>,
}

impl DeploymentState {
    /// True when every wanted pod runs `target` and is ready (the rollout of the
    /// Deployment itself is complete).
    pub fn serves(&self, target: &TrackStatus) -> bool {
        self.observed_generation >= self.generation
            && self.replicas >= 1
            && self.updated_replicas >= self.replicas
            && self.ready_replicas >= self.replicas
            && self.current_replicas <= self.replicas
            && self.model_version.as_deref() == Some(target.version.as_str())
            && self.image.as_deref() == Some(target.image.as_str())
    }

    /// True when the Deployment wants no pods and has none left.
    pub fn drained(&self) -> bool {
        self.replicas == 0 && self.ready_replicas == 0 && self.current_replicas == 0
    }
}

/// A person's override, read from the `movrek.dev/action` annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManualAction {
    /// Promote the canary now, skipping the remaining checks.
    Promote,
    /// Roll the canary back now.
    Abort,
    /// Try a rolled-back or rejected target again.
    Retry,
    /// Anything else: reported once.
    Unknown(String),
}

impl ManualAction {
    /// Reads a value of the action annotation: `promote`, `abort` or `retry`, optionally
    /// followed by `:<anything>` so the same action can be asked for again with a new value.
    pub fn parse(value: &str) -> Self {
        let value = value.trim();
        match value.split_once(':').map_or(value, |(verb, _)| verb) {
            "promote" => Self::Promote,
            "abort" => Self::Abort,
            "retry" => Self::Retry,
            _ => Self::Unknown(value.to_owned()),
        }
    }

    /// The action a release asks for that was not acted on yet: its annotation value differs
    /// from `status.lastHandledAction`.
    pub fn pending(release: &RecommenderRelease) -> Option<Self> {
        let value = release.annotations().get(ACTION_ANNOTATION)?;
        let handled = release
            .status
            .as_ref()
            .and_then(|s| s.last_handled_action.as_deref());
        (handled != Some(value.as_str())).then(|| Self::parse(value))
    }
}

/// Kind of a Kubernetes Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Normal progress.
    Normal,
    /// Something a person should look at.
    Warning,
}

/// An Event the controller must publish on the release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Normal or Warning.
    pub kind: EventKind,
    /// Short `UpperCamelCase` reason.
    pub reason: &'static str,
    /// The sentence with the figures.
    pub note: String,
}

/// A notification the controller must send (promotion, rollback, rejection).
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    /// `Promoted`, `RolledBack` or `Rejected`.
    pub outcome: Outcome,
    /// The version concerned.
    pub version: String,
    /// Why.
    pub reason: String,
    /// The last check, if one ran.
    pub figures: Option<AnalysisRecord>,
}

/// One desired Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadPlan {
    /// The model and image to run.
    pub target: TrackStatus,
    /// Pods to run (the autoscaler's floor when `autoscaled`).
    pub replicas: i32,
    /// An HPA owns the replica count: the apply omits `spec.replicas`.
    pub autoscaled: bool,
}

/// One desired `HorizontalPodAutoscaler`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalerPlan {
    /// Fewest pods.
    pub min_replicas: i32,
    /// Most pods.
    pub max_replicas: i32,
    /// Average CPU utilisation aimed for, percent.
    pub target_cpu_utilization_percent: i32,
}

/// The desired children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Children {
    /// `<name>-stable`; `None` only when the spec cannot be used and nothing was ever deployed.
    pub stable: Option<WorkloadPlan>,
    /// `<name>-canary`; `None` when no canary was ever started (nothing to apply).
    pub canary: Option<WorkloadPlan>,
    /// Percent of traffic for the canary.
    pub canary_weight: i32,
    /// HPA of `<name>-stable` (`spec.autoscaling`).
    pub stable_scaler: Option<ScalerPlan>,
    /// HPA of `<name>-canary` (`spec.autoscaling.canary`).
    pub canary_scaler: Option<ScalerPlan>,
    /// Routing objects of an earlier provider to retire, in order.
    pub retire: Vec<Retirement>,
}

/// Everything the controller must do after one observation.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// When set, a check is due: run this query and plan again with the result in
    /// [`Observed::analysis`]. Nothing else of this plan should be applied.
    pub analysis_needed: Option<AnalysisRequest>,
    /// The status to write (written only if it differs from the current one).
    pub status: RecommenderReleaseStatus,
    /// The children to apply.
    pub children: Children,
    /// Events to publish, in order.
    pub events: Vec<PlannedEvent>,
    /// Notifications to send.
    pub announcements: Vec<Announcement>,
    /// The release is being deleted (`deletionTimestamp` set): apply and write nothing, and
    /// forget its metric series; the garbage collector removes the children.
    pub deleting: bool,
    /// Look again after this long even if nothing changes (`None`: wait for a change).
    pub requeue_after: Option<Duration>,
}

/// A canary check the controller must run.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRequest {
    /// Where and over which window.
    pub query: AnalysisQuery,
    /// The limits to judge against.
    pub thresholds: Thresholds,
    /// The canary-versus-stable comparison, when `spec.canary.judge` is set.
    pub judge: Option<JudgeRequest>,
}

/// The spec's durations, parsed once per plan.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Settings {
    soak: Duration,
    interval: Duration,
    progress_deadline: Duration,
    max_average_latency: Duration,
    max_p99_latency: Option<Duration>,
    /// The judge's slow-request bound in seconds, when `spec.canary.judge` is set.
    slow_bound_seconds: Option<f64>,
}

/// Parses `judge.slowRequest` and checks it is a bucket bound of the latency histogram.
fn slow_bound(judge: &JudgeSpec) -> Result<f64, DurationError> {
    let seconds = judge.slow_request.parse()?.as_secs_f64();
    LATENCY_BUCKETS_SECONDS
        .iter()
        .copied()
        .find(|b| (b - seconds).abs() < 1e-9)
        .ok_or_else(|| DurationError::NotABucket {
            text: judge.slow_request.0.clone(),
        })
}

impl Settings {
    fn of(spec: &RecommenderReleaseSpec) -> Result<Self, (&'static str, DurationError)> {
        let c = &spec.canary;
        Ok(Self {
            soak: c.soak_duration.parse().map_err(|e| ("soakDuration", e))?,
            interval: c.interval.parse().map_err(|e| ("interval", e))?,
            progress_deadline: c
                .progress_deadline
                .parse()
                .map_err(|e| ("progressDeadline", e))?,
            max_average_latency: c
                .max_average_latency
                .parse()
                .map_err(|e| ("maxAverageLatency", e))?,
            max_p99_latency: match &c.max_p99_latency {
                Some(d) => Some(d.parse().map_err(|e| ("maxP99Latency", e))?),
                None => None,
            },
            slow_bound_seconds: match &c.judge {
                Some(j) => Some(slow_bound(j).map_err(|e| ("judge.slowRequest", e))?),
                None => None,
            },
        })
    }

    /// How long one step may go without a passing check.
    fn inconclusive_budget(&self, failure_limit: i32) -> Duration {
        let limit = u32::try_from(failure_limit.max(1)).unwrap_or(1);
        self.progress_deadline
            .max(self.interval.saturating_mul(limit))
    }
}

/// The model the spec asks for.
fn spec_target(spec: &RecommenderReleaseSpec) -> TrackStatus {
    TrackStatus {
        version: spec.model.version.clone(),
        image: spec.image.clone(),
        model_uri: spec.model.uri.clone(),
        model_sha256: spec.model.sha256.clone(),
        replicas: 0,
        ready_replicas: 0,
    }
}

fn same_model(a: &TrackStatus, b: &TrackStatus) -> bool {
    a.version == b.version
        && a.image == b.image
        && a.model_uri == b.model_uri
        && a.model_sha256 == b.model_sha256
}

/// Fingerprint of what a rollout depends on: image, model (including `offlineRmse`, not
/// `provenance`) and
/// canary settings.
/// [`fingerprint`] of a canonical JSON rendering, so it is stable across operator versions.
pub fn rollout_fingerprint(spec: &RecommenderReleaseSpec) -> String {
    // The provenance describes the model and runs nowhere: adding or correcting it does
    // not restart a rollout (and leaves the fingerprints of specs without one unchanged).
    let model = ModelSpec {
        provenance: None,
        ..spec.model.clone()
    };
    let canonical = serde_json::to_string(&(&spec.image, &model, &spec.canary)).unwrap_or_default();
    fingerprint(&canonical)
}

/// FNV-1a 64 of `text`, hex: the operator's one stable hash (rollout fingerprints here, the
/// applied-object annotation in [`crate::children`]).
pub fn fingerprint(text: &str) -> String {
    format!("{:016x}", movrek_contract::fnv1a64(text.as_bytes()))
}

/// The canary weights, in order: `stepWeights`, or one step at `weight`.
fn steps(spec: &RecommenderReleaseSpec) -> Vec<i32> {
    if spec.canary.step_weights.is_empty() {
        vec![spec.canary.weight.clamp(0, 100)]
    } else {
        spec.canary
            .step_weights
            .iter()
            .map(|w| (*w).clamp(0, 100))
            .collect()
    }
}

/// Canary pods for a given weight.
///
/// With an ingress or Gateway the router splits traffic, so the canary needs a share of
/// the stable capacity: `ceil(stable × weight / 100)`. With the `replicas` provider the
/// pod ratio *is* the split: `round(stable × weight / (100 − weight))`. At least one pod.
pub fn canary_replicas(provider: TrafficProvider, stable: i32, weight: i32) -> i32 {
    let stable = i64::from(stable.max(1));
    let weight = i64::from(weight.clamp(0, 100));
    let pods = match provider {
        TrafficProvider::IngressNginx | TrafficProvider::GatewayApi => (stable * weight + 99) / 100,
        TrafficProvider::Replicas if weight >= 100 => stable,
        TrafficProvider::Replicas => (2 * stable * weight + (100 - weight)) / (2 * (100 - weight)),
    };
    i32::try_from(pods.max(1)).unwrap_or(i32::MAX)
}

fn elapsed(since: &Time, now: Timestamp) -> Duration {
    let d = now.duration_since(since.0);
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 && secs < 60 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &h.to_string();
        out.push('h');
    }
    if m > 0 {
        out += &m.to_string();
        out.push('m');
    }
    if s > 0 || out.is_empty() {
        out += &s.to_string();
        out.push('s');
    }
    out
}

/// How the release stands before this decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Situation {
    /// The spec cannot be used (malformed duration that bypassed the schema).
    Invalid,
    /// Nothing deployed yet.
    FirstDeploy,
    /// The stable track serves the spec; no rollout.
    Steady,
    /// A rollout runs for an older spec, and the spec now names the stable model again.
    Reverted,
    /// The spec names a target that was rolled back or rejected.
    Blocked,
    /// The spec names a new target (or new canary settings) with no matching rollout.
    NewTarget,
    /// A rollout runs for exactly this spec.
    InRollout,
}

fn classify(
    status: &RecommenderReleaseStatus,
    target: &TrackStatus,
    fingerprint: &str,
    settings_ok: bool,
) -> Situation {
    if !settings_ok {
        return Situation::Invalid;
    }
    let Some(stable) = &status.stable else {
        return Situation::FirstDeploy;
    };
    match &status.rollout {
        Some(r) if r.fingerprint == fingerprint => Situation::InRollout,
        Some(_) if same_model(stable, target) => Situation::Reverted,
        None if same_model(stable, target) => Situation::Steady,
        None if status
            .blocked
            .as_ref()
            .is_some_and(|b| b.fingerprint == fingerprint) =>
        {
            Situation::Blocked
        }
        Some(_) | None => Situation::NewTarget,
    }
}

/// Decides the next step for `release`. Pure: same inputs, same plan.
pub fn plan(release: &RecommenderRelease, observed: &Observed, now: Timestamp) -> Plan {
    if release.metadata.deletion_timestamp.is_some() {
        return deleting(release);
    }
    Planner::new(release, observed, now).run()
}

/// The plan for a release being deleted: nothing to apply, status left as it is.
fn deleting(release: &RecommenderRelease) -> Plan {
    let status = release.status.clone().unwrap_or_default();
    Plan {
        analysis_needed: None,
        children: Children {
            stable: None,
            canary: None,
            canary_weight: status.canary_weight,
            stable_scaler: None,
            canary_scaler: None,
            retire: Vec::new(),
        },
        status,
        events: Vec::new(),
        announcements: Vec::new(),
        deleting: true,
        requeue_after: None,
    }
}

struct Planner<'a> {
    release: &'a RecommenderRelease,
    spec: &'a RecommenderReleaseSpec,
    observed: &'a Observed,
    now: Timestamp,
    next: RecommenderReleaseStatus,
    target: TrackStatus,
    fingerprint: String,
    action: Option<ManualAction>,
    action_used: bool,
    events: Vec<PlannedEvent>,
    announcements: Vec<Announcement>,
    wake: Option<Duration>,
    analysis_needed: Option<AnalysisRequest>,
    stalled: bool,
}

impl<'a> Planner<'a> {
    fn new(release: &'a RecommenderRelease, observed: &'a Observed, now: Timestamp) -> Self {
        let spec = &release.spec;
        Self {
            release,
            spec,
            observed,
            now,
            next: release.status.clone().unwrap_or_default(),
            target: spec_target(spec),
            fingerprint: rollout_fingerprint(spec),
            action: ManualAction::pending(release),
            action_used: false,
            events: Vec::new(),
            announcements: Vec::new(),
            wake: None,
            analysis_needed: None,
            stalled: false,
        }
    }

    fn run(mut self) -> Plan {
        let settings = Settings::of(self.spec);
        let situation = classify(
            &self.next,
            &self.target,
            &self.fingerprint,
            settings.is_ok(),
        );
        match (situation, settings) {
            (_, Err((field, error))) => self.invalid(field, &error),
            (Situation::FirstDeploy, Ok(s)) => self.first_deploy(&s),
            (Situation::Steady, Ok(s)) => self.steady(&s),
            (Situation::Reverted, Ok(s)) => self.reverted(&s),
            (Situation::Blocked, Ok(s)) => self.blocked(&s),
            (Situation::NewTarget, Ok(s)) => self.new_target(&s),
            (Situation::InRollout, Ok(s)) => self.in_rollout(&s),
            (Situation::Invalid, Ok(_)) => unreachable!("classify returns Invalid only on errors"),
        }
        self.finish()
    }

    // --- helpers ------------------------------------------------------------------

    fn event(&mut self, kind: EventKind, reason: &'static str, note: String) {
        self.events.push(PlannedEvent { kind, reason, note });
    }

    /// Moves to `phase` (stamping `phaseSince` when it changes) with `message`.
    fn enter(&mut self, phase: Phase, message: String) {
        if self.next.phase != phase || self.next.phase_since.is_none() {
            self.next.phase_since = Some(Time(self.now));
        }
        self.next.phase = phase;
        self.next.message = Some(message);
    }

    fn wake_in(&mut self, after: Duration) {
        self.wake = Some(self.wake.map_or(after, |w| w.min(after)));
    }

    /// Schedules a wake-up when `budget` has run out since `since`; true when it already has.
    fn deadline_passed(&mut self, since: &Time, budget: Duration) -> bool {
        let spent = elapsed(since, self.now);
        if spent >= budget {
            true
        } else {
            self.wake_in(budget.saturating_sub(spent));
            false
        }
    }

    fn take_action(&mut self) -> Option<ManualAction> {
        self.action_used = true;
        self.action.clone()
    }

    fn report_unknown(&mut self, value: &str) {
        self.event(
            EventKind::Warning,
            "UnknownAction",
            format!("{ACTION_ANNOTATION}={value:?} is not one of promote, abort, retry; removed"),
        );
    }

    fn ignore_action(&mut self, why: &str) {
        let name = match self.take_action() {
            None => return,
            Some(ManualAction::Unknown(v)) => return self.report_unknown(&v),
            Some(ManualAction::Promote) => "promote",
            Some(ManualAction::Abort) => "abort",
            Some(ManualAction::Retry) => "retry",
        };
        self.event(
            EventKind::Warning,
            "ActionIgnored",
            format!("{ACTION_ANNOTATION}={name} ignored: {why}"),
        );
    }

    fn stable_serves(&self, target: &TrackStatus) -> bool {
        self.observed
            .stable
            .as_ref()
            .is_some_and(|d| d.serves(target))
    }

    fn push_history(
        &mut self,
        version: &str,
        image: &str,
        sha: &str,
        outcome: Outcome,
        reason: &str,
    ) {
        // The spec carries the provenance of its own model only; an entry for an older
        // version (superseded mid-rollout) has none to copy.
        let model = &self.spec.model;
        let provenance = model
            .provenance
            .clone()
            .filter(|_| model.version == version && model.sha256 == sha);
        self.next.history.insert(
            0,
            HistoryEntry {
                version: version.to_owned(),
                image: image.to_owned(),
                model_sha256: sha.to_owned(),
                outcome,
                reason: reason.to_owned(),
                last_analysis: self.next.last_analysis.clone(),
                failed_checks: self.next.failed_checks,
                time: Time(self.now),
                provenance,
            },
        );
        self.next.history.truncate(HISTORY_LIMIT);
    }

    // --- situations ---------------------------------------------------------------

    fn invalid(&mut self, field: &str, error: &DurationError) {
        let message = format!("spec.canary.{field}: {error}");
        if self.next.phase != Phase::Failed {
            self.event(EventKind::Warning, "InvalidSpec", message.clone());
        }
        self.enter(Phase::Failed, message);
        self.stalled = true;
        self.ignore_action("the spec is invalid");
    }

    fn first_deploy(&mut self, s: &Settings) {
        self.next.stable = Some(self.target.clone());
        self.next.canary_weight = 0;
        self.event(
            EventKind::Normal,
            "Deploying",
            format!(
                "first deploy of model {} ({}): straight to stable",
                self.target.version, self.target.image
            ),
        );
        self.enter(
            Phase::Initializing,
            format!(
                "deploying model {} to the stable track",
                self.target.version
            ),
        );
        self.ignore_action("nothing to roll out on the first deploy");
        self.settle_stable(s);
    }

    /// Initializing/Failed → Stable once the stable pods serve the stable model.
    fn settle_stable(&mut self, s: &Settings) {
        let Some(stable) = self.next.stable.clone() else {
            return;
        };
        let ready = self.stable_serves(&stable);
        match self.next.phase {
            Phase::Initializing | Phase::Failed if ready => {
                self.event(
                    EventKind::Normal,
                    "Ready",
                    format!("model {} serves on the stable track", stable.version),
                );
                self.enter(Phase::Stable, format!("model {} is stable", stable.version));
            }
            Phase::Initializing => {
                let since = self.next.phase_since.clone().unwrap_or(Time(self.now));
                if self.deadline_passed(&since, s.progress_deadline) {
                    let message = format!(
                        "stable pods not ready within progressDeadline {} ({})",
                        fmt_duration(s.progress_deadline),
                        Self::ready_figure(self.observed.stable.as_ref())
                    );
                    self.event(
                        EventKind::Warning,
                        "ProgressDeadlineExceeded",
                        message.clone(),
                    );
                    self.enter(Phase::Failed, message);
                }
            }
            Phase::Failed => self.stalled = true,
            Phase::Stable
            | Phase::Progressing
            | Phase::Soaking
            | Phase::Analyzing
            | Phase::Promoting
            | Phase::RollingBack
            | Phase::Succeeded
            | Phase::RolledBack
            | Phase::Rejected => {}
        }
    }

    fn ready_figure(d: Option<&DeploymentState>) -> String {
        match d {
            Some(d) => format!("{}/{} ready", d.ready_replicas, d.replicas),
            None => "Deployment missing".to_owned(),
        }
    }

    fn steady(&mut self, s: &Settings) {
        self.next.canary_weight = 0;
        if self.next.blocked.take().is_some()
            || matches!(self.next.phase, Phase::RolledBack | Phase::Rejected)
        {
            self.enter(
                Phase::Stable,
                format!("spec names the stable model {} again", self.target.version),
            );
        }
        // The stable image may be re-tagged etc. only through a rollout; replicas follow the spec.
        self.ignore_action("no rollout in progress");
        self.settle_stable(s);
    }

    fn reverted(&mut self, s: &Settings) {
        if let Some(r) = self.next.rollout.take()
            && r.rolling_back_at.is_none()
        {
            let reason = format!(
                "spec reverted to the stable model {} during the rollout of {}",
                self.target.version, r.version
            );
            let sha = self
                .next
                .canary
                .as_ref()
                .map(|c| c.model_sha256.clone())
                .unwrap_or_default();
            self.push_history(&r.version, &r.image, &sha, Outcome::Superseded, &reason);
            self.event(EventKind::Normal, "RolloutCancelled", reason);
        }
        self.next.canary_weight = 0;
        self.next.failed_checks = 0;
        self.next.blocked = None;
        self.enter(
            Phase::Stable,
            format!("model {} is stable", self.target.version),
        );
        self.ignore_action("the rollout was cancelled by a spec change");
        self.settle_stable(s);
    }

    fn blocked(&mut self, s: &Settings) {
        self.next.canary_weight = 0;
        match self.take_action() {
            Some(ManualAction::Retry) => {
                self.event(
                    EventKind::Normal,
                    "RetryRequested",
                    format!("retrying model {} on request", self.target.version),
                );
                self.next.blocked = None;
                self.start(s, false);
            }
            Some(ManualAction::Promote) => {
                self.next.blocked = None;
                self.start(s, true);
            }
            Some(ManualAction::Abort) => {
                self.event(
                    EventKind::Warning,
                    "ActionIgnored",
                    format!(
                        "{ACTION_ANNOTATION}=abort ignored: model {} is not rolling out",
                        self.target.version
                    ),
                );
                self.stalled = true;
            }
            Some(ManualAction::Unknown(v)) => {
                self.report_unknown(&v);
                self.stalled = true;
            }
            None => self.stalled = true,
        }
    }

    fn new_target(&mut self, s: &Settings) {
        if let Some(old) = self.next.rollout.take()
            && old.rolling_back_at.is_none()
        {
            let reason = format!(
                "spec changed during the rollout of {}; restarting with {}",
                old.version, self.target.version
            );
            let sha = self
                .next
                .canary
                .as_ref()
                .map(|c| c.model_sha256.clone())
                .unwrap_or_default();
            self.push_history(&old.version, &old.image, &sha, Outcome::Superseded, &reason);
            self.event(EventKind::Normal, "RolloutRestarted", reason);
            // A promotion in flight already moved the stable track; keep what it serves.
        }
        self.next.blocked = None;
        match self.take_action() {
            Some(ManualAction::Promote) => self.start(s, true),
            Some(ManualAction::Abort) => {
                let reason =
                    format!("aborted by {ACTION_ANNOTATION}=abort before the canary started");
                self.refuse_target(Phase::RolledBack, Outcome::RolledBack, "RolledBack", reason);
            }
            Some(ManualAction::Retry) | None => self.start(s, false),
            Some(ManualAction::Unknown(v)) => {
                self.report_unknown(&v);
                self.start(s, false);
            }
        }
    }

    fn block(&mut self, outcome: Outcome, reason: &str) {
        self.next.blocked = Some(BlockedTarget {
            version: self.target.version.clone(),
            image: self.target.image.clone(),
            fingerprint: self.fingerprint.clone(),
            outcome,
            reason: reason.to_owned(),
        });
    }

    /// Ends the spec's target without a canary: blocked until the spec changes or a retry,
    /// recorded in history, announced by Event and notification, weight 0, stalled.
    fn refuse_target(
        &mut self,
        phase: Phase,
        outcome: Outcome,
        event_reason: &'static str,
        reason: String,
    ) {
        self.block(outcome, &reason);
        let (version, image, sha) = (
            self.target.version.clone(),
            self.target.image.clone(),
            self.target.model_sha256.clone(),
        );
        self.push_history(&version, &image, &sha, outcome, &reason);
        self.event(EventKind::Warning, event_reason, reason.clone());
        self.announce(outcome, &reason);
        self.next.canary_weight = 0;
        self.enter(phase, reason);
        self.stalled = true;
    }

    fn announce(&mut self, outcome: Outcome, reason: &str) {
        self.announcements.push(Announcement {
            outcome,
            version: self.target.version.clone(),
            reason: reason.to_owned(),
            figures: self.next.last_analysis.clone(),
        });
    }

    /// Starts a rollout of the spec's target (or promotes it directly when `promote_now`).
    fn start(&mut self, s: &Settings, promote_now: bool) {
        self.next.failed_checks = 0;
        self.next.last_analysis = None;
        if !promote_now
            && let (Some(rmse), Some(max)) =
                (self.spec.model.offline_rmse, self.spec.canary.max_rmse)
            && rmse > max
        {
            let reason = format!(
                "model {} offline RMSE {rmse:.4} is above canary.maxRmse {max:.4}; no canary started",
                self.target.version
            );
            self.refuse_target(Phase::Rejected, Outcome::Rejected, "Rejected", reason);
            return;
        }
        let mut canary = self.target.clone();
        canary.ready_replicas = 0;
        self.next.canary = Some(canary);
        self.next.rollout = Some(RolloutProgress {
            version: self.target.version.clone(),
            image: self.target.image.clone(),
            fingerprint: self.fingerprint.clone(),
            started_at: Time(self.now),
            step: 0,
            canary_ready_at: None,
            analysis_started_at: None,
            last_check_at: None,
            canary_unready_since: None,
            canary_unready_seconds: 0,
            canary_restarts: 0,
            soak_check_at: None,
            promoting_at: None,
            rolling_back_at: None,
            reason: None,
            previous_stable: None,
            step_started_at: None,
            judged_steps: Vec::new(),
            expected_pass: None,
            expected_pass_seconds: None,
            expected_in_time: None,
        });
        if promote_now {
            self.promote(
                s,
                &format!("promoted by {ACTION_ANNOTATION}=promote without canary checks"),
            );
            return;
        }
        self.next.canary_weight = 0;
        let stable_version = self
            .next
            .stable
            .as_ref()
            .map(|t| t.version.clone())
            .unwrap_or_default();
        self.event(
            EventKind::Normal,
            "CanaryStarted",
            format!(
                "starting canary {} beside stable {stable_version}",
                self.target.version
            ),
        );
        self.enter(
            Phase::Progressing,
            format!("waiting for canary {} pods", self.target.version),
        );
        self.progressing(s);
    }

    fn in_rollout(&mut self, s: &Settings) {
        let phase = self.next.phase;
        let in_flight = matches!(
            phase,
            Phase::Progressing | Phase::Soaking | Phase::Analyzing
        );
        match self.action.clone() {
            Some(ManualAction::Abort) if in_flight || phase == Phase::Promoting => {
                self.take_action();
                self.rollback(&format!("aborted by {ACTION_ANNOTATION}=abort"));
                return;
            }
            Some(ManualAction::Promote) if in_flight => {
                self.take_action();
                self.promote(
                    s,
                    &format!(
                        "promoted by {ACTION_ANNOTATION}=promote, skipping the remaining checks"
                    ),
                );
                return;
            }
            Some(_) => self.ignore_action(&format!("not applicable in phase {phase}")),
            None => {}
        }
        if in_flight && (self.canary_crashing() || self.route_refused(phase)) {
            return;
        }
        match phase {
            Phase::Progressing => self.progressing(s),
            Phase::Soaking => self.soaking(s),
            Phase::Analyzing => self.analyzing(s),
            Phase::Promoting => self.promoting(s),
            Phase::RollingBack => self.rolling_back(),
            // A rollout record in any other phase means status was edited by hand or the
            // operator stopped between two writes: resume from the canary's state.
            Phase::Initializing
            | Phase::Stable
            | Phase::Succeeded
            | Phase::RolledBack
            | Phase::Rejected
            | Phase::Failed => {
                self.enter(Phase::Progressing, "resuming the rollout".to_owned());
                self.progressing(s);
            }
        }
    }

    /// True (after starting a rollback) when the canary's containers restarted more than
    /// `maxRestarts` times.
    fn canary_crashing(&mut self) -> bool {
        let restarts = self.observed.canary_restarts;
        let seen = &mut self.rollout_mut().canary_restarts;
        *seen = (*seen).max(restarts);
        let max = self.spec.canary.max_restarts;
        if restarts > max {
            let reason = format!(
                "canary {} containers restarted {restarts} times (maxRestarts {max})",
                self.target.version
            );
            self.rollback(&reason);
            return true;
        }
        false
    }

    /// True when the router refuses the route: the rollout waits (no soak or check can see
    /// traffic that cannot come), and a step's inconclusive budget restarts afterwards.
    fn route_refused(&mut self, phase: Phase) -> bool {
        if self.observed.route_problem.is_none() {
            return false;
        }
        if phase == Phase::Analyzing {
            self.rollout_mut().analysis_started_at = Some(Time(self.now));
        }
        true
    }

    fn rollout(&self) -> &RolloutProgress {
        self.next.rollout.as_ref().expect("in a rollout")
    }

    fn rollout_mut(&mut self) -> &mut RolloutProgress {
        self.next.rollout.as_mut().expect("in a rollout")
    }

    fn canary_ready(&self) -> bool {
        let Some(target) = self.next.canary.as_ref() else {
            return false;
        };
        self.observed
            .canary
            .as_ref()
            .is_some_and(|d| d.serves(target))
    }

    fn progressing(&mut self, s: &Settings) {
        if self.canary_ready() {
            let weight = steps(self.spec)[0];
            self.next.canary_weight = weight;
            self.rollout_mut().canary_ready_at = Some(Time(self.now));
            self.rollout_mut().step_started_at = Some(self.settled(s));
            self.rollout_mut().canary_unready_since = None;
            self.event(
                EventKind::Normal,
                "CanaryReady",
                format!(
                    "canary {} ready; weight {weight}%, soaking {}",
                    self.target.version,
                    fmt_duration(s.soak)
                ),
            );
            self.enter(
                Phase::Soaking,
                format!("canary at {weight}%, soaking {}", fmt_duration(s.soak)),
            );
            self.soaking(s);
            return;
        }
        self.next.canary_weight = 0;
        let started = self.rollout().started_at.clone();
        if self.deadline_passed(&started, s.progress_deadline) {
            let reason = format!(
                "canary {} not ready within progressDeadline {} ({})",
                self.target.version,
                fmt_duration(s.progress_deadline),
                Self::ready_figure(self.observed.canary.as_ref())
            );
            self.rollback(&reason);
        }
    }

    /// True (after scheduling a rollback) when an unready canary ran out of time: unready
    /// spells since it first became ready add up against `progressDeadline`.
    fn canary_lost(&mut self, s: &Settings) -> bool {
        let now = self.now;
        if self.canary_ready() {
            let r = self.rollout_mut();
            if let Some(since) = r.canary_unready_since.take() {
                let spell = i64::try_from(elapsed(&since, now).as_secs()).unwrap_or(i64::MAX);
                r.canary_unready_seconds = r.canary_unready_seconds.saturating_add(spell);
            }
            return false;
        }
        let spent =
            Duration::from_secs(u64::try_from(self.rollout().canary_unready_seconds).unwrap_or(0));
        let budget = s.progress_deadline.saturating_sub(spent);
        let since = if let Some(t) = self.rollout().canary_unready_since.clone() {
            t
        } else {
            self.event(
                EventKind::Warning,
                "CanaryUnready",
                format!(
                    "canary {} lost readiness ({}); rollback in {} unless it recovers",
                    self.target.version,
                    Self::ready_figure(self.observed.canary.as_ref()),
                    fmt_duration(budget)
                ),
            );
            self.rollout_mut().canary_unready_since = Some(Time(self.now));
            Time(self.now)
        };
        if self.deadline_passed(&since, budget) {
            let reason = format!(
                "canary {} unready for progressDeadline {} in all ({})",
                self.target.version,
                fmt_duration(s.progress_deadline),
                Self::ready_figure(self.observed.canary.as_ref())
            );
            self.rollback(&reason);
            return true;
        }
        false
    }

    fn soaking(&mut self, s: &Settings) {
        if self.canary_lost(s) {
            return;
        }
        let ready_at = self
            .rollout()
            .canary_ready_at
            .clone()
            .unwrap_or(Time(self.now));
        if self.deadline_passed(&ready_at, s.soak) {
            self.rollout_mut().analysis_started_at = Some(Time(self.now));
            self.event(
                EventKind::Normal,
                "AnalysisStarted",
                format!(
                    "soak of {} over; checking canary {} every {}",
                    fmt_duration(s.soak),
                    self.target.version,
                    fmt_duration(s.interval)
                ),
            );
            self.enter(
                Phase::Analyzing,
                format!(
                    "checking canary {} every {}",
                    self.target.version,
                    fmt_duration(s.interval)
                ),
            );
            self.analyzing(s);
            return;
        }
        self.soak_guard(s, &ready_at);
    }

    /// The fail-fast check of the soak: every `interval`, a canary answering errors above
    /// `maxErrorRate` (on `minRequests`) is rolled back without waiting for the soak to end.
    fn soak_guard(&mut self, s: &Settings, ready_at: &Time) {
        let last = self
            .rollout()
            .soak_check_at
            .clone()
            .unwrap_or_else(|| ready_at.clone());
        if !self.deadline_passed(&last, s.interval) {
            return;
        }
        let Some(analysis) = self.observed.analysis.clone() else {
            self.analysis_needed = Some(self.analysis_request(s));
            self.wake_in(ANALYSIS_PENDING_RETRY);
            return;
        };
        self.rollout_mut().soak_check_at = Some(Time(self.now));
        self.wake_in(s.interval);
        let c = &self.spec.canary;
        if let Some(reason) = fail_fast(&analysis, c.max_error_rate, c.min_requests) {
            self.next.last_analysis =
                Some(AnalysisRecord::from_analysis(&analysis, Time(self.now)));
            self.rollback(&format!("fail-fast during the soak: {reason}"));
            return;
        }
        // The comparison runs from the first second of traffic: a regression it finds ends
        // the soak as soon as the evidence allows (its guarantee holds at any look).
        if analysis.comparison.is_some() {
            self.next.last_analysis =
                Some(AnalysisRecord::from_analysis(&analysis, Time(self.now)));
            self.forecast(s, &analysis, s.soak);
            self.warn_on_mismatch(&analysis);
            if regressed(&analysis) {
                self.rollback(&format!("during the soak: {}", analysis.reason));
            }
        }
    }

    /// When a weight set now is in force everywhere: the judge counts from one `interval`
    /// later (at least 10 s, at most 30 s), because routers reload, new pods join their
    /// upstreams and Prometheus discovers them in the meantime — counting that stretch would
    /// see the old split and report a sample-ratio mismatch that is only the change taking
    /// effect.
    fn settled(&self, s: &Settings) -> Time {
        let settle = s
            .interval
            .clamp(Duration::from_secs(10), Duration::from_secs(30));
        let settle = jiff::SignedDuration::try_from(settle).unwrap_or_default();
        Time(self.now.checked_add(settle).unwrap_or(self.now))
    }

    /// The plan before the evidence: at a step's first compared check (with quality judged,
    /// the first one at which stable has [`FORECAST_MIN_SCORED`] scored lists), from stable's traffic
    /// so far, when an identical canary is expected to pass. Beyond the time the step has
    /// (`soak` before checks, plus the inconclusive budget) it raises `DecisionUnlikely`.
    fn forecast(&mut self, s: &Settings, analysis: &Analysis, soak: Duration) {
        let (Some(step), Some(request)) = (analysis.step, self.judge_request(s)) else {
            return;
        };
        let rollout = self.rollout();
        if rollout.expected_pass.is_some() {
            return;
        }
        let observed = request.since.as_secs_f64();
        if observed < 1.0 {
            return; // the step has not settled yet: nothing to project from
        }
        if request.config.judges_quality() && step.stable.scored < FORECAST_MIN_SCORED {
            // Lists are scored an attribution window after they are served: projecting from
            // the first minutes of a step would see almost no scored lists and forecast never.
            return;
        }
        let expected = forecast_pass(&request.config, step.weight, &step.stable, observed);
        let available = soak + s.inconclusive_budget(self.spec.canary.failure_limit);
        let r = self.rollout_mut();
        r.expected_pass = Some(expected.map_or_else(
            || "not within 30d".to_owned(),
            |secs| fmt_duration(Duration::from_secs_f64(secs)),
        ));
        r.expected_pass_seconds = expected.map(|secs| secs as i64);
        let in_time = expected.is_some_and(|secs| secs <= available.as_secs_f64());
        r.expected_in_time = Some(in_time);
        if !in_time {
            let when = r.expected_pass.clone().unwrap_or_default();
            self.event(
                EventKind::Warning,
                "DecisionUnlikely",
                format!(
                    "at {}% and today's stable traffic an identical canary is expected to pass \
                     after {when}, but the step has {} (soak and inconclusive budget); \
                     it will end by spec.canary.judge.onInconclusive",
                    step.weight,
                    fmt_duration(available)
                ),
            );
        }
    }

    /// `DecisionInTime` while a judged step with a forecast soaks or is analysed: `False`
    /// (reason `DecisionUnlikely`) when an identical canary is not expected to pass within
    /// the step's time, so dashboards and `kubectl wait` see it, not only the Event.
    fn decision_condition(&self) -> Option<Condition> {
        if !matches!(self.next.phase, Phase::Soaking | Phase::Analyzing) {
            return None;
        }
        let rollout = self.next.rollout.as_ref()?;
        let in_time = rollout.expected_in_time?;
        let expected = rollout.expected_pass.as_deref().unwrap_or("-");
        let (status, reason, message) = if in_time {
            (
                "True",
                "ExpectedInTime",
                format!("an identical canary is expected to pass after {expected}"),
            )
        } else {
            (
                "False",
                "DecisionUnlikely",
                format!(
                    "an identical canary is expected to pass after {expected}, beyond the \
                     step's soak and inconclusive budget"
                ),
            )
        };
        let last = self
            .release
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == "DecisionInTime" && c.status == status)
            })
            .map_or(Time(self.now), |c| c.last_transition_time.clone());
        Some(Condition {
            type_: "DecisionInTime".to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: self.release.metadata.generation,
            last_transition_time: last,
        })
    }

    /// A broken traffic split makes every comparison invalid: say so loudly.
    fn warn_on_mismatch(&mut self, analysis: &Analysis) {
        if analysis.comparison.as_ref().is_some_and(|r| r.mismatch) {
            self.event(
                EventKind::Warning,
                "SampleRatioMismatch",
                analysis.reason.clone(),
            );
        }
    }

    fn analyzing(&mut self, s: &Settings) {
        if self.canary_lost(s) {
            return;
        }
        if let Some(last) = self.rollout().last_check_at.clone()
            && !self.deadline_passed(&last, s.interval)
        {
            return;
        }
        let Some(analysis) = self.observed.analysis.clone() else {
            self.analysis_needed = Some(self.analysis_request(s));
            self.wake_in(ANALYSIS_PENDING_RETRY);
            return;
        };
        let record = AnalysisRecord::from_analysis(&analysis, Time(self.now));
        self.next.last_analysis = Some(record);
        let now = self.now;
        let previous_check = self.rollout_mut().last_check_at.replace(Time(now));
        if analysis.verdict == Verdict::Inconclusive && self.observed.metrics_unreachable {
            self.pause_analysis_clock(s, previous_check.as_ref(), &analysis.reason);
            return;
        }
        self.forecast(s, &analysis, Duration::ZERO);
        self.warn_on_mismatch(&analysis);
        if regressed(&analysis) {
            self.event(
                EventKind::Warning,
                "AnalysisFailed",
                format!("regression detected: {}", analysis.reason),
            );
            self.rollback(&analysis.reason);
            return;
        }
        match analysis.verdict {
            Verdict::Pass => self.check_passed(s, &analysis),
            Verdict::Fail => {
                self.next.failed_checks += 1;
                let (failed, limit) = (self.next.failed_checks, self.spec.canary.failure_limit);
                self.event(
                    EventKind::Warning,
                    "AnalysisFailed",
                    format!("check {failed}/{limit} failed: {}", analysis.reason),
                );
                if failed >= limit {
                    self.rollback(&format!(
                        "{failed} of {limit} allowed checks failed; last: {}",
                        analysis.reason
                    ));
                } else {
                    self.next.message = Some(format!(
                        "check {failed}/{limit} failed: {}",
                        analysis.reason
                    ));
                    self.wake_in(s.interval);
                }
            }
            Verdict::Inconclusive => {
                self.event(
                    EventKind::Warning,
                    "AnalysisInconclusive",
                    format!("check inconclusive: {}", analysis.reason),
                );
                let started = self
                    .rollout()
                    .analysis_started_at
                    .clone()
                    .unwrap_or(Time(self.now));
                let budget = s.inconclusive_budget(self.spec.canary.failure_limit);
                let promote_undecided = self
                    .spec
                    .canary
                    .judge
                    .as_ref()
                    .is_some_and(|j| j.on_inconclusive == InconclusiveAction::Promote)
                    && analysis.guardrails == Verdict::Pass
                    && analysis.comparison.as_ref().is_some_and(|r| !r.mismatch);
                if self.deadline_passed(&started, budget) && promote_undecided {
                    let mut accepted = analysis.clone();
                    accepted.reason = format!(
                        "undecided after {}, guardrails hold and judge.onInconclusive is Promote: {}",
                        fmt_duration(budget),
                        analysis.reason
                    );
                    self.check_passed(s, &accepted);
                } else if self.deadline_passed(&started, budget) {
                    self.rollback(&format!(
                        "no passing check within {} of analysis; last: {}",
                        fmt_duration(budget),
                        analysis.reason
                    ));
                } else {
                    self.next.message = Some(format!("check inconclusive: {}", analysis.reason));
                    self.wake_in(s.interval);
                }
            }
        }
    }

    /// A check that could not reach the metrics backend spends none of the inconclusive
    /// budget: the step's start moves forward by the time since the previous check.
    fn pause_analysis_clock(&mut self, s: &Settings, previous_check: Option<&Time>, why: &str) {
        let paused = previous_check.map_or(Duration::ZERO, |t| elapsed(t, self.now));
        let now = self.now;
        let r = self.rollout_mut();
        let started = r.analysis_started_at.clone().unwrap_or(Time(now));
        let moved = started
            .0
            .checked_add(jiff::SignedDuration::try_from(paused).unwrap_or_default())
            .unwrap_or(started.0);
        r.analysis_started_at = Some(Time(moved.min(now)));
        self.event(
            EventKind::Warning,
            "AnalysisPaused",
            format!("analysis clock paused: {why}"),
        );
        self.next.message = Some(format!("analysis clock paused: {why}"));
        self.wake_in(s.interval);
    }

    fn check_passed(&mut self, s: &Settings, analysis: &Analysis) {
        let steps = steps(self.spec);
        let step = usize::try_from(self.rollout().step).unwrap_or(0);
        if step + 1 < steps.len() {
            let weight = steps[step + 1];
            let now = self.now;
            let settled = self.settled(s);
            let r = self.rollout_mut();
            r.step += 1;
            r.analysis_started_at = Some(Time(now));
            // The judge's counts restart with the new weight; the finished step's are kept.
            r.step_started_at = Some(settled);
            r.expected_pass = None;
            r.expected_pass_seconds = None;
            r.expected_in_time = None;
            if let Some(counts) = analysis.step {
                r.judged_steps.push(counts);
            }
            self.next.canary_weight = weight;
            self.event(
                EventKind::Normal,
                "StepAdvanced",
                format!(
                    "check passed ({}); canary weight {weight}%",
                    analysis.reason
                ),
            );
            self.next.message = Some(format!(
                "canary at {weight}% (step {} of {})",
                step + 2,
                steps.len()
            ));
            self.wake_in(s.interval);
        } else {
            self.event(
                EventKind::Normal,
                "AnalysisPassed",
                format!("check passed: {}", analysis.reason),
            );
            self.promote(s, &format!("canary checks passed: {}", analysis.reason));
        }
    }

    fn promote(&mut self, s: &Settings, reason: &str) {
        let mut stable = self.target.clone();
        stable.ready_replicas = self.next.stable.as_ref().map_or(0, |t| t.ready_replicas);
        let previous = self.next.stable.replace(stable);
        let now = self.now;
        let r = self.rollout_mut();
        r.promoting_at = Some(Time(now));
        r.reason = Some(reason.to_owned());
        r.previous_stable = previous;
        self.event(
            EventKind::Normal,
            "Promoting",
            format!("stable track takes model {}: {reason}", self.target.version),
        );
        self.enter(
            Phase::Promoting,
            format!("stable track moving to model {}", self.target.version),
        );
        self.promoting(s);
    }

    fn promoting(&mut self, s: &Settings) {
        let target = self.target.clone();
        if self.stable_serves(&target) {
            let reason = self
                .rollout()
                .reason
                .clone()
                .unwrap_or_else(|| "canary checks passed".to_owned());
            self.next.rollout = None;
            self.next.canary_weight = 0;
            self.push_history(
                &target.version,
                &target.image,
                &target.model_sha256,
                Outcome::Promoted,
                &reason,
            );
            self.event(
                EventKind::Normal,
                "Promoted",
                format!(
                    "model {} is stable; canary weight 0, canary scaled to 0",
                    target.version
                ),
            );
            self.announce(Outcome::Promoted, &reason);
            self.enter(
                Phase::Succeeded,
                format!("model {} promoted: {reason}", target.version),
            );
        } else {
            // The canary keeps its weight while the stable pods roll to the new model;
            // a watch on the stable Deployment wakes us.
            let promoting_at = self
                .rollout()
                .promoting_at
                .clone()
                .unwrap_or(Time(self.now));
            if self.deadline_passed(&promoting_at, s.progress_deadline) {
                self.stalled = true;
                self.next.message = Some(format!(
                    "stable pods not serving model {} within progressDeadline ({})",
                    target.version,
                    Self::ready_figure(self.observed.stable.as_ref())
                ));
            }
        }
    }

    fn rollback(&mut self, reason: &str) {
        self.next.canary_weight = 0;
        let now = self.now;
        let r = self.rollout_mut();
        r.rolling_back_at = Some(Time(now));
        r.reason = Some(reason.to_owned());
        // A promotion in flight is undone: the stable track returns to the model it had.
        if let Some(previous) = r.previous_stable.take() {
            self.next.stable = Some(previous);
        }
        self.block(Outcome::RolledBack, reason);
        let (v, i, sha) = (
            self.target.version.clone(),
            self.target.image.clone(),
            self.target.model_sha256.clone(),
        );
        self.push_history(&v, &i, &sha, Outcome::RolledBack, reason);
        self.event(
            EventKind::Warning,
            "RollingBack",
            format!("rolling back canary {v}: {reason}; weight 0, canary scaled to 0"),
        );
        self.announce(Outcome::RolledBack, reason);
        self.enter(Phase::RollingBack, format!("rolling back {v}: {reason}"));
        self.rolling_back();
    }

    fn rolling_back(&mut self) {
        self.next.canary_weight = 0;
        let drained = self
            .observed
            .canary
            .as_ref()
            .is_none_or(DeploymentState::drained);
        if drained {
            let reason = self.rollout().reason.clone().unwrap_or_default();
            self.next.rollout = None;
            self.enter(
                Phase::RolledBack,
                format!("model {} rolled back: {reason}", self.target.version),
            );
            self.stalled = true;
        }
    }

    // --- output -------------------------------------------------------------------

    fn analysis_request(&self, s: &Settings) -> AnalysisRequest {
        AnalysisRequest {
            query: AnalysisQuery {
                address: self.spec.canary.prometheus.address.clone(),
                namespace: self.release.namespace(),
                release: self.release.name_any(),
                track: Track::Canary,
                window: s.interval,
            },
            thresholds: Thresholds {
                max_average_latency: s.max_average_latency,
                max_p99_latency: s.max_p99_latency,
                max_error_rate: self.spec.canary.max_error_rate,
                min_requests: u64::try_from(self.spec.canary.min_requests).unwrap_or(0),
            },
            judge: self.judge_request(s),
        }
    }

    /// The comparison's part of a check: the judge settings, the current step's range and
    /// weight, and the finished steps' counts from status.
    fn judge_request(&self, s: &Settings) -> Option<JudgeRequest> {
        let spec = self.spec.canary.judge.as_ref()?;
        let rollout = self.next.rollout.as_ref()?;
        let started = rollout
            .step_started_at
            .as_ref()
            .or(rollout.canary_ready_at.as_ref())?;
        let metric = |metric, m: &crate::crd::JudgeMetricSpec, floor| {
            m.enabled.then_some(MetricConfig {
                metric,
                tolerance: m.tolerance,
                floor,
            })
        };
        let error_floor = spec.errors.floor.unwrap_or(self.spec.canary.max_error_rate);
        let metrics = [
            metric(
                Metric::Errors,
                &spec.errors,
                (error_floor > 0.0).then_some(error_floor),
            ),
            metric(
                Metric::SlowRequests,
                &spec.slow_requests,
                spec.slow_requests.floor,
            ),
            metric(Metric::Score, &spec.score, None),
            metric(Metric::Hits, &spec.hits, None),
        ];
        Some(JudgeRequest {
            config: JudgeConfig {
                alpha: spec.alpha,
                metrics: metrics.into_iter().flatten().collect(),
            },
            since: elapsed(started, self.now),
            weight: self.next.canary_weight,
            finished: rollout.judged_steps.clone(),
            slow_bound_seconds: s.slow_bound_seconds?,
            versions: TrackVersions {
                canary: self.next.canary.as_ref()?.version.clone(),
                stable: self.next.stable.as_ref()?.version.clone(),
            },
        })
    }

    fn finish(mut self) -> Plan {
        // Unconsumed actions (e.g. an unknown value in a phase that never looked) are reported.
        if self.action.is_some() && !self.action_used {
            self.ignore_action("nothing to act on");
        }
        // The annotation stays; status records the value acted on (or forgets it once the
        // annotation is gone, so the same value set again fires again).
        self.next.last_handled_action = self.release.annotations().get(ACTION_ANNOTATION).cloned();
        if let Some(problem) = self.observed.route_problem.clone() {
            self.stalled = true;
            self.next.message = Some(format!("traffic cannot reach the release: {problem}"));
        }
        let stable_ready = self
            .next
            .stable
            .as_ref()
            .is_some_and(|t| self.stable_serves(t))
            && self.observed.route_problem.is_none();
        let stable_pods = self.stable_pods();
        if let Some(stable) = self.next.stable.as_mut() {
            stable.replicas = stable_pods;
            stable.ready_replicas = self
                .observed
                .stable
                .as_ref()
                .map_or(0, |d| d.ready_replicas);
        }
        let rollout_running = self
            .next
            .rollout
            .as_ref()
            .is_some_and(|r| r.rolling_back_at.is_none());
        let provider = self.spec.traffic.provider;
        let canary_weight = self.next.canary_weight.max(steps(self.spec)[0]);
        let canary_pods = if rollout_running {
            canary_replicas(provider, stable_pods, canary_weight)
        } else {
            0
        };
        if let Some(canary) = self.next.canary.as_mut() {
            canary.replicas = canary_pods;
            canary.ready_replicas = self
                .observed
                .canary
                .as_ref()
                .map_or(0, |d| d.ready_replicas);
        }
        self.next.traffic_provider = Some(provider);
        self.next.observed_generation = self.release.metadata.generation;
        self.next.conditions = conditions(
            &self
                .release
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default(),
            self.next.phase,
            stable_ready,
            self.stalled,
            self.next.message.as_deref().unwrap_or(""),
            self.release.metadata.generation,
            self.now,
        );
        if let Some(c) = self.decision_condition() {
            self.next.conditions.push(c);
        }
        let children = self.children(stable_pods, rollout_running, canary_weight);
        Plan {
            analysis_needed: self.analysis_needed,
            status: self.next,
            children,
            events: self.events,
            announcements: self.announcements,
            deleting: false,
            requeue_after: self.wake,
        }
    }

    /// Stable pods: the spec's count, or what the autoscaler set (observed) when one owns it.
    fn stable_pods(&self) -> i32 {
        match (&self.spec.autoscaling, &self.observed.stable) {
            (Some(a), Some(d)) => d
                .replicas
                .clamp(a.min_replicas.max(1), a.max_replicas.max(1)),
            (Some(a), None) => a.min_replicas.max(1),
            (None, _) => self.spec.replicas,
        }
    }

    fn children(&self, stable_pods: i32, rollout_running: bool, canary_weight: i32) -> Children {
        let scaling = self.spec.autoscaling.as_ref();
        let provider = self.spec.traffic.provider;
        let canary_scaled = rollout_running && scaling.is_some_and(|a| a.canary);
        Children {
            stable: self.next.stable.as_ref().map(|t| WorkloadPlan {
                target: t.clone(),
                replicas: stable_pods,
                autoscaled: scaling.is_some(),
            }),
            canary: self.next.canary.as_ref().map(|t| WorkloadPlan {
                target: t.clone(),
                replicas: t.replicas,
                autoscaled: canary_scaled,
            }),
            canary_weight: self.next.canary_weight,
            stable_scaler: scaling.map(|a| ScalerPlan {
                min_replicas: a.min_replicas.max(1),
                max_replicas: a.max_replicas.max(a.min_replicas).max(1),
                target_cpu_utilization_percent: a.target_cpu_utilization_percent,
            }),
            canary_scaler: scaling.filter(|a| a.canary).map(|a| {
                let floor = canary_replicas(provider, stable_pods, canary_weight);
                ScalerPlan {
                    min_replicas: floor,
                    max_replicas: canary_replicas(provider, a.max_replicas, canary_weight)
                        .max(floor),
                    target_cpu_utilization_percent: a.target_cpu_utilization_percent,
                }
            }),
            retire: retirements(provider, &self.observed.other_routes),
        }
    }
}

/// Routing objects of other providers: first their canary route goes to weight 0, then,
/// once it sends nothing, they are deleted.
fn retirements(spec_provider: TrafficProvider, live: &[LiveRoutes]) -> Vec<Retirement> {
    live.iter()
        .filter(|r| r.provider != spec_provider)
        .map(|r| match r.canary_weight {
            Some(w) if w > 0 => Retirement::ZeroWeight(r.provider),
            _ => Retirement::Delete(r.provider),
        })
        .collect()
}

/// True when the canary-versus-stable comparison found a regression (roll back at once;
/// guardrail failures count towards `failureLimit` instead).
fn regressed(analysis: &Analysis) -> bool {
    analysis
        .comparison
        .as_ref()
        .is_some_and(|r| r.verdict == Verdict::Fail)
}

/// Why a check run during the soak ends the rollout at once: the canary answers errors
/// above `maxErrorRate` on at least `minRequests` requests. Latency is judged only after
/// the soak.
pub fn fail_fast(analysis: &Analysis, max_error_rate: f64, min_requests: i64) -> Option<String> {
    let m = &analysis.metrics;
    let (rate, requests) = (m.error_rate?, m.requests?);
    (requests >= min_requests as f64 && rate > max_error_rate).then(|| {
        format!(
            "error rate {:.1}% over {requests:.0} requests is above maxErrorRate {:.1}%",
            rate * 100.0,
            max_error_rate * 100.0
        )
    })
}

/// kstatus-compatible conditions for `phase`, keeping `lastTransitionTime` of conditions
/// whose status did not change.
fn conditions(
    previous: &[Condition],
    phase: Phase,
    stable_ready: bool,
    stalled: bool,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let moving = matches!(
        phase,
        Phase::Initializing
            | Phase::Progressing
            | Phase::Soaking
            | Phase::Analyzing
            | Phase::Promoting
            | Phase::RollingBack
    );
    // Soaking and Analyzing only wait for a timer: `Reconciling` stays False there, so
    // kstatus readers (Flux `wait: true`, cli-utils) see the release as current during a
    // 12 h soak instead of timing out; `Progressing` still says a rollout runs.
    let waiting_on_children = matches!(
        phase,
        Phase::Initializing | Phase::Progressing | Phase::Promoting | Phase::RollingBack
    );
    let settled = matches!(phase, Phase::Stable | Phase::Succeeded);
    let bad_end = matches!(phase, Phase::RolledBack | Phase::Rejected | Phase::Failed);
    let ready = settled && stable_ready;
    let degraded = bad_end || (settled && !stable_ready) || (settled && stalled);
    let reason = phase.as_str();
    let wanted = [
        (
            "Ready",
            ready,
            if ready {
                reason
            } else if settled {
                "StableNotReady"
            } else {
                reason
            },
        ),
        ("Progressing", moving, reason),
        ("Reconciling", waiting_on_children && !stalled, reason),
        (
            "Degraded",
            degraded,
            if degraded && settled {
                "StableNotReady"
            } else {
                reason
            },
        ),
        ("Stalled", stalled || bad_end, reason),
    ];
    wanted
        .into_iter()
        .map(|(type_, on, reason)| {
            let status = if on { "True" } else { "False" };
            let last = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map_or(Time(now), |c| c.last_transition_time.clone());
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                observed_generation: generation,
                last_transition_time: last,
            }
        })
        .collect()
}
