//! Which reconcile runs next when every reconcile slot (`--max-concurrent-reconciles`) is
//! busy: urgent ones before routine ones, each class in arrival order.
//!
//! kube-runtime's controller can bound its reconciles itself, but when its slots are full it
//! parks the requests that fall due in a hash set and later takes them in arbitrary order. At
//! the start over 1,000 new releases, the follow-ups of the first releases (their pods became
//! Ready: one status write and one Event each) then overtook the first reconcile of releases
//! that had not been looked at yet, and a test with six releases and one slot saw one release
//! reconciled 9 times before another once. So the controller runs kube's side unbounded and
//! every reconcile passes this gate first: [`urgency`] classifies (pure), [`Queue`] decides
//! (pure), [`Admission`] is the thin async layer.
//!
//! # Guarantees
//! - At most `limit` reconciles hold a [`Permit`] at once (`0`: no limit).
//! - A freed slot goes to the longest-waiting urgent reconcile, else to the longest-waiting
//!   routine one.
//! - A waiting reconcile that is dropped (controller shutdown) gives its slot back, also when
//!   it was dropped right after being handed one.
//!
//! # Caveats
//! Routine reconciles wait as long as urgent ones keep arriving. Urgent work is bounded (each
//! release is urgent until its spec is observed or its rollout ends), so they are delayed,
//! not starved.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::crd::RecommenderRelease;
use crate::plan::ManualAction;

/// How soon a reconcile should run when slots are scarce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// Something a person or a rollout waits for: a spec not yet observed
    /// (`status.observedGeneration` ≠ `metadata.generation`), a rollout in flight, an action
    /// annotation not yet handled, or a deletion.
    Urgent,
    /// Everything else: a settled release re-checked (a child changed, a resync, pods of a
    /// first deployment becoming Ready).
    Routine,
}

/// The class of a reconcile of `release` as the cache has it.
pub fn urgency(release: &RecommenderRelease) -> Urgency {
    let status = release.status.as_ref();
    let unobserved = status.and_then(|s| s.observed_generation) != release.metadata.generation;
    let in_rollout = status.is_some_and(|s| s.rollout.is_some());
    let deleting = release.metadata.deletion_timestamp.is_some();
    let action = ManualAction::pending(release).is_some();
    if unobserved || in_rollout || deleting || action {
        Urgency::Urgent
    } else {
        Urgency::Routine
    }
}

/// The slots and the waiting line; `W` is whatever wakes a waiter.
#[derive(Debug)]
pub struct Queue<W> {
    limit: usize,
    running: usize,
    urgent: VecDeque<W>,
    routine: VecDeque<W>,
}

impl<W> Queue<W> {
    /// `limit` slots (`0`: no limit).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            running: 0,
            urgent: VecDeque::new(),
            routine: VecDeque::new(),
        }
    }

    /// A reconcile arrives: `Some(waiter)` back when it takes a free slot at once, `None` when
    /// it was put in line.
    pub fn arrive(&mut self, urgency: Urgency, waiter: W) -> Option<W> {
        if self.limit == 0 || self.running < self.limit {
            self.running += 1;
            return Some(waiter);
        }
        match urgency {
            Urgency::Urgent => self.urgent.push_back(waiter),
            Urgency::Routine => self.routine.push_back(waiter),
        }
        None
    }

    /// A slot is freed: the waiter it passes to (the slot stays taken), or `None` when nobody
    /// waits (the slot is free).
    pub fn finish(&mut self) -> Option<W> {
        let next = self.urgent.pop_front().or_else(|| self.routine.pop_front());
        if next.is_none() {
            self.running = self.running.saturating_sub(1);
        }
        next
    }

    /// Reconciles holding a slot.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Reconciles in line: (urgent, routine).
    pub fn waiting(&self) -> (usize, usize) {
        (self.urgent.len(), self.routine.len())
    }
}

type Shared = Arc<Mutex<Queue<oneshot::Sender<()>>>>;

fn lock(queue: &Shared) -> MutexGuard<'_, Queue<oneshot::Sender<()>>> {
    // The queue is consistent after every method: a panic elsewhere cannot leave it half-done.
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Passes a freed slot on to the next live waiter, or frees it.
fn release(queue: &Shared) {
    let mut q = lock(queue);
    while let Some(waiter) = q.finish() {
        if waiter.send(()).is_ok() {
            return;
        }
        // That waiter was dropped while in line: the slot is still ours to pass on.
    }
}

/// The gate every reconcile passes (see the module docs).
#[derive(Clone, Debug)]
pub struct Admission {
    queue: Shared,
}

impl Default for Admission {
    /// No limit.
    fn default() -> Self {
        Self::new(0)
    }
}

/// A slot, held until dropped.
#[derive(Debug)]
pub struct Permit {
    queue: Shared,
}

impl Drop for Permit {
    fn drop(&mut self) {
        release(&self.queue);
    }
}

/// A reconcile in line; gives the slot back if dropped after it was handed one.
struct Waiting {
    rx: oneshot::Receiver<()>,
    queue: Shared,
    admitted: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.admitted {
            return;
        }
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            release(&self.queue);
        }
    }
}

impl Admission {
    /// A gate with `limit` slots (`0`: no limit).
    pub fn new(limit: u16) -> Self {
        Self {
            queue: Arc::new(Mutex::new(Queue::new(usize::from(limit)))),
        }
    }

