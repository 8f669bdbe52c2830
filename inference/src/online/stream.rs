//! The long-running evaluator's state machine, free of Kafka: records in (with their
//! topic, partition and offset), a watermark that closes windows, checkpoints out, and a
//! restart from a checkpoint. `movrek evaluate` ([`crate::bus::evaluate`]) is the IO
//! around it.
//!
//! # Watermark and release order
//! The newest event time seen on each partition of both topics, the oldest of those
//! (partitions that delivered nothing yet, or are caught up with their end, do not hold it
//! back), minus the allowed lateness. Records wait in a queue per
//! partition and are released to the join in event-time order (the oldest head first)
//! once the watermark has passed them, so an action never reaches the join before the
//! impression it belongs to merely because the two topics were read at different speeds.
//! Then windows ending before the watermark (and before every record still queued) are
//! closed ([`super::Evaluator::close_through`]); a record arriving more than the lateness
//! behind the newest one of its partition may find its window closed and is counted late.
//!
//! # Records from the future, and a full queue
//! A record's partition is released strictly in offset order, so one record timed far ahead
//! would block every record behind it until the watermark reached its time. With a clock
//! ([`Stream::set_clock`], which `movrek evaluate` sets every loop), a record more than
//! [`StreamConfig::max_ahead`] after it is counted as `future` and not joined: it is released
//! at once as an outcome, like a malformed line, and does not move its partition's newest
//! time. And at most [`StreamConfig::max_queued`] records wait: beyond, the oldest head is
//! released early (`released_early`), which bounds memory when a partition stalls while
//! others go on.
//!
//! # Checkpoints and the restart guarantee
//! A [`Checkpoint`] holds every count, the watermark, and per partition the first offset
//! not yet released to the join (`positions`: records below it are counted) and the offset
//! to resume from (`resume`): the first record that might still be needed by open state,
//! found from per-partition (newest time, offset) samples at
//! [`super::Evaluator::replay_from`] less the lateness. After a restart, records from
//! `resume` up to `positions` are replayed (state rebuilt, nothing counted) and later
//! records are counted. So if checkpoints are only published after they are durable and
//! metrics show only checkpointed counts, every record is counted exactly once across
//! restarts, provided no partition delivers a record more than the lateness out of order.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::aggregate::{EvalCounts, VersionKey, VersionRow, VersionStats};
use super::join::{Evaluator, Record};
use super::log::{LineOutcome, MovieKeys, Runtimes, log_record};
use crate::bus::impression::Impression;
use crate::data::parse::LineError;

/// The checkpoint format version.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Which topic a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// JSON impression records from `movrek serve`.
    Impressions,
    /// Original log lines.
    Events,
}

impl Source {}

/// A topic partition.
pub type Partition = (Source, i32);

/// Everything a restart needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`CHECKPOINT_VERSION`].
    pub v: u32,
    /// Windows ending before this are closed.
    pub watermark: i64,
    /// Newest event time seen per partition.
    pub newest: Vec<(Partition, i64)>,
    /// First offset not yet released to the join (records below are counted), per
    /// partition.
    pub positions: Vec<(Partition, i64)>,
    /// Offset to resume (replay) from, per partition.
    pub resume: Vec<(Partition, i64)>,
    /// Global counts.
    pub counts: EvalCounts,
    /// Per-version counts.
    pub versions: Vec<(VersionKey, VersionStats)>,
}

/// Settings of a stream.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Attribution window, seconds.
    pub window: i64,
    /// How far behind its partition's newest record a record may arrive and still count.
    pub lateness: i64,
    /// Whether recommendation-request lines on the events topic are impressions too (for a
    /// movie service that logs its lists; off when `movrek serve` publishes impressions).
    pub log_impressions: bool,
    /// How far (seconds) a record's event time may be ahead of the clock
    /// ([`Stream::set_clock`]); a record further ahead is counted `future` and not joined.
    pub max_ahead: i64,
    /// Records waiting for the watermark, at most; beyond, the oldest are released early
    /// (counted `released_early`).
    pub max_queued: usize,
}

