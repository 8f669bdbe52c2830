//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder writes.
//!
//! The rules are those of client-go's `leaderelection` package, restated here:
//! - **Expiry is measured on our own monotonic clock.** A candidate never compares its wall
//!   clock with the holder's `renewTime`: it remembers when it last saw the Lease record
//!   *change* ([`Observation`]) and takes over only when the record stayed unchanged for the
//!   whole `leaseDurationSeconds` since then. Clock skew between nodes cannot steal a live lease.
//! - **The holder steps down at the renew deadline** (about 2/3 of the lease), measured from
//!   when it *sent* its last successful renewal, so it stops before any other candidate can
//!   consider the lease expired (they started counting after that write landed).
//! - **Every Lease call has a timeout**, and no call outlives the renew deadline: a hung API
//!   server cannot keep a stale leader believing it leads.
//! - **Writes are gated** ([`LeaderGate`], [`WriteGateLayer`]): the client the controller uses
//!   refuses every write once the renew deadline has passed, whatever the controller is doing
//!   (a paused process that wakes up late writes nothing).
//! - **A graceful stop releases the Lease** ([`release`]: no holder, `leaseDurationSeconds: 1`),
//!   so a rolling update of the operator hands over within one retry period.
//!
//! Every write is conditional on the `resourceVersion` that was read, so two candidates can
//! never both win the same round; a stale observation only ever costs a 409.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate's identity (the pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal (written to the Lease).
    pub lease_duration: Duration,
    /// The holder steps down when it could not renew for this long (< `lease_duration`).
    pub renew_deadline: Duration,
    /// How often the holder renews and a follower looks at the Lease.
    pub retry_period: Duration,
    /// Bound on one Lease API call (further bounded by the time left to the renew deadline).
    pub call_timeout: Duration,
}

impl LeaseConfig {
    /// The timings derived from one lease duration: renew deadline 2/3 of it, retry period
    /// 1/10 (1.5 s for the default 15 s, so a released lease is picked up well within 2 s),
    /// call timeout the renew deadline (a slow API server that still answers within the
    /// deadline keeps the leader; a renewal is further bounded by the time left to it).
    pub fn new(
        name: String,
        namespace: String,
        identity: String,
        lease_duration: Duration,
    ) -> Self {
        let lease_duration = lease_duration.max(Duration::from_secs(2));
        Self {
            name,
            namespace,
            identity,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: (lease_duration / 10).max(Duration::from_millis(200)),
            call_timeout: lease_duration * 2 / 3,
            lease_duration,
        }
    }
}

/// Why leadership could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// An API call failed.
    #[error("lease {action} failed")]
    Kube {
        /// What was attempted.
        action: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An API call did not answer in time.
    #[error("lease {action} timed out after {limit:?}")]
    TimedOut {
        /// What was attempted.
        action: &'static str,
        /// The bound that passed.
        limit: Duration,
    },
    /// Another candidate holds the lease now.
    #[error("lease taken over by {0:?}")]
    Lost(String),
    /// No renewal succeeded within the renew deadline.
    #[error("no renewal succeeded within the renew deadline of {0:?}")]
    Deadline(Duration),
}

/// What a candidate last saw of the Lease and when, on its own monotonic clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The Lease as last read (`None`: it did not exist).
    pub lease: Option<Lease>,
    /// When its spec was first seen as it is now.
    pub changed_at: Instant,
}

impl Observation {
    /// Folds a fresh read into what was seen before (pure): the time only moves when the
    /// record (the Lease's spec) differs from the one seen before.
    pub fn update(previous: Option<&Observation>, lease: Option<Lease>, now: Instant) -> Self {
        let same = |p: &Observation| match (&p.lease, &lease) {
            (Some(a), Some(b)) => a.spec == b.spec,
            (None, None) => true,
            _ => false,
        };
        let changed_at = match previous {
            Some(p) if same(p) => p.changed_at,
            _ => now,
        };
        Self { lease, changed_at }
    }
}

