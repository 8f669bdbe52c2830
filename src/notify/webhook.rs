//! The webhook [`Notifier`]: POSTs the Slack-compatible payload, retries with exponential
//! backoff on 5xx/429/transport errors (never on other 4xx), within one total time limit.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::egress::HostAllowList;

use super::{
    AnswerClass, AttemptError, Delivery, Notification, Notifier, NotifyError, RetryPolicy,
    classify_status, payload,
};

/// Longest part of a refusal body kept in [`NotifyError::Rejected`].
const BODY_SNIPPET: usize = 200;

/// Delivers notifications over HTTP(S) with one shared client.
///
/// Only URLs whose host its [`HostAllowList`] allows are contacted (redirects included); any
/// other ends in [`NotifyError::NotAllowed`] before a request is sent.
#[derive(Clone, Debug)]
pub struct Webhook {
    http: reqwest::Client,
    policy: RetryPolicy,
    allowed: HostAllowList,
}

/// The operator flag that restricts webhook hosts.
pub const ALLOWED_HOSTS_FLAG: &str = "--allowed-webhook-hosts";

impl Webhook {
    /// A sender that follows `policy`, to any host but link-local addresses.
    pub fn new(policy: RetryPolicy) -> Result<Self, NotifyError> {
        Self::with_allowed_hosts(policy, HostAllowList::allow_all(ALLOWED_HOSTS_FLAG))
    }

    /// A sender that only contacts hosts `allowed` lets through.
    pub fn with_allowed_hosts(
        policy: RetryPolicy,
        allowed: HostAllowList,
    ) -> Result<Self, NotifyError> {
        let http = reqwest::Client::builder()
            .timeout(policy.attempt_timeout)
            .connect_timeout(policy.attempt_timeout)
            .redirect(allowed.redirect_policy(5))
            .build()
            .map_err(NotifyError::Client)?;
        Ok(Self {
            http,
            policy,
            allowed,
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The retry loop without the total limit; counts attempts in `started`.
    async fn attempts(
        &self,
        url: reqwest::Url,
        body: &serde_json::Value,
        started: &AtomicU32,
    ) -> Result<Delivery, NotifyError> {
        let max = self.policy.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            started.store(attempt, Ordering::Relaxed);
            let failure = match self.http.post(url.clone()).json(body).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match classify_status(status) {
                        AnswerClass::Delivered => return Ok(Delivery { attempts: attempt }),
                        AnswerClass::GiveUp => {
                            let text = resp.text().await.unwrap_or_default();
                            return Err(NotifyError::Rejected {
                                status,
                                body: snippet(&text),
                            });
                        }
                        AnswerClass::Retry => AttemptError::Status(status),
                    }
                }
                Err(e) => AttemptError::Transport(e.without_url()),
            };
            tracing::warn!(attempt, max, error = %failure, "webhook attempt failed");
            if attempt >= max {
                return Err(NotifyError::Exhausted {
                    attempts: attempt,
                    last: failure,
                });
            }
            tokio::time::sleep(self.policy.backoff(attempt - 1)).await;
        }
    }
}

/// The first [`BODY_SNIPPET`] characters of a response body, on one line.
fn snippet(text: &str) -> String {
    text.chars()
        .take(BODY_SNIPPET)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

impl Notifier for Webhook {
    /// # Guarantees
    /// Returns within `policy.total_timeout` plus scheduling slack, whatever the receiver does.
    async fn send(&self, webhook_url: &str, event: &Notification) -> Result<Delivery, NotifyError> {
        let url = reqwest::Url::parse(webhook_url).map_err(|_| NotifyError::InvalidUrl)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(NotifyError::InvalidUrl);
        }
        self.allowed
            .check_url(&url)
            .map_err(NotifyError::NotAllowed)?;
        let body = payload(event);
        let started = AtomicU32::new(0);
        let limit = self.policy.total_timeout;
        match tokio::time::timeout(limit, self.attempts(url, &body, &started)).await {
            Ok(result) => result,
            Err(_) => Err(NotifyError::TimedOut {
                limit,
                attempts: started.load(Ordering::Relaxed),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet("invalid_payload\n"), "invalid_payload");
        assert_eq!(snippet(&"x".repeat(500)).len(), BODY_SNIPPET);
        assert_eq!(snippet("a\nb"), "a b");
    }
}
