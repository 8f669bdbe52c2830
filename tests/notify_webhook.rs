//! Webhook delivery against a real HTTP receiver on 127.0.0.1: payload shape, retry on 5xx,
//! no retry on 4xx, giving up after N attempts, and the total time limit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use movrek_operator::analysis::CanaryMetrics;
use movrek_operator::notify::{
    AttemptError, Notification, NotificationKind, Notifier, NotifyError, RetryPolicy, Webhook,
    payload,
};
use serde_json::Value;
use warp::Filter;
use warp::http::StatusCode;

/// One request the receiver saw.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    content_type: Option<String>,
    body: Value,
}

/// A scripted webhook receiver: answers each request with the next scripted status (then
/// `fallback`), after `delay`, and records what it received.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(script: &[u16], fallback: u16, delay: Duration) -> Self {
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let route = warp::post()
            .and(warp::path("hook"))
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::body::json())
            .then(move |content_type: Option<String>, body: Value| {
                let script = script.clone();
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(Seen {
                        at: Instant::now(),
                        content_type,
                        body,
                    });
                    let status = script.lock().unwrap().pop_front().unwrap_or(fallback);
                    tokio::time::sleep(delay).await;
                    let text = if status == 400 {
                        "invalid_payload"
                    } else {
                        "ok"
                    };
                    warp::reply::with_status(text, StatusCode::from_u16(status).unwrap())
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            url: format!("http://{addr}/hook"),
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn event() -> Notification {
    Notification {
        release: "movies".into(),
        namespace: "prod".into(),
        kind: NotificationKind::Promoted,
        version: "v7".into(),
        reason: "within limits: average latency 12.0ms, error rate 0.00%, 900 requests".into(),
        figures: Some(CanaryMetrics {
            average_latency_seconds: Some(0.012),
            p99_latency_seconds: Some(0.04),
            error_rate: Some(0.0),
            requests: Some(900.0),
        }),
        comparison: None,
    }
}

fn quick_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        attempt_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn delivers_the_slack_payload_once() {
    let rx = Receiver::start(&[], 200, Duration::ZERO).await;
    let hook = Webhook::new(quick_policy(3)).unwrap();
    let delivery = hook.send(&rx.url, &event()).await.unwrap();
    assert_eq!(delivery.attempts, 1);
    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(seen[0].body, payload(&event()));
    assert_eq!(
        seen[0].body["text"],
        "movrek: prod/movies promoted model v7: within limits: average latency 12.0ms, \
         error rate 0.00%, 900 requests"
    );
    assert_eq!(seen[0].body["attachments"][0]["color"], "good");
}

#[tokio::test]
async fn retries_server_errors_with_growing_backoff_then_succeeds() {
    let rx = Receiver::start(&[500, 503], 200, Duration::ZERO).await;
    let hook = Webhook::new(quick_policy(5)).unwrap();
    let delivery = hook.send(&rx.url, &event()).await.unwrap();
    assert_eq!(delivery.attempts, 3);
    let seen = rx.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.body == seen[0].body),
        "same body each time"
    );
    let first_gap = seen[1].at - seen[0].at;
    let second_gap = seen[2].at - seen[1].at;
    assert!(first_gap >= Duration::from_millis(50), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(100), "{second_gap:?}");
}

#[tokio::test]
async fn does_not_retry_a_client_error() {
    let rx = Receiver::start(&[400], 200, Duration::ZERO).await;
    let hook = Webhook::new(quick_policy(5)).unwrap();
    let err = hook.send(&rx.url, &event()).await.unwrap_err();
    assert_eq!(err.metric_label(), "rejected");
    match err {
        NotifyError::Rejected { status, body } => {
            assert_eq!(status, 400);
            assert_eq!(body, "invalid_payload");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(rx.seen().len(), 1);
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let rx = Receiver::start(&[], 503, Duration::ZERO).await;
    let hook = Webhook::new(quick_policy(3)).unwrap();
    let err = hook.send(&rx.url, &event()).await.unwrap_err();
    assert!(
        matches!(
            err,
            NotifyError::Exhausted {
                attempts: 3,
                last: AttemptError::Status(503)
            }
        ),
        "{err:?}"
    );
    assert_eq!(rx.seen().len(), 3);
}

#[tokio::test]
async fn total_time_is_bounded_when_the_receiver_hangs() {
    let rx = Receiver::start(&[], 200, Duration::from_secs(30)).await;
    let policy = RetryPolicy {
        max_attempts: 100,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        attempt_timeout: Duration::from_millis(200),
        total_timeout: Duration::from_millis(900),
    };
    let hook = Webhook::new(policy).unwrap();
    let start = Instant::now();
    let err = hook.send(&rx.url, &event()).await.unwrap_err();
    let took = start.elapsed();
    match err {
        NotifyError::TimedOut { limit, attempts } => {
            assert_eq!(limit, Duration::from_millis(900));
            assert!(
                attempts >= 2,
                "attempts time out and are retried: {attempts}"
            );
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn connection_refused_is_retried_and_the_url_never_leaks() {
    // Bind then drop a listener to get a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/services/T000/SECRET-TOKEN");
    let hook = Webhook::new(quick_policy(2)).unwrap();
    let err = hook.send(&url, &event()).await.unwrap_err();
    assert!(
        matches!(
            err,
            NotifyError::Exhausted {
                attempts: 2,
                last: AttemptError::Transport(_)
            }
        ),
        "{err:?}"
    );
    let chain = movrek_operator::analysis::error_chain(&err);
    assert!(!chain.contains("SECRET-TOKEN"), "{chain}");
    assert!(!format!("{err:?}").contains("SECRET-TOKEN"), "{err:?}");
}

#[tokio::test]
async fn invalid_urls_are_refused_before_sending() {
    let hook = Webhook::new(quick_policy(2)).unwrap();
    for url in ["", "not a url", "ftp://example.invalid/x", "/relative/path"] {
        let err = hook.send(url, &event()).await.unwrap_err();
        assert!(matches!(err, NotifyError::InvalidUrl), "{url}: {err:?}");
    }
}

/// `--allowed-webhook-hosts`: a URL off the list is refused before sending, with a message
/// naming the host and the flag; a URL on the list is delivered.
#[tokio::test]
async fn webhook_hosts_off_the_allow_list_are_never_contacted() {
    use movrek_operator::egress::HostAllowList;
    let receiver = Receiver::start(&[], 200, Duration::ZERO).await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap()
        .to_owned();
    let hook = |entries: &[&str]| {
        Webhook::with_allowed_hosts(
            quick_policy(2),
            HostAllowList::parse("--allowed-webhook-hosts", entries).unwrap(),
        )
        .unwrap()
    };
    let err = hook(&["hooks.slack.com:443"])
        .send(&receiver.url, &event())
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::NotAllowed(_)), "{err:?}");
    assert_eq!(err.metric_label(), "not_allowed");
    assert_eq!(
        movrek_operator::analysis::error_chain(&err),
        format!(
            "webhook URL refused: host 127.0.0.1:{port} is not allowed by \
             --allowed-webhook-hosts (hooks.slack.com:443)"
        )
    );
    assert!(receiver.seen().is_empty(), "nothing was sent");

    let delivered = hook(&["127.0.0.1"]).send(&receiver.url, &event()).await;
    assert_eq!(delivered.unwrap().attempts, 1);
    assert_eq!(receiver.seen().len(), 1);

    // The default refuses link-local (cloud metadata) addresses without a request.
    let err = Webhook::new(quick_policy(2))
        .unwrap()
        .send("http://169.254.169.254/latest/meta-data/", &event())
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::NotAllowed(_)), "{err:?}");
}