/// What to do with the lease as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No lease exists: create it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder's record stayed unchanged for its whole duration.
    TakeOver,
    /// Someone else holds a valid lease: it cannot expire before this long.
    Wait(Duration),
}

/// The pure election rule. `now` and `seen.changed_at` come from the same monotonic clock;
/// the holder's `renewTime` is never compared with our clock.
pub fn decide(seen: &Observation, identity: &str, now: Instant) -> LeaseDecision {
    let Some(lease) = &seen.lease else {
        return LeaseDecision::Create;
    };
    let Some(spec) = &lease.spec else {
        return LeaseDecision::TakeOver;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::TakeOver;
    }
    let seconds = u64::try_from(spec.lease_duration_seconds.unwrap_or(15).max(1)).unwrap_or(15);
    let expires = seen.changed_at + Duration::from_secs(seconds);
    if now >= expires {
        LeaseDecision::TakeOver
    } else {
        LeaseDecision::Wait(expires - now)
    }
}

/// Whether a holder whose last successful renewal was *sent* at `renewed_sent_at` still
/// leads at `now` (pure): strictly before the renew deadline.
pub fn still_leading(renewed_sent_at: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now < renewed_sent_at + renew_deadline
}

/// The Lease we write when we hold it (`previous`: the Lease as read, for its
/// `resourceVersion`, transitions and acquire time).
fn held_by(cfg: &LeaseConfig, previous: Option<&Lease>, now: Timestamp) -> Lease {
    let previous_spec = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
    let ours = previous_spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    Lease {
        metadata: lease_meta(cfg, previous),
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(cfg.lease_duration.as_secs().max(1)).unwrap_or(15),
            ),
            acquire_time: if ours {
                previous_spec.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                previous_spec.lease_transitions.unwrap_or(0) + i32::from(!ours),
            ),
            ..LeaseSpec::default()
        }),
    }
}

/// The Lease we write when we give it up: no holder and a one-second duration, so every
/// candidate takes it over at its next look (client-go's `ReleaseOnCancel` does the same).
fn released(cfg: &LeaseConfig, previous: &Lease, now: Timestamp) -> Lease {
    let previous_spec = previous.spec.clone().unwrap_or_default();
    Lease {
        metadata: lease_meta(cfg, Some(previous)),
        spec: Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: previous_spec.lease_transitions,
            ..LeaseSpec::default()
        }),
    }
}

fn lease_meta(cfg: &LeaseConfig, previous: Option<&Lease>) -> ObjectMeta {
    ObjectMeta {
        name: Some(cfg.name.clone()),
        namespace: Some(cfg.namespace.clone()),
        resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
        ..ObjectMeta::default()
    }
}

/// Runs one Lease call with a time limit.
async fn bounded<T>(
    action: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, LeaderError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|source| LeaderError::Kube { action, source }),
        Err(_) => Err(LeaderError::TimedOut { action, limit }),
    }
}

fn is_conflict(error: &LeaderError) -> bool {
    matches!(
        error,
        LeaderError::Kube { source: kube::Error::Api(s), .. } if s.code == 409
    )
}

/// Shared view of whether this process leads, read by [`WriteGate`] before every write and
/// exported as metrics.
#[derive(Clone, Debug, Default)]
pub struct LeaderGate {
    valid_until: Arc<Mutex<Option<Instant>>>,
    leader: Gauge,
    writes: Counter,
    refused: Counter,
}

