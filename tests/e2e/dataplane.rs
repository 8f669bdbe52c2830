//! Test infrastructure: the data-plane stand-in. Pods never run under kwok, so this plays
//! kubelet for one namespace (and, for the legacy `ingress-nginx` provider only, ingress
//! controller):
//!
//! - kwok gives every inference pod an IP from the cluster's pod network (a network namespace,
//!   `hack/cluster/netns`) and leaves it Running but not Ready. For each such pod this starts a
//!   real `movrek serve --bind <pod IP> --port <containerPort>` inside that namespace
//!   (`ip netns exec`) with the pod's container env (literal values, `secretKeyRef`s and
//!   `envFrom` Secrets resolved as a kubelet does), sets the pod's `Ready` condition once
//!   `/readyz` answers (a kubelet's readiness probe) and back to False when the process dies,
//!   and restarts a process that died. The real controller-manager then lists the pod in its
//!   Services' `EndpointSlices`, and the real gateway (Traefik, [`crate::gateway`]) finds it
//!   there. A real Prometheus finds the pods through the API server (`kubernetes_sd_configs`,
//!   role `pod`, with the scrape configuration prometheus-operator would make of the chart's
//!   `PodMonitor`: [`scrape_config`]) and scrapes them on their IPs.
//! - A pod that is gone keeps serving until no router sends it traffic any more (the gateway's
//!   API no longer lists its address and nginx was reloaded without it; at most
//!   [`DRAIN_LIMIT`]), then gets SIGTERM: the `preStop` drain a real pod would have.
//! - Loopback services named in a pod's env (`127.0.0.1:PORT`: the Kafka broker, the S3
//!   stand-in) are relayed into the pod network by `hack/cluster/loopback-relay.py`; nothing
//!   else outside the pod network is reachable from it.
//! - It runs the retraining Job's pods to completion ([`crate::jobs`]) in the root namespace.
//! - **Stand-in for ingress-nginx** (the legacy provider only; Traefik does not implement the
//!   ingress-nginx canary annotations): it renders the namespace's Ingresses (`<name>` → stable
//!   Service, `<name>-canary` with `nginx.ingress.kubernetes.io/canary-weight`) into a real
//!   nginx: one upstream per Service (the ready pod IPs whose labels match its selector) and a
//!   `split_clients` on `$request_id` for the canary weight, like ingress-nginx's canary, then
//!   reloads it (HUP by pid) and waits until the new configuration answers.
//!
//! Fault injection: a `RecommenderRelease` cannot set pod env, so the stand-in adds
//! fault variables (`MOVREK_FAULT_DELAY_MS`, `MOVREK_FAULT_ERROR_RATE`) to the processes of any
//! pod whose `MOVREK_MODEL_VERSION` is listed in the test's fault table (e.g. `v2-slow` →
//! 400 ms, `v2-failing` → 20 % 5xx).

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::cluster::{ApiEndpoint, PodNetwork, cache_dir, repo_root};
use crate::gateway::Gateway;
use crate::jobs::{JobPodRun, JobPods};
use crate::podmonitor;
use crate::support::{ChildGuard, free_port, movrek_bin, spawn_ready};
use crate::timeline::Timeline;

/// Label every inference pod carries.
const POD_SELECTOR: &str = "app.kubernetes.io/name=movrek-inference";
/// The inference container (its env and `http` port are the pod's process's).
const CONTAINER: &str = "inference";
const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
const TICK: Duration = Duration::from_millis(250);
/// Longest one pass of the pod loop may take. A list call that hung (seen once in a cold run
/// at load 8: the loop started no pod for the whole of s08, and the scenario's teardown then
/// waited for it until CI's limit) is abandoned and the next pass starts.
const TICK_DEADLINE: Duration = Duration::from_secs(10);
/// Longest `stop` waits for the loop before aborting it (its process guards still kill
/// every pod process and nginx when the task is dropped).
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// Longest a gone pod keeps serving while a router may still send it requests.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Longest a stopping process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One `movrek serve` standing in for a pod.
#[derive(Debug)]
struct Backend {
    /// The pod's IP (in the pod network) and container port.
    ip: String,
    port: u16,
    track: String,
    version: String,
    labels: BTreeMap<String, String>,
    ready: bool,
    leaving_since: Option<Instant>,
    process: ChildGuard,
}

impl Backend {
    fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// What the stand-in did, for assertions and the timeline.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Processes started.
    pub started: u64,
    /// Processes stopped.
    pub stopped: u64,
    /// nginx reloads.
    pub reloads: u64,
    /// Processes that exited on their own (a crash, or a refused model).
    pub crashed: Vec<String>,
    /// Job pods run to completion, in the order they finished.
    pub jobs: Vec<JobPodRun>,
}

