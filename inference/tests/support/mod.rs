//! What the Kafka integration tests (and the evaluator-lag bench) share: the test run's broker,
//! topics of their own, and a scrape of a `/metrics` page over plain loopback HTTP; and the
//! S3-compatible server of the store tests ([`s3`], shared with the end-to-end scenarios).

#![allow(
    dead_code,
    reason = "shared by several test binaries: not every one uses every helper"
)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

pub mod s3;
pub mod world;

/// The broker of the test run (`MOVREK_KAFKA_BOOTSTRAP`), or `None` (the test skips) unless
/// `MOVREK_REQUIRE_KAFKA` says one must be there.
pub fn bootstrap() -> Option<String> {
    match std::env::var("MOVREK_KAFKA_BOOTSTRAP") {
        Ok(address) if !address.trim().is_empty() => Some(address),
        _ => {
            assert!(
                std::env::var_os("MOVREK_REQUIRE_KAFKA").is_none(),
                "MOVREK_REQUIRE_KAFKA is set but MOVREK_KAFKA_BOOTSTRAP is not: start a broker \
                 with hack/kafka/up"
            );
            eprintln!("skipped: no Kafka broker (set MOVREK_KAFKA_BOOTSTRAP, see hack/kafka)");
            None
        }
    }
}

/// Creates `names` with `partitions` partitions each (the broker does not create on use).
pub fn create_topics(brokers: &str, names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in runtime
        .block_on(admin.create_topics(&topics, &options))
        .expect("create topics")
    {
        result.expect("topic created");
    }
}

/// A new topic named `<prefix>-<pid>-<nanos>`, so tests run in parallel on one broker.
pub fn fresh_topic(brokers: &str, prefix: &str, partitions: i32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let name = format!("{prefix}-{}-{nanos}", std::process::id());
    create_topics(brokers, &[&name], partitions);
    name
}

/// The samples of the `/metrics` page at `address` (`host:port`) as series → value, or `None`
/// while nothing answers there.
pub fn scrape(address: &str) -> Option<BTreeMap<String, f64>> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// One HTTP/1.1 GET with `Connection: close`; returns (status, X-Model-Version, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let version = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-model-version")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, version, body.to_owned())
}
