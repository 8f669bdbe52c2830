//! `movrek simulate` against a real `movrek serve` on 127.0.0.1: the log it writes is read
//! unchanged by `movrek online-eval` and `movrek ingest`, a fixed seed and start give the
//! same log (latencies aside) whatever the concurrency, the summary matches the evaluator,
//! and bad targets or unbounded runs are refused. Every run is bounded by `--count`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MOVREK: &str = env!("CARGO_BIN_EXE_movrek");

fn movrek(args: &[&str]) -> Output {
    Command::new(MOVREK)
        .args(args)
        .output()
        .expect("run movrek")
}

fn ok(args: &[&str]) -> Output {
    let out = movrek(args);
    assert!(
        out.status.success(),
        "movrek {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// `movrek generate` of `users` × `movies` × `ratings` into `out`.
fn generate(out: &Path, users: &str, movies: &str, ratings: &str) {
    ok(&[
        "generate",
        "--users",
        users,
        "--movies",
        movies,
        "--ratings",
        ratings,
        "--out",
        path(out),
    ]);
}

/// A `movrek serve` on 127.0.0.1, killed by pid on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(model: &Path) -> Server {
        let mut child = Command::new(MOVREK)
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--model",
                path(model),
            ])
            .env_remove("MOVREK_MODEL_URI")
            .env_remove("MOVREK_MODEL_SHA256")
            .env_remove("MOVREK_MODEL_VERSION")
            .env_remove("MOVREK_KAFKA_BROKERS")
            .env("MOVREK_LOG", "info,movrek::request=off")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn movrek serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("a 'listening' log line within 30 s");
            let line = rx.recv_timeout(left).expect("server log");
            if line.contains("listening") {
                break line;
            }
        };
        let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        server.addr = entry["addr"].as_str().unwrap().parse().unwrap();
        while status(server.addr, "/readyz") != 200 {
            assert!(Instant::now() < deadline, "server not ready within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Runs `movrek simulate` with a fixed start; returns the log and the summary JSON.
fn simulate(
    server: &Server,
    data: &Path,
    out: &Path,
    name: &str,
    seed: &str,
    extra: &[&str],
) -> (String, serde_json::Value) {
    let log = out.join(format!("{name}.log"));
    let summary = out.join(format!("{name}.json"));
    let sink = format!("file:{}", path(&log));
    let url = server.url();
    let mut args = vec![
        "simulate",
        "--target",
        &url,
        "--data",
        path(data),
        "--count",
        "300",
        "--rate",
        "300",
        "--seed",
        seed,
        "--start",
        "2024-05-01T12:00:00",
        "--malformed-share",
        "0.05",
        "--minor-share",
        "0.3",
        "--sink",
        &sink,
        "--summary-json",
        path(&summary),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&args);
    let log = std::fs::read_to_string(&log).expect("log written");
    let summary = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (log, summary)
}

/// The log without the measured latency of recommendation lines.
fn without_latency(log: &str) -> String {
    log.lines()
        .map(|l| match l.rfind(", ") {
            Some(at) if l.ends_with(" ms") => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn simulate_against_a_real_server_feeds_online_eval_and_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, "300", "200", "8000");
    assert!(data.join("taste.csv").is_file() && data.join("runtimes.csv").is_file());
    let model = dir.path().join("m.movrek");
    ok(&[
        "train",
        "--data",
        path(&data),
        "--out",
        path(&model),
        "--version",
        "v1",
    ]);
    let server = Server::start(&model);

    let (first, summary) = simulate(
        &server,
        &data,
        dir.path(),
        "a",
        "11",
        &["--concurrency", "1"],
    );
    let (second, _) = simulate(
        &server,
        &data,
        dir.path(),
        "b",
        "11",
        &["--concurrency", "6"],
    );
    assert_eq!(
        without_latency(&first),
        without_latency(&second),
        "same seed, same start, same answers: same log"
    );
    let (other_seed, _) = simulate(&server, &data, dir.path(), "c", "12", &[]);
    assert_ne!(without_latency(&first), without_latency(&other_seed));

    let tally = &summary["tally"];
    assert_eq!(tally["requests"], 300);
    assert_eq!(tally["transport_errors"], 0);
    assert!(tally["malformed"].as_u64().unwrap() > 0);
    assert_eq!(tally["malformed_accepted"], 0, "malformed ids are refused");
    assert!(tally["minor_sessions"].as_u64().unwrap() > 30);
    assert_eq!(tally["adult_shown_to_minors"], 0);
    assert!(tally["unknown_users"].as_u64().unwrap() > 0);
    assert_eq!(tally["versions"]["v1"], 300);
    let watches =
        tally["list_watches"].as_u64().unwrap() + tally["organic_watches"].as_u64().unwrap();
    assert!(watches > 50, "{watches} watches");
    let request_lines = first
        .lines()
        .filter(|l| l.contains("recommendation request"))
        .count() as u64;
    assert_eq!(request_lines, 300 - tally["malformed"].as_u64().unwrap());

    log_reads_back(
        dir.path(),
        &data,
        server.addr.port(),
        &summary,
        request_lines,
    );
    held_out_taste(&server, &data, dir.path());
}

/// `online-eval` and `ingest` read the log of run "a" unchanged and agree with its summary.
fn log_reads_back(
    dir: &Path,
    data: &Path,
    port: u16,
    summary: &serde_json::Value,
    request_lines: u64,
) {
    let tally = &summary["tally"];
    let runtimes = data.join("runtimes.csv");
    let log_path = dir.join("a.log");
    let out = ok(&[
        "online-eval",
        "--log",
        path(&log_path),
        "--movies",
        path(&runtimes),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["malformed"], 0);
    assert_eq!(report["counts"]["impressions"], request_lines);
    let row = &report["versions"][0];
    assert_eq!(row["model_version"], format!("v1:{port}"));
    let scored = row["scored"].as_u64().expect("scored pairs");
    assert!(scored > 50, "{scored} scored pairs");
    assert_eq!(summary["online"][0]["scored"], scored);
    let mean = row["mean_score"].as_f64().unwrap();
    assert!((mean - summary["online"][0]["mean_score"].as_f64().unwrap()).abs() < 1e-9);
    assert!(
        mean > 1.0,
        "the served model's lists get watched: mean {mean}"
    );

    // ingest reads it too: no malformed line, every watch and rating kept.
    let ingested = dir.join("ingested");
    ok(&["ingest", "--log", path(&log_path), "--out", path(&ingested)]);
    let quality: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ingested.join("quality.json")).unwrap())
            .unwrap();
    assert_eq!(quality["malformed"], 0);
    assert_eq!(quality["recommendation_lines"], request_lines);
    assert_eq!(quality["rate_lines"], tally["ratings"]);
}

/// Without taste.csv and runtimes.csv (a real set): the held-out ratings of the split are
/// the taste, and the summary says every movie is taken as 100 min.
fn held_out_taste(server: &Server, data: &Path, dir: &Path) {
    let real = dir.join("real");
    std::fs::create_dir_all(&real).unwrap();
    for file in ["ratings.dat", "users.dat", "movies.dat"] {
        std::fs::copy(data.join(file), real.join(file)).unwrap();
    }
    let (log, summary) = simulate(server, &real, dir, "real", "11", &[]);
    let source = summary["source"].as_str().unwrap();
    assert!(
        source.contains("held-out ratings of the split (seed 42"),
        "{source}"
    );
    assert!(source.contains("no runtimes.csv"), "{source}");
    assert_eq!(summary["tally"]["requests"], 300);
    assert!(
        summary["online"][0]["scored"].as_u64().unwrap() > 0,
        "{log}"
    );
}

#[test]
fn simulate_refuses_other_hosts_unbounded_runs_and_a_dead_target() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--target", "http://10.1.2.3:8082", "--count", "1"],
            "127.0.0.0/8",
        ),
        (
            &["--target", "http://example.com", "--count", "1"],
            "127.0.0.0/8",
        ),
        (&["--target", "http://127.0.0.1:1"], "unbounded"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["simulate", "--data", path(dir.path())];
        all.extend_from_slice(args);
        let out = movrek(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }

    // Nothing listens: every request is a counted transport error, and the run fails.
    let data = dir.path().join("data");
    generate(&data, "20", "30", "200");
    let out = movrek(&[
        "simulate",
        "--target",
        "http://127.0.0.1:1",
        "--data",
        path(&data),
        "--count",
        "3",
        "--rate",
        "100",
        "--malformed-share",
        "0",
        "--sink",
        "stdout",
        "--timeout",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("transport errors 3"), "{stderr}");
    assert!(stderr.contains("no request got an answer"), "{stderr}");
    assert!(out.stdout.is_empty(), "no answer, no line");
}

/// `--host` sends the virtual host an ingress or Gateway listener routes by: a loopback
/// listener records the `Host` header of the one request (and answers an empty list).
#[test]
fn simulate_sends_the_virtual_host_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, "20", "30", "200");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("one connection");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut host = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(value) = line
                .strip_prefix("host: ")
                .or_else(|| line.strip_prefix("Host: "))
            {
                host = Some(value.trim().to_owned());
            }
        }
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        tx.send(host).unwrap();
    });
    let target = format!("http://{addr}");
    let bad = movrek(&[
        "simulate",
        "--target",
        &target,
        "--host",
        "a b",
        "--data",
        path(&data),
        "--count",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--host \"a b\" is not a host name"));
    let out = movrek(&[
        "simulate",
        "--target",
        &target,
        "--host",
        "movies.example",
        "--data",
        path(&data),
        "--count",
        "1",
        "--rate",
        "10",
        "--unknown-share",
        "0",
        "--malformed-share",
        "0",
        "--burst-share",
        "0",
        "--sink",
        "stdout",
        "--quiet",
        "--timeout",
        "5",
    ]);
    let host = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the request arrived");
    server.join().unwrap();
    assert_eq!(host.as_deref(), Some("movies.example"), "{out:?}");
}