impl LeaderGate {
    /// Registers `leader` (1 while leading), `leader_writes_total` (writes this process sent
    /// to the API server) and `leader_writes_refused_total` (writes refused because it did
    /// not lead).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "leader",
            "1 while this replica holds the leader-election Lease",
            self.leader.clone(),
        );
        registry.register(
            "leader_writes",
            "Write requests this replica sent to the API server",
            self.writes.clone(),
        );
        registry.register(
            "leader_writes_refused",
            "Write requests refused because this replica did not lead",
            self.refused.clone(),
        );
    }

    /// Whether writes may be sent now.
    pub fn is_leading(&self) -> bool {
        let until = *self
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_some_and(|t| Instant::now() < t)
    }

    /// Writes sent so far.
    pub fn writes_sent(&self) -> u64 {
        self.writes.get()
    }

    /// Writes refused so far.
    pub fn writes_refused(&self) -> u64 {
        self.refused.get()
    }

    fn lead_until(&self, until: Instant) {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(until);
        self.leader.set(1);
    }

    fn revoke(&self) {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.leader.set(0);
    }

    /// Counts and admits (true) or refuses (false) one write.
    fn admit(&self) -> bool {
        if self.is_leading() {
            self.writes.inc();
            true
        } else {
            self.refused.inc();
            false
        }
    }
}

/// The error a gated client returns for a write while this replica does not lead.
#[derive(Debug, thiserror::Error)]
#[error("write refused: this replica does not hold the leader-election Lease")]
pub struct NotLeader;

/// A tower layer for the controller's Kubernetes client: writes (`POST`, `PUT`, `PATCH`,
/// `DELETE`) pass only while [`LeaderGate::is_leading`]; reads and watches always pass.
#[derive(Clone, Debug)]
pub struct WriteGateLayer(pub LeaderGate);

