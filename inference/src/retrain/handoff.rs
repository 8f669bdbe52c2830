//! Hands a published version to its `RecommenderRelease`, one way per run ([`Handoff`]).
//! `direct`: a server-side apply of `spec.model` (version, uri, sha256, offlineRmse,
//! provenance) with field manager `movrek-retrain`, for clusters without `GitOps`. `gitops`:
//! the same fields committed to the release's manifest in a Git repository
//! ([`super::gitops`], [`super::manifest`]). The values are computed once, by pure functions
//! ([`model_patch`], [`provenance`]); the apply is one call. The operator copies
//! `provenance` into `status.history` when the version's rollout ends.
//!
//! # Caveats
//! The direct apply is forced: `movrek-retrain` takes ownership of those fields from whoever
//! applied the manifest (kubectl, Helm). A later `kubectl apply` of an older manifest
//! conflicts on them instead of silently rolling the model back; Helm upgrades take them
//! back (`--force-conflicts` or server-side apply). Where a Git repository is the source of
//! truth (Argo CD, Flux), use `gitops`: a direct apply would be reverted by the next sync.
//! `gitops` needs the `git` CLI (not in the `FROM scratch` inference image), pushes straight
//! to the branch (no pull request), edits the manifest in place and refuses layouts it cannot
//! edit safely (flow style, anchors, templates: see [`super::manifest`]); the version reaches
//! the cluster when the `GitOps` tool syncs, not when `movrek retrain` exits.

use serde_json::{Value, json};

use super::gate::Metric;
use super::state::{EventRange, RetrainRecord};

/// The field manager of the apply.
pub const FIELD_MANAGER: &str = "movrek-retrain";

/// How the new version reaches the release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Handoff {
    /// Publish only; print `spec.model` for a person or another tool.
    None,
    /// Server-side apply of `spec.model` on the release.
    Direct,
    /// A commit of `spec.model` to the release's manifest in a Git repository (`--git-*`).
    Gitops,
}

/// How a version reached its release, as the outcome's message tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `--handoff none`: `spec.model` printed only.
    Printed,
    /// `--handoff direct`: applied to the release in this namespace.
    Applied {
        /// The release's namespace.
        namespace: String,
    },
    /// `--handoff gitops`.
    Git {
        /// Repository URL without user information.
        repository: String,
        /// Branch.
        branch: String,
        /// Manifest path.
        path: String,
        /// The commit pushed; `None` when the manifest already named the version.
        commit: Option<String>,
    },
}

impl Delivery {
    /// One clause for people: what happened to `release`'s `spec.model`.
    pub fn describe(&self, release: &str, version: &str) -> String {
        match self {
            Delivery::Printed => "spec.model printed (--handoff none)".to_owned(),
            Delivery::Applied { namespace } => {
                format!("spec.model applied to {namespace}/{release}")
            }
            Delivery::Git {
                repository,
                branch,
                path,
                commit: Some(commit),
            } => format!("committed {commit} to {repository} ({branch}:{path})"),
            Delivery::Git {
                repository,
                branch,
                path,
                commit: None,
            } => format!(
                "{repository} ({branch}:{path}) is already at version {version}; nothing committed"
            ),
        }
    }

    /// The same for machines: `mode` and its details.
    pub fn to_json(&self) -> Value {
        match self {
            Delivery::Printed => json!({"mode": "none"}),
            Delivery::Applied { namespace } => json!({"mode": "direct", "namespace": namespace}),
            Delivery::Git {
                repository,
                branch,
                path,
                commit,
            } => json!({
                "mode": "gitops",
                "repository": repository,
                "branch": branch,
                "path": path,
                "commit": commit,
                "changed": commit.is_some(),
            }),
        }
    }
}

/// What the release's `spec.model` becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFields {
    /// Version.
    pub version: String,
    /// Artifact URI.
    pub uri: String,
    /// Artifact SHA-256.
    pub sha256: String,
    /// Offline RMSE of the candidate on the held-out new ratings.
    pub offline_rmse: f64,
    /// `spec.model.provenance` ([`provenance`]); `None` for a version `movrek retrain` did
    /// not publish.
    pub provenance: Option<Value>,
}

/// Four decimals, as `movrek publish` prints figures.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The apply body: a `RecommenderRelease` naming only the fields `movrek retrain` owns in
/// `spec.model`, so the apply touches nothing else (other fields of `spec.model`, such as
/// `credentialsSecret`, keep their owners).
pub fn model_patch(name: &str, namespace: &str, fields: &ModelFields) -> Value {
    let mut model = json!({
        "version": fields.version,
        "uri": fields.uri,
        "sha256": fields.sha256,
        "offlineRmse": round4(fields.offline_rmse),
    });
    if let Some(provenance) = &fields.provenance {
        model["provenance"] = provenance.clone();
    }
    json!({
        "apiVersion": "movrek.dev/v1alpha1",
        "kind": "RecommenderRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": model},
    })
}

