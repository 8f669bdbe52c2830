//! The HTTP inference server (`movrek serve`): the pod contract of DESIGN.md on hyper.
//!
//! It listens at once, loads the model in the background (`/healthz` 200, `/readyz` 503 until
//! then), answers `GET /recommend/{user_id}` by calling the model on a small compute pool,
//! counts everything in lock-free metrics, sheds load it cannot answer in time with fast
//! 503s, bounds what every connection may hold (timeouts, a connection cap that evicts idle
//! connections first), can inject delays and errors for chaos tests, and drains on
//! SIGTERM/SIGINT the way Kubernetes expects ([`drain`]). This is the only module that knows
//! hyper and tokio.

pub mod admission;
mod conn;
pub mod drain;
mod http;
pub mod load;
pub(crate) mod lograte;
pub mod memo;
pub mod metrics;
mod route;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::bus::publish::{Publisher, PublisherConfig};
pub use crate::util::error_chain;
pub use conn::{
    Candidate, ConnLimits, ConnPhase, descriptor_limit, max_connections, pick_victim,
    with_version_header,
};
pub use drain::{DrainPolicy, Phase};
pub use http::{
    Body, IMPRESSION_ID_HEADER, LIST_LEN, MODEL_VERSION_HEADER, handle, join_ids, respond,
};
pub use load::{FetchLimits, LoadError, ModelUri};
pub use memo::{Answer, Memo, MemoCounts};
pub use metrics::ServedPath;
pub use route::{BadUserId, MethodClass, Route, RouteLabel, parse_user_id};
pub use state::{AppState, Faults, LoadedModel, Recommender, StateConfig, Track, injects_error};

/// Where `movrek serve` gets its model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// An artifact at a URI or path.
    Uri(ModelUri),
    /// No model given: generate the default synthetic data set, train, and serve that.
    DefaultSynthetic,
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// The model to serve.
    pub source: ModelSource,
    /// Expected artifact SHA-256 (normalised lowercase hex), if given.
    pub expected_sha256: Option<String>,
    /// Download bounds for http(s) artifacts.
    pub fetch: FetchLimits,
    /// Labels, limits and faults.
    pub state: StateConfig,
    /// Connection cap and timeouts.
    pub connections: ConnLimits,
    /// Where to publish impressions (`None`: not published; `X-Impression-Id` is still set).
    pub impressions: Option<PublisherConfig>,
}