/// The stand-in's running state.
pub struct DataPlane {
    /// The real Prometheus scraping the pods.
    pub prometheus: Prometheus,
    /// The real nginx of the legacy ingress-nginx provider (stand-in ingress controller).
    pub nginx_port: u16,
    /// The real Gateway API implementation (Traefik) the traffic goes through.
    pub gateway: Arc<Gateway>,
    pods_dir: PathBuf,
    /// Ready pods: (track, base URL), straight to their processes.
    ready: Arc<Mutex<Vec<(String, String)>>>,
    stats: Arc<Mutex<Stats>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("nginx_port", &self.nginx_port)
            .field("gateway", &self.gateway.port)
            .finish_non_exhaustive()
    }
}

/// What [`DataPlane::start`] needs to know about the cluster.
pub struct Setup {
    /// Admin client.
    pub client: Client,
    /// Namespace whose pods the stand-in serves.
    pub namespace: String,
    /// The API server, for Job pods' processes.
    pub endpoint: ApiEndpoint,
    /// The pod network.
    pub network: PodNetwork,
    /// The running gateway.
    pub gateway: Gateway,
    /// The chart's `PodMonitor` as `helm template` renders it (JSON): what Prometheus scrapes.
    pub pod_monitor: serde_json::Value,
    /// Kubeconfig of Prometheus's own identity (pod discovery).
    pub prometheus_kubeconfig: PathBuf,
}

impl DataPlane {
    /// Starts Prometheus, nginx and the pod loop for `setup.namespace`; files go under `dir`.
    /// `faults` maps a model version to the fault variables its processes get.
    pub async fn start(
        setup: Setup,
        dir: &Path,
        faults: HashMap<String, Vec<(String, String)>>,
        timeline: Arc<Timeline>,
    ) -> Self {
        let Setup {
            client,
            namespace,
            endpoint,
            network,
            gateway,
            pod_monitor,
            prometheus_kubeconfig,
        } = setup;
        std::fs::create_dir_all(dir).expect("create the data-plane dir");
        let prometheus = Prometheus::start(
            &dir.join("prometheus"),
            &pod_monitor,
            &prometheus_kubeconfig,
        )
        .await;
        let mut nginx = Nginx::start(&dir.join("nginx")).await;
        let nginx_port = nginx.port;
        let gateway = Arc::new(gateway);
        let stats = Arc::new(Mutex::new(Stats::default()));
        let ready = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let pods_dir = dir.join("pods");
        std::fs::create_dir_all(&pods_dir).expect("create pods dir");
        let task = tokio::spawn({
            let (stats, stop, ready) = (stats.clone(), stop.clone(), ready.clone());
            let jobs = JobPods::new(&client, &namespace, endpoint, pods_dir.clone());
            let pods_dir = pods_dir.clone();
            let gateway = gateway.clone();
            async move {
                let mut standin = StandIn {
                    pods: Api::namespaced(client.clone(), &namespace),
                    secrets: Api::namespaced(client.clone(), &namespace),
                    jobs,
                    services: Api::namespaced(client.clone(), &namespace),
                    ingresses: Api::namespaced(client, &namespace),
                    namespace,
                    network,
                    gateway,
                    backends: HashMap::new(),
                    stopping: Vec::new(),
                    relays: HashMap::new(),
                    faults,
                    pods_dir,
                    ready,
                    not_served: BTreeSet::new(),
                    stats,
                    timeline,
                    http: reqwest::Client::builder()
                        .timeout(Duration::from_millis(500))
                        .build()
                        .expect("reqwest client"),
                };
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(TICK_DEADLINE, standin.tick(&mut nginx)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => standin.timeline.mark(&format!("stand-in: {e}")),
                        Err(_) => standin.timeline.mark(&format!(
                            "stand-in: a pass took over {TICK_DEADLINE:?}; abandoned, retrying"
                        )),
                    }
                    tokio::time::sleep(TICK).await;
                }
                standin.shutdown();
                drop(nginx);
            }
        });
        Self {
            prometheus,
            nginx_port,
            gateway,
            pods_dir,
            ready,
            stats,
            stop,
            task: Some(task),
        }
    }

    /// Base URL of nginx (the legacy ingress-nginx stand-in).
    pub fn nginx_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx_port)
    }

    /// Base URL of the Gateway's listener (Traefik).
    pub fn gateway_url(&self) -> String {
        self.gateway.url()
    }

    /// Base URLs of the ready pods of `track`, straight to their processes (not through a
    /// router): `http://<pod IP>:<port>`.
    pub fn pod_urls(&self, track: &str) -> Vec<String> {
        self.ready
            .lock()
            .expect("ready lock")
            .iter()
            .filter(|(t, _)| t == track)
            .map(|(_, url)| url.clone())
            .collect()
    }

    /// What the process of pod `pod` printed so far (empty when none ran).
    pub fn pod_log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.pods_dir.join(format!("{pod}.log"))).unwrap_or_default()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Stops the loop, every process and nginx (Prometheus and Traefik stop on drop).
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(STOP_DEADLINE, &mut task)
                .await
                .is_err()
        {
            eprintln!("stand-in: the pod loop did not stop within {STOP_DEADLINE:?}; aborted");
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        // The task owns the processes; when the runtime drops it, their guards kill them.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct StandIn {
    pods: Api<Pod>,
    secrets: Api<Secret>,
    jobs: JobPods,
    services: Api<Service>,
    ingresses: Api<Ingress>,
    namespace: String,
    network: PodNetwork,
    gateway: Arc<Gateway>,
    backends: HashMap<String, Backend>,
    /// Processes of gone pods sent SIGTERM, with when to SIGKILL them.
    stopping: Vec<(Instant, Backend)>,
    /// Loopback relays into the pod network, by port.
    relays: HashMap<u16, ChildGuard>,
    faults: HashMap<String, Vec<(String, String)>>,
    pods_dir: PathBuf,
    ready: Arc<Mutex<Vec<(String, String)>>>,
    /// Pods with no `inference` container (no `movrek serve` to run for them), already noted.
    not_served: BTreeSet<String>,
    stats: Arc<Mutex<Stats>>,
    timeline: Arc<Timeline>,
    http: reqwest::Client,
}

