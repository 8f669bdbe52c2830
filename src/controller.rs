//! The async shell around [`crate::plan::plan`]: observe (the release's Deployments),
//! plan (with one Prometheus check when the plan asks for it), apply (children by
//! server-side apply with one field manager, status, annotation, Events, notifications).
//!
//! # Guarantees
//! - No write when nothing changed: every child carries the fingerprint of its desired
//!   content and is applied only when the live one differs; status is patched only when it
//!   differs from the one read. An idle reconcile issues reads only.
//! - Routing objects are applied before Deployments, so a rollback takes the canary's
//!   traffic away before its pods are scaled down.
//! - Notifications are sent in the background with the notifier's bounded timeout; they
//!   never delay the rollback itself.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use crate::analysis::{self, MetricsSource, Track};
use crate::children::{self, Child, ChildError, FIELD_MANAGER};
use crate::crd::{ACTION_ANNOTATION, Outcome, RecommenderRelease};
use crate::metrics::{Metrics, ReleaseLabels};
use crate::notify::{Notification, NotificationKind, Notifier};
use crate::plan::{self, Announcement, EventKind, Observed, Plan};
use crate::router::router_for;

/// Retry delay after a failed reconcile.
const ERROR_REQUEUE: std::time::Duration = std::time::Duration::from_secs(15);
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
    /// Event recorder.
    pub recorder: Recorder,
    /// The clock (whole seconds, like the timestamps the API server stores).
    pub clock: Clock,
}

impl<S, N> std::fmt::Debug for Context<S, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl<S, N> Context<S, N> {
    /// A context with the system clock.
    pub fn new(client: Client, source: S, notifier: N, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            source,
            notifier: Arc::new(notifier),
            metrics,
            clock: Arc::new(|| {
                Timestamp::from_second(Timestamp::now().as_second())
                    .unwrap_or_else(|_| Timestamp::now())
            }),
        }
    }
}

