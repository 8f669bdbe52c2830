//! Canary analysis: the figures a canary is judged on, the pure `judge` that turns them into a
//! verdict, and the `MetricsSource` seam through which those figures are fetched (Prometheus in
//! [`prometheus`]).
//!
//! The rule everything here keeps: a canary is only ever promoted on evidence. Too little
//! traffic, a missing or non-finite figure, or a metrics backend that cannot be reached all end
//! in [`Verdict::Inconclusive`], never in [`Verdict::Pass`].

pub mod compare;
pub mod prometheus;
pub mod sequential;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The limits a canary must stay within, taken from `spec.canary`.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Highest acceptable mean latency of `/recommend` over the window (`maxAverageLatency`).
    pub max_average_latency: Duration,
    /// Highest acceptable 99th percentile latency, when the release sets `maxP99Latency`.
    pub max_p99_latency: Option<Duration>,
    /// Highest acceptable share of 5xx answers, `0.0..=1.0` (`maxErrorRate`).
    pub max_error_rate: f64,
    /// Fewest requests in the window for the figures to count at all (`minRequests`).
    pub min_requests: u64,
}

/// What the canary did during the analysis window. `None` means the backend had no value
/// for that figure (an empty result or a NaN, e.g. a ratio over zero requests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetrics {
    /// Mean `/recommend` latency in seconds.
    pub average_latency_seconds: Option<f64>,
    /// 99th percentile `/recommend` latency in seconds (estimated from histogram buckets).
    pub p99_latency_seconds: Option<f64>,
    /// Share of `/recommend` answers with a 5xx status, `0.0..=1.0`.
    pub error_rate: Option<f64>,
    /// Number of `/recommend` requests in the window (fractional: Prometheus extrapolates).
    pub requests: Option<f64>,
}

/// The outcome of one analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    /// Every limit held, on enough traffic.
    Pass,
    /// At least one limit was breached.
    Fail,
    /// Not enough evidence either way: too little traffic, missing figures, or no backend.
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "Pass",
            Self::Fail => "Fail",
            Self::Inconclusive => "Inconclusive",
        })
    }
}

/// One finished analysis: the figures, the verdict and a one-line human reason that names
/// the figures the verdict rests on.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// The figures as fetched (all `None` when the backend gave nothing).
    pub metrics: CanaryMetrics,
    /// What the figures mean against the thresholds.
    pub verdict: Verdict,
    /// Why, with numbers; suitable for status, Events and notifications.
    pub reason: String,
    /// The canary-versus-stable comparison, when the release sets `spec.canary.judge`.
    pub comparison: Option<compare::Report>,
    /// The current step's counts the comparison used (recorded when the step ends).
    pub step: Option<compare::StepCounts>,
    /// The verdict of the absolute limits alone (equal to `verdict` without a judge).
    pub guardrails: Verdict,
}

/// Both tracks' counts of the current step, as one check reads them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackFigures {
    /// The canary's counts.
    pub canary: compare::TrackCounts,
    /// Stable's counts over the same range.
    pub stable: compare::TrackCounts,
    /// Tracks (`canary`, `stable`) for which the online evaluator has no live series now:
    /// `movrek evaluate` is down, not scraped by this Prometheus, or never saw the track's
    /// impressions. Only looked at when a quality metric is judged; frozen quality counts are
    /// real evidence of a regression but can never show a canary no worse.
    pub evaluator_silent: Vec<&'static str>,
}

impl TrackFigures {
    /// Counts with a live evaluator for both tracks.
    pub fn new(canary: compare::TrackCounts, stable: compare::TrackCounts) -> Self {
        Self {
            canary,
            stable,
            evaluator_silent: Vec::new(),
        }
    }
}

/// What the canary-versus-stable comparison of one check needs besides the guardrail query.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeRequest {
    /// Alpha and the enabled metrics.
    pub config: compare::JudgeConfig,
    /// How long the current step has run: the counts are read over this range.
    pub since: Duration,
    /// The current step's canary weight, percent.
    pub weight: i32,
    /// The counts of the steps already finished.
    pub finished: Vec<compare::StepCounts>,
    /// The slow-request bound, seconds (a bucket bound of the latency histogram).
    pub slow_bound_seconds: f64,
    /// The model versions on the `canary` and `stable` tracks: quality counts are read for
    /// these only. The evaluator keeps scoring a version's lists for an attribution window
    /// after its pods are gone, so a canary just rolled back would otherwise count as the
    /// next one.
    pub versions: TrackVersions,
}

