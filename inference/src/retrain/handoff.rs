//! Hands a published version to its `RecommenderRelease`. `direct`: a server-side apply of
//! `spec.model` (version, uri, sha256, offlineRmse) with field manager `movrek-retrain`, for
//! clusters without `GitOps`. The patch is computed by a pure function ([`model_patch`]); the
//! apply is one call.
//!
//! # Caveats
//! The apply is forced: `movrek-retrain` takes ownership of those four fields from whoever
//! applied the manifest (kubectl, Helm). A later `kubectl apply` of an older manifest
//! conflicts on them instead of silently rolling the model back; Helm upgrades take them
//! back (`--force-conflicts` or server-side apply). Where a Git repository is the source of
//! truth, hand off through it instead.

use serde_json::{Value, json};

/// The field manager of the apply.
pub const FIELD_MANAGER: &str = "movrek-retrain";

/// How the new version reaches the release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Handoff {
    /// Publish only; print `spec.model` for a person or another tool.
    None,
    /// Server-side apply of `spec.model` on the release.
    Direct,
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
}

/// The apply body: a `RecommenderRelease` naming only `spec.model`'s four fields, so the
/// apply touches nothing else (other fields of `spec.model`, such as `credentialsSecret`,
/// keep their owners).
pub fn model_patch(name: &str, namespace: &str, fields: &ModelFields) -> Value {
    json!({
        "apiVersion": "movrek.dev/v1alpha1",
        "kind": "RecommenderRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {
            "version": fields.version,
            "uri": fields.uri,
            "sha256": fields.sha256,
            // Four decimals, as `movrek publish` prints it.
            "offlineRmse": (fields.offline_rmse * 10_000.0).round() / 10_000.0,
        }},
    })
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

    fn fields() -> ModelFields {
        ModelFields {
            version: "r0123456789ab".into(),
            uri: "s3://models/movies/r0123456789ab/model.movrek".into(),
            sha256: "a".repeat(64),
            offline_rmse: 0.912_345,
        }
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
            }})
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
