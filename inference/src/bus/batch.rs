//! The batch commands over topics: `movrek ingest --from kafka://…` and `movrek online-eval
//! --events kafka://… [--impressions kafka://…]`. Each reads to the bounds of
//! [`super::read`] (never past the end offsets captured at start), feeds the same pure
//! accumulator the file path feeds, and so gives the same output as the same lines in a
//! file.
//!
//! One record is one log line (a trailing `\n` or `\r\n` is dropped; a record holding
//! several lines is one malformed line, counted).

use std::path::Path;
use std::time::Duration;

use super::KafkaUri;
use super::read::{Polled, ReadBounds, ReadError, TopicReader};
use crate::data::events::{Ingest, IngestReport, parse_time, write_ingest};
use crate::online::merge::{Lane, Merge};
use crate::online::{LogEvaluation, MovieKeys, OnlineReport, Runtimes};

/// How long one poll waits.
const POLL: Duration = Duration::from_millis(100);

/// Records a partition may hold in the merge while another has none.
const MERGE_BUFFER: usize = 20_000;

/// A record's payload as a log line: without its terminator.
fn as_line(payload: &[u8]) -> &[u8] {
    let line = payload.strip_suffix(b"\n").unwrap_or(payload);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `movrek ingest --from`: reads the topic within `bounds` and writes the data directory
/// and `quality.json` into `out_dir`, as [`crate::data::events::ingest`] does for a file.
/// Returns the report and the number of records read.
///
/// # Errors
/// A [`ReadError`] (unreachable broker, missing topic, stalled read) or a failed write,
/// as a message. Nothing is written when the read fails.
pub fn ingest(
    uri: &KafkaUri,
    bounds: &ReadBounds,
    timeout: Duration,
    out_dir: &Path,
) -> Result<(IngestReport, u64), String> {
    bounds.check()?;
    let mut reader = TopicReader::open(uri, bounds, timeout).map_err(|e| e.to_string())?;
    let mut state = Ingest::default();
    let mut line_number = 0;
    loop {
        match reader.poll(POLL).map_err(|e| e.to_string())? {
            Polled::Record { payload, .. } => {
                line_number += 1;
                let line = as_line(&payload);
                if !crate::data::parse::is_blank(line) {
                    state.add_line(line_number, line);
                }
            }
            Polled::Nothing => {}
            Polled::Done => break,
        }
    }
    let report = write_ingest(state, out_dir).map_err(|e| crate::server::error_chain(&e))?;
    Ok((report, reader.records()))
}

/// Where `movrek online-eval` reads from Kafka.
#[derive(Clone, Debug)]
pub struct OnlineEvalTopics {
    /// Topic of log lines (watches, ratings, recommendation requests).
    pub events: KafkaUri,
    /// Topic of impression records from `movrek serve`, if any.
    pub impressions: Option<KafkaUri>,
    /// Whether recommendation-request lines on the events topic are impressions too.
    pub log_impressions: bool,
}

impl OnlineEvalTopics {
    /// Source index of impressions in a merge lane (sorts first on equal times).
    const IMPRESSIONS: u8 = 0;
    /// Source index of events.
    const EVENTS: u8 = 1;
}

/// The event time of a record, for the merge: an impression's `time`, a line's first
/// field; `None` when it has none (it is counted malformed when handed out).
fn record_time(source: u8, payload: &[u8]) -> Option<i64> {
    if source == OnlineEvalTopics::IMPRESSIONS {
        crate::bus::impression::Impression::parse(payload)
            .ok()?
            .unix_seconds()
            .ok()
    } else {
        let line = as_line(payload);
        let end = line.iter().position(|&b| b == b',')?;
        parse_time(line[..end].trim_ascii())
    }
}

/// `movrek online-eval` over topics: both read to the end offsets captured at start (and
/// `bounds`), merged into event-time order ([`Merge`]), and scored as one log is.
///
/// # Errors
/// A [`ReadError`] as a message.
pub fn online_eval(
    topics: &OnlineEvalTopics,
    bounds: &ReadBounds,
    timeout: Duration,
    window_seconds: i64,
    (runtimes, runtimes_source): (&Runtimes, &str),
    movies: &mut MovieKeys,
) -> Result<OnlineReport, String> {
    bounds.check()?;
    if bounds.max_records.is_some() {
        return Err(
            "--max-records applies to ingest only (a count over two topics read \
                    in event-time order has no single meaning)"
                .to_owned(),
        );
    }
    let mut readers: Vec<(u8, TopicReader)> = Vec::new();
    if let Some(uri) = &topics.impressions {
        let reader = TopicReader::open(uri, bounds, timeout).map_err(|e| e.to_string())?;
        readers.push((OnlineEvalTopics::IMPRESSIONS, reader));
    }
    let events = TopicReader::open(&topics.events, bounds, timeout).map_err(|e| e.to_string())?;
    readers.push((OnlineEvalTopics::EVENTS, events));
    let mut merge = Merge::new(
        readers
            .iter()
            .flat_map(|(source, r)| r.partitions().into_iter().map(move |p| (*source, p))),
    );
    let mut evaluation = LogEvaluation::new(window_seconds);
    let mut paused: std::collections::BTreeSet<Lane> = std::collections::BTreeSet::new();
    let mut numbers = [0_u64; 2];
    let log_impressions = topics.log_impressions || topics.impressions.is_none();
    let mut got = 0;
    while !merge.is_done() {
        let wait = if got == 0 { POLL / 5 } else { Duration::ZERO };
        got = 0;
        for (source, reader) in &mut readers {
            got += read_some(*source, reader, &mut merge, wait).map_err(|e| e.to_string())?;
        }
        while let Some(((source, _), payload)) = merge.pop() {
            let number = &mut numbers[usize::from(source)];
            *number += 1;
            if source == OnlineEvalTopics::IMPRESSIONS {
                evaluation.impression(*number, &payload);
            } else {
                let line = as_line(&payload);
                if log_impressions || !is_request_line(line) {
                    evaluation.line(*number, line, movies);
                }
            }
        }
        // Bound the merge's buffers: pause partitions far ahead of a starving one.
        for lane in merge.ahead(MERGE_BUFFER) {
            if paused.insert(lane) {
                pause(&mut readers, lane, true);
            }
        }
        for lane in merge.behind(MERGE_BUFFER / 2) {
            if paused.remove(&lane) {
                pause(&mut readers, lane, false);
            }
        }
    }
    Ok(evaluation.finish(runtimes, runtimes_source))
}

/// Whether a log line is a recommendation request (an impression in the log format): on
/// an events topic beside an impressions topic it is not one unless asked for, as in
/// `movrek evaluate --log-impressions`.
fn is_request_line(line: &[u8]) -> bool {
    matches!(
        crate::data::events::parse_event(line),
        Ok(crate::data::events::Event::Recommendation { .. })
    )
}

/// Moves what a reader has (up to a batch) into the merge, waiting up to `wait` for the
/// first record; marks its finished partitions. Returns the records moved.
fn read_some(
    source: u8,
    reader: &mut TopicReader,
    merge: &mut Merge,
    mut wait: Duration,
) -> Result<usize, ReadError> {
    let mut got = 0;
    while got < 5_000 {
        match reader.poll(wait)? {
            Polled::Record {
                partition, payload, ..
            } => {
                merge.push((source, partition), record_time(source, &payload), payload);
                got += 1;
                wait = Duration::ZERO;
            }
            Polled::Nothing | Polled::Done => break,
        }
    }
    for &partition in reader.finished() {
        merge.finish((source, partition));
    }
    Ok(got)
}

fn pause(readers: &mut [(u8, TopicReader)], (source, partition): Lane, paused: bool) {
    if let Some((_, reader)) = readers.iter_mut().find(|(s, _)| *s == source) {
        reader.pause(partition, paused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_lines_without_their_terminator() {
        assert_eq!(as_line(b"a,b\r\n"), b"a,b");
        assert_eq!(as_line(b"a,b\n"), b"a,b");
        assert_eq!(as_line(b"a,b"), b"a,b");
        assert_eq!(as_line(b"a\nb"), b"a\nb", "a record of two lines stays one");
    }

    #[test]
    fn merge_times_come_from_the_impression_or_the_line() {
        let impression = br#"{"v":1,"id":"x","time":"2024-05-01T12:00:00Z","user":1,"movies":[1],"release":"r","track":"stable","model_version":"v","artifact_sha256":"s"}"#;
        assert_eq!(
            record_time(OnlineEvalTopics::IMPRESSIONS, impression),
            Some(1_714_564_800)
        );
        assert_eq!(
            record_time(
                OnlineEvalTopics::EVENTS,
                b"2024-05-01T12:00:01,1,GET /rate/3=4\n"
            ),
            Some(1_714_564_801)
        );
        assert_eq!(record_time(OnlineEvalTopics::EVENTS, b"garbage"), None);
        assert_eq!(record_time(OnlineEvalTopics::IMPRESSIONS, b"{}"), None);
    }

    #[test]
    fn request_lines_are_told_apart_from_actions() {
        assert!(is_request_line(
            b"2024-05-01T12:00:00,1,recommendation request a:8082, status 200, result: 1, 2, 8 ms"
        ));
        assert!(!is_request_line(b"2024-05-01T12:00:00,1,GET /rate/3=4"));
        assert!(!is_request_line(b"garbage"));
    }
}
