//! Table and scenario tests for the pure rollout `plan`: every transition of the rollout
//! rules, clock edges, annotations, and restarts from each phase (status round-tripped
//! through JSON, as a new operator process would read it).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use movrek_operator::analysis::{Analysis, CanaryMetrics, Verdict};
use movrek_operator::crd::{
    ACTION_ANNOTATION, DurationString, EventRange, FairnessGap, ModelProvenance, ModelSpec,
    Outcome, Phase, RecommenderRelease, RecommenderReleaseSpec, TrafficProvider,
};
use movrek_operator::plan::{
    Children, DeploymentState, EventKind, Observed, Plan, canary_replicas, plan,
};

const SOAK: i64 = 600;
const INTERVAL: i64 = 60;
const DEADLINE: i64 = 300;

fn at(secs: i64) -> Timestamp {
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    t0.checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn spec(version: &str) -> RecommenderReleaseSpec {
    let mut spec: RecommenderReleaseSpec = serde_json::from_value(serde_json::json!({
        "image": "img:1",
        "model": {"version": version, "uri": format!("file:///m/{version}"), "sha256": "a".repeat(64)},
    }))
    .unwrap();
    spec.canary.soak_duration = DurationString::from("10m");
    spec.canary.interval = DurationString::from("1m");
    spec.canary.progress_deadline = DurationString::from("5m");
    spec
}

fn release(version: &str) -> RecommenderRelease {
    let mut rr = RecommenderRelease::new("movies", spec(version));
    rr.metadata.namespace = Some("prod".into());
    rr.metadata.generation = Some(1);
    rr
}

fn analysis(verdict: Verdict) -> Analysis {
    Analysis {
        metrics: CanaryMetrics {
            average_latency_seconds: Some(if verdict == Verdict::Fail { 0.8 } else { 0.1 }),
            p99_latency_seconds: None,
            error_rate: Some(0.0),
            requests: Some(if verdict == Verdict::Inconclusive {
                3.0
            } else {
                500.0
            }),
        },
        verdict,
        reason: format!("test verdict {verdict}"),
        comparison: None,
        step: None,
        guardrails: verdict,
    }
}

/// A canary that served too few requests for any verdict.
fn quiet() -> Analysis {
    Analysis {
        metrics: CanaryMetrics::default(),
        verdict: Verdict::Inconclusive,
        reason: "no data".to_owned(),
        comparison: None,
        step: None,
        guardrails: Verdict::Inconclusive,
    }
}

/// A tiny cluster: the release and its two Deployments, which converge on request.
struct World {
    rr: RecommenderRelease,
    stable: Option<DeploymentState>,
    canary: Option<DeploymentState>,
    children: Option<Children>,
    /// What else the controller observes (restarts, routes, Prometheus reachability).
    observed: Observed,
}

fn serving(version: &str, image: &str, replicas: i32) -> DeploymentState {
    DeploymentState {
        generation: 1,
        observed_generation: 1,
        replicas,
        ready_replicas: replicas,
        updated_replicas: replicas,
        current_replicas: replicas,
        model_version: Some(version.to_owned()),
        image: Some(image.to_owned()),
    }
}

impl World {
    fn new(version: &str) -> Self {
        Self {
            rr: release(version),
            stable: None,
            canary: None,
            children: None,
            observed: Observed::default(),
        }
    }

    fn phase(&self) -> Phase {
        self.rr.status.as_ref().unwrap().phase
    }

    /// One reconcile: plan, run the analysis if asked, plan again, store status.
    fn reconcile(&mut self, now: Timestamp, verdict: Option<Verdict>) -> Plan {
        let mut observed = Observed {
            stable: self.stable.clone(),
            canary: self.canary.clone(),
            ..self.observed.clone()
        };
        let mut p = plan(&self.rr, &observed, now);
        if p.analysis_needed.is_some() {
            // The soak's fail-fast check sees a quiet canary unless the test says otherwise.
            let soak_check = p.status.phase == Phase::Soaking;
            let result = match verdict {
                Some(v) => analysis(v),
                None if soak_check => quiet(),
                None => return p,
            };
            observed.analysis = Some(result);
            p = plan(&self.rr, &observed, now);
            assert!(p.analysis_needed.is_none(), "an analysis was supplied");
        }
        self.rr.status = Some(p.status.clone());
        self.children = Some(p.children.clone());
        p
    }

    /// The Deployments reach what the last plan asked for.
    fn converge(&mut self) {
        let children = self.children.clone().expect("reconciled once");
        self.stable = children
            .stable
            .map(|w| serving(&w.target.version, &w.target.image, w.replicas));
        self.canary = children.canary.map(|w| {
            let mut d = serving(&w.target.version, &w.target.image, w.replicas);
            d.model_version = Some(w.target.version);
            d
        });
    }

    /// Simulates an operator restart: status and spec survive only as JSON.
    fn restart(&mut self) {
        let json = serde_json::to_string(&self.rr).unwrap();
        self.rr = serde_json::from_str(&json).unwrap();
    }

    fn set_version(&mut self, version: &str) {
        version.clone_into(&mut self.rr.spec.model.version);
        self.rr.spec.model.uri = format!("file:///m/{version}");
        self.rr.metadata.generation = Some(self.rr.metadata.generation.unwrap() + 1);
    }

    fn annotate(&mut self, action: &str) {
        self.rr.metadata.annotations =
            Some([(ACTION_ANNOTATION.to_owned(), action.to_owned())].into());
    }
}

/// A release stable on v1 at t=0, with v2 applied at t=0 and its canary ready at `ready`.
fn canary_soaking(ready: i64) -> World {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(0), None);
    assert_eq!(w.phase(), Phase::Stable);
    w.set_version("v2");
    w.reconcile(at(0), None);
    w.converge();
    let p = w.reconcile(at(ready), None);
    assert_eq!(w.phase(), Phase::Soaking, "{:?}", p.events);
    w
}

fn reasons(p: &Plan) -> Vec<&'static str> {
    p.events.iter().map(|e| e.reason).collect()
}

fn condition(w: &World, type_: &str) -> String {
    w.rr.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap()
}

