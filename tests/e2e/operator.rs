//! Test infrastructure: the operator under test as a local `movrek-operator run` process
//! (killed by pid on drop) authenticated as the chart's `ServiceAccount`.

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cluster::OPERATOR_NAMESPACE;
use crate::support::{ChildGuard, free_port, profile_dir};

/// Lease duration the tests run the operator with (short, so hand-over is quick).
pub const LEASE_SECONDS: u64 = 4;

/// The `movrek-operator` binary: `$MOVREK_OPERATOR_BIN`, else `<target>/<profile>/movrek-operator`.
pub fn operator_bin() -> PathBuf {
    let path = std::env::var_os("MOVREK_OPERATOR_BIN")
        .map_or_else(|| profile_dir().join("movrek-operator"), PathBuf::from);
    assert!(
        path.is_file(),
        "movrek-operator binary not found at {}: run cargo build -p movrek-operator \
         (same CARGO_TARGET_DIR) or set MOVREK_OPERATOR_BIN",
        path.display()
    );
    path
}

/// One running operator replica.
#[derive(Debug)]
pub struct Operator {
    /// Its identity in the leader-election Lease.
    pub identity: String,
    /// Where `/metrics` is served.
    pub http: SocketAddr,
    /// The process (dropping or stopping it is a SIGKILL).
    pub process: ChildGuard,
}

impl Operator {
    /// Starts `movrek-operator run` with `kubeconfig`; logs go to `log_dir/<identity>.log`.
    pub fn start(identity: &str, kubeconfig: &Path, log_dir: &Path) -> Self {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(operator_bin());
        cmd.args(["run", "--http", &http.to_string()])
            .arg(format!("--lease-seconds={LEASE_SECONDS}"))
            .arg("--prometheus-timeout=3")
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info");
        let log = log_dir.join(format!("{identity}.log"));
        let process = ChildGuard::spawn(&format!("operator {identity}"), cmd, &log);
        Self {
            identity: identity.to_owned(),
            http,
            process,
        }
    }

    /// Resident set size of the process in KiB (from `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// Peak resident set size of the process in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let pid = self.process.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The operator's `/metrics` text, or `None` while it does not answer.
    pub async fn metrics(&self) -> Option<String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let r = http
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    }
}

/// Sum of every sample of `name` (any labels) whose label set contains all of `matchers`
/// (`key="value"` fragments), in Prometheus text format.
pub fn metric_sum(text: &str, name: &str, matchers: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| matchers.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}
