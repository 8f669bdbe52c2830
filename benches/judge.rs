//! Simulates canary analyses with no cluster and prints, per case and judge, how often the
//! canary is rolled back or promoted and how soon (issue 10's figures). Run:
//! `cargo bench -p movrek-operator --bench judge` (`RUNS=2000` runs per case by default).
//!
//! # The simulated service
//! 20 requests/s (Poisson) split 20% to the canary by an independent coin per request, as a
//! weighted route does. Per request: a 5xx with probability 0.5%; a latency drawn from a
//! log-normal with a 20 ms median and σ = 0.8 (p95 ≈ 75 ms, p99 ≈ 128 ms: the shape of
//! `movrek serve` behind a loaded data plane); half the answers are later scored by the
//! evaluator, a score that is 0 for 40% of lists and `v^0.7` (v uniform) otherwise, mean
//! ≈ 0.35 (the shape `movrek simulate` gives), and a hit for 10% of scored lists. Checks every
//! 10 s for one hour.
//!
//! # The judges
//! - **sequential**: `analysis::compare` on the cumulative counts (errors, slow requests
//!   above 75 ms, score, hits; alpha 0.05). Rolls back at the first `Fail`, promotes at the
//!   first `Pass`.
//! - **threshold** (movrek before issue 10): over a 1 m window, fail a check when the mean
//!   latency is above 500 ms or the error rate above 2% on at least 100 requests (4× the
//!   baseline: at the default 1% an identical canary is rolled back in every run); roll back
//!   at the third failed check; promote at the end of the hour.
//! - **flagger-style**: over a 1 m window, fail a check when the success rate is below 98%
//!   or the p99 (from histogram buckets, as `histogram_quantile`) above 250 ms (about 2×
//!   stable's); roll back at
//!   the fifth failed check; promote at the end of the hour.
//! - **flagger-calibrated**: the same rule with its failure limit raised until an identical
//!   canary is rolled back in at most 5% of runs ([`CALIBRATED_LIMIT`], found with
//!   `CALIBRATED_LIMIT=n` runs of this bench): the windowed judge at the sequential judge's
//!   false-alarm budget, so that their times to rollback compare like with like.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use movrek_operator::analysis::Verdict;
use movrek_operator::analysis::compare::{
    JudgeConfig, Metric, MetricConfig, StepCounts, TrackCounts, compare,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const RATE: f64 = 20.0;
const WEIGHT: i32 = 20;
const CHECK_SECS: u32 = 10;
const CHECKS: u32 = 360;
const ERROR_RATE: f64 = 0.005;
const MEDIAN_MS: f64 = 20.0;
const SIGMA: f64 = 0.8;
const SLOW_MS: f64 = 75.0;
const SCORED_SHARE: f64 = 0.5;
const HIT_RATE: f64 = 0.1;
/// Latency histogram bounds, ms (a subset of `movrek serve`'s).
const BUCKETS_MS: [f64; 12] = [
    2.5, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0, 1000.0, 2500.0,
];
const WINDOW_CHECKS: usize = 6;
/// Failed checks before the calibrated windowed judge rolls back (see the module docs).
const CALIBRATED_LIMIT: u32 = 9;
/// The judges, in the order of [`run`]'s decisions.
const JUDGES: [&str; 4] = [
    "sequential",
    "threshold",
    "flagger-style",
    "flagger-calibrated",
];

/// How the canary differs from stable.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    error_factor: f64,
    latency_factor: f64,
    score_factor: f64,
    hit_factor: f64,
}

const CASES: [Case; 6] = [
    Case {
        name: "A/A (identical canary)",
        error_factor: 1.0,
        latency_factor: 1.0,
        score_factor: 1.0,
        hit_factor: 1.0,
    },
    Case {
        name: "error rate x2",
        error_factor: 2.0,
        latency_factor: 1.0,
        score_factor: 1.0,
        hit_factor: 1.0,
    },
    // Median ×1.1785 moves the share above 75 ms from 4.9% to 7.4% (×1.5).
    Case {
        name: "slow requests x1.5",
        error_factor: 1.0,
        latency_factor: 1.1785,
        score_factor: 1.0,
        hit_factor: 1.0,
    },
    Case {
        name: "online score -10%",
        error_factor: 1.0,
        latency_factor: 1.0,
        score_factor: 0.9,
        hit_factor: 1.0,
    },
    Case {
        name: "random recommender",
        error_factor: 1.0,
        latency_factor: 1.0,
        score_factor: 0.3,
        hit_factor: 0.2,
    },
    Case {
        name: "better model (score and hits +5%)",
        error_factor: 1.0,
        latency_factor: 1.0,
        score_factor: 1.05,
        hit_factor: 1.05,
    },
];