#[test]
fn first_apply_goes_straight_to_stable() {
    let mut w = World::new("v1");
    let p = w.reconcile(at(0), None);
    assert_eq!(w.phase(), Phase::Initializing);
    assert_eq!(reasons(&p), ["Deploying"]);
    let stable = p.children.stable.as_ref().unwrap();
    assert_eq!((stable.target.version.as_str(), stable.replicas), ("v1", 2));
    assert_eq!(p.children.canary, None);
    assert_eq!(p.children.canary_weight, 0);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(300)));
    assert_eq!(condition(&w, "Ready"), "False");
    assert_eq!(condition(&w, "Reconciling"), "True");

    w.converge();
    let p = w.reconcile(at(30), None);
    assert_eq!(w.phase(), Phase::Stable);
    assert_eq!(reasons(&p), ["Ready"]);
    assert_eq!(condition(&w, "Ready"), "True");
    assert_eq!(condition(&w, "Reconciling"), "False");
    assert_eq!(condition(&w, "Stalled"), "False");
    assert_eq!(p.requeue_after, None);
}

#[test]
fn first_apply_not_ready_by_the_deadline_fails_then_recovers() {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    let p = w.reconcile(at(DEADLINE - 1), None);
    assert_eq!(w.phase(), Phase::Initializing);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(1)));
    let p = w.reconcile(at(DEADLINE), None);
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(reasons(&p), ["ProgressDeadlineExceeded"]);
    assert_eq!(condition(&w, "Stalled"), "True");
    w.converge();
    w.reconcile(at(DEADLINE + 100), None);
    assert_eq!(w.phase(), Phase::Stable);
}

#[test]
fn an_unchanged_stable_release_plans_no_change() {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(10), None);
    let before = w.rr.status.clone();
    let p = w.reconcile(at(5000), None);
    assert_eq!(
        Some(p.status.clone()),
        before,
        "idle reconcile must not change status"
    );
    assert!(p.events.is_empty());
    assert_eq!(p.requeue_after, None);
    assert_eq!(p.status.last_handled_action, None);
}

#[test]
fn a_new_version_starts_a_canary_beside_stable() {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(0), None);
    w.set_version("v2");
    let p = w.reconcile(at(100), None);
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(reasons(&p), ["CanaryStarted"]);
    assert_eq!(p.children.stable.as_ref().unwrap().target.version, "v1");
    let canary = p.children.canary.as_ref().unwrap();
    assert_eq!((canary.target.version.as_str(), canary.replicas), ("v2", 1));
    assert_eq!(
        p.children.canary_weight, 0,
        "no traffic before the canary is ready"
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(300)));
    let status = w.rr.status.as_ref().unwrap();
    assert_eq!(status.rollout.as_ref().unwrap().version, "v2");
    assert_eq!(status.observed_generation, Some(2));
}

#[test]
fn a_new_image_alone_starts_a_canary() {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(0), None);
    w.rr.spec.image = "img:2".into();
    w.reconcile(at(1), None);
    assert_eq!(w.phase(), Phase::Progressing);
}

#[test]
fn a_ready_canary_gets_its_weight_and_soaks_for_exactly_the_soak_duration() {
    let mut w = canary_soaking(40);
    let status = w.rr.status.clone().unwrap();
    assert_eq!(status.canary_weight, 20);
    // One second before the soak ends: still soaking, wake exactly then.
    let p = w.reconcile(at(40 + SOAK - 1), None);
    assert_eq!(p.analysis_needed, None);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(1)));
    assert_eq!(w.phase(), Phase::Soaking);
    // At the boundary: a check is due.
    let p = w.reconcile(at(40 + SOAK), None);
    let request = p.analysis_needed.expect("check due when the soak ends");
    assert_eq!(request.query.release, "movies");
    assert_eq!(request.query.namespace.as_deref(), Some("prod"));
    assert_eq!(request.query.window, Duration::from_secs(60));
    assert_eq!(
        request.thresholds.max_average_latency,
        Duration::from_millis(500)
    );
    assert_eq!(request.thresholds.min_requests, 100);
}

#[test]
fn a_passing_check_promotes_then_finishes_when_stable_serves_the_new_model() {
    let mut w = canary_soaking(0);
    let p = w.reconcile(at(SOAK), Some(Verdict::Pass));
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(
        reasons(&p),
        ["AnalysisStarted", "AnalysisPassed", "Promoting"]
    );
    assert_eq!(p.children.stable.as_ref().unwrap().target.version, "v2");
    assert_eq!(
        p.children.canary_weight, 20,
        "canary keeps traffic while stable rolls"
    );
    assert!(p.announcements.is_empty());

    w.converge();
    let p = w.reconcile(at(SOAK + 30), None);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(reasons(&p), ["Promoted"]);
    assert_eq!(p.children.canary_weight, 0);
    assert_eq!(p.children.canary.as_ref().unwrap().replicas, 0);
    assert_eq!(p.announcements.len(), 1);
    assert_eq!(p.announcements[0].outcome, Outcome::Promoted);
    assert_eq!(
        p.announcements[0].figures.as_ref().unwrap().verdict,
        Verdict::Pass
    );
    let status = w.rr.status.as_ref().unwrap();
    assert_eq!(status.stable.as_ref().unwrap().version, "v2");
    assert_eq!(status.rollout, None);
    assert_eq!(status.history[0].outcome, Outcome::Promoted);
    assert_eq!(condition(&w, "Ready"), "True");
    // Once the canary has drained, nothing changes any more.
    w.converge();
    w.reconcile(at(SOAK + 60), None);
    let before = w.rr.status.clone();
    let p = w.reconcile(at(SOAK + 4000), None);
    assert_eq!(Some(p.status), before);
    assert!(p.events.is_empty());
}

