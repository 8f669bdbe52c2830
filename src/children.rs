//! Pure builders for the objects a release owns: the `<name>-stable` / `<name>-canary`
//! Deployments (the pod contract), the three Services, the optional autoscalers, and the
//! comparison that lets the controller skip writes when the live object (from its watch
//! cache) already carries everything the desired one says.
//!
//! Children are labelled and selected by [`RELEASE_LABEL`], never by
//! `app.kubernetes.io/instance`, which Argo CD uses to track the objects of its Applications.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvFromSource, EnvVar, HTTPGetAction, Lifecycle,
    LifecycleHandler, Pod, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretEnvSource, SecurityContext, Service, ServicePort, ServiceSpec, SleepAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use movrek_contract::env as contract;
use serde::Serialize;

use crate::analysis::Track;
use crate::crd::{RecommenderRelease, TrackStatus};
use crate::plan::{DeploymentState, ScalerPlan, WorkloadPlan, fingerprint};

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "movrek-operator";
/// Annotation holding the fingerprint of the applied desired object.
pub const APPLIED_ANNOTATION: &str = "movrek.dev/applied";
/// `app.kubernetes.io/name` of inference pods.
pub const APP_NAME: &str = "movrek-inference";
/// Label naming the track (`stable` or `canary`).
pub const TRACK_LABEL: &str = "movrek.dev/track";
/// Label naming the release every child (and every inference pod) belongs to; watches and
/// selectors use it.
pub const RELEASE_LABEL: &str = "movrek.dev/release";
/// The label an operator before 0.1 selected pods on; kept only where an existing
/// Deployment's immutable selector still uses it.
pub const LEGACY_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Seconds a pod gets between the end of its drain and SIGKILL.
const SHUTDOWN_GRACE: i64 = 30;
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

    /// True when `live` (as JSON) holds every field of this desired object with the same
    /// value: nothing to apply. A child edited or deleted by hand is not current.
    pub fn is_current(&self, live: Option<&serde_json::Value>) -> bool {
        let Some(live) = live else {
            return false;
        };
        serde_json::to_value(&self.object).is_ok_and(|desired| contains(&desired, live))
    }
}

/// True when `live` contains `desired`: every object key of `desired` is in `live` with a
/// contained value; every array element of `desired` is contained in some element of the
/// live array (extra live fields and elements, e.g. server defaults and injected sidecars,
/// are fine); strings equal, or equal as Kubernetes quantities (`0.5` and `500m`).
pub fn contains(desired: &serde_json::Value, live: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| contains(v, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.iter().all(|dv| l.iter().any(|lv| contains(dv, lv)))
        }
        (Value::String(d), Value::String(l)) => {
            d == l || quantity(d).is_some_and(|q| quantity(l) == Some(q))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (d, l) => d == l,
    }
}

/// The value of a Kubernetes quantity (`500m`, `1Gi`, `2`, `1.5k`), if the text is one.
fn quantity(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(value * factor)
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

/// Name of a track's Deployment and Service: `<name>-stable`, `<name>-canary`.
pub fn track_name(release: &str, track: Track) -> String {
    format!("{release}-{}", track.as_label())
}

/// Labels shared by every object of a release.
pub fn common_labels(release: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        (RELEASE_LABEL.to_owned(), release.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
    ])
}

/// The selector of a track's pods (immutable on a Deployment, so no version in it).
pub fn track_selector(release: &str, track: Track) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RELEASE_LABEL.to_owned(), release.to_owned()),
        (TRACK_LABEL.to_owned(), track.as_label().to_owned()),
    ])
}

/// The selector an operator before 0.1 gave a track's Deployment.
fn legacy_track_selector(release: &str, track: Track) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LEGACY_INSTANCE_LABEL.to_owned(), release.to_owned()),
        (TRACK_LABEL.to_owned(), track.as_label().to_owned()),
    ])
}

/// How the live Deployments of a release select their pods.
///
/// A Deployment's selector is immutable, so one created by an operator before 0.1 keeps
/// selecting on `app.kubernetes.io/instance`: while any does, every pod template also carries
/// the legacy labels and the Services select on them, so no pod drops out of a Service.
/// Deleting such a Deployment (the operator recreates it) moves the release to
/// [`RELEASE_LABEL`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Some live Deployment still selects on the legacy label.
    pub legacy: bool,
}

