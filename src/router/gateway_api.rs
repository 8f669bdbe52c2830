//! The `gateway-api` provider: one `HTTPRoute` `<name>` attached to `spec.traffic.parentRefs`
//! whose single rule has weighted `backendRefs` to `<name>-stable` and `<name>-canary`.
//! Built as a [`DynamicObject`] (`gateway.networking.k8s.io/v1`), so no extra crate is needed.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::TrafficRouter;
use crate::analysis::Track;
use crate::children::{APPLIED_ANNOTATION, Child, ChildError, common_labels, track_name};
use crate::crd::RecommenderRelease;
use crate::plan::fingerprint;

/// Weighted `HTTPRoute` for Gateway API implementations.
#[derive(Clone, Copy, Debug, Default)]
pub struct GatewayApi;

/// The API of `HTTPRoute`.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// The weight the live route sends to the canary backend (`<name>-canary`), if it has one.
pub fn canary_weight(route: &DynamicObject) -> Option<i32> {
    let canary = track_name(&route.name_any(), Track::Canary);
    route.data["spec"]["rules"]
        .as_array()?
        .iter()
        .filter_map(|rule| rule["backendRefs"].as_array())
        .flatten()
        .find(|b| b["name"].as_str() == Some(canary.as_str()))
        .map(|b| {
            b["weight"]
                .as_i64()
                .map_or(1, |w| i32::try_from(w).unwrap_or(i32::MAX))
        })
}

/// Why the Gateway refuses the live route: the first parent whose `Accepted` or
/// `ResolvedRefs` condition is False for the route's current generation, with its reason
/// and message. `None` while the route is accepted or not yet judged.
pub fn route_problem(route: &DynamicObject) -> Option<String> {
    let generation = route.metadata.generation;
    route.data["status"]["parents"]
        .as_array()?
        .iter()
        .find_map(|parent| {
            let gateway = parent["parentRef"]["name"].as_str().unwrap_or("?");
            parent["conditions"].as_array()?.iter().find_map(|c| {
                let type_ = c["type"].as_str()?;
                let current = match (generation, c["observedGeneration"].as_i64()) {
                    (Some(g), Some(o)) => o >= g,
                    _ => true,
                };
                (matches!(type_, "Accepted" | "ResolvedRefs")
                    && c["status"].as_str() == Some("False")
                    && current)
                    .then(|| {
                        format!(
                            "HTTPRoute {} on Gateway {gateway}: {type_} False ({}): {}",
                            route.name_any(),
                            c["reason"].as_str().unwrap_or(""),
                            c["message"].as_str().unwrap_or("")
                        )
                    })
            })
        })
}

impl TrafficRouter for GatewayApi {
    fn routes(&self, rr: &RecommenderRelease, weight: i32) -> Result<Vec<Child>, ChildError> {
        let release = rr.name_any();
        let owner = rr
            .controller_owner_ref(&())
            .filter(|o| !o.uid.is_empty())
            .ok_or_else(|| ChildError::NotPersisted(release.clone()))?;
        let weight = weight.clamp(0, 100);
        let parent_refs: Vec<_> = rr
            .spec
            .traffic
            .parent_refs
            .iter()
            .map(|p| {
                let mut r = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": p.name});
                if let Some(ns) = &p.namespace {
                    r["namespace"] = json!(ns);
                }
                if let Some(section) = &p.section_name {
                    r["sectionName"] = json!(section);
                }
                r
            })
            .collect();
        let mut spec = json!({
            "parentRefs": parent_refs,
            "rules": [{
                "backendRefs": [
                    {"name": track_name(&release, Track::Stable), "port": rr.spec.port, "weight": 100 - weight},
                    {"name": track_name(&release, Track::Canary), "port": rr.spec.port, "weight": weight},
                ]
            }]
        });
        if let Some(host) = &rr.spec.traffic.host {
            spec["hostnames"] = json!([host]);
        }
        let resource = http_route_resource();
        let mut route =
            DynamicObject::new(&release, &resource).within(&rr.namespace().unwrap_or_default());
        route.metadata.labels = Some(common_labels(&release));
        route.metadata.owner_references = Some(vec![owner]);
        route.data = json!({ "spec": spec });
        let print = serde_json::to_string(&route).map_err(|source| ChildError::Encode {
            kind: "HTTPRoute",
            name: release.clone(),
            source,
        })?;
        route
            .annotations_mut()
            .insert(APPLIED_ANNOTATION.to_owned(), fingerprint(&print));
        Ok(vec![Child {
            resource,
            object: route,
        }])
    }
}
