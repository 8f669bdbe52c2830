//! Reads the events since the last training into an [`Ingest`]: from a Kafka topic after
//! the offsets the parent version recorded (exact: every record is read once over the
//! versions' chain), or from log files after the parent's last event time.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Duration;

use super::state::EventRange;
use crate::bus::KafkaUri;
use crate::bus::read::{Polled, ReadBounds, TopicReader};
use crate::data::events::{Event, Ingest, parse_event};
use crate::data::parse::{is_blank, trim_cr};

/// Where the events come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// A topic of event lines.
    Kafka(KafkaUri),
    /// Event log files, read whole; events at or before the parent's last event are skipped.
    Files(Vec<PathBuf>),
}

impl EventSource {
    /// `kafka://…` or a comma-separated list of files.
    ///
    /// # Errors
    /// A bad Kafka URI.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("kafka://") {
            return text.parse::<KafkaUri>().map(EventSource::Kafka);
        }
        let files: Vec<PathBuf> = text
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
            .collect();
        if files.is_empty() {
            return Err("--events: give kafka://HOST:PORT/TOPIC or event log files".to_owned());
        }
        Ok(EventSource::Files(files))
    }
}

/// How far back before the previous read a Kafka read starts looking (through the time
/// index), so records produced with an older timestamp but appended after that read are
/// still found; offsets decide what is new.
pub const KAFKA_LOOKBACK_MS: i64 = 24 * 3_600_000;

/// Reads the window after `previous` (the parent's range; `None`: everything) into a fresh
/// [`Ingest`], and returns it with the range it covers. `now_ms` is the read's start.
///
/// # Errors
/// An unreadable file or an unreachable broker, a missing topic, a stalled read.
pub fn read_window(
    source: &EventSource,
    previous: Option<&EventRange>,
    now_ms: i64,
    timeout: Duration,
) -> Result<(Ingest, EventRange), String> {
    let mut window = Window {
        ingest: Ingest::default(),
        range: EventRange {
            read_at_ms: now_ms,
            since_ms: previous.map(|p| p.read_at_ms),
            ..EventRange::default()
        },
        lines: 0,
    };
    match source {
        EventSource::Kafka(uri) => {
            window.range.source = format!("kafka://{}/{}", uri.brokers, uri.topic);
            let offsets = previous.map(|p| p.offsets.clone()).unwrap_or_default();
            read_kafka(uri, &offsets, previous, timeout, &mut window)?;
        }
        EventSource::Files(files) => {
            window.range.source = files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(",");
            let after = previous.and_then(|p| p.last_event);
            for file in files {
                read_file(file, after, &mut window)?;
            }
            window.range.last_event = window.range.last_event.or(after);
        }
    }
    Ok((window.ingest, window.range))
}

struct Window {
    ingest: Ingest,
    range: EventRange,
    lines: u64,
}

impl Window {
    /// Feeds one line unless it is an event at or before `after`.
    fn add(&mut self, line: &[u8], after: Option<i64>) {
        if is_blank(line) {
            return;
        }
        let time = match parse_event(line) {
            Ok(
                Event::Watch { time, .. }
                | Event::Rate { time, .. }
                | Event::Recommendation { time, .. },
            ) => Some(time),
            Err(_) => None,
        };
        if let (Some(time), Some(after)) = (time, after)
            && time <= after
        {
            return;
        }
        if let Some(time) = time {
            let range = &mut self.range;
            range.first_event = Some(range.first_event.map_or(time, |t| t.min(time)));
            range.last_event = Some(range.last_event.map_or(time, |t| t.max(time)));
        }
        self.lines += 1;
        self.ingest.add_line(self.lines, line);
    }
}

fn read_file(path: &PathBuf, after: Option<i64>, window: &mut Window) -> Result<(), String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if read == 0 {
            return Ok(());
        }
        let line = trim_cr(buf.strip_suffix(b"\n").unwrap_or(&buf));
        window.add(line, after);
    }
}

fn read_kafka(
    uri: &KafkaUri,
    offsets: &BTreeMap<i32, i64>,
    previous: Option<&EventRange>,
    timeout: Duration,
    window: &mut Window,
) -> Result<(), String> {
    let bounds = ReadBounds {
        // Without recorded offsets (the first retraining) the whole topic is the window.
        since_ms: previous
            .filter(|p| !p.offsets.is_empty())
            .map(|p| p.read_at_ms - KAFKA_LOOKBACK_MS),
        until_ms: None,
        max_records: None,
    };
    let mut reader = TopicReader::open(uri, &bounds, timeout).map_err(|e| e.to_string())?;
    let mut next = offsets.clone();
    let mut start = offsets.clone();
    loop {
        match reader
            .poll(Duration::from_millis(100))
            .map_err(|e| e.to_string())?
        {
            Polled::Record {
                partition,
                offset,
                payload,
            } => {
                if offset < next.get(&partition).copied().unwrap_or(0) {
                    continue;
                }
                start.entry(partition).or_insert(offset);
                next.insert(partition, offset + 1);
                let line = payload.strip_suffix(b"\n").unwrap_or(&payload);
                window.add(trim_cr(line), None);
            }
            Polled::Nothing => {}
            Polled::Done => break,
        }
    }
    window.range.offsets = next;
    window.range.start_offsets = start;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert!(matches!(
            EventSource::parse("kafka://127.0.0.1:9092/events"),
            Ok(EventSource::Kafka(_))
        ));
        assert_eq!(
            EventSource::parse("a.log,b.log"),
            Ok(EventSource::Files(vec!["a.log".into(), "b.log".into()]))
        );
        assert!(EventSource::parse("").is_err());
    }

    #[test]
    fn files_are_read_after_the_previous_last_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        std::fs::write(
            &log,
            "2026-12-01T10:00:00,1,GET /rate/10=4\n\
             2026-12-01T11:00:00,1,GET /rate/11=5\n\
             not a line\n\
             2026-12-01T12:00:00,2,GET /data/m/12/3.mpg\n",
        )
        .unwrap();
        let source = EventSource::Files(vec![log]);
        let (ingest, range) = read_window(&source, None, 5, Duration::from_secs(1)).unwrap();
        let (data, report) = ingest.finish();
        assert_eq!(
            (report.lines, report.malformed, data.ratings.len()),
            (4, 1, 2)
        );
        let eleven = crate::data::events::parse_time(b"2026-12-01T11:00:00").unwrap();
        let previous = EventRange {
            last_event: Some(eleven),
            read_at_ms: 1,
            ..range
        };
        let (ingest, next) =
            read_window(&source, Some(&previous), 9, Duration::from_secs(1)).unwrap();
        let (data, report) = ingest.finish();
        // The 10:00 and 11:00 ratings were consumed; the malformed line has no time and is
        // counted again (documented caveat of file sources).
        assert_eq!(
            (report.lines, data.ratings.len(), data.watches.len()),
            (2, 0, 1)
        );
        assert_eq!(next.since_ms, Some(1));
        assert_eq!(next.last_event, Some(eleven + 3600));
    }
}
