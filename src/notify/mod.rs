//! Notifications on promotion, rollback and rejection: the message (pure, Slack-compatible
//! JSON), the retry schedule (pure), and the webhook sender that delivers it in [`webhook`].
//!
//! The payload is Slack's incoming-webhook format (`text` plus legacy `attachments`), which
//! Mattermost, Rocket.Chat and Discord's `/slack` endpoint also accept.

pub mod webhook;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};

use crate::analysis::{CanaryMetrics, compare, format_ratio, format_seconds};
use crate::crd::ComparisonRecord;

pub use webhook::Webhook;

/// What happened to a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// The canary's model now serves as stable.
    Promoted,
    /// The canary was withdrawn; stable kept its model.
    RolledBack,
    /// The model was refused before any canary started (e.g. offline RMSE above `maxRmse`).
    Rejected,
}

impl NotificationKind {
    /// The verb used in the message.
    fn verb(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled back",
            Self::Rejected => "rejected",
        }
    }

    /// Slack attachment colour.
    fn color(self) -> &'static str {
        match self {
            Self::Promoted => "good",
            Self::RolledBack => "danger",
            Self::Rejected => "warning",
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Promoted => "Promoted",
            Self::RolledBack => "RolledBack",
            Self::Rejected => "Rejected",
        })
    }
}

/// One event worth telling people about.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The `RecommenderRelease` name.
    pub release: String,
    /// Its namespace.
    pub namespace: String,
    /// What happened.
    pub kind: NotificationKind,
    /// The model version the event is about (the canary's).
    pub version: String,
    /// Why, in one line (the analysis reason, the rejection reason, …).
    pub reason: String,
    /// The last analysis figures, when there were any.
    pub figures: Option<CanaryMetrics>,
    /// The deciding check's comparison with stable, when the judge ran.
    pub comparison: Option<ComparisonRecord>,
}

/// Escapes the three characters Slack's message formatting reserves.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The JSON body for one notification (pure).
pub fn payload(n: &Notification) -> Value {
    let target = format!("{}/{}", n.namespace, n.release);
    let text = format!(
        "movrek: {} {} model {}: {}",
        slack_escape(&target),
        n.kind.verb(),
        slack_escape(&n.version),
        slack_escape(&n.reason)
    );
    let mut fields = vec![
        field("Release", &target),
        field("Outcome", &n.kind.to_string()),
        field("Version", &n.version),
    ];
    if let Some(m) = &n.figures {
        let figures = [
            (
                "Average latency",
                m.average_latency_seconds.map(format_seconds),
            ),
            ("p99 latency", m.p99_latency_seconds.map(format_seconds)),
            ("Error rate", m.error_rate.map(format_ratio)),
            ("Requests", m.requests.map(|r| format!("{r:.0}"))),
        ];
        fields.extend(
            figures
                .into_iter()
                .filter_map(|(title, value)| value.map(|v| field(title, &v))),
        );
    }
    let mut attachments = vec![json!({
        "fallback": text,
        "color": n.kind.color(),
        "title": format!("RecommenderRelease {}", slack_escape(&target)),
        "text": slack_escape(&n.reason),
        "fields": fields,
        "footer": "movrek-operator",
    })];
    if let Some(c) = &n.comparison {
        attachments.push(comparison_attachment(c, n.kind.color()));
    }
    json!({ "text": text, "attachments": attachments })
}

/// The judge's evidence, one field per metric: both tracks' figures, the effect, the
/// evidence of each question and the finding; the split first.
fn comparison_attachment(c: &ComparisonRecord, color: &str) -> Value {
    let split = c.canary_share.map_or_else(
        || "no requests yet".to_owned(),
        |share| {
            format!(
                "canary share {:.1}%, mismatch evidence {:.2}",
                share * 100.0,
                c.mismatch_evidence
            )
        },
    );
    let mut fields =
        vec![json!({ "title": "Split", "value": slack_escape(&split), "short": false })];
    fields.extend(c.metrics.iter().map(|m| {
        json!({
            "title": m.metric.name(),
            "value": slack_escape(&compare::describe(&m.to_result())),
            "short": false,
        })
    }));
    json!({
        "fallback": format!("canary against stable: {}", c.verdict),
        "color": color,
        "title": format!("Canary against stable: {}", c.verdict),
        "fields": fields,
    })
}

