//! Per-version sums of online scores: the plain counts a Prometheus exporter publishes
//! and a canary judge compares (count, sum, sum of squares, hits, unattributed events,
//! a cumulative-ready score histogram). Sums merge by addition, so partitions add up.

use std::fmt::Write as _;

use serde::Serialize;

use super::score::Position;

/// Upper bounds (inclusive, as Prometheus `le`) of the score histogram's buckets; one more
/// bucket above the last bound counts everything else (`+Inf`). Pair scores lie in
/// `0.002 ..= 60` (see [`super::score::MAX_PAIR_SCORE`]).
pub const SCORE_BUCKETS: [f64; 11] = [0.1, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0];

/// What an aggregate row is for: release, track and model version, as the pod labels its
/// metrics. An empty string is an unknown label.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
pub struct VersionKey {
    /// `MOVREK_RELEASE`, or empty.
    pub release: String,
    /// `stable` or `canary`, or empty.
    pub track: String,
    /// `MOVREK_MODEL_VERSION`; for the original log format, the `<host>:<port>` that
    /// answered, because those lines carry no better label.
    pub model_version: String,
}

impl VersionKey {
    /// A key known only by its model version (release and track unknown).
    pub fn model_version(version: impl Into<String>) -> Self {
        VersionKey {
            model_version: version.into(),
            ..VersionKey::default()
        }
    }
}

/// Score counts per histogram bucket (not cumulative); the last entry is `+Inf`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ScoreHistogram {
    /// `counts[i]` holds scores in `(SCORE_BUCKETS[i-1], SCORE_BUCKETS[i]]`.
    pub counts: [u64; SCORE_BUCKETS.len() + 1],
}

impl ScoreHistogram {
    /// Counts one score.
    pub fn observe(&mut self, score: f64) {
        let bucket = SCORE_BUCKETS.partition_point(|&bound| bound < score);
        self.counts[bucket] += 1;
    }

    /// Cumulative counts (`le` semantics, the last is `+Inf` and equals the total).
    pub fn cumulative(&self) -> [u64; SCORE_BUCKETS.len() + 1] {
        let mut out = self.counts;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }

    /// Adds another histogram.
    pub fn merge(&mut self, other: &ScoreHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }
}

/// Online-quality counts of one version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct VersionStats {
    /// Impressions (answered recommendation requests) served.
    pub impressions: u64,
    /// Scored user × movie pairs.
    pub scored: u64,
    /// Sum of pair scores.
    pub score_sum: f64,
    /// Sum of squared pair scores.
    pub score_sum_squares: f64,
    /// Scored pairs whose movie was in the list (positions 1–20).
    pub hits: u64,
    /// Hits per position band: 1–5, 6–10, 11–15, 16–20.
    pub hits_by_band: [u64; 4],
    /// Sum of the hits' positions (mean hit position = this / `hits`).
    pub hit_position_sum: u64,
    /// Watch and rating records that came after this version's latest impression to the
    /// user, but later than the attribution window.
    pub unattributed: u64,
    /// Pairs attributed to this version but left unscored (unknown runtime).
    pub unscored: u64,
    /// Pair scores.
    pub histogram: ScoreHistogram,
}

impl VersionStats {
    /// Counts one scored pair.
    pub fn observe(&mut self, score: f64, position: Position) {
        self.scored += 1;
        self.score_sum += score;
        self.score_sum_squares += score * score;
        self.histogram.observe(score);
        if let (Position::Listed(p), Some(band)) = (position, position.band()) {
            self.hits += 1;
            self.hits_by_band[band] += 1;
            self.hit_position_sum += u64::from(p);
        }
    }

    /// Adds another row (e.g. from another partition).
    pub fn merge(&mut self, other: &VersionStats) {
        self.impressions += other.impressions;
        self.scored += other.scored;
        self.score_sum += other.score_sum;
        self.score_sum_squares += other.score_sum_squares;
        self.hits += other.hits;
        for (a, b) in self.hits_by_band.iter_mut().zip(other.hits_by_band) {
            *a += b;
        }
        self.hit_position_sum += other.hit_position_sum;
        self.unattributed += other.unattributed;
        self.unscored += other.unscored;
        self.histogram.merge(&other.histogram);
    }

