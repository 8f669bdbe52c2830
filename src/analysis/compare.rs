//! The canary-versus-stable judge: every enabled metric's two sequential questions (see
//! [`super::sequential`]), the sample-ratio check, and one verdict. Pure: counts in, report
//! out.
//!
//! # Rules
//! - The split is checked first: when the canary's share of requests departs from the
//!   configured weights (sample-ratio mismatch), no comparison is valid and the verdict is
//!   `Inconclusive`, whatever the metrics say. It is never `Pass`.
//! - A regression on any metric is `Fail` at once. The regression tests share `alpha`
//!   (Bonferroni: `alpha / k` each for `k` enabled metrics), so an identical canary is rolled
//!   back with probability at most `alpha` in all, however often it is checked.
//! - `Pass` needs every enabled metric shown no worse than stable by more than its tolerance
//!   (each at `alpha`: the canary must clear all of them, so false passes stay below `alpha`).
//! - Otherwise `Inconclusive`, with what each undecided metric still needs.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::Verdict;
use super::sequential::{
    Arm, Direction, Finding, Moments, Outcome, RateTest, ScoreTest, Stretch,
    log_ratio_mismatch_evidence,
};

/// Cumulative counts of one track within one rollout step (one traffic weight).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackCounts {
    /// `/recommend` answers.
    pub requests: f64,
    /// Of them, 5xx answers.
    pub errors: f64,
    /// Of them, answers slower than the slow-request bound.
    pub slow: f64,
    /// Recommendation lists the evaluator scored.
    pub scored: f64,
    /// Of them, lists with at least one hit.
    pub hits: f64,
    /// Sum of their scores.
    pub score_sum: f64,
    /// Sum of their squared scores.
    pub score_squares: f64,
}

impl TrackCounts {
    /// `self − earlier`, every field at least 0 (counter resets lose data, never invent it).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let d = |a: f64, b: f64| (a - b).max(0.0);
        Self {
            requests: d(self.requests, earlier.requests),
            errors: d(self.errors, earlier.errors),
            slow: d(self.slow, earlier.slow),
            scored: d(self.scored, earlier.scored),
            hits: d(self.hits, earlier.hits),
            score_sum: d(self.score_sum, earlier.score_sum),
            score_squares: d(self.score_squares, earlier.score_squares),
        }
    }

    /// Field-wise sum.
    #[must_use]
    pub fn plus(&self, other: &Self) -> Self {
        Self {
            requests: self.requests + other.requests,
            errors: self.errors + other.errors,
            slow: self.slow + other.slow,
            scored: self.scored + other.scored,
            hits: self.hits + other.hits,
            score_sum: self.score_sum + other.score_sum,
            score_squares: self.score_squares + other.score_squares,
        }
    }

    fn moments(&self) -> Moments {
        Moments {
            count: self.scored,
            sum: self.score_sum,
            squares: self.score_squares,
        }
    }
}

/// Both tracks' counts over one step, with the canary weight (percent) the step ran at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepCounts {
    /// Configured canary weight during the step, percent.
    pub weight: i32,
    /// The canary's counts.
    pub canary: TrackCounts,
    /// Stable's counts.
    pub stable: TrackCounts,
}

/// The metrics the judge can compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Metric {
    /// 5xx answers per request (lower is better).
    Errors,
    /// Requests slower than the bound, per request (lower is better).
    SlowRequests,
    /// Mean online score of a scored list (higher is better).
    Score,
    /// Lists with a hit per scored list (higher is better).
    Hits,
}

impl Metric {
    /// The name used in status, Events and reasons.
    pub fn name(self) -> &'static str {
        match self {
            Self::Errors => "errors",
            Self::SlowRequests => "slowRequests",
            Self::Score => "score",
            Self::Hits => "hits",
        }
    }

    /// What an exposure unit is called in "needs about N more …".
    fn exposure_name(self) -> &'static str {
        match self {
            Self::Errors | Self::SlowRequests => "requests",
            Self::Score | Self::Hits => "scored lists",
        }
    }
}

