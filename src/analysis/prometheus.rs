//! Prometheus as a [`MetricsSource`]: the `PromQL` the canary is judged by (pure builders over
//! the metric names of the pod contract) and the HTTP client that runs it with a bounded time.

use std::time::Duration;

use prometheus_http_query::{Client, Error as PromError, response::Data};

use super::compare::TrackCounts;
use super::{
    AnalysisQuery, CanaryMetrics, JudgeRequest, MetricsError, MetricsSource, TrackFigures,
};
use crate::egress::{EgressError, HostAllowList};

/// Upper bounds (seconds) of `movrek serve`'s latency histogram buckets: a slow-request bound
/// must be one of them.
pub use movrek_contract::metrics::LATENCY_BUCKETS_SECONDS;
/// Escapes a label value for a double-quoted `PromQL` string literal.
pub use movrek_contract::metrics::escape_promql as escape_label_value;
use movrek_contract::metrics::{
    ONLINE_HITS as HITS_METRIC, ONLINE_IMPRESSIONS as IMPRESSIONS_METRIC,
    ONLINE_SCORE as SCORE_METRIC, ONLINE_SCORE_SQUARES as SCORE_SQUARES_METRIC,
    REQUEST_DURATION as DURATION_METRIC, REQUESTS as REQUESTS_METRIC,
};

/// The route template the canary is judged on.
pub const RECOMMEND_ROUTE: &str = "/recommend";

/// The queries of the canary-versus-stable comparison: each returns one series per track
/// (`sum by (track)`) of a counter's increase since the step began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountQueries {
    /// `/recommend` answers.
    pub requests: String,
    /// 5xx answers.
    pub errors: String,
    /// Answers slower than the bound: the histogram count minus the bound's bucket.
    pub slow: String,
    /// Scored lists.
    pub scored: String,
    /// Scored lists with a hit.
    pub hits: String,
    /// Sum of scores.
    pub score_sum: String,
    /// Sum of squared scores.
    pub score_squares: String,
    /// The evaluator's impressions counter as it is now (no range: only live series), to
    /// tell a silent evaluator from a quiet track.
    pub evaluator_live: String,
}

impl CountQueries {
    /// Builds the queries for the release of `query` over the range of `judge`.
    ///
    /// # Caveats
    /// The evaluator's series carry the release name but not its namespace, so two releases
    /// of the same name in different namespaces share their quality figures.
    pub fn for_request(query: &AnalysisQuery, judge: &JudgeRequest) -> Self {
        let range = format!("{}s", judge.since.as_secs().max(1));
        let release = escape_label_value(&query.release);
        let namespace = query
            .namespace
            .as_deref()
            .map(|ns| format!("namespace=\"{}\",", escape_label_value(ns)))
            .unwrap_or_default();
        let tracks = "track=~\"canary|stable\"";
        let served =
            format!("{namespace}release=\"{release}\",{tracks},route=\"{RECOMMEND_ROUTE}\"");
        let increase = |metric: &str, matchers: &str| {
            format!("sum by (track)(increase({metric}{{{matchers}}}[{range}]))")
        };
        // Quality series per track *and* version: a rolled-back canary's lists are still
        // being scored for an attribution window after its pods are gone.
        let versioned = |track: &str, version: &str| {
            format!(
                "release=\"{release}\",track=\"{track}\",model_version=\"{}\"",
                escape_label_value(version)
            )
        };
        let (canary, stable) = (
            versioned("canary", &judge.versions.canary),
            versioned("stable", &judge.versions.stable),
        );
        let quality = |metric: &str| {
            format!(
                "{} or {}",
                increase(metric, &canary),
                increase(metric, &stable)
            )
        };
        // Prometheus 3 writes classic-histogram `le` values as floats ("1.0" for "1").
        let le = format!("{}", judge.slow_bound_seconds);
        let le = if le.contains('.') {
            le
        } else {
            format!("{le}(\\\\.0)?")
        };
        Self {
            requests: increase(REQUESTS_METRIC, &served),
            errors: increase(REQUESTS_METRIC, &format!("{served},status=~\"5..\"")),
            slow: format!(
                "{} - {}",
                increase(&format!("{DURATION_METRIC}_count"), &served),
                increase(
                    &format!("{DURATION_METRIC}_bucket"),
                    &format!("{served},le=~\"{le}\"")
                )
            ),
            scored: quality(&format!("{SCORE_METRIC}_count")),
            hits: quality(HITS_METRIC),
            score_sum: quality(&format!("{SCORE_METRIC}_sum")),
            score_squares: quality(SCORE_SQUARES_METRIC),
            evaluator_live: format!(
                "sum by (track)({IMPRESSIONS_METRIC}{{{canary}}}) or sum by (track)({IMPRESSIONS_METRIC}{{{stable}}})"
            ),
        }
    }
}

