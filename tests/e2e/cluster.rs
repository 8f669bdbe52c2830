//! Test infrastructure: a throwaway loopback control plane (`hack/cluster/up` into a temp
//! dir, `hack/cluster/down` on drop), `kubectl`/`helm` helpers, the Helm install of the
//! operator chart, and a kubeconfig for the chart's `ServiceAccount` (from a `TokenRequest`),
//! so the local operator runs with exactly the chart's RBAC.

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tempfile::TempDir;

/// Namespace the chart is installed into (and where the operator's Lease lives).
pub const OPERATOR_NAMESPACE: &str = "movrek-system";
/// Helm release name; the chart names its objects `<release>-movrek-operator`.
pub const HELM_RELEASE: &str = "movrek";
/// The chart's `ServiceAccount`.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "movrek-movrek-operator";

/// The repository root (the directory holding `hack/` and `charts/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cache of the Go-built binaries (`MOVREK_CACHE`, default `/var/cache/movrek`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MOVREK_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/movrek"), PathBuf::from)
}

/// Directory of the Go-built Kubernetes binaries (`hack/cluster/build.sh`).
pub fn k8s_bin_dir() -> PathBuf {
    cache_dir().join("k8s/bin")
}

/// Namespace of Prometheus's `ServiceAccount` (as in a cluster where it runs in `monitoring`).
pub const PROMETHEUS_NAMESPACE: &str = "monitoring";

/// Prometheus's identity: what pod discovery over every namespace needs (get, list and watch
/// pods), nothing else.
const PROMETHEUS_RBAC: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: monitoring
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: prometheus
  namespace: monitoring
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: prometheus-pods
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: prometheus-pods
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: prometheus-pods
subjects:
- kind: ServiceAccount
  name: prometheus
  namespace: monitoring
"#;

