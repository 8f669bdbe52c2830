//! `movrek evaluate` against a real Kafka broker: it is killed (SIGKILL) mid-stream and
//! restarted, and its metrics end exactly where an uninterrupted in-process evaluation of
//! the same records ends: nothing lost, nothing counted twice.
//!
//! Needs the broker of `hack/test.sh` (`MOVREK_KAFKA_BOOTSTRAP`); without it the test
//! says so and passes, unless `MOVREK_REQUIRE_KAFKA` is set.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use movrek_inference::bus::KafkaUri;
use movrek_inference::bus::events::EventWriter;
use movrek_inference::bus::impression::Impression;
use movrek_inference::online::stream::{Source, Stream, StreamConfig};
use movrek_inference::online::{MovieKeys, Runtimes};
use movrek_inference::util::SplitMix64;

mod support;

use support::{bootstrap, create_topics, scrape};

const T0: i64 = 1_796_331_600;
const WINDOW: i64 = 600;
const LATENESS: i64 = 30;
const PARTITIONS: i32 = 2;

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// (source, user, payload) in time order; the last two records move both topics' newest
/// times far ahead, so the watermark passes every real window.
fn traffic(n: usize) -> Vec<(Source, u32, Vec<u8>)> {
    let mut rng = SplitMix64::new(42);
    let mut out = Vec::new();
    let mut now = T0;
    for i in 0..n {
        now += rng.below(4) as i64;
        let user = 1 + rng.below(40) as u32;
        let movie = 1 + rng.below(30) as u32;
        let record = match rng.below(5) {
            0 => (Source::Impressions, impression(i, now, user, &mut rng)),
            1 => (
                Source::Events,
                format!("{},{user},GET /rate/{movie}={}", iso(now), 1 + rng.below(5)).into_bytes(),
            ),
            2 if rng.below(25) == 0 => (Source::Events, b"not a log line".to_vec()),
            _ => (
                Source::Events,
                format!(
                    "{},{user},GET /data/m/{movie}/{}.mpg",
                    iso(now),
                    rng.below(110)
                )
                .into_bytes(),
            ),
        };
        out.push((record.0, user, record.1));
    }
    let end = now + 3 * WINDOW;
    out.push((Source::Impressions, 999, impression(n, end, 999, &mut rng)));
    out.push((
        Source::Events,
        998,
        format!("{},998,GET /rate/1=3", iso(end)).into_bytes(),
    ));
    out
}

fn impression(i: usize, time: i64, user: u32, rng: &mut SplitMix64) -> Vec<u8> {
    Impression {
        v: 1,
        id: format!("t-{i}"),
        time: format!("{}Z", iso(time)),
        user,
        movies: (0..20).map(|_| 1 + rng.below(30) as u32).collect(),
        release: "movies".to_owned(),
        track: if rng.below(3) == 0 {
            "canary"
        } else {
            "stable"
        }
        .to_owned(),
        model_version: "v1".to_owned(),
        artifact_sha256: "s".to_owned(),
    }
    .to_json()
}

fn produce(brokers: &str, topics: (&str, &str), records: &[(Source, u32, Vec<u8>)]) {
    let uri = |topic: &str| -> KafkaUri { format!("kafka://{brokers}/{topic}").parse().unwrap() };
    let mut impressions = EventWriter::open(&uri(topics.0)).expect("writer");
    let mut events = EventWriter::open(&uri(topics.1)).expect("writer");
    for (source, user, payload) in records {
        let text = std::str::from_utf8(payload).expect("utf-8");
        match source {
            Source::Impressions => impressions.write(*user, text),
            Source::Events => events.write(*user, text),
        }
        .expect("queued");
    }
    impressions
        .finish(Duration::from_secs(30))
        .expect("acknowledged");
    events
        .finish(Duration::from_secs(30))
        .expect("acknowledged");
}

struct Evaluator {
    child: Child,
    port: u16,
}

