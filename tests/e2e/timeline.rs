//! Test infrastructure: a per-scenario timeline (printed as it happens) and a watcher that
//! records every change of a release's phase, weight and versions with its time.

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Api;
use movrek_operator::crd::{Phase, RecommenderRelease};

/// Timestamped notes since the scenario started.
#[derive(Debug)]
pub struct Timeline {
    /// When the scenario started.
    pub epoch: Instant,
    name: String,
    /// Where notes go besides the list: printed, or appended to a file (the demo keeps the
    /// harness's own notes out of its story).
    sink: Option<PathBuf>,
    entries: Mutex<Vec<(Duration, String)>>,
}

impl Timeline {
    /// A timeline for scenario `name`, starting now.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            name: name.to_owned(),
            sink: None,
            entries: Mutex::new(Vec::new()),
        })
    }

    /// A timeline whose notes are appended to `file` instead of printed.
    pub fn to_file(name: &str, file: &Path) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            name: name.to_owned(),
            sink: Some(file.to_owned()),
            entries: Mutex::new(Vec::new()),
        })
    }

    /// Time since the epoch.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Records and prints a note.
    pub fn mark(&self, note: &str) {
        let at = self.now();
        let line = format!("[{} {:>7.2}s] {note}", self.name, at.as_secs_f64());
        match &self.sink {
            None => println!("{line}"),
            Some(file) => {
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
        self.entries
            .lock()
            .expect("timeline lock")
            .push((at, note.to_owned()));
    }
}

/// One observed state of a release.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// When it was first observed.
    pub at: Duration,
    /// `status.phase`.
    pub phase: Phase,
    /// `status.canaryWeight`.
    pub weight: i32,
    /// `status.stable.version`.
    pub stable: Option<String>,
    /// `status.canary.version`.
    pub canary: Option<String>,
    /// `status.failedChecks`.
    pub failed_checks: i32,
    /// Time of `status.lastAnalysis` (every check shows as a new state).
    pub last_check: Option<String>,
}

/// Polls one release every 200 ms and keeps (and prints) each distinct state.
#[derive(Debug)]
pub struct ReleaseWatch {
    states: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReleaseWatch {
    /// Starts watching `name` through `api`.
    pub fn start(api: Api<RecommenderRelease>, name: &str, timeline: Arc<Timeline>) -> Self {
        let states = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let task = tokio::spawn({
            let states = states.clone();
            let name = name.to_owned();
            async move {
                loop {
                    if let Ok(Some(rr)) = api.get_opt(&name).await
                        && let Some(s) = rr.status
                    {
                        let seen = Seen {
                            at: timeline.now(),
                            phase: s.phase,
                            weight: s.canary_weight,
                            stable: s.stable.map(|t| t.version),
                            canary: s.canary.map(|t| t.version),
                            failed_checks: s.failed_checks,
                            last_check: s
                                .last_analysis
                                .as_ref()
                                .map(|a| format!("{} {:?}", a.time.0, a.verdict)),
                        };
                        let mut all = states.lock().expect("watch lock");
                        let changed = all.last().is_none_or(|last| {
                            (
                                last.phase,
                                last.weight,
                                &last.stable,
                                &last.canary,
                                last.failed_checks,
                                &last.last_check,
                            ) != (
                                seen.phase,
                                seen.weight,
                                &seen.stable,
                                &seen.canary,
                                seen.failed_checks,
                                &seen.last_check,
                            )
                        });
                        if changed {
                            timeline.mark(&format!(
                                "rr/{name}: phase {:?}, weight {}, stable {}, canary {}, failed checks {}{}",
                                seen.phase,
                                seen.weight,
                                seen.stable.as_deref().unwrap_or("-"),
                                seen.canary.as_deref().unwrap_or("-"),
                                seen.failed_checks,
                                s.message.map_or_else(String::new, |m| format!(" — {m}")),
                            ));
                            all.push(seen);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Self { states, task }
    }

    /// Every distinct state seen so far.
    pub fn states(&self) -> Vec<Seen> {
        self.states.lock().expect("watch lock").clone()
    }

    /// When `phase` was first seen, if it was.
    pub fn first(&self, phase: Phase) -> Option<Duration> {
        self.states()
            .iter()
            .find(|s| s.phase == phase)
            .map(|s| s.at)
    }

    /// The phases in the order they were seen (consecutive repeats folded).
    pub fn phases(&self) -> Vec<Phase> {
        let mut out: Vec<Phase> = Vec::new();
        for s in self.states() {
            if out.last() != Some(&s.phase) {
                out.push(s.phase);
            }
        }
        out
    }
}

impl Drop for ReleaseWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