#[test]
fn failure_limit_failed_checks_roll_back_at_once() {
    let mut w = canary_soaking(0);
    let p = w.reconcile(at(SOAK), Some(Verdict::Fail));
    assert_eq!(w.phase(), Phase::Analyzing);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
    assert_eq!(w.rr.status.as_ref().unwrap().failed_checks, 1);
    // Not due again before the interval.
    let p = w.reconcile(at(SOAK + 59), Some(Verdict::Fail));
    assert_eq!(w.rr.status.as_ref().unwrap().failed_checks, 1);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(1)));
    w.reconcile(at(SOAK + 60), Some(Verdict::Fail));
    assert_eq!(w.rr.status.as_ref().unwrap().failed_checks, 2);
    let p = w.reconcile(at(SOAK + 120), Some(Verdict::Fail));
    assert_eq!(w.phase(), Phase::RollingBack);
    assert_eq!(
        p.children.canary_weight, 0,
        "weight 0 in the same reconcile"
    );
    assert_eq!(p.children.canary.as_ref().unwrap().replicas, 0);
    assert_eq!(p.children.stable.as_ref().unwrap().target.version, "v1");
    assert_eq!(reasons(&p), ["AnalysisFailed", "RollingBack"]);
    assert_eq!(p.events[1].kind, EventKind::Warning);
    assert!(p.events[1].note.contains("3 of 3"), "{}", p.events[1].note);
    assert_eq!(p.announcements[0].outcome, Outcome::RolledBack);

    w.converge();
    w.reconcile(at(SOAK + 125), None);
    assert_eq!(w.phase(), Phase::RolledBack);
    let status = w.rr.status.clone().unwrap();
    assert_eq!(status.blocked.as_ref().unwrap().version, "v2");
    assert_eq!(status.history[0].outcome, Outcome::RolledBack);
    assert_eq!(status.history[0].failed_checks, 3);
    assert_eq!(condition(&w, "Stalled"), "True");
    assert_eq!(condition(&w, "Degraded"), "True");
}

#[test]
fn a_rolled_back_version_is_not_retried_until_retry_or_a_spec_change() {
    let mut w = canary_soaking(0);
    w.annotate("abort");
    w.reconcile(at(SOAK / 2), None);
    w.converge();
    w.reconcile(at(SOAK / 2 + 1), None);
    assert_eq!(w.phase(), Phase::RolledBack);
    // Later reconciles leave it alone.
    let before = w.rr.status.clone();
    let p = w.reconcile(at(90_000), None);
    assert_eq!(Some(p.status.clone()), before);
    assert!(p.events.is_empty());
    assert_eq!(p.children.canary.as_ref().unwrap().replicas, 0);
    // retry: a new rollout of the same version; the value is recorded as handled.
    w.annotate("retry");
    let p = w.reconcile(at(90_001), None);
    assert_eq!(p.status.last_handled_action.as_deref(), Some("retry"));
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(reasons(&p), ["RetryRequested", "CanaryStarted"]);
}

#[test]
fn changed_canary_settings_unblock_a_rolled_back_version() {
    let mut w = canary_soaking(0);
    w.annotate("abort");
    w.reconcile(at(1), None);
    w.converge();
    w.reconcile(at(2), None);
    assert_eq!(w.phase(), Phase::RolledBack);
    w.rr.spec.canary.max_average_latency = DurationString::from("900ms");
    w.reconcile(at(3), None);
    assert_eq!(w.phase(), Phase::Progressing);
}

#[test]
fn inconclusive_checks_roll_back_only_at_the_deadline() {
    let mut w = canary_soaking(0);
    // Budget: max(progressDeadline 5m, failureLimit 3 × 1m) = 5m after analysis began.
    for minute in 0..5 {
        let p = w.reconcile(at(SOAK + minute * INTERVAL), Some(Verdict::Inconclusive));
        assert_eq!(w.phase(), Phase::Analyzing, "minute {minute}");
        assert_eq!(p.children.canary_weight, 20);
    }
    let status = w.rr.status.clone().unwrap();
    assert_eq!(status.failed_checks, 0, "inconclusive is not a failure");
    assert_eq!(status.last_analysis.unwrap().verdict, Verdict::Inconclusive);
    let p = w.reconcile(at(SOAK + 5 * INTERVAL), Some(Verdict::Inconclusive));
    assert_eq!(w.phase(), Phase::RollingBack);
    assert!(
        p.events
            .last()
            .unwrap()
            .note
            .contains("no passing check within 5m")
    );
}

#[test]
fn an_unready_canary_rolls_back_at_the_progress_deadline() {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(0), None);
    w.set_version("v2");
    w.reconcile(at(0), None);
    let mut crashing = serving("v2", "img:1", 1);
    crashing.ready_replicas = 0;
    w.canary = Some(crashing);
    let p = w.reconcile(at(DEADLINE - 1), None);
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(1)));
    let p = w.reconcile(at(DEADLINE), None);
    assert_eq!(w.phase(), Phase::RollingBack);
    assert!(
        p.events[0].note.contains("0/1 ready"),
        "{}",
        p.events[0].note
    );
}

#[test]
fn a_canary_that_loses_readiness_while_soaking_is_rolled_back_after_the_deadline() {
    let mut w = canary_soaking(0);
    w.canary.as_mut().unwrap().ready_replicas = 0;
    let p = w.reconcile(at(100), None);
    assert_eq!(reasons(&p), ["CanaryUnready"]);
    assert_eq!(w.phase(), Phase::Soaking);
    w.reconcile(at(100 + DEADLINE), None);
    assert_eq!(w.phase(), Phase::RollingBack);
}

#[test]
fn a_spec_change_mid_rollout_restarts_with_the_newest_spec() {
    let mut w = canary_soaking(0);
    w.reconcile(at(SOAK), Some(Verdict::Fail));
    w.set_version("v3");
    let p = w.reconcile(at(SOAK + 5), None);
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(reasons(&p), ["RolloutRestarted", "CanaryStarted"]);
    assert_eq!(p.children.canary.as_ref().unwrap().target.version, "v3");
    assert_eq!(p.children.canary_weight, 0);
    let status = w.rr.status.clone().unwrap();
    assert_eq!(status.failed_checks, 0, "counters restart");
    assert_eq!(status.history[0].outcome, Outcome::Superseded);
    assert_eq!(status.history[0].version, "v2");
}

fn provenance(parent: &str) -> ModelProvenance {
    ModelProvenance {
        data_digest: Some("d".repeat(64)),
        data_uri: Some("s3://models/movies/v2/dataset.json".into()),
        event_range: Some(EventRange {
            source: "kafka://127.0.0.1:9092/events".into(),
            offsets: Some("0:100-250,1:90-240".into()),
            first_event: Some("2026-01-01T00:00:00Z".into()),
            last_event: Some("2026-01-01T23:59:00Z".into()),
        }),
        parent_version: Some(parent.into()),
        offline_ndcg10: Some(0.31),
        parent_rmse: Some(0.95),
        parent_ndcg10: Some(0.30),
        fairness_gaps: vec![FairnessGap {
            dimension: "gender".into(),
            metric: "rmse".into(),
            gap: 0.04,
            growth: Some(-0.01),
            worst: Some("F".into()),
        }],
    }
}

