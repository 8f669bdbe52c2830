//! Kubernetes Events (`events.k8s.io/v1`) about releases, with series, remembering little.
//!
//! kube-runtime's `Recorder` keeps every Event it sent, whole, for 6 minutes, in a table that
//! never shrinks: at the start over 1,000 releases that was 8.9 MB of the operator's heap.
//! This publisher keeps the same series semantics and remembers of each Event only what a
//! repeat needs: its name, its count and when it was last seen.
//!
//! # Guarantees
//! - The first Event of a (release, reason, type) is created; a repeat within [`SERIES_TTL`]
//!   of the last one is counted into it (`series.count`, `series.lastObservedTime`, as
//!   kube-runtime's `Recorder` and client-go do) instead of creating a duplicate.
//! - A repeat whose Event is gone from the server (404: expired or deleted) is created anew,
//!   so no Event is lost.
//! - Memory: one small entry per series seen in the last [`SERIES_TTL`]; expired entries are
//!   dropped at most every [`PRUNE_EVERY`] and the table shrinks with them.
//!
//! [`SeriesMemory`] decides (pure, with the time passed in); [`Publisher`] talks to the API.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// A repeat this soon after the last Event of a series is counted into it (kube-runtime's
/// `Recorder` uses the same 6 minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(360);
/// Expired series are forgotten at most this often.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The action of every Event (what the operator was doing).
pub const ACTION: &str = "Reconcile";

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Normal progress.
    Normal,
    /// Something a person should look at.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What identifies a series: the object, the reason and the type (the controller, its
/// instance and the action are the same for every Event of this publisher).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// `apiVersion/kind/namespace/name/uid` of the object.
    regarding: Box<str>,
    reason: &'static str,
    type_: EventType,
}

impl SeriesKey {
    /// The series of `reason` events of `type_` about `regarding`.
    pub fn new(regarding: &ObjectReference, reason: &'static str, type_: EventType) -> Self {
        let part = |p: &Option<String>| p.clone().unwrap_or_default();
        let regarding = [
            part(&regarding.api_version),
            part(&regarding.kind),
            part(&regarding.namespace),
            part(&regarding.name),
            part(&regarding.uid),
        ]
        .join("/")
        .into_boxed_str();
        Self {
            regarding,
            reason,
            type_,
        }
    }
}

/// What is remembered of the last Event of a series.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sent {
    /// The Event's name.
    name: Box<str>,
    /// Occurrences so far (1 for a created Event).
    count: i32,
    /// When it last occurred.
    last: Timestamp,
}

/// The API call that publishes one occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A new Event under `name`.
    Create {
        /// The new Event's name.
        name: String,
    },
    /// A repeat: the series of the Event `name` now counts `count`.
    Count {
        /// The Event counted into.
        name: String,
        /// Its new `series.count`.
        count: i32,
    },
}

/// The series seen in the last [`SERIES_TTL`], and when they were last pruned.
#[derive(Debug, Default)]
pub struct SeriesMemory {
    sent: HashMap<SeriesKey, Sent>,
    pruned: Option<Timestamp>,
}

/// A new Event's name, as kube-runtime names them: unique per object and instant.
fn event_name(object_name: &str, now: Timestamp) -> String {
    format!("{object_name}.{:x}", now.as_nanosecond())
}

fn older_than(then: Timestamp, now: Timestamp, age: Duration) -> bool {
    now.duration_since(then).as_secs_f64() >= age.as_secs_f64()
}

impl SeriesMemory {
    /// How to publish an occurrence of `key` about the object named `object_name` at `now`.
    pub fn plan(&mut self, key: &SeriesKey, object_name: &str, now: Timestamp) -> Write {
        self.prune(now);
        match self.sent.get(key) {
            Some(s) if !older_than(s.last, now, SERIES_TTL) => Write::Count {
                name: s.name.to_string(),
                count: s.count + 1,
            },
            _ => Write::Create {
                name: event_name(object_name, now),
            },
        }
    }

