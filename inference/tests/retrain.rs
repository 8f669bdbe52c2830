//! `movrek retrain` end to end on a real S3-compatible server (moto, `hack/s3`) and a real
//! Kafka broker: v1 is trained and published as a user would (`movrek train`, `movrek
//! publish`); events go to a topic; `movrek retrain` then
//! - publishes a new version with its data set and fairness report, prints `spec.model`
//!   with its provenance (`movrek report` reads the fairness report back from the store),
//!   and a rerun finds it already published, and a run from the new version finds nothing
//!   to do;
//! - refuses corrupted events (the data gate: malformed share);
//! - refuses a candidate made worse on purpose (the ranking gate): training parameters that
//!   rank by *negative* popularity with a one-neighbour user-kNN, passed with `--params`.
//!
//! Each run's notification is received by a loopback HTTP server and its body asserted.
//! The broker is `MOVREK_KAFKA_BOOTSTRAP` (the tests skip without it unless
//! `MOVREK_REQUIRE_KAFKA` is set); the S3 server is `MOVREK_S3_ENDPOINT` with the
//! `MOVREK_S3_*` credentials beside it, or one these tests start with `hack/s3/up`.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use movrek_inference::bus::KafkaUri;
use movrek_inference::bus::events::EventWriter;

mod support;

use support::s3::S3;
use support::world::world;

const MOVREK: &str = env!("CARGO_BIN_EXE_movrek");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("retrain")
        .join(format!("{name}-{}-{}", std::process::id(), nanos()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The S3 server: the test run's, or one started here (stopped on drop).
fn s3() -> S3 {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("retrain")
        .join(format!("s3-{}-{}", std::process::id(), nanos()));
    S3::start(&repo_root(), &dir)
}

/// A loopback webhook that keeps every body it receives (for at most two minutes).
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (kept, stopped) = (bodies.clone(), stop.clone());
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            let body = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some(body[..length].to_owned());
                    }
                }
            };
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            if let Some(body) = body {
                let value = serde_json::from_str(&body).expect("notification is JSON");
                kept.lock().unwrap().push(value);
            }
        }
    });
    Receiver { url, bodies, stop }
}

impl Receiver {
    fn last(&self) -> serde_json::Value {
        self.bodies
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a notification was received")
    }
}

fn produce(brokers: &str, topic: &str, lines: &[String]) {
    let uri: KafkaUri = format!("kafka://{brokers}/{topic}").parse().unwrap();
    let mut writer = EventWriter::open(&uri).expect("writer");
    for line in lines {
        let user = line
            .split(',')
            .nth(1)
            .and_then(|u| u.parse().ok())
            .unwrap_or(0);
        writer.write(user, line).expect("queued");
    }
    writer
        .finish(Duration::from_secs(30))
        .expect("acknowledged");
}

