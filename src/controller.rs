//! The async shell around [`crate::plan::plan`]: observe (the release's children, from the
//! watch caches in [`crate::cache`]), plan (with one Prometheus check when the plan asks for
//! it), commit (status), apply (children by server-side apply with one field manager, Events,
//! notifications).
//!
//! # Guarantees
//! - **Status is the commit point.** A reconcile that changes anything first writes status
//!   with the `resourceVersion` it read (server-side apply, no force). A reconcile that read a
//!   stale release from the cache gets 409 Conflict and is re-queued having done nothing, so
//!   a rollback is never undone by an old view, and Events, history entries and notifications
//!   are emitted once. Children are applied after the commit and follow from status alone, so
//!   a crash between the two is healed by the next reconcile.
//! - **Zero API requests when nothing changed.** Children are read from watch caches; each is
//!   applied only when the live object lacks a field of the desired one (a child edited or
//!   deleted by hand is healed on the next reconcile, at the latest by the periodic resync).
//!   A status-only change of a release does not trigger a reconcile.
//! - Routing objects are applied before Deployments, so a rollback takes the canary's
//!   traffic away before its pods are scaled down.
//! - A release being deleted (`deletionTimestamp` set, e.g. a foreground deletion by Argo CD)
//!   gets no more writes; its metric series are forgotten. No finalizer is needed: children
//!   go with the release through their owner references, and the only other state is
//!   in-process (metric series), forgotten on the deletion event.
//! - Notifications are sent in the background with the notifier's bounded timeout; they
//!   never delay the rollback itself.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSpec, PodStatus, Secret, Service, ServiceSpec,
};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use crate::admission::{self, Admission};
use crate::analysis::{self, MetricsError, MetricsSource, Track};
use crate::cache::{Caches, Kind, Lookup, Writers};
use crate::children::{self, Child, ChildError, FIELD_MANAGER, RELEASE_LABEL, Selection};
use crate::crd::{Outcome, RecommenderRelease, TrafficProvider};
use crate::events::{EventType, Occurrence, Publisher};
use crate::metrics::{Metrics, ReleaseLabels};
use crate::notify::{Notification, NotificationKind, Notifier};
use crate::plan::{self, Announcement, EventKind, LiveRoutes, Observed, Plan, Retirement};
use crate::router::{http_route_resource, live, router_for};

/// Retry delay after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(15);
/// Retry delay after a reconcile that read a stale release (its status write got 409).
const STALE_REQUEUE: Duration = Duration::from_secs(1);
/// Every release is reconciled at least this often (from the caches), so a missed watch
/// event cannot leave a child edited or deleted by hand for long.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Event notes are limited to 1 kB by the API server.
const NOTE_LIMIT: usize = 1000;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action} failed")]
    Kube {
        /// What was attempted, e.g. `apply Deployment movies-canary`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A child object could not be built.
    #[error("cannot build a child object")]
    Child(#[from] ChildError),
}

impl Error {
    /// Low-cardinality label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(_),
                ..
            } => "api",
            Error::Kube { .. } => "client",
            Error::Child(_) => "child",
        }
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// Returns the current time; replaced by a fixed clock in tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every reconcile shares.
pub struct Context<S, N> {
    /// Kubernetes client.
    pub client: Client,
    /// Where canary figures come from.
    pub source: S,
    /// Where promotions, rollbacks and rejections are announced.
    pub notifier: Arc<N>,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Event publisher.
    pub events: Publisher,
    /// The clock (whole seconds, like the timestamps the API server stores).
    pub clock: Clock,
    /// Watch caches of the releases and their children.
    pub caches: Caches,
    /// The gate that bounds reconciles at once and lets urgent ones in first.
    pub admission: Admission,
}

impl<S, N> std::fmt::Debug for Context<S, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl<S, N> Context<S, N> {
    /// A context with the system clock.
    pub fn new(client: Client, source: S, notifier: N, metrics: Arc<Metrics>) -> Self {
        Self {
            events: Publisher::new(
                client.clone(),
                FIELD_MANAGER,
                std::env::var("POD_NAME").ok(),
            ),
            client,
            source,
            notifier: Arc::new(notifier),
            metrics,
            clock: Arc::new(|| {
                Timestamp::from_second(Timestamp::now().as_second())
                    .unwrap_or_else(|_| Timestamp::now())
            }),
            caches: Caches::new(),
            admission: Admission::default(),
        }
    }

    /// At most `limit` reconciles at once (0: no limit), urgent ones let in first (see
    /// [`crate::admission`]).
    #[must_use]
    pub fn with_concurrency(mut self, limit: u16) -> Self {
        self.admission = Admission::new(limit);
        self
    }
}

/// One reconcile of one release: waits for a slot ([`Admission`]), then observe → plan →
/// commit → apply.
///
/// # Caveats
/// kube-runtime polls every reconcile future of a controller inside one task, all of them
/// on every wake-up of any (its `FutureHashMap`). With its own bound off, up to one future
/// per release waits at the gate, so each reconcile runs in a task of its own and the future
/// kube polls is only the handle: a start over 1,000 releases otherwise slowed every request
/// of the 16 running reconciles by polling the 984 waiting ones. Dropping the future (the
/// controller stopped, leadership lost) aborts the task, as dropping the reconcile did.
pub async fn reconcile<S, N>(
    rr: Arc<RecommenderRelease>,
    ctx: Arc<Context<S, N>>,
) -> Result<Action, Error>
where
    S: MetricsSource + 'static,
    N: Notifier + 'static,
{
    let mut task = AbortOnDrop(tokio::spawn(admitted(rr, ctx)));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Cancelled: only by the runtime shutting down.
        Err(_) => Ok(Action::await_change()),
    }
}