#[test]
fn a_finished_rollout_records_the_models_provenance_in_history() {
    // Promoted: the entry carries the spec's provenance, through an operator restart.
    let mut w = canary_soaking(0);
    w.rr.spec.model.provenance = Some(provenance("v1"));
    w.reconcile(at(1), None);
    assert_eq!(
        w.phase(),
        Phase::Soaking,
        "a provenance change restarts nothing"
    );
    w.reconcile(at(SOAK), Some(Verdict::Pass));
    w.converge();
    w.restart();
    w.reconcile(at(SOAK + 30), None);
    assert_eq!(w.phase(), Phase::Succeeded);
    let entry = &status_of(&w).history[0];
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v2", Outcome::Promoted)
    );
    assert_eq!(entry.provenance, Some(provenance("v1")));

    // Rolled back: recorded too.
    w.set_version("v3");
    w.rr.spec.model.provenance = Some(provenance("v2"));
    w.reconcile(at(SOAK + 60), None);
    let deadline = SOAK + 60 + DEADLINE;
    w.reconcile(at(deadline), None);
    let entry = &status_of(&w).history[0];
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v3", Outcome::RolledBack)
    );
    assert_eq!(entry.provenance, Some(provenance("v2")));

    // A rollout superseded by a new spec: the spec now describes another model, so the
    // old version's entry has none rather than the wrong one.
    let mut w = canary_soaking(0);
    w.rr.spec.model.provenance = Some(provenance("v1"));
    w.set_version("v3");
    w.reconcile(at(10), None);
    let entry = &status_of(&w).history[0];
    assert_eq!(
        (entry.version.as_str(), entry.outcome),
        ("v2", Outcome::Superseded)
    );
    assert_eq!(entry.provenance, None);
}

#[test]
fn a_spec_reverted_to_the_stable_model_cancels_the_rollout() {
    let mut w = canary_soaking(0);
    w.set_version("v1");
    let p = w.reconcile(at(10), None);
    assert_eq!(w.phase(), Phase::Stable);
    assert_eq!(reasons(&p), ["RolloutCancelled"]);
    assert_eq!(p.children.canary_weight, 0);
    assert_eq!(p.children.canary.as_ref().unwrap().replicas, 0);
}

#[test]
fn promote_annotation_skips_the_remaining_checks() {
    let mut w = canary_soaking(0);
    w.annotate("promote");
    let p = w.reconcile(at(10), None);
    assert_eq!(p.status.last_handled_action.as_deref(), Some("promote"));
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(p.children.stable.as_ref().unwrap().target.version, "v2");
}

#[test]
fn abort_during_promotion_restores_the_previous_stable_model() {
    let mut w = canary_soaking(0);
    w.reconcile(at(SOAK), Some(Verdict::Pass));
    assert_eq!(w.phase(), Phase::Promoting);
    w.annotate("abort");
    let p = w.reconcile(at(SOAK + 5), None);
    assert_eq!(w.phase(), Phase::RollingBack);
    assert_eq!(p.children.stable.as_ref().unwrap().target.version, "v1");
    assert_eq!(p.children.canary_weight, 0);
}

#[test]
fn unknown_and_inapplicable_actions_are_reported_once() {
    let mut w = canary_soaking(0);
    w.annotate("yolo");
    let p = w.reconcile(at(5), None);
    assert_eq!(p.status.last_handled_action.as_deref(), Some("yolo"));
    assert_eq!(reasons(&p), ["UnknownAction"]);
    assert_eq!(w.phase(), Phase::Soaking);
    let p = w.reconcile(at(6), None);
    assert!(p.events.is_empty(), "a handled value is not reported again");
    w.annotate("retry");
    let p = w.reconcile(at(7), None);
    assert_eq!(p.status.last_handled_action.as_deref(), Some("retry"));
    assert_eq!(reasons(&p), ["ActionIgnored"]);
}

#[test]
fn offline_rmse_above_the_gate_is_rejected_without_a_canary() {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(0), None);
    w.set_version("v2");
    w.rr.spec.model.offline_rmse = Some(1.2);
    w.rr.spec.canary.max_rmse = Some(1.0);
    let p = w.reconcile(at(1), None);
    assert_eq!(w.phase(), Phase::Rejected);
    assert_eq!(p.children.canary, None);
    assert_eq!(p.announcements[0].outcome, Outcome::Rejected);
    assert!(p.events[0].note.contains("1.2000"), "{}", p.events[0].note);
    // Equal to the gate is allowed.
    w.rr.spec.model.offline_rmse = Some(1.0);
    w.reconcile(at(2), None);
    assert_eq!(w.phase(), Phase::Progressing);
}

#[test]
fn step_weights_advance_one_passing_check_at_a_time() {
    let mut w = World::new("v1");
    w.rr.spec.canary.step_weights = vec![5, 20, 50];
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(0), None);
    w.set_version("v2");
    w.reconcile(at(0), None);
    w.converge();
    let p = w.reconcile(at(0), None);
    assert_eq!(p.children.canary_weight, 5);
    let p = w.reconcile(at(SOAK), Some(Verdict::Pass));
    assert_eq!(p.children.canary_weight, 20);
    assert_eq!(w.phase(), Phase::Analyzing);
    let p = w.reconcile(at(SOAK + INTERVAL), Some(Verdict::Pass));
    assert_eq!(p.children.canary_weight, 50);
    let p = w.reconcile(at(SOAK + 2 * INTERVAL), Some(Verdict::Pass));
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(p.children.canary_weight, 50);
}

#[test]
fn an_invalid_duration_fails_with_a_clear_message() {
    let mut w = World::new("v1");
    w.rr.spec.canary.interval = DurationString::from("1 minute");
    let p = w.reconcile(at(0), None);
    assert_eq!(w.phase(), Phase::Failed);
    let message = w.rr.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.starts_with("spec.canary.interval: invalid duration"),
        "{message}"
    );
    assert_eq!(reasons(&p), ["InvalidSpec"]);
}

