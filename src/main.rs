//! `movrek-operator`: command-line entry point (`crd` prints the CRD YAML, `run` starts the
//! operator).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::client::ClientBuilder;
use movrek_operator::analysis::error_chain;
use movrek_operator::analysis::prometheus::{self, Prometheus};
use movrek_operator::controller::{self, Context};
use movrek_operator::crd::RecommenderRelease;
use movrek_operator::egress::HostAllowList;
use movrek_operator::http::{self, Health};
use movrek_operator::leader::{self, LeaderGate, LeaseConfig, WriteGateLayer};
use movrek_operator::metrics::Metrics;
use movrek_operator::notify::{RetryPolicy, Webhook, webhook};
use movrek_operator::telemetry;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Kubernetes operator that rolls out movie-recommendation models with canaries.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the custom resource definition as YAML.
    Crd,
    /// Run the operator (kubeconfig or in-cluster credentials).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "MOVREK_OPERATOR_HTTP", default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "movrek-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease stays valid without renewal; the leader steps down after 2/3 of it
    /// without a successful renewal, and renews (a follower looks) every tenth of it.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Timeout of one Prometheus analysis, in seconds.
    #[arg(long, default_value_t = 10)]
    prometheus_timeout: u64,
    /// Hosts a release's `spec.canary.prometheus.address` may name: comma-separated `host`,
    /// `host:port`, `*.domain` or `*`. Empty: any host but link-local addresses.
    #[arg(long, env = "MOVREK_ALLOWED_PROMETHEUS_HOSTS", value_delimiter = ',')]
    allowed_prometheus_hosts: Vec<String>,
    /// Hosts a release's webhook URL may name (same syntax). Empty: any host but link-local
    /// addresses.
    #[arg(long, env = "MOVREK_ALLOWED_WEBHOOK_HOSTS", value_delimiter = ',')]
    allowed_webhook_hosts: Vec<String>,
    /// Reconciles that may run at once (0: no limit). A start or resync of many releases is
    /// spread over this many workers instead of flooding the API server; when all are busy,
    /// urgent reconciles (a new spec, a rollout in flight) are let in before routine ones.
    #[arg(long, env = "MOVREK_MAX_CONCURRENT_RECONCILES", default_value_t = 16)]
    max_concurrent_reconciles: u16,
}

/// Exit code when the CRD is not installed.
const EXIT_NO_CRD: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match movrek_operator::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("movrek-operator: cannot render the CRD: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            telemetry::init();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(error) => {
                    eprintln!("movrek-operator: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(run(args))
        }
    }
}

/// The two clients: `plain` for the Lease, `gated` (writes only while leading) for the rest.
struct Clients {
    plain: Client,
    gated: Client,
}

/// Connects and checks that the CRD is installed; the exit code says why not.
async fn connect(gate: &LeaderGate) -> Result<Clients, ExitCode> {
    let no_credentials = |e: &(dyn std::error::Error + 'static)| {
        error!(error = %error_chain(e), "no Kubernetes credentials (kubeconfig or in-cluster)");
        ExitCode::FAILURE
    };
    let config = kube::Config::infer()
        .await
        .map_err(|e| no_credentials(&e))?;
    let plain = Client::try_from(config.clone()).map_err(|e| no_credentials(&e))?;
    let gated = ClientBuilder::try_from(config)
        .map_err(|e| no_credentials(&e))?
        .with_layer(&WriteGateLayer(gate.clone()))
        .build();
    let releases = Api::<RecommenderRelease>::all(plain.clone());
    match releases.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(Clients { plain, gated }),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            error!(
                "the RecommenderRelease CRD is not installed; install it with \
                 `movrek-operator crd | kubectl apply -f -` (or crds/recommenderreleases.movrek.dev.yaml)"
            );
            eprintln!("movrek-operator: CRD recommenderreleases.movrek.dev is not installed");
            Err(ExitCode::from(EXIT_NO_CRD))
        }
        Err(e) => {
            error!(error = %error_chain(&e), "cannot list RecommenderReleases");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Resolves when `rx` carries `true`.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn run(args: RunArgs) -> ExitCode {
    let egress = match Egress::parse(&args) {
        Ok(e) => e,
        Err(message) => {
            error!(%message, "bad allow-list flag");
            eprintln!("movrek-operator: {message}");
            return ExitCode::from(2);
        }
    };
    let gate = LeaderGate::default();
    let clients = match connect(&gate).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut metrics = Metrics::new();
    gate.register(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let health = Health::default();
    health.set_ready(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = warp::serve(http::routes(metrics.clone(), health.clone()))
        .bind(args.http)
        .await
        .graceful(stopped(stop_rx.clone()))
        .run();
    let server = tokio::spawn(server);
    info!(http = %args.http, "serving /metrics, /healthz, /readyz");

    let signals = tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown_signal().await;
            info!("shutdown requested");
            let _ = stop_tx.send(true);
        }
    });

    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("movrek-operator-{}", std::process::id()))
    });
    let lease_cfg = LeaseConfig::new(
        args.lease_name.clone(),
        args.lease_namespace.clone(),
        identity,
        Duration::from_secs(args.lease_seconds),
    );
    info!(
        prometheus = %egress.prometheus, webhook = %egress.webhook,
        lease = ?lease_cfg, "egress allow-lists and lease timings"
    );
    let shell = match Shell::new(
        clients.gated,
        metrics,
        args.prometheus_timeout,
        egress,
        args.max_concurrent_reconciles,
    ) {
        Ok(shell) => shell,
        Err(code) => return code,
    };
    let leases: Api<Lease> = Api::namespaced(clients.plain, &lease_cfg.namespace);
    let code = lead_while_elected(&leases, &lease_cfg, &gate, &shell, &stop_rx).await;
    signals.abort();
    let _ = stop_tx.send(true);
    let _ = server.await;
    code
}