/// A task handle that aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn admitted<S, N>(
    rr: Arc<RecommenderRelease>,
    ctx: Arc<Context<S, N>>,
) -> Result<Action, Error>
where
    S: MetricsSource + 'static,
    N: Notifier + 'static,
{
    // Wait for a slot holding only the reference (the store keeps the object), then act on
    // the newest version the cache has: a change seen while waiting is not re-queued as a 409.
    let key = ObjectRef::from_obj(rr.as_ref());
    let urgency = admission::urgency(&rr);
    let snapshot = ctx.caches.release(&key).is_none().then_some(rr);
    let _permit = ctx.admission.admit(urgency).await;
    let Some(rr) = ctx.caches.release(&key).or(snapshot) else {
        // Deleted while waiting: its children go with it, its series went on the delete event.
        return Ok(Action::await_change());
    };
    let namespace = rr.namespace().unwrap_or_default();
    let name = rr.name_any();
    let span = info_span!("reconcile", namespace = %namespace, release = %name);
    let started = Instant::now();
    // Boxed: the observe/plan/commit/apply future is large, and the runtime moves it around.
    let result = Box::pin(reconcile_inner(&rr, &ctx, &namespace, &name).instrument(span)).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    result
}

fn labels_of(namespace: &str, name: &str) -> ReleaseLabels {
    ReleaseLabels {
        namespace: namespace.to_owned(),
        release: name.to_owned(),
    }
}

