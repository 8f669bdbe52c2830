//! Test infrastructure: a bounded, paced traffic generator that sends
//! `GET /recommend/{user}` through nginx with the release's `Host` and records, for each
//! response, its time, status (0 = no answer) and `X-Model-Version`.

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request's outcome.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When the answer came, since the timeline's epoch.
    pub at: Duration,
    /// HTTP status, or 0 when no answer came.
    pub status: u16,
    /// The `X-Model-Version` header.
    pub version: Option<String>,
    /// Why it failed (transport error, or the body of a non-2xx answer).
    pub error: Option<String>,
}

/// Paced load: `workers` loops, each sending one request every `pace` (or as soon as the
/// previous answer came, if slower), until stopped or `limit` passes.
#[derive(Debug)]
pub struct Traffic {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// Starts the load on `base` (nginx) with `Host: host`.
    pub fn start(
        base: &str,
        host: &str,
        workers: usize,
        pace: Duration,
        limit: Duration,
        epoch: Instant,
    ) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        // A fresh connection per request: nginx closes idle keep-alive client connections
        // when it reloads, and a request racing that close fails in the client (the known
        // reload race of any nginx), which says nothing about the upstreams under test.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client");
        let deadline = Instant::now() + limit;
        let tasks = (0..workers)
            .map(|w| {
                let (samples, stop, http) = (samples.clone(), stop.clone(), http.clone());
                let url = base.to_owned();
                let host = host.to_owned();
                tokio::spawn(async move {
                    let mut user = 1 + 37 * w as u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let next = Instant::now() + pace;
                        user = user % 300 + 1;
                        let answer = http
                            .get(format!("{url}/recommend/{user}"))
                            .header("Host", &host)
                            .send()
                            .await;
                        let (status, version, error) = match answer {
                            Ok(r) => {
                                let version = r
                                    .headers()
                                    .get("x-model-version")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned);
                                let status = r.status().as_u16();
                                // Read the body so the connection is reused.
                                let body = r.text().await.unwrap_or_default();
                                let error = (!(200..300).contains(&status))
                                    .then(|| body.chars().take(200).collect());
                                (status, version, error)
                            }
                            Err(e) => (0, None, Some(format!("{e:?}"))),
                        };
                        samples.lock().expect("samples lock").push(Sample {
                            at: epoch.elapsed(),
                            status,
                            version,
                            error,
                        });
                        tokio::time::sleep_until(next.into()).await;
                    }
                })
            })
            .collect();
        Self {
            samples,
            stop,
            tasks,
        }
    }

    /// Every sample so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples lock").clone()
    }

    /// Stops the workers and waits for in-flight requests.
    pub async fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.samples()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Counts of answers per model version (`-` when absent) and failures, in `[from, to)`.
#[derive(Clone, Debug, Default)]
pub struct Mix {
    /// 2xx answers per version.
    pub ok: BTreeMap<String, u64>,
    /// Non-2xx answers or no answer.
    pub failed: u64,
}

impl Mix {
    /// Summarises the samples answered in `[from, to)`.
    pub fn of(samples: &[Sample], from: Duration, to: Duration) -> Self {
        let mut mix = Self::default();
        for s in samples.iter().filter(|s| s.at >= from && s.at < to) {
            if (200..300).contains(&s.status) {
                *mix.ok
                    .entry(s.version.clone().unwrap_or_else(|| "-".into()))
                    .or_default() += 1;
            } else {
                mix.failed += 1;
            }
        }
        mix
    }

    /// 2xx answers in total.
    pub fn total_ok(&self) -> u64 {
        self.ok.values().sum()
    }

    /// Share of 2xx answers that came from `version`.
    pub fn share(&self, version: &str) -> f64 {
        let total = self.total_ok();
        if total == 0 {
            return 0.0;
        }
        self.ok.get(version).copied().unwrap_or(0) as f64 / total as f64
    }
}

/// The failed samples, one line each, for assertion messages.
pub fn failures(samples: &[Sample]) -> String {
    let mut out = String::new();
    for s in samples.iter().filter(|s| !(200..300).contains(&s.status)) {
        let _ = writeln!(
            out,
            "  at {:.2}s status {} {}",
            s.at.as_secs_f64(),
            s.status,
            s.error.as_deref().unwrap_or_default()
        );
    }
    out
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (v, n) in &self.ok {
            write!(f, "{v}: {n}  ")?;
        }
        write!(f, "failed: {}", self.failed)
    }
}
