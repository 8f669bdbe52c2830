//! The movrek demo (`hack/demo.sh`): one local cluster, one release, four model versions, and
//! the operator's decisions as they happen.
//!
//! A real kube-apiserver, etcd and controller-manager on 127.0.0.1 (kwok for the nodes), the
//! Helm chart, the operator under the chart's `ServiceAccount`, and a data plane of real
//! processes: a `movrek serve` per pod on its pod IP, Traefik as the Gateway, Prometheus, a Kafka broker, and
//! `movrek evaluate` scoring what simulated users do with their recommendations. Users come
//! from `movrek simulate --live` through the ingress the whole time. The story:
//!
//! 1. `v1-early` (trained on the earliest tenth of the history) is installed as stable;
//! 2. `v2` (retrained on all of it) is judged better and promoted;
//! 3. `v3-random` (fast, but trained on scrambled users) is rolled back on online quality;
//! 4. `v4-slow` (good, but 400 ms per answer) is rolled back on latency.
//!
//! `--keep` leaves everything running and prints how to look around; Ctrl-C (at any time)
//! stops everything the demo started, by pid, and removes the cluster.

#![allow(
    clippy::print_stdout,
    reason = "the demo's output is its product: the story on stdout"
)]

#[allow(dead_code, reason = "shared with the e2e scenarios")]
#[path = "../tests/e2e/bus.rs"]
mod bus;
#[path = "../tests/e2e/cluster.rs"]
mod cluster;
#[path = "../tests/e2e/dataplane.rs"]
mod dataplane;
#[path = "../tests/e2e/gateway.rs"]
mod gateway;
#[path = "../tests/e2e/jobs.rs"]
mod jobs;
#[path = "../tests/e2e/models.rs"]
mod models;
#[path = "../tests/e2e/operator.rs"]
mod operator;
#[path = "../tests/e2e/podmonitor.rs"]
mod podmonitor;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/e2e/timeline.rs"]
mod timeline;
#[path = "../tests/e2e/webhook.rs"]
mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use std::fmt::Write as _;

use kube::api::Api;
use movrek_operator::analysis::compare::Metric;
use movrek_operator::analysis::sequential::Finding;
use movrek_operator::crd::{
    AnalysisRecord, Outcome, Phase, RecommenderRelease, RecommenderReleaseStatus,
};

use bus::{Bus, Evaluator};
use cluster::Cluster;
use dataplane::DataPlane;
use models::{Model, ReleaseTarget, release_manifest, train_models};
use operator::Operator;
use timeline::Timeline;
use webhook::Webhook;

const NAMESPACE: &str = "default";
const RELEASE: &str = "movies";
const HOST: &str = "movies.example";
/// Injected latency of `v4-slow`.
const SLOW_MS: &str = "400";
/// The versions of the story, in order, with what each one is.
const VERSIONS: [(&str, &str); 4] = [
    (
        "v1-early",
        "trained on the earliest tenth of the rating history",
    ),
    ("v2", "retrained on the whole history (a better model)"),
    (
        "v3-random",
        "as fast as v2, but trained on scrambled users (recommends badly)",
    ),
    ("v4-slow", "as good as v2, but 400 ms per answer"),
];
/// The rollout settings of every canary: half the users for quick evidence, checks every 5 s,
/// and the judge on errors, slow requests, online score and hits; the absolute limits stay.
const CANARY: &str = "weight: 50\n    soakDuration: 20s\n    interval: 5s\n    \
    maxAverageLatency: 300ms\n    maxErrorRate: 0.05\n    minRequests: 20\n    failureLimit: 2\n    \
    progressDeadline: 5m\n    judge:\n      alpha: 0.05\n      slowRequest: 250ms\n      \
    score: { tolerance: 0.05 }\n      hits: { tolerance: 0.1 }";