/// When a judge acted, in seconds since the canary got traffic.
#[derive(Clone, Copy, Default)]
struct Decision {
    rollback: Option<u32>,
    promote: Option<u32>,
}

/// One interval's counts of one track, with its latency histogram and latency sum.
#[derive(Clone, Copy, Default)]
struct Interval {
    counts: TrackCounts,
    buckets: [f64; BUCKETS_MS.len() + 1],
    latency_sum_ms: f64,
}

impl Interval {
    fn add(&mut self, other: &Self) {
        self.counts = self.counts.plus(&other.counts);
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.latency_sum_ms += other.latency_sum_ms;
    }
}

fn poisson(rng: &mut SmallRng, mean: f64) -> u32 {
    // Knuth's product of uniforms; means here are ≤ 200, where e^-mean is representable.
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut n = 0;
    while product > limit {
        product *= rng.random::<f64>();
        n += 1;
    }
    n
}

fn normal(rng: &mut SmallRng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn request(rng: &mut SmallRng, into: &mut Interval, case: &Case) {
    let c = &mut into.counts;
    c.requests += 1.0;
    if rng.random::<f64>() < ERROR_RATE * case.error_factor {
        c.errors += 1.0;
    }
    let ms = MEDIAN_MS * case.latency_factor * (SIGMA * normal(rng)).exp();
    into.latency_sum_ms += ms;
    into.buckets[BUCKETS_MS.partition_point(|&b| b < ms)] += 1.0;
    if ms > SLOW_MS {
        c.slow += 1.0;
    }
    if rng.random::<f64>() < SCORED_SHARE {
        c.scored += 1.0;
        let score = if rng.random::<f64>() < 0.4 {
            0.0
        } else {
            (rng.random::<f64>().powf(0.7) * case.score_factor).min(1.0)
        };
        c.score_sum += score;
        c.score_squares += score * score;
        if rng.random::<f64>() < HIT_RATE * case.hit_factor {
            c.hits += 1.0;
        }
    }
}

/// `histogram_quantile`: linear interpolation inside the bucket holding the rank.
fn quantile(q: f64, buckets: &[f64; BUCKETS_MS.len() + 1]) -> Option<f64> {
    let total: f64 = buckets.iter().sum();
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut seen = 0.0;
    for (i, &n) in buckets.iter().enumerate() {
        if seen + n >= rank && n > 0.0 {
            if i == BUCKETS_MS.len() {
                return Some(BUCKETS_MS[i - 1]);
            }
            let lower = if i == 0 { 0.0 } else { BUCKETS_MS[i - 1] };
            return Some(lower + (BUCKETS_MS[i] - lower) * (rank - seen) / n);
        }
        seen += n;
    }
    None
}

fn config() -> JudgeConfig {
    let m = |metric, tolerance, floor| MetricConfig {
        metric,
        tolerance,
        floor,
    };
    JudgeConfig {
        alpha: 0.05,
        metrics: vec![
            m(Metric::Errors, 0.5, Some(0.01)),
            m(Metric::SlowRequests, 0.25, None),
            m(Metric::Score, 0.05, None),
            m(Metric::Hits, 0.2, None),
        ],
    }
}

/// One simulated hour: the three judges' decisions and the time spent in `compare`.
fn run(
    seed: u64,
    case: &Case,
    judge: &JudgeConfig,
    calibrated_limit: u32,
) -> ([Decision; 4], Duration, u32) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut total = [Interval::default(), Interval::default()];
    let mut window: Vec<[Interval; 2]> = Vec::with_capacity(CHECKS as usize);
    let mut decisions = [Decision::default(); 4];
    let (mut threshold_failed, mut flagger_failed) = (0, 0);
    let mut spent = Duration::ZERO;
    let mut calls = 0;
    for check in 1..=CHECKS {
        let t = check * CHECK_SECS;
        let mut now = [Interval::default(), Interval::default()];
        for _ in 0..poisson(&mut rng, RATE * f64::from(CHECK_SECS)) {
            let canary = rng.random::<f64>() < f64::from(WEIGHT) / 100.0;
            if canary {
                request(&mut rng, &mut now[0], case);
            } else {
                request(&mut rng, &mut now[1], &CASES[0]);
            }
        }
        total[0].add(&now[0]);
        total[1].add(&now[1]);
        window.push(now);

        if decisions[0].rollback.is_none() && decisions[0].promote.is_none() {
            let step = StepCounts {
                weight: WEIGHT,
                canary: total[0].counts,
                stable: total[1].counts,
            };
            let started = Instant::now();
            let report = compare(judge, black_box(&[step]));
            spent += started.elapsed();
            calls += 1;
            match report.verdict {
                Verdict::Fail => decisions[0].rollback = Some(t),
                Verdict::Pass => decisions[0].promote = Some(t),
                Verdict::Inconclusive => {}
            }
        }
        if window.len() >= WINDOW_CHECKS {
            let mut canary = Interval::default();
            for w in &window[window.len() - WINDOW_CHECKS..] {
                canary.add(&w[0]);
            }
            let c = &canary.counts;
            let error_rate = c.errors / c.requests.max(1.0);
            let mean_ms = canary.latency_sum_ms / c.requests.max(1.0);
            if decisions[1].rollback.is_none()
                && c.requests >= 100.0
                && (mean_ms > 500.0 || error_rate > 0.02)
            {
                threshold_failed += 1;
                if threshold_failed >= 3 {
                    decisions[1].rollback = Some(t);
                }
            }
            let p99 = quantile(0.99, &canary.buckets).unwrap_or(0.0);
            if 1.0 - error_rate < 0.98 || p99 > 250.0 {
                flagger_failed += 1;
                if flagger_failed == 5 {
                    decisions[2].rollback = Some(t);
                }
                if flagger_failed == calibrated_limit {
                    decisions[3].rollback = Some(t);
                }
            }
        }
        let done = decisions[0].rollback.is_some() || decisions[0].promote.is_some();
        if done && decisions[1..].iter().all(|d| d.rollback.is_some()) {
            break;
        }
    }
    for d in &mut decisions[1..] {
        if d.rollback.is_none() {
            d.promote = Some(CHECKS * CHECK_SECS);
        }
    }
    (decisions, spent, calls)
}