/// One reconcile of one release: observe → plan → apply.
pub async fn reconcile<S, N>(
    rr: Arc<RecommenderRelease>,
    ctx: Arc<Context<S, N>>,
) -> Result<Action, Error>
where
    S: MetricsSource + 'static,
    N: Notifier + 'static,
{
    let namespace = rr.namespace().unwrap_or_default();
    let name = rr.name_any();
    let span = info_span!("reconcile", namespace = %namespace, release = %name);
    let started = Instant::now();
    let result = reconcile_inner(&rr, &ctx, &namespace, &name)
        .instrument(span)
        .await;
    ctx.metrics.observe_reconcile(started.elapsed());
    result
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
    // Observe.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let stable_name = children::track_name(name, Track::Stable);
    let canary_name = children::track_name(name, Track::Canary);
    let stable = deployments
        .get_opt(&stable_name)
        .await
        .map_err(kube_err(format!("get Deployment {stable_name}")))?;
    let canary = deployments
        .get_opt(&canary_name)
        .await
        .map_err(kube_err(format!("get Deployment {canary_name}")))?;
    let mut observed = Observed {
        stable: stable.as_ref().map(children::deployment_state),
        canary: canary.as_ref().map(children::deployment_state),
        analysis: None,
    };

    // Plan (and check the canary when a check is due).
    let now = (ctx.clock)();
    let mut decision = plan::plan(rr, &observed, now);
    if let Some(request) = decision.analysis_needed.take() {
        let result = analysis::analyze(&ctx.source, &request.query, &request.thresholds).await;
        info!(verdict = %result.verdict, reason = %result.reason, "canary check");
        observed.analysis = Some(result);
        decision = plan::plan(rr, &observed, now);
    }

    // Apply.
    apply_children(
        rr,
        ctx,
        namespace,
        &decision,
        [stable.as_ref(), canary.as_ref()],
    )
    .await?;
    let releases: Api<RecommenderRelease> = Api::namespaced(ctx.client.clone(), namespace);
    if rr.status.as_ref() != Some(&decision.status) {
        let patch = json!({
            "apiVersion": RecommenderRelease::api_version(&()),
            "kind": RecommenderRelease::kind(&()),
            "status": decision.status,
        });
        releases
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(kube_err("patch status"))?;
        ctx.metrics.wrote("status");
    }
    if decision.remove_action {
        let patch = json!({"metadata": {"annotations": {ACTION_ANNOTATION: null}}});
        releases
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err("remove the action annotation"))?;
        ctx.metrics.wrote("annotation");
    }
    publish_events(rr, ctx, &decision).await;
    announce(rr, ctx, namespace, &decision.announcements);

    let labels = ReleaseLabels {
        namespace: namespace.to_owned(),
        release: name.to_owned(),
    };
    ctx.metrics.release_state(
        &labels,
        decision.status.phase,
        decision.status.canary_weight,
        decision.status.last_analysis.as_ref(),
    );
    for a in &decision.announcements {
        ctx.metrics.rollout_finished(&labels, a.outcome);
    }
    Ok(decision
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

/// The desired children in apply order: Services, routing objects, then Deployments.
pub fn desired_children(
    rr: &RecommenderRelease,
    decision: &Plan,
) -> Result<Vec<Child>, ChildError> {
    let mut out = vec![
        children::child(&children::service(rr, Some(Track::Stable))?)?,
        children::child(&children::service(rr, Some(Track::Canary))?)?,
        children::child(&children::service(rr, None)?)?,
    ];
    out.extend(router_for(rr.spec.traffic.provider).routes(rr, decision.children.canary_weight)?);
    if let Some(w) = &decision.children.stable {
        out.push(children::child(&children::deployment(
            rr,
            Track::Stable,
            w,
        )?)?);
    }
    if let Some(w) = &decision.children.canary {
        out.push(children::child(&children::deployment(
            rr,
            Track::Canary,
            w,
        )?)?);
    }
    Ok(out)
}

async fn apply_children<S, N>(
    rr: &RecommenderRelease,
    ctx: &Context<S, N>,
    namespace: &str,
    decision: &Plan,
    live_deployments: [Option<&Deployment>; 2],
) -> Result<(), Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for child in desired_children(rr, decision)? {
        let name = child.name();
        let kind = child.resource.kind.clone();
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), namespace, &child.resource);
        let live = if kind == "Deployment" {
            live_deployments
                .iter()
                .flatten()
                .find(|d| d.metadata.name.as_deref() == Some(name.as_str()))
                .map(|d| {
                    let mut meta_only = DynamicObject::new(&name, &child.resource);
                    meta_only.metadata = d.metadata.clone();
                    meta_only
                })
        } else {
            api.get_opt(&name)
                .await
                .map_err(kube_err(format!("get {kind} {name}")))?
        };
        if child.matches(live.as_ref()) {
            continue;
        }
        api.patch(&name, &params, &Patch::Apply(&child.object))
            .await
            .map_err(kube_err(format!("apply {kind} {name}")))?;
        ctx.metrics.wrote(&kind);
        info!(kind = %kind, object = %name, "applied");
    }
    Ok(())
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
        let event = Event {
            type_: match e.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: e.reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        // An Event that cannot be written must not stop the rollout; it is logged above.
        match ctx.recorder.publish(&event, &reference).await {
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

/// Runs the controller until `shutdown` resolves.
pub async fn run<S, N>(
    ctx: Arc<Context<S, N>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    S: MetricsSource + 'static,
    N: Notifier + 'static,
{
    let releases = Api::<RecommenderRelease>::all(ctx.client.clone());
    let owned = Api::<Deployment>::all(ctx.client.clone());
    let managed =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    Controller::new(releases, watcher::Config::default())
        .owns(owned, managed)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(error = %analysis::error_chain(&error), "controller");
            }
        })
        .await;
}