/// One metric's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricConfig {
    /// Which metric.
    pub metric: Metric,
    /// Relative tolerance of non-inferiority (see [`RateTest::tolerance`]).
    pub tolerance: f64,
    /// Absolute rate below which the canary is no worse whatever stable does (metrics where
    /// lower is better; ignored for the others).
    pub floor: Option<f64>,
}

/// The judge's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeConfig {
    /// Highest probability of rolling back a canary that is no worse (all metrics together),
    /// and of passing one that is worse by more than a tolerance.
    pub alpha: f64,
    /// The enabled metrics.
    pub metrics: Vec<MetricConfig>,
}

impl JudgeConfig {
    /// True when a quality metric (score or hits, from the online evaluator) is judged.
    pub fn judges_quality(&self) -> bool {
        self.metrics
            .iter()
            .any(|m| matches!(m.metric, Metric::Score | Metric::Hits))
    }
}

/// One metric's result at one check.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricResult {
    /// Which metric.
    pub metric: Metric,
    /// Figures, evidence and finding.
    pub outcome: Outcome,
}

/// The judge's report at one check.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The verdict of the comparison (guardrails are judged separately).
    pub verdict: Verdict,
    /// Observed canary share of requests, `0..=1`.
    pub canary_share: Option<f64>,
    /// E-value of the sample-ratio test.
    pub mismatch_evidence: f64,
    /// True when the split departs from the configured weights.
    pub mismatch: bool,
    /// Per metric, in configuration order.
    pub metrics: Vec<MetricResult>,
    /// One line naming the figures the verdict rests on.
    pub reason: String,
}

/// Judges the steps so far.
pub fn compare(config: &JudgeConfig, steps: &[StepCounts]) -> Report {
    let (canary, stable) = steps.iter().fold(
        (TrackCounts::default(), TrackCounts::default()),
        |(c, s), step| (c.plus(&step.canary), s.plus(&step.stable)),
    );
    let total = canary.requests + stable.requests;
    let canary_share = (total > 0.0).then(|| canary.requests / total);
    let split: Vec<Stretch> = steps
        .iter()
        .filter(|s| s.weight > 0 && s.weight < 100)
        .map(|s| Stretch {
            canary: Arm::new(s.canary.requests, f64::from(s.weight)),
            stable: Arm::new(s.stable.requests, f64::from(100 - s.weight)),
        })
        .collect();
    let log_mismatch = log_ratio_mismatch_evidence(&split);
    let mismatch = log_mismatch >= (1.0 / config.alpha).ln();
    let regression_alpha = config.alpha / config.metrics.len().max(1) as f64;
    let metrics: Vec<MetricResult> = config
        .metrics
        .iter()
        .map(|m| MetricResult {
            metric: m.metric,
            outcome: evaluate(m, config.alpha, regression_alpha, steps, &canary, &stable),
        })
        .collect();
    let (verdict, reason) = conclude(&metrics, mismatch, canary_share, steps);
    Report {
        verdict,
        canary_share,
        mismatch_evidence: log_mismatch.exp(),
        mismatch,
        metrics,
        reason,
    }
}

/// One metric's two questions: regression at `regression_alpha`, non-inferiority at `alpha`.
fn evaluate(
    m: &MetricConfig,
    alpha: f64,
    regression_alpha: f64,
    steps: &[StepCounts],
    canary: &TrackCounts,
    stable: &TrackCounts,
) -> Outcome {
    let rate = |direction, events: fn(&TrackCounts) -> f64, exposure: fn(&TrackCounts) -> f64| {
        let stretches: Vec<Stretch> = steps
            .iter()
            .map(|s| Stretch {
                canary: Arm::new(events(&s.canary), exposure(&s.canary)),
                stable: Arm::new(events(&s.stable), exposure(&s.stable)),
            })
            .collect();
        let test = |alpha| RateTest {
            direction,
            tolerance: m.tolerance,
            floor: m.floor,
            alpha,
        };
        both(
            test(regression_alpha).evaluate(&stretches),
            test(alpha).evaluate(&stretches),
        )
    };
    match m.metric {
        Metric::Errors => rate(Direction::LowerIsBetter, |t| t.errors, |t| t.requests),
        Metric::SlowRequests => rate(Direction::LowerIsBetter, |t| t.slow, |t| t.requests),
        Metric::Hits => rate(Direction::HigherIsBetter, |t| t.hits, |t| t.scored),
        Metric::Score => {
            let test = |alpha| ScoreTest {
                tolerance: m.tolerance,
                alpha,
            };
            both(
                test(regression_alpha).evaluate(canary.moments(), stable.moments()),
                test(alpha).evaluate(canary.moments(), stable.moments()),
            )
        }
    }
}