/// Renders a window as a `PromQL` duration (`10s`, `5m`, `1h`, `1500ms`), using the largest
/// unit that divides it exactly. `None` for windows under one millisecond, which `PromQL`
/// cannot express and which could never hold two samples.
pub fn promql_duration(window: Duration) -> Option<String> {
    let ms = window.as_millis();
    if ms == 0 {
        return None;
    }
    Some(if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    })
}

/// The four `PromQL` queries of one analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queries {
    /// Mean `/recommend` latency: rate of the histogram sum over rate of its count.
    pub average_latency: String,
    /// 99th percentile from the histogram buckets.
    ///
    /// # Caveats
    /// `histogram_quantile` never reports more than the largest finite bucket bound (10 s
    /// for `movrek serve`), so a `maxP99Latency` at or above that bound can never fail.
    pub p99_latency: String,
    /// 5xx answers over all answers (0 when there are answers but no 5xx series).
    pub error_rate: String,
    /// Requests in the window.
    pub requests: String,
}

impl Queries {
    /// Builds the queries for `q`. `None` when the window cannot be expressed (see
    /// [`promql_duration`]).
    pub fn for_query(query: &AnalysisQuery) -> Option<Self> {
        let window = promql_duration(query.window)?;
        let namespace = query
            .namespace
            .as_deref()
            .map(|ns| format!("namespace=\"{}\",", escape_label_value(ns)))
            .unwrap_or_default();
        let matchers = format!(
            "{namespace}release=\"{}\",track=\"{}\",route=\"{RECOMMEND_ROUTE}\"",
            escape_label_value(&query.release),
            query.track.as_label(),
        );
        let sel = |metric: &str, extra: &str| format!("{metric}{{{matchers}{extra}}}[{window}]");
        let duration = |suffix: &str| sel(&format!("{DURATION_METRIC}_{suffix}"), "");
        Some(Self {
            average_latency: format!(
                "sum(rate({})) / sum(rate({}))",
                duration("sum"),
                duration("count")
            ),
            p99_latency: format!(
                "histogram_quantile(0.99, sum by (le)(rate({})))",
                duration("bucket")
            ),
            // Without `or vector(0)` a canary that never failed has no 5xx series, the
            // numerator is empty and the whole ratio would read as "no data".
            error_rate: format!(
                "(sum(rate({})) or vector(0)) / sum(rate({}))",
                sel(REQUESTS_METRIC, ",status=~\"5..\""),
                sel(REQUESTS_METRIC, "")
            ),
            requests: format!("sum(increase({}))", sel(REQUESTS_METRIC, "")),
        })
    }
}

/// Reads the Prometheus HTTP API with one shared HTTP client.
///
/// # Guarantees
/// Each analysis finishes within the configured timeout: every HTTP request carries it,
/// Prometheus is asked to stop evaluating after it, and the four queries run concurrently
/// under one overall deadline of the same length.
///
/// Only addresses its [`HostAllowList`] allows are queried (redirects included); any other
/// ends in [`MetricsError::NotAllowed`] before a request is sent.
#[derive(Clone, Debug)]
pub struct Prometheus {
    http: reqwest::Client,
    timeout: Duration,
    allowed: HostAllowList,
}

/// The operator flag that restricts Prometheus addresses.
pub const ALLOWED_HOSTS_FLAG: &str = "--allowed-prometheus-hosts";

