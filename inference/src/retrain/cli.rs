//! `movrek retrain`'s flags and IO shell: check the handoff's flags, read the stable
//! version's record and data, read the window, merge, judge the data, train, score both
//! models, judge the candidate, publish, hand off, notify. Every decision is one of the pure functions of
//! [`super`]; this module only moves bytes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::events::{EventSource, read_window};
use super::gate::{DataLimits, DataVerdict, ModelLimits, ModelVerdict, judge_data, judge_model};
use super::gitops::{self, GitArgs};
use super::handoff::{Delivery, Handoff, ModelFields, apply_direct};
use super::merge::{Merged, merge};
use super::notify::Outcome;
use super::score::{known_by_user, score};
use super::state::EventRange;
use super::state::{DATASET_NAME, FAIRNESS_NAME, RECORD_KIND, RetrainRecord, version_name};
use crate::data::Dataset;
use crate::data::events::IngestReport;
use crate::model::Model;
use crate::store::FetchLimits;
use crate::store::layout::{self, ARTIFACT_NAME, ModelRecord, Prefix, RECORD_NAME};
use crate::train::TrainParams;

/// `movrek retrain` flags.
#[derive(Debug, Args)]
pub struct RetrainArgs {
    /// Store prefix (as `movrek publish --to`): `s3://bucket/prefix`, `gs://…`, `az://…`,
    /// `file:///dir` or a directory.
    #[arg(long, env = "MOVREK_STORE")]
    pub store: String,
    /// Release name (the `RecommenderRelease`).
    #[arg(long, env = movrek_contract::env::RELEASE)]
    pub release: String,
    /// The version stable serves: the parent of the new one (its `model.json` holds where
    /// the last training stopped). Default: the release's `status.stable.version`, read
    /// from the API server (also with `--handoff gitops`: the version in Git is what is
    /// wanted, the cluster's status is what serves).
    #[arg(long, env = "MOVREK_STABLE_VERSION")]
    pub stable_version: Option<String>,
    /// Events since the last training: `kafka://HOST:PORT[,…]/TOPIC` (read after the
    /// offsets the stable version recorded) or event log files, comma-separated (events
    /// after the stable version's last event time).
    #[arg(long, env = "MOVREK_EVENTS")]
    pub events: String,
    /// Data the stable version was trained on, when it was not published by `movrek
    /// retrain` (the first run); later runs read the data set from the store.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training parameters as a JSON object (default: the stable version's).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Version name of the candidate (default: `r` + 12 hex digits of the parent, data
    /// digest and parameters, so a rerun finds its own version).
    #[arg(long = "model-version")]
    pub model_version: Option<String>,
    /// Share of the new ratings held out to compare the candidate with stable.
    #[arg(long, default_value_t = 0.2)]
    pub holdout_fraction: f64,
    /// Seed of the hold-out.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Data limits as a JSON object; missing fields take their defaults:
    /// `{"max_malformed_share": 0.05, "min_volume_ratio": 0.2, "max_unknown_user_share":
    /// 0.5, "max_unknown_movie_share": 0.5, "min_test_ratings": 50}`.
    #[arg(long)]
    pub data_limits: Option<String>,
    /// RMSE gate: the candidate's RMSE must be below this.
    #[arg(long, default_value_t = ModelLimits::default().max_rmse)]
    pub max_rmse: f64,
    /// Ranking gate: NDCG@10 may be below stable's by at most this.
    #[arg(long, default_value_t = ModelLimits::default().ndcg_tolerance)]
    pub ndcg_tolerance: f64,
    /// Fairness gate: a dimension's worst-to-best RMSE gap may grow by at most this.
    #[arg(long, default_value_t = ModelLimits::default().rmse_gap_tolerance)]
    pub rmse_gap_tolerance: f64,
    /// Fairness gate: a dimension's best-to-worst NDCG gap may grow by at most this.
    #[arg(long, default_value_t = ModelLimits::default().ndcg_gap_tolerance)]
    pub ndcg_gap_tolerance: f64,
    /// Fairness gate: groups with fewer held-out ratings do not count in RMSE gaps.
    #[arg(long, default_value_t = ModelLimits::default().min_group_ratings)]
    pub min_group_ratings: usize,
    /// Fairness gate: groups with fewer ranked users do not count in NDCG gaps.
    #[arg(long, default_value_t = ModelLimits::default().min_group_users)]
    pub min_group_users: usize,
    /// How the new version reaches the release: `none` (publish and print `spec.model`),
    /// `direct` (server-side apply of `spec.model`, field manager `movrek-retrain`) or
    /// `gitops` (a commit of `spec.model` to the manifest at `--git-path` in `--git-url`).
    #[arg(long, value_enum, default_value = "none")]
    pub handoff: Handoff,
    /// `--handoff gitops`: repository, branch, manifest path, author, deadline.
    #[command(flatten)]
    pub git: GitArgs,
    /// Namespace of the release (`--handoff direct`; with `gitops`, a manifest that names a
    /// namespace must name this one).
    #[arg(long, env = "MOVREK_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Webhook notified of every outcome (Slack-compatible JSON).
    #[arg(long, env = "MOVREK_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Seconds the broker has to answer, and a read to advance.
    #[arg(long, default_value_t = 10)]
    pub kafka_timeout_secs: u64,
    /// Deadline for each store operation, in seconds.
    #[arg(long, env = "MOVREK_MODEL_TIMEOUT_SECS", default_value_t = 300)]
    pub timeout_secs: u64,
}