/// A pod kwok runs: Running with an IP, not being deleted.
fn pod_runs(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    (pod.metadata.deletion_timestamp.is_none() && status.phase.as_deref() == Some("Running"))
        .then(|| status.pod_ip.clone())
        .flatten()
}

/// Whether `pod` has a container named `name`.
fn has_container(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == name))
}

/// The inference container's `http` port (its first port when none is named so).
fn container_port(pod: &Pod) -> Option<u16> {
    let c = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let ports = c.ports.as_ref()?;
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .or_else(|| ports.first())?;
    u16::try_from(port.container_port).ok()
}

/// Loopback ports (`127.0.0.1:PORT`, `localhost:PORT`) named in env values.
fn loopback_ports(env: &[(String, String)]) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for (_, value) in env {
        for host in ["127.0.0.1:", "localhost:"] {
            for (i, _) in value.match_indices(host) {
                let digits: String = value[i + host.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(port) = digits.parse() {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

/// The environment of `container` in `pod` as a kubelet gives it: every key of each `envFrom`
/// Secret first, then `env` (literal values and `secretKeyRef`s; other sources are skipped),
/// in order, so a later entry of the same name wins when they are applied in turn.
///
/// # Errors
/// A Secret or key that is missing (a kubelet's `CreateContainerConfigError`).
pub async fn container_env(
    secrets: &Api<Secret>,
    pod: &Pod,
    container: &str,
) -> Result<Vec<(String, String)>, String> {
    let Some(c) = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == container))
    else {
        return Ok(Vec::new());
    };
    let mut vars = Vec::new();
    for from in c.env_from.iter().flatten() {
        if let Some(secret) = &from.secret_ref {
            let prefix = from.prefix.clone().unwrap_or_default();
            for (key, value) in secret_data(secrets, &secret.name).await? {
                vars.push((format!("{prefix}{key}"), value));
            }
        }
    }
    for e in c.env.iter().flatten() {
        let key_ref = e
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref());
        let value = match (&e.value, key_ref) {
            (Some(v), _) => v.clone(),
            (None, Some(r)) => secret_data(secrets, &r.name)
                .await?
                .remove(&r.key)
                .ok_or_else(|| format!("Secret {} has no key {}", r.name, r.key))?,
            (None, None) => continue,
        };
        vars.push((e.name.clone(), value));
    }
    Ok(vars)
}

/// The keys of Secret `name`, decoded as UTF-8.
async fn secret_data(
    secrets: &Api<Secret>,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    let secret = secrets
        .get(name)
        .await
        .map_err(|e| format!("Secret {name}: {e}"))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

impl StandIn {
    async fn tick(&mut self, nginx: &mut Nginx) -> Result<(), kube::Error> {
        let pods = self
            .pods
            .list(&ListParams::default().labels(POD_SELECTOR))
            .await?;
        let running: HashMap<String, (&Pod, String)> = pods
            .items
            .iter()
            .filter_map(|p| Some((p.name_any(), (p, pod_runs(p)?))))
            .collect();
        let now = Instant::now();
        for (name, b) in &mut self.backends {
            if !running.contains_key(name) {
                b.leaving_since.get_or_insert(now);
            }
        }
        let draining = self.backends.values().any(|b| b.leaving_since.is_some());
        let routed = if draining {
            self.gateway.servers(&self.http).await
        } else {
            None
        };
        for (name, (pod, ip)) in &running {
            if !has_container(pod, CONTAINER) {
                // A kubelet would run it; this stand-in runs only `movrek serve` containers (s01's
                // pods that the chart's PodMonitor must not select have none).
                if self.not_served.insert(name.clone()) {
                    self.timeline.mark(&format!(
                        "stand-in: pod {name} has no {CONTAINER} container: not run"
                    ));
                }
                continue;
            }
            if self.backends.contains_key(name) || self.ip_busy(ip, routed.as_ref()) {
                continue;
            }
            match container_env(&self.secrets, pod, CONTAINER).await {
                Ok(env) => self.spawn(name, pod, ip, &env).await,
                Err(e) => self
                    .timeline
                    .mark(&format!("stand-in: pod {name} not started: {e}")),
            }
        }
        self.probe().await;
        self.publish_ready();

        let services = self.services.list(&ListParams::default()).await?;
        let ingresses = self.ingresses.list(&ListParams::default()).await?;
        let body = render_nginx(
            &self.namespace,
            &services.items,
            &ingresses.items,
            &self.backends,
        );
        if body != nginx.body {
            nginx.reload(&body).await;
            self.stats.lock().expect("stats lock").reloads += 1;
        }
        self.drain().await;
        self.reap();
        self.jobs.tick(&self.timeline, &self.stats).await
    }

    /// Stops the processes of gone pods that no router sends requests to any more: nginx was
    /// reloaded without them (above) and the gateway's API no longer lists their address, or
    /// they have drained for [`DRAIN_LIMIT`].
    async fn drain(&mut self) {
        if self.backends.values().all(|b| b.leaving_since.is_none()) {
            return;
        }
        let routed = self.gateway.servers(&self.http).await;
        let done: Vec<String> = self
            .backends
            .iter()
            .filter_map(|(name, b)| {
                let since = b.leaving_since?;
                let unrouted = routed.as_ref().is_some_and(|r| !r.contains(&b.addr()));
                (unrouted || since.elapsed() >= DRAIN_LIMIT).then(|| name.clone())
            })
            .collect();
        for name in done {
            if let Some(b) = self.backends.remove(&name) {
                self.stop_backend(&name, b, "gone and unrouted");
            }
        }
    }

    /// kwok hands a released pod IP to the next pod at once. While a gone pod's process on
    /// `ip` is still routed by the gateway (at most [`DRAIN_LIMIT`]), the new pod waits, as a
    /// real one could not get an address still in use; then the old process is killed so the
    /// new one can bind. True while the new pod must wait.
    fn ip_busy(&mut self, ip: &str, routed: Option<&BTreeSet<String>>) -> bool {
        let still_routed = self.backends.values().any(|b| {
            b.ip == ip
                && b.leaving_since.is_some_and(|t| t.elapsed() < DRAIN_LIMIT)
                && routed.is_none_or(|r| r.contains(&b.addr()))
        });
        if still_routed {
            return true;
        }
        let holders: Vec<String> = self
            .backends
            .iter()
            .filter(|(_, b)| b.ip == ip)
            .map(|(n, _)| n.clone())
            .collect();
        for old in holders {
            if let Some(b) = self.backends.remove(&old) {
                self.stats.lock().expect("stats lock").stopped += 1;
                self.stopping.push((Instant::now(), b));
            }
        }
        let mut freed = false;
        for (_, b) in self.stopping.iter_mut().filter(|(_, b)| b.ip == ip) {
            b.process.stop();
            freed = true;
        }
        if freed {
            self.timeline.mark(&format!(
                "stand-in: IP {ip} reused: the gone pod's process on it, unrouted, killed first"
            ));
            self.reap();
        }
        false
    }

    /// SIGTERM to a gone pod's process; [`StandIn::reap`] waits for it to exit (SIGKILL after
    /// [`STOP_GRACE`]): requests already sent finish.
    fn stop_backend(&mut self, name: &str, backend: Backend, why: &str) {
        self.timeline.mark(&format!(
            "stand-in: pod {name} {why}, stopping {} {} on {}",
            backend.track,
            backend.version,
            backend.addr()
        ));
        self.stats.lock().expect("stats lock").stopped += 1;
        if let Some(pid) = backend.process.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        self.stopping.push((Instant::now() + STOP_GRACE, backend));
    }

    /// Forgets stopped processes that exited; kills those past their grace.
    fn reap(&mut self) {
        let now = Instant::now();
        self.stopping.retain_mut(|(deadline, b)| {
            if b.process.has_exited() {
                return false;
            }
            if now >= *deadline {
                b.process.stop();
                return false;
            }
            true
        });
    }

    /// Publishes the ready pods for [`DataPlane::pod_urls`]. (Prometheus finds the pods itself,
    /// through the API server.)
    fn publish_ready(&mut self) {
        let mut ready: Vec<(String, String)> = self
            .backends
            .values()
            .filter(|b| b.ready && b.leaving_since.is_none())
            .map(|b| (b.track.clone(), format!("http://{}", b.addr())))
            .collect();
        ready.sort();
        *self.ready.lock().expect("ready lock") = ready;
    }

    /// Starts a relay into the pod network for each loopback port in `ports` not relayed yet.
    async fn relay(&mut self, ports: &BTreeSet<u16>) {
        for &port in ports {
            if self.relays.contains_key(&port) {
                continue;
            }
            let log = self.pods_dir.join(format!("relay-{port}.log"));
            let mut cmd = Command::new("python3");
            cmd.arg(repo_root().join("hack/cluster/loopback-relay.py"))
                .arg(&self.network.name)
                .arg(port.to_string());
            let mut relay = ChildGuard::spawn(&format!("loopback relay :{port}"), cmd, &log);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("ready")) {
                relay.assert_running();
                assert!(
                    Instant::now() < deadline,
                    "loopback relay :{port} not ready in 10 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.timeline.mark(&format!(
                "stand-in: 127.0.0.1:{port} relayed into pod network {}",
                self.network.name
            ));
            self.relays.insert(port, relay);
        }
    }

    async fn spawn(&mut self, name: &str, pod: &Pod, ip: &str, env: &[(String, String)]) {
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let version = get("MOVREK_MODEL_VERSION");
        let track = pod
            .labels()
            .get("movrek.dev/track")
            .cloned()
            .unwrap_or_else(|| get("MOVREK_TRACK"));
        let Some(port) = container_port(pod) else {
            self.timeline.mark(&format!(
                "stand-in: pod {name} not started: container {CONTAINER} has no port"
            ));
            return;
        };
        self.relay(&loopback_ports(env)).await;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.network.name])
            .arg(movrek_bin())
            .args(["serve", "--bind", ip, "--port", &port.to_string()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MOVREK_LOG", "warn")
            // A pod sheds a request that would wait more than 50 ms for a compute thread (its
            // own CPU share). Here every pod, the gateway, Prometheus, the control plane and
            // the test share two cores, and a thread stalled that long at load 8 cost s02 two
            // 503s before any rollout began. Shedding has its own tests (server_hardening.rs);
            // these scenarios count requests lost to routing, so the bound is the stand-in's,
            // set before the pod's env so a release that sets it still wins.
            .env("MOVREK_MAX_QUEUE_WAIT_MS", "2000")
            .current_dir(&self.pods_dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env("MOVREK_PORT", port.to_string());
        let fault = self.faults.get(&version).cloned().unwrap_or_default();
        for (k, v) in &fault {
            cmd.env(k, v);
        }
        let log = self.pods_dir.join(format!("{name}.log"));
        let process = ChildGuard::spawn(&format!("movrek serve for pod {name}"), cmd, &log);
        self.timeline.mark(&format!(
            "stand-in: pod {name} Running → movrek serve {track} {version} on {ip}:{port}{}",
            if fault.is_empty() {
                String::new()
            } else {
                let vars: Vec<String> = fault.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(" ({})", vars.join(" "))
            }
        ));
        self.stats.lock().expect("stats lock").started += 1;
        self.backends.insert(
            name.to_owned(),
            Backend {
                ip: ip.to_owned(),
                port,
                track,
                version,
                labels: pod.labels().clone(),
                ready: false,
                leaving_since: None,
                process,
            },
        );
    }

    /// The readiness probe: a process whose `/readyz` answers 200 is ready and its pod's
    /// `Ready` condition is set True; a process that exited is forgotten (the next pass starts
    /// it again, as a kubelet restarts a container) and its pod set not Ready.
    async fn probe(&mut self) {
        let mut dead = Vec::new();
        let mut became_ready = Vec::new();
        for (name, b) in &mut self.backends {
            if b.process.has_exited() {
                dead.push(name.clone());
                continue;
            }
            if b.ready {
                continue;
            }
            let url = format!("http://{}/readyz", b.addr());
            if let Ok(r) = self.http.get(url).send().await
                && r.status().is_success()
            {
                b.ready = true;
                if b.leaving_since.is_none() {
                    became_ready.push(name.clone());
                }
            }
        }
        for name in became_ready {
            self.set_ready(&name, true).await;
        }
        for name in dead {
            if let Some(b) = self.backends.remove(&name) {
                let tail = b.process.log_tail(5);
                self.timeline
                    .mark(&format!("stand-in: process of pod {name} exited: {tail}"));
                self.stats
                    .lock()
                    .expect("stats lock")
                    .crashed
                    .push(name.clone());
                if b.leaving_since.is_none() {
                    self.set_ready(&name, false).await;
                }
            }
        }
    }

    /// Writes the pod's `Ready` and `ContainersReady` conditions (status subresource).
    async fn set_ready(&self, pod: &str, ready: bool) {
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let status = if ready { "True" } else { "False" };
        let condition = |type_: &str| serde_json::json!({"type": type_, "status": status, "lastTransitionTime": now});
        let patch = serde_json::json!({"status": {"conditions": [
            condition("Ready"), condition("ContainersReady"),
        ]}});
        if let Err(e) = self
            .pods
            .patch_status(pod, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            self.timeline.mark(&format!(
                "stand-in: pod {pod}: setting Ready {status} failed: {e}"
            ));
        }
    }

    fn shutdown(&mut self) {
        for (_, mut b) in self.backends.drain() {
            b.process.stop();
        }
        for (_, mut b) in self.stopping.drain(..) {
            b.process.stop();
        }
        for (_, mut r) in self.relays.drain() {
            r.terminate(Duration::from_secs(2));
        }
        self.jobs.shutdown();
    }
}

/// Per host: the primary Ingress's Service, and the canary Ingress's Service and weight.
type HostRoutes = (Option<String>, Option<(String, u32)>);

/// The nginx configuration for the namespace's Ingresses (pure).
fn render_nginx(
    namespace: &str,
    services: &[Service],
    ingresses: &[Ingress],
    backends: &HashMap<String, Backend>,
) -> String {
    let endpoints = |svc: &str| -> Vec<String> {
        let Some(selector) = services
            .iter()
            .find(|s| s.name_any() == svc)
            .and_then(|s| s.spec.as_ref()?.selector.clone())
        else {
            return Vec::new();
        };
        let mut addrs: Vec<String> = backends
            .values()
            .filter(|b| b.ready && b.leaving_since.is_none())
            .filter(|b| selector.iter().all(|(k, v)| b.labels.get(k) == Some(v)))
            .map(Backend::addr)
            .collect();
        addrs.sort_unstable();
        addrs
    };
    let backend_of = |ing: &Ingress| -> Option<(String, String)> {
        let rule = ing.spec.as_ref()?.rules.as_ref()?.first()?.clone();
        let host = rule.host.unwrap_or_else(|| "_".to_owned());
        let svc = rule
            .http?
            .paths
            .first()?
            .backend
            .service
            .as_ref()?
            .name
            .clone();
        Some((host, svc))
    };
    let mut hosts: BTreeMap<String, HostRoutes> = BTreeMap::new();
    for ing in ingresses {
        let Some((host, svc)) = backend_of(ing) else {
            continue;
        };
        let entry = hosts.entry(host).or_default();
        let annotations = ing.annotations();
        if annotations.get(CANARY).map(String::as_str) == Some("true") {
            let weight = annotations
                .get(CANARY_WEIGHT)
                .and_then(|w| w.parse().ok())
                .unwrap_or(0u32)
                .min(100);
            entry.1 = Some((svc, weight));
        } else {
            entry.0 = Some(svc);
        }
    }
    let mut upstreams = String::new();
    let mut servers = String::new();
    for (i, (host, (primary, canary))) in hosts.iter().enumerate() {
        let mut upstream = |svc: &str| -> Option<String> {
            let addrs = endpoints(svc);
            if addrs.is_empty() {
                return None;
            }
            let name = format!("{namespace}_{svc}");
            let _ = writeln!(upstreams, "  upstream {name} {{");
            for a in addrs {
                let _ = writeln!(upstreams, "    server {a} max_fails=0;");
            }
            let _ = writeln!(upstreams, "    keepalive 16;\n  }}");
            Some(name)
        };
        let stable = primary.as_deref().and_then(&mut upstream);
        let canary = canary
            .as_ref()
            .filter(|(_, w)| *w > 0)
            .and_then(|(svc, w)| Some((upstream(svc)?, *w)));
        let target = match (&stable, &canary) {
            (None, _) => None,
            (Some(s), None) => Some(s.clone()),
            (Some(_), Some((c, 100))) => Some(c.clone()),
            (Some(s), Some((c, w))) => {
                let var = format!("movrek_route_{i}");
                let _ = writeln!(
                    upstreams,
                    "  split_clients \"${{request_id}}\" ${var} {{\n    {w}% {c};\n    * {s};\n  }}"
                );
                Some(format!("${var}"))
            }
        };
        let action = target.map_or_else(
            || "return 503;".to_owned(),
            |t| {
                format!(
                    "proxy_pass http://{t}; proxy_http_version 1.1; \
                     proxy_set_header Connection \"\"; proxy_next_upstream off;"
                )
            },
        );
        let _ = writeln!(
            servers,
            "  server {{\n    listen 127.0.0.1:PORT;\n    server_name {host};\n    \
             location / {{ {action} }}\n  }}"
        );
    }
    format!("{upstreams}{servers}")
}

/// A real nginx (master + one worker) on a free loopback port.
struct Nginx {
    port: u16,
    dir: PathBuf,
    generation: u64,
    body: String,
    process: ChildGuard,
}

impl Nginx {
    async fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("tmp")).expect("create nginx dir");
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir, port, 0, "")).expect("write nginx.conf");
        let mut cmd = Command::new(nginx_bin());
        cmd.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"]);
        let process = ChildGuard::spawn("nginx", cmd, &dir.join("nginx.out"));
        let mut nginx = Self {
            port,
            dir: dir.to_owned(),
            generation: 0,
            body: String::new(),
            process,
        };
        nginx.wait_generation().await;
        nginx
    }

    /// Writes the new configuration, sends HUP to the master and waits until it serves.
    async fn reload(&mut self, body: &str) {
        self.generation += 1;
        let conf = nginx_conf(&self.dir, self.port, self.generation, body);
        std::fs::write(self.dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let pid = self.process.pid().expect("nginx runs");
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("run kill -HUP");
        assert!(status.success(), "kill -HUP {pid} failed");
        body.clone_into(&mut self.body);
        self.wait_generation().await;
        self.wait_old_workers(pid).await;
    }

    /// Waits until the workers of the previous configuration have exited: until then they
    /// may still accept a connection and route it to a backend that is about to stop.
    async fn wait_old_workers(&self, master: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while children_of(master) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_generation(&mut self) {
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/__generation", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = self.generation.to_string();
        while Instant::now() < deadline {
            self.process.assert_running();
            if let Ok(r) = http.get(&url).send().await
                && let Ok(text) = r.text().await
                && text == want
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        panic!("nginx did not load configuration {want} in 10 s; error.log:\n{log}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop and reap its workers; a SIGKILL would orphan them.
        self.process.terminate(Duration::from_secs(5));
    }
}

/// Number of live processes whose parent is `parent` (from `/proc/*/stat`).
fn children_of(parent: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid …; comm may contain spaces, so split after the last ')'.
            let mut rest = stat
                .rsplit_once(')')
                .map_or("", |(_, r)| r)
                .split_whitespace();
            let state = rest.next();
            let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
            ppid == Some(parent) && state != Some("Z")
        })
        .count()
}

fn nginx_bin() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/nginx");
    assert!(
        path.is_file(),
        "nginx not found at /usr/sbin/nginx: run ./hack/deps.sh (installs Debian's nginx)"
    );
    path
}

