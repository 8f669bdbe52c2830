//! Tests of the election rules (pure) and of the Lease calls against a tower-test fake API
//! server on tokio's paused clock (a hung call, a skewed holder clock, a release).

use std::sync::Arc;
use std::sync::Mutex as StdMutex;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;

fn lease(holder: &str, renewed: Timestamp, seconds: i32) -> Lease {
    Lease {
        metadata: ObjectMeta {
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        },
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

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig::new(
        "movrek-operator".into(),
        "movrek-system".into(),
        identity.into(),
        Duration::from_secs(15),
    )
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn timings_step_down_well_before_expiry() {
    let c = cfg("a");
    assert_eq!(c.lease_duration, secs(15));
    assert_eq!(c.renew_deadline, secs(10));
    assert_eq!(c.retry_period, Duration::from_millis(1500));
    assert_eq!(c.call_timeout, secs(10));
}

#[test]
fn election_rule_on_the_local_clock() {
    let start = Instant::now();
    let none = Observation::update(None, None, start);
    assert_eq!(decide(&none, "a", start), LeaseDecision::Create);

    let ours = Observation::update(None, Some(lease("a", t(0), 15)), start);
    assert_eq!(decide(&ours, "a", start + secs(60)), LeaseDecision::Renew);

    let free = Observation::update(None, Some(lease("", t(0), 15)), start);
    assert_eq!(decide(&free, "a", start), LeaseDecision::TakeOver);

    let theirs = Observation::update(None, Some(lease("b", t(0), 15)), start);
    assert_eq!(
        decide(&theirs, "a", start + secs(5)),
        LeaseDecision::Wait(secs(10))
    );
    assert_eq!(
        decide(&theirs, "a", start + secs(15)),
        LeaseDecision::TakeOver
    );
}

/// The holder's `renewTime` is an hour behind our wall clock (skewed node clock), but we
/// have just seen its record: it is a live lease and must not be taken. Comparing our wall
/// clock with `renewTime` would take it at once.
#[test]
fn a_skewed_renew_time_does_not_steal_a_live_lease() {
    let start = Instant::now();
    let an_hour_ago = Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let seen = Observation::update(None, Some(lease("b", an_hour_ago, 15)), start);
    assert_eq!(
        decide(&seen, "a", start + secs(1)),
        LeaseDecision::Wait(secs(14))
    );
    // The holder renews (its record changes, still with its skewed clock): the count restarts.
    let renewed = Observation::update(
        Some(&seen),
        Some(lease(
            "b",
            an_hour_ago + jiff::SignedDuration::from_secs(10),
            15,
        )),
        start + secs(10),
    );
    assert_eq!(renewed.changed_at, start + secs(10));
    assert_eq!(
        decide(&renewed, "a", start + secs(20)),
        LeaseDecision::Wait(secs(5))
    );
    // A holder whose clock is an hour *ahead* does not keep a dead lease alive either: once
    // its record stops changing, the lease expires on our clock.
    let ahead = Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let seen = Observation::update(None, Some(lease("b", ahead, 15)), start);
    let same = Observation::update(Some(&seen), Some(lease("b", ahead, 15)), start + secs(14));
    assert_eq!(same.changed_at, start, "an unchanged record keeps its time");
    assert_eq!(
        decide(&same, "a", start + secs(15)),
        LeaseDecision::TakeOver
    );
}

#[test]
fn leadership_ends_strictly_at_the_renew_deadline() {
    let sent = Instant::now();
    assert!(still_leading(
        sent,
        sent + Duration::from_millis(9_999),
        secs(10)
    ));
    assert!(!still_leading(sent, sent + secs(10), secs(10)));
}

#[test]
fn taking_over_counts_a_transition_and_renewing_keeps_acquire_time() {
    let cfg = cfg("a");
    let mut theirs = lease("b", t(0), 15);
    theirs.spec.as_mut().unwrap().lease_transitions = Some(3);
    let ours = held_by(&cfg, Some(&theirs), t(20));
    let spec = ours.spec.as_ref().unwrap();
    assert_eq!(spec.lease_transitions, Some(4));
    assert_eq!(spec.acquire_time, Some(MicroTime(t(20))));
    assert_eq!(ours.metadata.resource_version.as_deref(), Some("1"));
    let renewed = held_by(&cfg, Some(&ours), t(25));
    let spec = renewed.spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(4));
    assert_eq!(spec.acquire_time, Some(MicroTime(t(20))));
    assert_eq!(spec.renew_time, Some(MicroTime(t(25))));
}

#[test]
fn a_released_lease_has_no_holder_and_is_taken_at_once() {
    let ours = lease("a", t(0), 15);
    let free = released(&cfg("a"), &ours, t(5));
    let spec = free.spec.as_ref().unwrap();
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert_eq!(free.metadata.resource_version.as_deref(), Some("1"));
    let seen = Observation::update(None, Some(free), Instant::now());
    assert_eq!(decide(&seen, "b", Instant::now()), LeaseDecision::TakeOver);
}

/// How the fake API server answers one request: `None` never answers (a hung call).
type Answer = Box<dyn FnMut(&Method, &Value) -> Option<(StatusCode, Value)> + Send>;

/// Every request the fake API server saw: when (paused clock), the method and the body.
type Log = Arc<StdMutex<Vec<(Instant, Method, Value)>>>;

/// A client whose requests `answer` serves; every request is logged with the paused clock.
fn fake(mut answer: Answer) -> (Client, Log) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(StdMutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        let mut hung = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            seen.lock()
                .unwrap()
                .push((Instant::now(), method.clone(), body.clone()));
            match answer(&method, &body) {
                Some((status, value)) => send.send_response(
                    Response::builder()
                        .status(status)
                        .body(Body::from(serde_json::to_vec(&value).unwrap()))
                        .unwrap(),
                ),
                None => hung.push(send),
            }
        }
    });
    (Client::new(service, "movrek-system"), log)
}

