//! Prints the cost of one `plan` call (goal: ≤ 50 µs) for a steady release and for a
//! release mid-analysis with a fresh check result. Run:
//! `cargo bench -p movrek-operator --bench plan`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use movrek_operator::analysis::{Analysis, CanaryMetrics, Verdict};
use movrek_operator::crd::{RecommenderRelease, RecommenderReleaseSpec};
use movrek_operator::plan::{DeploymentState, Observed, plan};

fn at(secs: i64) -> Timestamp {
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("timestamp");
    t0.checked_add(SignedDuration::from_secs(secs))
        .expect("in range")
}

fn serving(version: &str, replicas: i32) -> DeploymentState {
    DeploymentState {
        generation: 1,
        observed_generation: 1,
        replicas,
        ready_replicas: replicas,
        updated_replicas: replicas,
        current_replicas: replicas,
        model_version: Some(version.to_owned()),
        image: Some("img:1".to_owned()),
    }
}

fn release(version: &str) -> RecommenderRelease {
    let spec: RecommenderReleaseSpec = serde_json::from_value(serde_json::json!({
        "image": "img:1",
        "model": {"version": version, "uri": "file:///m", "sha256": "a".repeat(64)},
        "canary": {"soakDuration": "10m", "interval": "1m", "stepWeights": [5, 20, 50]}
    }))
    .expect("spec");
    let mut rr = RecommenderRelease::new("movies", spec);
    rr.metadata.namespace = Some("prod".into());
    rr.metadata.generation = Some(1);
    rr
}

/// Drives a release to the given point and returns it with what the plan would observe.
fn scenarios() -> Vec<(&'static str, RecommenderRelease, Observed, Timestamp)> {
    let mut rr = release("v1");
    let stable = Observed {
        stable: Some(serving("v1", 2)),
        ..Observed::default()
    };
    rr.status = Some(plan(&rr, &stable, at(0)).status);
    let steady = rr.clone();

    rr.spec.model.version = "v2".into();
    rr.status = Some(plan(&rr, &stable, at(1)).status);
    let both = Observed {
        stable: Some(serving("v1", 2)),
        canary: Some(serving("v2", 1)),
        ..Observed::default()
    };
    rr.status = Some(plan(&rr, &both, at(2)).status);
    let analysing = Observed {
        analysis: Some(Analysis {
            metrics: CanaryMetrics {
                average_latency_seconds: Some(0.12),
                p99_latency_seconds: Some(0.4),
                error_rate: Some(0.001),
                requests: Some(900.0),
            },
            verdict: Verdict::Pass,
            reason: "avg 120ms <= 500ms, errors 0.1% <= 1%, 900 requests".into(),
            comparison: None,
            step: None,
            guardrails: Verdict::Pass,
        }),
        ..both.clone()
    };
    vec![
        ("steady (idle) release", steady, stable, at(5000)),
        ("soaking, not yet due", rr.clone(), both, at(300)),
        ("analysis result -> next step", rr, analysing, at(602)),
    ]
}

fn main() {
    let iterations = 200_000u32;
    println!("plan() cost, {iterations} calls per scenario (goal <= 50 us/call)");
    for (name, rr, observed, now) in scenarios() {
        for _ in 0..1_000 {
            black_box(plan(black_box(&rr), black_box(&observed), now));
        }
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(plan(black_box(&rr), black_box(&observed), now));
        }
        let per_call: Duration = start.elapsed() / iterations;
        println!("{name:<32} {:>8} ns/call", per_call.as_nanos());
    }
}
