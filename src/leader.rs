//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles.
//!
//! [`decide`] is the pure rule (create, renew, take over an expired lease, or wait);
//! [`acquire`] and [`hold`] perform it with optimistic concurrency (`resourceVersion`), so
//! two candidates can never both win the same round.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
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
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (well under `lease_duration`).
    pub renew_every: Duration,
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
    /// Another candidate holds the lease now.
    #[error("lease taken over by {0}")]
    Lost(String),
}

/// What to do with the lease as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No lease exists: create it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else held it and it expired: take it over.
    TakeOver,
    /// Someone else holds a valid lease: wait this long and look again.
    Wait(Duration),
}

/// The pure election rule.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_some() {
            LeaseDecision::TakeOver
        } else {
            LeaseDecision::Create
        };
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::TakeOver;
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return LeaseDecision::TakeOver;
    };
    let age = now.duration_since(renewed.0);
    let age = if age.is_negative() {
        Duration::ZERO
    } else {
        age.unsigned_abs()
    };
    if age >= duration {
        LeaseDecision::TakeOver
    } else {
        LeaseDecision::Wait(duration.saturating_sub(age))
    }
}

fn held_by(cfg: &LeaseConfig, previous: Option<&Lease>, now: Timestamp) -> Lease {
    let previous_spec = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
    let ours = previous_spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15)),
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

/// One election round: true when we hold the lease afterwards; the `Duration` says when
/// to try again otherwise.
async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Result<(), Duration>, LeaderError> {
    let current = api
        .get_opt(&cfg.name)
        .await
        .map_err(|source| LeaderError::Kube {
            action: "get",
            source,
        })?;
    let now = Timestamp::now();
    let outcome = match decide(current.as_ref(), &cfg.identity, now) {
        LeaseDecision::Wait(d) => return Ok(Err(d.min(cfg.renew_every))),
        LeaseDecision::Create => {
            api.create(&PostParams::default(), &held_by(cfg, None, now))
                .await
        }
        LeaseDecision::Renew | LeaseDecision::TakeOver => {
            api.replace(
                &cfg.name,
                &PostParams::default(),
                &held_by(cfg, current.as_ref(), now),
            )
            .await
        }
    };
    match outcome {
        Ok(_) => Ok(Ok(())),
        // Someone else won this round (conflict or already exists): look again soon.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Err(cfg.renew_every)),
        Err(source) => Err(LeaderError::Kube {
            action: "write",
            source,
        }),
    }
}

/// Blocks until this candidate holds the lease.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), LeaderError> {
    loop {
        match round(api, cfg).await {
            Ok(Ok(())) => {
                info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                return Ok(());
            }
            Ok(Err(wait)) => tokio::time::sleep(wait).await,
            Err(error) => {
                warn!(error = %crate::analysis::error_chain(&error), "lease election round failed");
                tokio::time::sleep(cfg.renew_every).await;
            }
        }
    }
}

/// Renews the lease until it is lost; returns why. Renewal errors are retried until the
/// lease would have expired.
pub async fn hold(api: &Api<Lease>, cfg: &LeaseConfig) -> LeaderError {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        match round(api, cfg).await {
            Ok(Ok(())) => last_renewal = tokio::time::Instant::now(),
            Ok(Err(_)) => {
                let holder = api
                    .get_opt(&cfg.name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|l| l.spec?.holder_identity)
                    .unwrap_or_default();
                return LeaderError::Lost(holder);
            }
            Err(error) if last_renewal.elapsed() >= cfg.lease_duration => return error,
            Err(error) => {
                warn!(error = %crate::analysis::error_chain(&error), "lease renewal failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn election_rule() {
        assert_eq!(decide(None, "a", t(0)), LeaseDecision::Create);
        assert_eq!(
            decide(Some(&lease("a", t(0), 15)), "a", t(5)),
            LeaseDecision::Renew
        );
        assert_eq!(
            decide(Some(&lease("b", t(0), 15)), "a", t(5)),
            LeaseDecision::Wait(Duration::from_secs(10))
        );
        assert_eq!(
            decide(Some(&lease("b", t(0), 15)), "a", t(15)),
            LeaseDecision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease("", t(0), 15)), "a", t(1)),
            LeaseDecision::TakeOver
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_acquire_time() {
        let cfg = LeaseConfig {
            name: "movrek-operator".into(),
            namespace: "movrek-system".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let mut theirs = lease("b", t(0), 15);
        theirs.spec.as_mut().unwrap().lease_transitions = Some(3);
        let ours = held_by(&cfg, Some(&theirs), t(20));
        let spec = ours.spec.as_ref().unwrap();
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(t(20))));
        let renewed = held_by(&cfg, Some(&ours), t(25));
        let spec = renewed.spec.unwrap();
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(t(20))));
        assert_eq!(spec.renew_time, Some(MicroTime(t(25))));
    }
}