async fn reconcile_inner<S, N>(
    rr: &RecommenderRelease,
    ctx: &Context<S, N>,
    namespace: &str,
    name: &str,
) -> Result<Action, Error>
where
    S: MetricsSource + 'static,
    N: Notifier + 'static,
{
    let now = (ctx.clock)();
    if rr.metadata.deletion_timestamp.is_some() {
        let decision = plan::plan(rr, &Observed::default(), now);
        debug_assert!(decision.deleting);
        ctx.metrics.forget(&labels_of(namespace, name));
        info!("release is being deleted; nothing more is applied");
        return Ok(Action::await_change());
    }

    // Observe.
    ctx.caches.ready().await;
    let live = observe(rr, ctx, namespace, name).await?;
    let mut observed = live.observed.clone();

    // Plan (with a canary check when one is due), and what differs from the cluster.
    let decision = plan_with_analysis(rr, ctx, &mut observed, now).await;
    let (stale, retire) = differences(rr, ctx, namespace, &live, &decision).await?;

    // Commit: status first, conditional on the resourceVersion read.
    let status_changed = rr.status.as_ref() != Some(&decision.status);
    if status_changed || !stale.is_empty() || !retire.is_empty() {
        match commit_status(rr, ctx, name, namespace, &decision).await {
            Ok(()) => {}
            Err(Error::Kube {
                source: kube::Error::Api(response),
                ..
            }) if response.code == 409 => {
                ctx.metrics.stale_read();
                info!("the release changed since it was read (409); re-queued");
                return Ok(Action::requeue(STALE_REQUEUE));
            }
            Err(error) => return Err(error),
        }
        if status_changed {
            ctx.metrics.wrote("status");
        }
    }

    // Apply.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for child in &stale {
        apply_child(ctx, namespace, child, &params).await?;
    }
    for step in retire {
        match step {
            Retire::Apply(child) => apply_child(ctx, namespace, &child, &params).await?,
            Retire::Delete(child) => delete_child(ctx, namespace, &child).await?,
        }
    }
    if status_changed {
        publish_events(rr, ctx, &decision).await;
        announce(rr, ctx, namespace, &decision.announcements);
        for a in &decision.announcements {
            ctx.metrics
                .rollout_finished(&labels_of(namespace, name), a.outcome);
        }
    }
    ctx.metrics.release_state(
        &labels_of(namespace, name),
        decision.status.phase,
        decision.status.canary_weight,
        decision.status.last_analysis.as_ref(),
    );
    Ok(decision
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

fn unreachable<T>(fetched: &Result<T, MetricsError>) -> bool {
    matches!(fetched, Err(MetricsError::Unreachable { .. }))
}

/// Plans, and when the plan asks for a canary check, runs it and plans again.
async fn plan_with_analysis<S, N>(
    rr: &RecommenderRelease,
    ctx: &Context<S, N>,
    observed: &mut Observed,
    now: Timestamp,
) -> Plan
where
    S: MetricsSource + 'static,
{
    let mut decision = plan::plan(rr, observed, now);
    if let Some(request) = decision.analysis_needed.take() {
        let result = if let Some(judge) = &request.judge {
            let (fetched, counts) = futures::join!(
                ctx.source.canary_metrics(&request.query),
                ctx.source.track_counts(&request.query, judge)
            );
            observed.metrics_unreachable = unreachable(&fetched) || unreachable(&counts);
            analysis::conclude_judged(
                analysis::conclude(fetched, &request.thresholds),
                counts,
                judge,
            )
        } else {
            let fetched = ctx.source.canary_metrics(&request.query).await;
            observed.metrics_unreachable = unreachable(&fetched);
            analysis::conclude(fetched, &request.thresholds)
        };
        info!(verdict = %result.verdict, reason = %result.reason, "canary check");
        observed.analysis = Some(result);
        decision = plan::plan(rr, observed, now);
    }
    decision
}

/// The desired children the cluster does not have yet, and the retirement steps still to do.
async fn differences<S, N>(
    rr: &RecommenderRelease,
    ctx: &Context<S, N>,
    namespace: &str,
    live: &Live,
    decision: &Plan,
) -> Result<(Vec<Child>, Vec<Retire>), Error> {
    let selection = Selection::of(live.deployments.iter().flatten());
    let mut stale = Vec::new();
    for child in desired_children(rr, decision, &selection)? {
        if !child.is_current(live_object(ctx, namespace, &child).await?.as_ref()) {
            stale.push(child);
        }
    }
    let mut retire = Vec::new();
    for step in retirements(rr, decision)? {
        if let Retire::Apply(child) = &step
            && child.is_current(live_object(ctx, namespace, child).await?.as_ref())
        {
            continue;
        }
        retire.push(step);
    }
    Ok((stale, retire))
}

/// What a reconcile observed: the plan's input and the live Deployments.
struct Live {
    observed: Observed,
    deployments: [Option<Deployment>; 2],
}

async fn observe<S, N>(
    rr: &RecommenderRelease,
    ctx: &Context<S, N>,
    namespace: &str,
    name: &str,
) -> Result<Live, Error> {
    // Status says which Deployments exist. One the cache lacks was deleted by hand or predates
    // the release label (made by an operator before 0.1, so not watched): read it once, so its
    // immutable selector is kept (see `children::Selection`).
    let status = rr.status.as_ref();
    let expected = [
        status.is_some_and(|s| s.stable.is_some()),
        status.is_some_and(|s| s.canary.is_some()),
    ];
    let mut deployments = [None, None];
    for ((slot, track), expected) in deployments
        .iter_mut()
        .zip([Track::Stable, Track::Canary])
        .zip(expected)
    {
        let child_name = children::track_name(name, track);
        let watched = ctx.caches.watched(Kind::Deployment);
        *slot = ctx.caches.deployment(namespace, &child_name);
        if slot.is_none() && (expected || !watched) {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
            *slot = api
                .get_opt(&child_name)
                .await
                .map_err(kube_err(format!("get Deployment {child_name}")))?;
        }
    }
    let rollout_version = rr
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .map(|r| r.version.clone());
    let canary_restarts = rollout_version.map_or(0, |v| {
        children::restarts(&ctx.caches.track_pods(namespace, name, Track::Canary), &v)
    });
    let (route_problem, other_routes) = observe_routes(rr, ctx, namespace, name);
    Ok(Live {
        observed: Observed {
            stable: deployments[0].as_ref().map(children::deployment_state),
            canary: deployments[1].as_ref().map(children::deployment_state),
            analysis: None,
            metrics_unreachable: false,
            canary_restarts,
            route_problem,
            other_routes,
        },
        deployments,
    })
}

/// From the caches: the Gateway's verdict on the spec's `HTTPRoute`, and the routing objects
/// this release owns under providers other than the spec's.
fn observe_routes<S, N>(
    rr: &RecommenderRelease,
    ctx: &Context<S, N>,
    namespace: &str,
    name: &str,
) -> (Option<String>, Vec<LiveRoutes>) {
    let uid = rr.metadata.uid.clone().unwrap_or_default();
    let owned = |meta: &kube::api::ObjectMeta| {
        meta.owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.uid == uid))
    };
    let route = ctx
        .caches
        .watched(Kind::HttpRoute)
        .then(|| {
            ctx.caches
                .routes
                .get(&ObjectRef::new_with(name, http_route_resource()).within(namespace))
        })
        .flatten()
        .filter(|r| owned(&r.metadata));
    let provider = rr.spec.traffic.provider;
    let problem = route
        .as_ref()
        .filter(|_| provider == TrafficProvider::GatewayApi)
        .and_then(|r| live::route_problem(r));
    let mut others = Vec::new();
    if provider != TrafficProvider::GatewayApi
        && let Some(r) = &route
    {
        others.push(LiveRoutes {
            provider: TrafficProvider::GatewayApi,
            canary_weight: live::http_route_canary_weight(r),
        });
    }
    if provider != TrafficProvider::IngressNginx && ctx.caches.watched(Kind::Ingress) {
        let ingresses: Vec<_> = [name.to_owned(), children::track_name(name, Track::Canary)]
            .iter()
            .filter_map(|n| {
                ctx.caches
                    .ingresses
                    .get(&ObjectRef::new(n).within(namespace))
            })
            .filter(|i| owned(&i.metadata))
            .collect();
        if !ingresses.is_empty() {
            others.push(LiveRoutes {
                provider: TrafficProvider::IngressNginx,
                canary_weight: ingresses
                    .iter()
                    .find_map(|i| live::ingress_canary_weight(i)),
            });
        }
    }
    (problem, others)
}