fn lease_json(holder: &str, renew: &str, version: u64) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "movrek-operator", "namespace": "movrek-system",
                     "resourceVersion": version.to_string()},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew}
    })
}

/// The first renewal answers; the second hangs forever. The holder must close the gate at
/// the renew deadline (10 s after it sent the last good renewal), well before the 15 s
/// lease can expire at a follower, and `hold` must return.
#[tokio::test(start_paused = true)]
async fn a_hung_renewal_steps_down_at_the_renew_deadline() {
    let mut calls = 0;
    let (client, log) = fake(Box::new(move |method, body| {
        calls += 1;
        assert_eq!(method, Method::PUT, "renewals are updates");
        (calls == 1).then(|| {
            let mut written = body.clone();
            written["metadata"]["resourceVersion"] = json!("2");
            (StatusCode::OK, written)
        })
    }));
    let api: Api<Lease> = Api::namespaced(client, "movrek-system");
    let cfg = cfg("a");
    let gate = LeaderGate::default();
    let start = Instant::now();
    let held = Held {
        lease: serde_json::from_value(lease_json("a", "2023-11-14T22:13:20.000000Z", 1)).unwrap(),
        sent_at: start,
    };
    gate.lead_until(start + cfg.renew_deadline);
    let watcher = {
        let gate = gate.clone();
        tokio::spawn(async move {
            // The gate must be closed by the deadline of the last good renewal (sent 1.5 s in).
            tokio::time::sleep_until(start + Duration::from_millis(1_500) + secs(10)).await;
            gate.is_leading()
        })
    };
    let outcome = tokio::time::timeout(
        secs(60),
        hold(&api, &cfg, &gate, held, std::future::pending()),
    )
    .await;
    let (_, reason) = outcome.expect("hold returned instead of waiting on the hung call");
    assert!(
        matches!(reason, Some(LeaderError::Deadline(_))),
        "{reason:?}"
    );
    let stepped_down = start.elapsed();
    assert!(
        stepped_down <= Duration::from_millis(1_500) + secs(10),
        "stepped down after {stepped_down:?}"
    );
    assert!(!gate.is_leading());
    assert!(!watcher.await.unwrap(), "gate still open at the deadline");
    let log = log.lock().unwrap();
    assert!(log.len() >= 2, "one good renewal, then hung ones: {log:?}");
    assert!(log.iter().all(|(_, m, _)| m == Method::PUT));
}

