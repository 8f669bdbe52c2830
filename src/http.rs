//! The operator's own HTTP endpoints: `/metrics` (`OpenMetrics` text), `/healthz` (the
//! process runs) and `/readyz` (the API server answered and the CRD is installed).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use warp::Filter;
use warp::http::StatusCode;

use crate::metrics::Metrics;

/// State the endpoints read.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the operator ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// The routes, for serving or for `warp::test`.
pub fn routes(
    metrics: Arc<Metrics>,
    health: Health,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let metrics_route = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics.render(),
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    });
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok");
    let readyz = warp::path!("readyz").and(warp::get()).and_then(move || {
        let ready = health.is_ready();
        async move {
            Ok::<_, Infallible>(if ready {
                warp::reply::with_status("ready", StatusCode::OK)
            } else {
                warp::reply::with_status("not ready", StatusCode::SERVICE_UNAVAILABLE)
            })
        }
    });
    metrics_route.or(healthz).or(readyz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_answer() {
        let metrics = Arc::new(Metrics::new());
        metrics.wrote("status");
        let health = Health::default();
        let api = routes(metrics, health.clone());

        let res = warp::test::request().path("/healthz").reply(&api).await;
        assert_eq!(res.status(), StatusCode::OK);

        let res = warp::test::request().path("/readyz").reply(&api).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        health.set_ready(true);
        let res = warp::test::request().path("/readyz").reply(&api).await;
        assert_eq!(res.status(), StatusCode::OK);

        let res = warp::test::request().path("/metrics").reply(&api).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body = String::from_utf8(res.body().to_vec()).unwrap();
        assert!(
            body.contains(r#"movrek_operator_api_writes_total{kind="status"} 1"#),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));

        let res = warp::test::request().path("/nope").reply(&api).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