    /// Mean pair score; `None` without scored pairs.
    pub fn mean(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.score_sum / self.scored as f64)
    }

    /// Sample standard deviation of pair scores; `None` below two scored pairs.
    pub fn std_dev(&self) -> Option<f64> {
        let n = self.scored as f64;
        (self.scored > 1).then(|| {
            let variance =
                (self.score_sum_squares - self.score_sum * self.score_sum / n) / (n - 1.0);
            variance.max(0.0).sqrt()
        })
    }

    /// Share of scored pairs that were hits; `None` without scored pairs.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.hits as f64 / self.scored as f64)
    }
}

/// Records the evaluator read and what became of them, over all versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EvalCounts {
    /// Non-blank lines (or records) read.
    pub records: u64,
    /// Lines that did not parse (oversized ones included).
    pub malformed: u64,
    /// Lines longer than the reader's limit, skipped unread.
    pub oversized: u64,
    /// Rating lines with a value outside 1–5.
    pub out_of_range: u64,
    /// Recommendation lines with status 200: impressions.
    pub impressions: u64,
    /// Recommendation lines with another status: no list, not impressions.
    pub failed_requests: u64,
    /// Impressions repeated exactly (user, time, version, list), ignored.
    pub duplicate_impressions: u64,
    /// Watch lines.
    pub watch_records: u64,
    /// Rating lines.
    pub rating_records: u64,
    /// Records older than an earlier record of the same user (still joined).
    pub out_of_order: u64,
    /// Watch lines at or below the pair's furthest minute, and ratings repeated with the
    /// same time and value: no effect on any score.
    pub duplicate_actions: u64,
    /// Ratings that replaced an earlier rating of the same pair (the later time wins).
    pub rating_updates: u64,
    /// Watch and rating records of users with no impression at or before them.
    pub no_impression: u64,
    /// Watch and rating records whose latest impression was outside the window (also
    /// counted in that impression's version as `unattributed`).
    pub outside_window: u64,
    /// Pairs left unscored because the movie's runtime is unknown.
    pub unknown_runtime: u64,
    /// Impressions that arrived after their attribution window had closed (counted as
    /// impressions; actions on them are late).
    pub late_impressions: u64,
    /// Watch and rating records for an impression whose window had already closed and been
    /// scored: dropped, so a pair is never scored twice.
    pub late_actions: u64,
    /// Records (of a live stream) timed further ahead of the evaluator's clock than the
    /// allowed skew: counted and not joined, so a producer with a wrong clock neither holds
    /// the records behind it nor moves the watermark.
    #[serde(default)]
    pub future: u64,
    /// Records (of a live stream) handed to the join before the watermark passed them
    /// because the queue of records waiting for it was full (they are joined as they come,
    /// so one may count as out of order).
    #[serde(default)]
    pub released_early: u64,
}

impl EvalCounts {
    /// All unattributed watch and rating records.
    pub fn unattributed(&self) -> u64 {
        self.no_impression + self.outside_window
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionRow {
    /// Release, track and version.
    #[serde(flatten)]
    pub key: VersionKey,
    /// Its counts.
    #[serde(flatten)]
    pub stats: VersionStats,
    /// `score_sum / scored`.
    pub mean_score: Option<f64>,
    /// `hits / scored`.
    pub hit_rate: Option<f64>,
}

/// The whole result of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OnlineReport {
    /// Attribution window, seconds.
    pub window_seconds: i64,
    /// Where movie runtimes came from, in words.
    pub runtimes: String,
    /// Upper bounds of the histogram buckets (the `+Inf` bucket follows).
    pub score_buckets: [f64; SCORE_BUCKETS.len()],
    /// Global counts.
    pub counts: EvalCounts,
    /// Per-version rows, sorted by key.
    pub versions: Vec<VersionRow>,
    /// The first malformed lines: (line number, reason).
    pub malformed_examples: Vec<(u64, String)>,
}

fn or_dash(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

impl OnlineReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report of plain fields always serialises")
    }