    /// Records that `write` for `key` succeeded at `now`.
    pub fn written(&mut self, key: SeriesKey, write: &Write, now: Timestamp) {
        let (name, count) = match write {
            Write::Create { name } => (name.as_str(), 1),
            Write::Count { name, count } => (name.as_str(), *count),
        };
        self.sent.insert(
            key,
            Sent {
                name: name.into(),
                count,
                last: now,
            },
        );
    }

    /// Forgets `key` (its Event is gone from the server).
    pub fn forget(&mut self, key: &SeriesKey) {
        self.sent.remove(key);
    }

    /// Series remembered.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// True when no series is remembered.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    fn prune(&mut self, now: Timestamp) {
        if self
            .pruned
            .is_some_and(|p| !older_than(p, now, PRUNE_EVERY))
        {
            return;
        }
        self.pruned = Some(now);
        self.sent
            .retain(|_, s| !older_than(s.last, now, SERIES_TTL));
        if self.sent.capacity() > 2 * self.sent.len() + 64 {
            self.sent.shrink_to_fit();
        }
    }
}

/// One occurrence to publish.
#[derive(Clone, Debug)]
pub struct Occurrence<'a> {
    /// Normal or Warning.
    pub type_: EventType,
    /// Short `UpperCamelCase` reason.
    pub reason: &'static str,
    /// Human-readable note (at most 1 kB: the API server's limit).
    pub note: &'a str,
}

