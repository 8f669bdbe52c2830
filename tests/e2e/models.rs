//! Test infrastructure: model artifacts for the scenarios, trained by the real `movrek`
//! binary on one small synthetic data set. The version name says what kind of model it is:
//! `…-random` is trained on scrambled users (fast, recommends badly), `…-early` on the
//! earliest tenth of the ratings (a model from before most of the history); `…-slow` and
//! `…-failing` are ordinary models the data-plane stand-in injects faults into.

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;

/// A trained model artifact.
#[derive(Clone, Debug)]
pub struct Model {
    /// `spec.model.version`.
    pub version: String,
    /// The artifact file.
    pub path: PathBuf,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// `spec.model.uri`: `file://<path>`, or where the artifact was published.
    pub uri: String,
}

/// Trains `versions` on one small synthetic data set (the same data, different versions).
pub fn train_models(dir: &Path, versions: &[&str]) -> HashMap<String, Model> {
    let bin = support::movrek_bin();
    let data = dir.join("data");
    let out = Command::new(&bin)
        .args([
            "generate",
            "--users",
            "300",
            "--movies",
            "200",
            "--ratings",
            "8000",
        ])
        .arg("--out")
        .arg(&data)
        .output()
        .expect("run movrek generate");
    assert!(out.status.success(), "movrek generate: {out:?}");
    let scrambled = dir.join("data-scrambled");
    if versions.iter().any(|v| v.contains("random")) {
        scramble_users(&data, &scrambled);
    }
    let early = dir.join("data-early");
    if versions.iter().any(|v| v.contains("early")) {
        earliest_ratings(&data, &early, 10);
    }
    versions
        .iter()
        .map(|v| {
            let source = if v.contains("random") {
                &scrambled
            } else if v.contains("early") {
                &early
            } else {
                &data
            };
            ((*v).to_owned(), train_one(dir, source, v, None))
        })
        .collect()
}

/// Trains `version` on the data directory `data` into `dir/<version>.movrek`, with the
/// training parameters `params` (a JSON object, as `movrek train --params` reads it) over
/// the defaults when given.
pub fn train_one(dir: &Path, data: &Path, version: &str, params: Option<&str>) -> Model {
    let path = dir.join(format!("{version}.movrek"));
    let mut cmd = Command::new(support::movrek_bin());
    cmd.arg("train")
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(&path)
        .args(["--version", version]);
    if let Some(params) = params {
        let file = dir.join(format!("{version}.params.json"));
        std::fs::write(&file, params).expect("write the training parameters");
        cmd.arg("--params").arg(file);
    }
    let out = cmd.output().expect("run movrek train");
    assert!(out.status.success(), "movrek train {version}: {out:?}");
    let sum = Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("run sha256sum");
    let sha256 = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_owned();
    Model {
        version: version.to_owned(),
        uri: format!("file://{}", path.display()),
        path,
        sha256,
    }
}

/// Copies a `movrek generate` data set keeping only the earliest `percent` % of its ratings
/// (by timestamp): what a model trained long before today would have seen.
fn earliest_ratings(data: &Path, out: &Path, percent: usize) {
    copy_all_but_ratings(data, out);
    let ratings = std::fs::read_to_string(data.join("ratings.dat")).expect("read ratings.dat");
    let mut lines: Vec<(u64, &str)> = ratings
        .lines()
        .filter_map(|l| Some((l.rsplit("::").next()?.parse().ok()?, l)))
        .collect();
    lines.sort_unstable();
    let keep = lines.len() * percent / 100;
    let mut kept = String::new();
    for (_, line) in &lines[..keep] {
        let _ = writeln!(kept, "{line}");
    }
    std::fs::write(out.join("ratings.dat"), kept).expect("write the early ratings");
}

/// Copies every file of a data set but `ratings.dat` into `out`.
fn copy_all_but_ratings(data: &Path, out: &Path) {
    std::fs::create_dir_all(out).expect("create the data copy dir");
    for entry in std::fs::read_dir(data).expect("read the data dir") {
        let entry = entry.expect("data dir entry");
        if entry.file_name() != "ratings.dat" {
            std::fs::copy(entry.path(), out.join(entry.file_name())).expect("copy a data file");
        }
    }
}

