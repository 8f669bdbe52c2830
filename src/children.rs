//! Pure builders for the objects a release owns: the `<name>-stable` / `<name>-canary`
//! Deployments (the pod contract), the three Services, and the change fingerprint that lets
//! the controller skip writes when nothing changed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::analysis::Track;
use crate::crd::RecommenderRelease;
use crate::plan::{DeploymentState, WorkloadPlan};

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "movrek-operator";
/// Annotation holding the fingerprint of the applied desired object.
pub const APPLIED_ANNOTATION: &str = "movrek.dev/applied";
/// `app.kubernetes.io/name` of inference pods.
pub const APP_NAME: &str = "movrek-inference";
/// Label naming the track (`stable` or `canary`).
pub const TRACK_LABEL: &str = "movrek.dev/track";
/// Name of the container serving the model.
pub const CONTAINER: &str = "inference";
/// UID and GID the inference container runs as.
const RUN_AS: i64 = 65_532;

/// Why a child object could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The release has no namespace or UID (not read from the API server).
    #[error("release {0} has no namespace or uid; was it read from the API server?")]
    NotPersisted(String),
    /// The object could not be turned into JSON.
    #[error("cannot encode {kind} {name}")]
    Encode {
        /// Object kind.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// A desired child, ready for server-side apply.
#[derive(Clone, Debug)]
pub struct Child {
    /// Which API it lives in.
    pub resource: ApiResource,
    /// The object, with [`APPLIED_ANNOTATION`] set to its fingerprint.
    pub object: DynamicObject,
}

impl Child {
    /// Object name.
    pub fn name(&self) -> String {
        self.object.name_any()
    }

    /// The fingerprint stored in [`APPLIED_ANNOTATION`].
    pub fn fingerprint(&self) -> Option<&str> {
        self.object
            .annotations()
            .get(APPLIED_ANNOTATION)
            .map(String::as_str)
    }

    /// True when `live` was applied from exactly this desired object.
    pub fn matches(&self, live: Option<&DynamicObject>) -> bool {
        let live = live.and_then(|o| o.annotations().get(APPLIED_ANNOTATION));
        live.is_some() && live.map(String::as_str) == self.fingerprint()
    }
}

/// Turns a typed object into a [`Child`], stamping the fingerprint of its content.
pub fn child<K>(object: &K) -> Result<Child, ChildError>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let encode = |source| ChildError::Encode {
        kind: std::any::type_name::<K>()
            .rsplit("::")
            .next()
            .unwrap_or("object"),
        name: name.clone(),
        source,
    };
    let mut value = serde_json::to_value(object).map_err(encode)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into_owned().into());
        map.insert("kind".into(), K::kind(&()).into_owned().into());
    }
    let fingerprint = fingerprint(&value.to_string());
    let mut dynamic: DynamicObject = serde_json::from_value(value).map_err(encode)?;
    dynamic
        .annotations_mut()
        .insert(APPLIED_ANNOTATION.into(), fingerprint);
    Ok(Child {
        resource: ApiResource::erase::<K>(&()),
        object: dynamic,
    })
}

/// FNV-1a 64 of `text`, hex.
pub fn fingerprint(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Name of a track's Deployment and Service: `<name>-stable`, `<name>-canary`.
pub fn track_name(release: &str, track: Track) -> String {
    format!("{release}-{}", track.as_label())
}

/// Labels shared by every object of a release.
pub fn common_labels(release: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), release.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
    ])
}

/// The selector of a track's pods (immutable on a Deployment, so no version in it).
pub fn track_selector(release: &str, track: Track) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), release.to_owned()),
        (TRACK_LABEL.to_owned(), track.as_label().to_owned()),
    ])
}

fn owner(rr: &RecommenderRelease) -> Result<OwnerReference, ChildError> {
    rr.controller_owner_ref(&())
        .filter(|o| !o.uid.is_empty())
        .ok_or_else(|| ChildError::NotPersisted(rr.name_any()))
}