#[test]
fn restarting_the_operator_in_any_phase_gives_the_same_rollout() {
    fn scenario(restart_each_step: bool) -> Vec<(Phase, i32)> {
        let mut w = World::new("v1");
        let mut trail = Vec::new();
        let verdicts = [
            None,
            None,
            None,
            None,
            Some(Verdict::Fail),
            Some(Verdict::Pass),
        ];
        let times = [0, 1, 2, 3, SOAK + 3, SOAK + 3 + INTERVAL];
        for (i, (t, v)) in times.iter().zip(verdicts).enumerate() {
            if i == 2 {
                w.set_version("v2");
            }
            if restart_each_step {
                w.restart();
            }
            let p = w.reconcile(at(*t), v);
            trail.push((w.phase(), p.children.canary_weight));
            w.converge();
        }
        w.restart();
        let p = w.reconcile(at(SOAK + 200), None);
        trail.push((w.phase(), p.children.canary_weight));
        trail
    }
    let straight = scenario(false);
    assert_eq!(straight, scenario(true));
    assert_eq!(
        straight.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        [
            Phase::Initializing,
            Phase::Stable,
            Phase::Progressing,
            Phase::Soaking,
            Phase::Analyzing,
            Phase::Promoting,
            Phase::Succeeded
        ]
    );
}

#[test]
fn history_keeps_the_last_ten_rollouts() {
    let mut w = canary_soaking(0);
    for i in 0..12 {
        w.set_version(&format!("r{i}"));
        w.reconcile(at(1 + i), None);
    }
    let history = &w.rr.status.as_ref().unwrap().history;
    assert_eq!(history.len(), 10);
    assert_eq!(history[0].version, "r10", "newest first");
}

#[test]
fn canary_replicas_follow_the_provider() {
    assert_eq!(canary_replicas(TrafficProvider::IngressNginx, 2, 20), 1);
    assert_eq!(canary_replicas(TrafficProvider::IngressNginx, 10, 25), 3);
    assert_eq!(canary_replicas(TrafficProvider::GatewayApi, 4, 50), 2);
    // replicas: canary/(stable+canary) ≈ weight.
    assert_eq!(canary_replicas(TrafficProvider::Replicas, 4, 20), 1);
    assert_eq!(canary_replicas(TrafficProvider::Replicas, 8, 20), 2);
    assert_eq!(canary_replicas(TrafficProvider::Replicas, 3, 50), 3);
    assert_eq!(canary_replicas(TrafficProvider::Replicas, 3, 100), 3);
    assert_eq!(
        canary_replicas(TrafficProvider::Replicas, 2, 1),
        1,
        "at least one pod"
    );
}

#[test]
fn model_spec_changes_other_than_version_also_start_a_rollout() {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(0), None);
    w.rr.spec.model = ModelSpec {
        sha256: "b".repeat(64),
        ..w.rr.spec.model.clone()
    };
    w.reconcile(at(1), None);
    assert_eq!(w.phase(), Phase::Progressing);
}

// --- operator hardening (issue 8) -----------------------------------------------------

fn status_of(w: &World) -> &movrek_operator::crd::RecommenderReleaseStatus {
    w.rr.status.as_ref().unwrap()
}

#[test]
fn an_action_kept_in_git_fires_once_and_a_new_value_fires_again() {
    let mut w = canary_soaking(0);
    w.annotate("promote");
    w.reconcile(at(10), None);
    w.converge();
    w.reconcile(at(11), None);
    assert_eq!(w.phase(), Phase::Succeeded);
    // The annotation stays (GitOps re-applies it); the next version is not promoted by it.
    w.set_version("v3");
    let p = w.reconcile(at(20), None);
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(reasons(&p), ["CanaryStarted"]);
    w.converge();
    w.reconcile(at(21), None);
    assert_eq!(w.phase(), Phase::Soaking);
    assert_eq!(
        status_of(&w).last_handled_action.as_deref(),
        Some("promote")
    );
    // A new value (any suffix after ':') is a new request.
    w.annotate("promote:v3");
    w.reconcile(at(22), None);
    assert_eq!(w.phase(), Phase::Promoting);
    // Removing the annotation forgets the handled value, so `promote` can be used again.
    w.rr.metadata.annotations = None;
    let p = w.reconcile(at(23), None);
    assert_eq!(p.status.last_handled_action, None);
}

#[test]
fn reconciling_is_false_while_only_a_timer_is_pending() {
    let mut w = World::new("v1");
    w.reconcile(at(0), None);
    w.converge();
    w.reconcile(at(1), None);
    w.set_version("v2");
    w.reconcile(at(2), None);
    assert_eq!(w.phase(), Phase::Progressing);
    assert_eq!(
        condition(&w, "Reconciling"),
        "True",
        "waiting for canary pods"
    );
    w.converge();
    w.reconcile(at(3), None);
    assert_eq!(w.phase(), Phase::Soaking);
    assert_eq!(condition(&w, "Reconciling"), "False", "only the soak timer");
    assert_eq!(condition(&w, "Progressing"), "True");
    assert_eq!(condition(&w, "Stalled"), "False");
    w.reconcile(at(SOAK + 3), Some(Verdict::Fail));
    assert_eq!(w.phase(), Phase::Analyzing);
    assert_eq!(
        condition(&w, "Reconciling"),
        "False",
        "only the check timer"
    );
}

#[test]
fn a_crash_looping_canary_is_rolled_back_on_restarts() {
    let mut w = canary_soaking(0);
    w.observed.canary_restarts = 3;
    w.reconcile(at(5), None);
    assert_eq!(
        w.phase(),
        Phase::Soaking,
        "3 restarts are within maxRestarts 3"
    );
    assert_eq!(status_of(&w).rollout.as_ref().unwrap().canary_restarts, 3);
    w.observed.canary_restarts = 4;
    let p = w.reconcile(at(6), None);
    assert_eq!(w.phase(), Phase::RollingBack);
    assert_eq!(p.children.canary_weight, 0);
    assert!(
        status_of(&w)
            .message
            .as_deref()
            .unwrap()
            .contains("restarted 4 times"),
        "{:?}",
        status_of(&w).message
    );
}

