//! End-to-end tests of the `movrek` binary: generate → train → eval → serve → HTTP request →
//! SIGTERM → exit 0, model download over HTTP, and refusals (digest and version mismatch,
//! bad flags) with clear messages and non-zero exit codes.
//!
//! Every server is started on 127.0.0.1 with `--port 0`; the port is read from its
//! "listening" log line, and a guard kills the process by pid if a test fails midway.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod support;

use support::http_get;

const MOVREK: &str = env!("CARGO_BIN_EXE_movrek");

fn movrek(args: &[&str]) -> Output {
    Command::new(MOVREK)
        .args(args)
        .env_remove("MOVREK_MODEL_URI")
        .env_remove("MOVREK_MODEL_SHA256")
        .env_remove("MOVREK_MODEL_VERSION")
        .output()
        .expect("run movrek")
}

fn ok(args: &[&str]) -> Output {
    let out = movrek(args);
    assert!(
        out.status.success(),
        "movrek {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Generates a small data set and trains version `v1` on it; returns (dir, model, sha256).
fn trained(dir: &Path) -> (PathBuf, String) {
    let data = dir.join("data");
    ok(&[
        "generate",
        "--users",
        "150",
        "--movies",
        "200",
        "--ratings",
        "4000",
        "--seed",
        "3",
        "--out",
        path(&data),
    ]);
    let model = dir.join("v1.movrek");
    let out = ok(&[
        "train",
        "--data",
        path(&data),
        "--out",
        path(&model),
        "--version",
        "v1",
    ]);
    let sha = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(sha.len(), 64, "train prints the artifact sha256: {sha:?}");
    (model, sha)
}

/// A running `movrek serve`, killed by pid on drop unless it already exited.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `movrek serve --bind 127.0.0.1 --port 0 <args>` and waits for its address.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(MOVREK);
        cmd.args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("MOVREK_MODEL_URI")
            .env_remove("MOVREK_MODEL_SHA256")
            .env_remove("MOVREK_MODEL_VERSION")
            // A short drain keeps SIGTERM tests quick; the drain itself is tested in
            // server_hardening.rs and below.
            .env("MOVREK_DRAIN_SECS", "0.2")
            .env("MOVREK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn movrek serve");
        let stderr = child.stderr.take().unwrap();
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
            log: rx,
        };
        let line = server
            .wait_for_log("listening", Duration::from_secs(30))
            .expect("a 'listening' log line");
        let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        server.addr = entry["addr"].as_str().unwrap().parse().unwrap();
        server
    }

    fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        http_get(self.addr, path)
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.get("/readyz").0 == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "not ready within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.wait_exit(Duration::from_secs(20))
            .expect("exit after SIGTERM")
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line up to the end of stderr (call it once the process has exited): waits
    /// for the reader thread to forward what is left, 5 s at most.
    fn drain_log(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
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

#[test]
fn generate_train_eval_serve_request_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sha) = trained(dir.path());
    assert!(
        dir.path().join("v1.movrek.quality.json").exists(),
        "train writes the quality report next to the artifact"
    );

    let plots = dir.path().join("plots");
    let out = ok(&[
        "eval",
        "--data",
        path(&dir.path().join("data")),
        "--json",
        "--plots",
        path(&plots),
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("eval --json prints one JSON object");
    assert!(report.is_object());
    assert!(plots.join("quality.json").exists());

    let out = ok(&["recommend", "--model", path(&model), "--user", "1"]);
    let cli_list = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(cli_list.split(',').count(), 20, "{cli_list}");

    let mut server = Server::start(
        &["--model", &format!("file://{}", path(&model))],
        &[
            ("MOVREK_MODEL_SHA256", &sha),
            ("MOVREK_MODEL_VERSION", "v1"),
            ("MOVREK_RELEASE", "movies"),
            ("MOVREK_TRACK", "canary"),
        ],
    );
    assert_eq!(server.get("/healthz").0, 200);
    server.wait_ready(Duration::from_secs(30));
    let (status, version, body) = server.get("/recommend/1");
    assert_eq!((status, version.as_str()), (200, "v1"));
    assert_eq!(body, cli_list, "server and CLI give the same list");
    let (status, version, _) = server.get("/recommend/-1");
    assert_eq!((status, version.as_str()), (400, "v1"));

    let (_, _, metrics) = server.get("/metrics");
    assert!(metrics.contains(
        "movrek_requests_total{release=\"movies\",track=\"canary\",model_version=\"v1\",route=\"/recommend\",status=\"200\"} 1"
    ), "{metrics}");
    let (_, _, version_json) = server.get("/version");
    let version_json: serde_json::Value = serde_json::from_str(&version_json).unwrap();
    assert_eq!(version_json["artifact_sha256"], sha.as_str());

    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let log = server.drain_log();
    assert!(
        log.iter()
            .any(|l| l.contains("\"user\":1") && l.contains("\"latency_us\"")),
        "a per-request JSON log line: {log:#?}"
    );
}

#[test]
fn serve_refuses_an_artifact_with_another_digest_or_version() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sha) = trained(dir.path());
    let wrong = "0".repeat(64);

    let mut server = Server::start(
        &["--model", path(&model)],
        &[("MOVREK_MODEL_SHA256", &wrong)],
    );
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("exits by itself");
    assert_eq!(status.code(), Some(1));
    let log = server.drain_log().join("\n");
    assert!(
        log.contains("sha256 mismatch") && log.contains(&sha),
        "{log}"
    );

    let mut server = Server::start(&["--model", path(&model), "--model-version", "v2"], &[]);
    let status = server.wait_exit(Duration::from_secs(30)).expect("exits");
    assert_eq!(status.code(), Some(1));
    assert!(server.drain_log().join("\n").contains("version mismatch"));

    let out = movrek(&[
        "recommend",
        "--model",
        path(&model),
        "--user",
        "1",
        "--sha256",
        &wrong,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mismatch"));
}

#[test]
fn serve_downloads_the_model_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sha) = trained(dir.path());
    let bytes = std::fs::read(&model).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Answers every connection with the artifact (the server asks once).
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut request = [0_u8; 1024];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(&bytes);
        }
    });
    let mut server = Server::start(
        &["--model", &format!("http://{origin}/models/v1.movrek")],
        &[("MOVREK_MODEL_SHA256", &sha.to_uppercase())],
    );
    server.wait_ready(Duration::from_secs(30));
    assert_eq!(server.get("/recommend/7").0, 200);
    assert!(server.terminate().success());

    // A size limit below the artifact is refused.
    let mut server = Server::start(
        &[
            "--model",
            &format!("http://{origin}/models/v1.movrek"),
            "--model-max-bytes",
            "100",
        ],
        &[],
    );
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(30))
            .and_then(|s| s.code()),
        Some(1)
    );
    assert!(server.drain_log().join("\n").contains("byte limit"));

    // An origin that accepts but never answers hits the download deadline.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || silent.accept().map(|(stream, _)| stream));
    let started = Instant::now();
    let mut server = Server::start(
        &[
            "--model",
            &format!("http://{silent_addr}/v1.movrek"),
            "--model-timeout-secs",
            "1",
        ],
        &[],
    );
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(30))
            .and_then(|s| s.code()),
        Some(1)
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        server
            .drain_log()
            .join("\n")
            .contains("cannot download model")
    );
    drop(held.join());
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["serve", "--track", "blue"][..],
        &["serve", "--fault-error-rate", "1.5"],
        &["serve", "--max-inflight", "0"],
        &["recommend", "--model", "x", "--user", "abc"],
        &["eval"],
    ] {
        let out = movrek(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let out = movrek(&["serve", "--model", "ftp://bucket/v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported scheme"));
    let out = movrek(&[
        "train",
        "--data",
        "/nonexistent/dir",
        "--out",
        "/tmp/x",
        "--version",
        "v",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = trained(dir.path());
    // The 1.5 s request started before SIGTERM finishes inside the 2 s drain period.
    let mut server = Server::start(
        &["--model", path(&model)],
        &[
            ("MOVREK_FAULT_DELAY_MS", "1500"),
            ("MOVREK_DRAIN_SECS", "2"),
        ],
    );
    server.wait_ready(Duration::from_secs(30));
    let addr = server.addr;
    let started = Instant::now();
    let in_flight = std::thread::spawn(move || http_get(addr, "/recommend/3"));
    std::thread::sleep(Duration::from_millis(400));
    let status = server.terminate();
    let (code, _, body) = in_flight.join().expect("request thread");
    assert_eq!(code, 200, "the in-flight request was answered: {body}");
    assert_eq!(body.split(',').count(), 20);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(status.success(), "{status}");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "no longer listening"
    );
}

#[test]
fn ingest_writes_a_data_directory_and_counts_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    std::fs::write(
        &log,
        "2026-11-20T10:00:00,1,GET /data/m/the+matrix+1999/1.mpg\n\
         2026-11-20T10:01:00,1,GET /data/m/the+matrix+1999/2.mpg\n\
         2026-11-20T10:02:00,1,GET /rate/the+matrix+1999=5\n\
         2026-11-20T10:02:30,2,GET /rate/up+2009=4\n\
         garbage line\n",
    )
    .unwrap();
    let out_dir = dir.path().join("ingested");
    let out = ok(&["ingest", "--log", path(&log), "--out", path(&out_dir)]);
    let table = String::from_utf8_lossy(&out.stderr);
    assert!(table.contains("malformed lines"), "{table}");
    for file in ["ratings.dat", "watches.dat", "quality.json"] {
        assert!(out_dir.join(file).exists(), "{file}");
    }
    let quality: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("quality.json")).unwrap()).unwrap();
    assert_eq!(quality["malformed"], 1, "{quality}");
    let ratings = std::fs::read_to_string(out_dir.join("ratings.dat")).unwrap();
    assert_eq!(ratings.lines().count(), 2);

    let out = movrek(&[
        "ingest",
        "--log",
        path(&dir.path().join("missing.log")),
        "--out",
        path(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn serve_refuses_a_model_identity_without_a_model_uri() {
    let digest = "ab".repeat(32);
    for env in [
        vec![("MOVREK_MODEL_VERSION", "v7")],
        vec![("MOVREK_MODEL_SHA256", digest.as_str())],
        vec![
            ("MOVREK_MODEL_VERSION", "v7"),
            ("MOVREK_MODEL_SHA256", digest.as_str()),
            ("MOVREK_MODEL_URI", " "),
        ],
    ] {
        let mut cmd = Command::new(MOVREK);
        cmd.args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .env_remove("MOVREK_MODEL_URI")
            .env_remove("MOVREK_MODEL_SHA256")
            .env_remove("MOVREK_MODEL_VERSION")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let out = cmd.output().expect("run movrek serve");
        assert_eq!(out.status.code(), Some(1), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no model URI"), "{env:?}: {stderr}");
        assert!(
            !stderr.contains("listening"),
            "refused before listening: {stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn sigterm_drains_for_the_configured_period_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = trained(dir.path());
    let mut server = Server::start(&["--model", path(&model), "--drain-secs", "0.8"], &[]);
    server.wait_ready(Duration::from_secs(30));
    // A client holding a half-sent request must not keep the process alive.
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.get("/readyz").0, 503, "not ready while draining");
    assert_eq!(
        server.get("/recommend/1").0,
        200,
        "still serving while draining"
    );
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(800 + 1000),
        "exit {took:?} after SIGTERM"
    );
    let log = server.drain_log();
    // Not vacuous: the drain's own last line is among them.
    assert!(
        log.iter().any(|l| l.contains("server stopped")),
        "a 'server stopped' line: {log:?}"
    );
    assert!(
        log.iter().all(|l| l.starts_with('{')),
        "only JSON on stderr: {log:?}"
    );
}