/// The live object of a desired child: from its watch cache, or a GET when not watched.
async fn live_object<S, N>(
    ctx: &Context<S, N>,
    namespace: &str,
    child: &Child,
) -> Result<Option<serde_json::Value>, Error> {
    match ctx.caches.lookup(&child.resource, namespace, &child.name()) {
        Lookup::Cached(found) => Ok(found),
        Lookup::NotWatched => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), namespace, &child.resource);
            let name = child.name();
            let found = api
                .get_opt(&name)
                .await
                .map_err(kube_err(format!("get {} {name}", child.resource.kind)))?;
            Ok(found.and_then(|o| serde_json::to_value(o).ok()))
        }
    }
}

/// Writes the planned status with the `resourceVersion` that was read (no force): a stale
/// read gets 409. An unchanged status is a no-op on the server but still checks the version.
/// Only a conflict over field ownership (not over the version) is retried with force.
async fn commit_status<S, N>(
    rr: &RecommenderRelease,
    ctx: &Context<S, N>,
    name: &str,
    namespace: &str,
    decision: &Plan,
) -> Result<(), Error> {
    let releases: Api<RecommenderRelease> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({
        "apiVersion": RecommenderRelease::api_version(&()),
        "kind": RecommenderRelease::kind(&()),
        "metadata": {"name": name, "resourceVersion": rr.metadata.resource_version},
        "status": decision.status,
    });
    let apply = PatchParams::apply(FIELD_MANAGER);
    match releases
        .patch_status(name, &apply, &Patch::Apply(&patch))
        .await
    {
        // Another field manager wrote a status field (e.g. `kubectl patch --subresource=status`):
        // take it back, still conditional on the resourceVersion read.
        Err(kube::Error::Api(e)) if e.code == 409 && e.message.starts_with("Apply failed") => {
            warn!(conflict = %e.message, "status fields owned by another manager; taking them back");
            releases
                .patch_status(name, &apply.force(), &Patch::Apply(&patch))
                .await
                .map_err(kube_err("patch status"))?;
        }
        result => {
            result.map_err(kube_err("patch status"))?;
        }
    }
    Ok(())
}

async fn apply_child<S, N>(
    ctx: &Context<S, N>,
    namespace: &str,
    child: &Child,
    params: &PatchParams,
) -> Result<(), Error> {
    let name = child.name();
    let kind = &child.resource.kind;
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &child.resource);
    api.patch(&name, params, &Patch::Apply(&child.object))
        .await
        .map_err(kube_err(format!("apply {kind} {name}")))?;
    ctx.metrics.wrote(kind);
    info!(kind = %kind, object = %name, "applied");
    Ok(())
}

async fn delete_child<S, N>(
    ctx: &Context<S, N>,
    namespace: &str,
    child: &Child,
) -> Result<(), Error> {
    let name = child.name();
    let kind = &child.resource.kind;
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &child.resource);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.metrics.wrote(kind);
            info!(kind = %kind, object = %name, "deleted (provider retired)");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(Error::Kube {
            action: format!("delete {kind} {name}"),
            source,
        }),
    }
}

/// One step of retiring an earlier provider's routing objects.
enum Retire {
    /// Apply (canary weight 0).
    Apply(Child),
    /// Delete.
    Delete(Child),
}

fn retirements(rr: &RecommenderRelease, decision: &Plan) -> Result<Vec<Retire>, ChildError> {
    let mut out = Vec::new();
    for step in &decision.children.retire {
        match *step {
            Retirement::ZeroWeight(p) => {
                out.extend(router_for(p).routes(rr, 0)?.into_iter().map(Retire::Apply));
            }
            Retirement::Delete(p) => {
                out.extend(router_for(p).routes(rr, 0)?.into_iter().map(Retire::Delete));
            }
        }
    }
    Ok(out)
}

/// The desired children in apply order: Services, routing objects, Deployments, then
/// autoscalers.
pub fn desired_children(
    rr: &RecommenderRelease,
    decision: &Plan,
    selection: &Selection,
) -> Result<Vec<Child>, ChildError> {
    if decision.deleting {
        return Ok(Vec::new());
    }
    let mut out = vec![
        children::child(&children::service(rr, Some(Track::Stable), selection)?)?,
        children::child(&children::service(rr, Some(Track::Canary), selection)?)?,
        children::child(&children::service(rr, None, selection)?)?,
    ];
    out.extend(router_for(rr.spec.traffic.provider).routes(rr, decision.children.canary_weight)?);
    let c = &decision.children;
    for (track, workload) in [(Track::Stable, &c.stable), (Track::Canary, &c.canary)] {
        if let Some(w) = workload {
            out.push(children::child(&children::deployment(
                rr, track, w, selection,
            )?)?);
        }
    }
    for (track, scaler) in [
        (Track::Stable, &c.stable_scaler),
        (Track::Canary, &c.canary_scaler),
    ] {
        if let Some(s) = scaler {
            out.push(children::child(&children::autoscaler(rr, track, s)?)?);
        }
    }
    Ok(out)
}