/// The model version serving each track.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackVersions {
    /// `status.canary.version`.
    pub canary: String,
    /// `status.stable.version`.
    pub stable: String,
}

/// Which Deployment's pods a query is about (the `track` label of the pod contract).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Track {
    /// The Deployment serving the current model.
    Stable,
    /// The Deployment serving the model under rollout.
    #[default]
    Canary,
}

impl Track {
    /// The label value the inference server exports (`MOVREK_TRACK`).
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
        }
    }
}

/// Where and over what window to look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalysisQuery {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    pub address: String,
    /// Adds a `namespace="…"` matcher when set. Only set it when the scrape configuration
    /// attaches a `namespace` label to the pods' series (the usual `kubernetes-pods` job and
    /// the Prometheus Operator's `PodMonitor` both do); otherwise every query comes back empty.
    pub namespace: Option<String>,
    /// The `RecommenderRelease` name (the `release` label).
    pub release: String,
    /// Which track to judge; the operator judges the canary.
    pub track: Track,
    /// The range of the `rate()`/`increase()` windows.
    ///
    /// # Caveats
    /// `rate()` needs at least two samples inside the window, so keep it at four or more
    /// scrape intervals (e.g. `1m` for a 15 s scrape interval); shorter windows flap between
    /// figures and "no data".
    pub window: Duration,
}

/// Why figures could not be had. Every variant leads to [`Verdict::Inconclusive`].
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The backend answered, but the canary served no requests in the window.
    #[error("no data: the canary served no requests in the analysis window")]
    NoData,
    /// The backend could not be reached or did not answer in time.
    #[error("metrics backend {address} unreachable")]
    Unreachable {
        /// The address that was tried.
        address: String,
        /// The transport or server-side failure.
        #[source]
        source: BoxError,
    },
    /// The backend answered with an error about the query itself, or an answer that is not
    /// a single number.
    #[error("query failed: {query}")]
    Query {
        /// The `PromQL` that was sent.
        query: String,
        /// What the backend said.
        #[source]
        source: BoxError,
    },
    /// The request was not valid before anything was sent (bad address, zero window).
    #[error("invalid analysis request: {0}")]
    InvalidRequest(String),
    /// The address is not on the operator's `--allowed-prometheus-hosts` list; nothing was sent.
    #[error("Prometheus address refused")]
    NotAllowed(#[source] crate::egress::EgressError),
}

impl MetricsError {
    /// A short, fixed label for metrics and condition reasons (`no_data`, `unreachable`,
    /// `query`, `invalid_request`, `not_allowed`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NoData => "no_data",
            Self::Unreachable { .. } => "unreachable",
            Self::Query { .. } => "query",
            Self::InvalidRequest(_) => "invalid_request",
            Self::NotAllowed(_) => "not_allowed",
        }
    }
}

/// A boxed error that can cross tasks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where canary figures come from. The only production implementation is
/// [`prometheus::Prometheus`]; tests can supply fixed figures.
pub trait MetricsSource: Send + Sync {
    /// Fetches the figures of `q.track` for `q.release` over `q.window`.
    fn canary_metrics(
        &self,
        q: &AnalysisQuery,
    ) -> impl Future<Output = Result<CanaryMetrics, MetricsError>> + Send;

    /// Fetches both tracks' counts over the last `judge.since` (canary first). Sources that
    /// cannot compare tracks keep this default, which says so.
    fn track_counts(
        &self,
        q: &AnalysisQuery,
        judge: &JudgeRequest,
    ) -> impl Future<Output = Result<TrackFigures, MetricsError>> + Send {
        let _ = (q, judge);
        async {
            Err(MetricsError::InvalidRequest(
                "this metrics source cannot compare the canary with stable".to_owned(),
            ))
        }
    }
}

/// Runs one analysis: fetch, then [`judge`]. A fetch error becomes an inconclusive analysis
/// whose reason carries the whole error chain, so status and Events show why.
pub async fn analyze<S: MetricsSource + ?Sized>(
    source: &S,
    query: &AnalysisQuery,
    thresholds: &Thresholds,
) -> Analysis {
    conclude(source.canary_metrics(query).await, thresholds)
}

