//! The operator's own Prometheus metrics (`movrek_operator_*`): reconcile duration and
//! errors, each release's phase and canary weight, the last analysis figures, rollouts by
//! outcome, and API writes by kind (so "writes per idle reconcile" is observable).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::crd::{AnalysisRecord, Outcome, Phase};

/// Labels naming one release.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReleaseLabels {
    /// Namespace.
    pub namespace: String,
    /// Release name.
    pub release: String,
}

/// Release plus phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Namespace.
    pub namespace: String,
    /// Release name.
    pub release: String,
    /// Phase name.
    pub phase: String,
}

/// Release plus rollout outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Namespace.
    pub namespace: String,
    /// Release name.
    pub release: String,
    /// Outcome name.
    pub outcome: String,
}

/// A `kind` label (error kind, or written object kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind.
    pub kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every operator metric, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    reconcile_errors: Family<KindLabels, Counter>,
    writes: Family<KindLabels, Counter>,
    stale_reads: Counter,
    phase: Family<PhaseLabels, Gauge>,
    canary_weight: Family<ReleaseLabels, Gauge>,
    analysis_average_latency: Family<ReleaseLabels, FloatGauge>,
    analysis_p99_latency: Family<ReleaseLabels, FloatGauge>,
    analysis_error_rate: Family<ReleaseLabels, FloatGauge>,
    analysis_requests: Family<ReleaseLabels, FloatGauge>,
    rollouts: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("movrek_operator");
        let reconcile_duration = Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile (observe, plan, apply)",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error kind",
            reconcile_errors.clone(),
        );
        let writes = Family::default();
        registry.register(
            "api_writes",
            "Write requests to the API server by kind",
            writes.clone(),
        );
        let stale_reads = Counter::default();
        registry.register(
            "stale_reads",
            "Reconciles that read a stale release (their status write got 409) and did nothing",
            stale_reads.clone(),
        );
        let phase = Family::default();
        registry.register(
            "release_phase",
            "1 for the current phase of each release",
            phase.clone(),
        );
        let canary_weight = Family::default();
        registry.register(
            "canary_weight_percent",
            "Traffic percent sent to the canary",
            canary_weight.clone(),
        );
        let analysis_average_latency = Family::default();
        registry.register(
            "last_analysis_average_latency_seconds",
            "Canary average latency in the last check",
            analysis_average_latency.clone(),
        );
        let analysis_p99_latency = Family::default();
        registry.register(
            "last_analysis_p99_latency_seconds",
            "Canary p99 latency in the last check",
            analysis_p99_latency.clone(),
        );
        let analysis_error_rate = Family::default();
        registry.register(
            "last_analysis_error_rate",
            "Canary 5xx share in the last check",
            analysis_error_rate.clone(),
        );
        let analysis_requests = Family::default();
        registry.register(
            "last_analysis_requests",
            "Canary requests in the last check window",
            analysis_requests.clone(),
        );
        let rollouts = Family::default();
        registry.register("rollouts", "Finished rollouts by outcome", rollouts.clone());
        Self {
            registry,
            reconcile_duration,
            reconcile_errors,
            writes,
            stale_reads,
            phase,
            canary_weight,
            analysis_average_latency,
            analysis_p99_latency,
            analysis_error_rate,
            analysis_requests,
            rollouts,
        }
    }

    /// Records one reconcile's duration.
    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts a reconcile that read a stale release and was re-queued without acting.
    pub fn stale_read(&self) {
        self.stale_reads.inc();
    }

    /// Counts one write request of `kind` (e.g. `Deployment`, `status`, `Event`).
    pub fn wrote(&self, kind: &str) {
        self.writes
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Total write requests so far.
    pub fn writes_total(&self) -> u64 {
        let text = self.render();
        text.lines()
            .filter(|l| l.starts_with("movrek_operator_api_writes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Publishes the state of one release.
    pub fn release_state(
        &self,
        release: &ReleaseLabels,
        phase: Phase,
        weight: i32,
        analysis: Option<&AnalysisRecord>,
    ) {
        for p in Phase::ALL {
            self.phase
                .get_or_create(&PhaseLabels {
                    namespace: release.namespace.clone(),
                    release: release.release.clone(),
                    phase: p.as_str().to_owned(),
                })
                .set(i64::from(p == phase));
        }
        self.canary_weight
            .get_or_create(release)
            .set(i64::from(weight));
        if let Some(a) = analysis {
            let set = |family: &Family<ReleaseLabels, FloatGauge>, v: Option<f64>| {
                family.get_or_create(release).set(v.unwrap_or(f64::NAN));
            };
            set(&self.analysis_average_latency, a.average_latency_seconds);
            set(&self.analysis_p99_latency, a.p99_latency_seconds);
            set(&self.analysis_error_rate, a.error_rate);
            set(&self.analysis_requests, a.requests);
        }
    }

    /// Counts a finished rollout.
    pub fn rollout_finished(&self, release: &ReleaseLabels, outcome: Outcome) {
        self.rollouts
            .get_or_create(&OutcomeLabels {
                namespace: release.namespace.clone(),
                release: release.release.clone(),
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
    }

    /// Removes the per-release series of a deleted release.
    pub fn forget(&self, release: &ReleaseLabels) {
        for p in Phase::ALL {
            self.phase.remove(&PhaseLabels {
                namespace: release.namespace.clone(),
                release: release.release.clone(),
                phase: p.as_str().to_owned(),
            });
        }
        self.canary_weight.remove(release);
        self.analysis_average_latency.remove(release);
        self.analysis_p99_latency.remove(release);
        self.analysis_error_rate.remove(release);
        self.analysis_requests.remove(release);
        for outcome in Outcome::ALL {
            self.rollouts.remove(&OutcomeLabels {
                namespace: release.namespace.clone(),
                release: release.release.clone(),
                outcome: outcome.as_str().to_owned(),
            });
        }
    }

    /// The registry, so a module with metrics of its own (leader election) adds them here.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The `OpenMetrics` text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_state_sets_exactly_one_phase() {
        let m = Metrics::new();
        let r = ReleaseLabels {
            namespace: "prod".into(),
            release: "movies".into(),
        };
        m.release_state(&r, Phase::Soaking, 20, None);
        let text = m.render();
        assert!(text.contains(r#"movrek_operator_release_phase{namespace="prod",release="movies",phase="Soaking"} 1"#), "{text}");
        assert!(text.contains(
            r#"movrek_operator_release_phase{namespace="prod",release="movies",phase="Stable"} 0"#
        ));
        assert!(text.contains(
            r#"movrek_operator_canary_weight_percent{namespace="prod",release="movies"} 20"#
        ));
        m.forget(&r);
        assert!(!m.render().contains("phase=\"Soaking\""));
    }

    #[test]
    fn writes_are_counted_by_kind() {
        let m = Metrics::new();
        assert_eq!(m.writes_total(), 0);
        m.wrote("Deployment");
        m.wrote("Deployment");
        m.wrote("status");
        assert_eq!(m.writes_total(), 3);
        assert!(
            m.render()
                .contains(r#"movrek_operator_api_writes_total{kind="Deployment"} 2"#)
        );
    }
}
