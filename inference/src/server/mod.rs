//! The HTTP inference server (`movrek serve`): the pod contract of DESIGN.md on warp.
//!
//! It listens at once, loads the model in the background (`/healthz` 200, `/readyz` 503 until
//! then), answers `GET /recommend/{user_id}` by calling the model and nothing else, counts
//! everything in lock-free metrics, sheds load beyond an in-flight limit with fast 503s, can
//! inject delays and errors for chaos tests, and shuts down gracefully on SIGTERM/SIGINT.
//! This is the only module that knows warp and tokio.

mod http;
pub mod load;
pub mod metrics;
mod route;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub use http::{LIST_LEN, MODEL_VERSION_HEADER, join_ids, routes};
pub use load::{FetchLimits, LoadError, ModelUri};
pub use metrics::ServedPath;
pub use route::{BadUserId, Route, RouteLabel, parse_user_id};
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
}

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
}

/// Binds, starts loading the model, serves until SIGTERM/SIGINT (→ `Ok`) or until the model
/// fails to load (→ `Err(ServerError::Load)`).
pub async fn serve(
    config: ServeConfig,
    log_drop_counter: Option<tracing_appender::non_blocking::ErrorCounter>,
) -> Result<(), ServerError> {
    // Handlers first, so a SIGTERM right after the "listening" line is already graceful.
    let shutdown = shutdown_signal()?;
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
    let state = Arc::new(state);
    tracing::info!(
        addr = %local,
        release = %config.state.release,
        track = config.state.track.as_str(),
        max_inflight = config.state.max_inflight,
        fault_delay_ms = config.state.faults.delay.as_millis() as u64,
        fault_error_rate = config.state.faults.error_rate,
        "listening; model loading in the background"
    );
    let loading = load::load_model(
        config.source,
        config.expected_sha256,
        config.state.announced_version,
        config.fetch,
    );
    run(listener, state, loading, shutdown).await
}

/// Serves on `listener` while `loading` runs; installs its model when it finishes. Stops
/// gracefully (in-flight requests finish, idle connections close) when `shutdown`
/// completes, or when loading fails.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    loading: impl Future<Output = Result<LoadedModel, LoadError>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<LoadError>();
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

    let (reason_tx, reason_rx) = tokio::sync::oneshot::channel::<Option<LoadError>>();
    let graceful = async move {
        let reason = tokio::select! {
            () = shutdown => {
                tracing::info!("shutdown signal received; finishing in-flight requests");
                None
            }
            // When loading succeeds the sender is dropped and this branch is disabled.
            Ok(error) = failed_rx => Some(error),
        };
        let _ = reason_tx.send(reason);
    };
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(graceful)
        .run()
        .await;
    match reason_rx.await.unwrap_or(None) {
        None => {
            tracing::info!("server stopped");
            Ok(())
        }
        Some(error) => Err(ServerError::Load(error)),
    }
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// An error and its sources on one line: `outer: inner: root`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