/// Takes the regression question from the first run and non-inferiority from the second.
fn both(regression: Outcome, no_worse: Outcome) -> Outcome {
    let finding = if regression.finding == Finding::Regression {
        Finding::Regression
    } else if no_worse.finding == Finding::NoWorse {
        Finding::NoWorse
    } else {
        Finding::Undecided
    };
    Outcome {
        finding,
        no_worse_evidence: no_worse.no_worse_evidence,
        needs_more: match finding {
            Finding::Undecided => match (regression.needs_more, no_worse.needs_more) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            _ => None,
        },
        ..regression
    }
}

fn conclude(
    metrics: &[MetricResult],
    mismatch: bool,
    canary_share: Option<f64>,
    steps: &[StepCounts],
) -> (Verdict, String) {
    let figures = metrics.iter().map(describe).collect::<Vec<_>>().join("; ");
    if mismatch {
        let configured = steps.last().map_or(0, |s| s.weight);
        return (
            Verdict::Inconclusive,
            format!(
                "sample ratio mismatch: the canary got {} of requests, configured {configured}%; \
                 comparisons are not valid ({figures})",
                canary_share.map_or_else(|| "none".to_owned(), |s| format!("{:.1}%", s * 100.0))
            ),
        );
    }
    let regressed: Vec<&str> = metrics
        .iter()
        .filter(|m| m.outcome.finding == Finding::Regression)
        .map(|m| m.metric.name())
        .collect();
    if !regressed.is_empty() {
        return (
            Verdict::Fail,
            format!(
                "canary worse than stable on {}: {figures}",
                regressed.join(", ")
            ),
        );
    }
    if metrics
        .iter()
        .all(|m| m.outcome.finding == Finding::NoWorse)
    {
        return (
            Verdict::Pass,
            format!("canary no worse than stable: {figures}"),
        );
    }
    (Verdict::Inconclusive, format!("not decided yet: {figures}"))
}

/// The longest a forecast looks ahead.
const FORECAST_HORIZON_SECS: f64 = 30.0 * 86_400.0;

/// Expected time, from the step's start, until an identical canary passes every enabled
/// metric: stable's rates observed over `observed_secs` are projected (the canary at the same
/// per-request rates, with its share of traffic from `weight`) and the judge is run on the
/// expected counts at growing horizons. `None` when no horizon up to 30 days passes (for
/// instance when the evaluator scores nothing, so quality can never be shown).
pub fn forecast_pass(
    config: &JudgeConfig,
    weight: i32,
    stable: &TrackCounts,
    observed_secs: f64,
) -> Option<f64> {
    if observed_secs <= 0.0 || stable.requests <= 0.0 || !(1..100).contains(&weight) {
        return None;
    }
    let canary_share = f64::from(weight) / f64::from(100 - weight);
    let at = |secs: f64| {
        let scale = secs / observed_secs;
        let stable = scaled(stable, scale);
        let step = StepCounts {
            weight,
            canary: scaled(&stable, canary_share),
            stable,
        };
        compare(config, &[step]).verdict == Verdict::Pass
    };
    let mut high = 10.0;
    while !at(high) {
        high *= 2.0;
        if high > FORECAST_HORIZON_SECS {
            return None;
        }
    }
    let mut low = high / 2.0;
    while high - low > high * 0.02 {
        let mid = f64::midpoint(low, high);
        if at(mid) { high = mid } else { low = mid }
    }
    Some(high.ceil())
}

