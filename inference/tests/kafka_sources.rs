//! The batch commands reading Kafka topics, against a real broker: `movrek ingest --from
//! kafka://…` writes what ingest of the same lines from a file writes, within a time bound
//! or a record count, ends on an idle topic, and fails clearly on a missing topic, an
//! unreachable broker and a bad address; `movrek online-eval --events/--impressions`
//! prints the table the same sessions give as a log file; `movrek evaluate` reading topics
//! to their end logs no error or warning (the end of a partition is not one).
//!
//! Needs the broker of `hack/test.sh` (`MOVREK_KAFKA_BOOTSTRAP`); without it the broker
//! tests say so and pass, unless `MOVREK_REQUIRE_KAFKA` is set.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use movrek_inference::bus::KafkaUri;
use movrek_inference::bus::events::EventWriter;
use movrek_inference::bus::impression::Impression;

mod support;

use support::{bootstrap, fresh_topic, scrape};

const MOVREK: &str = env!("CARGO_BIN_EXE_movrek");

fn uri(brokers: &str, topic: &str) -> String {
    format!("kafka://{brokers}/{topic}")
}

/// Writes `lines` keyed by their user field, acknowledged.
fn produce(brokers: &str, topic: &str, lines: &[String]) {
    let mut writer =
        EventWriter::open(&uri(brokers, topic).parse::<KafkaUri>().expect("uri")).expect("writer");
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

fn movrek(args: &[&str]) -> Output {
    Command::new(MOVREK)
        .args(args)
        .env("MOVREK_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run movrek")
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "movrek failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Users 1–5 watch, rate and ask for lists; duplicate watch minutes, a rating that
/// changes, a failed request and a malformed line, an hour of event time.
fn sessions(start_minute: u32) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..60_u32 {
        let user = 1 + i % 5;
        let minute = start_minute + i;
        let t = format!(
            "2026-12-01T{:02}:{:02}:{:02}",
            10 + minute / 60,
            minute % 60,
            i % 60
        );
        let list: Vec<String> = (0..20)
            .map(|k| (1 + (user * 7 + k) % 50).to_string())
            .collect();
        match i % 6 {
            0 => lines.push(format!(
                "{t},{user},recommendation request movrek:8082, status 200, result: {}, {} ms",
                list.join(", "),
                5 + i
            )),
            4 if i == 34 => lines.push(format!(
                "{t},{user},recommendation request movrek:8082, status 500, result: , 3 ms"
            )),
            1 | 2 | 4 => lines.push(format!(
                "{t},{user},GET /data/m/{}/{}.mpg",
                1 + i % 11,
                i % 4
            )),
            3 => lines.push(format!("{t},{user},GET /rate/{}={}", 1 + i % 11, 1 + i % 5)),
            _ if i == 41 => lines.push(format!("{t},{user},GET /nowhere")),
            _ => lines.push(format!("{t},{user},GET /rate/{}={}", 2 + i % 7, 1 + i % 5)),
        }
    }
    lines
}

fn write_log(dir: &Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write log");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Every file of an ingest output; `quality.json` without its malformed-line examples
/// (they name line numbers, which across partitions follow arrival order).
fn output(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("output dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut text = std::fs::read_to_string(&path).expect("read output");
            if name == "quality.json" {
                let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
                json.as_object_mut()
                    .expect("object")
                    .remove("malformed_examples");
                text = json.to_string();
            }
            (name, text)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files
}

fn ingest_file(dir: &Path, name: &str, lines: &[String]) -> Vec<(String, String)> {
    let log = write_log(dir, &format!("{name}.log"), lines);
    let out = dir.join(name);
    ok(&movrek(&[
        "ingest",
        "--log",
        &log,
        "--out",
        out.to_str().unwrap(),
    ]));
    output(&out)
}

fn ingest_kafka(dir: &Path, name: &str, source: &str, bounds: &[&str]) -> Vec<(String, String)> {
    let out = dir.join(name);
    let mut args = vec!["ingest", "--from", source, "--out", out.to_str().unwrap()];
    args.extend_from_slice(bounds);
    ok(&movrek(&args));
    output(&out)
}

fn lines_read(files: &[(String, String)]) -> u64 {
    let quality = &files
        .iter()
        .find(|(n, _)| n == "quality.json")
        .expect("quality")
        .1;
    let json: serde_json::Value = serde_json::from_str(quality).expect("json");
    json["lines"].as_u64().expect("lines")
}

#[test]
fn ingest_from_a_topic_writes_what_ingest_of_the_same_lines_from_a_file_writes() {
    let Some(brokers) = bootstrap() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = sessions(0);
    let topic = fresh_topic(&brokers, "ingest-events", 2);
    produce(&brokers, &topic, &lines);

    let from_file = ingest_file(dir.path(), "file", &lines);
    let from_topic = ingest_kafka(dir.path(), "topic", &uri(&brokers, &topic), &[]);
    assert_eq!(from_topic, from_file);
    assert_eq!(lines_read(&from_topic), 60);

    // Records produced after the read started are not waited for; an idle topic ends at
    // once: a second read of the same topic gives the same output.
    let again = ingest_kafka(dir.path(), "again", &uri(&brokers, &topic), &[]);
    assert_eq!(again, from_file);
}

#[test]
fn ingest_from_a_topic_stops_at_a_time_or_a_count() {
    let Some(brokers) = bootstrap() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = fresh_topic(&brokers, "ingest-bounds", 1);
    let (first, second) = (sessions(0), sessions(60));
    produce(&brokers, &topic, &first);
    std::thread::sleep(Duration::from_millis(1_100));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(1_100));
    produce(&brokers, &topic, &second);
    let source = uri(&brokers, &topic);

    let until = ingest_kafka(dir.path(), "until", &source, &["--until", &between]);
    assert_eq!(until, ingest_file(dir.path(), "first", &first));
    let since = ingest_kafka(dir.path(), "since", &source, &["--since", &between]);
    assert_eq!(since, ingest_file(dir.path(), "second", &second));

    let counted = ingest_kafka(dir.path(), "count", &source, &["--max-records", "25"]);
    assert_eq!(lines_read(&counted), 25);
    assert_eq!(counted, ingest_file(dir.path(), "first25", &first[..25]));
    let both = ingest_kafka(
        dir.path(),
        "both",
        &source,
        &["--since", &between, "--max-records", "7"],
    );
    assert_eq!(both, ingest_file(dir.path(), "second7", &second[..7]));
}

#[test]
fn ingest_from_a_missing_topic_or_an_empty_one() {
    let Some(brokers) = bootstrap() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("missing");
    let missing = movrek(&[
        "ingest",
        "--from",
        &uri(&brokers, "no-such-topic-here"),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("topic no-such-topic-here does not exist"),
        "{stderr}"
    );
    assert!(!out.join("ratings.dat").exists(), "nothing written");

    // An empty topic ends at once with an empty data set.
    let empty = fresh_topic(&brokers, "ingest-empty", 2);
    let started = Instant::now();
    let files = ingest_kafka(dir.path(), "empty", &uri(&brokers, &empty), &[]);
    assert_eq!(lines_read(&files), 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_unreachable_broker_or_a_bad_address_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    // Nothing listens on port 1 of the loopback address.
    let started = Instant::now();
    let unreachable = movrek(&[
        "ingest",
        "--from",
        "kafka://127.0.0.1:1/events",
        "--kafka-timeout-secs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(unreachable.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Kafka at 127.0.0.1:1 did not answer within 2s"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    for (address, expected) in [
        ("http://127.0.0.1:9092/events", "not a kafka://"),
        ("kafka://127.0.0.1:9092", "names no topic"),
    ] {
        let bad = movrek(&["ingest", "--from", address, "--out", out.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{address}: {stderr}");
    }
    // Kafka bounds and topics belong with a Kafka source, not with a file.
    for args in [
        &[
            "ingest",
            "--log",
            "x.log",
            "--since",
            "2026-12-04T09:00:00Z",
            "--out",
            "o",
        ][..],
        &[
            "ingest",
            "--log",
            "x.log",
            "--max-records",
            "5",
            "--out",
            "o",
        ],
        &[
            "online-eval",
            "--log",
            "x.log",
            "--impressions",
            "kafka://127.0.0.1:1/i",
        ],
        &["online-eval", "--log", "x.log", "--log-impressions"],
        &[
            "online-eval",
            "--log",
            "x.log",
            "--until",
            "2026-12-04T09:00:00Z",
        ],
    ] {
        let misused = movrek(args);
        let stderr = String::from_utf8_lossy(&misused.stderr);
        assert_eq!(misused.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot be used with"), "{args:?}: {stderr}");
    }
    let crossed = movrek(&[
        "online-eval",
        "--events",
        "kafka://127.0.0.1:1/events",
        "--since",
        "2026-12-04T10:00:00Z",
        "--until",
        "2026-12-04T09:00:00Z",
    ]);
    let stderr = String::from_utf8_lossy(&crossed.stderr);
    assert_eq!(crossed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--since must be before --until"),
        "{stderr}"
    );
}

/// The sessions' request lines as impression records of the same version (`movrek:8082`,
/// release and track unknown, as the log format names it).
fn as_impression(line: &str) -> Option<(u32, Vec<u8>)> {
    let mut fields = line.splitn(3, ',');
    let (time, user, rest) = (fields.next()?, fields.next()?, fields.next()?);
    let list = rest.strip_prefix("recommendation request movrek:8082, status 200, result: ")?;
    let (ids, _) = list.rsplit_once(',')?;
    let user: u32 = user.parse().ok()?;
    let impression = Impression {
        v: 1,
        id: format!("{user}-{time}"),
        time: format!("{time}Z"),
        user,
        movies: ids.split(',').map(|m| m.trim().parse().unwrap()).collect(),
        release: String::new(),
        track: String::new(),
        model_version: "movrek:8082".to_owned(),
        artifact_sha256: "s".to_owned(),
    };
    Some((user, impression.to_json()))
}

fn online_eval(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["online-eval", "--json"];
    all.extend_from_slice(args);
    let out = movrek(&all);
    let mut json: serde_json::Value =
        serde_json::from_slice(&ok(&out).stdout).expect("online-eval JSON");
    // Line numbers of malformed examples follow arrival order across partitions.
    let examples = json["malformed_examples"]
        .as_array()
        .expect("examples")
        .len();
    json["malformed_examples"] = serde_json::Value::from(examples);
    json
}

#[test]
fn online_eval_of_topics_gives_the_table_of_the_same_sessions_as_a_log() {
    let Some(brokers) = bootstrap() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = sessions(0);
    let log = write_log(dir.path(), "sessions.log", &lines);
    let from_log = online_eval(&["--log", &log]);
    assert!(
        from_log["versions"][0]["scored"].as_u64().unwrap() > 10,
        "{from_log}"
    );
    assert_eq!(from_log["counts"]["malformed"], 1);
    assert_eq!(from_log["counts"]["failed_requests"], 1);

    // 1. All lines on one events topic: the request lines are the impressions.
    let events = fresh_topic(&brokers, "online-events", 2);
    produce(&brokers, &events, &lines);
    let table = |args: &[&str]| {
        let mut all = vec!["online-eval"];
        all.extend_from_slice(args);
        String::from_utf8(ok(&movrek(&all)).stdout.clone()).expect("utf-8")
    };
    assert_eq!(
        table(&["--events", &uri(&brokers, &events)]),
        table(&["--log", &log])
    );
    assert_eq!(
        online_eval(&["--events", &uri(&brokers, &events)]),
        from_log
    );

    // 2. Lists as impression records on their own topic, actions on the events topic.
    let impressions = fresh_topic(&brokers, "online-impressions", 2);
    let actions = fresh_topic(&brokers, "online-actions", 2);
    let mut writer =
        EventWriter::open(&uri(&brokers, &impressions).parse().expect("uri")).expect("writer");
    let mut action_lines = Vec::new();
    let mut log_lines = Vec::new();
    for line in &lines {
        if line.contains("status 500") {
            continue; // a failed request is no impression record
        }
        if let Some((user, record)) = as_impression(line) {
            writer
                .write_keyed(user.to_string().as_bytes(), &record)
                .expect("queued");
        } else {
            action_lines.push(line.clone());
        }
        log_lines.push(line.clone());
    }
    writer
        .finish(Duration::from_secs(30))
        .expect("acknowledged");
    produce(&brokers, &actions, &action_lines);
    let log = write_log(dir.path(), "no-failed.log", &log_lines);
    assert_eq!(
        online_eval(&[
            "--impressions",
            &uri(&brokers, &impressions),
            "--events",
            &uri(&brokers, &actions),
        ]),
        online_eval(&["--log", &log])
    );
}

#[test]
fn the_evaluator_reading_to_the_end_of_its_partitions_logs_no_error() {
    let Some(brokers) = bootstrap() else { return };
    // An empty impressions topic: its partitions end at once, and must neither be logged as
    // errors nor hold the watermark back.
    let impressions = fresh_topic(&brokers, "eof-impressions", 2);
    let events = fresh_topic(&brokers, "eof-events", 2);
    let state = fresh_topic(&brokers, "eof-state", 1);
    produce(&brokers, &events, &sessions(0));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(MOVREK)
        .args(["evaluate", "--brokers", &brokers])
        .args([
            "--impressions-topic",
            &impressions,
            "--events-topic",
            &events,
        ])
        .args(["--state-topic", &state, "--name", &state])
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--checkpoint-ms", "200", "--lateness-secs", "0"])
        .args(["--exit-when-idle-secs", "4"])
        .env("MOVREK_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run movrek evaluate");
    // Every record but the last second's is released while the evaluator runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut counted = None;
    while Instant::now() < deadline {
        counted = scrape(&format!("127.0.0.1:{port}"))
            .and_then(|m| m.get("movrek_online_records_total").copied())
            .filter(|&n| n > 0.0);
        if counted.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("evaluator exits when idle");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        counted.is_some(),
        "no record counted: empty partitions held the watermark: {stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stopped after a last checkpoint"),
        "{stderr}"
    );
    for line in stderr.lines() {
        assert!(
            !line.contains("\"level\":\"ERROR\"") && !line.contains("\"level\":\"WARN\""),
            "{line}"
        );
        assert!(!line.contains("Partition EOF"), "{line}");
    }
}