fn movrek(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(MOVREK)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("MOVREK_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run movrek")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// v1 trained on the base data and published to a fresh prefix; returns the prefix.
fn publish_v1(s3: &S3, dir: &Path, base: &Path) -> String {
    let model = dir.join("v1.movrek");
    let out = movrek(
        &[
            "train",
            "--data",
            base.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--version",
            "v1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let prefix = s3.fresh_prefix("retrain");
    let out = movrek(
        &[
            "publish",
            "--model",
            model.to_str().unwrap(),
            "--to",
            &prefix,
            "--release",
            "movies",
        ],
        &s3.env,
    );
    assert!(out.status.success(), "{}", text(&out));
    prefix
}

/// Runs `movrek retrain` from `stable` with `extra` flags.
fn retrain(
    s3: &S3,
    prefix: &str,
    stable: &str,
    events: &str,
    hook: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "retrain",
        "--store",
        prefix,
        "--release",
        "movies",
        "--stable-version",
        stable,
        "--events",
        events,
        "--webhook-url",
        hook,
    ];
    args.extend_from_slice(extra);
    movrek(&args, &s3.env)
}

#[test]
fn retrain_publishes_a_version_once_and_then_has_nothing_to_do() {
    let Some(brokers) = support::bootstrap() else {
        return;
    };
    let s3 = s3();
    let hook = receiver();
    let dir = scratch("happy");
    let (base, lines) = world(&dir);
    let prefix = publish_v1(&s3, &dir, &base);
    let topic = support::fresh_topic(&brokers, "retrain-events", 2);
    produce(&brokers, &topic, &lines);
    let events = format!("kafka://{brokers}/{topic}");
    let data = ["--data", base.to_str().unwrap()];

    let out = retrain(&s3, &prefix, "v1", &events, &hook.url, &data);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let body = hook.last();
    assert_eq!(body["movrek"]["outcome"], "published", "{body}");
    assert_eq!(body["movrek"]["parent"], "v1");
    let version = body["movrek"]["version"].as_str().unwrap().to_owned();
    assert!(version.starts_with('r'), "{version}");
    let gates = &body["movrek"]["figures"]["gates"];
    assert!(gates["candidate_rmse"].as_f64().unwrap() < 1.0, "{gates}");
    assert!(gates["stable_ndcg"].as_f64().unwrap() > 0.0, "{gates}");
    let events_seen = &body["movrek"]["figures"]["events"];
    assert_eq!(events_seen["lines"].as_u64(), Some(lines.len() as u64));
    assert_eq!(
        events_seen["new_ratings"].as_u64(),
        Some(lines.len() as u64)
    );
    assert!(body["text"].as_str().unwrap().contains(&version));

    // What was published: the record names its parent, the offsets and the data digest.
    let record = read_object(&s3, &prefix, &format!("movies/{version}/model.json"));
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    let offline = &record["offline"];
    assert_eq!(offline["kind"], "movrek-retrain/v1");
    assert_eq!(offline["parent"], "v1");
    let offsets = offline["events"]["offsets"].as_object().unwrap();
    let consumed: i64 = offsets.values().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(consumed, lines.len() as i64, "{offsets:?}");
    let dataset = read_object(&s3, &prefix, &format!("movies/{version}/dataset.json"));
    assert_eq!(
        offline["data_sha256"].as_str().unwrap(),
        movrek_inference::util::sha256_hex(&dataset)
    );
    let fairness = read_object(&s3, &prefix, &format!("movies/{version}/fairness.json"));
    let fairness: serde_json::Value = serde_json::from_slice(&fairness).unwrap();
    assert!(fairness["candidate"]["groups"].as_array().unwrap().len() > 3);

    // The spec.model it prints (and `--handoff direct` applies) carries the provenance.
    let provenance = provenance_of(&out);
    assert_eq!(provenance["parentVersion"], "v1");
    assert_eq!(provenance["dataDigest"], offline["data_sha256"]);
    let range = &provenance["eventRange"];
    assert_eq!(range["source"], events.as_str());
    assert_eq!(range["firstEvent"], "2026-12-01T00:00:00Z");
    assert_eq!(range["lastEvent"], "2026-12-01T23:59:00Z");
    let read: i64 = range["offsets"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|p| {
            let (_, span) = p.split_once(':').unwrap();
            let (from, to) = span.split_once('-').unwrap();
            to.parse::<i64>().unwrap() - from.parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(read, lines.len() as i64, "{range}");
    assert_eq!(provenance["fairnessGaps"].as_array().unwrap().len(), 6);

    // `movrek report` reads the published fairness report from the store.
    let fairness_uri = format!("{prefix}/movies/{version}/fairness.json");
    let svg = dir.join("svg");
    let out = movrek(
        &["report", &fairness_uri, "--svg", svg.to_str().unwrap()],
        &s3.env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let rmse = gates["candidate_rmse"].as_f64().unwrap();
    assert!(
        table.starts_with(&format!("candidate {version}: RMSE {rmse:.4}")),
        "{table}"
    );
    for dimension in ["gender", "age", "occupation"] {
        let chart = std::fs::read_to_string(svg.join(format!("fairness-{dimension}.svg")))
            .expect("a chart per dimension");
        assert!(chart.starts_with("<svg"), "{chart}");
    }

    // The same run again: same data, same version, already there; nothing overwritten.
    let out = retrain(&s3, &prefix, "v1", &events, &hook.url, &data);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(hook.last()["movrek"]["outcome"], "already-published");
    assert_eq!(hook.last()["movrek"]["version"], version.as_str());

    // From the new version no event is new: nothing to do, and no --data needed.
    let out = retrain(&s3, &prefix, &version, &events, &hook.url, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(hook.last()["movrek"]["outcome"], "nothing-to-do");
    assert_eq!(hook.bodies.lock().unwrap().len(), 3);
}

#[test]
fn retrain_refuses_corrupted_events() {
    let Some(brokers) = support::bootstrap() else {
        return;
    };
    let s3 = s3();
    let hook = receiver();
    let dir = scratch("corrupt");
    let (base, mut lines) = world(&dir);
    let prefix = publish_v1(&s3, &dir, &base);
    // One line in ten corrupted: garbage before the time, or cut in half.
    for (i, line) in lines.iter_mut().enumerate().filter(|(i, _)| i % 10 == 0) {
        *line = if i % 20 == 0 {
            format!("garbage {line}")
        } else {
            line[..line.len() / 2].to_owned()
        };
    }
    let topic = support::fresh_topic(&brokers, "retrain-corrupt", 1);
    produce(&brokers, &topic, &lines);
    let events = format!("kafka://{brokers}/{topic}");
    let out = retrain(
        &s3,
        &prefix,
        "v1",
        &events,
        &hook.url,
        &["--data", base.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let body = hook.last();
    assert_eq!(body["movrek"]["outcome"], "data-refused", "{body}");
    let figures = &body["movrek"]["figures"]["events"];
    assert_eq!(
        figures["malformed"].as_u64(),
        Some(lines.len().div_ceil(10) as u64)
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("malformed lines 10.0"),
        "{body}"
    );
    assert!(
        !object_exists(&s3, &prefix, "movies"),
        "nothing but v1 is published"
    );
}

#[test]
fn retrain_refuses_a_candidate_that_ranks_worse_than_stable() {
    let Some(brokers) = support::bootstrap() else {
        return;
    };
    let s3 = s3();
    let hook = receiver();
    let dir = scratch("worse");
    let (base, lines) = world(&dir);
    let prefix = publish_v1(&s3, &dir, &base);
    let topic = support::fresh_topic(&brokers, "retrain-worse", 1);
    produce(&brokers, &topic, &lines);
    // Made worse on purpose: every user takes the cold-start path (demographic popularity
    // instead of a personal ranking) because the personal path needs more ratings than
    // anyone has. Ratings are predicted as before, so only the ranking gate can catch it.
    let params = dir.join("worse.json");
    std::fs::write(&params, r#"{"cold_start_min_ratings": 1000000}"#).unwrap();
    let events = format!("kafka://{brokers}/{topic}");
    let out = retrain(
        &s3,
        &prefix,
        "v1",
        &events,
        &hook.url,
        &[
            "--data",
            base.to_str().unwrap(),
            "--params",
            params.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let body = hook.last();
    assert_eq!(body["movrek"]["outcome"], "model-refused", "{body}");
    let text_line = body["text"].as_str().unwrap();
    assert!(
        text_line.contains("NDCG") && text_line.contains("worse than stable"),
        "{text_line}"
    );
    let gates = &body["movrek"]["figures"]["gates"];
    assert!(
        gates["candidate_ndcg"].as_f64().unwrap() + 0.02 < gates["stable_ndcg"].as_f64().unwrap(),
        "{gates}"
    );
}

/// The `provenance:` line `movrek retrain` prints with `spec.model`.
fn provenance_of(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("provenance: "))
        .unwrap_or_else(|| panic!("no provenance line in\n{}", text(out)));
    serde_json::from_str(line).expect("provenance is JSON")
}

/// Runs a future of the S3 helper to completion (these tests are synchronous).
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn read_object(s3: &S3, prefix: &str, rest: &str) -> Vec<u8> {
    block_on(s3.read(&format!("{prefix}/{rest}")))
}

/// True when any version other than v1 is under `<prefix>/<release>`.
fn object_exists(s3: &S3, prefix: &str, release: &str) -> bool {
    block_on(s3.children(&format!("{prefix}/{release}")))
        .iter()
        .any(|version| version != "v1")
}