fn scaled(t: &TrackCounts, k: f64) -> TrackCounts {
    TrackCounts {
        requests: t.requests * k,
        errors: t.errors * k,
        slow: t.slow * k,
        scored: t.scored * k,
        hits: t.hits * k,
        score_sum: t.score_sum * k,
        score_squares: t.score_squares * k,
    }
}

/// `errors 0.52% vs 0.50% (×1.04, e=0.3/2.1): needs about 3,100 more requests`.
/// One metric's result in words: both figures, the effect, the evidence and the finding.
pub fn describe(m: &MetricResult) -> String {
    let o = &m.outcome;
    let mut out = m.metric.name().to_owned();
    let figure = |v: Option<f64>| match (m.metric, v) {
        (_, None) => "-".to_owned(),
        (Metric::Score, Some(v)) => format!("{v:.4}"),
        (_, Some(v)) => format!("{:.2}%", v * 100.0),
    };
    let _ = write!(out, " {} vs {}", figure(o.canary), figure(o.stable));
    let effect = match (m.metric, o.effect) {
        (_, None) => String::new(),
        (Metric::Score, Some(e)) => format!("{e:+.4}, "),
        (_, Some(e)) => format!("×{e:.2}, "),
    };
    let _ = write!(
        out,
        " ({effect}evidence {} worse / {} no worse)",
        short(o.regression_evidence),
        short(o.no_worse_evidence)
    );
    match o.finding {
        Finding::Regression => out.push_str(": worse"),
        Finding::NoWorse => out.push_str(": no worse"),
        Finding::Undecided => match o.needs_more {
            Some(n) => {
                let _ = write!(
                    out,
                    ": needs about {} more {}",
                    thousands(n),
                    m.metric.exposure_name()
                );
            }
            None => out.push_str(": undecided"),
        },
    }
    out
}

fn short(e: f64) -> String {
    if e >= 1000.0 {
        format!("{e:.1e}")
    } else {
        format!("{e:.2}")
    }
}

