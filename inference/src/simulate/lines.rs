//! The original log line format (DESIGN.md "Data formats"), written: what
//! [`crate::data::events::parse_event`] reads.
//!
//! Times are the simulator's virtual clock (see [`super`]): a session's recommendation
//! request at its start, the watch from 5–60 s later, one line per minute watched spaced
//! `minute_seconds` apart (only the last minute with `every_minute` off), and the rating
//! 30 s after the last minute.

use std::fmt::Write as _;

use super::behaviour::Action;
use crate::util::SplitMix64;

/// `2024-05-01T12:00:00` (UTC) of Unix seconds.
pub fn iso(time: i64) -> String {
    chrono::DateTime::from_timestamp(time, 0).map_or_else(
        || "1970-01-01T00:00:00".to_owned(),
        |t| t.format("%Y-%m-%dT%H:%M:%S").to_string(),
    )
}

/// The `<host>` written for an answer: the `X-Model-Version` it carried (characters other
/// than letters, digits, `.`, `_` and `-` replaced by `_`), or `fallback` without one. The
/// log format's `<host>:<port>` is its only label for who answered, so naming the model
/// version there lets `movrek online-eval` split its table per version.
pub fn host_label(version: Option<&str>, fallback: &str) -> String {
    match version.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => v
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        None => fallback.to_owned(),
    }
}

/// `<time>,<user>,recommendation request <host>:<port>, status <code>, result: <ids>, <n> ms`.
pub fn recommendation(
    time: i64,
    user: u32,
    host: &str,
    port: u16,
    status: u16,
    ids: &[u32],
    latency_ms: u64,
) -> String {
    let mut line = format!(
        "{},{user},recommendation request {host}:{port}, status {status}, result: ",
        iso(time)
    );
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            line.push_str(", ");
        }
        let _ = write!(line, "{id}");
    }
    let _ = write!(line, ", {latency_ms} ms");
    line
}

/// The watch and rating lines of one action, starting from the request at `time`; draws
/// the delay before watching from `rng`.
pub fn action(
    time: i64,
    user: u32,
    act: &Action,
    minute_seconds: u32,
    every_minute: bool,
    rng: &mut SplitMix64,
) -> Vec<String> {
    let start = time + 5 + rng.below(56) as i64;
    let step = i64::from(minute_seconds);
    let first = if every_minute { 1 } else { act.minutes };
    let mut lines: Vec<String> = (first..=act.minutes)
        .map(|minute| {
            format!(
                "{},{user},GET /data/m/{}/{minute}.mpg",
                iso(start + i64::from(minute - 1) * step),
                act.movie
            )
        })
        .collect();
    if let Some(value) = act.rating {
        let at = start + i64::from(act.minutes - 1) * step + 30;
        lines.push(format!(
            "{},{user},GET /rate/{}={value}",
            iso(at),
            act.movie
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::events::{Event, MovieRef, parse_event};

    #[test]
    fn written_lines_parse_back() {
        let line = recommendation(1_714_564_800, 7, "v2", 8082, 200, &[5, 9, 11], 12);
        assert_eq!(
            line,
            "2024-05-01T12:00:00,7,recommendation request v2:8082, status 200, result: 5, 9, 11, 12 ms"
        );
        let Ok(Event::Recommendation {
            status,
            result,
            host,
            ..
        }) = parse_event(line.as_bytes())
        else {
            panic!("{line}");
        };
        assert_eq!((status, host), (200, &b"v2:8082"[..]));
        assert_eq!(result.ids().count(), 3);
        let failed = recommendation(0, 7, "127.0.0.1", 1, 503, &[], 0);
        assert!(matches!(
            parse_event(failed.as_bytes()),
            Ok(Event::Recommendation { status: 503, .. })
        ));
        let act = Action {
            movie: 42,
            position: Some(1),
            minutes: 3,
            rating: Some(4),
        };
        let mut rng = SplitMix64::new(1);
        let lines = action(1_714_564_800, 7, &act, 5, true, &mut rng);
        assert_eq!(lines.len(), 4);
        let minutes: Vec<u32> = lines[..3]
            .iter()
            .map(|l| match parse_event(l.as_bytes()) {
                Ok(Event::Watch {
                    movie: MovieRef::Id(42),
                    minute,
                    user: 7,
                    ..
                }) => minute,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(minutes, vec![1, 2, 3]);
        assert!(matches!(
            parse_event(lines[3].as_bytes()),
            Ok(Event::Rate { value: 4, .. })
        ));
        assert_eq!(action(0, 7, &act, 5, false, &mut rng).len(), 2);
        assert_eq!(host_label(Some("v 7,x"), "h"), "v_7_x");
        assert_eq!(host_label(Some(" "), "h"), "h");
    }
}
