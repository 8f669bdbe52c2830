//! The server on real loopback sockets, as hostile clients and an orchestrator see it: silent
//! and trickling connections, the connection cap with probes still getting in, every method
//! and request form, malformed request lines and heads, half-closed requests, and the drain
//! on a shutdown signal (readiness first, `Connection: close`, bounded exit).
//!
//! Each test runs [`run`] in-process on 127.0.0.1 with short limits; every client has its own
//! deadline, so a regression fails a test instead of hanging it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use movrek_inference::server::{
    AppState, ConnLimits, DrainPolicy, LoadedModel, Recommender, ServedPath, StateConfig, Track,
    run,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Debug)]
struct Fixed;

impl Recommender for Fixed {
    fn recommend(&self, user: u32, n: usize) -> (Vec<u32>, ServedPath) {
        ((user..).take(n).collect(), ServedPath::Personal)
    }
    fn version(&self) -> &'static str {
        "v-hard"
    }
    fn data_sha256(&self) -> &'static str {
        "d"
    }
    fn provenance(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

struct Server {
    addr: SocketAddr,
    signals: tokio::sync::mpsc::Sender<()>,
    done: tokio::task::JoinHandle<(Result<(), String>, Instant)>,
}

fn limits(max_connections: usize) -> ConnLimits {
    ConnLimits {
        max_connections,
        header_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(800),
        write_timeout: Duration::from_secs(2),
    }
}

async fn start(limits: ConnLimits, drain: Duration) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(AppState::new(StateConfig {
        release: "r".into(),
        track: Track::Stable,
        model_threads: 1,
        drain: DrainPolicy {
            period: drain,
            grace: Duration::from_millis(300),
        },
        ..StateConfig::default()
    }));
    let loading = async {
        Ok(LoadedModel {
            recommender: Arc::new(Fixed),
            artifact_sha256: "a".into(),
        })
    };
    let (signals, rx) = tokio::sync::mpsc::channel(4);
    let done = tokio::spawn(async move {
        let result = run(listener, state, limits, loading, rx).await;
        (result.map_err(|e| e.to_string()), Instant::now())
    });
    let server = Server {
        addr,
        signals,
        done,
    };
    // Ready once the loader task has installed the model.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !exchange(
        addr,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .starts_with("HTTP/1.1 200")
    {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server
}

/// Sends `raw` on a new connection and reads until the server closes it (2 s at most).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // A server that answers early (431) may reset before all is written: read anyway.
    let _ = stream.write_all(raw).await;
    read_all(&mut stream, Duration::from_secs(2)).await
}

async fn read_all(stream: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response (head and `Content-Length` body) from a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0_u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = header(head, "content-length").map_or(0, |v| v.parse().unwrap());
            if body.len() >= length {
                return text;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut byte)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&byte[..n]),
            _ => return text,
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn metrics(addr: SocketAddr) -> String {
    exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
}