/// `3100.0` → `3,100` (rounded up to two significant figures above 1,000).
pub fn thousands(n: f64) -> String {
    let mut v = n.max(0.0).ceil() as u64;
    if v >= 1000 {
        let unit = 10u64.pow(v.ilog10() - 1);
        v = v.div_ceil(unit) * unit;
    }
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JudgeConfig {
        JudgeConfig {
            alpha: 0.05,
            metrics: vec![
                MetricConfig {
                    metric: Metric::Errors,
                    tolerance: 0.25,
                    floor: Some(0.01),
                },
                MetricConfig {
                    metric: Metric::SlowRequests,
                    tolerance: 0.2,
                    floor: None,
                },
                MetricConfig {
                    metric: Metric::Score,
                    tolerance: 0.05,
                    floor: None,
                },
                MetricConfig {
                    metric: Metric::Hits,
                    tolerance: 0.1,
                    floor: None,
                },
            ],
        }
    }

    /// A track with `requests` at the given rates; half the requests are scored.
    fn track(requests: f64, errors: f64, slow: f64, hit: f64, score: f64) -> TrackCounts {
        let scored = requests / 2.0;
        TrackCounts {
            requests,
            errors: requests * errors,
            slow: requests * slow,
            scored,
            hits: scored * hit,
            score_sum: scored * score,
            score_squares: scored * (0.25 * 0.25 + score * score),
        }
    }

    fn step(weight: i32, canary: TrackCounts, stable: TrackCounts) -> StepCounts {
        StepCounts {
            weight,
            canary,
            stable,
        }
    }

    #[test]
    fn an_identical_canary_on_plenty_of_traffic_passes() {
        let r = compare(
            &config(),
            &[step(
                20,
                track(40_000.0, 0.005, 0.05, 0.1, 0.3),
                track(160_000.0, 0.005, 0.05, 0.1, 0.3),
            )],
        );
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
        assert!(r.reason.contains("errors 0.50% vs 0.50%"), "{}", r.reason);
    }

    #[test]
    fn a_canary_that_recommends_badly_fails_on_quality_alone() {
        let r = compare(
            &config(),
            &[step(
                20,
                track(20_000.0, 0.005, 0.05, 0.02, 0.1),
                track(80_000.0, 0.005, 0.05, 0.1, 0.3),
            )],
        );
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
        assert!(
            r.reason
                .starts_with("canary worse than stable on score, hits:"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn a_broken_split_is_never_judged() {
        // Configured 20%, observed 30%, and the canary is clearly worse: still inconclusive.
        let r = compare(
            &config(),
            &[step(
                20,
                track(30_000.0, 0.02, 0.05, 0.1, 0.3),
                track(70_000.0, 0.005, 0.05, 0.1, 0.3),
            )],
        );
        assert!(r.mismatch);
        assert_eq!(r.verdict, Verdict::Inconclusive);
        assert!(
            r.reason.starts_with(
                "sample ratio mismatch: the canary got 30.0% of requests, configured 20%"
            ),
            "{}",
            r.reason
        );
    }

    #[test]
    fn little_traffic_says_what_each_metric_needs() {
        let r = compare(
            &config(),
            &[step(
                20,
                track(400.0, 0.005, 0.05, 0.1, 0.3),
                track(1600.0, 0.005, 0.05, 0.1, 0.3),
            )],
        );
        assert_eq!(r.verdict, Verdict::Inconclusive);
        assert!(r.reason.contains("needs about"), "{}", r.reason);
        assert!(r.reason.contains("more scored lists"), "{}", r.reason);
    }

    #[test]
    fn steps_are_judged_with_their_own_weights() {
        // Each step split exactly as configured: no mismatch, even though the pooled share
        // (20% then 50%) matches neither weight.
        let r = compare(
            &config(),
            &[
                step(
                    20,
                    track(20_000.0, 0.005, 0.05, 0.1, 0.3),
                    track(80_000.0, 0.005, 0.05, 0.1, 0.3),
                ),
                step(
                    50,
                    track(50_000.0, 0.005, 0.05, 0.1, 0.3),
                    track(50_000.0, 0.005, 0.05, 0.1, 0.3),
                ),
            ],
        );
        assert!(!r.mismatch, "{}", r.mismatch_evidence);
    }

    #[test]
    fn counts_since_an_earlier_reading_never_go_negative() {
        let later = track(100.0, 0.0, 0.1, 0.1, 0.3);
        let earlier = track(200.0, 0.1, 0.1, 0.1, 0.3);
        let d = later.since(&earlier);
        assert!(
            d.requests.abs() < f64::EPSILON && d.errors.abs() < f64::EPSILON,
            "{d:?}"
        );
    }

    #[test]
    fn thousands_rounds_up_to_two_figures() {
        assert_eq!(thousands(3_061.2), "3,100");
        assert_eq!(thousands(999.2), "1,000");
        assert_eq!(thousands(87.0), "87");
        assert_eq!(thousands(1_234_567.0), "1,300,000");
    }

    #[test]
    fn a_forecast_is_when_expected_counts_first_pass() {
        // Stable over 60 s: 16 req/s with the usual rates; the canary at 20%.
        let stable = track(960.0, 0.005, 0.05, 0.1, 0.3);
        let secs = forecast_pass(&config(), 20, &stable, 60.0).expect("passes within 30 days");
        let at = |s: f64| {
            let k = s / 60.0;
            let st = scaled(&stable, k);
            compare(&config(), &[step(20, scaled(&st, 0.25), st)]).verdict
        };
        assert_eq!(at(secs), Verdict::Pass);
        assert_ne!(
            at(secs * 0.9),
            Verdict::Pass,
            "the forecast is the first passing time"
        );
        // Twice the traffic: about half the time.
        let faster = forecast_pass(&config(), 20, &scaled(&stable, 2.0), 60.0).unwrap();
        assert!((faster / secs - 0.5).abs() < 0.05, "{faster} vs {secs}");
        // Nothing scored (no evaluator): quality is never shown, no forecast.
        let unscored = TrackCounts {
            scored: 0.0,
            hits: 0.0,
            score_sum: 0.0,
            score_squares: 0.0,
            ..stable
        };
        assert_eq!(forecast_pass(&config(), 20, &unscored, 60.0), None);
    }
}
