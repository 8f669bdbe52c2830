//! Shared server state: the loaded model (set once), labels, admission, drain state, faults
//! and metrics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::HeaderValue;

use super::admission::{AdmissionConfig, Pool, Shed};
use super::conn::ConnStats;
use super::drain::{Drain, DrainPolicy};
use super::memo::{self, Memo};
use super::metrics::{
    ConstLabels, Gauges, Metrics, ModelInfo, ServedPath, render_impressions, render_memo,
};
use crate::bus::impression::{ImpressionEncoder, ImpressionIds, Millis};
use crate::bus::publish::Publisher;

/// What the server needs from a model: a ranked list and its provenance.
///
/// This is the seam between HTTP and maths: [`crate::model::Model`] implements it, and the
/// route tests use small hand-built models through the same trait.
pub trait Recommender: Send + Sync + 'static {
    /// The `n` best movie ids for `user`, best first, and the path that produced them.
    fn recommend(&self, user: u32, n: usize) -> (Vec<u32>, ServedPath);
    /// The model version recorded in the artifact.
    fn version(&self) -> &str;
    /// SHA-256 of the training data recorded in the artifact.
    fn data_sha256(&self) -> &str;
    /// Provenance for `/version` (version, data digest, training time, parameters, RMSE...).
    fn provenance(&self) -> serde_json::Value;
}

impl Recommender for crate::model::Model {
    fn recommend(&self, user: u32, n: usize) -> (Vec<u32>, ServedPath) {
        use crate::model::RecommendPath;
        // The list is handed back owned, so the one allocation is this exactly-sized buffer;
        // the model's scoring buffers are per-thread and reused.
        let mut movies = Vec::with_capacity(n.min(self.movie_count()));
        let path = match self.recommend_into(user, n, &mut movies) {
            RecommendPath::Personal => ServedPath::Personal,
            RecommendPath::ColdStart => ServedPath::ColdStart,
            RecommendPath::UnknownUser => ServedPath::UnknownUser,
        };
        (movies, path)
    }

    fn version(&self) -> &str {
        &self.metadata().version
    }

    fn data_sha256(&self) -> &str {
        &self.metadata().data_sha256
    }

    fn provenance(&self) -> serde_json::Value {
        serde_json::to_value(self.metadata()).unwrap_or_else(
            |error| serde_json::json!({ "error": format!("metadata not serialisable: {error}") }),
        )
    }
}

/// Which Deployment of a release this process belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Track {
    /// The serving version.
    Stable,
    /// The version under test.
    Canary,
}

impl Track {
    /// The `track` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Canary => "canary",
        }
    }
}

/// Chaos settings for `/recommend` (`MOVREK_FAULT_DELAY_MS`, `MOVREK_FAULT_ERROR_RATE`,
/// `MOVREK_FAULT_CPU_US`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Added to every `/recommend` before answering (an async wait: a slow dependency).
    pub delay: Duration,
    /// Busy CPU time added to every model call (a slower model), on the compute thread.
    pub cpu: Duration,
    /// Fraction of `/recommend` requests answered with 500, in `0.0..=1.0`.
    pub error_rate: f64,
}

/// True when request number `n` (0-based) of a stream should fail at `rate`.
///
/// Deterministic and exact: over any prefix of `m` requests, `floor(m · rate)` of them fail,
/// spread evenly (request `n` fails when `floor((n+1)·rate)` steps past `floor(n·rate)`).
pub fn injects_error(n: u64, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

/// A model that finished loading, with the digest of the artifact it came from.
#[derive(Clone)]
pub struct LoadedModel {
    /// The model.
    pub recommender: Arc<dyn Recommender>,
    /// SHA-256 of the artifact bytes (empty for a model trained in-process).
    pub artifact_sha256: String,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("version", &self.recommender.version())
            .field("artifact_sha256", &self.artifact_sha256)
            .finish_non_exhaustive()
    }
}

/// Settings the state is built from.
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// `release` label (`MOVREK_RELEASE`).
    pub release: String,
    /// `track` label (`MOVREK_TRACK`).
    pub track: Track,
    /// The version announced by the operator (`MOVREK_MODEL_VERSION`), if any.
    pub announced_version: Option<String>,
    /// `/recommend` requests allowed in flight at once; more get 503 at once.
    pub max_inflight: usize,
    /// Longest an admitted `/recommend` may wait for a compute thread.
    pub max_queue_wait: Duration,
    /// Compute threads for the model (0: inline on the async workers).
    pub model_threads: usize,
    /// Drain timings.
    pub drain: DrainPolicy,
    /// Chaos settings.
    pub faults: Faults,
    /// Memory budget of the per-user memo of answers ([`super::memo`]); 0 turns it off.
    pub memo_bytes: usize,
}