impl RetrainArgs {
    fn model_limits(&self) -> ModelLimits {
        ModelLimits {
            max_rmse: self.max_rmse,
            ndcg_tolerance: self.ndcg_tolerance,
            rmse_gap_tolerance: self.rmse_gap_tolerance,
            ndcg_gap_tolerance: self.ndcg_gap_tolerance,
            min_group_ratings: self.min_group_ratings,
            min_group_users: self.min_group_users,
        }
    }

    fn data_limits(&self) -> Result<DataLimits, String> {
        let Some(text) = &self.data_limits else {
            return Ok(DataLimits::default());
        };
        let mut value = serde_json::to_value(DataLimits::default()).expect("limits serialise");
        let given: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("--data-limits is not JSON: {e}"))?;
        let serde_json::Value::Object(fields) = given else {
            return Err("--data-limits must be a JSON object".to_owned());
        };
        for (key, field) in fields {
            if value.get(&key).is_none() {
                return Err(format!("--data-limits: unknown limit {key:?}"));
            }
            value[key] = field;
        }
        serde_json::from_value(value).map_err(|e| format!("--data-limits: {e}"))
    }

    /// The handoff with its flags checked, before anything is read or trained.
    fn route(&self) -> Result<Route, String> {
        Ok(match self.handoff {
            Handoff::Gitops => Route::Commit(self.git.target()?),
            Handoff::Direct => {
                self.git.check_unused(self.handoff)?;
                Route::Apply
            }
            Handoff::None => {
                self.git.check_unused(self.handoff)?;
                Route::Print
            }
        })
    }

    fn limits(&self) -> FetchLimits {
        FetchLimits {
            timeout: Duration::from_secs(self.timeout_secs),
            ..FetchLimits::default()
        }
    }
}

/// [`Handoff`] with what it needs.
#[derive(Debug)]
enum Route {
    Print,
    Apply,
    Commit(gitops::Target),
}

/// Runs the loop once, notifies, and returns the outcome (its exit code is the process's).
/// A notification that cannot be delivered turns the exit code to 1 (after printing why).
pub fn run(args: &RetrainArgs) -> (Outcome, u8) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let outcome = Outcome::Failed {
                error: format!("cannot start the async runtime: {e}"),
            };
            return (outcome, 1);
        }
    };
    let outcome = runtime
        .block_on(run_once(args))
        .unwrap_or_else(|error| Outcome::Failed { error });
    eprintln!("{}", outcome.summary(&args.release));
    let mut code = outcome.exit_code();
    if let Some(url) = &args.webhook_url {
        let body = outcome.message(&args.release);
        if let Err(e) = runtime.block_on(super::notify::send(url, &body)) {
            eprintln!("movrek retrain: the notification was not delivered: {e}");
            code = 1;
        }
    }
    (outcome, code)
}

