//! Watch caches (reflector stores) of the releases and of the objects they own, so a reconcile
//! observes its release (the newest version seen) and its children without a single API read: Deployments, Services, autoscalers and inference pods
//! always; Ingresses and `HTTPRoutes` when the operator may list and watch them (the chart
//! grants them per provider).
//!
//! The controller feeds the stores from its watches ([`Writers`]); tests feed them by hand.
//! A kind that is not watched is read with a GET instead ([`Lookup::NotWatched`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use serde::Serialize;

use crate::analysis::Track;
use crate::children::{RELEASE_LABEL, TRACK_LABEL};
use crate::crd::RecommenderRelease;
use crate::router::http_route_resource;

/// A kind of child the operator may cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `v1` Service.
    Service,
    /// `networking.k8s.io/v1` Ingress.
    Ingress,
    /// `gateway.networking.k8s.io/v1` `HTTPRoute`.
    HttpRoute,
    /// `autoscaling/v2` `HorizontalPodAutoscaler`.
    Autoscaler,
    /// `v1` Pod (inference pods, for restarts).
    Pod,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Deployment,
        Kind::Service,
        Kind::Ingress,
        Kind::HttpRoute,
        Kind::Autoscaler,
        Kind::Pod,
    ];

    /// The kind of an API resource, if the operator caches it.
    pub fn of(resource: &ApiResource) -> Option<Self> {
        match (resource.group.as_str(), resource.kind.as_str()) {
            ("apps", "Deployment") => Some(Kind::Deployment),
            ("", "Service") => Some(Kind::Service),
            ("networking.k8s.io", "Ingress") => Some(Kind::Ingress),
            ("gateway.networking.k8s.io", "HTTPRoute") => Some(Kind::HttpRoute),
            ("autoscaling", "HorizontalPodAutoscaler") => Some(Kind::Autoscaler),
            ("", "Pod") => Some(Kind::Pod),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The write halves of the stores, handed to the watches once.
#[derive(Debug)]
pub struct Writers {
    /// Releases.
    pub releases: Writer<RecommenderRelease>,
    /// Deployments.
    pub deployments: Writer<Deployment>,
    /// Services.
    pub services: Writer<Service>,
    /// Ingresses.
    pub ingresses: Writer<Ingress>,
    /// `HTTPRoutes`.
    pub routes: Writer<DynamicObject>,
    /// Autoscalers.
    pub autoscalers: Writer<HorizontalPodAutoscaler>,
    /// Inference pods.
    pub pods: Writer<Pod>,
}

/// A cached object, or why there is none to look at.
#[derive(Debug)]
pub enum Lookup {
    /// The kind is watched: the object as JSON, or `None` when it does not exist.
    Cached(Option<serde_json::Value>),
    /// The kind is not watched: ask the API server.
    NotWatched,
}

/// The read halves of the stores.
#[derive(Debug)]
pub struct Caches {
    /// Releases (the controller's own store: it waits for their first list itself).
    pub releases: Store<RecommenderRelease>,
    /// Deployments.
    pub deployments: Store<Deployment>,
    /// Services.
    pub services: Store<Service>,
    /// Ingresses.
    pub ingresses: Store<Ingress>,
    /// `HTTPRoutes`.
    pub routes: Store<DynamicObject>,
    /// Autoscalers.
    pub autoscalers: Store<HorizontalPodAutoscaler>,
    /// Inference pods.
    pub pods: Store<Pod>,
    watched: [AtomicBool; 6],
    writers: Mutex<Option<Writers>>,
    /// Set once every watched store has its first list (see [`Caches::ready`]).
    ready: tokio::sync::OnceCell<()>,
}

impl Default for Caches {
    fn default() -> Self {
        Self::new()
    }
}

fn find<K>(store: &Store<K>, key: &ObjectRef<K>) -> Option<serde_json::Value>
where
    K: kube::runtime::reflector::Lookup + Clone + Serialize + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .get(key)
        .and_then(|o| serde_json::to_value(o.as_ref()).ok())
}

impl Caches {
    /// Empty stores, none watched yet.
    pub fn new() -> Self {
        let writers = Writers {
            releases: Writer::default(),
            deployments: Writer::default(),
            services: Writer::default(),
            ingresses: Writer::default(),
            routes: Writer::new(http_route_resource()),
            autoscalers: Writer::default(),
            pods: Writer::default(),
        };
        Self {
            releases: writers.releases.as_reader(),
            deployments: writers.deployments.as_reader(),
            services: writers.services.as_reader(),
            ingresses: writers.ingresses.as_reader(),
            routes: writers.routes.as_reader(),
            autoscalers: writers.autoscalers.as_reader(),
            pods: writers.pods.as_reader(),
            watched: Default::default(),
            writers: Mutex::new(Some(writers)),
            ready: tokio::sync::OnceCell::new(),
        }
    }

    /// Takes the write halves (once), for the watches that fill the stores.
    pub fn take_writers(&self) -> Option<Writers> {
        self.writers.lock().ok()?.take()
    }

    /// Marks `kind` as watched (reads come from its store) or not (reads are GETs).
    pub fn set_watched(&self, kind: Kind, watched: bool) {
        self.watched[kind.index()].store(watched, Ordering::SeqCst);
    }

    /// True when reads of `kind` come from its store.
    pub fn watched(&self, kind: Kind) -> bool {
        self.watched[kind.index()].load(Ordering::SeqCst)
    }

    /// Waits until every watched store has its first full list.
    ///
    /// # Caveats
    /// A store's own readiness signal (kube's `Store::wait_until_ready`) wakes only the last
    /// task that polled it. Concurrent reconciles therefore never wait on it directly: one of
    /// them waits for all (the others queue on the `OnceCell`, which wakes every waiter), and
    /// if that one is cancelled the next takes over.
    ///
    /// # Errors
    /// A store whose writer was dropped before its first list is reported as not watched
    /// from then on (reads fall back to GETs).
    pub async fn ready(&self) {
        self.ready.get_or_init(|| self.first_lists()).await;
    }

    async fn first_lists(&self) {
        for kind in Kind::ALL {
            if !self.watched(kind) {
                continue;
            }
            let ready = match kind {
                Kind::Deployment => self.deployments.wait_until_ready().await,
                Kind::Service => self.services.wait_until_ready().await,
                Kind::Ingress => self.ingresses.wait_until_ready().await,
                Kind::HttpRoute => self.routes.wait_until_ready().await,
                Kind::Autoscaler => self.autoscalers.wait_until_ready().await,
                Kind::Pod => self.pods.wait_until_ready().await,
            };
            if ready.is_err() {
                self.set_watched(kind, false);
            }
        }
    }

    /// The cached object `namespace/name` of `resource`, as JSON.
    pub fn lookup(&self, resource: &ApiResource, namespace: &str, name: &str) -> Lookup {
        let Some(kind) = Kind::of(resource).filter(|k| self.watched(*k)) else {
            return Lookup::NotWatched;
        };
        Lookup::Cached(match kind {
            Kind::Deployment => find(&self.deployments, &ObjectRef::new(name).within(namespace)),
            Kind::Service => find(&self.services, &ObjectRef::new(name).within(namespace)),
            Kind::Ingress => find(&self.ingresses, &ObjectRef::new(name).within(namespace)),
            Kind::HttpRoute => find(
                &self.routes,
                &ObjectRef::new_with(name, http_route_resource()).within(namespace),
            ),
            Kind::Autoscaler => find(&self.autoscalers, &ObjectRef::new(name).within(namespace)),
            Kind::Pod => find(&self.pods, &ObjectRef::new(name).within(namespace)),
        })
    }

    /// The newest cached version of `release`, or `None` when the store does not hold it.
    pub fn release(
        &self,
        release: &ObjectRef<RecommenderRelease>,
    ) -> Option<std::sync::Arc<RecommenderRelease>> {
        self.releases.get(release)
    }

    /// The cached Deployment `namespace/name` (`None` also when Deployments are not watched).
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        self.watched(Kind::Deployment)
            .then(|| {
                self.deployments
                    .get(&ObjectRef::new(name).within(namespace))
            })
            .flatten()
            .map(|d| d.as_ref().clone())
    }

    /// The cached pods of one track of a release.
    pub fn track_pods(&self, namespace: &str, release: &str, track: Track) -> Vec<Pod> {
        self.pods
            .state_filter(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.labels.as_ref().is_some_and(|l| {
                        l.get(RELEASE_LABEL).map(String::as_str) == Some(release)
                            && l.get(TRACK_LABEL).map(String::as_str) == Some(track.as_label())
                    })
            })
            .into_iter()
            .map(|p| p.as_ref().clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use kube::runtime::watcher;

    use super::*;

    /// The bench's 15 releases never reconciled: 16 reconciles waited at once for the pod
    /// store's first list, and a store's readiness signal wakes only the last task that
    /// polled it, so 15 waited forever (holding 15 of the 16 reconcile slots).
    #[tokio::test]
    async fn every_concurrent_waiter_wakes_when_the_stores_are_ready() {
        let caches = Arc::new(Caches::new());
        caches.set_watched(Kind::Pod, true);
        let mut writers = caches.take_writers().unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let caches = caches.clone();
                tokio::spawn(async move { caches.ready().await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        writers.pods.apply_watcher_event(&watcher::Event::InitDone);
        let all = futures::future::join_all(tasks);
        let done = tokio::time::timeout(Duration::from_secs(5), all).await;
        assert!(done.is_ok(), "a waiter was never woken");
    }
}
