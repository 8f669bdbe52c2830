//! What a retraining run ended with ([`Outcome`]), the message that says so (pure,
//! Slack-compatible JSON like the operator's: `text` and `attachments`, plus a `movrek`
//! object with the figures for machines), and its delivery to a webhook.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::gate::{DataBreach, EventFigures, GateFigures, ModelBreach};
use super::handoff::Delivery;

/// How a run ended. Every outcome is notified.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A new version was published (and handed to the release).
    Published {
        /// The new version.
        version: String,
        /// Its parent.
        parent: String,
        /// The gate figures.
        gates: GateFigures,
        /// The window's counts.
        events: EventFigures,
        /// How it reached the release.
        delivery: Delivery,
    },
    /// This data had already produced this version (a rerun): handed off again, nothing
    /// trained.
    AlreadyPublished {
        /// The version.
        version: String,
        /// Its parent.
        parent: String,
        /// How it reached the release this time.
        delivery: Delivery,
    },
    /// No new rating or watch since the parent: no new version.
    NothingToDo {
        /// The version stable serves.
        parent: String,
    },
    /// The data broke a limit: nothing trained.
    DataRefused {
        /// The version stable serves.
        parent: String,
        /// The limits broken.
        breaches: Vec<DataBreach>,
        /// The window's counts.
        events: EventFigures,
    },
    /// The candidate failed a gate: nothing published.
    ModelRefused {
        /// The candidate's version name.
        version: String,
        /// The version stable serves.
        parent: String,
        /// The gates failed.
        breaches: Vec<ModelBreach>,
        /// The gate figures.
        gates: GateFigures,
    },
    /// The run failed (store, broker, training, handoff).
    Failed {
        /// The error, one line.
        error: String,
    },
}

impl Outcome {
    /// Machine name of the outcome.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Published { .. } => "published",
            Outcome::AlreadyPublished { .. } => "already-published",
            Outcome::NothingToDo { .. } => "nothing-to-do",
            Outcome::DataRefused { .. } => "data-refused",
            Outcome::ModelRefused { .. } => "model-refused",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// Process exit code: 0 published, already published or nothing to do; 3 refused by a
    /// gate (the Job fails so that a person looks); 1 failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Published { .. }
            | Outcome::AlreadyPublished { .. }
            | Outcome::NothingToDo { .. } => 0,
            Outcome::DataRefused { .. } | Outcome::ModelRefused { .. } => 3,
            Outcome::Failed { .. } => 1,
        }
    }

    /// One line for people.
    pub fn summary(&self, release: &str) -> String {
        match self {
            Outcome::Published {
                version,
                parent,
                gates,
                delivery,
                ..
            } => format!(
                "movrek retrain {release}: published {version} (from {parent}): {}; {}",
                gate_line(gates),
                delivery.describe(release, version)
            ),
            Outcome::AlreadyPublished {
                version,
                parent,
                delivery,
            } => format!(
                "movrek retrain {release}: {version} (from {parent}) was already published; {}",
                delivery.describe(release, version)
            ),
            Outcome::NothingToDo { parent } => {
                format!("movrek retrain {release}: no new events since {parent}; nothing to do")
            }
            Outcome::DataRefused {
                parent, breaches, ..
            } => format!(
                "movrek retrain {release}: refused to train on the events since {parent}: {}",
                join(breaches)
            ),
            Outcome::ModelRefused {
                version,
                parent,
                breaches,
                gates,
            } => format!(
                "movrek retrain {release}: candidate {version} refused, {parent} stays: {} ({})",
                join(breaches),
                gate_line(gates)
            ),
            Outcome::Failed { error } => format!("movrek retrain {release}: failed: {error}"),
        }
    }

    /// The webhook body.
    pub fn message(&self, release: &str) -> Value {
        let color = match self.exit_code() {
            0 => "good",
            3 => "warning",
            _ => "danger",
        };
        let mut fields = Vec::new();
        let mut field = |title: &str, value: String| {
            fields.push(json!({"title": title, "value": value, "short": true}));
        };
        let mut figures = json!({});
        let mut handoff = Value::Null;
        if let Outcome::Published {
            delivery, version, ..
        }
        | Outcome::AlreadyPublished {
            delivery, version, ..
        } = self
        {
            field("Handoff", delivery.describe(release, version));
            handoff = delivery.to_json();
        }
        if let Outcome::Published { gates, events, .. } = self {
            gate_fields(gates, &mut field);
            event_fields(events, &mut field);
            figures = json!({"gates": gates, "events": events});
        }
        if let Outcome::ModelRefused { gates, .. } = self {
            gate_fields(gates, &mut field);
            figures = json!({"gates": gates});
        }
        if let Outcome::DataRefused { events, .. } = self {
            event_fields(events, &mut field);
            figures = json!({"events": events});
        }
        let (version, parent) = match self {
            Outcome::Published {
                version, parent, ..
            }
            | Outcome::ModelRefused {
                version, parent, ..
            }
            | Outcome::AlreadyPublished {
                version, parent, ..
            } => (Some(version), Some(parent)),
            Outcome::NothingToDo { parent } | Outcome::DataRefused { parent, .. } => {
                (None, Some(parent))
            }
            Outcome::Failed { .. } => (None, None),
        };
        json!({
            "text": self.summary(release),
            "attachments": [{"color": color, "fields": fields}],
            "movrek": {
                "kind": "retrain",
                "release": release,
                "outcome": self.name(),
                "version": version,
                "parent": parent,
                "figures": figures,
                "handoff": handoff,
            }
        })
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    let mut text = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "{item}");
    }
    text
}

