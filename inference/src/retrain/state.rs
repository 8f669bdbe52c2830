//! The loop's state, kept where the model is: the `offline` report of a retrained version's
//! `model.json` is a [`RetrainRecord`] — the events consumed (Kafka offsets per partition,
//! or the last event time of files), the digest and location of the data set, the parent
//! version, and every gate figure. The next run reads it from the version stable serves, so
//! a rerun with no new events finds nothing to do, and a rerun after a publish finds the
//! same version already in the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gate::{DataLimits, EventFigures, GateFigures, ModelLimits, ModelScore};

/// Marks a `model.json` `offline` report as written by `movrek retrain`.
pub const RECORD_KIND: &str = "movrek-retrain/v1";

/// File name of the published data set inside a version directory.
pub const DATASET_NAME: &str = "dataset.json";
/// File name of the published fairness report inside a version directory.
pub const FAIRNESS_NAME: &str = "fairness.json";

/// The events a version consumed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRange {
    /// `kafka://brokers/topic`, or the files read.
    pub source: String,
    /// Kafka: next offset to read per partition (everything before was consumed, by this
    /// version or its ancestors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub offsets: BTreeMap<i32, i64>,
    /// Kafka: where this window's read started per partition (the parent's `offsets`, or
    /// the first offset read where the parent had none); with `offsets`, the exact range.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub start_offsets: BTreeMap<i32, i64>,
    /// Unix seconds of the earliest and latest event in the window.
    pub first_event: Option<i64>,
    /// Latest event time; for files, the next run reads only later events.
    pub last_event: Option<i64>,
    /// Unix milliseconds when the read started (the Kafka end offsets were taken then).
    pub read_at_ms: i64,
    /// The previous read's start, when known: the window is `[since_ms, read_at_ms)`.
    pub since_ms: Option<i64>,
}

impl EventRange {
    /// The window's length in hours, when its start is known.
    pub fn hours(&self) -> Option<f64> {
        self.since_ms
            .map(|since| (self.read_at_ms - since).max(0) as f64 / 3_600_000.0)
    }
}

/// What `movrek retrain` records in `model.json` (`offline`) for the version it publishes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrainRecord {
    /// [`RECORD_KIND`].
    pub kind: String,
    /// The version this one was trained from (the one stable served).
    pub parent: Option<String>,
    /// SHA-256 of the parent's artifact.
    pub parent_sha256: Option<String>,
    /// SHA-256 of the published data set (`dataset.json`).
    pub data_sha256: String,
    /// URI of the published data set.
    pub dataset_uri: String,
    /// The events consumed.
    pub events: EventRange,
    /// The window's counts.
    pub figures: EventFigures,
    /// Seed and share of the held-out new ratings.
    pub holdout_seed: u64,
    /// Share of the new ratings held out.
    pub holdout_fraction: f64,
    /// Limits the data was judged with.
    pub data_limits: DataLimits,
    /// Limits the model was judged with.
    pub model_limits: ModelLimits,
    /// The gates' figures.
    pub gates: GateFigures,
    /// The candidate's full scores (overall and per group).
    pub candidate: ModelScore,
    /// Stable's scores on the same ratings.
    pub stable: ModelScore,
}

impl RetrainRecord {
    /// Reads the record out of a `model.json` `offline` value; `None` for a version that
    /// `movrek retrain` did not write (e.g. the first, from `movrek publish`).
    pub fn from_offline(offline: Option<&serde_json::Value>) -> Option<Self> {
        let value = offline?;
        if value.get("kind").and_then(serde_json::Value::as_str) != Some(RECORD_KIND) {
            return None;
        }
        serde_json::from_value(value.clone()).ok()
    }
}

/// The version name of a candidate: `r` and 12 hex digits of the SHA-256 of the parent
/// version, the data digest and the training parameters. The same inputs give the same
/// name, so a rerun finds its version already published instead of adding another.
pub fn version_name(parent: &str, data_sha256: &str, params_json: &str) -> String {
    let digest =
        crate::util::sha256_hex(format!("{parent}\n{data_sha256}\n{params_json}").as_bytes());
    format!("r{}", &digest[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_are_stable_and_depend_on_every_input() {
        let a = version_name("v1", "aa", "{}");
        assert_eq!(a, version_name("v1", "aa", "{}"));
        assert_eq!(a.len(), 13);
        assert!(crate::store::layout::check_name("version", &a).is_ok());
        for other in [
            version_name("v2", "aa", "{}"),
            version_name("v1", "ab", "{}"),
            version_name("v1", "aa", "{\"k\":1}"),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn only_retrain_records_are_read_back() {
        assert_eq!(RetrainRecord::from_offline(None), None);
        let eval_report = serde_json::json!({"split": {}, "rating": []});
        assert_eq!(RetrainRecord::from_offline(Some(&eval_report)), None);
    }

    #[test]
    fn window_hours_need_a_start() {
        let mut range = EventRange {
            read_at_ms: 7_200_000,
            ..EventRange::default()
        };
        assert_eq!(range.hours(), None);
        range.since_ms = Some(0);
        assert_eq!(range.hours(), Some(2.0));
    }
}