fn field(title: &str, value: &str) -> Value {
    json!({ "title": title, "value": slack_escape(value), "short": true })
}

/// How hard to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry; doubles for each later one.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Limit on one HTTP request.
    pub attempt_timeout: Duration,
    /// Limit on the whole delivery, waits included.
    pub total_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 250 ms doubling to at most 4 s, 5 s per request, 20 s in all.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            attempt_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry): exponential, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What to do after one HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerClass {
    /// 2xx: done.
    Delivered,
    /// 5xx, and 429 (the receiver asks us to slow down): try again after the backoff.
    Retry,
    /// Any other status (4xx, odd 1xx/3xx): the request itself is wrong; retrying won't help.
    GiveUp,
}

/// Classifies an HTTP status (pure).
pub fn classify_status(status: u16) -> AnswerClass {
    match status {
        200..=299 => AnswerClass::Delivered,
        429 | 500..=599 => AnswerClass::Retry,
        _ => AnswerClass::GiveUp,
    }
}

/// One failed attempt.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The receiver answered with a retryable status.
    #[error("HTTP {0}")]
    Status(u16),
    /// No answer: connection refused, reset, or the attempt timed out. The URL is stripped
    /// from the error because webhook URLs are secrets.
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
}

/// Why a notification was not delivered. No variant contains the webhook URL.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The URL handed in is not an absolute http(s) URL.
    #[error("webhook URL is not an absolute http(s) URL")]
    InvalidUrl,
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
    /// The receiver refused the request (4xx); it was not retried.
    #[error("webhook refused the notification with HTTP {status}: {body}")]
    Rejected {
        /// The status code.
        status: u16,
        /// The start of the response body (Slack puts the reason there).
        body: String,
    },
    /// Every attempt failed.
    #[error("webhook delivery failed after {attempts} attempts")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: AttemptError,
    },
    /// The total time limit ran out first.
    #[error("webhook delivery did not finish within {limit:?} ({attempts} attempts started)")]
    TimedOut {
        /// The limit that ran out.
        limit: Duration,
        /// Attempts started before it did.
        attempts: u32,
    },
    /// The URL's host is not on the operator's `--allowed-webhook-hosts` list; nothing was sent.
    #[error("webhook URL refused")]
    NotAllowed(#[source] crate::egress::EgressError),
}

impl NotifyError {
    /// A short, fixed label for metrics (`invalid_url`, `client`, `rejected`, `exhausted`,
    /// `timed_out`, `not_allowed`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidUrl => "invalid_url",
            Self::Client(_) => "client",
            Self::Rejected { .. } => "rejected",
            Self::Exhausted { .. } => "exhausted",
            Self::TimedOut { .. } => "timed_out",
            Self::NotAllowed(_) => "not_allowed",
        }
    }
}

/// A successful delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Attempts it took (1 when the first one went through).
    pub attempts: u32,
}

/// Sends notifications somewhere. [`Webhook`] is the production implementation.
pub trait Notifier: Send + Sync {
    /// Delivers `event` to `webhook_url` (already resolved from `notify.webhookUrl` or the
    /// Secret that `notify.secretRef` names).
    fn send(
        &self,
        webhook_url: &str,
        event: &Notification,
    ) -> impl Future<Output = Result<Delivery, NotifyError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rolled_back() -> Notification {
        Notification {
            release: "movies".into(),
            namespace: "prod".into(),
            kind: NotificationKind::RolledBack,
            version: "v8".into(),
            reason: "average latency 812.3ms > 500.0ms, 640 requests".into(),
            figures: Some(CanaryMetrics {
                average_latency_seconds: Some(0.8123),
                p99_latency_seconds: None,
                error_rate: Some(0.0),
                requests: Some(640.0),
            }),
            comparison: None,
        }
    }

