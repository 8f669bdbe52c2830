//! The model store on a real S3-compatible server that verifies `SigV4` signatures and IAM
//! policies (moto, `hack/s3`): `movrek publish` then `movrek serve` from `s3://` answering
//! `/recommend`; a republish of the same bytes is a no-op and other bytes for a published
//! version are refused; and every way a load can fail — wrong digest, missing object, wrong
//! secret, unknown key, a key without permission, a spoiled session token, a server that
//! stalls mid-download — ends the server with one clear error naming the URI and the cause,
//! and no model served.
//!
//! The server is the one `hack/test.sh` starts, found through `MOVREK_S3_ENDPOINT` and the
//! `MOVREK_S3_*` credentials beside it; without it these tests start their own with
//! `hack/s3/up` (and stop it with `hack/s3/down`), and fail with the reason if that fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use movrek_inference::store::{self, Created, FetchLimits, ObjectUri};
use object_store::aws::AmazonS3Builder;

mod support;

use support::http_get;

const MOVREK: &str = env!("CARGO_BIN_EXE_movrek");

/// A key id and secret, with a session token for temporary credentials.
#[derive(Clone, Debug)]
struct Credentials {
    id: String,
    secret: String,
    token: Option<String>,
}

/// The S3 server of this test run.
struct S3 {
    endpoint: String,
    region: String,
    bucket: String,
    admin: Credentials,
    denied: Credentials,
    session: Credentials,
    /// The directory of a server these tests started (stopped when the last test is done).
    own: Option<PathBuf>,
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(dir) = &self.own {
            let _ = Command::new(repo_root().join("hack/s3/down"))
                .arg(dir)
                .status();
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("store_s3")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The server shared by the tests running now: the test run's, or one started here.
fn s3() -> Arc<S3> {
    static SHARED: Mutex<Weak<S3>> = Mutex::new(Weak::new());
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s3) = shared.upgrade() {
        return s3;
    }
    let s3 = Arc::new(start_s3());
    *shared = Arc::downgrade(&s3);
    s3
}

fn start_s3() -> S3 {
    if let Ok(endpoint) = std::env::var("MOVREK_S3_ENDPOINT")
        && !endpoint.trim().is_empty()
    {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("MOVREK_S3_ENDPOINT is set but {name} is not: export DIR/env of hack/s3/up")
            })
        };
        return from_vars(&var, None);
    }
    let dir = scratch().join(format!("s3-{}", nanos()));
    let out = Command::new(repo_root().join("hack/s3/up"))
        .arg(&dir)
        .output()
        .expect("run hack/s3/up");
    assert!(
        out.status.success(),
        "MOVREK_S3_ENDPOINT is not set and hack/s3/up {} failed: {}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(dir.join("env")).expect("hack/s3/up writes DIR/env");
    let pairs: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let var = |name: &str| {
        pairs.iter().find(|(k, _)| k == name).map_or_else(
            || panic!("{}/env lacks {name}", dir.display()),
            |(_, v)| v.clone(),
        )
    };
    from_vars(&var, Some(dir.clone()))
}

fn from_vars(var: &dyn Fn(&str) -> String, own: Option<PathBuf>) -> S3 {
    let pair = |prefix: &str| Credentials {
        id: var(&format!("{prefix}ACCESS_KEY_ID")),
        secret: var(&format!("{prefix}SECRET_ACCESS_KEY")),
        token: None,
    };
    S3 {
        endpoint: var("MOVREK_S3_ENDPOINT").trim().to_owned(),
        region: var("MOVREK_S3_REGION"),
        bucket: var("MOVREK_S3_BUCKET"),
        admin: pair("MOVREK_S3_"),
        denied: pair("MOVREK_S3_DENIED_"),
        session: Credentials {
            token: Some(var("MOVREK_S3_SESSION_TOKEN")),
            ..pair("MOVREK_S3_SESSION_")
        },
        own,
    }
}

