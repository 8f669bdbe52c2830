//! The event bus on a real Kafka broker. Impressions from `/recommend`: every 200 carries
//! `X-Impression-Id` and the same id arrives on the topic with the list, user, release,
//! track, model version and artifact digest; with no broker, answers stay 200 and drops are
//! counted. Event lines: every line written arrives once, in order per user; an absent
//! broker is an error naming what was not acknowledged.
//!
//! The broker is the one `hack/test.sh` starts (`hack/kafka/up`), found through
//! `MOVREK_KAFKA_BOOTSTRAP`. Without it these tests print why and pass, unless
//! `MOVREK_REQUIRE_KAFKA` is set (as `hack/test.sh` does): then a missing broker fails.

mod support;

use support::bootstrap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use movrek_inference::bus::KafkaUri;
use movrek_inference::bus::events::EventWriter;
use movrek_inference::bus::impression::Impression;
use movrek_inference::bus::publish::{Compression, Publisher, PublisherConfig};
use movrek_inference::server::{
    AppState, ConnLimits, DrainPolicy, LoadedModel, Recommender, ServedPath, StateConfig, Track,
    run,
};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[derive(Debug)]
struct Fixed;

impl Recommender for Fixed {
    fn recommend(&self, user: u32, n: usize) -> (Vec<u32>, ServedPath) {
        ((user..).take(n).collect(), ServedPath::Personal)
    }
    fn version(&self) -> &'static str {
        "v-kafka"
    }
    fn data_sha256(&self) -> &'static str {
        "d"
    }
    fn provenance(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// A topic of its own for each test, so tests run in parallel on one broker.
async fn fresh_topic(brokers: &str, name: &str) -> String {
    let topic = format!("{name}-{}-{}", std::process::id(), nanos());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topic");
    for result in results {
        result.expect("topic created");
    }
    topic
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn config(brokers: &str, topic: &str, queue_records: u32) -> PublisherConfig {
    PublisherConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        queue_records,
        delivery_timeout: Duration::from_secs(30),
        client_id: "movrek-test".to_owned(),
        linger: PublisherConfig::DEFAULT_LINGER,
        compression: Compression::default(),
        batch_records: PublisherConfig::DEFAULT_BATCH_RECORDS,
    }
}

fn publisher(brokers: &str, topic: &str, queue_records: u32) -> Publisher {
    Publisher::start(&config(brokers, topic, queue_records)).expect("producer")
}

struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    signals: tokio::sync::mpsc::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

async fn start(publisher: Publisher) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(
        AppState::new(StateConfig {
            release: "movies".into(),
            track: Track::Canary,
            model_threads: 1,
            drain: DrainPolicy {
                period: Duration::from_millis(50),
                grace: Duration::from_millis(100),
            },
            ..StateConfig::default()
        })
        .with_publisher(publisher),
    );
    let loading = async {
        Ok(LoadedModel {
            recommender: Arc::new(Fixed),
            artifact_sha256: "ab".repeat(32),
        })
    };
    let (signals, rx) = tokio::sync::mpsc::channel(4);
    let limits = ConnLimits {
        max_connections: 64,
        header_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
    };
    let running = Arc::clone(&state);
    let done = tokio::spawn(async move {
        run(listener, running, limits, loading, rx)
            .await
            .expect("server");
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !get(addr, "/readyz").await.0.starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Server {
        addr,
        state,
        signals,
        done,
    }
}

/// One request on its own connection: (head, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Reads `topic` from the start until `want` records arrived or 30 s passed.
fn consume(brokers: &str, topic: &str, want: usize) -> Vec<(String, Impression)> {
    consume_raw(brokers, topic, want)
        .into_iter()
        .map(|(key, payload)| {
            let record = Impression::parse(&payload).expect("an impression record");
            (key, record)
        })
        .collect()
}

/// Reads `topic` from the start until `want` records arrived or 30 s passed: (key, value).
fn consume_raw(brokers: &str, topic: &str, want: usize) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while records.len() < want && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consumed record");
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            records.push((key, message.payload().unwrap_or_default().to_vec()));
        }
    }
    records
}