impl Selection {
    /// Reads the live Deployments' selectors.
    pub fn of<'a>(live: impl IntoIterator<Item = &'a Deployment>) -> Self {
        Self {
            legacy: live.into_iter().any(|d| {
                d.spec
                    .as_ref()
                    .and_then(|s| s.selector.match_labels.as_ref())
                    .is_some_and(|m| m.contains_key(LEGACY_INSTANCE_LABEL))
            }),
        }
    }

    /// The pod selector of a track.
    pub fn track(&self, release: &str, track: Track) -> BTreeMap<String, String> {
        if self.legacy {
            legacy_track_selector(release, track)
        } else {
            track_selector(release, track)
        }
    }

    /// The pod selector of the shared Service (both tracks).
    pub fn both(&self, release: &str) -> BTreeMap<String, String> {
        let key = if self.legacy {
            LEGACY_INSTANCE_LABEL
        } else {
            RELEASE_LABEL
        };
        BTreeMap::from([(key.to_owned(), release.to_owned())])
    }
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

/// The pod contract's environment of a track, with the impressions sink when the release
/// asks for one.
fn pod_env(
    rr: &RecommenderRelease,
    release: &str,
    track: Track,
    target: &TrackStatus,
) -> Vec<EnvVar> {
    let mut vars = vec![
        env(contract::MODEL_URI, &target.model_uri),
        env(contract::MODEL_SHA256, &target.model_sha256),
        env(contract::MODEL_VERSION, &target.version),
        env(contract::RELEASE, release),
        env(contract::TRACK, track.as_label()),
        env(contract::PORT, rr.spec.port.to_string()),
    ];
    if let Some(impressions) = &rr.spec.impressions {
        vars.push(env(contract::KAFKA_BROKERS, &impressions.brokers));
        vars.push(env(contract::IMPRESSIONS_TOPIC, &impressions.topic));
    }
    vars
}

/// The model store's credentials (`spec.model.credentialsSecret`): every key of that Secret
/// as an environment variable of the inference container. Not optional: a pod whose
/// credentials are missing stays in `CreateContainerConfigError`, which names the Secret,
/// rather than starting and failing to read its model. `env` (the pod contract) wins over a
/// key of the same name.
fn credentials_env_from(rr: &RecommenderRelease) -> Option<Vec<EnvFromSource>> {
    let name = rr.spec.model.credentials_secret.as_deref()?;
    Some(vec![EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: name.to_owned(),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }])
}

/// The inference container of a track: the pod contract (env, port, probes), the model
/// store's credentials, the drain and the restricted security context.
fn inference_container(
    rr: &RecommenderRelease,
    release: &str,
    track: Track,
    target: &TrackStatus,
    drain: i64,
) -> Container {
    let port = rr.spec.port;
    Container {
        name: CONTAINER.to_owned(),
        image: Some(target.image.clone()),
        args: Some(vec!["serve".to_owned()]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(pod_env(rr, release, track, target)),
        env_from: credentials_env_from(rr),
        readiness_probe: Some(http_probe("/readyz", 1, 5, 3)),
        // The image is FROM scratch (no shell for an exec hook): the kubelet's own sleep.
        lifecycle: (drain > 0).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: drain }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
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
    }
}