/// Copies a `movrek generate` data set with every rating moved to another user (user ids
/// rotated by half the population): a model trained on it is as fast as a good one and
/// recommends each user what suits a stranger — the "random recommender" of scenario 16.
fn scramble_users(data: &Path, out: &Path) {
    copy_all_but_ratings(data, out);
    let ratings = std::fs::read_to_string(data.join("ratings.dat")).expect("read ratings.dat");
    let mut users: Vec<u32> = ratings
        .lines()
        .filter_map(|l| l.split("::").next()?.parse().ok())
        .collect();
    users.sort_unstable();
    users.dedup();
    let shift = users.len() / 2;
    let rotated: HashMap<u32, u32> = users
        .iter()
        .enumerate()
        .map(|(i, &u)| (u, users[(i + shift) % users.len()]))
        .collect();
    let mut moved = String::with_capacity(ratings.len());
    for line in ratings.lines() {
        let (user, rest) = line
            .split_once("::")
            .expect("UserID::MovieID::Rating::Timestamp");
        let user: u32 = user.parse().expect("a user id");
        let _ = writeln!(moved, "{}::{rest}", rotated[&user]);
    }
    std::fs::write(out.join("ratings.dat"), moved).expect("write the scrambled ratings");
}

/// Where a release manifest points besides its model: the release's name, namespace and
/// host, the Prometheus and webhook URLs, and the impressions (brokers, topic) if any.
pub struct ReleaseTarget<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.namespace`.
    pub namespace: &'a str,
    /// `spec.traffic.host`.
    pub host: &'a str,
    /// `spec.canary.prometheus.address`.
    pub prometheus: &'a str,
    /// `spec.notify.webhookUrl`.
    pub webhook: &'a str,
    /// `spec.impressions`.
    pub impressions: Option<(&'a str, &'a str)>,
    /// `spec.model.credentialsSecret`: the model store's credentials.
    pub credentials_secret: Option<&'a str>,
    /// `traffic.provider: gateway-api` with this Gateway (name, namespace) as the parent;
    /// `None`: the legacy `ingress-nginx` provider.
    pub gateway: Option<(&'a str, &'a str)>,
}

/// A `RecommenderRelease` manifest serving `model` through the Gateway (or ingress-nginx) with
/// `canary` (the body of `spec.canary`, YAML indented by 4 spaces).
pub fn release_manifest(target: &ReleaseTarget<'_>, model: &Model, canary: &str) -> String {
    let impressions = target
        .impressions
        .map_or_else(String::new, |(brokers, topic)| {
            format!("  impressions:\n    brokers: \"{brokers}\"\n    topic: {topic}\n")
        });
    let credentials = target.credentials_secret.map_or_else(String::new, |name| {
        format!("    credentialsSecret: {name}\n")
    });
    let traffic = target.gateway.map_or_else(
        || "provider: ingress-nginx\n    host: {host}\n    ingressClassName: nginx".to_owned(),
        |(gateway, namespace)| {
            format!(
                "provider: gateway-api\n    host: {{host}}\n    parentRefs:\n    \
                 - name: {gateway}\n      namespace: {namespace}"
            )
        },
    );
    let traffic = traffic.replace("{host}", target.host);
    format!(
        "apiVersion: movrek.dev/v1alpha1\nkind: RecommenderRelease\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\nspec:\n  image: registry.example/movrek-inference:0.1.0\n  \
         model:\n    version: \"{v}\"\n    uri: \"{uri}\"\n    sha256: {sha}\n{credentials}  \
         replicas: 2\n  traffic:\n    {traffic}\n  canary:\n    {canary}\n    prometheus:\n      \
         address: {prom}\n  notify:\n    webhookUrl: {hook}\n{impressions}",
        name = target.name,
        namespace = target.namespace,
        v = model.version,
        uri = model.uri,
        sha = model.sha256,
        prom = target.prometheus,
        hook = target.webhook,
    )
}
