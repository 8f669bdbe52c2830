//! Reading topics to a bound, for the batch commands: `movrek ingest --from` and
//! `movrek online-eval --impressions/--events`.
//!
//! A read always ends. At start it captures every partition's end offset (high watermark)
//! and reads up to it at most, so records produced later, or an idle topic, never keep it
//! running. `--since` and `--until` narrow each partition's range through the broker's
//! time index (Kafka offsets-for-times, on the records' Kafka timestamps: the producer's
//! create time unless the topic logs append time), and `--max-records` stops after that
//! many records. Which offsets are read is decided by a pure function
//! ([`plan_ranges`]); [`TopicReader`] is the IO around it.
//!
//! # Errors
//! A broker that does not answer within the timeout, a topic that does not exist, and a
//! read that stops advancing for the timeout are errors ([`ReadError`]), never a hang.
//! The end of a partition is the normal way a read finishes: it is not logged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{EndAwareContext, KafkaUri};

/// Default time a broker has to answer metadata and offset calls, and a read to advance.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What part of a topic to read. Times are Unix milliseconds of the records' Kafka
/// timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadBounds {
    /// Start at the first record at or after this time (default: the earliest offset).
    pub since_ms: Option<i64>,
    /// Stop before the first record at or after this time.
    pub until_ms: Option<i64>,
    /// Stop after this many records (over all partitions, in the order they arrive).
    pub max_records: Option<u64>,
}

impl ReadBounds {
    /// Checks that the bounds can select anything.
    ///
    /// # Errors
    /// `--since` not before `--until`, or `--max-records 0`.
    pub fn check(&self) -> Result<(), String> {
        if let (Some(since), Some(until)) = (self.since_ms, self.until_ms)
            && since >= until
        {
            return Err("--since must be before --until".to_owned());
        }
        if self.max_records == Some(0) {
            return Err("--max-records must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// A time bound on the command line: RFC 3339 (`2026-12-04T08:00:00Z`,
/// `2026-12-04T09:00:00.250+01:00`), or the event log's form without a zone
/// (`2026-12-04T08:00:00`, read as UTC). Returns Unix milliseconds.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_time_bound(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(time.and_utc().timestamp_millis());
    }
    Err(format!(
        "{text:?} is not a time: give RFC 3339 (2026-12-04T08:00:00Z) or the log's \
         2026-12-04T08:00:00 (UTC)"
    ))
}

/// Offsets `[start, end)` of one partition to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// The partition.
    pub partition: i32,
    /// First offset to read.
    pub start: i64,
    /// First offset not to read.
    pub end: i64,
}

/// One partition as the broker describes it: its offsets, and the answers of the time
/// index for the bounds (`Some(offset)`: the first record at or after the time; `None`:
/// no record that late).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The partition.
    pub partition: i32,
    /// Its first offset (low watermark).
    pub low: i64,
    /// One past its last offset (high watermark), captured at start.
    pub high: i64,
    /// The first offset at or after `since`, when a `since` was given.
    pub since: Option<Option<i64>>,
    /// The first offset at or after `until`, when an `until` was given.
    pub until: Option<Option<i64>>,
}

/// The ranges to read: from the low watermark (or the first record at `since`) up to the
/// end captured at start (or the first record at `until`). Empty ranges are left out.
pub fn plan_ranges(partitions: &[PartitionOffsets]) -> Vec<Range> {
    partitions
        .iter()
        .filter_map(|p| {
            let start = match p.since {
                None => p.low,
                Some(found) => found.unwrap_or(p.high).max(p.low),
            };
            let end = match p.until {
                None => p.high,
                Some(found) => found.unwrap_or(p.high).min(p.high),
            };
            (start < end).then_some(Range {
                partition: p.partition,
                start,
                end,
            })
        })
        .collect()
}

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The consumer could not be created (bad settings).
    #[error("cannot create a Kafka consumer for {brokers}: {source}")]
    Client {
        /// `host:port[,…]`.
        brokers: String,
        /// librdkafka's reason.
        #[source]
        source: Box<KafkaError>,
    },
    /// No broker answered a metadata or offsets request in time.
    #[error("Kafka at {brokers} did not answer within {timeout:?} ({what}): {source}")]
    Unreachable {
        /// `host:port[,…]`.
        brokers: String,
        /// The time allowed.
        timeout: Duration,
        /// The request.
        what: String,
        /// librdkafka's reason.
        #[source]
        source: Box<KafkaError>,
    },
    /// The topic does not exist.
    #[error("topic {topic} does not exist on {brokers}")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// `host:port[,…]`.
        brokers: String,
    },
    /// The read stopped advancing before its end.
    #[error(
        "reading {topic} from {brokers} stalled: nothing arrived for {timeout:?} with \
         {remaining} records to go{last}"
    )]
    Stalled {
        /// The topic.
        topic: String,
        /// `host:port[,…]`.
        brokers: String,
        /// The time allowed.
        timeout: Duration,
        /// Offsets left in the ranges.
        remaining: i64,
        /// The last consumer error, if any (`: …`).
        last: String,
    },
}

