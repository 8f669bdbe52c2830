//! Canary analysis against a REAL Prometheus (Debian's `/usr/bin/prometheus`, installed by
//! `hack/deps.sh`) scraping REAL `movrek serve` processes every second on 127.0.0.1, under
//! real loopback load: a healthy canary passes, a slow canary fails, an idle canary is "no
//! data", and a stopped Prometheus is "unreachable" — the last two are never a pass.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use movrek_operator::analysis::prometheus::Prometheus;
use movrek_operator::analysis::{
    Analysis, AnalysisQuery, MetricsError, MetricsSource, Thresholds, Track, TrackFigures, Verdict,
    analyze,
};
use movrek_operator::egress::HostAllowList;
use support::{Load, MovrekServer, PrometheusServer, Target};

const RELEASE: &str = "movies";
const NAMESPACE: &str = "e2e";
/// Ten scrape intervals: enough samples for `rate()` and short enough to keep tests fast.
const WINDOW: Duration = Duration::from_secs(10);
/// How long a test waits for the verdict it expects.
const PATIENCE: Duration = Duration::from_secs(40);

fn target(server: &MovrekServer) -> Target {
    Target {
        addr: server.addr,
        labels: vec![("namespace".to_owned(), NAMESPACE.to_owned())],
    }
}

fn canary_query(prom: &PrometheusServer) -> AnalysisQuery {
    AnalysisQuery {
        address: prom.url(),
        namespace: Some(NAMESPACE.to_owned()),
        release: RELEASE.to_owned(),
        track: Track::Canary,
        window: WINDOW,
    }
}

/// The canary query against a server that is not the test Prometheus (no namespace).
fn canary_query_at(addr: std::net::SocketAddr) -> AnalysisQuery {
    AnalysisQuery {
        address: format!("http://{addr}"),
        namespace: None,
        release: RELEASE.to_owned(),
        track: Track::Canary,
        window: WINDOW,
    }
}

fn limits(min_requests: u64) -> Thresholds {
    Thresholds {
        max_average_latency: Duration::from_millis(500),
        max_p99_latency: Some(Duration::from_millis(700)),
        max_error_rate: 0.01,
        min_requests,
    }
}

