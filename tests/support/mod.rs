//! Test infrastructure only (not product code): starts real `prometheus` and `movrek serve`
//! processes on free 127.0.0.1 ports, each behind a guard that kills it by pid when dropped,
//! and drives bounded loopback load.
#![allow(
    dead_code,
    reason = "each integration-test crate that includes this module uses a different subset"
)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// A child process that is killed (by its pid, SIGKILL) and reaped when the guard drops.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot create log {}: {e}", log.display()));
        let err = out.try_clone().expect("cannot clone the log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// The process id, while it runs under this guard.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Panics with the log tail if the process has already exited.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{} exited early ({status}); last log lines:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
    }

    /// True once the process has exited (or was stopped).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_)) | Err(_)))
    }

    /// How the process ended, once it has (`None` while it runs or after [`Self::stop`]).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM by pid, waits up to `grace` for the process to exit, then kills it.
    /// Blocking; call it from a blocking context.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(child) = self.child.as_mut() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.stop();
    }

    /// Kills the process by pid and waits for it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `n` lines of the process's output, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The cargo profile directory this test binary was built into (`<target>/debug`), which
/// honours `CARGO_TARGET_DIR` because it is read from the test executable's own path.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot locate the test executable");
    // <target>/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable is not under <target>/<profile>/deps")
        .to_owned()
}

/// The `movrek` binary: `$MOVREK_BIN` when set, else `<target>/<profile>/movrek`.
pub fn movrek_bin() -> PathBuf {
    let path =
        std::env::var_os("MOVREK_BIN").map_or_else(|| profile_dir().join("movrek"), PathBuf::from);
    assert!(
        path.is_file(),
        "movrek binary not found at {}: run cargo build -p movrek-inference --bin movrek \
         (with the same CARGO_TARGET_DIR), or set MOVREK_BIN",
        path.display()
    );
    path
}

/// Debian's `prometheus` binary (2.42, `hack/deps.sh`). The cargo-level tests that use it
/// (`tests/analysis_prometheus.rs`) scrape static loopback targets, which any Prometheus does, so
/// they keep it and need no Go build; the end-to-end scenarios need Kubernetes discovery, which
/// it lacks, and use the one `hack/prometheus/build.sh` builds (`tests/e2e/dataplane.rs`).
pub fn prometheus_bin() -> PathBuf {
    let candidates = [
        std::env::var_os("PROMETHEUS_BIN").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/prometheus")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .expect("prometheus not found at /usr/bin/prometheus: run ./hack/deps.sh (installs Debian's prometheus) or set PROMETHEUS_BIN")
}

/// Spawns `cmd` as `name` (output to `log`) and waits until `ready_url` answers 200 within
/// `limit`; panics with the log's tail when the process dies or never gets ready.
pub async fn spawn_ready(
    name: &str,
    cmd: Command,
    log: &Path,
    ready_url: &str,
    limit: Duration,
) -> ChildGuard {
    let mut process = ChildGuard::spawn(name, cmd, log);
    if let Err(e) = wait_ok(ready_url, limit, || process.assert_running()).await {
        panic!("{name}: {e}\n{}", process.log_tail(30));
    }
    process
}

/// Polls `url` until it answers 200 or `limit` passes; `check` runs between polls so a
/// process that died is reported at once.
async fn wait_ok(url: &str, limit: Duration, mut check: impl FnMut()) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client");
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        check();
        match http.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{url} not ready after {limit:?}: {last}"))
}

/// A running `movrek serve` on 127.0.0.1.
#[derive(Debug)]
pub struct MovrekServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The process.
    pub process: ChildGuard,
    _dir: TempDir,
}

impl MovrekServer {
    /// Starts `movrek serve` for `release`/`track` with extra env (e.g. fault injection) and
    /// waits for `/readyz` (the default model is generated and trained at start-up).
    pub async fn start(release: &str, track: &str, env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let port = free_port();
        let mut cmd = Command::new(movrek_bin());
        cmd.args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(dir.path())
            .env_remove("MOVREK_MODEL_URI")
            .env_remove("MOVREK_MODEL_SHA256")
            .env_remove("MOVREK_MODEL_VERSION")
            .env_remove("MOVREK_FAULT_DELAY_MS")
            .env_remove("MOVREK_FAULT_ERROR_RATE")
            .env("MOVREK_RELEASE", release)
            .env("MOVREK_TRACK", track)
            .env("MOVREK_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = dir.path().join("movrek.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let process = spawn_ready(
            &format!("movrek serve ({track})"),
            cmd,
            &log,
            &format!("http://{addr}/readyz"),
            Duration::from_secs(120),
        )
        .await;
        Self {
            addr,
            process,
            _dir: dir,
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One scrape target: an address and the static labels Prometheus attaches.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where `/metrics` is served.
    pub addr: SocketAddr,
    /// Extra target labels, e.g. `("namespace", "prod")`.
    pub labels: Vec<(String, String)>,
}

/// A running Prometheus on 127.0.0.1 with a 1 s scrape interval.
#[derive(Debug)]
pub struct PrometheusServer {
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    /// The process (stop it to simulate an outage).
    pub process: ChildGuard,
    _dir: TempDir,
}

impl PrometheusServer {
    /// Writes a config scraping `targets` every second and starts Prometheus on a free port.
    pub async fn start(targets: &[Target]) -> Self {
        let bin = prometheus_bin();
        let dir = TempDir::new().expect("temp dir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: movrek\n    static_configs:\n",
        );
        for t in targets {
            let _ = writeln!(config, "      - targets: ['{}']", t.addr);
            if !t.labels.is_empty() {
                config.push_str("        labels:\n");
                for (k, v) in &t.labels {
                    let _ = writeln!(config, "          {k}: '{v}'");
                }
            }
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, &config).expect("write prometheus.yml");
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=warn")
            .current_dir(dir.path());
        let log = dir.path().join("prometheus.log");
        let process = spawn_ready(
            "prometheus",
            cmd,
            &log,
            &format!("http://{addr}/-/ready"),
            Duration::from_secs(30),
        )
        .await;
        Self {
            addr,
            process,
            _dir: dir,
        }
    }

    /// Base URL of the HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What a load run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests answered otherwise or not at all.
    pub failed: u64,
}

/// Background load on one server: `concurrency` loops of `GET /recommend/{user}` until
/// `max_requests` are sent, `max_time` passes, or the handle is stopped/dropped.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the load against `base` (e.g. `http://127.0.0.1:40123`).
    pub fn start(base: &str, concurrency: usize, max_requests: u64, max_time: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client");
        let deadline = Instant::now() + max_time;
        let tasks = (0..concurrency)
            .map(|worker| {
                let (stop, sent, ok, failed) =
                    (stop.clone(), sent.clone(), ok.clone(), failed.clone());
                let http = http.clone();
                let base = base.to_owned();
                tokio::spawn(async move {
                    let mut user = 1 + worker as u64 * 97;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        if sent.fetch_add(1, Ordering::Relaxed) >= max_requests {
                            break;
                        }
                        user = user % 1_500 + 1;
                        let answer = http.get(format!("{base}/recommend/{user}")).send().await;
                        let counter = match answer {
                            Ok(r) if r.status().is_success() => &ok,
                            _ => &failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        user += 13;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Counts so far.
    pub fn report(&self) -> LoadReport {
        LoadReport {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops the loops and waits for them.
    pub async fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.report()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}