fn meta(
    rr: &RecommenderRelease,
    name: String,
    labels: BTreeMap<String, String>,
) -> Result<ObjectMeta, ChildError> {
    let namespace = rr
        .namespace()
        .ok_or_else(|| ChildError::NotPersisted(rr.name_any()))?;
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace),
        labels: Some(labels),
        owner_references: Some(vec![owner(rr)?]),
        ..ObjectMeta::default()
    })
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, initial_delay: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// The Deployment of one track running `workload`.
pub fn deployment(
    rr: &RecommenderRelease,
    track: Track,
    workload: &WorkloadPlan,
) -> Result<Deployment, ChildError> {
    let release = rr.name_any();
    let target = &workload.target;
    let mut labels = common_labels(&release);
    labels.insert(
        "app.kubernetes.io/version".to_owned(),
        label_value(&target.version),
    );
    labels.insert(TRACK_LABEL.to_owned(), track.as_label().to_owned());
    let port = rr.spec.port;
    let pod_annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), port.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]);
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(target.image.clone()),
        args: Some(vec!["serve".to_owned()]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(vec![
            env("MOVREK_MODEL_URI", &target.model_uri),
            env("MOVREK_MODEL_SHA256", &target.model_sha256),
            env("MOVREK_MODEL_VERSION", &target.version),
            env("MOVREK_RELEASE", &release),
            env("MOVREK_TRACK", track.as_label()),
            env("MOVREK_PORT", port.to_string()),
        ]),
        readiness_probe: Some(http_probe("/readyz", 1, 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 10, 6)),
        resources: rr.spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Ok(Deployment {
        metadata: meta(rr, track_name(&release, track), labels.clone())?,
        spec: Some(DeploymentSpec {
            replicas: Some(workload.replicas),
            selector: LabelSelector {
                match_labels: Some(track_selector(&release, track)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// A Service: `<name>-stable` / `<name>-canary` for a track, `<name>` for both (`None`).
pub fn service(rr: &RecommenderRelease, track: Option<Track>) -> Result<Service, ChildError> {
    let release = rr.name_any();
    let (name, selector) = match track {
        Some(t) => (track_name(&release, t), track_selector(&release, t)),
        None => (
            release.clone(),
            BTreeMap::from([("app.kubernetes.io/instance".to_owned(), release.clone())]),
        ),
    };
    let mut labels = common_labels(&release);
    if let Some(t) = track {
        labels.insert(TRACK_LABEL.to_owned(), t.as_label().to_owned());
    }
    Ok(Service {
        metadata: meta(rr, name, labels)?,
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: rr.spec.port,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// What the plan needs to know about a live Deployment.
pub fn deployment_state(d: &Deployment) -> DeploymentState {
    let spec = d.spec.as_ref();
    let status = d.status.as_ref();
    let container = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == CONTAINER));
    let model_version = container
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "MOVREK_MODEL_VERSION"))
        .and_then(|e| e.value.clone());
    DeploymentState {
        generation: d.metadata.generation.unwrap_or(0),
        observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        updated_replicas: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        current_replicas: status.and_then(|s| s.replicas).unwrap_or(0),
        model_version,
        image: container.and_then(|c| c.image.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{RecommenderReleaseSpec, TrackStatus};

    fn release() -> RecommenderRelease {
        let spec: RecommenderReleaseSpec = serde_json::from_value(serde_json::json!({
            "image": "img:1",
            "model": {"version": "v7", "uri": "file:///m/v7", "sha256": "a".repeat(64)},
            "resources": {"limits": {"memory": "512Mi"}}
        }))
        .unwrap();
        let mut rr = RecommenderRelease::new("movies", spec);
        rr.metadata.namespace = Some("prod".into());
        rr.metadata.uid = Some("uid-1".into());
        rr
    }

    fn workload(version: &str, replicas: i32) -> WorkloadPlan {
        WorkloadPlan {
            target: TrackStatus {
                version: version.into(),
                image: "img:2".into(),
                model_uri: format!("file:///m/{version}"),
                model_sha256: "b".repeat(64),
                replicas,
                ready_replicas: 0,
            },
            replicas,
        }
    }

    #[test]
    fn deployment_carries_the_pod_contract() {
        let d = deployment(&release(), Track::Canary, &workload("v8", 1)).unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("movies-canary"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("prod"));
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("RecommenderRelease", "uid-1", Some(true))
        );
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap(),
            &track_selector("movies", Track::Canary)
        );
        let template = spec.template.metadata.as_ref().unwrap();
        let labels = template.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "movrek-inference");
        assert_eq!(labels["app.kubernetes.io/instance"], "movies");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "movrek-operator");
        assert_eq!(labels["app.kubernetes.io/version"], "v8");
        assert_eq!(labels[TRACK_LABEL], "canary");
        assert_eq!(
            template.annotations.as_ref().unwrap()["prometheus.io/port"],
            "8082"
        );
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("img:2"));
        let env: BTreeMap<_, _> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e.value.clone().unwrap()))
            .collect();
        assert_eq!(env["MOVREK_MODEL_URI"], "file:///m/v8");
        assert_eq!(env["MOVREK_MODEL_SHA256"], "b".repeat(64));
        assert_eq!(env["MOVREK_MODEL_VERSION"], "v8");
        assert_eq!(env["MOVREK_RELEASE"], "movies");
        assert_eq!(env["MOVREK_TRACK"], "canary");
        let readiness = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/readyz"));
        let liveness = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(liveness.path.as_deref(), Some("/healthz"));
        assert!(
            c.resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()
                .contains_key("memory")
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
    }

    #[test]
    fn services_select_one_track_or_both() {
        let rr = release();
        let stable = service(&rr, Some(Track::Stable)).unwrap();
        assert_eq!(stable.metadata.name.as_deref(), Some("movies-stable"));
        assert_eq!(
            stable.spec.as_ref().unwrap().selector.as_ref().unwrap()[TRACK_LABEL],
            "stable"
        );
        let shared = service(&rr, None).unwrap();
        assert_eq!(shared.metadata.name.as_deref(), Some("movies"));
        let selector = shared.spec.as_ref().unwrap().selector.clone().unwrap();
        assert_eq!(selector.len(), 1);
        assert_eq!(selector["app.kubernetes.io/instance"], "movies");
    }

    #[test]
    fn fingerprints_change_with_content_only() {
        let rr = release();
        let a = child(&deployment(&rr, Track::Stable, &workload("v1", 2)).unwrap()).unwrap();
        let b = child(&deployment(&rr, Track::Stable, &workload("v1", 2)).unwrap()).unwrap();
        let c = child(&deployment(&rr, Track::Stable, &workload("v1", 3)).unwrap()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert!(a.matches(Some(&b.object)));
        assert!(!a.matches(Some(&c.object)));
        assert!(!a.matches(None));
        assert_eq!(a.object.types.as_ref().unwrap().kind, "Deployment");
        assert_eq!(a.resource.plural, "deployments");
    }

    #[test]
    fn a_release_not_read_from_the_api_server_is_refused() {
        let mut rr = release();
        rr.metadata.uid = None;
        let err = service(&rr, None).unwrap_err();
        assert!(err.to_string().contains("no namespace or uid"), "{err}");
    }

    #[test]
    fn live_deployment_state_is_read_back() {
        let mut d = deployment(&release(), Track::Stable, &workload("v3", 2)).unwrap();
        d.metadata.generation = Some(4);
        d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            observed_generation: Some(4),
            ready_replicas: Some(2),
            updated_replicas: Some(2),
            replicas: Some(2),
            ..Default::default()
        });
        let state = deployment_state(&d);
        assert_eq!(state.model_version.as_deref(), Some("v3"));
        assert!(state.serves(&workload("v3", 2).target));
        assert!(!state.serves(&workload("v4", 2).target));
    }

    #[test]
    fn label_values_are_sanitised() {
        assert_eq!(label_value("v7"), "v7");
        assert_eq!(label_value("2024/05 model!"), "2024_05_model");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }
}