fn start(brokers: &str, topics: (&str, &str, &str), name: &str) -> Evaluator {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_movrek"))
        .args(["evaluate", "--brokers", brokers])
        .args(["--impressions-topic", topics.0, "--events-topic", topics.1])
        .args(["--state-topic", topics.2, "--name", name])
        .args(["--window-secs", &WINDOW.to_string()])
        .args(["--lateness-secs", &LATENESS.to_string()])
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--checkpoint-ms", "200"])
        .env("MOVREK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start movrek evaluate");
    Evaluator { child, port }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(
    port: u16,
    what: &str,
    check: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(metrics) = scrape(&format!("127.0.0.1:{port}")).filter(|m| check(m)) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            scrape(&format!("127.0.0.1:{port}"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same records through the in-process stream, in per-partition order.
fn reference(records: &[(Source, u32, Vec<u8>)]) -> BTreeMap<String, f64> {
    let mut stream = Stream::new(
        StreamConfig {
            window: WINDOW,
            lateness: LATENESS,
            log_impressions: false,
            max_ahead: StreamConfig::DEFAULT_MAX_AHEAD,
            max_queued: StreamConfig::DEFAULT_MAX_QUEUED,
        },
        Runtimes {
            known: std::collections::HashMap::new(),
            default: Some(100),
        },
        MovieKeys::default(),
    );
    let mut offsets = BTreeMap::new();
    for (source, _, payload) in records {
        let partition = (*source, 0);
        let offset = offsets.entry(partition).or_insert(0);
        stream.take(partition, *offset, payload);
        *offset += 1;
    }
    stream.advance();
    let mut out = BTreeMap::new();
    for row in stream.rows() {
        let key = format!("{}/{}", row.key.track, row.key.model_version);
        out.insert(format!("scored {key}"), row.stats.scored as f64);
        out.insert(format!("sum {key}"), (row.stats.score_sum * 1e3).round());
        out.insert(format!("impressions {key}"), row.stats.impressions as f64);
        out.insert(format!("hits {key}"), row.stats.hits as f64);
        out.insert(format!("unattributed {key}"), row.stats.unattributed as f64);
    }
    out.insert("records".to_owned(), stream.counts().records as f64);
    out.insert("malformed".to_owned(), stream.counts().malformed as f64);
    out
}

fn observed(metrics: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (series, value) in metrics {
        let track = if series.contains("track=\"canary\"") {
            "canary"
        } else {
            "stable"
        };
        let key = format!("{track}/v1");
        let name = series.split('{').next().unwrap_or_default();
        let label = match name {
            "movrek_online_score_count" => format!("scored {key}"),
            "movrek_online_score_sum" => {
                out.insert(format!("sum {key}"), (value * 1e3).round());
                continue;
            }
            "movrek_online_impressions_total" => format!("impressions {key}"),
            "movrek_online_hits_total" => format!("hits {key}"),
            "movrek_online_unattributed_total" => format!("unattributed {key}"),
            "movrek_online_records_total" => "records".to_owned(),
            "movrek_online_record_outcomes_total" if series.contains("\"malformed\"") => {
                "malformed".to_owned()
            }
            _ => continue,
        };
        out.insert(label, *value);
    }
    out
}

#[test]
fn a_killed_evaluator_resumes_without_losing_or_double_counting() {
    let Some(brokers) = bootstrap() else { return };
    let tag = format!("{}-{}", std::process::id(), T0);
    let (impressions, events, state) = (
        format!("imp-{tag}"),
        format!("ev-{tag}"),
        format!("state-{tag}"),
    );
    create_topics(&brokers, &[&impressions, &events], PARTITIONS);
    let topics = (impressions.as_str(), events.as_str(), state.as_str());
    let records = traffic(4_000);
    let (first_half, second_half) = records.split_at(2_500);

    produce(&brokers, (topics.0, topics.1), first_half);
    let mut evaluator = start(&brokers, topics, "eval-test");
    let before_kill = wait_for(evaluator.port, "a checkpoint with scores", |m| {
        m.get("movrek_online_checkpoints_total")
            .is_some_and(|&c| c >= 2.0)
            && m.keys().any(|k| k.starts_with("movrek_online_score_count"))
    });
    evaluator.child.kill().expect("SIGKILL");
    evaluator.child.wait().expect("reaped");

    produce(&brokers, (topics.0, topics.1), second_half);
    let evaluator = start(&brokers, topics, "eval-test");
    // Counters continue from the last checkpoint: never below what was exported before.
    let resumed = wait_for(evaluator.port, "the restarted evaluator", |_| true);
    for (series, value) in observed(&before_kill) {
        let now = observed(&resumed).get(&series).copied().unwrap_or(0.0);
        assert!(
            now >= value,
            "{series} went back from {value} to {now} after the restart"
        );
    }
    let want = reference(&records);
    // The two far-ahead records stay queued until later ones pass them, as in the reference.
    assert!((want["records"] - (records.len() - 2) as f64).abs() < 0.5);
    let metrics = wait_for(evaluator.port, "every record counted", |m| {
        m.get("movrek_online_records_total") == Some(&want["records"])
            && m.get("movrek_online_open_pairs") == Some(&0.0)
    });
    // A few more checkpoints: nothing may be counted again.
    std::thread::sleep(Duration::from_millis(800));
    let settled = scrape(&format!("127.0.0.1:{}", evaluator.port)).expect("metrics");
    assert_eq!(
        observed(&settled),
        observed(&metrics),
        "counts moved after settling"
    );

    assert_eq!(observed(&metrics), want);
    assert!(want["malformed"] > 0.0);
    assert!(want.keys().any(|k| k.starts_with("scored canary")));
}