#[test]
fn unready_spells_add_up_against_the_progress_deadline() {
    let mut w = canary_soaking(0);
    let flap = |w: &mut World, ready: bool| {
        let c = w.canary.as_mut().unwrap();
        c.ready_replicas = if ready { c.replicas } else { 0 };
    };
    // Unready 200 s, ready for 1 s, unready again: the second spell has only 100 s left.
    flap(&mut w, false);
    w.reconcile(at(10), None);
    flap(&mut w, true);
    w.reconcile(at(210), None);
    assert_eq!(w.phase(), Phase::Soaking);
    assert_eq!(
        status_of(&w)
            .rollout
            .as_ref()
            .unwrap()
            .canary_unready_seconds,
        200
    );
    flap(&mut w, false);
    let p = w.reconcile(at(211), None);
    assert!(p.requeue_after <= Some(Duration::from_secs(100)), "{p:?}");
    w.reconcile(at(290), None);
    assert_eq!(w.phase(), Phase::Soaking);
    w.reconcile(at(311), None);
    assert_eq!(w.phase(), Phase::RollingBack, "300 s unready in all");
}

#[test]
fn the_soak_fails_fast_on_a_canary_answering_errors() {
    let mut w = canary_soaking(0);
    // Before the first interval no check runs.
    let p = w.reconcile(at(30), None);
    assert!(p.analysis_needed.is_none());
    // At the interval: a check; healthy figures keep it soaking.
    let p = w.reconcile(at(INTERVAL), Some(Verdict::Pass));
    assert_eq!(w.phase(), Phase::Soaking);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
    // All errors on enough requests: rolled back long before the soak ends.
    let mut observed = Observed {
        stable: w.stable.clone(),
        canary: w.canary.clone(),
        ..Observed::default()
    };
    let p = plan(&w.rr, &observed, at(2 * INTERVAL));
    assert!(p.analysis_needed.is_some());
    observed.analysis = Some(Analysis {
        metrics: CanaryMetrics {
            error_rate: Some(1.0),
            requests: Some(400.0),
            ..CanaryMetrics::default()
        },
        verdict: Verdict::Fail,
        reason: "errors 100%".into(),
        comparison: None,
        step: None,
        guardrails: Verdict::Fail,
    });
    let p = plan(&w.rr, &observed, at(2 * INTERVAL));
    assert_eq!(p.status.phase, Phase::RollingBack);
    assert_eq!(p.children.canary_weight, 0);
    assert!(
        p.status.message.as_deref().unwrap().contains("fail-fast"),
        "{:?}",
        p.status.message
    );
    assert_eq!(p.announcements.len(), 1);
    // Errors on too few requests are no evidence.
    observed.analysis.as_mut().unwrap().metrics.requests = Some(5.0);
    let p = plan(&w.rr, &observed, at(2 * INTERVAL));
    assert_eq!(p.status.phase, Phase::Soaking);
}

#[test]
fn an_unreachable_prometheus_pauses_the_analysis_clock() {
    fn run(unreachable: bool) -> Phase {
        let mut w = canary_soaking(0);
        w.observed.metrics_unreachable = unreachable;
        // Checks every minute for 10 minutes, none conclusive; the budget is 5 minutes.
        for i in 0..=10 {
            w.reconcile(at(SOAK + i * INTERVAL), Some(Verdict::Inconclusive));
        }
        w.phase()
    }
    assert_eq!(run(false), Phase::RollingBack, "no data spends the budget");
    assert_eq!(run(true), Phase::Analyzing, "an outage does not");
    let mut w = canary_soaking(0);
    w.observed.metrics_unreachable = true;
    w.reconcile(at(SOAK), Some(Verdict::Inconclusive));
    w.reconcile(at(SOAK + 600), Some(Verdict::Inconclusive));
    // Prometheus is back: the budget starts where it stopped, and a pass promotes.
    w.observed.metrics_unreachable = false;
    w.reconcile(at(SOAK + 660), Some(Verdict::Pass));
    assert_eq!(w.phase(), Phase::Promoting);
}

#[test]
fn a_refused_http_route_stalls_with_the_gateways_message() {
    let mut w = canary_soaking(0);
    w.rr.spec.traffic.provider = TrafficProvider::GatewayApi;
    w.observed.route_problem = Some(
        "HTTPRoute movies on Gateway public: Accepted False (NotAllowedByListeners): no".into(),
    );
    let p = w.reconcile(at(SOAK), Some(Verdict::Inconclusive));
    assert_eq!(
        w.phase(),
        Phase::Soaking,
        "no analysis of traffic that cannot come"
    );
    assert!(p.analysis_needed.is_none());
    assert_eq!(condition(&w, "Stalled"), "True");
    assert!(
        status_of(&w)
            .message
            .as_deref()
            .unwrap()
            .contains("NotAllowedByListeners"),
        "{:?}",
        status_of(&w).message
    );
    w.observed.route_problem = None;
    w.reconcile(at(SOAK + 1), Some(Verdict::Pass));
    assert_eq!(w.phase(), Phase::Promoting);
    assert_eq!(condition(&w, "Stalled"), "False");
}

#[test]
fn a_provider_change_zeroes_then_deletes_the_old_routes() {
    use movrek_operator::plan::{LiveRoutes, Retirement};
    let mut w = canary_soaking(0);
    w.rr.spec.traffic.provider = TrafficProvider::IngressNginx;
    w.reconcile(at(1), None);
    assert_eq!(
        status_of(&w).traffic_provider,
        Some(TrafficProvider::IngressNginx)
    );
    w.rr.spec.traffic.provider = TrafficProvider::GatewayApi;
    w.observed.other_routes = vec![LiveRoutes {
        provider: TrafficProvider::IngressNginx,
        canary_weight: Some(20),
    }];
    let p = w.reconcile(at(5), None);
    assert_eq!(
        p.children.retire,
        [Retirement::ZeroWeight(TrafficProvider::IngressNginx)]
    );
    assert_eq!(p.status.traffic_provider, Some(TrafficProvider::GatewayApi));
    w.observed.other_routes[0].canary_weight = Some(0);
    let p = w.reconcile(at(6), None);
    assert_eq!(
        p.children.retire,
        [Retirement::Delete(TrafficProvider::IngressNginx)]
    );
    w.observed.other_routes.clear();
    let p = w.reconcile(at(7), None);
    assert!(p.children.retire.is_empty());
}