fn nginx_conf(dir: &Path, port: u16, generation: u64, body: &str) -> String {
    let d = dir.display();
    let body = body.replace("PORT", &port.to_string());
    // `user root` only matters when the tests run as root (workers then read nothing else).
    let user = if std::env::var("USER").as_deref() == Ok("root") || is_root() {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "{user}worker_processes 1;\npid {d}/nginx.pid;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  error_log {d}/error.log warn;\n\
         client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
         fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n\
         scgi_temp_path {d}/tmp/scgi;\n  proxy_connect_timeout 2s;\n  proxy_read_timeout 10s;\n\
         server {{\n    listen 127.0.0.1:{port} default_server;\n\
         location = /__generation {{ return 200 \"{generation}\"; }}\n\
         location / {{ return 404; }}\n  }}\n{body}}}\n"
    )
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// Job label of the inference pods' series (set by the chart's `PodMonitor`'s relabelings).
pub const INFERENCE_JOB: &str = "movrek-inference";

/// The e2e Prometheus: built from the Go module proxy with Kubernetes discovery
/// (`hack/prometheus/build.sh`), or `MOVREK_PROMETHEUS_BIN`. Debian's 2.42, which the cargo-level
/// tests use, has no `kubernetes_sd_configs`.
pub fn prometheus_bin() -> PathBuf {
    let path = std::env::var_os("MOVREK_PROMETHEUS_BIN").map_or_else(
        || cache_dir().join("prometheus/bin/prometheus"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no Prometheus with Kubernetes discovery at {}: run ./hack/prometheus/build.sh \
         (hack/e2e.sh does) or set MOVREK_PROMETHEUS_BIN",
        path.display()
    );
    path
}

/// The test's Prometheus configuration (YAML), 1 s scrapes:
/// - the inference pods: the scrape configuration prometheus-operator makes of the chart's
///   `PodMonitor` `pod_monitor` ([`podmonitor::scrape_configs`]): Kubernetes discovery (role
///   `pod`) through the API server as `kubeconfig`, the `PodMonitor`'s selector, port and
///   relabelings. `s01` checks it scrapes exactly the pods the `PodMonitor` selects.
/// - the online evaluator (`movrek evaluate`, s16): file discovery of `evaluator_file`. In the
///   tests it is a process in the root namespace, not a pod, so there is nothing for Kubernetes
///   discovery to find (the chart's evaluator `PodMonitor` selects its pods in a cluster). Its
///   own series carry `release` and `track`: the job keeps them (`honor_labels`), as that
///   `PodMonitor` does.
pub fn scrape_config(
    pod_monitor: &serde_json::Value,
    kubeconfig: &Path,
    evaluator_file: &Path,
) -> String {
    let mut jobs = podmonitor::scrape_configs(pod_monitor, kubeconfig);
    jobs.push(serde_json::json!({
        "job_name": "movrek-evaluator",
        "honor_labels": true,
        "file_sd_configs": [{"files": [evaluator_file.display().to_string()], "refresh_interval": "1s"}],
    }));
    let config = serde_json::json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "scrape_configs": jobs,
    });
    serde_yaml::to_string(&config).expect("Prometheus configuration as YAML")
}

/// A real Prometheus discovering the inference pods through the API server; it can be stopped
/// and started again on the same port and data directory (scenario 10).
pub struct Prometheus {
    /// Its HTTP API port.
    pub port: u16,
    dir: PathBuf,
    process: Option<ChildGuard>,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    async fn start(dir: &Path, pod_monitor: &serde_json::Value, kubeconfig: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("create prometheus dir");
        let evaluator_file = dir.join("evaluator.json");
        std::fs::write(&evaluator_file, "[]").expect("write the evaluator targets");
        let config = scrape_config(pod_monitor, kubeconfig, &evaluator_file);
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let mut p = Self {
            port: free_port(),
            dir: dir.to_owned(),
            process: None,
        };
        p.resume().await;
        p
    }

    /// `GET /api/v1/targets?state=STATE`, parsed.
    async fn targets(&self, state: &str) -> serde_json::Value {
        let url = format!("{}/api/v1/targets?state={state}", self.url());
        reqwest::get(url)
            .await
            .expect("GET /api/v1/targets")
            .json()
            .await
            .expect("targets JSON")
    }

    /// The active targets of job `movrek-inference`: (namespace, pod) of each.
    pub async fn inference_targets(&self) -> BTreeSet<(String, String)> {
        let body = self.targets("active").await;
        body["data"]["activeTargets"]
            .as_array()
            .expect("activeTargets")
            .iter()
            .filter(|t| t["labels"]["job"] == INFERENCE_JOB)
            .map(|t| {
                let label = |k: &str| t["labels"][k].as_str().unwrap_or_default().to_owned();
                (label("namespace"), label("pod"))
            })
            .collect()
    }

    /// The pods Prometheus discovered for the `PodMonitor`'s jobs and dropped by relabelling:
    /// (namespace, pod) of each dropped target.
    pub async fn dropped_pod_monitor_pods(&self) -> BTreeSet<(String, String)> {
        let body = self.targets("dropped").await;
        body["data"]["droppedTargets"]
            .as_array()
            .expect("droppedTargets")
            .iter()
            .filter(|t| {
                let pool = t["scrapePool"].as_str();
                let job = t["discoveredLabels"]["job"].as_str();
                pool.or(job).is_some_and(|j| j.starts_with("podMonitor/"))
            })
            .map(|t| &t["discoveredLabels"])
            .map(|l| {
                let label = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (
                    label("__meta_kubernetes_namespace"),
                    label("__meta_kubernetes_pod_name"),
                )
            })
            .collect()
    }

    /// Scrapes a `movrek evaluate` at `addr` from now on.
    pub fn scrape_evaluator(&self, addr: SocketAddr) {
        let targets = format!("[{{\"targets\": [\"{addr}\"], \"labels\": {{}}}}]");
        std::fs::write(self.dir.join("evaluator.json"), targets)
            .expect("write the evaluator targets");
    }

    /// Base URL of the HTTP API (what `spec.canary.prometheus.address` points at).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process (an outage).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// Starts it (again) on the same port and data, and waits for `/-/ready`.
    pub async fn resume(&mut self) {
        let mut cmd = Command::new(prometheus_bin());
        cmd.arg(format!(
            "--config.file={}",
            self.dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            self.dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
        .arg("--storage.tsdb.retention.time=1h")
        .arg("--log.level=warn")
        .current_dir(&self.dir);
        let process = spawn_ready(
            "prometheus",
            cmd,
            &self.dir.join("prometheus.log"),
            &format!("{}/-/ready", self.url()),
            Duration::from_secs(30),
        )
        .await;
        self.process = Some(process);
    }
}