impl Prometheus {
    /// A client whose analyses give up after `timeout` (e.g. 10 s), for any address but
    /// link-local ones.
    pub fn new(timeout: Duration) -> Result<Self, MetricsError> {
        Self::with_allowed_hosts(timeout, HostAllowList::allow_all(ALLOWED_HOSTS_FLAG))
    }

    /// A client that only queries hosts `allowed` lets through.
    pub fn with_allowed_hosts(
        timeout: Duration,
        allowed: HostAllowList,
    ) -> Result<Self, MetricsError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(allowed.redirect_policy(5))
            .build()
            .map_err(|e| MetricsError::InvalidRequest(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            http,
            timeout,
            allowed,
        })
    }

    /// The bound on one analysis.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A client for `address` when the allow-list lets it through (a malformed address is
    /// reported by `Client::from`).
    fn client(&self, address: &str) -> Result<Client, MetricsError> {
        if let Err(refused @ EgressError::NotAllowed { .. }) = self.allowed.check(address) {
            return Err(MetricsError::NotAllowed(refused));
        }
        Client::from(self.http.clone(), address).map_err(|e| {
            MetricsError::InvalidRequest(format!(
                "Prometheus address {address:?} is not a URL: {e}"
            ))
        })
    }

    /// Runs one instant query under the analysis timeout.
    async fn instant(
        &self,
        client: &Client,
        query: &str,
    ) -> Result<prometheus_http_query::response::PromqlResult, MetricsError> {
        let millis = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        client
            .query(query)
            .timeout(millis)
            .get()
            .await
            .map_err(|e| classify(e, client.base_url().as_str(), query))
    }

    async fn value(&self, client: &Client, query: &str) -> Result<Option<f64>, MetricsError> {
        let result = self.instant(client, query).await?;
        single_value(result.data()).map_err(|msg| MetricsError::Query {
            query: query.to_owned(),
            source: msg.into(),
        })
    }
}

impl MetricsSource for Prometheus {
    async fn canary_metrics(&self, q: &AnalysisQuery) -> Result<CanaryMetrics, MetricsError> {
        let queries = Queries::for_query(q).ok_or_else(|| {
            MetricsError::InvalidRequest(format!(
                "analysis window {:?} is shorter than one millisecond",
                q.window
            ))
        })?;
        let client = self.client(&q.address)?;
        let all = async {
            tokio::join!(
                self.value(&client, &queries.average_latency),
                self.value(&client, &queries.p99_latency),
                self.value(&client, &queries.error_rate),
                self.value(&client, &queries.requests),
            )
        };
        let (avg, p99, errors, requests) =
            tokio::time::timeout(self.timeout, all)
                .await
                .map_err(|elapsed| MetricsError::Unreachable {
                    address: q.address.clone(),
                    source: Box::new(elapsed),
                })?;
        let metrics = CanaryMetrics {
            average_latency_seconds: avg?,
            p99_latency_seconds: p99?,
            error_rate: errors?,
            requests: requests?,
        };
        if served_nothing(&metrics) {
            return Err(MetricsError::NoData);
        }
        Ok(metrics)
    }

    async fn track_counts(
        &self,
        q: &AnalysisQuery,
        judge: &JudgeRequest,
    ) -> Result<TrackFigures, MetricsError> {
        let queries = CountQueries::for_request(q, judge);
        let client = self.client(&q.address)?;
        let quality = judge.config.judges_quality();
        let all = async {
            tokio::join!(
                async {
                    if quality {
                        self.live_tracks(&client, &queries.evaluator_live).await
                    } else {
                        Ok([true; 2])
                    }
                },
                self.per_track(&client, &queries.requests),
                self.per_track(&client, &queries.errors),
                self.per_track(&client, &queries.slow),
                self.per_track(&client, &queries.scored),
                self.per_track(&client, &queries.hits),
                self.per_track(&client, &queries.score_sum),
                self.per_track(&client, &queries.score_squares),
            )
        };
        let (live, requests, errors, slow, scored, hits, sum, squares) =
            tokio::time::timeout(self.timeout, all)
                .await
                .map_err(|elapsed| MetricsError::Unreachable {
                    address: q.address.clone(),
                    source: Box::new(elapsed),
                })?;
        let (requests, errors, slow) = (requests?, errors?, slow?);
        let (scored, hits, sum, squares) = (scored?, hits?, sum?, squares?);
        // Counters scraped apart are extrapolated apart: a part never exceeds its whole.
        let track = |i: usize| TrackCounts {
            requests: requests[i],
            errors: errors[i].min(requests[i]),
            slow: slow[i].min(requests[i]),
            scored: scored[i],
            hits: hits[i].min(scored[i]),
            score_sum: sum[i],
            score_squares: squares[i],
        };
        let live = live?;
        Ok(TrackFigures {
            canary: track(0),
            stable: track(1),
            evaluator_silent: ["canary", "stable"]
                .into_iter()
                .zip(live)
                .filter_map(|(name, live)| (!live).then_some(name))
                .collect(),
        })
    }
}

