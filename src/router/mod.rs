//! Traffic routing: one [`TrafficRouter`] per `spec.traffic.provider`, each a pure builder
//! of the objects that send `weight` percent of requests to the canary Service.
//!
//! The controller applies what [`TrafficRouter::routes`] returns before it scales the
//! Deployments, so a rollback takes traffic away before the canary pods go.

mod gateway_api;
mod ingress_nginx;
mod replicas;

pub use gateway_api::{GatewayApi, http_route_resource};
pub use ingress_nginx::IngressNginx;
pub use replicas::Replicas;

/// Reading live routing objects back (weights, the Gateway's verdict).
pub mod live {
    pub use super::gateway_api::{canary_weight as http_route_canary_weight, route_problem};
    pub use super::ingress_nginx::canary_weight as ingress_canary_weight;
}

use crate::children::{Child, ChildError};
use crate::crd::{RecommenderRelease, TrafficProvider};

/// Builds the routing objects of a release for a canary weight.
pub trait TrafficRouter: Send + Sync + std::fmt::Debug {
    /// The objects that realise `weight` (0–100) for `release`, in apply order.
    fn routes(&self, release: &RecommenderRelease, weight: i32) -> Result<Vec<Child>, ChildError>;
}

/// The router for a provider.
pub fn router_for(provider: TrafficProvider) -> &'static dyn TrafficRouter {
    match provider {
        TrafficProvider::IngressNginx => &IngressNginx,
        TrafficProvider::GatewayApi => &GatewayApi,
        TrafficProvider::Replicas => &Replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::APPLIED_ANNOTATION;
    use crate::crd::RecommenderReleaseSpec;
    use serde_json::json;

    #[allow(clippy::needless_pass_by_value)] // reads better with inline json! arguments
    fn release(traffic: serde_json::Value) -> RecommenderRelease {
        let spec: RecommenderReleaseSpec = serde_json::from_value(json!({
            "image": "img:1",
            "model": {"version": "v1", "uri": "file:///m", "sha256": "a".repeat(64)},
            "traffic": traffic
        }))
        .unwrap();
        let mut rr = RecommenderRelease::new("movies", spec);
        rr.metadata.namespace = Some("prod".into());
        rr.metadata.uid = Some("uid-1".into());
        rr
    }

    fn json_of(child: &Child) -> serde_json::Value {
        serde_json::to_value(&child.object).unwrap()
    }

    #[test]
    fn ingress_nginx_builds_primary_and_weighted_canary() {
        let rr = release(
            json!({"provider": "ingress-nginx", "host": "movies.example", "ingressClassName": "nginx"}),
        );
        let routes = router_for(rr.spec.traffic.provider)
            .routes(&rr, 20)
            .unwrap();
        assert_eq!(routes.len(), 2);
        let primary = json_of(&routes[0]);
        assert_eq!(primary["kind"], "Ingress");
        assert_eq!(primary["metadata"]["name"], "movies");
        assert_eq!(primary["spec"]["ingressClassName"], "nginx");
        let rule = &primary["spec"]["rules"][0];
        assert_eq!(rule["host"], "movies.example");
        assert_eq!(
            rule["http"]["paths"][0]["backend"]["service"]["name"],
            "movies-stable"
        );
        assert!(
            primary["metadata"]["annotations"]
                .get("nginx.ingress.kubernetes.io/canary")
                .is_none()
        );
        let canary = json_of(&routes[1]);
        assert_eq!(canary["metadata"]["name"], "movies-canary");
        assert_eq!(
            canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"],
            "true"
        );
        assert_eq!(
            canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
            "20"
        );
        assert_eq!(
            canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "movies-canary"
        );
        // A weight change changes only the canary's fingerprint.
        let at_zero = router_for(rr.spec.traffic.provider).routes(&rr, 0).unwrap();
        assert_eq!(at_zero[0].fingerprint(), routes[0].fingerprint());
        assert_ne!(at_zero[1].fingerprint(), routes[1].fingerprint());
    }

    #[test]
    fn gateway_api_builds_one_route_with_weighted_backends() {
        let rr = release(json!({
            "provider": "gateway-api", "host": "movies.example",
            "parentRefs": [{"name": "public", "namespace": "gw", "sectionName": "https"}]
        }));
        let routes = router_for(rr.spec.traffic.provider)
            .routes(&rr, 30)
            .unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].resource.plural, "httproutes");
        let route = json_of(&routes[0]);
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(route["kind"], "HTTPRoute");
        assert_eq!(route["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(route["spec"]["hostnames"], json!(["movies.example"]));
        assert_eq!(
            route["spec"]["parentRefs"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gw", "sectionName": "https"}])
        );
        assert_eq!(
            route["spec"]["rules"][0]["backendRefs"],
            json!([
                {"name": "movies-stable", "port": 8082, "weight": 70},
                {"name": "movies-canary", "port": 8082, "weight": 30}
            ])
        );
        assert!(route["metadata"]["annotations"][APPLIED_ANNOTATION].is_string());
    }

    #[test]
    fn replicas_provider_needs_no_routing_object() {
        let rr = release(json!({"provider": "replicas"}));
        assert!(
            router_for(rr.spec.traffic.provider)
                .routes(&rr, 50)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn weights_are_clamped() {
        let rr = release(json!({"provider": "ingress-nginx"}));
        let routes = IngressNginx.routes(&rr, 140).unwrap();
        assert_eq!(
            json_of(&routes[1])["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
            "100"
        );
    }

    #[test]
    fn live_weights_are_read_back() {
        let rr = release(json!({"provider": "gateway-api", "parentRefs": [{"name": "public"}]}));
        let route = GatewayApi.routes(&rr, 30).unwrap().remove(0).object;
        assert_eq!(live::http_route_canary_weight(&route), Some(30));
        let rr = release(json!({"provider": "ingress-nginx"}));
        let routes = IngressNginx.routes(&rr, 20).unwrap();
        let canary: k8s_openapi::api::networking::v1::Ingress =
            serde_json::from_value(json_of(&routes[1])).unwrap();
        let primary: k8s_openapi::api::networking::v1::Ingress =
            serde_json::from_value(json_of(&routes[0])).unwrap();
        assert_eq!(live::ingress_canary_weight(&canary), Some(20));
        assert_eq!(live::ingress_canary_weight(&primary), None);
    }

    #[test]
    fn a_refused_http_route_is_reported_with_the_gateways_words() {
        let rr = release(json!({"provider": "gateway-api", "parentRefs": [{"name": "public"}]}));
        let mut route = GatewayApi.routes(&rr, 0).unwrap().remove(0).object;
        route.metadata.generation = Some(2);
        assert_eq!(live::route_problem(&route), None, "not judged yet");
        let parent = |accepted: &str, generation: i64| {
            json!({"parents": [{"parentRef": {"name": "public"}, "conditions": [
                {"type": "Accepted", "status": accepted, "reason": "NotAllowedByListeners",
                 "message": "no listener allows this namespace", "observedGeneration": generation},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
                 "message": "", "observedGeneration": generation}
            ]}]})
        };
        route.data["status"] = parent("False", 2);
        let problem = live::route_problem(&route).unwrap();
        assert!(
            problem.contains("Accepted False (NotAllowedByListeners)"),
            "{problem}"
        );
        assert!(problem.contains("no listener allows"), "{problem}");
        route.data["status"] = parent("False", 1);
        assert_eq!(
            live::route_problem(&route),
            None,
            "a verdict on an older generation"
        );
        route.data["status"] = parent("True", 2);
        assert_eq!(live::route_problem(&route), None);
    }
}
