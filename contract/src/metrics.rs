//! Metric names and buckets the operator's analysis queries and the programs export, and the
//! escaping of label values on both sides.

/// `/recommend` and other answers of `movrek serve`, by `route` and `status`.
pub const REQUESTS: &str = "movrek_requests_total";
/// Latency histogram of `movrek serve`, by `route`.
pub const REQUEST_DURATION: &str = "movrek_request_duration_seconds";
/// Online score histogram of `movrek evaluate` (0–60 per scored user × movie pair).
pub const ONLINE_SCORE: &str = "movrek_online_score";
/// Sum of squared pair scores, for variances.
pub const ONLINE_SCORE_SQUARES: &str = "movrek_online_score_squares_sum";
/// Scored pairs whose movie was in the list the user saw.
pub const ONLINE_HITS: &str = "movrek_online_hits_total";
/// Impressions read by `movrek evaluate`.
pub const ONLINE_IMPRESSIONS: &str = "movrek_online_impressions_total";

/// Upper bounds (seconds) of [`REQUEST_DURATION`]'s buckets, 25 µs to 10 s. A latency bound in
/// a release's analysis must be one of them.
pub const LATENCY_BUCKETS_SECONDS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Escapes a label value for the text exposition format: backslash, double quote and newline.
pub fn escape_exposition(value: &str) -> String {
    escape(value, false)
}

/// Escapes a label value for a double-quoted `PromQL` string literal: also carriage return and
/// tab, which the exposition format leaves as they are.
pub fn escape_promql(value: &str) -> String {
    escape(value, true)
}

fn escape(value: &str, promql: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' if promql => out.push_str("\\r"),
            '\t' if promql => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_each_format() {
        let value = "a\\b\"c\nd\re\tf";
        assert_eq!(escape_exposition(value), "a\\\\b\\\"c\\nd\re\tf");
        assert_eq!(escape_promql(value), "a\\\\b\\\"c\\nd\\re\\tf");
        assert_eq!(escape_promql("movies-prod"), "movies-prod");
    }

    #[test]
    fn latency_buckets_ascend() {
        assert!(LATENCY_BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
    }
}