async fn publish_events<S, N>(rr: &RecommenderRelease, ctx: &Context<S, N>, decision: &Plan) {
    let reference = rr.object_ref(&());
    for e in &decision.events {
        let mut note = e.note.clone();
        if note.len() > NOTE_LIMIT {
            let mut cut = NOTE_LIMIT;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        match e.kind {
            EventKind::Normal => info!(reason = e.reason, note = %note, "event"),
            EventKind::Warning => warn!(reason = e.reason, note = %note, "event"),
        }
        let occurrence = Occurrence {
            type_: match e.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: e.reason,
            note: &note,
        };
        // An Event that cannot be written must not stop the rollout; it is logged above.
        match ctx.events.publish(&reference, &occurrence).await {
            Ok(()) => ctx.metrics.wrote("Event"),
            Err(error) => warn!(%error, reason = e.reason, "cannot publish event"),
        }
    }
}

fn announce<S, N>(
    rr: &RecommenderRelease,
    ctx: &Context<S, N>,
    namespace: &str,
    announcements: &[Announcement],
) where
    N: Notifier + 'static,
{
    let Some(notify) = rr.spec.notify.clone() else {
        return;
    };
    for a in announcements {
        let kind = match a.outcome {
            Outcome::Promoted => NotificationKind::Promoted,
            Outcome::RolledBack => NotificationKind::RolledBack,
            Outcome::Rejected => NotificationKind::Rejected,
            Outcome::Superseded => continue,
        };
        let notification = Notification {
            release: rr.name_any(),
            namespace: namespace.to_owned(),
            kind,
            version: a.version.clone(),
            reason: a.reason.clone(),
            figures: a.figures.as_ref().map(|f| analysis::CanaryMetrics {
                average_latency_seconds: f.average_latency_seconds,
                p99_latency_seconds: f.p99_latency_seconds,
                error_rate: f.error_rate,
                requests: f.requests,
            }),
            comparison: a.figures.as_ref().and_then(|f| f.comparison.clone()),
        };
        let notifier = ctx.notifier.clone();
        let client = ctx.client.clone();
        let notify = notify.clone();
        let namespace = namespace.to_owned();
        tokio::spawn(
            async move {
                let url = match (&notify.webhook_url, &notify.secret_ref) {
                    (Some(url), _) => url.clone(),
                    (None, Some(secret)) => {
                        let secrets: Api<Secret> = Api::namespaced(client, &namespace);
                        match secrets.get(&secret.name).await {
                            Ok(s) => {
                                let Some(bytes) = s.data.as_ref().and_then(|d| d.get(&secret.key)) else {
                                    warn!(secret = %secret.name, key = %secret.key, "notify secret has no such key");
                                    return;
                                };
                                String::from_utf8_lossy(&bytes.0).trim().to_owned()
                            }
                            Err(error) => {
                                warn!(%error, secret = %secret.name, "cannot read the notify secret");
                                return;
                            }
                        }
                    }
                    (None, None) => return,
                };
                match notifier.send(&url, &notification).await {
                    Ok(delivery) => info!(attempts = delivery.attempts, kind = %notification.kind, "notification sent"),
                    Err(error) => warn!(error = %analysis::error_chain(&error), "notification failed"),
                }
            }
            .instrument(info_span!("notify", release = %rr.name_any())),
        );
    }
}

/// After a failed reconcile: count it and retry soon.
#[allow(clippy::needless_pass_by_value)] // the signature kube's `Controller::run` requires
pub fn error_policy<S, N>(
    rr: Arc<RecommenderRelease>,
    error: &Error,
    ctx: Arc<Context<S, N>>,
) -> Action {
    warn!(release = %rr.name_any(), error = %analysis::error_chain(error), "reconcile failed");
    ctx.metrics.reconcile_failed(error.metric_label());
    Action::requeue(ERROR_REQUEUE)
}

/// What wakes a release: a new generation (spec), annotations (the action annotation), the
/// start of its deletion, or a new object under the same name. Status-only changes do not.
pub fn release_trigger(rr: &RecommenderRelease) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rr.metadata.uid.hash(&mut h);
    rr.metadata.generation.hash(&mut h);
    rr.annotations().hash(&mut h);
    rr.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// The watch configuration of every child kind: only objects labelled with a release.
fn children_config() -> watcher::Config {
    watcher::Config::default().labels(RELEASE_LABEL)
}

/// May the operator list and watch `resource` in `group` everywhere (and is it served)?
async fn can_watch(client: &Client, group: &str, version: &str, resource: &str) -> bool {
    let served = client
        .list_api_group_resources(&format!("{group}/{version}"))
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == resource));
    if !served {
        return false;
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for verb in ["list", "watch"] {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    verb: Some(verb.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let allowed = reviews
            .create(&PostParams::default(), &review)
            .await
            .is_ok_and(|r| r.status.is_some_and(|s| s.allowed));
        if !allowed {
            return false;
        }
    }
    true
}

/// Drops `managedFields` before an object enters a cache (the largest part of it, unused).
fn slim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// Keeps of a Service only what the operator applies, which is all [`Child::is_current`]
/// compares (metadata labels, annotations and owner references; spec selector and ports):
/// Services are the most numerous children (three a release), and the server fills in much
/// more (cluster IPs, IP families, policies, type, status) that nothing reads.
fn slim_service(service: &mut Service) {
    slim(service);
    service.metadata.uid = None;
    service.status = None;
    if let Some(spec) = service.spec.take() {
        service.spec = Some(ServiceSpec {
            selector: spec.selector,
            ports: spec.ports,
            ..ServiceSpec::default()
        });
    }
}

/// Drops from a cached Deployment what the server fills in and nothing reads (status
/// conditions, uid, and defaults the operator never applies); [`Child::is_current`] still sees
/// every applied field.
fn slim_deployment(deployment: &mut Deployment) {
    slim(deployment);
    deployment.metadata.uid = None;
    if let Some(status) = deployment.status.as_mut() {
        status.conditions = None;
    }
    let Some(spec) = deployment.spec.as_mut() else {
        return;
    };
    spec.progress_deadline_seconds = None;
    spec.revision_history_limit = None;
    if let Some(pod) = spec.template.spec.as_mut() {
        pod.dns_policy = None;
        pod.restart_policy = None;
        pod.scheduler_name = None;
        for c in &mut pod.containers {
            c.termination_message_path = None;
            c.termination_message_policy = None;
            c.image_pull_policy = None;
        }
    }
}

/// Drops from a cached release what nothing reads: `managedFields` and the copy of the
/// whole manifest `kubectl apply` (client-side) keeps in an annotation.
fn slim_release(release: &mut RecommenderRelease) {
    slim(release);
    if let Some(annotations) = release.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Where client-side `kubectl apply` keeps the applied manifest.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Keeps of a pod only what the plan reads (labels, deletion, the inference container's
/// model version, readiness and restarts): pods are the most numerous cached objects.
fn slim_pod(pod: &mut Pod) {
    slim(pod);
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    if let Some(spec) = pod.spec.take() {
        let containers = spec
            .containers
            .into_iter()
            .filter(|c| c.name == crate::children::CONTAINER)
            .map(|c| Container {
                env: c.env.map(|env| {
                    env.into_iter()
                        .filter(|e| e.name == movrek_contract::env::MODEL_VERSION)
                        .collect()
                }),
                name: c.name,
                ..Container::default()
            })
            .collect();
        pod.spec = Some(PodSpec {
            containers,
            ..PodSpec::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            conditions: status.conditions,
            container_statuses: status.container_statuses,
            phase: status.phase,
            ..PodStatus::default()
        });
    }
}

/// Marks which child kinds are watched: Ingresses and `HTTPRoutes` only when they are served
/// and RBAC lets the operator list and watch them. Returns (ingresses, httproutes).
async fn choose_watches(caches: &Caches, client: &Client) -> (bool, bool) {
    let ingresses = Box::pin(can_watch(client, "networking.k8s.io", "v1", "ingresses")).await;
    let routes = Box::pin(can_watch(
        client,
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
    ))
    .await;
    for (kind, on) in [
        (Kind::Deployment, true),
        (Kind::Service, true),
        (Kind::Autoscaler, true),
        (Kind::Pod, true),
        (Kind::Ingress, ingresses),
        (Kind::HttpRoute, routes),
    ] {
        caches.set_watched(kind, on);
    }
    info!(ingresses, httproutes = routes, "watching children");
    (ingresses, routes)
}

/// The release watch: fills the controller's store, forgets the series of deleted releases,
/// and yields a release only when [`release_trigger`] changed.
fn release_triggers(
    client: &Client,
    writer: reflector::store::Writer<RecommenderRelease>,
    metrics: Arc<Metrics>,
) -> impl futures::Stream<Item = Result<RecommenderRelease, watcher::Error>> + Send + 'static {
    watcher(
        Api::<RecommenderRelease>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(slim_release)
    .reflect(writer)
    .inspect_ok(move |event| {
        if let watcher::Event::Delete(rr) = event {
            metrics.forget(&labels_of(
                &rr.namespace().unwrap_or_default(),
                &rr.name_any(),
            ));
        }
    })
    .applied_objects()
    .predicate_filter(release_trigger, PredicateConfig::default())
}

/// The watch of one child kind, feeding its cache after `trim` (at least [`slim`]);
/// yields every touched object.
fn owned<K>(
    client: &Client,
    writer: reflector::store::Writer<K>,
    trim: fn(&mut K),
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    watcher(Api::<K>::all(client.clone()), children_config())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .touched_objects()
}

/// Runs the controller until `shutdown` resolves, with as many reconciles at once as the
/// context's [`Admission`] lets in (kube-runtime's own bound is off: it would pick the waiting
/// reconciles in arbitrary order).
///
/// Watches releases (status-only changes filtered out), the Deployments, Services,
/// autoscalers and pods they own, and the Ingresses and `HTTPRoutes` when RBAC allows
/// watching them; every release is also reconciled every [`RESYNC`]. The bound keeps a start
/// or a resync of many releases from flooding the API server (whose priority-and-fairness
/// queues answer a flood with 504s).
pub async fn run<S, N>(
    ctx: Arc<Context<S, N>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    S: MetricsSource + 'static,
    N: Notifier + 'static,
{
    let client = ctx.client.clone();
    let Some(writers) = ctx.caches.take_writers() else {
        warn!("the controller runs once per context");
        return;
    };
    let Writers {
        releases: release_writer,
        deployments,
        services,
        ingresses,
        routes,
        autoscalers,
        pods,
    } = writers;
    let (watch_ingresses, watch_routes) = Box::pin(choose_watches(&ctx.caches, &client)).await;
    let releases = release_triggers(&client, release_writer, ctx.metrics.clone());

    let resync = futures::stream::unfold((), |()| async {
        tokio::time::sleep(RESYNC).await;
        Some(((), ()))
    });
    let pod_release = |pod: Pod| {
        let release = pod.labels().get(RELEASE_LABEL).cloned()?;
        Some(ObjectRef::<RecommenderRelease>::new(&release).within(&pod.namespace()?))
    };
    let mut controller = Controller::for_stream(releases, ctx.caches.releases.clone())
        .owns_stream(owned::<Deployment>(&client, deployments, slim_deployment))
        .owns_stream(owned::<Service>(&client, services, slim_service))
        .owns_stream(owned::<HorizontalPodAutoscaler>(&client, autoscalers, slim))
        .watches_stream(owned::<Pod>(&client, pods, slim_pod), pod_release);
    if watch_ingresses {
        controller = controller.owns_stream(owned::<Ingress>(&client, ingresses, slim));
    }
    if watch_routes {
        let resource = http_route_resource();
        let stream = watcher(
            Api::<DynamicObject>::all_with(client.clone(), &resource),
            children_config(),
        )
        .default_backoff()
        .modify(slim::<DynamicObject>)
        .reflect(routes)
        .touched_objects();
        controller = controller.owns_stream_with(stream, resource);
    }
    let running = controller
        .reconcile_all_on(resync)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(error = %analysis::error_chain(&error), "controller");
            }
        });
    Box::pin(running).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RecommenderReleaseSpec;

    #[test]
    fn a_slimmed_pod_keeps_what_the_plan_reads_and_drops_the_rest() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "r-canary-1", "namespace": "ns",
                "labels": {"movrek.dev/release": "r", "movrek.dev/track": "canary"},
                "annotations": {"big": "x".repeat(4096)},
                "managedFields": [{"manager": "kubelet"}]
            },
            "spec": {"containers": [
                {"name": "inference", "image": "i:1", "args": ["serve"],
                 "env": [{"name": "MOVREK_MODEL_VERSION", "value": "v2"},
                         {"name": "MOVREK_MODEL_URI", "value": "s3://m/v2"}]},
                {"name": "sidecar", "image": "s:1"}
            ], "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "inference", "restartCount": 3, "ready": true,
                    "image": "i:1", "imageID": ""}]
            }
        }))
        .unwrap();
        let before = children::restarts([&pod], "v2");
        slim_pod(&mut pod);
        assert_eq!(before, 3);
        assert_eq!(children::restarts([&pod], "v2"), before);
        assert_eq!(children::restarts([&pod], "v1"), 0);
        assert!(pod.metadata.annotations.is_none() && pod.metadata.managed_fields.is_none());
        assert_eq!(
            pod.labels().get(RELEASE_LABEL).map(String::as_str),
            Some("r")
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers.len(), 1);
        assert_eq!(spec.containers[0].env.as_ref().unwrap().len(), 1);
        assert!(spec.containers[0].image.is_none() && spec.volumes.is_none());
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.conditions.as_ref().unwrap()[0].type_, "Ready");
        assert!(status.pod_ip.is_none());
    }

    fn a_release() -> RecommenderRelease {
        let spec: RecommenderReleaseSpec = serde_json::from_value(json!({
            "image": "img:1",
            "model": {"version": "v1", "uri": "file:///m", "sha256": "a".repeat(64)},
            "traffic": {"provider": "replicas"}
        }))
        .unwrap();
        let mut rr = RecommenderRelease::new("movies", spec);
        rr.metadata.namespace = Some("prod".into());
        rr.metadata.uid = Some("0d9c6f1e-uid".into());
        rr.metadata.generation = Some(1);
        rr
    }

    /// A slimmed Service still holds every field the operator applies, so an unchanged
    /// Service is not applied again (and one edited by hand still is).
    #[test]
    fn a_slimmed_service_is_current_for_what_the_operator_applies_and_keeps_nothing_else() {
        let rr = a_release();
        let decision = plan::plan(&rr, &Observed::default(), Timestamp::UNIX_EPOCH);
        let services: Vec<_> = desired_children(&rr, &decision, &Selection::default())
            .unwrap()
            .into_iter()
            .filter(|c| c.resource.kind == "Service")
            .collect();
        assert_eq!(services.len(), 3);
        for child in services {
            // As the API server returns it: every applied field plus the server's own.
            let mut live = serde_json::to_value(&child.object).unwrap();
            live["metadata"]["uid"] = json!("d299a494-uid");
            live["metadata"]["resourceVersion"] = json!("8347");
            live["metadata"]["creationTimestamp"] = json!("2026-12-04T22:23:21Z");
            live["metadata"]["managedFields"] = json!([{"manager": "movrek-operator"}]);
            let spec = live["spec"].as_object_mut().unwrap();
            for (k, v) in [
                ("clusterIP", json!("10.96.84.183")),
                ("clusterIPs", json!(["10.96.84.183"])),
                ("internalTrafficPolicy", json!("Cluster")),
                ("ipFamilies", json!(["IPv4"])),
                ("ipFamilyPolicy", json!("SingleStack")),
                ("sessionAffinity", json!("None")),
                ("type", json!("ClusterIP")),
            ] {
                spec.insert(k.into(), v);
            }
            live["status"] = json!({"loadBalancer": {}});
            let mut service: Service = serde_json::from_value(live).unwrap();
            slim_service(&mut service);
            let cached = serde_json::to_value(&service).unwrap();
            assert!(child.is_current(Some(&cached)), "{cached}");
            assert_eq!(
                cached["spec"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .collect::<Vec<_>>(),
                ["ports", "selector"]
            );
            assert!(cached.get("status").is_none() && cached["metadata"].get("uid").is_none());
            // A hand edit of an applied field is still seen.
            let mut edited = cached.clone();
            edited["spec"]["ports"][0]["port"] = json!(9999);
            assert!(!child.is_current(Some(&edited)));
        }
    }

    /// As [`a_slimmed_service_is_current_for_what_the_operator_applies_and_keeps_nothing_else`],
    /// for the stable and the canary Deployment.
    #[test]
    fn a_slimmed_deployment_is_current_for_what_the_operator_applies() {
        let mut rr = a_release();
        let first = plan::plan(&rr, &Observed::default(), Timestamp::UNIX_EPOCH);
        rr.status = Some(first.status);
        rr.spec.model.version = "v2".into();
        rr.metadata.generation = Some(2);
        let decision = plan::plan(&rr, &Observed::default(), Timestamp::UNIX_EPOCH);
        let deployments: Vec<_> = desired_children(&rr, &decision, &Selection::default())
            .unwrap()
            .into_iter()
            .filter(|c| c.resource.kind == "Deployment")
            .collect();
        assert!(!deployments.is_empty());
        for child in deployments {
            let mut live = serde_json::to_value(&child.object).unwrap();
            live["metadata"]["uid"] = json!("89d597f6-uid");
            live["metadata"]["generation"] = json!(3);
            let spec = &mut live["spec"];
            spec["progressDeadlineSeconds"] = json!(600);
            spec["revisionHistoryLimit"] = json!(10);
            let pod = &mut spec["template"]["spec"];
            pod["dnsPolicy"] = json!("ClusterFirst");
            pod["restartPolicy"] = json!("Always");
            pod["schedulerName"] = json!("default-scheduler");
            for c in pod["containers"].as_array_mut().unwrap() {
                c["terminationMessagePath"] = json!("/dev/termination-log");
                c["terminationMessagePolicy"] = json!("File");
                c["imagePullPolicy"] = json!("IfNotPresent");
            }
            live["status"] = json!({"observedGeneration": 3, "replicas": 1, "readyReplicas": 1,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                "message": "Deployment has minimum availability."}]});
            let mut deployment: Deployment = serde_json::from_value(live).unwrap();
            let before = children::deployment_state(&deployment);
            slim_deployment(&mut deployment);
            assert_eq!(children::deployment_state(&deployment), before);
            let cached = serde_json::to_value(&deployment).unwrap();
            assert!(child.is_current(Some(&cached)), "{cached}");
            assert!(cached["status"].get("conditions").is_none());
            assert!(cached["spec"].get("revisionHistoryLimit").is_none());
        }
    }

    #[test]
    fn a_slimmed_release_drops_the_client_side_apply_copy_and_keeps_other_annotations() {
        let mut rr = a_release();
        rr.annotations_mut()
            .insert(LAST_APPLIED.into(), "{\"spec\": {}}".repeat(100));
        rr.annotations_mut()
            .insert("movrek.dev/action".into(), "promote".into());
        slim_release(&mut rr);
        assert_eq!(rr.annotations().len(), 1);
        assert!(rr.annotations().contains_key("movrek.dev/action"));
    }

    #[test]
    fn only_spec_annotation_and_deletion_changes_trigger_a_reconcile() {
        let spec: RecommenderReleaseSpec = serde_json::from_value(json!({
            "image": "img:1",
            "model": {"version": "v1", "uri": "file:///m", "sha256": "a".repeat(64)}
        }))
        .unwrap();
        let mut rr = RecommenderRelease::new("movies", spec);
        rr.metadata.generation = Some(1);
        let base = release_trigger(&rr);
        let mut status_only = rr.clone();
        status_only.status = Some(crate::crd::RecommenderReleaseStatus::default());
        status_only.metadata.resource_version = Some("9".into());
        assert_eq!(
            release_trigger(&status_only),
            base,
            "status-only: no reconcile"
        );
        let mut new_spec = rr.clone();
        new_spec.metadata.generation = Some(2);
        assert_ne!(release_trigger(&new_spec), base);
        let mut annotated = rr.clone();
        annotated
            .annotations_mut()
            .insert("movrek.dev/action".into(), "promote".into());
        assert_ne!(release_trigger(&annotated), base);
        let mut deleting = rr.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        assert_ne!(release_trigger(&deleting), base);
    }
}