/// What one poll of a [`TopicReader`] gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// A record inside the ranges.
    Record {
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// Its payload (empty for a null payload).
        payload: Vec<u8>,
    },
    /// Nothing new yet.
    Nothing,
    /// Every partition is read to its end (or the record limit was reached).
    Done,
}

/// Reads one topic's planned ranges; ends at their ends, at the record limit, or with an
/// error when the broker stops answering.
pub struct TopicReader {
    consumer: BaseConsumer<EndAwareContext>,
    uri: KafkaUri,
    ranges: BTreeMap<i32, Range>,
    /// Next offset expected per partition not finished.
    next: BTreeMap<i32, i64>,
    finished: BTreeSet<i32>,
    paused: BTreeSet<i32>,
    read: u64,
    max_records: Option<u64>,
    timeout: Duration,
    last_progress: Instant,
    last_error: Option<String>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("uri", &self.uri)
            .field("ranges", &self.ranges)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl TopicReader {
    /// Looks the topic up, captures its end offsets, resolves the time bounds and assigns
    /// the planned ranges. Every broker call is bounded by `timeout`.
    ///
    /// # Errors
    /// [`ReadError::Unreachable`], [`ReadError::MissingTopic`], [`ReadError::Client`].
    pub fn open(uri: &KafkaUri, bounds: &ReadBounds, timeout: Duration) -> Result<Self, ReadError> {
        let consumer: BaseConsumer<EndAwareContext> = ClientConfig::new()
            .set("bootstrap.servers", &uri.brokers)
            .set("group.id", "movrek-batch-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("allow.auto.create.topics", "false")
            // librdkafka logs each refused connection; the error this returns says it once.
            .set_log_level(RDKafkaLogLevel::Critical)
            .create_with_context(EndAwareContext::default())
            .map_err(|source| ReadError::Client {
                brokers: uri.brokers.clone(),
                source: Box::new(source),
            })?;
        let unreachable = |what: String, source| ReadError::Unreachable {
            brokers: uri.brokers.clone(),
            timeout,
            what,
            source: Box::new(source),
        };
        let metadata = consumer
            .fetch_metadata(Some(&uri.topic), timeout)
            .map_err(|e| unreachable(format!("metadata of topic {}", uri.topic), e))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == uri.topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| {
                t.partitions()
                    .iter()
                    .map(rdkafka::metadata::MetadataPartition::id)
                    .collect()
            })
            .ok_or_else(|| ReadError::MissingTopic {
                topic: uri.topic.clone(),
                brokers: uri.brokers.clone(),
            })?;
        let since = lookup_times(&consumer, &uri.topic, &partitions, bounds.since_ms, timeout)
            .map_err(|e| unreachable("offsets for --since".to_owned(), e))?;
        let until = lookup_times(&consumer, &uri.topic, &partitions, bounds.until_ms, timeout)
            .map_err(|e| unreachable("offsets for --until".to_owned(), e))?;
        let mut offsets = Vec::with_capacity(partitions.len());
        for &partition in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&uri.topic, partition, timeout)
                .map_err(|e| unreachable(format!("end offsets of {}", uri.topic), e))?;
            offsets.push(PartitionOffsets {
                partition,
                low,
                high,
                since: since.as_ref().map(|m| m.get(&partition).copied().flatten()),
                until: until.as_ref().map(|m| m.get(&partition).copied().flatten()),
            });
        }
        let ranges = plan_ranges(&offsets);
        let mut list = TopicPartitionList::new();
        for range in &ranges {
            list.add_partition_offset(&uri.topic, range.partition, Offset::Offset(range.start))
                .map_err(|source| ReadError::Client {
                    brokers: uri.brokers.clone(),
                    source: Box::new(source),
                })?;
        }
        consumer.assign(&list).map_err(|source| ReadError::Client {
            brokers: uri.brokers.clone(),
            source: Box::new(source),
        })?;
        tracing::debug!(topic = %uri.topic, ?ranges, "reading");
        Ok(Self {
            consumer,
            uri: uri.clone(),
            next: ranges.iter().map(|r| (r.partition, r.start)).collect(),
            ranges: ranges.into_iter().map(|r| (r.partition, r)).collect(),
            finished: BTreeSet::new(),
            paused: BTreeSet::new(),
            read: 0,
            max_records: bounds.max_records,
            timeout,
            last_progress: Instant::now(),
            last_error: None,
        })
    }

    /// The partitions this reader reads (empty ranges left out).
    pub fn partitions(&self) -> Vec<i32> {
        self.ranges.keys().copied().collect()
    }

    /// Partitions read to their end so far.
    pub fn finished(&self) -> &BTreeSet<i32> {
        &self.finished
    }

    /// Records handed out.
    pub fn records(&self) -> u64 {
        self.read
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.uri.topic
    }

    /// Waits up to `wait` for the next record.
    ///
    /// # Errors
    /// [`ReadError::Stalled`] when nothing advanced for the timeout.
    pub fn poll(&mut self, wait: Duration) -> Result<Polled, ReadError> {
        if self.is_done() {
            return Ok(Polled::Done);
        }
        let outcome = match self.consumer.poll(wait) {
            Some(Ok(message)) => {
                let (partition, offset) = (message.partition(), message.offset());
                let payload = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
                Some(self.take(partition, offset, payload))
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // The normal end of a partition: its range ends at or before here.
                self.finish(partition);
                None
            }
            Some(Err(error)) => {
                tracing::debug!(topic = %self.uri.topic, "kafka consumer: {error}");
                self.last_error = Some(error.to_string());
                None
            }
            None => None,
        };
        for partition in self.consumer.context().take_ends() {
            self.finish(partition);
        }
        if let Some(polled) = outcome {
            return Ok(polled);
        }
        if self.is_done() {
            return Ok(Polled::Done);
        }
        let all_paused = self.next.keys().all(|p| self.paused.contains(p));
        if all_paused {
            self.last_progress = Instant::now();
        } else if self.last_progress.elapsed() >= self.timeout {
            return Err(ReadError::Stalled {
                topic: self.uri.topic.clone(),
                brokers: self.uri.brokers.clone(),
                timeout: self.timeout,
                remaining: self.remaining(),
                last: self
                    .last_error
                    .as_ref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default(),
            });
        }
        Ok(Polled::Nothing)
    }

    /// Pauses or resumes reading `partition` (to bound what a caller buffers). While every
    /// unfinished partition is paused, the reader does not count as stalled.
    pub fn pause(&mut self, partition: i32, paused: bool) {
        self.last_progress = Instant::now();
        if paused {
            self.paused.insert(partition);
        } else {
            self.paused.remove(&partition);
        }
        let mut list = TopicPartitionList::new();
        if list
            .add_partition_offset(&self.uri.topic, partition, Offset::Invalid)
            .is_ok()
        {
            let result = if paused {
                self.consumer.pause(&list)
            } else {
                self.consumer.resume(&list)
            };
            if let Err(error) = result {
                tracing::debug!(topic = %self.uri.topic, partition, "pause/resume: {error}");
            }
        }
    }

    fn take(&mut self, partition: i32, offset: i64, payload: Vec<u8>) -> Polled {
        self.last_progress = Instant::now();
        let Some(range) = self.ranges.get(&partition).copied() else {
            return Polled::Nothing;
        };
        if self.finished.contains(&partition) || offset < range.start || offset >= range.end {
            if offset >= range.end {
                self.finish(partition);
            }
            return if self.is_done() {
                Polled::Done
            } else {
                Polled::Nothing
            };
        }
        self.next.insert(partition, offset + 1);
        if offset + 1 >= range.end {
            self.finish(partition);
        }
        self.read += 1;
        Polled::Record {
            partition,
            offset,
            payload,
        }
    }

    fn finish(&mut self, partition: i32) {
        if self.ranges.contains_key(&partition) && self.finished.insert(partition) {
            self.last_progress = Instant::now();
            self.next.remove(&partition);
        }
    }

    fn is_done(&self) -> bool {
        self.finished.len() == self.ranges.len()
            || self.max_records.is_some_and(|max| self.read >= max)
    }

    fn remaining(&self) -> i64 {
        self.next
            .iter()
            .map(|(p, &next)| self.ranges.get(p).map_or(0, |r| r.end - next))
            .sum()
    }
}