/// `spec.model.provenance` (the operator's `ModelProvenance`) of a retrained version: data
/// digest and URI, the events consumed, the parent, both models' NDCG and the parent's RMSE
/// on the same held-out ratings, and the candidate's fairness gaps with their growth over
/// the parent's.
pub fn provenance(record: &RetrainRecord) -> Value {
    let gates = &record.gates;
    let gaps: Vec<Value> = gates
        .candidate_gaps
        .iter()
        .map(|gap| {
            let parent = gates
                .stable_gaps
                .iter()
                .find(|s| s.dimension == gap.dimension && s.metric == gap.metric);
            let mut value = json!({
                "dimension": gap.dimension.name(),
                "metric": match gap.metric {
                    Metric::Rmse => "rmse",
                    Metric::Ndcg => "ndcg",
                },
                "gap": round4(gap.gap),
            });
            if let Some(parent) = parent {
                value["growth"] = json!(round4(gap.gap - parent.gap));
            }
            if let Some(worst) = &gap.worst {
                value["worst"] = json!(worst);
            }
            value
        })
        .collect();
    let mut value = json!({
        "dataDigest": record.data_sha256,
        "dataUri": record.dataset_uri,
        "eventRange": event_range(&record.events),
        "offlineNdcg10": round4(gates.candidate_ndcg),
        "parentRmse": round4(gates.stable_rmse),
        "parentNdcg10": round4(gates.stable_ndcg),
        "fairnessGaps": gaps,
    });
    if let Some(parent) = &record.parent {
        value["parentVersion"] = json!(parent);
    }
    value
}

/// The CRD's compact `eventRange`: source, `PARTITION:FROM-TO` offsets, first and last
/// event time (RFC 3339).
fn event_range(range: &EventRange) -> Value {
    let mut value = json!({"source": range.source});
    let offsets: Vec<String> = range
        .offsets
        .iter()
        .map(|(partition, to)| {
            let from = range.start_offsets.get(partition).copied().unwrap_or(*to);
            format!("{partition}:{from}-{to}")
        })
        .collect();
    if !offsets.is_empty() {
        value["offsets"] = json!(offsets.join(","));
    }
    let rfc3339 = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    if let Some(first) = range.first_event.and_then(rfc3339) {
        value["firstEvent"] = json!(first);
    }
    if let Some(last) = range.last_event.and_then(rfc3339) {
        value["lastEvent"] = json!(last);
    }
    value
}

fn releases(client: kube::Client, namespace: &str) -> kube::Api<kube::api::DynamicObject> {
    use kube::api::{ApiResource, GroupVersionKind};
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("movrek.dev", "v1alpha1", "RecommenderRelease"),
        "recommenderreleases",
    );
    kube::Api::namespaced_with(client, namespace, &resource)
}

/// The version the release's stable track serves (`status.stable.version`).
///
/// # Errors
/// The API server's refusal, or a release with no stable version yet.
pub async fn stable_version(
    client: kube::Client,
    name: &str,
    namespace: &str,
) -> Result<String, String> {
    let release = releases(client, namespace).get(name).await.map_err(|e| {
        format!(
            "cannot read recommenderrelease {namespace}/{name}: {}",
            crate::util::error_chain(&e)
        )
    })?;
    release
        .data
        .pointer("/status/stable/version")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "recommenderrelease {namespace}/{name} has no status.stable.version yet: give \
                 --stable-version"
            )
        })
}