impl<S> tower::Layer<S> for WriteGateLayer {
    type Service = WriteGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WriteGate {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// The service [`WriteGateLayer`] wraps around the client's stack.
#[derive(Clone, Debug)]
pub struct WriteGate<S> {
    inner: S,
    gate: LeaderGate,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for WriteGate<S>
where
    S: tower::Service<http::Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let write = !matches!(
            *request.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if write && !self.gate.admit() {
            warn!(method = %request.method(), path = %request.uri().path(), "write refused: not the leader");
            return Box::pin(std::future::ready(Err(NotLeader.into())));
        }
        let call = self.inner.call(request);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

/// A Lease this process holds: the last version it wrote and when that write was sent.
#[derive(Clone, Debug)]
pub struct Held {
    lease: Lease,
    sent_at: Instant,
}

/// Blocks until this candidate holds the lease; opens `gate` before returning.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaseConfig, gate: &LeaderGate) -> Held {
    let mut seen: Option<Observation> = None;
    loop {
        let wait = match try_acquire(api, cfg, &mut seen).await {
            Ok(Ok(held)) => {
                gate.lead_until(held.sent_at + cfg.renew_deadline);
                info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                return held;
            }
            Ok(Err(wait)) => wait.min(cfg.retry_period),
            Err(error) => {
                warn!(error = %crate::analysis::error_chain(&error), "lease election round failed");
                cfg.retry_period
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One election round: the held Lease, or how long to wait before the next look.
async fn try_acquire(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    seen: &mut Option<Observation>,
) -> Result<Result<Held, Duration>, LeaderError> {
    let current = bounded("get", cfg.call_timeout, api.get_opt(&cfg.name)).await?;
    let now = Instant::now();
    let observation = Observation::update(seen.as_ref(), current, now);
    let decision = decide(&observation, &cfg.identity, now);
    let current = observation.lease.clone();
    *seen = Some(observation);
    let sent_at = Instant::now();
    let written = match decision {
        LeaseDecision::Wait(d) => return Ok(Err(d)),
        LeaseDecision::Create => {
            let lease = held_by(cfg, None, Timestamp::now());
            bounded(
                "create",
                cfg.call_timeout,
                api.create(&PostParams::default(), &lease),
            )
            .await
        }
        LeaseDecision::Renew | LeaseDecision::TakeOver => {
            let lease = held_by(cfg, current.as_ref(), Timestamp::now());
            bounded(
                "update",
                cfg.call_timeout,
                api.replace(&cfg.name, &PostParams::default(), &lease),
            )
            .await
        }
    };
    match written {
        Ok(lease) => Ok(Ok(Held { lease, sent_at })),
        // Someone else won this round (conflict, or created it first): look again soon.
        Err(e) if is_conflict(&e) => Ok(Err(cfg.retry_period)),
        Err(e) => Err(e),
    }
}

/// Renews the lease every retry period until it is lost, the renew deadline passes without a
/// successful renewal, or `stop` resolves. Closes `gate` the moment leadership ends; returns
/// the Lease as last held (for [`release`]) and why it ended (`None`: `stop`).
pub async fn hold(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    gate: &LeaderGate,
    mut held: Held,
    stop: impl Future<Output = ()>,
) -> (Held, Option<LeaderError>) {
    tokio::pin!(stop);
    loop {
        let deadline = held.sent_at + cfg.renew_deadline;
        let nap = cfg
            .retry_period
            .min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            () = &mut stop => return (held, None),
            () = tokio::time::sleep(nap) => {}
        }
        if !still_leading(held.sent_at, Instant::now(), cfg.renew_deadline) {
            gate.revoke();
            return (held, Some(LeaderError::Deadline(cfg.renew_deadline)));
        }
        let result = tokio::select! {
            () = &mut stop => return (held, None),
            r = renew(api, cfg, &held, deadline) => r,
        };
        match result {
            Ok(fresh) => {
                held = fresh;
                gate.lead_until(held.sent_at + cfg.renew_deadline);
            }
            Err(error @ LeaderError::Lost(_)) => {
                gate.revoke();
                return (held, Some(error));
            }
            Err(error) => {
                if !still_leading(held.sent_at, Instant::now(), cfg.renew_deadline) {
                    gate.revoke();
                    warn!(error = %crate::analysis::error_chain(&error), "last renewal attempt failed");
                    return (held, Some(LeaderError::Deadline(cfg.renew_deadline)));
                }
                warn!(error = %crate::analysis::error_chain(&error), "lease renewal failed; retrying");
            }
        }
    }
}

/// One renewal: an update based on the Lease we last wrote (one request when nothing
/// changed); after a conflict, one read to find out who holds it. No call outlives `deadline`.
async fn renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    held: &Held,
    deadline: Instant,
) -> Result<Held, LeaderError> {
    let limit = || {
        deadline
            .saturating_duration_since(Instant::now())
            .min(cfg.call_timeout)
    };
    let sent_at = Instant::now();
    let lease = held_by(cfg, Some(&held.lease), Timestamp::now());
    match bounded(
        "renew",
        limit(),
        api.replace(&cfg.name, &PostParams::default(), &lease),
    )
    .await
    {
        Ok(lease) => return Ok(Held { lease, sent_at }),
        Err(e) if !is_conflict(&e) => return Err(e),
        Err(_) => {}
    }
    let current = bounded("get", limit(), api.get_opt(&cfg.name)).await?;
    let holder = current
        .as_ref()
        .and_then(|l| l.spec.as_ref()?.holder_identity.clone())
        .unwrap_or_default();
    if holder != cfg.identity {
        return Err(LeaderError::Lost(holder));
    }
    // Still ours (an earlier write landed after its timeout): renew on the fresh version.
    let sent_at = Instant::now();
    let lease = held_by(cfg, current.as_ref(), Timestamp::now());
    let lease = bounded(
        "renew",
        limit(),
        api.replace(&cfg.name, &PostParams::default(), &lease),
    )
    .await?;
    Ok(Held { lease, sent_at })
}

/// Gives the Lease up (graceful shutdown): closes `gate` first, then writes an empty holder
/// with a one-second duration on the version we hold, so a waiting candidate takes over at
/// its next look. A conflict means someone else holds it already; nothing to do then.
pub async fn release(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    gate: &LeaderGate,
    held: &Held,
) -> Result<(), LeaderError> {
    gate.revoke();
    let lease = released(cfg, &held.lease, Timestamp::now());
    match bounded(
        "release",
        cfg.call_timeout,
        api.replace(&cfg.name, &PostParams::default(), &lease),
    )
    .await
    {
        Ok(_) => {
            info!(lease = %cfg.name, identity = %cfg.identity, "released the lease");
            Ok(())
        }
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