impl Prometheus {
    /// Runs a `sum by (track)` query: whether each of `[canary, stable]` has a series.
    async fn live_tracks(&self, client: &Client, query: &str) -> Result<[bool; 2], MetricsError> {
        let result = self.instant(client, query).await?;
        let Data::Vector(samples) = result.data() else {
            return Err(MetricsError::Query {
                query: query.to_owned(),
                source: "expected an instant vector by track".into(),
            });
        };
        let has = |track: &str| {
            samples
                .iter()
                .any(|s| s.metric().get("track").is_some_and(|t| t == track))
        };
        Ok([has("canary"), has("stable")])
    }

    /// Runs a `sum by (track)` query: `[canary, stable]`, 0 for a track with no series and
    /// for NaN or negative values (an increase is never below 0).
    async fn per_track(&self, client: &Client, query: &str) -> Result<[f64; 2], MetricsError> {
        let result = self.instant(client, query).await?;
        let Data::Vector(samples) = result.data() else {
            return Err(MetricsError::Query {
                query: query.to_owned(),
                source: "expected an instant vector by track".into(),
            });
        };
        let mut out = [0.0; 2];
        for sample in samples {
            let slot = match sample.metric().get("track").map(String::as_str) {
                Some("canary") => 0,
                Some("stable") => 1,
                _ => continue,
            };
            let v = sample.sample().value();
            out[slot] = if v.is_finite() { v.max(0.0) } else { 0.0 };
        }
        Ok(out)
    }
}

/// True when the window holds no canary requests and no figure at all.
fn served_nothing(m: &CanaryMetrics) -> bool {
    m.requests.is_none_or(|r| r <= 0.0)
        && m.average_latency_seconds.is_none()
        && m.p99_latency_seconds.is_none()
        && m.error_rate.is_none()
}

/// Extracts the one number an aggregated query returns: an empty vector or a NaN is `None`,
/// several series or a range result are errors (the queries always aggregate to one).
fn single_value(data: &Data) -> Result<Option<f64>, String> {
    let v = match data {
        Data::Vector(v) if v.is_empty() => return Ok(None),
        Data::Vector(v) if v.len() == 1 => v[0].sample().value(),
        Data::Vector(v) => return Err(format!("expected one series, got {}", v.len())),
        Data::Scalar(s) => s.value(),
        Data::Matrix(_) => return Err("expected an instant vector, got a range vector".into()),
    };
    Ok(if v.is_nan() { None } else { Some(v) })
}

/// Sorts a client error into "could not get an answer" and "the answer was an error".
fn classify(err: PromError, address: &str, query: &str) -> MetricsError {
    let unreachable = match &err {
        // No inner error: a 2xx answer that is not JSON, i.e. not Prometheus.
        PromError::Client(c) => c.inner().is_some_and(|r| {
            r.is_connect()
                || r.is_timeout()
                || r.is_request()
                || r.status().is_some_and(|s| s.is_server_error())
        }),
        PromError::Prometheus(p) => {
            p.is_timeout() || p.is_unavailable() || p.is_canceled() || p.is_internal()
        }
        _ => false,
    };
    if unreachable {
        // reqwest's own message carries the whole request URL, i.e. the URL-encoded query:
        // hundreds of characters in status and Events. Keep its cause chain instead.
        let cause = match &err {
            PromError::Client(c) => c.inner().map(transport_cause),
            _ => None,
        };
        let source: super::BoxError = match cause {
            Some(cause) => cause.into(),
            None => Box::new(err),
        };
        MetricsError::Unreachable {
            address: address.to_owned(),
            source,
        }
    } else {
        MetricsError::Query {
            query: query.to_owned(),
            source: Box::new(err),
        }
    }
}

