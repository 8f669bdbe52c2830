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
use movrek_operator::analysis::error_chain;
use movrek_operator::analysis::prometheus::Prometheus;
use movrek_operator::controller::{self, Context};
use movrek_operator::crd::RecommenderRelease;
use movrek_operator::http::{self, Health};
use movrek_operator::leader::{self, LeaseConfig};
use movrek_operator::metrics::Metrics;
use movrek_operator::notify::{RetryPolicy, Webhook};
use movrek_operator::telemetry;
use tokio::sync::watch;
use tracing::{error, info};

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
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Timeout of one Prometheus analysis, in seconds.
    #[arg(long, default_value_t = 10)]
    prometheus_timeout: u64,
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

/// Connects and checks that the CRD is installed; the exit code says why not.
async fn connect() -> Result<Client, ExitCode> {
    let client = Client::try_default().await.map_err(|e| {
        error!(error = %error_chain(&e), "no Kubernetes credentials (kubeconfig or in-cluster)");
        ExitCode::FAILURE
    })?;
    let releases = Api::<RecommenderRelease>::all(client.clone());
    match releases.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(client),
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

async fn run(args: RunArgs) -> ExitCode {
    let client = match connect().await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    health.set_ready(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let server_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let server = warp::serve(http::routes(metrics.clone(), health.clone()))
        .bind(args.http)
        .await
        .graceful(server_stop)
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
    let lease_cfg = LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity,
        lease_duration: Duration::from_secs(args.lease_seconds.max(2)),
        renew_every: Duration::from_secs((args.lease_seconds / 3).max(1)),
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_cfg.namespace);
    let mut stopped = stop_rx.clone();
    tokio::select! {
        result = leader::acquire(&leases, &lease_cfg) => {
            if let Err(e) = result {
                error!(error = %error_chain(&e), "leader election failed");
                return ExitCode::FAILURE;
            }
        }
        _ = stopped.wait_for(|s| *s) => {
            let _ = server.await;
            return ExitCode::SUCCESS;
        }
    }

    let ctx = match build_context(client.clone(), metrics, args.prometheus_timeout) {
        Ok(ctx) => Arc::new(ctx),
        Err(code) => return code,
    };

    // Losing the lease stops the controller and exits non-zero, so a restart rejoins as follower.
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let holder = tokio::spawn({
        let cfg = lease_cfg.clone();
        async move {
            let reason = leader::hold(&leases, &cfg).await;
            error!(error = %error_chain(&reason), "leadership lost; stopping the controller");
            let _ = lost_tx.send(true);
        }
    });
    let controller_stop = {
        let mut stop = stop_rx.clone();
        let mut lost = lost_rx.clone();
        async move {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = lost.wait_for(|l| *l) => {}
            }
        }
    };
    controller::run(ctx, controller_stop).await;
    holder.abort();
    signals.abort();
    let _ = stop_tx.send(true);
    let _ = server.await;
    if *lost_rx.borrow_and_update() {
        ExitCode::FAILURE
    } else {
        info!("stopped");
        ExitCode::SUCCESS
    }
}

fn build_context(
    client: Client,
    metrics: Arc<Metrics>,
    prometheus_timeout: u64,
) -> Result<Context<Prometheus, Webhook>, ExitCode> {
    let source = Prometheus::new(Duration::from_secs(prometheus_timeout)).map_err(|e| {
        error!(error = %error_chain(&e), "cannot build the Prometheus client");
        ExitCode::FAILURE
    })?;
    let notifier = Webhook::new(RetryPolicy::default()).map_err(|e| {
        error!(error = %error_chain(&e), "cannot build the webhook client");
        ExitCode::FAILURE
    })?;
    Ok(Context::new(client, source, notifier, metrics))
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