/// The stable version: its record, its model, its data set and its retraining record.
struct Parent {
    record: ModelRecord,
    model: Model,
    dataset: Dataset,
    retrain: Option<RetrainRecord>,
}

/// The parent: `--stable-version`, or what the release's stable track serves (read from the
/// API server, whatever the handoff: with `gitops` the version in Git is the one wanted, not
/// necessarily the one serving).
async fn stable_version(args: &RetrainArgs) -> Result<String, String> {
    if let Some(version) = &args.stable_version {
        return Ok(version.clone());
    }
    let client = kube_client().await?;
    super::handoff::stable_version(client, &args.release, &args.namespace).await
}

async fn run_once(args: &RetrainArgs) -> Result<Outcome, String> {
    let route = args.route()?;
    let prefix = Prefix::parse(&args.store)?;
    layout::check_name("release", &args.release)?;
    let data_limits = args.data_limits()?;
    let model_limits = args.model_limits();
    let source = EventSource::parse(&args.events)?;
    let stable = stable_version(args).await?;
    layout::check_name("version", &stable)?;
    let parent = read_parent(args, &prefix, &stable).await?;
    let parent_name = parent.record.version.clone();
    let (merged, report, range) = read_and_merge(args, &source, &parent)?;
    let previous_figures = parent.retrain.as_ref().map(|r| &r.figures);
    match judge_data(&merged.figures, previous_figures, &data_limits) {
        DataVerdict::NothingToDo => {
            return Ok(Outcome::NothingToDo {
                parent: parent_name,
            });
        }
        DataVerdict::Refuse(breaches) => {
            return Ok(Outcome::DataRefused {
                parent: parent_name,
                breaches,
                events: merged.figures,
            });
        }
        DataVerdict::Train => {}
    }
    let params = train_params(args, &parent)?;
    let dataset_bytes =
        serde_json::to_vec(&merged.dataset).map_err(|e| format!("cannot encode the data: {e}"))?;
    let data_sha256 = crate::util::sha256_hex(&dataset_bytes);
    let params_json = serde_json::to_string(&params).expect("parameters serialise");
    let version = args
        .model_version
        .clone()
        .unwrap_or_else(|| version_name(&parent_name, &data_sha256, &params_json));
    layout::check_name("version", &version)?;
    let record_entry = prefix.entry(&args.release, &version, RECORD_NAME);
    if let Some(bytes) = layout::read_optional(&record_entry, args.limits())
        .await
        .map_err(|e| crate::util::error_chain(&e))?
    {
        let record: ModelRecord = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{record_entry} is not a model record: {e}"))?;
        let delivery = hand_off(args, &route, &record).await?;
        return Ok(Outcome::AlreadyPublished {
            version,
            parent: parent_name,
            delivery,
        });
    }
    let candidate = crate::train::train(&merged.train, &params, &version, &data_sha256)
        .map_err(|e| format!("training failed: {}", crate::util::error_chain(&e)))?;
    // Both models leave out what the users rated or watched in the candidate's training
    // data, so stable is not scored down for not knowing the window's ratings.
    let known = known_by_user(&merged.train);
    let users = &merged.dataset.users;
    let candidate_score = score(&candidate, users, &merged.test, &known, 10);
    let stable_score = score(&parent.model, users, &merged.test, &known, 10);
    let verdict = judge_model(&candidate_score, &stable_score, &model_limits);
    let gates = verdict.figures().clone();
    if let ModelVerdict::Refuse(_, breaches) = verdict {
        return Ok(Outcome::ModelRefused {
            version,
            parent: parent_name,
            breaches,
            gates,
        });
    }
    let retrain = RetrainRecord {
        kind: RECORD_KIND.to_owned(),
        parent: Some(parent_name.clone()),
        parent_sha256: Some(parent.record.sha256.clone()),
        data_sha256,
        dataset_uri: prefix
            .entry(&args.release, &version, DATASET_NAME)
            .to_string(),
        events: range,
        figures: merged.figures.clone(),
        holdout_seed: args.seed,
        holdout_fraction: args.holdout_fraction,
        data_limits,
        model_limits,
        gates: gates.clone(),
        candidate: candidate_score,
        stable: stable_score,
    };
    let quality = serde_json::to_value(&report).ok();
    let record = publish(args, &prefix, &candidate, &retrain, dataset_bytes, quality).await?;
    let delivery = hand_off(args, &route, &record).await?;
    Ok(Outcome::Published {
        version,
        parent: parent_name,
        gates,
        events: merged.figures,
        delivery,
    })
}