/// Turns the outcome of a fetch into an [`Analysis`] (pure).
pub fn conclude(fetched: Result<CanaryMetrics, MetricsError>, t: &Thresholds) -> Analysis {
    match fetched {
        Ok(metrics) => {
            let (verdict, reason) = judge(&metrics, t);
            Analysis {
                metrics,
                verdict,
                reason,
                comparison: None,
                step: None,
                guardrails: verdict,
            }
        }
        Err(err) => Analysis {
            metrics: CanaryMetrics::default(),
            verdict: Verdict::Inconclusive,
            reason: error_chain(&err),
            comparison: None,
            step: None,
            guardrails: Verdict::Inconclusive,
        },
    }
}

/// Adds the comparison to a guardrail analysis (pure).
///
/// # Guarantees
/// - A guardrail breach or a regression is `Fail`; the plan tells them apart by
///   `comparison` (a regression rolls back at once, guardrail failures count to
///   `failureLimit`).
/// - `Pass` needs both the guardrails and the comparison to pass.
/// - Counts that could not be read leave the comparison out and the check `Inconclusive`
///   (unless a guardrail failed): the canary is never promoted without it.
/// - While quality is judged and the online evaluator is silent for a track, a check that
///   would pass is `Inconclusive` and says so; a regression still fails.
pub fn conclude_judged(
    guard: Analysis,
    counts: Result<TrackFigures, MetricsError>,
    request: &JudgeRequest,
) -> Analysis {
    let figures = match counts {
        Ok(figures) => figures,
        Err(err) => {
            let verdict = if guard.verdict == Verdict::Fail {
                Verdict::Fail
            } else {
                Verdict::Inconclusive
            };
            return Analysis {
                verdict,
                reason: format!(
                    "comparison with stable unavailable: {}; guardrails: {}",
                    error_chain(&err),
                    guard.reason
                ),
                ..guard
            };
        }
    };
    let step = compare::StepCounts {
        weight: request.weight,
        canary: figures.canary,
        stable: figures.stable,
    };
    let mut steps = request.finished.clone();
    steps.push(step);
    let report = compare::compare(&request.config, &steps);
    let mut verdict = match (report.verdict, guard.verdict) {
        (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
        (Verdict::Pass, Verdict::Pass) => Verdict::Pass,
        _ => Verdict::Inconclusive,
    };
    let mut reason = format!("{}; guardrails: {}", report.reason, guard.reason);
    if request.config.judges_quality() && !figures.evaluator_silent.is_empty() {
        if verdict == Verdict::Pass {
            verdict = Verdict::Inconclusive;
        }
        if verdict != Verdict::Fail {
            let tracks = match figures.evaluator_silent.as_slice() {
                [one] => format!("the {one} track"),
                many => format!("the {} tracks", many.join(" and ")),
            };
            reason = format!(
                "the online evaluator reports nothing for {tracks} now (is movrek evaluate \
                 running, reading the impressions topic, and scraped by this Prometheus?); {reason}"
            );
        }
    }
    Analysis {
        verdict,
        reason,
        comparison: Some(report),
        step: Some(step),
        ..guard
    }
}

/// Renders an error and its sources as `outer: inner: innermost`.
pub use movrek_contract::error_chain;

/// A figure that can be judged: present, finite and not negative.
fn usable(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

/// Judges the canary's figures against the thresholds (pure).
///
/// # Guarantees
/// - Fewer than `min_requests` requests (or no usable request count) → `Inconclusive`,
///   whatever the other figures say: small samples prove nothing either way.
/// - With enough requests, any breached limit → `Fail`, and the reason lists every breach.
///   A limit is breached when the figure is strictly above it (equal is within).
/// - With enough requests and no breach, any needed figure missing, NaN, infinite or
///   negative → `Inconclusive`. p99 is only needed when `max_p99_latency` is set.
/// - Otherwise `Pass`. The reason always carries the figures that were judged.
pub fn judge(m: &CanaryMetrics, t: &Thresholds) -> (Verdict, String) {
    let Some(requests) = usable(m.requests) else {
        return (
            Verdict::Inconclusive,
            "no usable request count for the canary".to_owned(),
        );
    };
    if requests < t.min_requests as f64 {
        return (
            Verdict::Inconclusive,
            format!(
                "only {requests:.0} requests in the window, fewer than minRequests {}",
                t.min_requests
            ),
        );
    }

    let avg = usable(m.average_latency_seconds);
    let p99 = usable(m.p99_latency_seconds);
    let errors = usable(m.error_rate);

    let mut breaches = Vec::new();
    let mut missing = Vec::new();
    let mut figures = Vec::new();

    let max_avg = t.max_average_latency.as_secs_f64();
    match avg {
        Some(v) if v > max_avg => breaches.push(format!(
            "average latency {} > {}",
            format_seconds(v),
            format_seconds(max_avg)
        )),
        Some(v) => figures.push(format!("average latency {}", format_seconds(v))),
        None => missing.push("average latency"),
    }
    if let Some(max_p99) = t.max_p99_latency.map(|d| d.as_secs_f64()) {
        match p99 {
            Some(v) if v > max_p99 => {
                breaches.push(format!(
                    "p99 latency {} > {}",
                    format_seconds(v),
                    format_seconds(max_p99)
                ));
            }
            Some(v) => figures.push(format!("p99 latency {}", format_seconds(v))),
            None => missing.push("p99 latency"),
        }
    } else if let Some(v) = p99 {
        figures.push(format!("p99 latency {}", format_seconds(v)));
    }
    match errors {
        Some(v) if v > t.max_error_rate => breaches.push(format!(
            "error rate {} > {}",
            format_ratio(v),
            format_ratio(t.max_error_rate)
        )),
        Some(v) => figures.push(format!("error rate {}", format_ratio(v))),
        None => missing.push("error rate"),
    }
    let count = format!("{requests:.0} requests");

    if !breaches.is_empty() {
        breaches.push(count);
        return (Verdict::Fail, breaches.join(", "));
    }
    if !missing.is_empty() {
        figures.push(count);
        return (
            Verdict::Inconclusive,
            format!(
                "no value for {} ({})",
                missing.join(", "),
                figures.join(", ")
            ),
        );
    }
    figures.push(count);
    (
        Verdict::Pass,
        format!("within limits: {}", figures.join(", ")),
    )
}

/// Formats seconds for people: `812.3ms`, `1.250s`, `45µs`.
pub fn format_seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3}s")
    } else if s >= 0.001 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{:.0}µs", s * 1e6)
    }
}