#[test]
fn a_release_being_deleted_applies_nothing() {
    let mut w = canary_soaking(0);
    w.rr.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(50)));
    let before = w.rr.status.clone();
    let p = plan(&w.rr, &Observed::default(), at(SOAK));
    assert!(p.deleting);
    assert!(p.children.stable.is_none() && p.children.canary.is_none());
    assert!(p.events.is_empty() && p.announcements.is_empty());
    assert_eq!(Some(p.status), before);
}

#[test]
fn an_autoscaled_release_sizes_the_canary_from_the_observed_stable_pods() {
    use movrek_operator::crd::AutoscalingSpec;
    let mut w = canary_soaking(0);
    w.rr.spec.traffic.provider = TrafficProvider::Replicas;
    w.rr.spec.canary.weight = 50;
    w.rr.spec.autoscaling = Some(AutoscalingSpec {
        min_replicas: 2,
        max_replicas: 10,
        target_cpu_utilization_percent: 70,
        canary: true,
    });
    // The spec change restarts the rollout; the HPA has scaled stable to 6.
    w.stable.as_mut().unwrap().replicas = 6;
    let p = w.reconcile(at(5), None);
    let stable = p.children.stable.as_ref().unwrap();
    assert!(stable.autoscaled, "the HPA owns stable replicas");
    assert_eq!(stable.replicas, 6);
    let canary = p.children.canary.as_ref().unwrap();
    assert_eq!(
        canary.replicas, 6,
        "replicas provider at 50%: as many as stable"
    );
    assert!(canary.autoscaled);
    let scaler = p.children.canary_scaler.unwrap();
    assert_eq!((scaler.min_replicas, scaler.max_replicas), (6, 10));
    let stable_scaler = p.children.stable_scaler.unwrap();
    assert_eq!(
        (stable_scaler.min_replicas, stable_scaler.max_replicas),
        (2, 10)
    );
}

// ---- The canary-versus-stable judge (spec.canary.judge) ----

use movrek_operator::analysis::compare::TrackCounts;
use movrek_operator::analysis::{TrackFigures, conclude_judged};
use movrek_operator::crd::{InconclusiveAction, JudgeSpec};

/// `requests` answers with the given error share, half of them scored with mean 0.3.
fn counts(requests: f64, errors: f64) -> TrackCounts {
    let scored = requests / 2.0;
    TrackCounts {
        requests,
        errors: requests * errors,
        slow: requests * 0.05,
        scored,
        hits: scored * 0.1,
        score_sum: scored * 0.3,
        score_squares: scored * (0.0625 + 0.09),
    }
}

impl World {
    fn judged(version: &str) -> Self {
        let mut w = Self::new(version);
        w.rr.spec.canary.judge = Some(JudgeSpec::default());
        w
    }

    /// One reconcile whose check (if one is due) reads these counts for the current step;
    /// the guardrails pass.
    fn reconcile_counts(
        &mut self,
        now: Timestamp,
        canary: TrackCounts,
        stable: TrackCounts,
    ) -> Plan {
        let mut observed = Observed {
            stable: self.stable.clone(),
            canary: self.canary.clone(),
            ..self.observed.clone()
        };
        let mut p = plan(&self.rr, &observed, now);
        if let Some(request) = p.analysis_needed.clone() {
            let judge = request
                .judge
                .expect("a judged release asks for the comparison");
            observed.analysis = Some(conclude_judged(
                analysis(Verdict::Pass),
                Ok(TrackFigures::new(canary, stable)),
                &judge,
            ));
            p = plan(&self.rr, &observed, now);
        }
        self.rr.status = Some(p.status.clone());
        self.children = Some(p.children.clone());
        p
    }

    fn start_canary(&mut self) {
        self.reconcile(at(0), None);
        self.converge();
        self.reconcile(at(0), None);
        self.set_version("v2");
        self.reconcile(at(0), None);
        self.converge();
        self.reconcile(at(0), None);
        assert_eq!(self.phase(), Phase::Soaking);
    }
}

#[test]
fn a_regression_the_judge_finds_rolls_back_at_once_even_during_the_soak() {
    let mut w = World::judged("v1");
    w.start_canary();
    // First soak check, one interval after the canary got 20%: errors 3% against 0.5%.
    let p = w.reconcile_counts(
        at(INTERVAL),
        counts(20_000.0, 0.03),
        counts(80_000.0, 0.005),
    );
    assert_eq!(w.phase(), Phase::RollingBack, "{:?}", p.events);
    assert_eq!(p.children.canary_weight, 0);
    let status = w.rr.status.as_ref().unwrap();
    let record = status.last_analysis.as_ref().unwrap();
    let comparison = record.comparison.as_ref().expect("comparison recorded");
    assert_eq!(comparison.verdict, Verdict::Fail);
    assert!(
        record.message.contains("worse than stable on errors"),
        "{}",
        record.message
    );
    assert_eq!(
        status.failed_checks, 0,
        "a regression does not wait for failureLimit"
    );
}

#[test]
fn the_judge_counts_each_step_from_its_own_start_and_weight() {
    let mut w = World::judged("v1");
    w.rr.spec.canary.step_weights = vec![20, 50];
    w.start_canary();
    // After the soak: the request covers the step since it settled (one interval, at most
    // 30 s, after the weight was set) at 20%.
    let observed = Observed {
        stable: w.stable.clone(),
        canary: w.canary.clone(),
        ..Observed::default()
    };
    let p = plan(&w.rr, &observed, at(SOAK));
    let judge = p.analysis_needed.unwrap().judge.unwrap();
    assert_eq!(
        (judge.since, judge.weight),
        (Duration::from_secs(SOAK as u64 - 30), 20)
    );
    assert!(judge.finished.is_empty());
    assert!((judge.slow_bound_seconds - 0.25).abs() < 1e-12);
    // Equal rates on plenty of traffic: no worse on every metric, the step advances and
    // its counts are kept.
    let p = w.reconcile_counts(at(SOAK), counts(40_000.0, 0.005), counts(160_000.0, 0.005));
    assert_eq!(p.children.canary_weight, 50, "{:?}", p.events);
    let rollout = w.rr.status.as_ref().unwrap().rollout.clone().unwrap();
    assert_eq!(rollout.judged_steps.len(), 1);
    assert_eq!(rollout.judged_steps[0].weight, 20);
    assert_eq!(rollout.step_started_at.unwrap().0, at(SOAK + 30));
    // The next check reads the new step from its start, at 50%, with the first step kept.
    let observed = Observed {
        stable: w.stable.clone(),
        canary: w.canary.clone(),
        ..Observed::default()
    };
    let p = plan(&w.rr, &observed, at(SOAK + INTERVAL));
    let judge = p.analysis_needed.unwrap().judge.unwrap();
    assert_eq!(
        (judge.since, judge.weight),
        (Duration::from_secs(INTERVAL as u64 - 30), 50)
    );
    assert_eq!(judge.finished.len(), 1);
}