fn train_params(args: &RetrainArgs, parent: &Parent) -> Result<TrainParams, String> {
    let base = parent.record.model.params.clone();
    let Some(path) = &args.params else {
        return Ok(base);
    };
    base.overlaid_with_file(path)
}

async fn read_entry(
    prefix: &Prefix,
    release: &str,
    version: &str,
    name: &str,
    limits: FetchLimits,
) -> Result<Vec<u8>, String> {
    let entry = prefix.entry(release, version, name);
    layout::read_optional(&entry, limits)
        .await
        .map_err(|e| crate::util::error_chain(&e))?
        .ok_or_else(|| format!("{entry}: no such object"))
}

async fn read_parent(args: &RetrainArgs, prefix: &Prefix, version: &str) -> Result<Parent, String> {
    let (release, limits) = (&args.release, args.limits());
    let bytes = read_entry(prefix, release, version, RECORD_NAME, limits).await?;
    let record: ModelRecord = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{release}/{version}/{RECORD_NAME} is not a model record: {e}"))?;
    let artifact = read_entry(prefix, release, version, ARTIFACT_NAME, limits).await?;
    let model = crate::artifact::from_bytes(artifact, Some(&record.sha256))
        .map_err(|e| crate::util::error_chain(&e))?;
    let retrain = RetrainRecord::from_offline(record.offline.as_ref());
    let dataset = match (&retrain, &args.data) {
        (Some(r), _) => {
            let bytes = read_entry(prefix, release, version, DATASET_NAME, limits).await?;
            let digest = crate::util::sha256_hex(&bytes);
            if digest != r.data_sha256 {
                return Err(format!(
                    "{release}/{version}/{DATASET_NAME} has sha256 {digest}, its record says {}",
                    r.data_sha256
                ));
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("{release}/{version}/{DATASET_NAME} is not a data set: {e}"))?
        }
        (None, Some(dir)) => {
            let loaded = crate::data::load_dir(dir).map_err(|e| crate::util::error_chain(&e))?;
            canonical(loaded.dataset)
        }
        (None, None) => {
            return Err(format!(
                "{version} was not published by movrek retrain, so its data set is not in the \
                 store: give --data DIR with the data it was trained on"
            ));
        }
    };
    Ok(Parent {
        record,
        model,
        dataset,
        retrain,
    })
}

/// Sorts a loaded data set the way [`merge`] leaves one, so digests do not depend on file
/// order.
fn canonical(mut data: Dataset) -> Dataset {
    data.users.sort_unstable_by_key(|u| u.id);
    data.movies.sort_unstable_by_key(|m| m.id);
    data.ratings.sort_unstable_by_key(|r| (r.user, r.movie));
    data.watches.sort_unstable_by_key(|w| (w.user, w.movie));
    data
}

