//! Shutdown as Kubernetes expects it: the drain state machine (pure) and its shared handle.
//!
//! On SIGTERM the kubelet removes the pod from the Service's endpoints *at the same time* as
//! it signals the container, and load balancers learn of it a little later. So the server
//! keeps serving for a drain period: `/readyz` turns 503 at once (endpoint controllers and
//! probes see it), every answer carries `Connection: close` so keep-alive clients (nginx
//! upstream pools) reconnect elsewhere, and new connections are still accepted and served.
//! When the period ends the listener closes, idle connections close, requests in progress
//! get a short grace to finish, and then everything still open is dropped: the process exits
//! within `period + grace` whatever clients do. A second signal ends the drain period at once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Normal operation.
    Serving,
    /// Signalled: still serving, but not ready and closing every connection after its answer.
    Draining,
    /// Drain over: no new connections; in-flight requests finish within the grace.
    Stopping,
}

/// Drain timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainPolicy {
    /// How long to keep serving after the first signal.
    pub period: Duration,
    /// How long requests in progress may take after the drain period before being dropped.
    pub grace: Duration,
}

impl DrainPolicy {
    /// Default drain period: 5 s. Well inside Kubernetes' default 30 s termination grace,
    /// and longer than endpoint removal usually takes to reach kube-proxy and ingress
    /// controllers (about a second or two); the usual advice is a 5–15 s `preStop` sleep.
    pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5);
    /// Grace for requests still in progress when the drain period ends.
    pub const DEFAULT_GRACE: Duration = Duration::from_millis(500);
}

/// What the server does at a point in time after the first signal. Pure.
pub fn phase_at(
    policy: &DrainPolicy,
    signalled: Option<Instant>,
    cut_short: bool,
    now: Instant,
) -> Phase {
    match signalled {
        None => Phase::Serving,
        Some(_) if cut_short => Phase::Stopping,
        Some(at) if now.saturating_duration_since(at) < policy.period => Phase::Draining,
        Some(_) => Phase::Stopping,
    }
}

/// Whether `/readyz` answers 200. Pure.
pub fn ready(phase: Phase, model_loaded: bool) -> bool {
    model_loaded && phase == Phase::Serving
}

/// Whether an answer must close its connection (`Connection: close`). Pure.
pub fn close_after_answer(phase: Phase) -> bool {
    phase != Phase::Serving
}

/// The drain state shared by the handler (readiness, `Connection: close`) and the server
/// loop (when to stop). Reads are one atomic load.
#[derive(Debug)]
pub struct Drain {
    policy: DrainPolicy,
    phase: AtomicU8,
    signalled: OnceLock<Instant>,
}

impl Drain {
    /// Serving, with `policy` for later.
    pub fn new(policy: DrainPolicy) -> Self {
        Self {
            policy,
            phase: AtomicU8::new(Phase::Serving as u8),
            signalled: OnceLock::new(),
        }
    }

    /// The timings.
    pub fn policy(&self) -> &DrainPolicy {
        &self.policy
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::Stopping,
        }
    }

    /// Records a signal: the first starts draining, a later one stops at once. Returns the
    /// new phase.
    pub fn signal(&self, now: Instant) -> Phase {
        let first = self.signalled.set(now).is_ok();
        let phase = phase_at(&self.policy, self.signalled.get().copied(), !first, now);
        self.advance(phase);
        self.phase()
    }

    /// Moves to `phase` unless already past it.
    pub fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
    }

    /// When the drain period ends, once signalled.
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.signalled.get().map(|at| *at + self.policy.period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DrainPolicy {
        DrainPolicy {
            period: Duration::from_secs(5),
            grace: Duration::from_millis(500),
        }
    }

    #[test]
    fn phases_follow_the_signal_and_the_period() {
        let t0 = Instant::now();
        let p = policy();
        assert_eq!(phase_at(&p, None, false, t0), Phase::Serving);
        assert_eq!(phase_at(&p, Some(t0), false, t0), Phase::Draining);
        assert_eq!(
            phase_at(&p, Some(t0), false, t0 + Duration::from_millis(4999)),
            Phase::Draining
        );
        assert_eq!(
            phase_at(&p, Some(t0), false, t0 + Duration::from_secs(5)),
            Phase::Stopping
        );
        assert_eq!(phase_at(&p, Some(t0), true, t0), Phase::Stopping);
    }

    #[test]
    fn readiness_and_connection_close_by_phase() {
        assert!(ready(Phase::Serving, true));
        assert!(!ready(Phase::Serving, false));
        assert!(!ready(Phase::Draining, true));
        assert!(!ready(Phase::Stopping, true));
        assert!(!close_after_answer(Phase::Serving));
        assert!(close_after_answer(Phase::Draining));
        assert!(close_after_answer(Phase::Stopping));
    }

    #[test]
    fn second_signal_cuts_the_drain_short_and_phases_never_go_back() {
        let drain = Drain::new(policy());
        let t0 = Instant::now();
        assert_eq!(drain.phase(), Phase::Serving);
        assert_eq!(drain.signal(t0), Phase::Draining);
        assert_eq!(drain.drain_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(drain.signal(t0 + Duration::from_secs(1)), Phase::Stopping);
        drain.advance(Phase::Draining);
        assert_eq!(drain.phase(), Phase::Stopping);
    }
}