/// Wilson score interval for `k` of `n`, 95%.
fn wilson(k: usize, n: usize) -> (f64, f64) {
    let (k, n, z) = (k as f64, n as f64, 1.96_f64);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn percentile(sorted: &[u32], q: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    let s = sorted[i];
    format!("{}m{:02}s", s / 60, s % 60)
}

fn summarise(out: &mut String, judge: &str, decisions: &[Decision]) {
    let n = decisions.len();
    let mut back: Vec<u32> = decisions.iter().filter_map(|d| d.rollback).collect();
    let mut promoted: Vec<u32> = decisions.iter().filter_map(|d| d.promote).collect();
    back.sort_unstable();
    promoted.sort_unstable();
    let (lo, hi) = wilson(back.len(), n);
    let _ = writeln!(
        out,
        "  {judge:<18} rolled back {:>6.2}% [{:>5.2}, {:>5.2}]  median {:>7}  p95 {:>7}  | promoted {:>6.2}%  median {:>7}",
        100.0 * back.len() as f64 / n as f64,
        100.0 * lo,
        100.0 * hi,
        percentile(&back, 0.5),
        percentile(&back, 0.95),
        100.0 * promoted.len() as f64 / n as f64,
        percentile(&promoted, 0.5),
    );
}

fn main() {
    let runs: u64 = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let judge = config();
    let calibrated_limit: u32 = std::env::var("CALIBRATED_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CALIBRATED_LIMIT);
    println!(
        "judge simulation: {runs} runs per case, {RATE} req/s, canary {WEIGHT}%, a check every {CHECK_SECS} s for {} min, {threads} threads; flagger-calibrated rolls back at {calibrated_limit} failed checks",
        CHECKS * CHECK_SECS / 60
    );
    let started = Instant::now();
    let (mut spent, mut calls) = (Duration::ZERO, 0u64);
    for (index, case) in CASES.iter().enumerate() {
        let per_thread: Vec<(Vec<[Decision; 4]>, Duration, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let judge = &judge;
                    s.spawn(move || {
                        let mut out = Vec::new();
                        let (mut spent, mut calls) = (Duration::ZERO, 0u64);
                        for r in (t..runs).step_by(threads as usize) {
                            let seed = (index as u64) << 32 | r;
                            let (d, s, c) = run(seed, case, judge, calibrated_limit);
                            out.push(d);
                            spent += s;
                            calls += u64::from(c);
                        }
                        (out, spent, calls)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker"))
                .collect()
        });
        let mut all = Vec::new();
        for (d, s, c) in per_thread {
            all.extend(d);
            spent += s;
            calls += c;
        }
        let mut out = format!("{}\n", case.name);
        for (j, name) in JUDGES.iter().enumerate() {
            let column: Vec<Decision> = all.iter().map(|d| d[j]).collect();
            summarise(&mut out, name, &column);
        }
        print!("{out}");
    }
    println!(
        "cost of one sequential check (4 metrics + sample ratio): {:.1} µs mean over {calls} checks; total {:.0} s",
        spent.as_secs_f64() * 1e6 / calls.max(1) as f64,
        started.elapsed().as_secs_f64()
    );
}