/// The gate figures on one line (also the body of a `--handoff gitops` commit message).
pub(crate) fn gate_line(g: &GateFigures) -> String {
    format!(
        "RMSE {:.4} (stable {:.4}), NDCG@10 {:.4} (stable {:.4})",
        g.candidate_rmse, g.stable_rmse, g.candidate_ndcg, g.stable_ndcg
    )
}

fn gate_fields(g: &GateFigures, field: &mut impl FnMut(&str, String)) {
    field(
        "RMSE",
        format!("{:.4} (stable {:.4})", g.candidate_rmse, g.stable_rmse),
    );
    field(
        "NDCG@10",
        format!("{:.4} (stable {:.4})", g.candidate_ndcg, g.stable_ndcg),
    );
    if let Some((dimension, metric, growth)) = g.worst_gap_growth() {
        field(
            "Largest fairness gap growth",
            format!("{growth:+.4} ({metric:?} by {})", dimension.name()),
        );
    }
}

fn event_fields(e: &EventFigures, field: &mut impl FnMut(&str, String)) {
    field(
        "Events",
        format!(
            "{} lines, {} malformed, {} new ratings, {} new watches",
            e.lines, e.malformed, e.new_ratings, e.new_watches
        ),
    );
}

/// Posts `body` to `url` (three attempts, 1 s and 2 s apart, 10 s each).
///
/// # Errors
/// The last attempt's error or non-2xx status.
pub async fn send(url: &str, body: &Value) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the webhook client: {e}"))?;
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
        let request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last = format!("the webhook answered {}", response.status()),
            Err(e) => last = format!("cannot reach the webhook: {}", crate::util::error_chain(&e)),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_fail_the_job_and_say_why() {
        let refused = Outcome::DataRefused {
            parent: "v1".into(),
            breaches: vec![DataBreach::Malformed {
                share: 0.5,
                max: 0.05,
            }],
            events: EventFigures {
                lines: 10,
                malformed: 5,
                ..EventFigures::default()
            },
        };
        assert_eq!(refused.exit_code(), 3);
        let body = refused.message("movies");
        assert_eq!(body["movrek"]["outcome"], "data-refused");
        assert_eq!(body["movrek"]["figures"]["events"]["malformed"], 5);
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("since v1") && text.contains("50.00 % > 5.00 %"),
            "{text}"
        );
        assert_eq!(body["attachments"][0]["color"], "warning");
    }

    fn gates() -> GateFigures {
        GateFigures {
            candidate_rmse: 0.9,
            stable_rmse: 0.95,
            candidate_ndcg: 0.31,
            stable_ndcg: 0.3,
            candidate_gaps: vec![],
            stable_gaps: vec![],
        }
    }

    fn in_git(commit: Option<&str>) -> Delivery {
        Delivery::Git {
            repository: "https://git.example/deploy.git".into(),
            branch: "main".into(),
            path: "apps/movies.yaml".into(),
            commit: commit.map(str::to_owned),
        }
    }

    #[test]
    fn a_gitops_handoff_names_the_commit_and_the_repository() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let published = Outcome::Published {
            version: "r1".into(),
            parent: "v1".into(),
            gates: gates(),
            events: EventFigures::default(),
            delivery: in_git(Some(commit)),
        };
        let body = published.message("movies");
        assert_eq!(
            body["text"],
            format!(
                "movrek retrain movies: published r1 (from v1): RMSE 0.9000 (stable 0.9500), \
                 NDCG@10 0.3100 (stable 0.3000); committed {commit} to \
                 https://git.example/deploy.git (main:apps/movies.yaml)"
            )
        );
        assert_eq!(
            body["movrek"]["handoff"],
            json!({"mode": "gitops", "repository": "https://git.example/deploy.git",
                   "branch": "main", "path": "apps/movies.yaml", "commit": commit,
                   "changed": true})
        );
        let fields = body["attachments"][0]["fields"].as_array().unwrap();
        assert!(fields.iter().any(|f| f["title"] == "Handoff"), "{body}");
    }

    #[test]
    fn a_rerun_that_finds_the_version_in_git_says_so_and_commits_nothing() {
        let rerun = Outcome::AlreadyPublished {
            version: "r1".into(),
            parent: "v1".into(),
            delivery: in_git(None),
        };
        assert_eq!(rerun.exit_code(), 0);
        let body = rerun.message("movies");
        assert_eq!(body["movrek"]["handoff"]["changed"], false);
        assert_eq!(body["movrek"]["handoff"]["commit"], Value::Null);
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .ends_with("(main:apps/movies.yaml) is already at version r1; nothing committed"),
            "{body}"
        );
        let direct = Outcome::AlreadyPublished {
            version: "r1".into(),
            parent: "v1".into(),
            delivery: Delivery::Applied {
                namespace: "prod".into(),
            },
        };
        assert!(
            direct
                .summary("movies")
                .ends_with("; spec.model applied to prod/movies")
        );
        assert_eq!(
            direct.message("movies")["movrek"]["handoff"]["mode"],
            "direct"
        );
    }

    #[test]
    fn nothing_to_do_succeeds_quietly_but_is_still_said() {
        let o = Outcome::NothingToDo {
            parent: "r1".into(),
        };
        assert_eq!(o.exit_code(), 0);
        assert_eq!(o.message("m")["movrek"]["version"], Value::Null);
        assert_eq!(o.message("m")["movrek"]["handoff"], Value::Null);
        assert!(o.summary("m").contains("nothing to do"));
    }
}
