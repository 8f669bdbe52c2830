//! Counting what a run did, the progress line and the closing summary. The online score per
//! version comes from the online evaluator ([`crate::online`]) fed with the very lines the
//! run wrote, so it matches what `movrek online-eval --log` computes from the log.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::online::{EvalCounts, VersionRow};

/// Counts kept while the run goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Sessions planned.
    pub planned: u64,
    /// Requests sent (including malformed ones).
    pub requests: u64,
    /// Sessions not sent because the run passed its deadline.
    pub skipped: u64,
    /// Requests that got no HTTP answer (refused, reset, timed out).
    pub transport_errors: u64,
    /// Answers per HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Malformed requests sent.
    pub malformed: u64,
    /// Malformed requests answered 200 (they should not be).
    pub malformed_accepted: u64,
    /// 200s whose body was not a list of ids.
    pub bad_bodies: u64,
    /// Sessions of users the server does not know.
    pub unknown_users: u64,
    /// Sessions of minors.
    pub minor_sessions: u64,
    /// Adult movies found in lists shown to minors.
    pub adult_shown_to_minors: u64,
    /// Answers per `X-Model-Version` (`-` when absent).
    pub versions: BTreeMap<String, u64>,
    /// 200s carrying an `X-Impression-Id`.
    pub impression_ids: u64,
    /// Watches of a listed movie.
    pub list_watches: u64,
    /// Watches of an organic movie.
    pub organic_watches: u64,
    /// Ratings given.
    pub ratings: u64,
    /// Log lines written.
    pub lines: u64,
    /// Request latencies in microseconds (answered requests).
    #[serde(skip)]
    pub latencies_us: Vec<u64>,
}

/// Nearest-rank percentiles of request latency, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Latency {
    /// Percentiles of microsecond samples (zeros when there are none).
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        Latency {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// The closing summary of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Where taste and runtimes came from.
    pub source: String,
    /// Counts.
    pub tally: Tally,
    /// Latency of answered requests.
    pub latency_ms: Latency,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// The online evaluator's counts over the written lines.
    pub online_counts: EvalCounts,
    /// Online score per answering version (the log's `<host>:<port>` label).
    pub online: Vec<VersionRow>,
}

impl Summary {
    /// One progress line (for stderr).
    pub fn progress(tally: &Tally, seconds: f64) -> String {
        let errors = tally.transport_errors
            + tally
                .statuses
                .iter()
                .filter(|&(&s, _)| s >= 500)
                .map(|(_, n)| n)
                .sum::<u64>();
        format!(
            "simulate: {:.0} s, {}/{} sessions, {} errors, {} watches, {} ratings, {} lines",
            seconds,
            tally.requests + tally.skipped,
            tally.planned,
            errors,
            tally.list_watches + tally.organic_watches,
            tally.ratings,
            tally.lines
        )
    }

    /// The summary as a table.
    pub fn to_table(&self) -> String {
        let t = &self.tally;
        let mut out = format!("movrek simulate: {}\n", self.source);
        let _ = writeln!(
            out,
            "requests {} in {:.1} s ({:.0}/s), skipped {}, transport errors {}",
            t.requests,
            self.seconds,
            t.requests as f64 / self.seconds.max(1e-9),
            t.skipped,
            t.transport_errors
        );
        let statuses: Vec<String> = t
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let statuses = if statuses.is_empty() {
            "none".to_owned()
        } else {
            statuses.join(", ")
        };
        let _ = writeln!(out, "statuses {statuses}");
        let _ = writeln!(
            out,
            "malformed sent {} (answered 200: {}), bad bodies {}, unknown-user sessions {}, \
             minor sessions {}, adult movies shown to minors {}",
            t.malformed,
            t.malformed_accepted,
            t.bad_bodies,
            t.unknown_users,
            t.minor_sessions,
            t.adult_shown_to_minors
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "latency ms p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
            l.p50, l.p90, l.p99, l.max
        );
        let answered: u64 = t.versions.values().sum();
        for (version, n) in &t.versions {
            let _ = writeln!(
                out,
                "version {version}: {n} answers ({:.1} %)",
                100.0 * *n as f64 / answered.max(1) as f64
            );
        }
        let _ = writeln!(
            out,
            "watches {} from lists, {} organic; ratings {}; lines {}; impression ids {}",
            t.list_watches, t.organic_watches, t.ratings, t.lines, t.impression_ids
        );
        let _ = writeln!(out, "online score per answering version (log host):");
        for row in &self.online {
            let _ = writeln!(
                out,
                "  {:<24} impressions {:>7}  scored {:>7}  mean {:>7}  hit rate {:>6}",
                row.key.model_version,
                row.stats.impressions,
                row.stats.scored,
                row.mean_score
                    .map_or_else(|| "-".to_owned(), |m| format!("{m:.3}")),
                row.hit_rate
                    .map_or_else(|| "-".to_owned(), |h| format!("{h:.3}"))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Latency::of(&mut []), Latency::default());
    }
}