/// A transport failure described without its URL: the HTTP status, or what failed and the
/// chain of causes below it (e.g. "connection failed: …: Connection refused (os error 111)").
fn transport_cause(r: &reqwest::Error) -> String {
    if let Some(status) = r.status() {
        return format!("HTTP {status}");
    }
    let what = if r.is_timeout() {
        "timed out"
    } else if r.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut parts = vec![what.to_owned()];
    let mut cause = std::error::Error::source(r);
    while let Some(e) = cause {
        parts.push(e.to_string());
        cause = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Track;

    fn query(namespace: Option<&str>, release: &str, window: Duration) -> AnalysisQuery {
        AnalysisQuery {
            address: "http://127.0.0.1:9090".into(),
            namespace: namespace.map(str::to_owned),
            release: release.into(),
            track: Track::Canary,
            window,
        }
    }

    #[test]
    fn average_latency_is_the_design_query() {
        let q = Queries::for_query(&query(None, "movies", Duration::from_secs(300))).unwrap();
        assert_eq!(
            q.average_latency,
            "sum(rate(movrek_request_duration_seconds_sum{release=\"movies\",track=\"canary\",route=\"/recommend\"}[5m])) \
             / sum(rate(movrek_request_duration_seconds_count{release=\"movies\",track=\"canary\",route=\"/recommend\"}[5m]))"
        );
    }

    #[test]
    fn quality_counts_are_read_per_track_and_version() {
        let judge = super::super::JudgeRequest {
            config: super::super::compare::JudgeConfig {
                alpha: 0.05,
                metrics: Vec::new(),
            },
            since: Duration::from_secs(90),
            weight: 20,
            finished: Vec::new(),
            slow_bound_seconds: 0.25,
            versions: super::super::TrackVersions {
                canary: "v3".to_owned(),
                stable: "v\"1".to_owned(),
            },
        };
        let q = CountQueries::for_request(&query(Some("team"), "movies", Duration::ZERO), &judge);
        assert_eq!(
            q.scored,
            "sum by (track)(increase(movrek_online_score_count{release=\"movies\",track=\"canary\",model_version=\"v3\"}[90s])) \
             or sum by (track)(increase(movrek_online_score_count{release=\"movies\",track=\"stable\",model_version=\"v\\\"1\"}[90s]))"
        );
        assert_eq!(
            q.evaluator_live,
            "sum by (track)(movrek_online_impressions_total{release=\"movies\",track=\"canary\",model_version=\"v3\"}) \
             or sum by (track)(movrek_online_impressions_total{release=\"movies\",track=\"stable\",model_version=\"v\\\"1\"})"
        );
        // Served counts are per pod: the track is enough (a rolled-back canary's pods are gone).
        assert!(!q.requests.contains("model_version"), "{}", q.requests);
    }

    #[test]
    fn namespace_matcher_only_when_configured() {
        let q =
            Queries::for_query(&query(Some("prod"), "movies", Duration::from_secs(10))).unwrap();
        let m = "namespace=\"prod\",release=\"movies\",track=\"canary\",route=\"/recommend\"";
        assert_eq!(
            q.p99_latency,
            format!(
                "histogram_quantile(0.99, sum by (le)(rate(movrek_request_duration_seconds_bucket{{{m}}}[10s])))"
            )
        );
        assert_eq!(
            q.error_rate,
            format!(
                "(sum(rate(movrek_requests_total{{{m},status=~\"5..\"}}[10s])) or vector(0)) \
                 / sum(rate(movrek_requests_total{{{m}}}[10s]))"
            )
        );
        assert_eq!(
            q.requests,
            format!("sum(increase(movrek_requests_total{{{m}}}[10s]))")
        );
        let without = Queries::for_query(&query(None, "movies", Duration::from_secs(10))).unwrap();
        assert!(!without.requests.contains("namespace"));
    }

    #[test]
    fn stable_track_label() {
        let mut aq = query(None, "movies", Duration::from_secs(60));
        aq.track = Track::Stable;
        let q = Queries::for_query(&aq).unwrap();
        assert_eq!(
            q.requests,
            "sum(increase(movrek_requests_total{release=\"movies\",track=\"stable\",route=\"/recommend\"}[1m]))"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
        assert_eq!(escape_label_value("plain-name.1"), "plain-name.1");
        let q = Queries::for_query(&query(
            Some("n\"s"),
            "r\"}or vector(1)",
            Duration::from_secs(60),
        ))
        .unwrap();
        assert!(
            q.requests
                .contains(r#"namespace="n\"s",release="r\"}or vector(1)",track="canary""#),
            "{}",
            q.requests
        );
    }

    #[test]
    fn windows_use_the_largest_exact_unit() {
        let cases = [
            (Duration::from_secs(10), Some("10s")),
            (Duration::from_secs(60), Some("1m")),
            (Duration::from_secs(90), Some("90s")),
            (Duration::from_secs(7200), Some("2h")),
            (Duration::from_millis(1500), Some("1500ms")),
            (Duration::from_micros(1500), Some("1ms")),
            (Duration::from_micros(999), None),
            (Duration::ZERO, None),
        ];
        for (d, want) in cases {
            assert_eq!(promql_duration(d).as_deref(), want, "{d:?}");
        }
        assert!(Queries::for_query(&query(None, "m", Duration::ZERO)).is_none());
    }

    #[test]
    fn nothing_served_means_no_data() {
        assert!(served_nothing(&CanaryMetrics::default()));
        assert!(served_nothing(&CanaryMetrics {
            requests: Some(0.0),
            ..CanaryMetrics::default()
        }));
        assert!(!served_nothing(&CanaryMetrics {
            requests: Some(3.0),
            ..CanaryMetrics::default()
        }));
        assert!(!served_nothing(&CanaryMetrics {
            error_rate: Some(1.0),
            ..CanaryMetrics::default()
        }));
    }

    fn data(json: &str) -> Data {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn single_value_reads_vectors_and_scalars() {
        let empty = data(r#"{"resultType":"vector","result":[]}"#);
        assert_eq!(single_value(&empty), Ok(None));
        let one = data(
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.25"]}]}"#,
        );
        assert_eq!(single_value(&one), Ok(Some(0.25)));
        let nan = data(
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"NaN"]}]}"#,
        );
        assert_eq!(single_value(&nan), Ok(None));
        let scalar = data(r#"{"resultType":"scalar","result":[1700000000.1,"3"]}"#);
        assert_eq!(single_value(&scalar), Ok(Some(3.0)));
        let two = data(
            r#"{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}"#,
        );
        assert!(single_value(&two).unwrap_err().contains("got 2"));
        let matrix = data(r#"{"resultType":"matrix","result":[]}"#);
        assert!(single_value(&matrix).is_err());
    }

    #[tokio::test]
    async fn bad_address_and_window_fail_before_any_request() {
        let p = Prometheus::new(Duration::from_secs(1)).unwrap();
        let mut q = query(None, "m", Duration::from_secs(10));
        q.address = "not a url".into();
        assert!(matches!(
            p.canary_metrics(&q).await,
            Err(MetricsError::InvalidRequest(_))
        ));
        let q = query(None, "m", Duration::ZERO);
        assert!(matches!(
            p.canary_metrics(&q).await,
            Err(MetricsError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn refused_connection_names_its_cause_not_the_url() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = Prometheus::new(Duration::from_secs(2)).unwrap();
        let mut q = query(None, "movies", Duration::from_secs(10));
        q.address = format!("http://127.0.0.1:{port}");
        let err = p.canary_metrics(&q).await.unwrap_err();
        assert!(matches!(err, MetricsError::Unreachable { .. }), "{err:?}");
        let chain = crate::analysis::error_chain(&err);
        assert!(chain.contains("connection failed"), "{chain}");
        assert!(!chain.contains("query="), "{chain}");
    }
}