async fn stop(server: Server) {
    server.signals.send(()).await.expect("signal");
    tokio::time::timeout(Duration::from_secs(10), server.done)
        .await
        .expect("server stops")
        .expect("server task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_list_arrives_on_the_topic_under_its_impression_id() {
    let Some(brokers) = bootstrap() else { return };
    let topic = fresh_topic(&brokers, "impressions").await;
    let server = start(publisher(&brokers, &topic, 1_000)).await;

    let mut sent = Vec::new();
    for user in [7_u32, 8, 7, 1_000_000] {
        let (head, body) = get(server.addr, &format!("/recommend/{user}")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let id = header(&head, "x-impression-id")
            .expect("X-Impression-Id")
            .to_owned();
        sent.push((id, user, body));
    }
    let (head, _) = get(server.addr, "/recommend/not-a-user").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(
        header(&head, "x-impression-id"),
        None,
        "no list, no impression"
    );
    let ids: std::collections::HashSet<_> = sent.iter().map(|s| &s.0).collect();
    assert_eq!(ids.len(), sent.len(), "ids are unique: {sent:?}");

    let received = consume(&brokers, &topic, sent.len());
    assert_eq!(
        received.len(),
        sent.len(),
        "one record per 200: {received:?}"
    );
    for (id, user, body) in &sent {
        let (key, record) = received
            .iter()
            .find(|(_, r)| &r.id == id)
            .unwrap_or_else(|| panic!("impression {id} not on the topic"));
        assert_eq!(key, &user.to_string(), "keyed by user");
        assert_eq!(record.user, *user);
        let listed: Vec<String> = record.movies.iter().map(u32::to_string).collect();
        assert_eq!(&listed.join(","), body, "the list the client got");
        assert_eq!(record.movies.len(), 20);
        assert_eq!(
            (record.release.as_str(), record.track.as_str()),
            ("movies", "canary")
        );
        assert_eq!(record.model_version, "v-kafka");
        assert_eq!(record.artifact_sha256, "ab".repeat(32));
        record.unix_seconds().expect("a valid time");
    }

    let (_, metrics) = get(server.addr, "/metrics").await;
    let delivered = metrics
        .lines()
        .find(|l| l.starts_with("movrek_impressions_delivered_total{"))
        .expect("delivered series");
    assert!(delivered.ends_with(" 4"), "{delivered}");
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_lists_are_still_answered_and_drops_are_counted() {
    // A port nobody listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = start(publisher(&closed.to_string(), "impressions", 5)).await;
    let started = Instant::now();
    for user in 1..=12_u32 {
        let (head, _) = get(server.addr, &format!("/recommend/{user}")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(header(&head, "x-impression-id").is_some(), "{head}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests waited for the broker: {:?}",
        started.elapsed()
    );
    let counts = server.state.publisher().expect("publisher").snapshot();
    assert_eq!(counts.queued, 5, "{counts:?}");
    assert_eq!(counts.dropped_queue_full, 7, "{counts:?}");
    assert_eq!(counts.delivered, 0, "{counts:?}");
    let (_, metrics) = get(server.addr, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("movrek_impressions_dropped_total{")
                && l.contains("reason=\"queue_full\"")
                && l.ends_with(" 7")),
        "{metrics}"
    );
    stop(server).await;
}

/// Deliveries are reported only when they fail, by the publisher's own polling thread: a
/// record that times out is counted failed (never delivered), and the derived delivered
/// count stays 0 once nothing is in flight.
#[test]
fn a_record_that_cannot_be_delivered_is_counted_failed_by_the_poller() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let publisher = Publisher::start(&PublisherConfig {
        delivery_timeout: Duration::from_millis(300),
        linger: Duration::from_millis(5),
        ..config(&closed.to_string(), "impressions", 10)
    })
    .expect("producer");
    for user in 1..=3_u32 {
        publisher.publish_encoded(user, b"{}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut counts = publisher.snapshot();
    while counts.dropped_failed < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        counts = publisher.snapshot();
    }
    assert_eq!(counts.queued, 3, "{counts:?}");
    assert_eq!(counts.dropped_failed, 3, "{counts:?}");
    assert_eq!(counts.in_flight, 0, "{counts:?}");
    assert_eq!(counts.delivered, 0, "{counts:?}");
}

/// A full batch is sent at once, linger or not: with a linger of a minute and batches of 4
/// records, 8 records for one user (one partition) arrive well before the linger is out
/// (`consume_raw` gives up after 30 s). Without the cap they would wait the whole minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_sent_before_its_linger_is_out() {
    let Some(brokers) = bootstrap() else { return };
    let topic = fresh_topic(&brokers, "batches").await;
    let publisher = Publisher::start(&PublisherConfig {
        linger: Duration::from_secs(60),
        delivery_timeout: Duration::from_secs(120),
        batch_records: 4,
        ..config(&brokers, &topic, 100)
    })
    .expect("producer");
    for n in 0..8_u32 {
        publisher.publish_encoded(7, format!("{{\"n\":{n}}}").as_bytes());
    }
    let received = consume_raw(&brokers, &topic, 8);
    let payloads: Vec<String> = received
        .iter()
        .map(|(_, payload)| String::from_utf8_lossy(payload).into_owned())
        .collect();
    let expected: Vec<String> = (0..8).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(
        payloads, expected,
        "two full batches, in order, before the linger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_lines_arrive_once_each_in_order_per_user() {
    let Some(brokers) = bootstrap() else { return };
    let topic = fresh_topic(&brokers, "events").await;
    let uri: KafkaUri = format!("kafka://{brokers}/{topic}").parse().expect("uri");
    let lines: Vec<(u32, String)> = (0..300_u32)
        .map(|i| {
            let user = i % 7;
            (
                user,
                format!(
                    "2026-12-03T21:{:02}:{:02},{user},GET /rate/{i}=4",
                    i / 60,
                    i % 60
                ),
            )
        })
        .collect();
    let sent = lines.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut writer = EventWriter::open(&uri)?;
        for (user, line) in &sent {
            writer.write(*user, line)?;
        }
        writer.finish(Duration::from_secs(30))
    })
    .await
    .expect("writer task")
    .expect("every line acknowledged");
    assert_eq!(written, 300);

    let received = consume_raw(&brokers, &topic, lines.len());
    assert_eq!(received.len(), lines.len());
    for user in 0..7_u32 {
        let want: Vec<&str> = lines
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, l)| l.as_str())
            .collect();
        let got: Vec<String> = received
            .iter()
            .filter(|(key, _)| key == &user.to_string())
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .collect();
        assert_eq!(got, want, "user {user}: every line once, in order");
    }
}

#[test]
fn event_lines_to_an_absent_broker_are_an_error_not_a_silent_loss() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let uri: KafkaUri = format!("kafka://{closed}/events").parse().expect("uri");
    let mut writer = EventWriter::open(&uri).expect("writer");
    writer
        .write(1, "2026-12-03T21:00:00,1,GET /rate/5=4")
        .expect("queued");
    let error = writer
        .finish(Duration::from_secs(1))
        .expect_err("nothing was acknowledged");
    assert!(error.contains("still unacknowledged"), "{error}");
    assert!(error.contains("events"), "{error}");
}