    /// Waits for a slot; urgent reconciles are let in before routine ones.
    pub async fn admit(&self, urgency: Urgency) -> Permit {
        let (tx, rx) = oneshot::channel();
        let at_once = lock(&self.queue).arrive(urgency, tx).is_some();
        if !at_once {
            let mut waiting = Waiting {
                rx,
                queue: self.queue.clone(),
                admitted: false,
            };
            // The sender lives in the queue until a slot is handed over; it is never dropped
            // unsent while this gate exists.
            let _ = (&mut waiting.rx).await;
            waiting.admitted = true;
        }
        Permit {
            queue: self.queue.clone(),
        }
    }

    /// (running, urgent waiting, routine waiting).
    pub fn load(&self) -> (usize, usize, usize) {
        let q = lock(&self.queue);
        let (urgent, routine) = q.waiting();
        (q.running(), urgent, routine)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::ResourceExt;
    use serde_json::json;

    use super::*;
    use crate::crd::RecommenderReleaseSpec;

    fn release(generation: i64, observed: Option<i64>) -> RecommenderRelease {
        let spec: RecommenderReleaseSpec = serde_json::from_value(json!({
            "image": "img:1",
            "model": {"version": "v1", "uri": "file:///m", "sha256": "a".repeat(64)}
        }))
        .unwrap();
        let mut rr = RecommenderRelease::new("movies", spec);
        rr.metadata.generation = Some(generation);
        if let Some(g) = observed {
            rr.status = Some(serde_json::from_value(json!({"observedGeneration": g})).unwrap());
        }
        rr
    }

    #[test]
    fn an_unobserved_spec_a_rollout_an_action_or_a_deletion_is_urgent() {
        assert_eq!(
            urgency(&release(1, None)),
            Urgency::Urgent,
            "never reconciled"
        );
        assert_eq!(urgency(&release(2, Some(1))), Urgency::Urgent, "new spec");
        assert_eq!(urgency(&release(2, Some(2))), Urgency::Routine, "settled");
        let mut rolling = release(2, Some(2));
        rolling.status = Some(
            serde_json::from_value(json!({"observedGeneration": 2, "rollout": {
                "version": "v2", "image": "img:1", "fingerprint": "f",
                "startedAt": "2026-12-04T10:00:00Z"}}))
            .unwrap(),
        );
        assert_eq!(urgency(&rolling), Urgency::Urgent, "rollout in flight");
        let mut asked = release(2, Some(2));
        asked
            .annotations_mut()
            .insert("movrek.dev/action".into(), "promote".into());
        assert_eq!(urgency(&asked), Urgency::Urgent, "action not handled");
        let mut deleting = release(2, Some(2));
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(urgency(&deleting), Urgency::Urgent, "deleting");
    }

    #[test]
    fn a_freed_slot_goes_to_the_first_urgent_waiter_then_to_routine_ones_in_arrival_order() {
        let mut q = Queue::new(1);
        assert_eq!(q.arrive(Urgency::Routine, "running"), Some("running"));
        assert_eq!(q.arrive(Urgency::Routine, "routine-1"), None);
        assert_eq!(q.arrive(Urgency::Urgent, "urgent-1"), None);
        assert_eq!(q.arrive(Urgency::Routine, "routine-2"), None);
        assert_eq!(q.arrive(Urgency::Urgent, "urgent-2"), None);
        let order: Vec<_> = std::iter::from_fn(|| q.finish()).collect();
        assert_eq!(order, ["urgent-1", "urgent-2", "routine-1", "routine-2"]);
        assert_eq!(q.running(), 0, "the last finish frees the slot");
    }

    #[test]
    fn no_limit_lets_everyone_in() {
        let mut q = Queue::new(0);
        for i in 0..100 {
            assert_eq!(q.arrive(Urgency::Routine, i), Some(i));
        }
        assert_eq!(q.waiting(), (0, 0));
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_gate_admits_urgent_reconciles_before_routine_ones_one_slot_at_a_time() {
        let gate = Admission::new(1);
        let first = gate.admit(Urgency::Routine).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, urgency) in [
            ("routine-1", Urgency::Routine),
            ("routine-2", Urgency::Routine),
            ("urgent-1", Urgency::Urgent),
            ("urgent-2", Urgency::Urgent),
        ] {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.admit(urgency).await;
                order.lock().unwrap().push(name);
                settle().await;
            }));
            settle().await;
        }
        assert_eq!(gate.load(), (1, 2, 2));
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["urgent-1", "urgent-2", "routine-1", "routine-2"]
        );
        assert_eq!(gate.load(), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_waiter_dropped_in_line_or_just_after_being_let_in_gives_its_slot_back() {
        let gate = Admission::new(1);
        let first = gate.admit(Urgency::Routine).await;
        // Dropped while in line.
        let abandoned = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit(Urgency::Urgent).await }
        });
        settle().await;
        abandoned.abort();
        let _ = abandoned.await;
        // Handed the slot but dropped before it ran: poll once to get in line, then drop.
        let mut late = Box::pin(gate.admit(Urgency::Urgent));
        assert!(futures::poll!(&mut late).is_pending());
        drop(first);
        drop(late);
        let again = tokio::time::timeout(Duration::from_secs(5), gate.admit(Urgency::Routine));
        let _permit = again.await.expect("the slot was lost");
        assert_eq!(gate.load(), (1, 0, 0));
    }
}
