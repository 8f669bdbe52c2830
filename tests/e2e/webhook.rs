//! Test infrastructure: a local Slack-compatible webhook receiver.

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::sync::{Arc, Mutex};

use serde_json::Value;
use warp::Filter;

/// A local Slack-compatible webhook receiver recording each JSON body.
pub struct Webhook {
    /// Where to post.
    pub url: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let route = warp::post()
            .and(warp::path("hook"))
            .and(warp::body::json())
            .map(move |body: Value| {
                record.lock().expect("webhook lock").push(body);
                "ok"
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook receiver");
        let addr = listener.local_addr().expect("webhook addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            url: format!("http://{addr}/hook"),
            seen,
        }
    }

    /// Every notification received, whole.
    pub fn bodies(&self) -> Vec<Value> {
        self.seen.lock().expect("webhook lock").clone()
    }

    /// The `text` of every notification received.
    pub fn texts(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("webhook lock")
            .iter()
            .map(|b| b["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}