/// The Deployment of one track running `workload`. `selection` says how pods are selected
/// (see [`Selection`]).
pub fn deployment(
    rr: &RecommenderRelease,
    track: Track,
    workload: &WorkloadPlan,
    selection: &Selection,
) -> Result<Deployment, ChildError> {
    let release = rr.name_any();
    let target = &workload.target;
    let mut labels = common_labels(&release);
    labels.insert(
        "app.kubernetes.io/version".to_owned(),
        label_value(&target.version),
    );
    labels.insert(TRACK_LABEL.to_owned(), track.as_label().to_owned());
    let selector = selection.track(&release, track);
    let mut pod_labels = labels.clone();
    pod_labels.extend(selector.clone());
    let drain = i64::from(rr.spec.drain_seconds.max(0));
    let port = rr.spec.port;
    let pod_annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), port.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]);
    let container = inference_container(rr, &release, track, target, drain);
    Ok(Deployment {
        metadata: meta(rr, track_name(&release, track), labels.clone())?,
        spec: Some(DeploymentSpec {
            // An autoscaler owns the count: leave the field to it.
            replicas: (!workload.autoscaled).then_some(workload.replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
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
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    termination_grace_period_seconds: Some(drain + SHUTDOWN_GRACE),
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
pub fn service(
    rr: &RecommenderRelease,
    track: Option<Track>,
    selection: &Selection,
) -> Result<Service, ChildError> {
    let release = rr.name_any();
    let (name, selector) = match track {
        Some(t) => (track_name(&release, t), selection.track(&release, t)),
        None => (release.clone(), selection.both(&release)),
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

/// The `HorizontalPodAutoscaler` of a track's Deployment (`autoscaling/v2`, CPU utilisation).
pub fn autoscaler(
    rr: &RecommenderRelease,
    track: Track,
    scaler: &ScalerPlan,
) -> Result<HorizontalPodAutoscaler, ChildError> {
    let release = rr.name_any();
    let name = track_name(&release, track);
    let mut labels = common_labels(&release);
    labels.insert(TRACK_LABEL.to_owned(), track.as_label().to_owned());
    Ok(HorizontalPodAutoscaler {
        metadata: meta(rr, name.clone(), labels)?,
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name,
            },
            min_replicas: Some(scaler.min_replicas),
            max_replicas: scaler.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(scaler.target_cpu_utilization_percent),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        status: None,
    })
}

/// Container restarts of the live pods of a track that run model `version` (terminating
/// pods excluded).
pub fn restarts<'a>(pods: impl IntoIterator<Item = &'a Pod>, version: &str) -> i32 {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.containers.iter().any(|c| {
                    c.name == CONTAINER
                        && c.env.as_ref().is_some_and(|env| {
                            env.iter().any(|e| {
                                e.name == contract::MODEL_VERSION
                                    && e.value.as_deref() == Some(version)
                            })
                        })
                })
            })
        })
        .flat_map(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
        })
        .map(|c| c.restart_count)
        .sum()
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
        .and_then(|env| env.iter().find(|e| e.name == contract::MODEL_VERSION))
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
    use crate::crd::RecommenderReleaseSpec;

    #[test]
    fn the_fingerprint_is_fnv1a_64() {
        // The published FNV-1a 64 test vectors: applied annotations stay comparable across
        // operator versions only while the hash does not change.
        assert_eq!(fingerprint(""), "cbf29ce484222325");
        assert_eq!(fingerprint("a"), "af63dc4c8601ec8c");
        assert_eq!(fingerprint("foobar"), "85944171f73967e8");
    }

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
            autoscaled: false,
        }
    }

    fn env_of(rr: &RecommenderRelease, track: Track) -> BTreeMap<String, String> {
        let d = deployment(rr, track, &workload("v8", 1), &Selection::default()).unwrap();
        let pod = d.spec.unwrap().template.spec.unwrap();
        pod.containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn impressions_reach_both_tracks_only_when_asked_for() {
        let mut rr = release();
        assert!(!env_of(&rr, Track::Stable).contains_key("MOVREK_KAFKA_BROKERS"));
        rr.spec.impressions = Some(crate::crd::ImpressionsSpec {
            brokers: "kafka-0.kafka:9092,kafka-1.kafka:9092".to_owned(),
            topic: "impressions-prod".to_owned(),
        });
        for track in [Track::Stable, Track::Canary] {
            let env = env_of(&rr, track);
            assert_eq!(
                env["MOVREK_KAFKA_BROKERS"],
                "kafka-0.kafka:9092,kafka-1.kafka:9092"
            );
            assert_eq!(env["MOVREK_IMPRESSIONS_TOPIC"], "impressions-prod");
        }
    }

    #[test]
    fn the_store_credentials_secret_reaches_both_tracks_only_when_named() {
        let container = |rr: &RecommenderRelease, track| {
            let d = deployment(rr, track, &workload("v8", 1), &Selection::default()).unwrap();
            d.spec.unwrap().template.spec.unwrap().containers[0].clone()
        };
        let mut rr = release();
        assert_eq!(container(&rr, Track::Stable).env_from, None);
        rr.spec.model.credentials_secret = Some("model-store".to_owned());
        for track in [Track::Stable, Track::Canary] {
            let from = container(&rr, track).env_from.expect("envFrom");
            assert_eq!(from.len(), 1);
            let secret = from[0].secret_ref.as_ref().expect("a Secret");
            assert_eq!(secret.name, "model-store");
            assert_eq!(secret.optional, Some(false));
            assert_eq!(from[0].prefix, None, "the AWS_* names as they are");
        }
    }

    #[test]
    fn deployment_carries_the_pod_contract() {
        let d = deployment(
            &release(),
            Track::Canary,
            &workload("v8", 1),
            &Selection::default(),
        )
        .unwrap();
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
        assert_eq!(labels[RELEASE_LABEL], "movies");
        assert!(
            !labels.contains_key(LEGACY_INSTANCE_LABEL),
            "Argo CD tracks by it"
        );
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
        let stable = service(&rr, Some(Track::Stable), &Selection::default()).unwrap();
        assert_eq!(stable.metadata.name.as_deref(), Some("movies-stable"));
        assert_eq!(
            stable.spec.as_ref().unwrap().selector.as_ref().unwrap()[TRACK_LABEL],
            "stable"
        );
        let shared = service(&rr, None, &Selection::default()).unwrap();
        assert_eq!(shared.metadata.name.as_deref(), Some("movies"));
        let selector = shared.spec.as_ref().unwrap().selector.clone().unwrap();
        assert_eq!(selector.len(), 1);
        assert_eq!(selector[RELEASE_LABEL], "movies");
    }

    #[test]
    fn fingerprints_change_with_content_only() {
        let rr = release();
        let stable = |replicas| {
            let d = deployment(
                &rr,
                Track::Stable,
                &workload("v1", replicas),
                &Selection::default(),
            );
            child(&d.unwrap()).unwrap()
        };
        let (a, b, c) = (stable(2), stable(2), stable(3));
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
        let err = service(&rr, None, &Selection::default()).unwrap_err();
        assert!(err.to_string().contains("no namespace or uid"), "{err}");
    }

    #[test]
    fn live_deployment_state_is_read_back() {
        let mut d = deployment(
            &release(),
            Track::Stable,
            &workload("v3", 2),
            &Selection::default(),
        )
        .unwrap();
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

    #[test]
    fn a_live_object_with_defaults_and_sidecars_is_current_and_a_hand_edit_is_not() {
        let rr = release();
        let desired = child(
            &deployment(
                &rr,
                Track::Stable,
                &workload("v1", 2),
                &Selection::default(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut live = serde_json::to_value(&desired.object).unwrap();
        // Server defaults, status and an injected sidecar: still current.
        live["metadata"]["resourceVersion"] = "42".into();
        live["spec"]["revisionHistoryLimit"] = 10.into();
        live["status"] = serde_json::json!({"readyReplicas": 2});
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "proxy", "image": "envoy"}));
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
            "536870912".into();
        assert!(desired.is_current(Some(&live)));
        // Scaled by hand: not current, so the next reconcile applies it again.
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = 5.into();
        assert!(!desired.is_current(Some(&scaled)));
        // An env var removed by hand: not current.
        let mut edited = live.clone();
        edited["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert!(!desired.is_current(Some(&edited)));
        assert!(!desired.is_current(None), "deleted by hand");
    }

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("1Gi"), Some(1_073_741_824.0));
        assert_eq!(quantity("v1"), None);
        let a = serde_json::json!({"cpu": "0.5"});
        assert!(contains(&a, &serde_json::json!({"cpu": "500m"})));
        assert!(!contains(&a, &serde_json::json!({"cpu": "600m"})));
    }

    #[test]
    fn an_autoscaled_deployment_leaves_replicas_to_the_hpa() {
        let rr = release();
        let mut w = workload("v1", 3);
        w.autoscaled = true;
        let d = deployment(&rr, Track::Stable, &w, &Selection::default()).unwrap();
        assert_eq!(d.spec.as_ref().unwrap().replicas, None);
        let hpa = autoscaler(
            &rr,
            Track::Stable,
            &ScalerPlan {
                min_replicas: 2,
                max_replicas: 8,
                target_cpu_utilization_percent: 70,
            },
        )
        .unwrap();
        let spec = hpa.spec.unwrap();
        assert_eq!(spec.scale_target_ref.name, "movies-stable");
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 8));
        let metrics = spec.metrics.unwrap();
        let target = &metrics[0].resource.as_ref().unwrap().target;
        assert_eq!(target.average_utilization, Some(70));
    }

    #[test]
    fn pods_drain_with_the_kubelets_sleep_before_sigterm() {
        let mut rr = release();
        let d = deployment(
            &rr,
            Track::Canary,
            &workload("v1", 1),
            &Selection::default(),
        )
        .unwrap();
        let pod = d.spec.unwrap().template.spec.unwrap();
        let sleep = pod.containers[0]
            .lifecycle
            .as_ref()
            .unwrap()
            .pre_stop
            .as_ref()
            .unwrap()
            .sleep
            .as_ref()
            .unwrap()
            .seconds;
        assert_eq!(sleep, 5);
        assert_eq!(
            pod.termination_grace_period_seconds,
            Some(5 + SHUTDOWN_GRACE)
        );
        rr.spec.drain_seconds = 0;
        let d = deployment(
            &rr,
            Track::Canary,
            &workload("v1", 1),
            &Selection::default(),
        )
        .unwrap();
        assert!(
            d.spec.unwrap().template.spec.unwrap().containers[0]
                .lifecycle
                .is_none()
        );
    }

    #[test]
    fn a_legacy_selector_is_kept_until_its_deployment_is_recreated() {
        let rr = release();
        let mut old = deployment(
            &rr,
            Track::Stable,
            &workload("v1", 2),
            &Selection::default(),
        )
        .unwrap();
        old.spec.as_mut().unwrap().selector.match_labels =
            Some(legacy_track_selector("movies", Track::Stable));
        let selection = Selection::of([&old]);
        assert!(selection.legacy);
        for track in [Track::Stable, Track::Canary] {
            let d = deployment(&rr, track, &workload("v1", 2), &selection).unwrap();
            let spec = d.spec.unwrap();
            let selector = spec.selector.match_labels.unwrap();
            assert_eq!(selector[LEGACY_INSTANCE_LABEL], "movies", "immutable: kept");
            let labels = spec.template.metadata.unwrap().labels.unwrap();
            assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
            assert_eq!(labels[RELEASE_LABEL], "movies");
        }
        let shared = service(&rr, None, &selection).unwrap();
        assert_eq!(
            shared.spec.unwrap().selector.unwrap()[LEGACY_INSTANCE_LABEL],
            "movies"
        );
        let fresh = deployment(
            &rr,
            Track::Stable,
            &workload("v1", 2),
            &Selection::default(),
        )
        .unwrap();
        assert!(!Selection::of([&fresh]).legacy);
    }

    #[test]
    fn restarts_count_only_live_pods_of_the_version() {
        let rr = release();
        let d = deployment(
            &rr,
            Track::Canary,
            &workload("v8", 1),
            &Selection::default(),
        )
        .unwrap();
        let pod = |restarts: i32, deleting: bool| Pod {
            metadata: ObjectMeta {
                deletion_timestamp: deleting.then_some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::UNIX_EPOCH,
                    ),
                ),
                ..ObjectMeta::default()
            },
            spec: d.spec.as_ref().unwrap().template.spec.clone(),
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                container_statuses: Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                    name: CONTAINER.to_owned(),
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        };
        let pods = [pod(2, false), pod(3, false), pod(7, true)];
        assert_eq!(restarts(&pods, "v8"), 5);
        assert_eq!(restarts(&pods, "v9"), 0);
    }
}