#[test]
fn a_sample_ratio_mismatch_warns_and_is_never_a_pass() {
    let mut w = World::judged("v1");
    w.start_canary();
    // Configured 20%; the canary got a third of the requests. Otherwise identical.
    let p = w.reconcile_counts(at(SOAK), counts(50_000.0, 0.005), counts(100_000.0, 0.005));
    assert_eq!(w.phase(), Phase::Analyzing);
    assert!(
        reasons(&p).contains(&"SampleRatioMismatch"),
        "{:?}",
        p.events
    );
    let message = w.rr.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.contains("sample ratio mismatch: the canary got 33.3% of requests, configured 20%"),
        "{message}"
    );
}

#[test]
fn an_undecided_judge_promotes_at_the_deadline_only_when_the_user_chose_it() {
    for (action, expected) in [
        (InconclusiveAction::Rollback, Phase::RollingBack),
        (InconclusiveAction::Promote, Phase::Promoting),
    ] {
        let mut w = World::judged("v1");
        w.rr.spec.canary.judge.as_mut().unwrap().on_inconclusive = action;
        w.start_canary();
        // Too little traffic to decide anything, guardrails fine, for the whole budget (5m).
        for minute in 0..=5 {
            w.reconcile_counts(
                at(SOAK + minute * INTERVAL),
                counts(200.0, 0.005),
                counts(800.0, 0.005),
            );
        }
        assert_eq!(w.phase(), expected, "{action:?}");
    }
}

#[test]
fn a_slow_request_bound_that_is_not_a_bucket_is_refused() {
    let mut w = World::judged("v1");
    w.rr.spec.canary.judge.as_mut().unwrap().slow_request = DurationString::from("300ms");
    w.reconcile(at(0), None);
    assert_eq!(w.phase(), Phase::Failed);
    let message = w.rr.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.starts_with("spec.canary.judge.slowRequest: invalid duration \"300ms\": must be a latency bucket bound"),
        "{message}"
    );
}

#[test]
fn with_quality_judged_the_forecast_waits_for_scored_lists() {
    // The first minute of a step: thousands of requests, but no list scored yet (lists are
    // scored an attribution window after they are served). No forecast, no warning yet.
    let unscored = |requests: f64| TrackCounts {
        scored: 0.0,
        hits: 0.0,
        score_sum: 0.0,
        score_squares: 0.0,
        ..counts(requests, 0.005)
    };
    let mut w = World::judged("v1");
    w.start_canary();
    let p = w.reconcile_counts(at(INTERVAL), unscored(2_000.0), unscored(8_000.0));
    let rollout = w.rr.status.as_ref().unwrap().rollout.clone().unwrap();
    assert_eq!(rollout.expected_pass, None);
    assert!(!reasons(&p).contains(&"DecisionUnlikely"), "{:?}", p.events);
    // Once stable's lists are scored, the forecast is made from them.
    w.reconcile_counts(
        at(2 * INTERVAL),
        counts(4_000.0, 0.005),
        counts(16_000.0, 0.005),
    );
    let rollout = w.rr.status.as_ref().unwrap().rollout.clone().unwrap();
    assert!(rollout.expected_pass_seconds.is_some(), "{rollout:?}");
}

#[test]
fn the_first_compared_check_forecasts_the_pass_and_warns_when_the_step_is_too_short() {
    // Busy service: stable served 8,000 requests in the first minute.
    let mut w = World::judged("v1");
    w.start_canary();
    let p = w.reconcile_counts(at(INTERVAL), counts(2_000.0, 0.005), counts(8_000.0, 0.005));
    let rollout = w.rr.status.as_ref().unwrap().rollout.clone().unwrap();
    let seconds = rollout.expected_pass_seconds.expect("a forecast");
    assert!(seconds > 60 && seconds < SOAK, "{seconds}");
    assert!(!reasons(&p).contains(&"DecisionUnlikely"), "{:?}", p.events);
    assert!(
        p.status
            .conditions
            .iter()
            .any(|c| c.type_ == "DecisionInTime" && c.status == "True"),
        "{:?}",
        p.status.conditions
    );
    // Made once per step: a later check keeps it.
    w.reconcile_counts(
        at(2 * INTERVAL),
        counts(4_000.0, 0.005),
        counts(16_000.0, 0.005),
    );
    let again = w.rr.status.as_ref().unwrap().rollout.clone().unwrap();
    assert_eq!(again.expected_pass_seconds, Some(seconds));

    // Quiet service: 80 requests a minute cannot show anything within soak plus budget.
    let mut w = World::judged("v1");
    w.start_canary();
    let p = w.reconcile_counts(at(INTERVAL), counts(20.0, 0.005), counts(80.0, 0.005));
    let rollout = w.rr.status.as_ref().unwrap().rollout.clone().unwrap();
    assert!(rollout.expected_pass.is_some());
    assert!(
        rollout
            .expected_pass_seconds
            .is_none_or(|s| s > SOAK + DEADLINE),
        "{rollout:?}"
    );
    let note = &p
        .events
        .iter()
        .find(|e| e.reason == "DecisionUnlikely")
        .expect("warned")
        .note;
    assert!(note.contains("at 20% and today's stable traffic"), "{note}");
    let condition =
        w.rr.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "DecisionInTime")
            .cloned()
            .expect("the DecisionInTime condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "DecisionUnlikely")
    );
}