/// Applies [`model_patch`] to the release with `client`.
///
/// # Errors
/// The API server's refusal (no such release, no permission, validation) in one line.
pub async fn apply_direct(
    client: kube::Client,
    name: &str,
    namespace: &str,
    fields: &ModelFields,
) -> Result<(), String> {
    use kube::api::{Patch, PatchParams};
    let api = releases(client, namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(
        name,
        &params,
        &Patch::Apply(model_patch(name, namespace, fields)),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        format!(
            "cannot apply spec.model to recommenderrelease {namespace}/{name}: {}",
            crate::util::error_chain(&e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use http_body_util::BodyExt as _;
    use kube::client::Body;
    use tower_test::mock;

    use crate::retrain::gate::{
        DataLimits, Dimension, EventFigures, GateFigures, GroupScore, ModelLimits, ModelScore, gap,
    };
    use crate::retrain::state::RECORD_KIND;

    fn fields() -> ModelFields {
        ModelFields {
            version: "r0123456789ab".into(),
            uri: "s3://models/movies/r0123456789ab/model.movrek".into(),
            sha256: "a".repeat(64),
            offline_rmse: 0.912_345,
            provenance: Some(json!({"parentVersion": "v1"})),
        }
    }

    /// A model scored on two gender groups with the given RMSEs (100 ratings, 20 users each;
    /// NDCG 0.25 for `F`, 0.3 for `M`).
    fn scored(version: &str, rmse: f64, f: f64, m: f64) -> ModelScore {
        let group = |label: &str, rmse: f64| GroupScore {
            dimension: Dimension::Gender,
            group: label.to_owned(),
            ratings: 100,
            rmse: Some(rmse),
            users: 20,
            ndcg: Some(if label == "F" { 0.25 } else { 0.3 }),
        };
        ModelScore {
            version: version.to_owned(),
            rmse,
            ndcg: 0.312_34,
            ndcg_k: 10,
            ratings: 200,
            users: 40,
            groups: vec![group("F", f), group("M", m)],
        }
    }

    fn record() -> RetrainRecord {
        let limits = ModelLimits::default();
        let (candidate, stable) = (
            scored("r1", 0.9, 0.95, 0.90),
            scored("v1", 0.95, 1.02, 0.95),
        );
        let gaps = |s: &ModelScore| {
            vec![
                gap(s, Dimension::Gender, Metric::Rmse, &limits),
                gap(s, Dimension::Gender, Metric::Ndcg, &limits),
            ]
        };
        RetrainRecord {
            kind: RECORD_KIND.to_owned(),
            parent: Some("v1".into()),
            parent_sha256: Some("b".repeat(64)),
            data_sha256: "d".repeat(64),
            dataset_uri: "s3://models/movies/r1/dataset.json".into(),
            events: EventRange {
                source: "kafka://127.0.0.1:9092/events".into(),
                offsets: [(0, 250), (1, 240)].into(),
                start_offsets: [(0, 100), (1, 90)].into(),
                first_event: Some(1_764_806_400), // 2025-12-04T00:00:00Z
                last_event: Some(1_764_892_740),
                read_at_ms: 1_764_892_800_000,
                since_ms: Some(1_764_806_400_000),
            },
            figures: EventFigures::default(),
            holdout_seed: 42,
            holdout_fraction: 0.2,
            data_limits: DataLimits::default(),
            model_limits: limits.clone(),
            gates: GateFigures {
                candidate_rmse: candidate.rmse,
                stable_rmse: stable.rmse,
                candidate_ndcg: candidate.ndcg,
                stable_ndcg: 0.3,
                candidate_gaps: gaps(&candidate),
                stable_gaps: gaps(&stable),
            },
            candidate,
            stable,
        }
    }

    #[test]
    fn provenance_summarises_the_retrain_record() {
        assert_eq!(
            provenance(&record()),
            json!({
                "dataDigest": "d".repeat(64),
                "dataUri": "s3://models/movies/r1/dataset.json",
                "eventRange": {
                    "source": "kafka://127.0.0.1:9092/events",
                    "offsets": "0:100-250,1:90-240",
                    "firstEvent": "2025-12-04T00:00:00Z",
                    "lastEvent": "2025-12-04T23:59:00Z",
                },
                "parentVersion": "v1",
                "offlineNdcg10": 0.3123,
                "parentRmse": 0.95,
                "parentNdcg10": 0.3,
                "fairnessGaps": [
                    {"dimension": "gender", "metric": "rmse", "gap": 0.05, "growth": -0.02,
                     "worst": "F"},
                    {"dimension": "gender", "metric": "ndcg", "gap": 0.05, "growth": 0.0,
                     "worst": "F"},
                ],
            })
        );
    }

    #[test]
    fn a_file_window_has_no_offsets_and_a_first_run_no_parent() {
        let mut record = record();
        record.parent = None;
        record.events = EventRange {
            source: "day.log".into(),
            last_event: Some(0),
            ..EventRange::default()
        };
        let value = provenance(&record);
        assert_eq!(
            value["eventRange"],
            json!({"source": "day.log", "lastEvent": "1970-01-01T00:00:00Z"})
        );
        assert!(value.get("parentVersion").is_none());
    }

    #[test]
    fn the_patch_names_only_the_model_fields() {
        let patch = model_patch("movies", "prod", &fields());
        assert_eq!(
            patch["spec"],
            json!({"model": {
                "version": "r0123456789ab",
                "uri": "s3://models/movies/r0123456789ab/model.movrek",
                "sha256": "a".repeat(64),
                "offlineRmse": 0.9123,
                "provenance": {"parentVersion": "v1"},
            }})
        );
        let bare = ModelFields {
            provenance: None,
            ..fields()
        };
        assert!(
            model_patch("movies", "prod", &bare)["spec"]["model"]
                .get("provenance")
                .is_none()
        );
        assert_eq!(
            patch["metadata"],
            json!({"name": "movies", "namespace": "prod"})
        );
        assert_eq!(patch.as_object().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn direct_handoff_is_one_forced_apply_with_its_own_field_manager() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("one request");
            let (method, uri) = (request.method().clone(), request.uri().clone());
            let content_type = request.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap();
            let mut answer = body.clone();
            answer["metadata"]["uid"] = json!("u1");
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
            (method, uri, content_type, body)
        });
        let client = kube::Client::new(service, "default");
        apply_direct(client, "movies", "prod", &fields())
            .await
            .expect("applied");
        let (method, uri, content_type, body) = server.await.unwrap();
        assert_eq!(method, http::Method::PATCH);
        assert_eq!(
            uri.path(),
            "/apis/movrek.dev/v1alpha1/namespaces/prod/recommenderreleases/movies"
        );
        let query = uri.query().unwrap();
        assert!(query.contains("fieldManager=movrek-retrain"), "{query}");
        assert!(query.contains("force=true"), "{query}");
        assert_eq!(content_type, "application/apply-patch+yaml");
        assert_eq!(body, model_patch("movies", "prod", &fields()));
    }
}
