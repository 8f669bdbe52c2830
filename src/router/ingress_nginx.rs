//! The `ingress-nginx` provider: Ingress `<name>` → `<name>-stable`, and Ingress
//! `<name>-canary` → `<name>-canary` marked `nginx.ingress.kubernetes.io/canary: "true"`
//! with `canary-weight: "<weight>"`.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::TrafficRouter;
use crate::analysis::Track;
use crate::children::{Child, ChildError, child, common_labels, track_name};
use crate::crd::RecommenderRelease;

/// Annotation that marks an Ingress as ingress-nginx's canary of the primary one.
pub const CANARY_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary";
/// Annotation holding the canary's percent of traffic.
pub const CANARY_WEIGHT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary-weight";

/// Primary + canary Ingress pair for ingress-nginx.
#[derive(Clone, Copy, Debug, Default)]
pub struct IngressNginx;

/// One Ingress for `track`, with `annotations`.
pub fn ingress(
    rr: &RecommenderRelease,
    name: String,
    track: Track,
    annotations: BTreeMap<String, String>,
) -> Result<Ingress, ChildError> {
    let release = rr.name_any();
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: track_name(&release, track),
            port: Some(ServiceBackendPort {
                number: Some(rr.spec.port),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    };
    let owner = rr
        .controller_owner_ref(&())
        .filter(|o| !o.uid.is_empty())
        .ok_or_else(|| ChildError::NotPersisted(release.clone()))?;
    Ok(Ingress {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: rr.namespace(),
            labels: Some(common_labels(&release)),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: rr.spec.traffic.ingress_class_name.clone(),
            rules: Some(vec![IngressRule {
                host: rr.spec.traffic.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend,
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    })
}

/// The weight a live canary Ingress sends to the canary (its `canary-weight` annotation).
pub fn canary_weight(ingress: &Ingress) -> Option<i32> {
    let annotations = ingress.metadata.annotations.as_ref()?;
    if annotations.get(CANARY_ANNOTATION).map(String::as_str) != Some("true") {
        return None;
    }
    Some(
        annotations
            .get(CANARY_WEIGHT_ANNOTATION)
            .and_then(|w| w.trim().parse().ok())
            .unwrap_or(0),
    )
}

impl TrafficRouter for IngressNginx {
    fn routes(&self, rr: &RecommenderRelease, weight: i32) -> Result<Vec<Child>, ChildError> {
        let release = rr.name_any();
        let primary = ingress(rr, release.clone(), Track::Stable, BTreeMap::new())?;
        let canary = ingress(
            rr,
            track_name(&release, Track::Canary),
            Track::Canary,
            BTreeMap::from([
                (CANARY_ANNOTATION.to_owned(), "true".to_owned()),
                (
                    CANARY_WEIGHT_ANNOTATION.to_owned(),
                    weight.clamp(0, 100).to_string(),
                ),
            ]),
        )?;
        Ok(vec![child(&primary)?, child(&canary)?])
    }
}