async fn stop(server: Server) {
    let _ = server.signals.send(()).await;
    let _ = server.signals.send(()).await;
    let (result, _) = server.done.await.unwrap();
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_connections_time_out() {
    let server = start(limits(64), Duration::ZERO).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut trickle = TcpStream::connect(server.addr).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status(&read_response(&mut idle).await), 200);
    let started = Instant::now();
    let trickler = tokio::spawn(async move {
        // One byte every 100 ms never completes a head within the 400 ms header timeout.
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        read_all(&mut trickle, Duration::from_secs(3)).await
    });
    assert_eq!(read_all(&mut silent, Duration::from_secs(3)).await, "");
    let silent_closed = started.elapsed();
    assert!(
        silent_closed < Duration::from_millis(1500),
        "silent connection closed after {silent_closed:?}"
    );
    assert_eq!(trickler.await.unwrap(), "", "trickler got no answer");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The idle keep-alive connection is closed after the 800 ms idle timeout.
    assert_eq!(read_all(&mut idle, Duration::from_secs(3)).await, "");
    let text = metrics(server.addr).await;
    let timed_out = text
        .lines()
        .find(|l| l.starts_with("movrek_connections_timed_out_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(timed_out >= 3, "{text}");
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_get_in_when_silent_connections_fill_the_cap() {
    // Relies on eviction, not on the 400 ms header timeout freeing slots: the probes below
    // all run well within it.
    let server = start(limits(8), Duration::ZERO).await;
    let mut hostile = Vec::new();
    for _ in 0..30 {
        hostile.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..20 {
        let answer = exchange(
            server.addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status(&answer), 200, "{answer:?}");
    }
    let text = metrics(server.addr).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("movrek_connections_evicted_total") && !l.ends_with(" 0")),
        "{text}"
    );
    drop(hostile);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_and_request_form_gets_a_status() {
    let server = start(limits(64), Duration::ZERO).await;
    let cases: &[(&str, u16)] = &[
        ("GET /healthz HTTP/1.1", 200),
        ("HEAD /recommend/5 HTTP/1.1", 200),
        ("POST /recommend/5 HTTP/1.1", 405),
        ("PUT /healthz HTTP/1.1", 405),
        ("DELETE /metrics HTTP/1.1", 405),
        ("PATCH /version HTTP/1.1", 405),
        ("OPTIONS /readyz HTTP/1.1", 405),
        ("TRACE /healthz HTTP/1.1", 405),
        ("PROPFIND /healthz HTTP/1.1", 405),
        ("CONNECT example.com:443 HTTP/1.1", 405),
        ("CONNECT 127.0.0.1:1 HTTP/1.1", 405),
        ("OPTIONS * HTTP/1.1", 404),
        ("GET http://x/healthz HTTP/1.1", 200),
        ("POST /nope HTTP/1.1", 404),
        ("GET /healthz HTTP/1.0", 200),
    ];
    for (line, expected) in cases {
        let raw = format!("{line}\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let answer = exchange(server.addr, raw.as_bytes()).await;
        assert_eq!(status(&answer), *expected, "{line}: {answer:?}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert_eq!(header(head, "x-model-version"), Some("v-hard"), "{line}");
        if *expected == 405 {
            assert_eq!(header(head, "allow"), Some("GET, HEAD"), "{line}");
        }
        if line.starts_with("HEAD") {
            assert_eq!(body, "", "HEAD has no body");
            assert!(header(head, "content-length").is_some_and(|n| n != "0"));
        }
    }
    // The server is still whole: a normal request on a fresh connection works.
    let answer = exchange(
        server.addr,
        b"GET /recommend/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with("7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26"));
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_answered_counted_and_versioned() {
    let server = start(limits(64), Duration::ZERO).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200_000)
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET /healthz HTTP/9.9\r\n\r\n".to_vec(), 400),
        (b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(), 400),
        (b"GET /he\x01lthz HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            400,
        ),
        (long_uri.into_bytes(), 414),
        (big_head.into_bytes(), 431),
    ];
    for (raw, expected) in &cases {
        let answer = exchange(server.addr, raw).await;
        assert_eq!(status(&answer), *expected, "{:?}", &answer);
        let head = answer
            .split_once("\r\n\r\n")
            .map_or(answer.as_str(), |(h, _)| h);
        assert_eq!(header(head, "x-model-version"), Some("v-hard"), "{head}");
    }
    let text = metrics(server.addr).await;
    for (code, n) in [(400, 5), (414, 1), (431, 1)] {
        let line = format!("route=\"other\",status=\"{code}\"}} {n}");
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_followed_by_a_half_close_gets_its_answer() {
    let server = start(limits(64), Duration::ZERO).await;
    for user in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(format!("GET /recommend/{user} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        let answer = read_all(&mut stream, Duration::from_secs(2)).await;
        assert_eq!(status(&answer), 200, "user {user}: {answer:?}");
    }
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_drains_then_stops_within_the_bound_whatever_clients_do() {
    let drain = Duration::from_millis(700);
    let server = start(limits(64), drain).await;
    // A keep-alive client mid-conversation, and one that holds a half-sent request.
    let mut keep = TcpStream::connect(server.addr).await.unwrap();
    keep.write_all(b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut keep).await;
    assert_eq!(status(&first), 200);
    assert_eq!(header(&first, "connection"), None);
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();

    let signalled = Instant::now();
    server.signals.send(()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Readiness turns first; new connections are still served.
    let ready = exchange(server.addr, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&ready), 503, "{ready}");
    let fresh = exchange(server.addr, b"GET /recommend/2 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&fresh), 200, "{fresh}");
    // The keep-alive request sent during the drain is answered and told to close.
    keep.write_all(b"GET /recommend/3 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let during = read_response(&mut keep).await;
    assert_eq!(status(&during), 200, "{during}");
    assert_eq!(header(&during, "connection"), Some("close"));
    assert_eq!(read_all(&mut keep, Duration::from_secs(2)).await, "");

    let (result, stopped) = server.done.await.unwrap();
    result.unwrap();
    let took = stopped - signalled;
    assert!(took >= drain, "stopped before the drain period: {took:?}");
    // Drain period + 300 ms grace + the close wait, with scheduling slack.
    assert!(
        took < drain + Duration::from_millis(300 + 100 + 400),
        "stopped after {took:?}"
    );
    assert_eq!(read_all(&mut half, Duration::from_secs(1)).await, "");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_at_once() {
    let server = start(limits(64), Duration::from_secs(30)).await;
    let signalled = Instant::now();
    server.signals.send(()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.signals.send(()).await.unwrap();
    let (result, stopped) = server.done.await.unwrap();
    result.unwrap();
    assert!(stopped - signalled < Duration::from_secs(2));
}