/// Simulated users: sessions per second through the ingress, and the run's upper bound.
const SESSIONS_PER_SECOND: &str = "25";
const SIMULATE_SECONDS: &str = "1800";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let keep = std::env::args().skip(1).any(|a| a == "--keep");
    if let Some(other) = std::env::args().skip(1).find(|a| a != "--keep") {
        eprintln!("demo: unknown argument {other:?}; usage: hack/demo.sh [--keep]");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let (outcome, ended) = tokio::select! {
        outcome = story(keep) => (outcome, "finished"),
        _ = tokio::signal::ctrl_c() => {
            println!("\nCtrl-C: stopping everything the demo started (by pid) and removing the cluster…");
            (Ok(()), "stopped")
        }
    };
    // Everything the story started has been dropped (stopped) by now.
    match outcome {
        Ok(()) => {
            println!(
                "demo {ended} after {:.0} s; everything it started is stopped",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the demo runs. Fields drop in order: users and evaluator first, the operator,
/// the data plane, the broker, the cluster last.
struct Demo {
    say: Story,
    /// Held to be stopped (by pid) when the demo ends.
    #[allow(dead_code, reason = "held for its Drop")]
    users: Option<support::ChildGuard>,
    evaluator: Option<Evaluator>,
    _operator: Operator,
    data: DataPlane,
    bus: Bus,
    webhook: Webhook,
    models: HashMap<String, Model>,
    work: PathBuf,
    cluster: Cluster,
}

/// The story's own output: one line per event, with the time since the start.
#[derive(Clone)]
struct Story {
    epoch: Instant,
}

impl Story {
    fn line(&self, text: &str) {
        println!("{:>6.1}s  {text}", self.epoch.elapsed().as_secs_f64());
    }

    fn heading(&self, text: &str) {
        println!(
            "\n== {text} ({:.0} s in)",
            self.epoch.elapsed().as_secs_f64()
        );
    }
}

async fn story(keep: bool) -> Result<(), String> {
    let say = Story {
        epoch: Instant::now(),
    };
    say.heading("Setting up: control plane, chart, models, data plane, Kafka, operator");
    let mut demo = Demo::start(say.clone()).await;
    demo.install().await?;
    let mut results = Vec::new();
    for (version, what) in &VERSIONS[1..] {
        say.heading(&format!("Rolling out {version}: {what}"));
        results.push(demo.roll_out(version).await?);
    }
    demo.summary(&results).await;
    if keep {
        demo.explore();
        std::future::pending::<()>().await;
    }
    say.heading("Stopping everything the demo started");
    Ok(())
}

impl Demo {
    async fn start(say: Story) -> Self {
        let cluster = Cluster::up().await;
        say.line(&format!(
            "control plane up in {:.1} s: kube-apiserver, etcd, kube-controller-manager, kwok",
            cluster.start_time.as_secs_f64()
        ));
        cluster.helm_install();
        say.line("helm install movrek charts/movrek-operator (CRD, RBAC, ServiceAccount)");
        let work = cluster.dir.parent().expect("cluster parent").join("work");
        std::fs::create_dir_all(&work).expect("create the work dir");
        let names: Vec<&str> = VERSIONS.iter().map(|(v, _)| *v).collect();
        let models = train_models(&work, &names);
        for (version, what) in VERSIONS {
            say.line(&format!("trained {version}: {what}"));
        }
        let faults = HashMap::from([(
            "v4-slow".to_owned(),
            vec![("MOVREK_FAULT_DELAY_MS".to_owned(), SLOW_MS.to_owned())],
        )]);
        let harness_log = work.join("harness.log");
        let gateway = gateway::Gateway::start(&cluster, &work.join("gateway")).await;
        let setup = dataplane::Setup {
            client: cluster.client.clone(),
            namespace: NAMESPACE.to_owned(),
            endpoint: cluster.endpoint(),
            network: cluster.pod_network(),
            gateway,
            pod_monitor: cluster.render_pod_monitor(),
            prometheus_kubeconfig: cluster.prometheus_kubeconfig(),
        };
        let data = DataPlane::start(
            setup,
            &work.join("dataplane"),
            faults,
            Timeline::to_file("demo", &harness_log),
        )
        .await;
        say.line(&format!(
            "data plane up: a movrek serve per pod on its pod IP, Traefik (the Gateway) at {}, Prometheus at {} (finds the pods as the chart's PodMonitor says)",
            data.gateway_url(),
            data.prometheus.url()
        ));
        let bus = Bus::start(&work);
        for topic in ["impressions", "events"] {
            bus.create_topic(topic);
        }
        say.line(&format!(
            "Kafka broker at {}: topics impressions (from the pods), events (from the users)",
            bus.bootstrap
        ));
        let operator = Operator::start("operator", &cluster.operator_kubeconfig(), &work);
        say.line("operator running as the chart's ServiceAccount");
        Self {
            say,
            users: None,
            evaluator: None,
            _operator: operator,
            data,
            bus,
            webhook: Webhook::start().await,
            models,
            work,
            cluster,
        }
    }

    fn releases(&self) -> Api<RecommenderRelease> {
        Api::namespaced(self.cluster.client.clone(), NAMESPACE)
    }

    /// The release manifest with `version` as its model.
    fn manifest(&self, version: &str) -> String {
        let prometheus = self.data.prometheus.url();
        let target = ReleaseTarget {
            name: RELEASE,
            namespace: NAMESPACE,
            host: HOST,
            prometheus: &prometheus,
            webhook: &self.webhook.url,
            impressions: Some((&self.bus.bootstrap, "impressions")),
            credentials_secret: None,
            gateway: Some((gateway::GATEWAY, gateway::GATEWAY_NAMESPACE)),
        };
        release_manifest(&target, &self.models[version], CANARY)
    }

    fn apply(&self, version: &str) {
        self.cluster.apply(&self.manifest(version));
        self.say
            .line(&format!("kubectl apply: rr/{RELEASE} with model {version}"));
    }

    /// `v1-early` as the first model, the evaluator, and the simulated users.
    async fn install(&mut self) -> Result<(), String> {
        let (version, what) = VERSIONS[0];
        self.say.heading(&format!("Installing {version}: {what}"));
        self.apply(version);
        self.follow(version).await?;
        let evaluator = Evaluator::start(
            &self.bus,
            "impressions",
            "events",
            "demo",
            &self.work.join("evaluate.log"),
        )
        .await;
        self.data.prometheus.scrape_evaluator(evaluator.addr);
        self.say.line(&format!(
            "movrek evaluate at http://{}/metrics: joins each watch and rating to the list the \
             user saw, scores it, exports per track",
            evaluator.addr
        ));
        self.users = Some(self.simulate());
        self.say.line(&format!(
            "movrek simulate --live: {SESSIONS_PER_SECOND} user sessions/s through the ingress \
             ({HOST}); they watch and rate what suits their hidden taste"
        ));
        let scored = evaluator
            .wait_scored(RELEASE, "stable", Duration::from_secs(180))
            .await;
        self.say.line(&format!(
            "the evaluator scores the lists stable serves ({scored} so far)"
        ));
        self.evaluator = Some(evaluator);
        Ok(())
    }

    fn simulate(&self) -> support::ChildGuard {
        let mut cmd = Command::new(support::movrek_bin());
        cmd.args([
            "simulate",
            "--target",
            &self.data.gateway_url(),
            "--host",
            HOST,
        ])
        .arg("--data")
        .arg(self.work.join("data"))
        .args([
            "--rate",
            SESSIONS_PER_SECOND,
            "--duration",
            SIMULATE_SECONDS,
        ])
        .args(["--concurrency", "8", "--unknown-share", "0.02"])
        .args(["--malformed-share", "0", "--burst-share", "0"])
        .args(["--minute-seconds", "1", "--live", "--quiet"])
        .args(["--sink", &format!("kafka://{}/events", self.bus.bootstrap)]);
        support::ChildGuard::spawn("movrek simulate", cmd, &self.work.join("simulate.log"))
    }

    /// Applies `version` and follows the rollout to its end.
    async fn roll_out(&mut self, version: &str) -> Result<RolloutResult, String> {
        let applied = Instant::now();
        self.apply(version);
        let (outcome, reason) = self.follow(version).await?;
        let took = applied.elapsed();
        if let Some(text) = self.wait_webhook(version).await {
            let head: Vec<&str> = text.splitn(3, ": ").take(2).collect();
            self.say
                .line(&format!("webhook received: \"{}\"", head.join(": ")));
        }
        let deciding = self
            .releases()
            .get(RELEASE)
            .await
            .ok()
            .and_then(|rr| rr.status)
            .and_then(|s| s.history.into_iter().next())
            .and_then(|h| h.last_analysis)
            .map(|a| compact(&a));
        Ok(RolloutResult {
            version: version.to_owned(),
            outcome,
            reason,
            deciding,
            took,
        })
    }

    /// Prints each phase change and each check until `version` is stable or rolled back.
    async fn follow(&self, version: &str) -> Result<(Outcome, String), String> {
        let api = self.releases();
        let deadline = Instant::now() + Duration::from_secs(420);
        let mut phase = None;
        let mut check = None;
        let mut checks = 0;
        while Instant::now() < deadline {
            let Ok(rr) = api.get(RELEASE).await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let status = rr.status.unwrap_or_default();
            let ours = status.canary.as_ref().is_some_and(|t| t.version == version)
                || status.stable.as_ref().is_some_and(|t| t.version == version);
            if !ours {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if let Some(a) = &status.last_analysis
                && check.as_ref() != Some(&a.time)
                && status.canary.as_ref().is_some_and(|t| t.version == version)
            {
                check = Some(a.time.clone());
                checks += 1;
                self.say.line(&format!("check {checks:>2}: {}", compact(a)));
            }
            if phase != Some(status.phase) {
                phase = Some(status.phase);
                self.say.line(&phase_line(&status));
            }
            let stable = status.stable.as_ref().map(|t| t.version.as_str());
            match (status.phase, status.history.first()) {
                (Phase::Stable, _) if stable == Some(version) && status.history.is_empty() => {
                    return Ok((
                        Outcome::Promoted,
                        "first version: straight to stable".to_owned(),
                    ));
                }
                (Phase::Succeeded | Phase::RolledBack, Some(entry)) if entry.version == version => {
                    return Ok((entry.outcome, entry.reason.clone()));
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!(
            "{version} reached no decision in 7 minutes; see {}",
            self.work.display()
        ))
    }

    /// The webhook message about `version`, if one arrives within 10 s.
    async fn wait_webhook(&self, version: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(text) = self
                .webhook
                .texts()
                .into_iter()
                .rev()
                .find(|t| t.contains(version) && !t.contains("started"))
            {
                return Some(text);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    async fn summary(&self, results: &[RolloutResult]) {
        self.say.heading("What happened");
        for r in results {
            let why = r.reason.split(": ").next().unwrap_or_default();
            println!(
                "  {:<10} {:<11} {:>4.0} s after the apply: {why}",
                r.version,
                format!("{:?}", r.outcome),
                r.took.as_secs_f64(),
            );
            if let Some(figures) = &r.deciding {
                println!("  {:<10} deciding check: {figures}", "");
            }
        }
        let out = self
            .cluster
            .kubectl(&["-n", NAMESPACE, "get", "rr", RELEASE, "-o", "wide"]);
        println!(
            "\n$ kubectl get rr {RELEASE} -o wide\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        if let Ok(rr) = self.releases().get(RELEASE).await {
            let stable = rr
                .status
                .and_then(|s| s.stable)
                .map_or_else(|| "-".to_owned(), |t| t.version);
            println!(
                "stable now serves {stable}; every decision is in status.history and in the Events"
            );
        }
    }

    /// Where to look while `--keep` holds everything up.
    fn explore(&self) {
        self.say
            .heading("Left running (--keep); Ctrl-C stops everything");
        let kubeconfig = self.cluster.kubeconfig.display();
        let bin = cluster::k8s_bin_dir();
        println!(
            "  export KUBECONFIG={kubeconfig} PATH={}:$PATH",
            bin.display()
        );
        println!("  kubectl get rr {RELEASE} -o wide");
        println!("  kubectl describe rr {RELEASE}            # history, conditions, Events");
        println!("  kubectl get rr {RELEASE} -o jsonpath='{{.status.lastAnalysis.comparison}}'");
        println!(
            "  curl -s -H 'Host: {HOST}' {}/recommend/42 -D -   # through the ingress",
            self.data.gateway_url()
        );
        println!(
            "  Prometheus: {}/graph?g0.expr=sum%20by%20(track)(rate(movrek_online_score_sum%5B1m%5D))%20%2F%20sum%20by%20(track)(rate(movrek_online_score_count%5B1m%5D))",
            self.data.prometheus.url()
        );
        if let Some(e) = &self.evaluator {
            println!("  evaluator metrics: http://{}/metrics", e.addr);
        }
        println!("  logs: {}", self.work.display());
    }
}

/// A phase change in one line: the whole message when the rollout ends, else its first
/// clause (the checks are printed on their own).
fn phase_line(status: &RecommenderReleaseStatus) -> String {
    let message = status.message.as_deref().unwrap_or_default();
    let message = match status.phase {
        Phase::Succeeded | Phase::RolledBack | Phase::Stable => message,
        _ => message.split(':').next().unwrap_or_default(),
    };
    format!(
        "phase {:?}, canary weight {}%{}",
        status.phase,
        status.canary_weight,
        if message.is_empty() {
            String::new()
        } else {
            format!(" — {message}")
        }
    )
}

/// One check in one line: the verdict, the split, and per metric both tracks' figures and
/// the finding (the full reason, with the evidence, is in `status.lastAnalysis`).
fn compact(a: &AnalysisRecord) -> String {
    let Some(c) = &a.comparison else {
        return format!("{} — {}", a.verdict, a.message);
    };
    let mut out = format!("{:<12}", a.verdict.to_string());
    if let Some(share) = c.canary_share {
        let _ = write!(out, " split {:>4.1}%", share * 100.0);
    }
    for m in &c.metrics {
        let figure = |v: Option<f64>| match (m.metric, v) {
            (_, None) => "-".to_owned(),
            (Metric::Score, Some(v)) => format!("{v:.1}"),
            (_, Some(v)) => format!("{:.1}%", v * 100.0),
        };
        let finding = match m.finding {
            Finding::Regression => "WORSE",
            Finding::NoWorse => "no worse",
            Finding::Undecided => "undecided",
        };
        let _ = write!(
            out,
            " | {} {} vs {} {finding}",
            m.metric.name(),
            figure(m.canary),
            figure(m.stable)
        );
    }
    if a.message.contains("sample ratio mismatch") {
        out.push_str(" | SAMPLE RATIO MISMATCH");
    }
    out
}

/// One rollout's end.
struct RolloutResult {
    version: String,
    outcome: Outcome,
    reason: String,
    /// The deciding check in one line.
    deciding: Option<String>,
    took: Duration,
}