/// Publishes the data set and fairness report first (create-only), then the artifact and
/// its record: a record never names a data set that is not there.
async fn publish(
    args: &RetrainArgs,
    prefix: &Prefix,
    model: &Model,
    retrain: &RetrainRecord,
    dataset_bytes: Vec<u8>,
    quality: Option<serde_json::Value>,
) -> Result<ModelRecord, String> {
    let limits = args.limits();
    let version = &model.metadata().version;
    let chain = |e: crate::store::StoreError| crate::util::error_chain(&e);
    let digest_of = |bytes: &[u8]| Some(crate::util::sha256_hex(bytes));
    let dataset_entry = prefix.entry(&args.release, version, DATASET_NAME);
    let digest = crate::util::sha256_hex(&dataset_bytes);
    layout::put_immutable(&dataset_entry, dataset_bytes, &digest, digest_of, limits)
        .await
        .map_err(chain)?;
    let fairness = serde_json::to_vec_pretty(&serde_json::json!({
        "candidate": retrain.candidate,
        "stable": retrain.stable,
        "gates": retrain.gates,
    }))
    .expect("report serialises");
    let digest = crate::util::sha256_hex(&fairness);
    let fairness_entry = prefix.entry(&args.release, version, FAIRNESS_NAME);
    layout::put_immutable(&fairness_entry, fairness, &digest, digest_of, limits)
        .await
        .map_err(chain)?;
    let bytes = crate::artifact::to_bytes(model);
    let sha256 = crate::util::sha256_hex(&bytes);
    let record = ModelRecord {
        release: args.release.clone(),
        version: version.clone(),
        uri: prefix
            .entry(&args.release, version, ARTIFACT_NAME)
            .to_string(),
        sha256,
        size_bytes: bytes.len() as u64,
        model: model.metadata().clone(),
        offline: Some(serde_json::to_value(retrain).expect("record serialises")),
        quality,
    };
    layout::publish(prefix, &record, bytes, limits)
        .await
        .map_err(chain)?;
    Ok(record)
}

async fn kube_client() -> Result<kube::Client, String> {
    kube::Client::try_default().await.map_err(|e| {
        format!(
            "no Kubernetes client (in-cluster service account or KUBECONFIG): {}",
            crate::util::error_chain(&e)
        )
    })
}

/// Reads the window after the parent's range and merges it into the parent's data set.
fn read_and_merge(
    args: &RetrainArgs,
    source: &EventSource,
    parent: &Parent,
) -> Result<(Merged, IngestReport, EventRange), String> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let timeout = Duration::from_secs(args.kafka_timeout_secs);
    let previous_range = parent.retrain.as_ref().map(|r| r.events.clone());
    // The reads and the training block this (only) thread: nothing else runs on it.
    let (ingest, range) = read_window(source, previous_range.as_ref(), now_ms, timeout)?;
    let (window, report) = ingest.finish();
    let mut merged = merge(&parent.dataset, &window, args.holdout_fraction, args.seed);
    merged.figures.lines = report.lines;
    merged.figures.malformed = report.malformed;
    merged.figures.out_of_range = report.out_of_range;
    merged.figures.window_hours = range.hours();
    Ok((merged, report, range))
}

/// Hands a published version to the release (`--handoff`), and prints its `spec.model`.
async fn hand_off(
    args: &RetrainArgs,
    route: &Route,
    record: &ModelRecord,
) -> Result<Delivery, String> {
    let retrain = RetrainRecord::from_offline(record.offline.as_ref());
    let fields = ModelFields {
        version: record.version.clone(),
        uri: record.uri.clone(),
        sha256: record.sha256.clone(),
        offline_rmse: retrain
            .as_ref()
            .map(|r| r.gates.candidate_rmse)
            .or(record.model.holdout_rmse)
            .unwrap_or(f64::NAN),
        provenance: retrain.as_ref().map(super::handoff::provenance),
    };
    println!("version: {:?}", fields.version);
    println!("uri: {:?}", fields.uri);
    println!("sha256: {:?}", fields.sha256);
    println!("offlineRmse: {:.4}", fields.offline_rmse);
    if let Some(provenance) = &fields.provenance {
        // JSON is YAML: the line pastes into a manifest's spec.model as it is.
        println!("provenance: {provenance}");
    }
    match route {
        Route::Print => Ok(Delivery::Printed),
        Route::Apply => {
            let client = kube_client().await?;
            apply_direct(client, &args.release, &args.namespace, &fields).await?;
            Ok(Delivery::Applied {
                namespace: args.namespace.clone(),
            })
        }
        Route::Commit(target) => {
            let message = gitops::commit_message(
                &args.release,
                &args.namespace,
                &fields,
                retrain.as_ref().and_then(|r| r.parent.as_deref()),
                retrain.as_ref().map(|r| &r.gates),
            );
            let git = gitops::Git::new(Duration::from_secs(args.git.git_timeout_secs));
            let release = (args.release.as_str(), args.namespace.as_str());
            let pushed = gitops::hand_off(&git, target, release, &fields, &message)?;
            Ok(gitops::delivery(target, &pushed))
        }
    }
}