/// Publishes Events as the operator's controller and instance.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    memory: Mutex<SeriesMemory>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Events reported by `controller`, from `instance` (the pod name; defaults to the
    /// controller).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            memory: Mutex::new(SeriesMemory::default()),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, SeriesMemory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Series remembered (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.memory().len()
    }

    /// Publishes one occurrence about `regarding` now: creates an Event, or counts a
    /// repeat into the series of the last one.
    ///
    /// # Errors
    /// The API call's error; nothing is remembered then.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        occurrence: &Occurrence<'_>,
    ) -> Result<(), kube::Error> {
        // Wall-clock nanoseconds: they also name the Event, unique per object and instant.
        let now = Timestamp::now();
        let key = SeriesKey::new(regarding, occurrence.reason, occurrence.type_);
        let object_name = regarding.name.as_deref().unwrap_or(&self.controller);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let mut write = self.memory().plan(&key, object_name, now);
        if let Write::Count { name, count } = &write {
            let series = json!({"series": EventSeries {
                count: *count,
                last_observed_time: MicroTime(now),
            }});
            match events
                .patch(name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.memory().forget(&key);
                    write = Write::Create {
                        name: event_name(object_name, now),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        if let Write::Create { name } = &write {
            let event = self.event(name, namespace, regarding, occurrence, now);
            events.create(&PostParams::default(), &event).await?;
        }
        self.memory().written(key, &write, now);
        Ok(())
    }

    fn event(
        &self,
        name: &str,
        namespace: &str,
        regarding: &ObjectReference,
        occurrence: &Occurrence<'_>,
        now: Timestamp,
    ) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            action: Some(ACTION.to_owned()),
            reason: Some(occurrence.reason.to_owned()),
            note: Some(occurrence.note.to_owned()),
            type_: Some(occurrence.type_.as_str().to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + seconds).unwrap()
    }

    fn release(name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("movrek.dev/v1alpha1".into()),
            kind: Some("RecommenderRelease".into()),
            namespace: Some("prod".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        }
    }

    fn publish(memory: &mut SeriesMemory, key: &SeriesKey, t: i64) -> Write {
        let write = memory.plan(key, "movies", at(t));
        memory.written(key.clone(), &write, at(t));
        write
    }

    #[test]
    fn a_repeat_within_the_ttl_is_counted_into_the_first_event() {
        let mut memory = SeriesMemory::default();
        let key = SeriesKey::new(&release("movies", "u1"), "Ready", EventType::Normal);
        let Write::Create { name } = publish(&mut memory, &key, 0) else {
            panic!("the first occurrence creates an Event");
        };
        assert!(name.starts_with("movies."));
        assert_eq!(
            publish(&mut memory, &key, 10),
            Write::Count {
                name: name.clone(),
                count: 2
            }
        );
        // Measured from the last occurrence, not the first.
        assert_eq!(
            publish(&mut memory, &key, 10 + 359),
            Write::Count { name, count: 3 }
        );
        assert!(matches!(
            publish(&mut memory, &key, 10 + 359 + 360),
            Write::Create { .. }
        ));
    }

    #[test]
    fn another_reason_type_or_object_is_another_series() {
        let mut memory = SeriesMemory::default();
        let keys = [
            SeriesKey::new(&release("movies", "u1"), "Ready", EventType::Normal),
            SeriesKey::new(&release("movies", "u1"), "Ready", EventType::Warning),
            SeriesKey::new(&release("movies", "u1"), "Deploying", EventType::Normal),
            SeriesKey::new(&release("movies", "u2"), "Ready", EventType::Normal),
            SeriesKey::new(&release("books", "u3"), "Ready", EventType::Normal),
        ];
        for key in &keys {
            assert!(matches!(publish(&mut memory, key, 0), Write::Create { .. }));
        }
        assert_eq!(memory.len(), keys.len());
    }

    /// kube-runtime's `Recorder` returned the 404 of a series patch whose Event had expired
    /// on the server (Events live an hour by default) and the occurrence was lost.
    #[tokio::test]
    async fn a_repeat_whose_event_is_gone_is_created_again_not_lost() {
        use http::{Request, Response};
        use kube::client::Body;

        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let publisher = Publisher::new(Client::new(service, "default"), "movrek", None);
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for code in [201, 404, 201, 200] {
                let (request, send) = handle.next_request().await.expect("a request");
                seen.push(format!("{} {}", request.method(), request.uri().path()));
                let body = request.into_body().collect_bytes().await.unwrap();
                let answer = if code == 404 {
                    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": "events \"movies.1\" not found"}))
                    .unwrap()
                } else if code == 200 {
                    serde_json::to_vec(&json!({"metadata": {"name": "movies.2"}})).unwrap()
                } else {
                    body.to_vec()
                };
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(answer))
                        .unwrap(),
                );
            }
            seen
        });
        let ready = Occurrence {
            type_: EventType::Normal,
            reason: "Ready",
            note: "model v1 serves",
        };
        let regarding = release("movies", "u1");
        publisher.publish(&regarding, &ready).await.unwrap();
        publisher.publish(&regarding, &ready).await.unwrap();
        publisher.publish(&regarding, &ready).await.unwrap();
        let seen = server.await.unwrap();
        let path = "/apis/events.k8s.io/v1/namespaces/prod/events";
        assert_eq!(seen[0], format!("POST {path}"));
        assert!(
            seen[1].starts_with(&format!("PATCH {path}/movies.")),
            "{seen:?}"
        );
        assert_eq!(
            seen[2],
            format!("POST {path}"),
            "created again after the 404"
        );
        assert!(
            seen[3].starts_with(&format!("PATCH {path}/movies.")),
            "{seen:?}"
        );
        assert_ne!(seen[1], seen[3], "the repeat counts into the new Event");
        assert_eq!(publisher.remembered(), 1);
    }

    #[test]
    fn expired_series_are_forgotten_and_the_table_shrinks() {
        let mut memory = SeriesMemory::default();
        for i in 0..2000 {
            let name = format!("rr-{i}");
            let key = SeriesKey::new(&release(&name, &name), "Deploying", EventType::Normal);
            publish(&mut memory, &key, 0);
        }
        let full = memory.sent.capacity();
        let key = SeriesKey::new(&release("late", "late"), "Ready", EventType::Normal);
        publish(&mut memory, &key, 400);
        assert_eq!(memory.len(), 1);
        assert!(memory.sent.capacity() < full / 4, "the table shrank");
    }
}