impl S3 {
    /// A prefix no other test uses.
    fn prefix(&self, test: &str) -> String {
        format!(
            "s3://{}/{test}-{}-{}",
            self.bucket,
            std::process::id(),
            nanos()
        )
    }

    /// The environment of a `movrek` process reaching this server at `endpoint` with `creds`.
    fn env(&self, creds: &Credentials, endpoint: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
            ("AWS_REGION".to_owned(), self.region.clone()),
            ("AWS_ACCESS_KEY_ID".to_owned(), creds.id.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), creds.secret.clone()),
        ];
        if let Some(token) = &creds.token {
            env.push(("AWS_SESSION_TOKEN".to_owned(), token.clone()));
        }
        env
    }

    /// An object store client in this process (to look at what `movrek` wrote).
    fn store(&self) -> Arc<dyn object_store::ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region(&self.region)
                .with_bucket_name(&self.bucket)
                .with_access_key_id(&self.admin.id)
                .with_secret_access_key(&self.admin.secret)
                .build()
                .expect("S3 client"),
        )
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `movrek` with exactly `env` (plus a log level), nothing inherited.
fn movrek(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(MOVREK)
        .args(args)
        .env_clear()
        .env("MOVREK_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run movrek")
}

/// Two artifacts of version `v1` with different bytes (trained at different times), and
/// their digests; made once per test binary.
fn artifacts() -> &'static [(PathBuf, String); 2] {
    static MADE: OnceLock<[(PathBuf, String); 2]> = OnceLock::new();
    MADE.get_or_init(|| {
        let dir = scratch().join("models");
        let data = dir.join("data");
        let generated = movrek(
            &[
                "generate",
                "--users",
                "120",
                "--movies",
                "150",
                "--ratings",
                "3000",
                "--seed",
                "5",
                "--out",
                path(&data),
            ],
            &[],
        );
        assert!(generated.status.success(), "{generated:?}");
        let train = |name: &str| {
            let out_path = dir.join(name);
            let out = movrek(
                &[
                    "train",
                    "--data",
                    path(&data),
                    "--out",
                    path(&out_path),
                    "--version",
                    "v1",
                ],
                &[],
            );
            assert!(out.status.success(), "{out:?}");
            let sha = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            (out_path, sha)
        };
        let first = train("first.movrek");
        std::thread::sleep(Duration::from_millis(1100)); // another training time: other bytes
        let second = train("second.movrek");
        assert_ne!(first.1, second.1, "two trainings give two artifacts");
        [first, second]
    })
}