/// Re-runs the analysis every second until `done` accepts it or `PATIENCE` runs out;
/// returns every analysis seen, the last one last.
async fn poll(
    source: &Prometheus,
    query: &AnalysisQuery,
    thresholds: &Thresholds,
    done: impl Fn(&Analysis) -> bool,
) -> Vec<Analysis> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let a = analyze(source, query, thresholds).await;
        let finished = done(&a);
        seen.push(a);
        if finished || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn describe(seen: &[Analysis]) -> String {
    seen.iter()
        .map(|a| format!("{}: {}", a.verdict, a.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_passes() {
    let (stable, canary) = tokio::join!(
        MovrekServer::start(RELEASE, "stable", &[]),
        MovrekServer::start(RELEASE, "canary", &[]),
    );
    let prom = PrometheusServer::start(&[target(&stable), target(&canary)]).await;
    // Roughly the 80/20 split of the default canary weight.
    let stable_load = Load::start(&stable.url(), 4, 50_000, PATIENCE);
    let canary_load = Load::start(&canary.url(), 1, 20_000, PATIENCE);
    let source = Prometheus::new(Duration::from_secs(5)).unwrap();
    let query = canary_query(&prom);
    let thresholds = limits(50);

    let seen = poll(&source, &query, &thresholds, |a| a.verdict == Verdict::Pass).await;
    let last = seen.last().unwrap();
    assert!(
        seen.iter().all(|a| a.verdict != Verdict::Fail),
        "a healthy canary never fails:\n{}",
        describe(&seen)
    );
    assert_eq!(last.verdict, Verdict::Pass, "{}", describe(&seen));
    let m = last.metrics;
    assert!(m.requests.unwrap() >= 50.0, "{m:?}");
    assert!(m.average_latency_seconds.unwrap() < 0.5, "{m:?}");
    assert!(m.p99_latency_seconds.unwrap() < 0.7, "{m:?}");
    assert!(m.error_rate.unwrap() <= 0.01, "{m:?}");

    // The namespace matcher really filters: the same release in another namespace has nothing.
    let elsewhere = AnalysisQuery {
        namespace: Some("other".to_owned()),
        ..query.clone()
    };
    assert!(matches!(
        source.canary_metrics(&elsewhere).await,
        Err(MetricsError::NoData)
    ));
    let canary_sent = canary_load.stop().await;
    let stable_sent = stable_load.stop().await;
    assert_eq!(canary_sent.failed + stable_sent.failed, 0, "load errors");
    assert!(
        stable_sent.ok > canary_sent.ok,
        "{stable_sent:?} {canary_sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_canary_fails_and_never_passes() {
    let (stable, canary) = tokio::join!(
        MovrekServer::start(RELEASE, "stable", &[]),
        MovrekServer::start(RELEASE, "canary", &[("MOVREK_FAULT_DELAY_MS", "800")]),
    );
    let prom = PrometheusServer::start(&[target(&stable), target(&canary)]).await;
    let _stable_load = Load::start(&stable.url(), 2, 50_000, PATIENCE);
    // Each canary request takes 0.8 s: 8 loops give about 10 requests per second.
    let _canary_load = Load::start(&canary.url(), 8, 5_000, PATIENCE);
    let source = Prometheus::new(Duration::from_secs(5)).unwrap();
    let thresholds = limits(20);

    let seen = poll(&source, &canary_query(&prom), &thresholds, |a| {
        a.verdict == Verdict::Fail
    })
    .await;
    assert!(
        seen.iter().all(|a| a.verdict != Verdict::Pass),
        "a slow canary never passes:\n{}",
        describe(&seen)
    );
    let last = seen.last().unwrap();
    assert_eq!(last.verdict, Verdict::Fail, "{}", describe(&seen));
    assert!(
        last.reason.contains("average latency") && last.reason.contains("> 500.0ms"),
        "{}",
        last.reason
    );
    assert!(last.reason.contains("p99 latency"), "{}", last.reason);
    let avg = last.metrics.average_latency_seconds.unwrap();
    assert!((0.8..2.0).contains(&avg), "average {avg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_canary_is_no_data_and_inconclusive() {
    let (stable, canary) = tokio::join!(
        MovrekServer::start(RELEASE, "stable", &[]),
        MovrekServer::start(RELEASE, "canary", &[]),
    );
    let prom = PrometheusServer::start(&[target(&stable), target(&canary)]).await;
    let _stable_load = Load::start(&stable.url(), 2, 50_000, PATIENCE);
    let source = Prometheus::new(Duration::from_secs(5)).unwrap();
    let thresholds = limits(50);

    // First prove Prometheus has the stable's traffic (so "no data" below is about the canary).
    let stable_query = AnalysisQuery {
        track: Track::Stable,
        ..canary_query(&prom)
    };
    let seen = poll(&source, &stable_query, &thresholds, |a| {
        a.verdict == Verdict::Pass
    })
    .await;
    assert_eq!(
        seen.last().unwrap().verdict,
        Verdict::Pass,
        "stable traffic never showed up:\n{}",
        describe(&seen)
    );
    // And that it scraped the idle canary too: its `/recommend` series exist, all at zero
    // (probes and scrapes count under other routes, which the analysis never reads).
    let body: serde_json::Value = reqwest::get(format!(
        "{}/api/v1/query?query=sum(movrek_requests_total{{release=\"{RELEASE}\",track=\"canary\",route=\"/recommend\"}})",
        prom.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let result = &body["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(result[0]["value"][1], "0", "{body}");

    let query = canary_query(&prom);
    let fetched = source.canary_metrics(&query).await;
    assert!(matches!(fetched, Err(MetricsError::NoData)), "{fetched:?}");
    let a = analyze(&source, &query, &thresholds).await;
    assert_eq!(a.verdict, Verdict::Inconclusive, "{}", a.reason);
    assert!(a.reason.starts_with("no data"), "{}", a.reason);
    drop(canary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_is_unreachable_never_a_pass() {
    let canary = MovrekServer::start(RELEASE, "canary", &[]).await;
    let mut prom = PrometheusServer::start(&[target(&canary)]).await;
    let _load = Load::start(&canary.url(), 2, 50_000, PATIENCE);
    let timeout = Duration::from_secs(3);
    let source = Prometheus::new(timeout).unwrap();
    let query = canary_query(&prom);
    let thresholds = limits(20);

    let seen = poll(&source, &query, &thresholds, |a| a.verdict == Verdict::Pass).await;
    assert_eq!(
        seen.last().unwrap().verdict,
        Verdict::Pass,
        "{}",
        describe(&seen)
    );

    let pid = prom.process.pid().expect("prometheus runs");
    prom.process.stop();
    let start = Instant::now();
    let fetched = source.canary_metrics(&query).await;
    let took = start.elapsed();
    assert!(
        matches!(fetched, Err(MetricsError::Unreachable { .. })),
        "prometheus (pid {pid}) stopped: {fetched:?}"
    );
    assert!(took < timeout + Duration::from_secs(1), "{took:?}");
    let a = analyze(&source, &query, &thresholds).await;
    assert_eq!(a.verdict, Verdict::Inconclusive, "{}", a.reason);
    assert!(a.reason.contains("unreachable"), "{}", a.reason);
    assert!(
        !a.reason.contains("query=") && !a.reason.contains("/api/v1/"),
        "the reason names the cause, not the request URL: {}",
        a.reason
    );
}

#[tokio::test]
async fn an_address_that_is_not_prometheus_is_a_query_error() {
    use warp::Filter;
    for status in [404, 200] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let route = warp::any().map(move || {
            warp::reply::with_status(
                "<html>not prometheus</html>",
                warp::http::StatusCode::from_u16(status).unwrap(),
            )
        });
        tokio::spawn(warp::serve(route).incoming(listener).run());
        let source = Prometheus::new(Duration::from_secs(2)).unwrap();
        let query = canary_query_at(addr);
        let fetched = source.canary_metrics(&query).await;
        assert!(
            matches!(fetched, Err(MetricsError::Query { .. })),
            "HTTP {status}: {fetched:?}"
        );
        assert_eq!(
            analyze(&source, &query, &limits(1)).await.verdict,
            Verdict::Inconclusive
        );
    }
}

#[tokio::test]
async fn a_hanging_backend_is_unreachable_within_the_timeout() {
    use warp::Filter;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let route = warp::any().then(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "too late"
    });
    tokio::spawn(warp::serve(route).incoming(listener).run());
    let timeout = Duration::from_millis(800);
    let source = Prometheus::new(timeout).unwrap();
    let query = canary_query_at(addr);
    let start = Instant::now();
    let fetched = source.canary_metrics(&query).await;
    let took = start.elapsed();
    assert!(
        matches!(fetched, Err(MetricsError::Unreachable { .. })),
        "{fetched:?}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(1),
        "{took:?}"
    );
}

/// A loopback server that counts the requests it gets and answers each with `reply`.
async fn counting_server(
    reply: impl Fn() -> warp::http::Response<String> + Clone + Send + Sync + 'static,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use warp::Filter;
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let route = warp::any().map(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        reply()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, hits)
}

/// `--allowed-prometheus-hosts`: an address off the list is refused before any request, the
/// check is Inconclusive and its reason names the flag; an allowed host that redirects off the
/// list is not followed.
#[tokio::test]
async fn prometheus_addresses_off_the_allow_list_are_never_contacted() {
    let (addr, hits) =
        counting_server(|| warp::http::Response::new("not prometheus".to_owned())).await;
    let only = |entries: &[&str]| {
        Prometheus::with_allowed_hosts(
            Duration::from_secs(2),
            HostAllowList::parse("--allowed-prometheus-hosts", entries).unwrap(),
        )
        .unwrap()
    };
    let query = canary_query_at(addr);
    let source = only(&["prometheus.monitoring:9090"]);
    let fetched = source.canary_metrics(&query).await;
    assert!(
        matches!(fetched, Err(MetricsError::NotAllowed(_))),
        "{fetched:?}"
    );
    let a = analyze(&source, &query, &limits(1)).await;
    assert_eq!(a.verdict, Verdict::Inconclusive);
    assert_eq!(
        a.reason,
        format!(
            "Prometheus address refused: host {addr} is not allowed by \
             --allowed-prometheus-hosts (prometheus.monitoring:9090)"
        )
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was sent");

    // The same address on the list is queried (and is no Prometheus: a query error).
    let fetched = only(&[&addr.to_string()]).canary_metrics(&query).await;
    assert!(
        matches!(fetched, Err(MetricsError::Query { .. })),
        "{fetched:?}"
    );
    assert!(hits.load(Ordering::SeqCst) > 0);

    // An allowed host that redirects to one off the list: the redirect is not followed.
    let before = hits.load(Ordering::SeqCst);
    let target = format!("http://{addr}/api/v1/query");
    let (redirector, _) = counting_server(move || {
        warp::http::Response::builder()
            .status(302)
            .header("location", target.clone())
            .body(String::new())
            .unwrap()
    })
    .await;
    let query = AnalysisQuery {
        address: format!("http://{redirector}"),
        ..query
    };
    let fetched = only(&[&redirector.to_string()])
        .canary_metrics(&query)
        .await;
    assert!(fetched.is_err(), "{fetched:?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "the redirect off the list was not followed"
    );
}

/// Errors, slow requests above 250 ms and the online score, over the last minute at 20%.
fn judge_request() -> movrek_operator::analysis::JudgeRequest {
    use movrek_operator::analysis::compare::{JudgeConfig, Metric, MetricConfig};
    let metric = |metric| MetricConfig {
        metric,
        tolerance: 0.25,
        floor: None,
    };
    movrek_operator::analysis::JudgeRequest {
        config: JudgeConfig {
            alpha: 0.05,
            metrics: vec![
                metric(Metric::Errors),
                metric(Metric::SlowRequests),
                metric(Metric::Score),
            ],
        },
        since: Duration::from_secs(60),
        weight: 20,
        finished: Vec::new(),
        slow_bound_seconds: 0.25,
        versions: movrek_operator::analysis::TrackVersions::default(),
    }
}

/// The comparison's counts, read by the real `PromQL` from real servers: a canary that answers
/// every request in 300 ms and fails a fifth of them, beside a fast, healthy stable, is
/// counted slow (above the 250 ms bucket bound) and failing per track, the judge finds both
/// regressions while the stable track's counts stay clean, and the lopsided load is caught
/// as a sample-ratio mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_counts_are_read_per_track_and_a_slow_failing_canary_regresses() {
    use movrek_operator::analysis::compare::Metric;
    use movrek_operator::analysis::sequential::Finding;
    use movrek_operator::analysis::{conclude, conclude_judged};

    let (stable, canary) = tokio::join!(
        MovrekServer::start(RELEASE, "stable", &[]),
        MovrekServer::start(
            RELEASE,
            "canary",
            &[
                ("MOVREK_FAULT_DELAY_MS", "300"),
                ("MOVREK_FAULT_ERROR_RATE", "0.2")
            ]
        ),
    );
    let prom = PrometheusServer::start(&[target(&stable), target(&canary)]).await;
    let _stable_load = Load::start(&stable.url(), 2, 50_000, PATIENCE);
    let _canary_load = Load::start(&canary.url(), 8, 5_000, PATIENCE);
    let source = Prometheus::new(Duration::from_secs(5)).unwrap();
    let request = judge_request();
    let query = canary_query(&prom);
    let deadline = Instant::now() + PATIENCE;
    let (canary_counts, stable_counts) = loop {
        let counts = source.track_counts(&query, &request).await;
        if let Ok(TrackFigures {
            canary: c,
            stable: s,
            ..
        }) = counts
            && c.requests >= 100.0
            && c.errors >= 10.0
            && s.requests >= 100.0
        {
            break (c, s);
        }
        assert!(
            Instant::now() < deadline,
            "never enough traffic: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Every canary answer took 300 ms: all slow; stable answers in microseconds: none.
    assert!(
        canary_counts.slow >= 0.9 * canary_counts.requests,
        "{canary_counts:?}"
    );
    assert!(stable_counts.slow < 1.0, "{stable_counts:?}");
    assert!(stable_counts.errors < 1.0, "{stable_counts:?}");
    let share = canary_counts.errors / canary_counts.requests;
    assert!((0.1..0.3).contains(&share), "canary error share {share}");
    // No evaluator runs here: quality counts are zero, not an error.
    assert!(
        canary_counts.scored.abs() < f64::EPSILON,
        "{canary_counts:?}"
    );

    let guard = conclude(source.canary_metrics(&query).await, &limits(20));
    let judged = conclude_judged(
        guard,
        Ok(TrackFigures::new(canary_counts, stable_counts)),
        &request,
    );
    let report = judged.comparison.expect("compared");
    let finding = |m: Metric| {
        report
            .metrics
            .iter()
            .find(|r| r.metric == m)
            .map(|r| r.outcome.finding)
    };
    assert_eq!(
        finding(Metric::Errors),
        Some(Finding::Regression),
        "{}",
        report.reason
    );
    assert_eq!(
        finding(Metric::SlowRequests),
        Some(Finding::Regression),
        "{}",
        report.reason
    );
    assert_eq!(
        finding(Metric::Score),
        Some(Finding::Undecided),
        "{}",
        report.reason
    );
    // The two load loops are not a 20/80 split (the slow canary gets a few percent): the
    // sample-ratio test sees it, and a mismatched comparison is never acted on.
    assert!(report.mismatch, "{}", report.reason);
    assert_eq!(report.verdict, Verdict::Inconclusive, "{}", report.reason);
    assert!(
        report.reason.starts_with("sample ratio mismatch"),
        "{}",
        report.reason
    );
}