/// A running control plane; stopped and removed when dropped.
pub struct Cluster {
    /// The cluster directory (pids, logs, pki, kubeconfig).
    pub dir: PathBuf,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Admin client.
    pub client: Client,
    /// How long `hack/cluster/up` took.
    pub start_time: std::time::Duration,
    _parent: TempDir,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Runs `hack/cluster/up` into a fresh directory under `/var/tmp/movrek`.
    pub async fn up() -> Self {
        let base = Path::new("/var/tmp/movrek");
        std::fs::create_dir_all(base).expect("create /var/tmp/movrek");
        let parent = tempfile::Builder::new()
            .prefix("e2e-")
            .tempdir_in(base)
            .expect("temp dir for the cluster");
        let dir = parent.path().join("cluster");
        let started = Instant::now();
        let out = Command::new(repo_root().join("hack/cluster/up"))
            .arg(&dir)
            // Inference pods turn Ready when the data-plane stand-in's probe passes.
            .env("MOVREK_CLUSTER_PROBED_PODS", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run hack/cluster/up");
        let start_time = started.elapsed();
        assert!(
            out.status.success(),
            "hack/cluster/up failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = dir.join("kubeconfig");
        let client = client_for(&kubeconfig).await;
        Self {
            dir,
            kubeconfig,
            client,
            start_time,
            _parent: parent,
        }
    }

    /// A command for a binary of the cluster cache with this cluster's admin kubeconfig.
    pub fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(k8s_bin_dir().join(bin));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `kubectl args…` and returns its output whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.command("kubectl")
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Runs `kubectl args…`, panicking with stderr on failure; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `kubectl args…` with `input` on stdin; returns the output whatever the status.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command("kubectl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        child
            .stdin
            .take()
            .expect("kubectl stdin")
            .write_all(input.as_bytes())
            .expect("write kubectl stdin");
        child.wait_with_output().expect("wait for kubectl")
    }

    /// `kubectl apply -f -` of `yaml`, panicking with stderr on failure.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `helm install` of `charts/movrek-operator` into [`OPERATOR_NAMESPACE`] with the
    /// operator Deployment at 0 replicas (pods never run under kwok; the operator under test
    /// runs as a local process with the chart's `ServiceAccount`).
    pub fn helm_install(&self) {
        let chart = repo_root().join("charts/movrek-operator");
        let out = self
            .command("helm")
            .args(["install", HELM_RELEASE])
            .arg(&chart)
            .args([
                "--namespace",
                OPERATOR_NAMESPACE,
                "--create-namespace",
                "--set",
                "replicaCount=0",
                "--wait",
                "--timeout",
                "60s",
            ])
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `helm upgrade --reuse-values` of the installed chart with `values` (`--set` pairs):
    /// a chart option switched on after install, as a person would.
    pub fn helm_upgrade(&self, values: &[(&str, &str)]) {
        let chart = repo_root().join("charts/movrek-operator");
        let mut cmd = self.command("helm");
        cmd.args(["upgrade", HELM_RELEASE]).arg(&chart).args([
            "--namespace",
            OPERATOR_NAMESPACE,
            "--reuse-values",
        ]);
        for (key, value) in values {
            cmd.arg("--set").arg(format!("{key}={value}"));
        }
        let out = cmd
            .args(["--wait", "--timeout", "60s"])
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm upgrade {values:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes a kubeconfig authenticating as the chart's `ServiceAccount` (a token from the
    /// `TokenRequest` API) and returns its path.
    pub fn operator_kubeconfig(&self) -> PathBuf {
        self.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, "operator")
    }

    /// Creates Prometheus's `ServiceAccount` (`monitoring/prometheus`, allowed to get, list and
    /// watch pods in every namespace) and writes a kubeconfig authenticating as it (a
    /// `TokenRequest` token); returns its path.
    pub fn prometheus_kubeconfig(&self) -> PathBuf {
        self.apply(PROMETHEUS_RBAC);
        self.service_account_kubeconfig(PROMETHEUS_NAMESPACE, "prometheus", "prometheus")
    }

    /// Writes `<user>.kubeconfig` authenticating as `namespace/account` (a two-hour token from
    /// the `TokenRequest` API) and returns its path.
    fn service_account_kubeconfig(&self, namespace: &str, account: &str, user: &str) -> PathBuf {
        let token =
            self.kubectl_ok(&["-n", namespace, "create", "token", account, "--duration=2h"]);
        let path = self.dir.join(format!("{user}.kubeconfig"));
        let text = self.endpoint().kubeconfig(user, token.trim(), namespace);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The chart's `PodMonitor` for the inference pods as `helm template` renders it with the
    /// tests' values (`podMonitor.enabled=true`, `podMonitor.interval=1s`), as JSON.
    pub fn render_pod_monitor(&self) -> serde_json::Value {
        let out = self
            .command("helm")
            .args(["template", HELM_RELEASE])
            .arg(repo_root().join("charts/movrek-operator"))
            .args(["--namespace", OPERATOR_NAMESPACE])
            .args(["--set", "podMonitor.enabled=true"])
            .args(["--set", "podMonitor.interval=1s"])
            .args(["--show-only", "templates/podmonitor.yaml"])
            .output()
            .expect("run helm template");
        assert!(
            out.status.success(),
            "helm template: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let monitor: serde_json::Value =
            serde_yaml::from_slice(&out.stdout).expect("PodMonitor YAML");
        assert_eq!(monitor["kind"], "PodMonitor", "{monitor}");
        monitor
    }

    /// Where the API server listens and the CA that signed its certificate.
    pub fn endpoint(&self) -> ApiEndpoint {
        let server = self
            .kubectl_ok(&[
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ])
            .trim()
            .to_owned();
        ApiEndpoint {
            server,
            ca: self.dir.join("pki/ca.crt"),
        }
    }

    /// The admin's bearer token (the cluster's static token file).
    pub fn admin_token(&self) -> String {
        let tokens =
            std::fs::read_to_string(self.dir.join("pki/tokens.csv")).expect("read tokens.csv");
        tokens
            .lines()
            .find(|l| l.split(',').nth(1) == Some("admin"))
            .and_then(|l| l.split(',').next())
            .expect("an admin token in tokens.csv")
            .to_owned()
    }

    /// The pod network `hack/cluster/up` made (`DIR/netns`).
    pub fn pod_network(&self) -> PodNetwork {
        let text = std::fs::read_to_string(self.dir.join("netns"))
            .expect("read DIR/netns (hack/cluster/up writes it)");
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{key} missing in DIR/netns:\n{text}"))
                .to_owned()
        };
        PodNetwork {
            name: get("name"),
            host_ip: get("host_ip"),
            pod_cidr: get("pod_cidr"),
        }
    }

    /// The API server's own `/metrics` text (admin token).
    pub async fn apiserver_metrics(&self) -> String {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("metrics request");
        self.client
            .request_text(request)
            .await
            .expect("GET /metrics from the API server")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = Command::new(repo_root().join("hack/cluster/down"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!(
                "hack/cluster/down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The cluster's pod network: a network namespace whose private range kwok hands out as pod
/// IPs (`hack/cluster/netns`).
#[derive(Clone, Debug)]
pub struct PodNetwork {
    /// The network namespace (`ip netns exec NAME …` runs a pod's process there).
    pub name: String,
    /// The root namespace's end of the veth pair, as the pods see it.
    pub host_ip: String,
    /// The pod IP range, e.g. `10.244.1.0/24`.
    pub pod_cidr: String,
}

/// The API server's address and CA, for kubeconfigs of other identities.
#[derive(Clone, Debug)]
pub struct ApiEndpoint {
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The cluster CA certificate.
    pub ca: PathBuf,
}

impl ApiEndpoint {
    /// A kubeconfig that authenticates with bearer `token` as `user`, defaulting to
    /// `namespace`.
    pub fn kubeconfig(&self, user: &str, token: &str, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    \
             certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: local\n  context:\n    cluster: local\n    user: {user}\n    \
             namespace: {namespace}\ncurrent-context: local\n",
            server = self.server,
            ca = self.ca.display(),
        )
    }
}

/// A client for a kubeconfig file.
pub async fn client_for(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig to client config");
    Client::try_from(config).expect("kube client")
}