fn publish(s3: &S3, prefix: &str, model: &Path) -> Output {
    movrek(
        &[
            "publish",
            "--model",
            path(model),
            "--to",
            prefix,
            "--release",
            "movies",
        ],
        &s3.env(&s3.admin, &s3.endpoint),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `movrek serve` started on 127.0.0.1 with a free port; killed by pid on drop.
struct Serve {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Serve {
    fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let mut child = Command::new(MOVREK)
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--drain-secs",
                "0",
            ])
            .args(args)
            .env_clear()
            .env("MOVREK_LOG", "info,movrek::request=off")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn movrek serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`; `None` when the log ends or time is up.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.lines.recv_timeout(left).ok()?;
            self.log.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    }

    /// Waits for the process to end by itself; returns its exit code and whole log.
    fn wait_failure(mut self, timeout: Duration) -> (Option<i32>, String) {
        let _ = self.wait_for("\u{0}never", timeout);
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status.code();
            }
            assert!(
                Instant::now() < deadline,
                "movrek serve did not exit: {:#?}",
                self.log
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.log.join("\n"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts that `movrek serve --model uri` fails with every piece of `expected` in its log
/// and never reports a loaded model.
fn refused(args: &[&str], env: &[(String, String)], expected: &[&str]) -> String {
    let server = Serve::start(args, env);
    let (code, log) = server.wait_failure(Duration::from_secs(40));
    assert_eq!(code, Some(1), "exit code; log:\n{log}");
    assert!(
        !log.contains("model loaded"),
        "no model may be served:\n{log}"
    );
    for needle in expected {
        assert!(log.contains(needle), "{needle:?} missing from:\n{log}");
    }
    log
}

#[test]
fn publish_then_serve_from_s3_and_never_overwrite() {
    let s3 = s3();
    let [(first, sha), (second, other_sha)] = artifacts();
    let prefix = s3.prefix("roundtrip");
    let out = publish(&s3, &prefix, first);
    assert!(out.status.success(), "{}", stderr(&out));
    let uri = format!("{prefix}/movies/v1/model.movrek");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains(&format!("uri: {uri:?}")), "{printed}");
    assert!(printed.contains(&format!("sha256: {sha:?}")), "{printed}");

    // model.json beside the artifact records the digest and the model's metadata.
    let store = s3.store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limits = FetchLimits::default();
    let read = |uri: &str| {
        let uri = ObjectUri::parse(uri).unwrap().unwrap();
        rt.block_on(store::read_from(store.as_ref(), &uri, limits))
    };
    let record: serde_json::Value =
        serde_json::from_slice(&read(&format!("{prefix}/movies/v1/model.json")).unwrap()).unwrap();
    assert_eq!(record["sha256"], sha.as_str());
    assert_eq!(record["uri"], uri.as_str());
    assert_eq!(record["model"]["version"], "v1");
    assert!(
        record["quality"].is_object(),
        "the training data report: {record}"
    );

    // The same bytes again: a no-op. Other bytes for the published version: refused, and the
    // stored artifact keeps its first bytes.
    let again = publish(&s3, &prefix, first);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("already there, same contents"));
    let clash = publish(&s3, &prefix, second);
    assert_eq!(clash.status.code(), Some(1));
    let message = stderr(&clash);
    assert!(
        message.contains(&uri)
            && message.contains("already exists with other contents")
            && message.contains(other_sha.as_str()),
        "{message}"
    );
    assert_eq!(
        movrek_inference::util::sha256_hex(&read(&uri).unwrap()),
        *sha
    );

    // Served from the store, digest checked, answering /recommend.
    let mut server = Serve::start(
        &["--model", &uri, "--model-version", "v1"],
        &[
            s3.env(&s3.admin, &s3.endpoint),
            vec![("MOVREK_MODEL_SHA256".to_owned(), sha.clone())],
        ]
        .concat(),
    );
    let listening = server
        .wait_for("listening", Duration::from_secs(30))
        .expect("listening");
    let entry: serde_json::Value = serde_json::from_str(&listening).unwrap();
    let addr: SocketAddr = entry["addr"].as_str().unwrap().parse().unwrap();
    assert!(
        server
            .wait_for("model loaded", Duration::from_secs(30))
            .is_some(),
        "{:#?}",
        server.log
    );
    let (status, _, body) = http_get(addr, "/recommend/7");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.split(',').count(), 20, "{body}");
    let (status, _, version) = http_get(addr, "/version");
    assert_eq!(status, 200);
    assert!(version.contains(sha.as_str()), "{version}");
}

#[test]
fn create_only_writes_hold_on_the_server() {
    // The conditional put itself (If-None-Match: *), with no look-before-write in front.
    let s3 = s3();
    let store = s3.store();
    let uri = ObjectUri::parse(&format!("{}/x/model.movrek", s3.prefix("create")))
        .unwrap()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let timeout = Duration::from_secs(30);
    let put =
        |bytes: &[u8]| rt.block_on(store::create(store.as_ref(), &uri, bytes.to_vec(), timeout));
    assert_eq!(put(b"first").unwrap(), Created::Written);
    assert_eq!(put(b"second").unwrap(), Created::Existed);
    let stored = rt
        .block_on(store::read_from(
            store.as_ref(),
            &uri,
            FetchLimits::default(),
        ))
        .unwrap();
    assert_eq!(stored, b"first");
}

#[test]
fn wrong_digest_and_missing_object_are_refused() {
    let s3 = s3();
    let [(first, _), _] = artifacts();
    let prefix = s3.prefix("refusals");
    assert!(publish(&s3, &prefix, first).status.success());
    let uri = format!("{prefix}/movies/v1/model.movrek");
    let env = s3.env(&s3.admin, &s3.endpoint);
    let wrong = "0".repeat(64);
    refused(
        &["--model", &uri, "--sha256", &wrong],
        &env,
        &["sha256 mismatch", &wrong],
    );
    let missing = format!("{prefix}/movies/v2/model.movrek");
    refused(&["--model", &missing], &env, &[&missing, "no such object"]);
}

#[test]
fn refused_credentials_are_named_with_the_cause() {
    let s3 = s3();
    let [(first, _), _] = artifacts();
    let prefix = s3.prefix("credentials");
    assert!(publish(&s3, &prefix, first).status.success());
    let uri = format!("{prefix}/movies/v1/model.movrek");
    let args = ["--model", uri.as_str()];
    let wrong_secret = Credentials {
        secret: "not-the-secret".to_owned(),
        ..s3.admin.clone()
    };
    let unknown = Credentials {
        id: "AKIAUNKNOWNUNKNOWN00".to_owned(),
        ..s3.admin.clone()
    };
    let spoiled_session = Credentials {
        token: Some("expired-or-revoked".to_owned()),
        ..s3.session.clone()
    };
    for (creds, cause) in [
        (&wrong_secret, "wrong secret key"),
        (&unknown, "access key id is not known"),
        (&s3.denied, "lack permission"),
        (&spoiled_session, "session token is invalid or has expired"),
    ] {
        refused(
            &args,
            &s3.env(creds, &s3.endpoint),
            &[&uri, "access denied", cause, "AWS_ACCESS_KEY_ID"],
        );
    }
    // The same session credentials with their real token do read it.
    let out = movrek(
        &[
            "publish",
            "--model",
            path(first),
            "--to",
            &prefix,
            "--release",
            "movies",
        ],
        &s3.env(&s3.session, &s3.endpoint),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("already there, same contents"));
}

/// A loopback proxy to `upstream` that passes each request on and relays only the first
/// `pass` bytes of the answer, then holds the connection open without sending more (up to
/// 60 s): a store that stalls mid-download.
fn stalling_proxy(upstream: SocketAddr, pass: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().take(16) {
            let Ok(mut client) = client else { break };
            std::thread::spawn(move || {
                let Ok(mut server) = TcpStream::connect(upstream) else {
                    return;
                };
                let (Ok(mut client_in), Ok(mut server_out)) =
                    (client.try_clone(), server.try_clone())
                else {
                    return;
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_in, &mut server_out);
                });
                let mut relayed = 0;
                let mut buf = [0_u8; 4096];
                while relayed < pass {
                    let Ok(n) = server.read(&mut buf[..(pass - relayed).min(4096)]) else {
                        return;
                    };
                    if n == 0 || client.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    relayed += n;
                }
                std::thread::sleep(Duration::from_secs(60));
            });
        }
    });
    addr
}

#[test]
fn a_store_that_stalls_mid_download_times_out() {
    let s3 = s3();
    let [(first, _), _] = artifacts();
    let prefix = s3.prefix("stall");
    assert!(publish(&s3, &prefix, first).status.success());
    let uri = format!("{prefix}/movies/v1/model.movrek");
    let upstream: SocketAddr = s3
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("endpoint host:port");
    // Headers and the first kilobytes of the artifact, then nothing.
    let proxy = stalling_proxy(upstream, 4096);
    let started = Instant::now();
    refused(
        &["--model", &uri, "--model-timeout-secs", "2"],
        &s3.env(&s3.admin, &format!("http://{proxy}")),
        &[&uri, "no complete answer within 2 s"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