/// Follower → leader → follower … until a stop is requested: runs the controller (with fresh
/// watch caches each term) only while holding the Lease. Losing it drops the controller at
/// once (its writes are already refused by the gate) and rejoins as a follower; a stop lets
/// in-flight reconciles finish while the Lease is still renewed, then releases it so the next
/// replica takes over at once. A controller that ends without a stop is a failure.
async fn lead_while_elected(
    leases: &Api<Lease>,
    cfg: &LeaseConfig,
    gate: &LeaderGate,
    shell: &Shell,
    stop_rx: &watch::Receiver<bool>,
) -> ExitCode {
    loop {
        let held = tokio::select! {
            held = leader::acquire(leases, cfg, gate) => held,
            () = stopped(stop_rx.clone()) => return ExitCode::SUCCESS,
        };
        let ctx = Arc::new(shell.context());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let controller = async {
            controller::run(ctx, stopped(stop_rx.clone())).await;
            let _ = done_tx.send(());
        };
        let holding = leader::hold(leases, cfg, gate, held, async {
            let _ = done_rx.await;
        });
        tokio::pin!(controller, holding);
        tokio::select! {
            (_, reason) = &mut holding => {
                let reason = reason.map_or_else(|| "stopped".to_owned(), |r| error_chain(&r));
                error!(error = %reason, "leadership lost; controller stopped, following again");
            }
            () = &mut controller => {
                let (held, reason) = holding.await;
                if reason.is_none()
                    && let Err(e) = leader::release(leases, cfg, gate, &held).await
                {
                    warn!(error = %error_chain(&e), "cannot release the lease; it expires on its own");
                }
                if !*stop_rx.borrow() {
                    error!("the controller ended without a stop request");
                    return ExitCode::FAILURE;
                }
                info!("stopped");
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// The parsed egress allow-lists.
struct Egress {
    prometheus: HostAllowList,
    webhook: HostAllowList,
}

impl Egress {
    fn parse(args: &RunArgs) -> Result<Self, String> {
        Ok(Self {
            prometheus: HostAllowList::parse(
                prometheus::ALLOWED_HOSTS_FLAG,
                &args.allowed_prometheus_hosts,
            )?,
            webhook: HostAllowList::parse(
                webhook::ALLOWED_HOSTS_FLAG,
                &args.allowed_webhook_hosts,
            )?,
        })
    }
}

/// What every leadership term's controller context is built from.
struct Shell {
    client: Client,
    metrics: Arc<Metrics>,
    source: Prometheus,
    notifier: Webhook,
    /// Reconciles at once (`--max-concurrent-reconciles`).
    concurrency: u16,
}

impl Shell {
    fn new(
        client: Client,
        metrics: Arc<Metrics>,
        prometheus_timeout: u64,
        egress: Egress,
        concurrency: u16,
    ) -> Result<Self, ExitCode> {
        let source = Prometheus::with_allowed_hosts(
            Duration::from_secs(prometheus_timeout),
            egress.prometheus,
        )
        .map_err(|e| {
            error!(error = %error_chain(&e), "cannot build the Prometheus client");
            ExitCode::FAILURE
        })?;
        let notifier = Webhook::with_allowed_hosts(RetryPolicy::default(), egress.webhook)
            .map_err(|e| {
                error!(error = %error_chain(&e), "cannot build the webhook client");
                ExitCode::FAILURE
            })?;
        Ok(Self {
            client,
            metrics,
            source,
            notifier,
            concurrency,
        })
    }

    /// A fresh context (its own, empty watch caches) for one leadership term.
    fn context(&self) -> Context<Prometheus, Webhook> {
        Context::new(
            self.client.clone(),
            self.source.clone(),
            self.notifier.clone(),
            self.metrics.clone(),
        )
        .with_concurrency(self.concurrency)
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