    /// A per-version table and the global counts, for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "online evaluation (window {} s, runtimes: {})\n",
            self.window_seconds, self.runtimes
        );
        let _ = writeln!(
            out,
            "{:<24}{:>12}{:>10}{:>12}{:>10}{:>8}{:>10}{:>14}{:>10}",
            "version",
            "impressions",
            "scored",
            "mean score",
            "sd",
            "hits",
            "hit rate",
            "unattributed",
            "unscored"
        );
        for row in &self.versions {
            let name = if row.key.release.is_empty() && row.key.track.is_empty() {
                row.key.model_version.clone()
            } else {
                format!(
                    "{}/{}/{}",
                    row.key.release, row.key.track, row.key.model_version
                )
            };
            let s = &row.stats;
            let _ = writeln!(
                out,
                "{name:<24}{:>12}{:>10}{:>12}{:>10}{:>8}{:>10}{:>14}{:>10}",
                s.impressions,
                s.scored,
                or_dash(row.mean_score, 3),
                or_dash(s.std_dev(), 3),
                s.hits,
                or_dash(row.hit_rate, 3),
                s.unattributed,
                s.unscored
            );
        }
        let c = &self.counts;
        let rows: [(&str, u64); 16] = [
            ("records", c.records),
            ("malformed", c.malformed),
            ("oversized", c.oversized),
            ("out-of-range ratings", c.out_of_range),
            ("impressions", c.impressions),
            ("failed requests", c.failed_requests),
            ("duplicate impressions", c.duplicate_impressions),
            ("watch records", c.watch_records),
            ("rating records", c.rating_records),
            ("out of order", c.out_of_order),
            ("duplicate actions", c.duplicate_actions),
            ("no impression", c.no_impression),
            ("outside window", c.outside_window),
            ("unknown runtime", c.unknown_runtime),
            ("late impressions", c.late_impressions),
            ("late actions", c.late_actions),
        ];
        for (label, value) in rows {
            let _ = writeln!(out, "  {label:<22}{value:>12}");
        }
        for (line, reason) in &self.malformed_examples {
            let _ = writeln!(out, "  ! line {line}: {reason}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        let mut h = ScoreHistogram::default();
        for score in [0.01, 0.1, 0.2, 1.0, 10.0, 50.0, 60.0, 61.0] {
            h.observe(score);
        }
        assert_eq!(h.counts, [2, 2, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(h.cumulative(), [2, 4, 4, 4, 5, 5, 5, 5, 5, 6, 7, 8]);
    }

    #[test]
    fn stats_sum_and_merge() {
        let mut a = VersionStats::default();
        a.observe(50.0, Position::Listed(3));
        a.observe(0.02, Position::NotListed);
        let mut b = VersionStats::default();
        b.observe(24.0, Position::Listed(7));
        b.unattributed = 2;
        a.merge(&b);
        assert_eq!((a.scored, a.hits, a.hit_position_sum), (3, 2, 10));
        assert_eq!(a.hits_by_band, [1, 1, 0, 0]);
        assert!((a.score_sum - 74.02).abs() < 1e-9);
        assert!((a.score_sum_squares - (2500.0 + 0.0004 + 576.0)).abs() < 1e-9);
        assert!((a.mean().unwrap() - 74.02 / 3.0).abs() < 1e-9);
        assert!((a.hit_rate().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // Sample sd of {50, 0.02, 24}.
        let m = 74.02 / 3.0;
        let var = ((50.0f64 - m).powi(2) + (0.02f64 - m).powi(2) + (24.0f64 - m).powi(2)) / 2.0;
        assert!((a.std_dev().unwrap() - var.sqrt()).abs() < 1e-9);
        assert_eq!(a.unattributed, 2);
        assert_eq!(a.histogram.cumulative()[SCORE_BUCKETS.len()], 3);
        assert_eq!(VersionStats::default().mean(), None);
    }
}