impl StateConfig {
    /// Default longest wait for a compute thread: 50 ms, far above the model's own time
    /// (tens of microseconds) and a scheduler hiccup, far below any client timeout.
    pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_millis(50);

    /// Default compute threads: one per CPU this process may use.
    pub fn default_model_threads() -> usize {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            release: "movrek".to_owned(),
            track: Track::Stable,
            announced_version: None,
            max_inflight: 1024,
            max_queue_wait: Self::DEFAULT_MAX_QUEUE_WAIT,
            model_threads: Self::default_model_threads(),
            drain: DrainPolicy {
                period: DrainPolicy::DEFAULT_PERIOD,
                grace: DrainPolicy::DEFAULT_GRACE,
            },
            faults: Faults::default(),
            memo_bytes: memo::DEFAULT_BUDGET_BYTES,
        }
    }
}

/// Everything request handlers share. Cheap to read on the hot path: the model is behind a
/// [`OnceLock`], counters are atomics.
#[derive(Debug)]
pub struct AppState {
    config: StateConfig,
    model: OnceLock<Served>,
    /// Version header before the model is loaded.
    pending_header: HeaderValue,
    /// Request counters and histograms.
    pub metrics: Metrics,
    /// Shutdown state.
    pub drain: Drain,
    /// Connection-layer counters.
    pub connections: ConnStats,
    pool: Pool,
    inflight: AtomicUsize,
    fault_counter: AtomicU64,
    log_dropped: Option<tracing_appender::non_blocking::ErrorCounter>,
    impression_ids: ImpressionIds,
    publisher: Option<Publisher>,
    memo: Option<Memo>,
}

#[derive(Debug)]
struct Served {
    loaded: LoadedModel,
    header: HeaderValue,
    /// Writes this model's impression records.
    impressions: ImpressionEncoder,
}

impl AppState {
    /// A state with no model yet (`/readyz` answers 503 until [`AppState::set_model`]).
    pub fn new(config: StateConfig) -> Self {
        let pending = config.announced_version.as_deref().unwrap_or("none");
        let pending_header =
            HeaderValue::from_str(pending).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let pool = Pool::start(AdmissionConfig {
            max_inflight: config.max_inflight,
            max_queue_wait: config.max_queue_wait,
            threads: config.model_threads,
        });
        Self {
            drain: Drain::new(config.drain),
            model: OnceLock::new(),
            pending_header,
            metrics: Metrics::default(),
            connections: ConnStats::default(),
            pool,
            inflight: AtomicUsize::new(0),
            fault_counter: AtomicU64::new(0),
            log_dropped: None,
            impression_ids: ImpressionIds::from_clock(),
            publisher: None,
            // A CPU fault stands for a slower model on every call; a memo would hide it.
            memo: (config.memo_bytes > 0 && config.faults.cpu.is_zero())
                .then(|| Memo::new(config.memo_bytes)),
            config,
        }
    }

    /// The per-user memo of answers, unless it is off (budget 0, or a CPU fault).
    pub fn memo(&self) -> Option<&Memo> {
        self.memo.as_ref()
    }