    #[test]
    fn payload_carries_the_comparison_per_metric() {
        use crate::analysis::Verdict;
        use crate::analysis::compare::Metric;
        use crate::analysis::sequential::Finding;
        use crate::crd::MetricRecord;
        let score = MetricRecord {
            metric: Metric::Score,
            canary: Some(11.699),
            stable: Some(19.5852),
            effect: Some(-7.8862),
            regression_evidence: 118.94,
            no_worse_evidence: 0.0,
            finding: Finding::Regression,
            needs_more: None,
        };
        let n = Notification {
            comparison: Some(ComparisonRecord {
                verdict: Verdict::Fail,
                canary_share: Some(0.4987),
                mismatch_evidence: 0.31,
                metrics: vec![score],
            }),
            ..rolled_back()
        };
        let p = payload(&n);
        let block = &p["attachments"][1];
        assert_eq!(block["title"], "Canary against stable: Fail");
        assert_eq!(block["fields"][0]["title"], "Split");
        assert_eq!(
            block["fields"][0]["value"],
            "canary share 49.9%, mismatch evidence 0.31"
        );
        assert_eq!(block["fields"][1]["title"], "score");
        assert_eq!(
            block["fields"][1]["value"],
            "score 11.6990 vs 19.5852 (-7.8862, evidence 118.94 worse / 0.00 no worse): worse"
        );
        assert_eq!(
            payload(&rolled_back())["attachments"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn payload_is_slack_shaped_with_figures() {
        let p = payload(&rolled_back());
        assert_eq!(
            p["text"],
            "movrek: prod/movies rolled back model v8: average latency 812.3ms &gt; 500.0ms, 640 requests"
        );
        let a = &p["attachments"][0];
        assert_eq!(a["color"], "danger");
        assert_eq!(a["title"], "RecommenderRelease prod/movies");
        let fields: Vec<(String, String)> = a["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["title"].as_str().unwrap().to_owned(),
                    f["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want = [
            ("Release", "prod/movies"),
            ("Outcome", "RolledBack"),
            ("Version", "v8"),
            ("Average latency", "812.3ms"),
            ("Error rate", "0.00%"),
            ("Requests", "640"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, v)| ((*t).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(fields, want, "p99 is absent, so it has no field");
    }

    #[test]
    fn payload_without_figures_and_colours_per_kind() {
        let mut n = rolled_back();
        n.figures = None;
        n.kind = NotificationKind::Rejected;
        n.reason = "offline RMSE 1.20 > maxRmse 1.00".into();
        let p = payload(&n);
        assert_eq!(p["attachments"][0]["color"], "warning");
        assert_eq!(p["attachments"][0]["fields"].as_array().unwrap().len(), 3);
        assert!(p["text"].as_str().unwrap().contains("rejected model v8"));
        n.kind = NotificationKind::Promoted;
        assert_eq!(payload(&n)["attachments"][0]["color"], "good");
    }

    #[test]
    fn slack_control_characters_are_escaped() {
        assert_eq!(
            slack_escape("<!channel> a & b"),
            "&lt;!channel&gt; a &amp; b"
        );
        let mut n = rolled_back();
        n.version = "<@U123>".into();
        let text = payload(&n)["text"].as_str().unwrap().to_owned();
        assert!(!text.contains('<'), "{text}");
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            ..RetryPolicy::default()
        };
        let got: Vec<u128> = (0..6).map(|i| p.backoff(i).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 700, 700, 700]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_millis(700));
    }

    #[test]
    fn statuses_are_classified() {
        let cases = [
            (200, AnswerClass::Delivered),
            (204, AnswerClass::Delivered),
            (400, AnswerClass::GiveUp),
            (403, AnswerClass::GiveUp),
            (404, AnswerClass::GiveUp),
            (429, AnswerClass::Retry),
            (500, AnswerClass::Retry),
            (503, AnswerClass::Retry),
            (302, AnswerClass::GiveUp),
        ];
        for (status, want) in cases {
            assert_eq!(classify_status(status), want, "{status}");
        }
    }
}