/// How long a stopping server waits for queued impressions to reach the broker.
pub const IMPRESSION_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The model could not be loaded; the server stops.
    #[error("model could not be loaded")]
    Load(#[source] LoadError),
    /// Installing the signal handlers failed.
    #[error("cannot install signal handlers")]
    Signal(#[source] std::io::Error),
    /// The Kafka producer for impressions could not be created (bad settings).
    #[error("cannot publish impressions")]
    Impressions(#[source] crate::bus::publish::PublisherError),
}

/// Binds, starts loading the model, serves until SIGTERM/SIGINT and the drain that follows
/// (→ `Ok`) or until the model fails to load (→ `Err(ServerError::Load)`).
pub async fn serve(
    config: ServeConfig,
    log_drop_counter: Option<tracing_appender::non_blocking::ErrorCounter>,
) -> Result<(), ServerError> {
    // Handlers first, so a SIGTERM right after the "listening" line is already graceful.
    let signals = shutdown_signals()?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(config.addr);
    let mut state = AppState::new(config.state.clone());
    if let Some(counter) = log_drop_counter {
        state = state.with_log_drop_counter(counter);
    }
    if let Some(impressions) = &config.impressions {
        let publisher = Publisher::start(impressions).map_err(ServerError::Impressions)?;
        tracing::info!(
            brokers = %impressions.brokers,
            topic = %impressions.topic,
            queue_records = impressions.queue_records,
            "publishing impressions to Kafka"
        );
        state = state.with_publisher(publisher);
    }
    let state = Arc::new(state);
    tracing::info!(
        addr = %local,
        release = %config.state.release,
        track = config.state.track.as_str(),
        max_inflight = config.state.max_inflight,
        max_queue_wait_ms = config.state.max_queue_wait.as_millis() as u64,
        model_threads = config.state.model_threads,
        max_connections = config.connections.max_connections,
        header_timeout_ms = config.connections.header_timeout.as_millis() as u64,
        idle_timeout_ms = config.connections.idle_timeout.as_millis() as u64,
        drain_ms = config.state.drain.period.as_millis() as u64,
        fault_delay_ms = config.state.faults.delay.as_millis() as u64,
        fault_cpu_us = config.state.faults.cpu.as_micros() as u64,
        fault_error_rate = config.state.faults.error_rate,
        "listening; model loading in the background"
    );
    let loading = load::load_model(
        config.source,
        config.expected_sha256,
        config.state.announced_version,
        config.fetch,
    );
    let result = run(
        listener,
        Arc::clone(&state),
        config.connections,
        loading,
        signals,
    )
    .await;
    let flushing = Arc::clone(&state);
    let flushed = tokio::task::spawn_blocking(move || {
        flushing
            .publisher()
            .map(|publisher| (publisher.flush(IMPRESSION_FLUSH), publisher.snapshot()))
    })
    .await;
    if let Ok(Some((left, counts))) = flushed {
        tracing::info!(
            delivered = counts.delivered,
            dropped_queue_full = counts.dropped_queue_full,
            dropped_failed = counts.dropped_failed,
            undelivered_at_exit = left,
            "impressions flushed"
        );
    }
    result
}

/// Serves on `listener` while `loading` runs; installs its model when it finishes.
///
/// Each message on `signals` is one shutdown signal: the first starts the drain (see
/// [`drain`]), a second ends the drain period at once. A failed load stops the server
/// without a drain period (it was never ready). Either way the function returns within the
/// drain period plus [`DrainPolicy::grace`] plus a few milliseconds, whatever clients do.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: ConnLimits,
    loading: impl Future<Output = Result<LoadedModel, LoadError>> + Send + 'static,
    mut signals: tokio::sync::mpsc::Receiver<()>,
) -> Result<(), ServerError> {
    let (failed_tx, mut failed_rx) = tokio::sync::oneshot::channel::<LoadError>();
    let loader_state = Arc::clone(&state);
    tokio::spawn(async move {
        let started = Instant::now();
        match loading.await {
            Ok(loaded) => {
                let version = loaded.recommender.version().to_owned();
                let sha = loaded.artifact_sha256.clone();
                loader_state.set_model(loaded);
                tracing::info!(
                    model_version = %version,
                    artifact_sha256 = %sha,
                    load_ms = started.elapsed().as_millis() as u64,
                    "model loaded; ready"
                );
            }
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "model could not be loaded");
                let _ = failed_tx.send(error);
            }
        }
    });

    let registry = conn::Registry::new(limits, Arc::clone(&state));
    let stop_accepting = Arc::new(tokio::sync::Notify::new());
    let acceptor = tokio::spawn(conn::accept_loop(
        listener,
        Arc::clone(&registry),
        Arc::clone(&stop_accepting),
    ));

    // Serving: until the first signal or a failed load.
    let failure = tokio::select! {
        Some(()) = signals.recv() => None,
        Ok(error) = &mut failed_rx => Some(error),
        // No signal source left and the model loaded: serve until the process is killed.
        else => std::future::pending().await,
    };
    if failure.is_none() {
        let policy = *state.drain.policy();
        state.drain.signal(Instant::now());
        tracing::info!(
            drain_ms = policy.period.as_millis() as u64,
            open_connections = registry.len(),
            "shutdown signal received; /readyz now 503, answers close their connections, serving until the drain period ends"
        );
        // Draining: until the period ends or a second signal.
        let deadline = state.drain.drain_deadline().unwrap_or_else(Instant::now);
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {}
            Some(()) = signals.recv() => {
                tracing::info!("second shutdown signal; ending the drain period now");
            }
        }
    }
    state.drain.advance(Phase::Stopping);

    // Stopping: no new connections; requests in progress get the grace, then all is dropped.
    stop_accepting.notify_one();
    let _ = acceptor.await;
    let left = close_connections(&registry, state.drain.policy().grace).await;
    match failure {
        None => {
            tracing::info!(connections_dropped = left, "server stopped");
            Ok(())
        }
        Some(error) => Err(ServerError::Load(error)),
    }
}

/// With the listener closed: idle connections close, requests in progress get `grace`, then
/// every connection left is dropped (100 ms for their tasks to notice). Returns how many were
/// still open after the grace.
async fn close_connections(registry: &conn::Registry, grace: std::time::Duration) -> usize {
    registry.shut_all(true);
    if tokio::time::timeout(grace, registry.wait_empty())
        .await
        .is_ok()
    {
        return 0;
    }
    let left = registry.len();
    registry.shut_all(false);
    let _ =
        tokio::time::timeout(std::time::Duration::from_millis(100), registry.wait_empty()).await;
    left
}

/// One message per SIGTERM or SIGINT.
fn shutdown_signals() -> Result<tokio::sync::mpsc::Receiver<()>, ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Routes panics to the JSON log (one ERROR line: message and location, no backtrace) instead
/// of stderr, so nothing reaches stderr outside the log. A panicking request is answered 500
/// by the connection layer; a panicking compute job 503.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            panic = %message,
            location = %location,
            thread = thread.name().unwrap_or("unnamed"),
            "panic"
        );
    }));
}