/// `--live`: log times are the wall clock and every line is written when its time comes, so
/// the log is in time order (as a live service's is) and no line is stamped after it was
/// written; with one-second minutes, the run outlasts its sessions by the watches.
#[test]
fn live_mode_writes_each_line_when_its_time_comes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, "50", "60", "1500");
    // Three-minute films: with one-second minutes every watch ends within seconds.
    let runtimes: String = std::iter::once("movieId,runtime\n".to_owned())
        .chain((1..=60).map(|m| format!("{m},3\n")))
        .collect();
    std::fs::write(data.join("runtimes.csv"), runtimes).unwrap();
    let model = dir.path().join("m.movrek");
    ok(&[
        "train",
        "--data",
        path(&data),
        "--out",
        path(&model),
        "--version",
        "v1",
    ]);
    let server = Server::start(&model);
    let log = dir.path().join("live.log");
    let sink = format!("file:{}", path(&log));
    let url = server.url();
    let before = chrono::Utc::now().timestamp();
    ok(&[
        "simulate",
        "--live",
        "--target",
        &url,
        "--data",
        path(&data),
        "--count",
        "20",
        "--rate",
        "20",
        "--minute-seconds",
        "1",
        "--last-minute-only",
        "--unknown-share",
        "0",
        "--malformed-share",
        "0",
        "--burst-share",
        "0",
        "--sink",
        &sink,
        "--quiet",
    ]);
    let after = chrono::Utc::now().timestamp();
    let refused = movrek(&[
        "simulate",
        "--live",
        "--start",
        "2024-05-01T00:00:00",
        "--data",
        path(&data),
        "--count",
        "1",
    ]);
    assert!(!refused.status.success(), "--live with --start is refused");
    let text = std::fs::read_to_string(&log).unwrap();
    let times: Vec<i64> = text
        .lines()
        .map(|l| {
            let stamp = l.split(',').next().unwrap();
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S")
                .unwrap_or_else(|e| panic!("{stamp}: {e}"))
                .and_utc()
                .timestamp()
        })
        .collect();
    assert!(times.len() >= 20, "{text}");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "lines in time order:\n{text}"
    );
    assert!(
        times[0] >= before && *times.last().unwrap() <= after,
        "wall-clock times"
    );
    // Twenty sessions take one second; the last watches end minutes (seconds here) later.
    assert!(
        after - before >= 5,
        "the run waited for its watches ({}s)",
        after - before
    );
}
