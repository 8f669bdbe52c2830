//! Test infrastructure of the retraining scenario (issue 12): a model published to the
//! S3-compatible store as a user publishes one (`movrek publish`), simulated users whose
//! watches and ratings reach Kafka through the release's route (`movrek simulate`), and
//! retraining Jobs made from the chart's `CronJob` as `kubectl create job --from=cronjob/…`
//! makes them (a copy of `spec.jobTemplate`, owned by the `CronJob`, annotated as a manual
//! run).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use crate::models::Model;
use crate::s3::S3;
use crate::support::{ChildGuard, movrek_bin};

/// The chart's retraining `CronJob` (`<helm release>-movrek-operator-retrain`).
pub const CRONJOB: &str = "movrek-movrek-operator-retrain";

/// `movrek publish` of `model` under `prefix` for `release`; the published model, whose
/// `uri` is the artifact's place in the store.
pub fn publish(model: &Model, s3: &S3, prefix: &str, release: &str) -> Model {
    let out = Command::new(movrek_bin())
        .arg("publish")
        .arg("--model")
        .arg(&model.path)
        .args(["--to", prefix, "--release", release])
        .env("MOVREK_LOG", "warn")
        .envs(s3.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run movrek publish");
    assert!(
        out.status.success(),
        "movrek publish {} to {prefix}: {}",
        model.version,
        String::from_utf8_lossy(&out.stderr)
    );
    Model {
        uri: format!("{prefix}/{release}/{}/model.movrek", model.version),
        ..model.clone()
    }
}

/// Where simulated users send their requests and write what they did.
pub struct Users<'a> {
    /// nginx, the release's route.
    pub target: &'a str,
    /// The route's virtual host.
    pub host: &'a str,
    /// The data set whose users (and hidden taste) are simulated.
    pub data: &'a Path,
    /// `kafka://BROKERS/TOPIC`.
    pub sink: &'a str,
}

/// Runs `movrek simulate` to its end: `sessions` sessions of the data set's users (no unknown
/// users, malformed requests or bursts) at 150 sessions/s, each watch written as its last
/// minute only; returns the run's summary (`tally.lines` lines reached the sink). Panics
/// with the log's tail after two minutes or on a failed run.
pub async fn simulate(
    users: &Users<'_>,
    sessions: u64,
    seed: u64,
    dir: &Path,
) -> serde_json::Value {
    let summary = dir.join(format!("simulate-{seed}.json"));
    let mut cmd = Command::new(movrek_bin());
    cmd.args(["simulate", "--target", users.target, "--host", users.host])
        .arg("--data")
        .arg(users.data)
        .args(["--count", &sessions.to_string(), "--rate", "150"])
        .args(["--concurrency", "8", "--seed", &seed.to_string()])
        .args([
            "--unknown-share",
            "0",
            "--malformed-share",
            "0",
            "--burst-share",
            "0",
        ])
        .args(["--last-minute-only", "--quiet", "--sink", users.sink])
        .arg("--summary-json")
        .arg(&summary)
        .env("MOVREK_LOG", "warn");
    let log = dir.join(format!("simulate-{seed}.log"));
    let mut process = ChildGuard::spawn("movrek simulate", cmd, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = process.exit_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "movrek simulate did not finish in 120 s:\n{}",
            process.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.success(),
        "movrek simulate failed ({status}):\n{}",
        process.log_tail(20)
    );
    let text = std::fs::read_to_string(&summary).expect("the simulate summary");
    serde_json::from_str(&text).expect("the simulate summary is JSON")
}

/// Creates Job `name` from the [`CRONJOB`]'s `spec.jobTemplate`, with `extra_args` after
/// the template's container arguments.
pub async fn create_job(
    client: &Client,
    namespace: &str,
    name: &str,
    extra_args: &[String],
) -> Job {
    let cronjob = Api::<CronJob>::namespaced(client.clone(), namespace)
        .get(CRONJOB)
        .await
        .expect("the chart's retraining CronJob");
    let template = cronjob
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .expect("CronJob spec");
    let mut spec = template.spec.expect("jobTemplate.spec");
    let container = spec
        .template
        .spec
        .as_mut()
        .and_then(|s| s.containers.first_mut())
        .expect("a container");
    container
        .args
        .get_or_insert_with(Vec::new)
        .extend_from_slice(extra_args);
    let owner = OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "CronJob".to_owned(),
        name: CRONJOB.to_owned(),
        uid: cronjob.uid().expect("CronJob uid"),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let meta = template.metadata.unwrap_or_default();
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: Some(BTreeMap::from([(
                "cronjob.kubernetes.io/instantiate".to_owned(),
                "manual".to_owned(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    Api::<Job>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &job)
        .await
        .unwrap_or_else(|e| panic!("create Job {name}: {e}"))
}

/// The type (`Complete` or `Failed`) of a finished Job's final condition.
pub fn job_outcome(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.clone())
}

/// Waits until Job `name` is `Complete` or `Failed`; panics with its status after `limit`.
pub async fn wait_job(client: &Client, namespace: &str, name: &str, limit: Duration) -> Job {
    let api = Api::<Job>::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + limit;
    loop {
        let job = api.get(name).await.expect("get Job");
        if job_outcome(&job).is_some() {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "Job {name} not finished within {limit:?}: {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
