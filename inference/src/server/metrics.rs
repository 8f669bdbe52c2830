//! Server metrics: lock-free atomic counters and histograms, rendered as Prometheus text.
//!
//! Every label set is known in advance (route template × status, three recommendation
//! paths), so the hot path is a few relaxed atomic adds into fixed arrays — no map lookup,
//! no lock, no allocation. The constant labels `release`, `track` and `model_version` are
//! supplied at render time by the caller.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::memo::MemoCounts;
use super::route::RouteLabel;
use movrek_contract::metrics::{REQUEST_DURATION, REQUESTS};

/// Every status the server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: bad user id.
    BadRequest,
    /// 404: unknown path.
    NotFound,
    /// 405: wrong method on a known path.
    MethodNotAllowed,
    /// 414: request target too long (written by hyper).
    UriTooLong,
    /// 431: request head too large (written by hyper).
    HeaderFieldsTooLarge,
    /// 500: injected fault, or a handler panic.
    InternalError,
    /// 503: model not loaded yet, draining (`/readyz`), or overload shed.
    Unavailable,
}

impl Status {
    /// All statuses, in exposition order.
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::UriTooLong,
        Status::HeaderFieldsTooLarge,
        Status::InternalError,
        Status::Unavailable,
    ];

    /// The HTTP status code.
    pub fn code(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Status::Ok => StatusCode::OK,
            Status::BadRequest => StatusCode::BAD_REQUEST,
            Status::NotFound => StatusCode::NOT_FOUND,
            Status::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Status::UriTooLong => StatusCode::URI_TOO_LONG,
            Status::HeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Status::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which branch of the model produced a served list (counted on every 200 from `/recommend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServedPath {
    /// Neighbourhood-based personal ranking.
    Personal,
    /// A known user with too little history: demographic cold start.
    ColdStart,
    /// A user id the model has never seen: the generic cold-start list.
    UnknownUser,
}

impl ServedPath {
    /// All paths, in exposition order.
    pub const ALL: [ServedPath; 3] = [
        ServedPath::Personal,
        ServedPath::ColdStart,
        ServedPath::UnknownUser,
    ];

    /// The `path` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedPath::Personal => "personal",
            ServedPath::ColdStart => "cold_start",
            ServedPath::UnknownUser => "unknown_user",
        }
    }
}

/// Upper bounds of the latency histogram buckets, in seconds: 25 µs to 10 s (the
/// operator's analysis checks a latency bound against the same list).
pub use movrek_contract::metrics::LATENCY_BUCKETS_SECONDS as BUCKETS_SECONDS;

const BUCKETS_NANOS: [u64; 18] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A fixed-bucket latency histogram. Buckets are stored non-cumulatively (one add per
/// observation) and accumulated when rendered; the last slot is `+Inf`.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_NANOS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKETS_NANOS.partition_point(|&upper| upper < nanos);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Constant labels of this process, rendered on every series.
#[derive(Clone, Debug)]
pub struct ConstLabels<'a> {
    /// `release`: the `RecommenderRelease` name.
    pub release: &'a str,
    /// `track`: `stable` or `canary`.
    pub track: &'a str,
    /// `model_version`: the version being served (or announced, before it loads).
    pub model_version: &'a str,
}

impl ConstLabels<'_> {
    /// `release="…",track="…",model_version="…"`, escaped.
    pub fn render(&self) -> String {
        format!(
            "release=\"{}\",track=\"{}\",model_version=\"{}\"",
            escape(self.release),
            escape(self.track),
            escape(self.model_version)
        )
    }
}

/// Appends the impression publisher's series: records queued, delivered and dropped (by
/// reason), and those still waiting for the broker.
pub fn render_impressions(
    out: &mut String,
    labels: &ConstLabels<'_>,
    counts: &crate::bus::publish::PublishSnapshot,
) {
    let base = labels.render();
    let counters = [
        (
            "movrek_impressions_queued_total",
            "counter",
            "Impressions handed to the Kafka producer's queue.",
            counts.queued,
        ),
        (
            "movrek_impressions_delivered_total",
            "counter",
            "Impressions acknowledged by the Kafka broker.",
            counts.delivered,
        ),
        (
            "movrek_impressions_in_flight",
            "gauge",
            "Impressions queued and not yet delivered or failed.",
            counts.in_flight,
        ),
    ];
    unlabelled(out, &base, &counters);
    header(
        out,
        "movrek_impressions_dropped_total",
        "counter",
        "Impressions never delivered: queue_full (dropped on the request path) or failed (delivery error or timeout).",
    );
    for (reason, value) in [
        ("queue_full", counts.dropped_queue_full),
        ("failed", counts.dropped_failed),
    ] {
        let _ = writeln!(
            out,
            "movrek_impressions_dropped_total{{{base},reason=\"{reason}\"}} {value}"
        );
    }
}

/// Appends the answer memo's series: hits, misses, users kept, and bytes kept against the
/// budget (all zero when the memo is off).
pub fn render_memo(out: &mut String, labels: &ConstLabels<'_>, counts: &MemoCounts) {
    let base = labels.render();
    let series = [
        (
            "movrek_memo_hits_total",
            "counter",
            "/recommend answers sent from the per-user memo, without running the model.",
            counts.hits,
        ),
        (
            "movrek_memo_misses_total",
            "counter",
            "/recommend requests that found no kept answer and ran the model.",
            counts.misses,
        ),
        (
            "movrek_memo_entries",
            "gauge",
            "Users whose answer the memo keeps.",
            counts.entries,
        ),
        (
            "movrek_memo_bytes",
            "gauge",
            "Estimated bytes of the kept answers.",
            counts.bytes,
        ),
        (
            "movrek_memo_budget_bytes",
            "gauge",
            "Memory budget of the memo; once reached, new answers are not kept (0: memo off).",
            counts.budget_bytes,
        ),
    ];
    unlabelled(out, &base, &series);
}

/// Provenance of the loaded model, for `movrek_model_info`.
#[derive(Clone, Debug)]
pub struct ModelInfo<'a> {
    /// SHA-256 of the artifact file.
    pub artifact_sha256: &'a str,
    /// SHA-256 of the training data.
    pub data_sha256: &'a str,
}

/// Gauges sampled at render time.
#[derive(Clone, Copy, Debug)]
pub struct Gauges {
    /// 1 when the model is loaded.
    pub ready: bool,
    /// Requests currently inside `/recommend`.
    pub inflight: u64,
    /// The configured in-flight limit.
    pub max_inflight: u64,
    /// Log lines dropped by the non-blocking writer since start.
    pub log_lines_dropped: u64,
    /// `/recommend` requests waiting for a compute thread.
    pub queued: u64,
    /// 1 from the shutdown signal on.
    pub draining: bool,
    /// Open connections.
    pub connections_open: u64,
    /// The connection cap.
    pub connections_max: u64,
    /// Connections closed to make room for a newcomer.
    pub connections_evicted: u64,
    /// Newcomers closed at once because every connection was busy.
    pub connections_refused: u64,
    /// Connections closed by a header, idle or write timeout.
    pub connections_timed_out: u64,
}

const ROUTES: usize = RouteLabel::ALL.len();
const STATUSES: usize = Status::ALL.len();

/// All counters and histograms of one server process.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; STATUSES]; ROUTES],
    durations: [Histogram; ROUTES],
    served: [AtomicU64; ServedPath::ALL.len()],
}

impl Metrics {
    /// Records one finished request.
    pub fn record(&self, route: RouteLabel, status: Status, elapsed: Duration) {
        self.requests[route.index()][status.index()].fetch_add(1, Ordering::Relaxed);
        self.durations[route.index()].observe(elapsed);
    }

    /// Records which model path answered a successful `/recommend`.
    pub fn record_served(&self, path: ServedPath) {
        self.served[path as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Number of requests recorded for `route` with `status`.
    pub fn requests(&self, route: RouteLabel, status: Status) -> u64 {
        self.requests[route.index()][status.index()].load(Ordering::Relaxed)
    }

    /// Renders everything in the Prometheus text exposition format (version 0.0.4).
    ///
    /// `/recommend` series are rendered for every status even at zero, so that rate and
    /// error-ratio queries find a series from the first scrape; other routes appear once used.
    pub fn render(
        &self,
        labels: &ConstLabels<'_>,
        model: Option<&ModelInfo<'_>>,
        gauges: Gauges,
    ) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let base = labels.render();
        self.render_requests(&mut out, &base);
        self.render_durations(&mut out, &base);
        self.render_served(&mut out, &base);

        header(
            &mut out,
            "movrek_model_info",
            "gauge",
            "Always 1 once a model is loaded; labels carry its provenance.",
        );
        if let Some(info) = model {
            let _ = writeln!(
                out,
                "movrek_model_info{{{base},artifact_sha256=\"{}\",data_sha256=\"{}\"}} 1",
                escape(info.artifact_sha256),
                escape(info.data_sha256)
            );
        }
        let simple = [
            (
                "movrek_model_ready",
                "gauge",
                "1 when the model is loaded and /readyz answers 200.",
                u64::from(gauges.ready),
            ),
            (
                "movrek_inflight_requests",
                "gauge",
                "Requests currently being answered by /recommend.",
                gauges.inflight,
            ),
            (
                "movrek_max_inflight_requests",
                "gauge",
                "In-flight limit; /recommend answers 503 beyond it.",
                gauges.max_inflight,
            ),
            (
                "movrek_log_lines_dropped_total",
                "counter",
                "Log lines dropped because the non-blocking log writer was full.",
                gauges.log_lines_dropped,
            ),
            (
                "movrek_queued_requests",
                "gauge",
                "/recommend requests waiting for a compute thread.",
                gauges.queued,
            ),
            (
                "movrek_draining",
                "gauge",
                "1 once a shutdown signal was received (/readyz answers 503).",
                u64::from(gauges.draining),
            ),
            (
                "movrek_connections_open",
                "gauge",
                "Open client connections.",
                gauges.connections_open,
            ),
            (
                "movrek_connections_max",
                "gauge",
                "Connection cap; at the cap a newcomer evicts the stalest idle connection.",
                gauges.connections_max,
            ),
            (
                "movrek_connections_evicted_total",
                "counter",
                "Connections without a request in progress closed to make room for a newcomer.",
                gauges.connections_evicted,
            ),
            (
                "movrek_connections_refused_total",
                "counter",
                "New connections closed at once because every open one had a request in progress.",
                gauges.connections_refused,
            ),
            (
                "movrek_connections_timed_out_total",
                "counter",
                "Connections closed by the header, idle or write timeout.",
                gauges.connections_timed_out,
            ),
        ];
        unlabelled(&mut out, &base, &simple);
        out
    }

    fn render_requests(&self, out: &mut String, base: &str) {
        header(
            out,
            REQUESTS,
            "counter",
            "HTTP requests answered, by route template and status code.",
        );
        for route in RouteLabel::ALL {
            for status in Status::ALL {
                let n = self.requests(route, status);
                if n > 0 || route == RouteLabel::Recommend {
                    let _ = writeln!(
                        out,
                        "{REQUESTS}{{{base},route=\"{}\",status=\"{}\"}} {n}",
                        route.as_str(),
                        status.code().as_u16()
                    );
                }
            }
        }
    }

    fn render_durations(&self, out: &mut String, base: &str) {
        header(
            out,
            REQUEST_DURATION,
            "histogram",
            "Time from request routing to response, by route template.",
        );
        for route in RouteLabel::ALL {
            let h = &self.durations[route.index()];
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 && route != RouteLabel::Recommend {
                continue;
            }
            let route = route.as_str();
            let series = format!("{base},route=\"{route}\"");
            let mut cumulative = 0;
            for (i, upper) in BUCKETS_SECONDS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{REQUEST_DURATION}_bucket{{{series},le=\"{upper}\"}} {cumulative}"
                );
            }
            cumulative += h.buckets[BUCKETS_NANOS.len()].load(Ordering::Relaxed);
            // Concurrent observations may land between loads; +Inf must equal _count.
            let count = count.max(cumulative);
            let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "{REQUEST_DURATION}_bucket{{{series},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(out, "{REQUEST_DURATION}_sum{{{series}}} {sum}");
            let _ = writeln!(out, "{REQUEST_DURATION}_count{{{series}}} {count}");
        }
    }

    fn render_served(&self, out: &mut String, base: &str) {
        header(
            out,
            "movrek_recommendations_total",
            "counter",
            "Successful recommendation lists, by the model path that produced them.",
        );
        for path in ServedPath::ALL {
            let _ = writeln!(
                out,
                "movrek_recommendations_total{{{base},path=\"{}\"}} {}",
                path.as_str(),
                self.served[path as usize].load(Ordering::Relaxed)
            );
        }
    }
}

/// One series per `(name, type, help, value)`, each with only the `base` labels.
fn unlabelled(out: &mut String, base: &str, series: &[(&str, &str, &str, u64)]) {
    for &(name, kind, help, value) in series {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name}{{{base}}} {value}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value per the exposition format: backslash, double quote, newline.
pub use movrek_contract::metrics::escape_exposition as escape;

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> ConstLabels<'static> {
        ConstLabels {
            release: "movies",
            track: "canary",
            model_version: "v7",
        }
    }

    fn gauges() -> Gauges {
        Gauges {
            ready: true,
            inflight: 0,
            max_inflight: 8,
            log_lines_dropped: 0,
            queued: 0,
            draining: false,
            connections_open: 0,
            connections_max: 0,
            connections_evicted: 0,
            connections_refused: 0,
            connections_timed_out: 0,
        }
    }

    fn line_value(text: &str, prefix: &str) -> f64 {
        raw_value(text, prefix).parse().unwrap()
    }

    fn count(text: &str, prefix: &str) -> u64 {
        raw_value(text, prefix).parse().unwrap()
    }

    fn raw_value<'t>(text: &'t str, prefix: &str) -> &'t str {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix} in\n{text}"));
        line.rsplit(' ').next().unwrap()
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let m = Metrics::default();
        m.record(
            RouteLabel::Recommend,
            Status::Ok,
            Duration::from_micros(100),
        );
        m.record(
            RouteLabel::Recommend,
            Status::Ok,
            Duration::from_micros(700),
        );
        m.record(RouteLabel::Recommend, Status::Ok, Duration::from_secs(60));
        let text = m.render(&labels(), None, gauges());
        let b = "movrek_request_duration_seconds_bucket{release=\"movies\",track=\"canary\",model_version=\"v7\",route=\"/recommend\",le=";
        // 100 µs sits exactly on a bound: le is "less than or equal".
        assert_eq!(count(&text, &format!("{b}\"0.00005\"}}")), 0);
        assert_eq!(count(&text, &format!("{b}\"0.0001\"}}")), 1);
        assert_eq!(count(&text, &format!("{b}\"0.0005\"}}")), 1);
        assert_eq!(count(&text, &format!("{b}\"0.001\"}}")), 2);
        assert_eq!(count(&text, &format!("{b}\"10\"}}")), 2);
        assert_eq!(count(&text, &format!("{b}\"+Inf\"}}")), 3);
        let sum = line_value(&text, "movrek_request_duration_seconds_sum{");
        assert!((sum - 60.0008).abs() < 1e-9, "sum {sum}");
        assert_eq!(count(&text, "movrek_request_duration_seconds_count{"), 3);
    }

    #[test]
    fn requests_are_counted_per_route_and_status() {
        let m = Metrics::default();
        m.record(RouteLabel::Other, Status::NotFound, Duration::ZERO);
        m.record(RouteLabel::Other, Status::NotFound, Duration::ZERO);
        m.record(RouteLabel::Recommend, Status::Unavailable, Duration::ZERO);
        let text = m.render(&labels(), None, gauges());
        let p = "movrek_requests_total{release=\"movies\",track=\"canary\",model_version=\"v7\",";
        assert_eq!(
            count(&text, &format!("{p}route=\"other\",status=\"404\"}}")),
            2
        );
        assert_eq!(
            count(&text, &format!("{p}route=\"/recommend\",status=\"503\"}}")),
            1
        );
        // Zero /recommend series exist from the start; unused routes do not.
        assert_eq!(
            count(&text, &format!("{p}route=\"/recommend\",status=\"500\"}}")),
            0
        );
        assert!(!text.contains("route=\"/healthz\""));
    }

    #[test]
    fn model_info_only_once_loaded_and_label_values_escaped() {
        let m = Metrics::default();
        let weird = ConstLabels {
            release: "a\"b\\c\nd",
            ..labels()
        };
        let text = m.render(&weird, None, gauges());
        assert!(text.contains("release=\"a\\\"b\\\\c\\nd\""));
        assert!(!text.contains("movrek_model_info{"));
        let info = ModelInfo {
            artifact_sha256: "abc",
            data_sha256: "def",
        };
        let text = m.render(&labels(), Some(&info), gauges());
        assert!(text.contains("artifact_sha256=\"abc\",data_sha256=\"def\"} 1"));
    }

    #[test]
    fn served_paths_are_counted() {
        let m = Metrics::default();
        m.record_served(ServedPath::ColdStart);
        m.record_served(ServedPath::ColdStart);
        m.record_served(ServedPath::UnknownUser);
        let text = m.render(&labels(), None, gauges());
        assert_eq!(
            count(
                &text,
                "movrek_recommendations_total{release=\"movies\",track=\"canary\",model_version=\"v7\",path=\"cold_start\"}"
            ),
            2
        );
        assert_eq!(
            count(
                &text,
                "movrek_recommendations_total{release=\"movies\",track=\"canary\",model_version=\"v7\",path=\"personal\"}"
            ),
            0
        );
    }
}