    /// Publishes an impression for every 200 from `/recommend` (see [`crate::bus`]).
    #[must_use]
    pub fn with_publisher(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// The impression publisher, if Kafka is configured.
    pub fn publisher(&self) -> Option<&Publisher> {
        self.publisher.as_ref()
    }

    /// Records that `movies` were shown to `user` and returns the impression id (sent as
    /// `X-Impression-Id`). With a publisher the impression is queued for Kafka; it never
    /// waits for the broker.
    pub fn impression(&self, user: u32, movies: &[u32]) -> String {
        thread_local! {
            static RECORD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let id = self.impression_ids.next();
        if let (Some(publisher), Some(served)) = (&self.publisher, self.model.get()) {
            RECORD.with(|record| {
                let mut record = record.borrow_mut();
                served
                    .impressions
                    .encode_into(&mut record, &id, Millis::now(), user, movies);
                publisher.publish_encoded(user, &record);
            });
        }
        id
    }

    /// Exposes the non-blocking log writer's drop counter in `/metrics`.
    #[must_use]
    pub fn with_log_drop_counter(
        mut self,
        counter: tracing_appender::non_blocking::ErrorCounter,
    ) -> Self {
        self.log_dropped = Some(counter);
        self
    }

    /// Installs the model; the server is ready from now on. Returns `false` (and changes
    /// nothing) if a model was already installed: a process serves one model for its life.
    pub fn set_model(&self, loaded: LoadedModel) -> bool {
        let header = HeaderValue::from_str(loaded.recommender.version())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let impressions = ImpressionEncoder::new(
            &self.config.release,
            self.config.track.as_str(),
            loaded.recommender.version(),
            &loaded.artifact_sha256,
        );
        self.model
            .set(Served {
                loaded,
                header,
                impressions,
            })
            .is_ok()
    }

    /// The loaded model, if any.
    pub fn model(&self) -> Option<&LoadedModel> {
        self.model.get().map(|s| &s.loaded)
    }

    /// The settings this state was built with.
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// Value of the `X-Model-Version` header: the loaded model's version, else the announced
    /// one, else `none`.
    pub fn version_header(&self) -> HeaderValue {
        self.model
            .get()
            .map_or_else(|| self.pending_header.clone(), |s| s.header.clone())
    }

    /// The `model_version` label: loaded version, else announced, else empty.
    pub fn model_version_label(&self) -> &str {
        match self.model.get() {
            Some(s) => s.loaded.recommender.version(),
            None => self.config.announced_version.as_deref().unwrap_or(""),
        }
    }

    /// Admits one `/recommend`: an in-flight slot, unless the limit is reached or the queue
    /// for the model would make it wait too long.
    pub fn admit(self: &Arc<Self>) -> Result<InflightGuard, Shed> {
        let previous = self.inflight.fetch_add(1, Ordering::AcqRel);
        if let Err(shed) = self.pool.admit(previous) {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(shed);
        }
        Ok(InflightGuard {
            state: Arc::clone(self),
        })
    }

    /// The compute pool that runs the model.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether the next `/recommend` should get an injected 500.
    pub fn next_request_fails(&self) -> bool {
        let rate = self.config.faults.error_rate;
        rate > 0.0 && injects_error(self.fault_counter.fetch_add(1, Ordering::Relaxed), rate)
    }

    /// The Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let labels = ConstLabels {
            release: &self.config.release,
            track: self.config.track.as_str(),
            model_version: self.model_version_label(),
        };
        let info = self.model().map(|m| ModelInfo {
            artifact_sha256: &m.artifact_sha256,
            data_sha256: m.recommender.data_sha256(),
        });
        let gauges = Gauges {
            ready: self.model.get().is_some(),
            inflight: self.inflight.load(Ordering::Relaxed) as u64,
            max_inflight: self.config.max_inflight as u64,
            log_lines_dropped: self
                .log_dropped
                .as_ref()
                .map_or(0, |c| c.dropped_lines() as u64),
            queued: self.pool.queued() as u64,
            draining: self.drain.phase() != super::drain::Phase::Serving,
            connections_open: self.connections.open.load(Ordering::Relaxed) as u64,
            connections_max: self.connections.max.load(Ordering::Relaxed) as u64,
            connections_evicted: self.connections.evicted.load(Ordering::Relaxed),
            connections_refused: self.connections.refused.load(Ordering::Relaxed),
            connections_timed_out: self.connections.timed_out.load(Ordering::Relaxed),
        };
        let mut out = self.metrics.render(&labels, info.as_ref(), gauges);
        render_memo(
            &mut out,
            &labels,
            &self.memo.as_ref().map(Memo::counts).unwrap_or_default(),
        );
        if let Some(publisher) = &self.publisher {
            render_impressions(&mut out, &labels, &publisher.snapshot());
        }
        out
    }
}

/// One in-flight `/recommend`; releases its slot when dropped (also when the client goes away).
#[derive(Debug)]
pub struct InflightGuard {
    state: Arc<AppState>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.state.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_injection_is_exact_over_prefixes() {
        for rate in [0.0, 0.01, 0.2, 0.5, 1.0 / 3.0, 0.99, 1.0] {
            for m in [1_u64, 7, 100, 1000] {
                let failed = (0..m).filter(|&n| injects_error(n, rate)).count() as u64;
                assert_eq!(
                    failed,
                    (m as f64 * rate).floor() as u64,
                    "rate {rate} m {m}"
                );
            }
        }
    }

    #[test]
    fn inflight_limit_sheds_and_guard_releases() {
        let state = Arc::new(AppState::new(StateConfig {
            max_inflight: 2,
            model_threads: 0,
            ..StateConfig::default()
        }));
        let a = state.admit().expect("first slot");
        let b = state.admit().expect("second slot");
        assert_eq!(state.admit().err(), Some(Shed::InflightLimit));
        drop(a);
        let c = state.admit().expect("slot freed by drop");
        assert!(state.admit().is_err());
        drop((b, c));
        assert_eq!(state.inflight.load(Ordering::Relaxed), 0);
    }
}