/// Formats a ratio as a percentage with two decimals: `0.015` → `1.50%`.
pub fn format_ratio(r: f64) -> String {
    format!("{:.2}%", r * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Thresholds {
        Thresholds {
            max_average_latency: Duration::from_millis(500),
            max_p99_latency: None,
            max_error_rate: 0.01,
            min_requests: 100,
        }
    }

    fn healthy() -> CanaryMetrics {
        CanaryMetrics {
            average_latency_seconds: Some(0.012),
            p99_latency_seconds: Some(0.09),
            error_rate: Some(0.0),
            requests: Some(1000.0),
        }
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "one short row per case reads better than splitting"
    )]
    fn judge_table() {
        let p99_limit = Thresholds {
            max_p99_latency: Some(Duration::from_millis(100)),
            ..limits()
        };
        let cases: Vec<(&str, CanaryMetrics, Thresholds, Verdict)> = vec![
            ("healthy", healthy(), limits(), Verdict::Pass),
            (
                "exactly at every limit",
                CanaryMetrics {
                    average_latency_seconds: Some(0.5),
                    error_rate: Some(0.01),
                    requests: Some(100.0),
                    ..healthy()
                },
                limits(),
                Verdict::Pass,
            ),
            (
                "slow average",
                CanaryMetrics {
                    average_latency_seconds: Some(0.81),
                    ..healthy()
                },
                limits(),
                Verdict::Fail,
            ),
            (
                "too many errors",
                CanaryMetrics {
                    error_rate: Some(0.2),
                    ..healthy()
                },
                limits(),
                Verdict::Fail,
            ),
            (
                "slow p99 with a p99 limit",
                CanaryMetrics {
                    p99_latency_seconds: Some(0.3),
                    ..healthy()
                },
                p99_limit.clone(),
                Verdict::Fail,
            ),
            (
                "slow p99 without a p99 limit",
                CanaryMetrics {
                    p99_latency_seconds: Some(0.3),
                    ..healthy()
                },
                limits(),
                Verdict::Pass,
            ),
            (
                "p99 missing but needed",
                CanaryMetrics {
                    p99_latency_seconds: None,
                    ..healthy()
                },
                p99_limit.clone(),
                Verdict::Inconclusive,
            ),
            (
                "p99 missing and not needed",
                CanaryMetrics {
                    p99_latency_seconds: None,
                    ..healthy()
                },
                limits(),
                Verdict::Pass,
            ),
            (
                "too few requests",
                CanaryMetrics {
                    requests: Some(99.0),
                    ..healthy()
                },
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "too few requests even though slow",
                CanaryMetrics {
                    requests: Some(5.0),
                    average_latency_seconds: Some(2.0),
                    ..healthy()
                },
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "no request count",
                CanaryMetrics {
                    requests: None,
                    ..healthy()
                },
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "NaN request count",
                CanaryMetrics {
                    requests: Some(f64::NAN),
                    ..healthy()
                },
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "NaN average latency",
                CanaryMetrics {
                    average_latency_seconds: Some(f64::NAN),
                    ..healthy()
                },
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "infinite average latency",
                CanaryMetrics {
                    average_latency_seconds: Some(f64::INFINITY),
                    ..healthy()
                },
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "negative error rate",
                CanaryMetrics {
                    error_rate: Some(-0.5),
                    ..healthy()
                },
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "missing error rate",
                CanaryMetrics {
                    error_rate: None,
                    ..healthy()
                },
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "breach beats a missing figure",
                CanaryMetrics {
                    error_rate: None,
                    average_latency_seconds: Some(0.9),
                    ..healthy()
                },
                limits(),
                Verdict::Fail,
            ),
            (
                "all empty",
                CanaryMetrics::default(),
                limits(),
                Verdict::Inconclusive,
            ),
            (
                "zero min requests and zero requests, nothing else",
                CanaryMetrics {
                    requests: Some(0.0),
                    ..CanaryMetrics::default()
                },
                Thresholds {
                    min_requests: 0,
                    ..limits()
                },
                Verdict::Inconclusive,
            ),
        ];
        for (name, metrics, thresholds, want) in cases {
            let (got, reason) = judge(&metrics, &thresholds);
            assert_eq!(got, want, "{name}: {reason}");
            assert!(!reason.is_empty(), "{name}: empty reason");
        }
    }

    #[test]
    fn fail_reason_lists_every_breach_with_figures() {
        let m = CanaryMetrics {
            average_latency_seconds: Some(0.8123),
            p99_latency_seconds: Some(1.25),
            error_rate: Some(0.034),
            requests: Some(640.0),
        };
        let t = Thresholds {
            max_p99_latency: Some(Duration::from_secs(1)),
            ..limits()
        };
        let (verdict, reason) = judge(&m, &t);
        assert_eq!(verdict, Verdict::Fail);
        assert_eq!(
            reason,
            "average latency 812.3ms > 500.0ms, p99 latency 1.250s > 1.000s, \
             error rate 3.40% > 1.00%, 640 requests"
        );
    }

    #[test]
    fn pass_reason_carries_the_figures() {
        let (verdict, reason) = judge(&healthy(), &limits());
        assert_eq!(verdict, Verdict::Pass);
        assert_eq!(
            reason,
            "within limits: average latency 12.0ms, p99 latency 90.0ms, error rate 0.00%, \
             1000 requests"
        );
    }

    #[test]
    fn too_few_requests_reason_names_both_counts() {
        let m = CanaryMetrics {
            requests: Some(42.4),
            ..healthy()
        };
        let (_, reason) = judge(&m, &limits());
        assert_eq!(
            reason,
            "only 42 requests in the window, fewer than minRequests 100"
        );
    }

    #[test]
    fn fetch_errors_are_inconclusive_with_the_cause() {
        let err = MetricsError::Unreachable {
            address: "http://127.0.0.1:1".into(),
            source: "connection refused".into(),
        };
        let a = conclude(Err(err), &limits());
        assert_eq!(a.verdict, Verdict::Inconclusive);
        assert_eq!(
            a.reason,
            "metrics backend http://127.0.0.1:1 unreachable: connection refused"
        );
        assert_eq!(a.metrics, CanaryMetrics::default());
        let err = MetricsError::InvalidRequest("zero window".into());
        assert_eq!(err.metric_label(), "invalid_request");

        let err = MetricsError::NoData;
        assert_eq!(err.metric_label(), "no_data");
        let a = conclude(Err(err), &limits());
        assert_eq!(a.verdict, Verdict::Inconclusive);
        assert!(a.reason.starts_with("no data"), "{}", a.reason);
    }

    #[test]
    fn conclude_passes_figures_through_judge() {
        let a = conclude(Ok(healthy()), &limits());
        assert_eq!(a.verdict, Verdict::Pass);
        assert_eq!(a.metrics, healthy());
    }

    #[test]
    fn formats_small_and_large_durations() {
        assert_eq!(format_seconds(0.000_045), "45µs");
        assert_eq!(format_seconds(0.0123), "12.3ms");
        assert_eq!(format_seconds(2.5), "2.500s");
        assert_eq!(format_ratio(0.015), "1.50%");
    }

    #[test]
    fn verdict_serializes_as_its_name() {
        assert_eq!(
            serde_json::to_string(&Verdict::Inconclusive).unwrap(),
            "\"Inconclusive\""
        );
        let back: Verdict = serde_json::from_str("\"Fail\"").unwrap();
        assert_eq!(back, Verdict::Fail);
    }

    /// `requests` answers at the given error share; half scored with mean 0.3 and hit share 0.1.
    fn track(requests: f64, errors: f64) -> compare::TrackCounts {
        let scored = requests / 2.0;
        compare::TrackCounts {
            requests,
            errors: requests * errors,
            slow: requests * 0.05,
            scored,
            hits: scored * 0.1,
            score_sum: scored * 0.3,
            score_squares: scored * (0.0625 + 0.09),
        }
    }

    fn judged(quality: bool) -> JudgeRequest {
        use compare::{Metric, MetricConfig};
        let metric = |metric, tolerance, floor| MetricConfig {
            metric,
            tolerance,
            floor,
        };
        let mut metrics = vec![metric(Metric::Errors, 0.25, Some(0.01))];
        if quality {
            metrics.push(metric(Metric::Score, 0.05, None));
        }
        JudgeRequest {
            config: compare::JudgeConfig {
                alpha: 0.05,
                metrics,
            },
            since: Duration::from_secs(600),
            weight: 20,
            finished: Vec::new(),
            slow_bound_seconds: 0.25,
            versions: TrackVersions::default(),
        }
    }

    fn passing_guard() -> Analysis {
        conclude(Ok(healthy()), &limits())
    }

    #[test]
    fn a_silent_evaluator_holds_back_a_pass_but_not_a_regression() {
        let same = || TrackFigures::new(track(40_000.0, 0.005), track(160_000.0, 0.005));
        let live = conclude_judged(passing_guard(), Ok(same()), &judged(true));
        assert_eq!(live.verdict, Verdict::Pass, "{}", live.reason);

        let silent = TrackFigures {
            evaluator_silent: vec!["canary"],
            ..same()
        };
        let held = conclude_judged(passing_guard(), Ok(silent.clone()), &judged(true));
        assert_eq!(held.verdict, Verdict::Inconclusive, "{}", held.reason);
        assert!(
            held.reason
                .starts_with("the online evaluator reports nothing for the canary track now"),
            "{}",
            held.reason
        );
        // Quality not judged: the evaluator does not matter.
        let unjudged = conclude_judged(passing_guard(), Ok(silent.clone()), &judged(false));
        assert_eq!(unjudged.verdict, Verdict::Pass, "{}", unjudged.reason);
        // Errors regressed: rolled back whatever the evaluator says.
        let failing = TrackFigures {
            canary: track(40_000.0, 0.05),
            ..silent
        };
        let failed = conclude_judged(passing_guard(), Ok(failing), &judged(true));
        assert_eq!(failed.verdict, Verdict::Fail, "{}", failed.reason);
    }

    #[test]
    fn counts_that_cannot_be_read_never_pass() {
        let down = || MetricsError::Unreachable {
            address: "http://prometheus:9090".to_owned(),
            source: "connection refused".into(),
        };
        let held = conclude_judged(passing_guard(), Err(down()), &judged(true));
        assert_eq!(held.verdict, Verdict::Inconclusive, "{}", held.reason);
        assert!(
            held.reason.starts_with(
                "comparison with stable unavailable: metrics backend http://prometheus:9090 \
                 unreachable: connection refused"
            ),
            "{}",
            held.reason
        );
        let breached = conclude(
            Ok(CanaryMetrics {
                error_rate: Some(0.5),
                ..healthy()
            }),
            &limits(),
        );
        let failed = conclude_judged(breached, Err(down()), &judged(true));
        assert_eq!(
            failed.verdict,
            Verdict::Fail,
            "a guardrail breach still fails"
        );
    }
}