/// The first offset at or after `time_ms` in each partition (`None`: no record that
/// late); `None` overall when no time is given.
fn lookup_times(
    consumer: &BaseConsumer<EndAwareContext>,
    topic: &str,
    partitions: &[i32],
    time_ms: Option<i64>,
    timeout: Duration,
) -> Result<Option<BTreeMap<i32, Option<i64>>>, KafkaError> {
    let Some(time_ms) = time_ms else {
        return Ok(None);
    };
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        list.add_partition_offset(topic, partition, Offset::Offset(time_ms))?;
    }
    let found = consumer.offsets_for_times(list, timeout)?;
    let mut out = BTreeMap::new();
    for element in found.elements() {
        if let Some(error) = element.error().err() {
            return Err(error);
        }
        let offset = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        out.insert(element.partition(), offset);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(low: i64, high: i64) -> PartitionOffsets {
        PartitionOffsets {
            partition: 0,
            low,
            high,
            since: None,
            until: None,
        }
    }

    #[test]
    fn without_bounds_a_partition_is_read_from_its_start_to_the_end_seen_at_start() {
        assert_eq!(
            plan_ranges(&[partition(3, 10)]),
            [Range {
                partition: 0,
                start: 3,
                end: 10
            }]
        );
        assert_eq!(plan_ranges(&[partition(7, 7)]), [], "an empty partition");
    }

    #[test]
    fn time_bounds_narrow_the_range_through_the_time_index() {
        let bounded = PartitionOffsets {
            since: Some(Some(4)),
            until: Some(Some(8)),
            ..partition(0, 10)
        };
        assert_eq!(
            plan_ranges(&[bounded]),
            [Range {
                partition: 0,
                start: 4,
                end: 8
            }]
        );
        // No record at or after `since`: nothing to read.
        let none_since = PartitionOffsets {
            since: Some(None),
            ..partition(0, 10)
        };
        assert_eq!(plan_ranges(&[none_since]), []);
        // No record at or after `until`: read to the end captured at start.
        let none_until = PartitionOffsets {
            until: Some(None),
            ..partition(2, 10)
        };
        assert_eq!(plan_ranges(&[none_until])[0].end, 10);
        // An index answer below the retained start (deleted records) starts at the start.
        let stale = PartitionOffsets {
            since: Some(Some(1)),
            ..partition(5, 10)
        };
        assert_eq!(plan_ranges(&[stale])[0].start, 5);
        // `until` before `since` in this partition: nothing.
        let crossed = PartitionOffsets {
            since: Some(Some(6)),
            until: Some(Some(6)),
            ..partition(0, 10)
        };
        assert_eq!(plan_ranges(&[crossed]), []);
    }

    #[test]
    fn time_bounds_parse_rfc3339_and_the_log_form() {
        assert_eq!(parse_time_bound("1970-01-01T00:00:01Z"), Ok(1_000));
        assert_eq!(parse_time_bound("1970-01-01T01:00:01.5+01:00"), Ok(1_500));
        assert_eq!(parse_time_bound("1970-01-01T00:00:02"), Ok(2_000));
        assert_eq!(parse_time_bound(" 1970-01-01T00:00:02.25 "), Ok(2_250));
        for bad in ["yesterday", "1970-01-01", "1970-01-01T25:00:00", ""] {
            let error = parse_time_bound(bad).expect_err(bad);
            assert!(error.contains("RFC 3339"), "{error}");
        }
    }

    #[test]
    fn bounds_that_select_nothing_are_refused() {
        let crossed = ReadBounds {
            since_ms: Some(5),
            until_ms: Some(5),
            max_records: None,
        };
        assert!(crossed.check().expect_err("crossed").contains("--since"));
        let zero = ReadBounds {
            max_records: Some(0),
            ..ReadBounds::default()
        };
        assert!(zero.check().expect_err("zero").contains("--max-records"));
        assert_eq!(ReadBounds::default().check(), Ok(()));
    }
}