/// A follower that sees a Lease whose `renewTime` is a day old (the holder's clock is
/// behind) must still wait a whole lease duration on its own clock before it writes.
#[tokio::test(start_paused = true)]
async fn a_follower_waits_a_whole_lease_on_its_own_clock() {
    let (client, log) = fake(Box::new(move |method, body| {
        Some(if *method == Method::GET {
            (
                StatusCode::OK,
                lease_json("b", "2023-11-14T22:13:20.000000Z", 7),
            )
        } else {
            let mut written = body.clone();
            written["metadata"]["resourceVersion"] = json!("8");
            (StatusCode::OK, written)
        })
    }));
    let api: Api<Lease> = Api::namespaced(client, "movrek-system");
    let cfg = cfg("a");
    let gate = LeaderGate::default();
    let start = Instant::now();
    let held = acquire(&api, &cfg, &gate).await;
    assert!(gate.is_leading());
    assert_eq!(held.lease.metadata.resource_version.as_deref(), Some("8"));
    let log = log.lock().unwrap();
    let (at, method, body) = log.last().unwrap();
    assert_eq!(*method, Method::PUT);
    assert_eq!(body["spec"]["holderIdentity"], "a");
    assert_eq!(
        body["metadata"]["resourceVersion"], "7",
        "conditional on the read"
    );
    let waited = at.duration_since(start);
    assert!(
        waited >= secs(15) && waited < secs(17),
        "took over after {waited:?}"
    );
    assert!(
        log[..log.len() - 1]
            .iter()
            .all(|(_, m, _)| m == Method::GET),
        "nothing but reads before the lease expired on our clock"
    );
}

/// A graceful stop closes the gate and writes an empty holder on the version held.
#[tokio::test(start_paused = true)]
async fn release_writes_an_empty_holder_on_the_held_version() {
    let (client, log) = fake(Box::new(|_, body| Some((StatusCode::OK, body.clone()))));
    let api: Api<Lease> = Api::namespaced(client, "movrek-system");
    let cfg = cfg("a");
    let gate = LeaderGate::default();
    gate.lead_until(Instant::now() + secs(10));
    let held = Held {
        lease: serde_json::from_value(lease_json("a", "2023-11-14T22:13:20.000000Z", 4)).unwrap(),
        sent_at: Instant::now(),
    };
    release(&api, &cfg, &gate, &held).await.unwrap();
    assert!(!gate.is_leading());
    let log = log.lock().unwrap();
    let (_, method, body) = &log[0];
    assert_eq!(*method, Method::PUT);
    assert_eq!(body["metadata"]["resourceVersion"], "4");
    assert!(
        body["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null)
    );
    assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
}

/// Writes through the gated client reach the API server only while the gate is open;
/// reads always do.
#[tokio::test(start_paused = true)]
async fn the_write_gate_refuses_writes_of_a_replica_that_does_not_lead() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let gate = LeaderGate::default();
    let client = kube::client::ClientBuilder::new(service, "default")
        .with_layer(&WriteGateLayer(gate.clone()))
        .build();
    let served = Arc::new(StdMutex::new(Vec::new()));
    let seen = served.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            seen.lock().unwrap().push(request.method().clone());
            send.send_response(
                Response::builder()
                    .body(Body::from(
                        serde_json::to_vec(&lease_json("x", "2023-11-14T22:13:20.000000Z", 1))
                            .unwrap(),
                    ))
                    .unwrap(),
            );
        }
    });
    let api: Api<Lease> = Api::namespaced(client, "default");
    let lease: Lease =
        serde_json::from_value(lease_json("x", "2023-11-14T22:13:20.000000Z", 1)).unwrap();
    let params = PostParams::default();
    let write = || api.replace("movrek-operator", &params, &lease);

    let refused = write().await.expect_err("a follower's write is refused");
    assert!(
        crate::analysis::error_chain(&refused).contains("does not hold the leader-election Lease"),
        "{refused}"
    );
    api.get("movrek-operator").await.expect("reads pass");

    gate.lead_until(Instant::now() + secs(10));
    write().await.expect("the leader writes");
    tokio::time::advance(secs(10)).await;
    write()
        .await
        .expect_err("past the renew deadline the write is refused");

    assert_eq!(*served.lock().unwrap(), [Method::GET, Method::PUT]);
    assert_eq!((gate.writes_sent(), gate.writes_refused()), (1, 2));
}