impl StreamConfig {
    /// Default [`StreamConfig::max_ahead`]: five minutes of clock skew.
    pub const DEFAULT_MAX_AHEAD: i64 = 300;
    /// Default [`StreamConfig::max_queued`]: a minute of 5,000 events/s and their
    /// impressions (375,000 records) waits in full behind the default 60 s of lateness.
    pub const DEFAULT_MAX_QUEUED: usize = 500_000;
}

/// The evaluator with its positions.
#[derive(Debug)]
pub struct Stream {
    config: StreamConfig,
    evaluator: Evaluator,
    movies: MovieKeys,
    runtimes: Runtimes,
    newest: HashMap<Partition, i64>,
    /// Partitions that hold the watermark back until they deliver or are caught up.
    expected: std::collections::HashSet<Partition>,
    /// Partitions read to their end (they do not hold the watermark back until their next
    /// record).
    idle: std::collections::HashSet<Partition>,
    /// Next offset to read, per partition.
    positions: HashMap<Partition, i64>,
    /// Records read and not yet released to the join, per partition, in offset order.
    queues: std::collections::BTreeMap<Partition, VecDeque<Queued>>,
    /// Offsets below these were counted before the restart: replayed only.
    replay_below: HashMap<Partition, i64>,
    /// (newest time so far, offset) when the newest time advanced, oldest first.
    samples: HashMap<Partition, VecDeque<(i64, i64)>>,
    /// First offset this process read, per partition.
    first: HashMap<Partition, i64>,
    /// Records in `queues`.
    queued: usize,
    /// Unix seconds now, as the IO layer last said; `None`: no record is from the future.
    clock: Option<i64>,
}

impl Stream {
    /// A fresh stream (no checkpoint).
    pub fn new(config: StreamConfig, runtimes: Runtimes, movies: MovieKeys) -> Self {
        Self {
            evaluator: Evaluator::new(config.window)
                .with_unattributed_horizon(super::join::UNATTRIBUTED_HORIZON_WINDOWS),
            config,
            movies,
            runtimes,
            newest: HashMap::new(),
            idle: std::collections::HashSet::new(),
            expected: std::collections::HashSet::new(),
            positions: HashMap::new(),
            queues: std::collections::BTreeMap::new(),
            replay_below: HashMap::new(),
            samples: HashMap::new(),
            first: HashMap::new(),
            queued: 0,
            clock: None,
        }
    }

    /// A stream resuming from `checkpoint`: counts restored, and records below its
    /// positions will be replayed without counting.
    pub fn resume(
        config: StreamConfig,
        runtimes: Runtimes,
        movies: MovieKeys,
        checkpoint: Checkpoint,
    ) -> Result<Self, String> {
        if checkpoint.v > CHECKPOINT_VERSION {
            return Err(format!(
                "checkpoint format v{} is newer than this evaluator (v{CHECKPOINT_VERSION})",
                checkpoint.v
            ));
        }
        let mut stream = Self::new(config, runtimes, movies);
        stream
            .evaluator
            .restore(checkpoint.counts, checkpoint.versions, checkpoint.watermark);
        stream.newest = checkpoint.newest.into_iter().collect();
        stream.replay_below = checkpoint.positions.into_iter().collect();
        Ok(stream)
    }

    /// Where to start reading each partition of a checkpoint (its resume offsets; a
    /// partition it does not name starts at the beginning).
    pub fn start_offsets(checkpoint: Option<&Checkpoint>) -> HashMap<Partition, i64> {
        checkpoint
            .map(|c| c.resume.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Takes one record read at `offset` of `partition`; it is queued until the watermark
    /// passes it ([`Stream::advance`]).
    pub fn take(&mut self, partition: Partition, offset: i64, payload: &[u8]) {
        let replay = self
            .replay_below
            .get(&partition)
            .is_some_and(|&below| offset < below);
        self.first.entry(partition).or_insert(offset);
        self.idle.remove(&partition);
        let position = self.positions.entry(partition).or_insert(offset);
        *position = (*position).max(offset + 1);
        let mut item = match partition.0 {
            Source::Impressions => self.impression(payload),
            Source::Events => self.event(payload),
        };
        if let Ok(Some(record)) = &item
            && is_future(record_time(record), self.clock, self.config.max_ahead)
        {
            item = Err(NotRecord::Future);
        }
        let time = match &item {
            Ok(Some(record)) => record_time(record),
            // Nothing to order: released as soon as it reaches the head of its queue.
            Ok(None) | Err(_) => i64::MIN,
        };
        if time > i64::MIN {
            if !replay {
                let newest = self.newest.entry(partition).or_insert(time);
                *newest = (*newest).max(time);
            }
            let samples = self.samples.entry(partition).or_default();
            let running = samples.back().map_or(time, |&(t, _)| t.max(time));
            if samples.back().is_none_or(|&(t, _)| running > t) {
                samples.push_back((running, offset));
            }
        }
        self.queues.entry(partition).or_default().push_back(Queued {
            offset,
            time,
            item,
            replay,
        });
        self.queued += 1;
        while self.queued > self.config.max_queued {
            // The queue is full: release its oldest head now, as the watermark would next.
            let Some(partition) = self.oldest_head(i64::MAX) else {
                break;
            };
            if let Some(queued) = self.pop(partition) {
                if !queued.replay && matches!(queued.item, Ok(Some(_))) {
                    self.evaluator.counts_mut().released_early += 1;
                }
                self.release(queued);
            }
        }
    }

    /// Tells the stream the time now (Unix seconds): records timed more than
    /// [`StreamConfig::max_ahead`] after it are counted `future` and not joined.
    pub fn set_clock(&mut self, now: i64) {
        self.clock = Some(now);
    }

    /// Records waiting for the watermark.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// The partition whose head is the oldest of all heads at or before `through`.
    fn oldest_head(&self, through: i64) -> Option<Partition> {
        self.queues
            .iter()
            .filter_map(|(&partition, queue)| {
                queue
                    .front()
                    .filter(|q| q.time <= through)
                    .map(|q| (q.time, partition))
            })
            .min()
            .map(|(_, partition)| partition)
    }

    fn pop(&mut self, partition: Partition) -> Option<Queued> {
        let queued = self
            .queues
            .get_mut(&partition)
            .and_then(VecDeque::pop_front)?;
        self.queued -= 1;
        Some(queued)
    }

    /// Applies one released item: a record joins (or is replayed), anything else is
    /// counted unless replayed (it was counted before the restart).
    fn release(&mut self, queued: Queued) {
        match queued.item {
            Ok(Some(record)) if queued.replay => self.evaluator.replay(record),
            Ok(Some(record)) => self.evaluator.add(record),
            Ok(None) => {}
            Err(_) if queued.replay => {}
            Err(kind) => {
                let counts = self.evaluator.counts_mut();
                counts.records += 1;
                match kind {
                    NotRecord::Malformed => counts.malformed += 1,
                    NotRecord::OutOfRange => counts.out_of_range += 1,
                    NotRecord::FailedRequest => counts.failed_requests += 1,
                    NotRecord::Future => counts.future += 1,
                }
            }
        }
    }

    fn impression(&mut self, payload: &[u8]) -> Result<Option<Record>, NotRecord> {
        impression_record(payload, &mut self.evaluator)
            .map(Some)
            .map_err(|_| NotRecord::Malformed)
    }

    fn event(&mut self, payload: &[u8]) -> Result<Option<Record>, NotRecord> {
        let line = payload.trim_ascii();
        match log_record(line, &mut self.movies, &mut self.evaluator) {
            Ok(LineOutcome::Record(Record::Impression { .. })) if !self.config.log_impressions => {
                Ok(None)
            }
            Ok(LineOutcome::Record(record)) => Ok(Some(record)),
            Ok(LineOutcome::FailedRequest) => Err(NotRecord::FailedRequest),
            Err(LineError::OutOfRange { .. }) => Err(NotRecord::OutOfRange),
            Err(_) => Err(NotRecord::Malformed),
        }
    }

    /// The event time records are released through: the oldest of the partitions' newest
    /// times (idle partitions aside), less the lateness (`None` before any record).
    pub fn watermark(&self) -> Option<i64> {
        let waiting = self
            .expected
            .iter()
            .any(|p| !self.newest.contains_key(p) && !self.idle.contains(p));
        if waiting {
            return None;
        }
        let active = self
            .newest
            .iter()
            .filter(|(p, _)| !self.idle.contains(p))
            .map(|(_, &t)| t)
            .min();
        active
            .or_else(|| self.newest.values().copied().max())
            .map(|t| t.saturating_sub(self.config.lateness))
    }

    /// Declares the partitions being read: until each has delivered a record or is caught
    /// up, the watermark does not move (an early burst from one must not release records
    /// that another, slower one would have preceded).
    pub fn expect(&mut self, partitions: impl IntoIterator<Item = Partition>) {
        self.expected.extend(partitions);
    }

    /// Marks a partition as read to its end: it does not hold the watermark back until its
    /// next record.
    pub fn caught_up(&mut self, partition: Partition) {
        self.idle.insert(partition);
    }

    /// Releases, oldest first, every queued record the watermark has passed, then closes
    /// the windows that ended before the watermark and before every record still queued.
    pub fn advance(&mut self) {
        let Some(watermark) = self.watermark() else {
            return;
        };
        while let Some(partition) = self.oldest_head(watermark) {
            if let Some(queued) = self.pop(partition) {
                self.release(queued);
            }
        }
        let oldest_queued = self
            .queues
            .values()
            .flatten()
            .map(|q| q.time)
            .filter(|&t| t > i64::MIN)
            .min();
        let close = oldest_queued.map_or(watermark, |t| t.min(watermark));
        let runtimes = &self.runtimes;
        self.evaluator
            .close_through(close, &|movie| runtimes.get(movie));
    }

    /// Next offset to read per partition (what a consumer group would commit).
    pub fn consumed(&self) -> Vec<(Partition, i64)> {
        let mut out: Vec<_> = self.positions.iter().map(|(&p, &o)| (p, o)).collect();
        out.sort_unstable();
        out
    }

    /// Counts so far (closed pairs only).
    pub fn rows(&self) -> Vec<VersionRow> {
        self.evaluator.rows()
    }

    /// Global counts so far.
    pub fn counts(&self) -> &EvalCounts {
        self.evaluator.counts()
    }

    /// Open pairs and remembered users (for gauges).
    pub fn open_state(&self) -> (usize, usize) {
        (self.evaluator.open_pairs(), self.evaluator.users())
    }

    /// Newest event time per source.
    pub fn newest(&self) -> [Option<i64>; 2] {
        let of = |source: Source| {
            self.newest
                .iter()
                .filter(|(p, _)| p.0 == source)
                .map(|(_, &t)| t)
                .max()
        };
        [of(Source::Impressions), of(Source::Events)]
    }

    /// A checkpoint of everything counted so far, and where to resume.
    pub fn checkpoint(&mut self) -> Checkpoint {
        let watermark = self.evaluator.watermark();
        let needed_from = self
            .evaluator
            .replay_from(watermark)
            .saturating_sub(self.config.lateness);
        let released: HashMap<Partition, i64> = self
            .samples
            .keys()
            .filter_map(|&p| self.released(p).map(|o| (p, o)))
            .collect();
        let mut resume = Vec::new();
        for (&partition, samples) in &mut self.samples {
            // Keep the last sample wholly before `needed_from` and everything after it.
            while samples.len() > 1 && samples[1].0 < needed_from {
                samples.pop_front();
            }
            let from = match samples.front() {
                Some(&(time, offset)) if time < needed_from => offset + 1,
                _ => self.first.get(&partition).copied().unwrap_or(0),
            };
            let released = released.get(&partition).copied();
            resume.push((partition, released.map_or(from, |r| from.min(r))));
        }
        // Partitions replayed from a checkpoint but not read yet keep their old resume.
        for (&partition, &below) in &self.replay_below {
            if !self.samples.contains_key(&partition) {
                resume.push((partition, below));
            }
        }
        resume.sort_unstable();
        let mut positions: Vec<(Partition, i64)> = self
            .positions
            .keys()
            .filter_map(|&p| self.released(p).map(|o| (p, o)))
            .collect();
        for (&partition, &below) in &self.replay_below {
            if !self.positions.contains_key(&partition) {
                positions.push((partition, below));
            }
        }
        positions.sort_unstable();
        let versions = self
            .evaluator
            .rows()
            .into_iter()
            .map(|row| (row.key, row.stats))
            .collect();
        Checkpoint {
            v: CHECKPOINT_VERSION,
            watermark,
            newest: {
                let mut newest: Vec<_> = self.newest.iter().map(|(&p, &t)| (p, t)).collect();
                newest.sort_unstable();
                newest
            },
            positions,
            resume,
            counts: self.evaluator.counts().clone(),
            versions,
        }
    }

    /// The first offset of `partition` not yet released to the join.
    fn released(&self, partition: Partition) -> Option<i64> {
        self.queues
            .get(&partition)
            .and_then(VecDeque::front)
            .map(|q| q.offset)
            .or_else(|| self.positions.get(&partition).copied())
    }

    /// Closes every window (end of input: tests and bounded runs).
    pub fn close_all(&mut self) {
        let newest = self.newest.clone();
        for time in self.newest.values_mut() {
            *time = i64::MAX;
        }
        let lateness = self.config.lateness;
        self.config.lateness = 0;
        self.advance();
        self.newest = newest;
        self.config.lateness = lateness;
        let runtimes = &self.runtimes;
        self.evaluator
            .close_through(i64::MAX, &|movie| runtimes.get(movie));
    }
}

/// An impression record (JSON, [`Impression`]) as a join record, its version registered
/// with `evaluator`.
///
/// # Errors
/// Why the record is malformed (bad JSON, a newer format, a bad time).
pub fn impression_record(payload: &[u8], evaluator: &mut Evaluator) -> Result<Record, String> {
    let impression = Impression::parse(payload).map_err(|e| e.to_string())?;
    let time = impression.unix_seconds().map_err(|e| e.to_string())?;
    let version = evaluator.version(&VersionKey {
        release: impression.release,
        track: impression.track,
        model_version: impression.model_version,
    });
    Ok(Record::Impression {
        time,
        user: impression.user,
        version,
        items: impression
            .movies
            .into_iter()
            .map(|id| super::MovieKey(u64::from(id)))
            .collect(),
    })
}

/// A record read and not yet released: its parse result and whether it is a replay.
#[derive(Debug)]
struct Queued {
    offset: i64,
    /// Event time; `i64::MIN` for what has no time (released at the head of the queue).
    time: i64,
    item: Result<Option<Record>, NotRecord>,
    replay: bool,
}

#[derive(Debug)]
enum NotRecord {
    Malformed,
    OutOfRange,
    FailedRequest,
    /// Timed too far ahead of the clock.
    Future,
}

/// Whether a record at `time` is from the future: more than `max_ahead` seconds after
/// `clock` (never without a clock).
fn is_future(time: i64, clock: Option<i64>, max_ahead: i64) -> bool {
    clock.is_some_and(|now| time > now.saturating_add(max_ahead.max(0)))
}

fn record_time(record: &Record) -> i64 {
    match record {
        Record::Impression { time, .. }
        | Record::Watch { time, .. }
        | Record::Rate { time, .. } => *time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::SplitMix64;

    const T0: i64 = 1_796_331_600;
    const WINDOW: i64 = 600;
    const LATENESS: i64 = 30;

    fn config() -> StreamConfig {
        StreamConfig {
            window: WINDOW,
            lateness: LATENESS,
            log_impressions: false,
            max_ahead: StreamConfig::DEFAULT_MAX_AHEAD,
            max_queued: StreamConfig::DEFAULT_MAX_QUEUED,
        }
    }

    fn runtimes() -> Runtimes {
        Runtimes {
            known: HashMap::new(),
            default: Some(100),
        }
    }

    fn iso(t: i64) -> String {
        chrono::DateTime::from_timestamp(t, 0)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    }

    /// Records as they would sit in two partitions of each topic (by user parity):
    /// (partition, offset, payload), in arrival order.
    fn traffic(seed: u64, n: usize) -> Vec<(Partition, i64, Vec<u8>)> {
        let mut rng = SplitMix64::new(seed);
        let mut offsets: HashMap<Partition, i64> = HashMap::new();
        let mut out = Vec::new();
        let mut now = T0;
        for i in 0..n {
            now += rng.below(6) as i64;
            let user = 1 + rng.below(30) as u32;
            let movie = 1 + rng.below(30) as u32;
            let (source, payload) = match rng.below(5) {
                0 => {
                    let impression = Impression {
                        v: 1,
                        id: format!("x-{i}"),
                        time: format!("{}Z", iso(now)),
                        user,
                        movies: (0..20).map(|_| 1 + rng.below(30) as u32).collect(),
                        release: "movies".to_owned(),
                        track: if rng.below(2) == 0 {
                            "stable"
                        } else {
                            "canary"
                        }
                        .to_owned(),
                        model_version: "v1".to_owned(),
                        artifact_sha256: "s".to_owned(),
                    };
                    (Source::Impressions, impression.to_json())
                }
                1 => (
                    Source::Events,
                    format!("{},{user},GET /rate/{movie}={}", iso(now), 1 + rng.below(5))
                        .into_bytes(),
                ),
                2 if rng.below(20) == 0 => (Source::Events, b"garbage line".to_vec()),
                _ => (
                    Source::Events,
                    format!(
                        "{},{user},GET /data/m/{movie}/{}.mpg",
                        iso(now),
                        rng.below(110)
                    )
                    .into_bytes(),
                ),
            };
            let partition = (source, (user % 2) as i32);
            let offset = offsets.entry(partition).or_insert(0);
            out.push((partition, *offset, payload));
            *offset += 1;
        }
        out
    }

    /// Per version: key, impressions, scored, unattributed, score sum in millionths.
    type Row = (VersionKey, u64, u64, u64, i64);

    fn summary(stream: &Stream) -> (EvalCounts, Vec<Row>) {
        let rows = stream
            .rows()
            .into_iter()
            .map(|r| {
                (
                    r.key,
                    r.stats.impressions,
                    r.stats.scored,
                    r.stats.unattributed,
                    (r.stats.score_sum * 1e6).round() as i64,
                )
            })
            .collect();
        (stream.counts().clone(), rows)
    }

    /// Reads `records` the way `movrek evaluate` does: advance every 40 records, and a
    /// checkpoint (after an advance) at record `checkpoint_at`.
    fn run(
        stream: &mut Stream,
        records: &[(Partition, i64, Vec<u8>)],
        checkpoint_at: Option<usize>,
    ) -> Option<Checkpoint> {
        let mut saved = None;
        for (n, (partition, offset, payload)) in records.iter().enumerate() {
            stream.take(*partition, *offset, payload);
            if n % 40 == 0 {
                stream.advance();
            }
            if Some(n) == checkpoint_at {
                stream.advance();
                saved = Some(stream.checkpoint());
            }
        }
        saved
    }

    #[test]
    fn a_restart_from_a_checkpoint_counts_every_record_once() {
        for seed in 0..8 {
            let records = traffic(seed, 6_000);
            let mut whole = Stream::new(config(), runtimes(), MovieKeys::default());
            run(&mut whole, &records, None);
            whole.close_all();

            // The first process checkpoints at 3,000 and dies at 3,500.
            let mut first = Stream::new(config(), runtimes(), MovieKeys::default());
            let checkpoint = run(&mut first, &records[..3_500], Some(3_000)).expect("saved");
            let json = serde_json::to_vec(&checkpoint).expect("serialise");
            let checkpoint: Checkpoint = serde_json::from_slice(&json).expect("parse");
            assert!(
                checkpoint.watermark > T0,
                "seed {seed}: windows closed before the crash"
            );

            // The second reads each partition from the checkpoint's resume offsets.
            let starts = Stream::start_offsets(Some(&checkpoint));
            let mut second = Stream::resume(config(), runtimes(), MovieKeys::default(), checkpoint)
                .expect("resume");
            let tail: Vec<_> = records
                .iter()
                .filter(|(p, o, _)| *o >= starts.get(p).copied().unwrap_or(0))
                .cloned()
                .collect();
            assert!(
                tail.len() < records.len(),
                "seed {seed}: the resume skips settled records"
            );
            run(&mut second, &tail, None);
            second.close_all();

            assert_eq!(summary(&second), summary(&whole), "seed {seed}");
            assert!(whole.counts().malformed > 0 && whole.counts().late_actions == 0);
            assert!(summary(&whole).1.iter().map(|r| r.2).sum::<u64>() > 100);
        }
    }

    #[test]
    fn topics_read_at_different_speeds_score_as_if_read_in_time_order() {
        for seed in 0..6 {
            let records = traffic(50 + seed, 5_000);
            let mut in_order = Stream::new(config(), runtimes(), MovieKeys::default());
            run(&mut in_order, &records, None);
            in_order.close_all();
            // Each partition read in bursts of 150 records, partitions taking turns, as a
            // consumer fetching batches per partition does.
            let mut by_partition: std::collections::BTreeMap<Partition, VecDeque<_>> =
                std::collections::BTreeMap::new();
            for record in &records {
                by_partition
                    .entry(record.0)
                    .or_default()
                    .push_back(record.clone());
            }
            let mut arrival = Vec::new();
            while by_partition.values().any(|q| !q.is_empty()) {
                for queue in by_partition.values_mut() {
                    let n = queue.len().min(150);
                    arrival.extend(queue.drain(..n));
                }
            }
            let mut batched = Stream::new(config(), runtimes(), MovieKeys::default());
            batched.expect(by_partition.keys().copied());
            run(&mut batched, &arrival, None);
            batched.close_all();
            assert_eq!(summary(&batched), summary(&in_order), "seed {seed}");
            assert_eq!(
                batched.counts().no_impression,
                in_order.counts().no_impression
            );
        }
    }

    #[test]
    fn the_watermark_waits_for_the_slower_topic() {
        let mut stream = Stream::new(config(), runtimes(), MovieKeys::default());
        assert_eq!(stream.watermark(), None);
        let line = format!("{},1,GET /rate/5=4", iso(T0 + 1_000));
        stream.take((Source::Events, 0), 0, line.as_bytes());
        assert_eq!(stream.watermark(), Some(T0 + 1_000 - LATENESS));
        let impression = Impression {
            v: 1,
            id: "a".to_owned(),
            time: format!("{}Z", iso(T0 + 100)),
            user: 2,
            movies: vec![5],
            release: "r".to_owned(),
            track: "stable".to_owned(),
            model_version: "v".to_owned(),
            artifact_sha256: "s".to_owned(),
        };
        stream.take((Source::Impressions, 0), 0, &impression.to_json());
        assert_eq!(stream.watermark(), Some(T0 + 100 - LATENESS));
    }

    fn watch(t: i64, user: u32, movie: u32) -> Vec<u8> {
        format!("{},{user},GET /data/m/{movie}/50.mpg", iso(t)).into_bytes()
    }

    fn listed(t: i64, user: u32) -> Vec<u8> {
        Impression {
            v: 1,
            id: format!("{user}-{t}"),
            time: format!("{}Z", iso(t)),
            user,
            movies: (1..=20).collect(),
            release: "r".to_owned(),
            track: "stable".to_owned(),
            model_version: "v".to_owned(),
            artifact_sha256: "s".to_owned(),
        }
        .to_json()
    }

    /// One list at T0, then a watch every 10 s on the events partition with one line from
    /// the far future after the first; impressions of another user keep the other
    /// partition moving to T0 + 300.
    fn future_traffic(stream: &mut Stream) {
        stream.expect([(Source::Impressions, 0), (Source::Events, 0)]);
        stream.take((Source::Impressions, 0), 0, &listed(T0, 1));
        let mut offset = 0;
        for i in 1..=20 {
            stream.take((Source::Events, 0), offset, &watch(T0 + 10 * i, 1, 3));
            offset += 1;
            if i == 1 {
                // A producer whose clock is a year ahead.
                let line = watch(T0 + 365 * 86_400, 1, 4);
                stream.take((Source::Events, 0), offset, &line);
                offset += 1;
            }
        }
        for (i, t) in (T0 + 30..=T0 + 300).step_by(30).enumerate() {
            stream.take((Source::Impressions, 0), i as i64 + 1, &listed(t, 2));
        }
        stream.advance();
    }

    #[test]
    fn a_record_from_the_future_neither_blocks_the_records_behind_it_nor_moves_the_watermark() {
        // Without a clock (the behaviour before): the future line heads its partition's
        // queue and every watch behind it waits, however far the watermark moves.
        let mut blind = Stream::new(config(), runtimes(), MovieKeys::default());
        future_traffic(&mut blind);
        assert_eq!(blind.counts().watch_records, 1, "only the watch before it");
        assert!(blind.queued() >= 20, "{} queued", blind.queued());

        let mut stream = Stream::new(config(), runtimes(), MovieKeys::default());
        stream.set_clock(T0 + 300);
        future_traffic(&mut stream);
        assert_eq!(stream.counts().future, 1);
        // The watermark follows the real records: events end at T0 + 200, less lateness.
        assert_eq!(stream.watermark(), Some(T0 + 200 - LATENESS));
        assert_eq!(
            stream.counts().watch_records,
            17,
            "watches up to the watermark joined"
        );
        // Waiting: the watches at 180–200 and the lists at 180–300.
        assert_eq!(stream.queued(), 3 + 5);
        stream.close_all();
        assert_eq!(stream.counts().watch_records, 20);
        assert_eq!(
            stream.counts().records,
            1 + 21 + 10,
            "the future line counted once"
        );
        // Within the allowed skew a record is an ordinary record.
        assert!(!is_future(T0 + 300, Some(T0), 300));
        assert!(is_future(T0 + 301, Some(T0), 300));
        assert!(!is_future(i64::MAX, None, 300));
    }

    #[test]
    fn a_full_queue_releases_its_oldest_records_early_and_counts_them() {
        let mut config = config();
        config.max_queued = 50;
        let mut stream = Stream::new(config, runtimes(), MovieKeys::default());
        // The impressions partition never delivers: the watermark never moves.
        stream.expect([(Source::Impressions, 0), (Source::Events, 0)]);
        for i in 0..200 {
            stream.take(
                (Source::Events, 0),
                i,
                &watch(T0 + i, 1 + (i % 7) as u32, 3),
            );
            stream.advance();
        }
        assert_eq!(stream.watermark(), None);
        assert_eq!(stream.queued(), 50, "the queue stays at its cap");
        assert_eq!(stream.counts().released_early, 150);
        assert_eq!(
            stream.counts().watch_records,
            150,
            "released ones are joined"
        );
        assert_eq!(stream.counts().out_of_order, 0, "oldest first");
        // A checkpoint resumes after what was released, before what still waits.
        let checkpoint = stream.checkpoint();
        assert_eq!(
            checkpoint.positions,
            vec![((Source::Events, 0), 150)],
            "{checkpoint:?}"
        );
    }

    #[test]
    fn a_newer_checkpoint_format_is_refused() {
        let mut stream = Stream::new(config(), runtimes(), MovieKeys::default());
        let mut checkpoint = stream.checkpoint();
        checkpoint.v = CHECKPOINT_VERSION + 1;
        let error = Stream::resume(config(), runtimes(), MovieKeys::default(), checkpoint)
            .expect_err("refused");
        assert!(error.contains("newer"), "{error}");
    }
}
