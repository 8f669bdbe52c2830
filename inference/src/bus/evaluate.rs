//! `movrek evaluate`: the online evaluator as a long-running process.
//!
//! One consumer reads the impressions and events topics (manually assigned partitions, no
//! group rebalancing), feeds [`crate::online::stream::Stream`], and every checkpoint
//! interval closes the windows the watermark passed and writes a checkpoint — every count,
//! the watermark and the offsets to resume from — to a compacted state topic, keyed by the
//! evaluator's name and partition set. Only after the broker acknowledged a checkpoint do
//! its counts appear on `/metrics`. A restart reads the last checkpoint, replays from its
//! resume offsets without counting, and goes on: every record is counted exactly once
//! across restarts, and the exported counters never go backwards (they restart from the
//! checkpointed values, which Prometheus already saw or is about to).
//!
//! Several evaluators split the load by partition (`--partitions`): both topics must then
//! have the same partition count, so that a user's impressions and events (keyed by user
//! id) meet in one evaluator.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use movrek_contract::metrics::{
    ONLINE_HITS, ONLINE_IMPRESSIONS, ONLINE_SCORE, ONLINE_SCORE_SQUARES,
};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::events::EventWriter;
use super::{EndAwareContext, KafkaUri};
use crate::online::aggregate::{EvalCounts, SCORE_BUCKETS, VersionRow};
use crate::online::stream::{Checkpoint, Partition, Source, Stream, StreamConfig};
use crate::online::{MovieKeys, Runtimes};
use crate::server::lograte::RateLimited;
use crate::server::metrics::ConstLabels;

/// Default name of the compacted topic of checkpoints.
pub const STATE_TOPIC: &str = "movrek-evaluator-state";

/// How long metadata and checkpoint calls may take before the evaluator gives up.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything `movrek evaluate` needs.
#[derive(Clone, Debug)]
pub struct EvaluateConfig {
    /// `host:port[,…]`.
    pub brokers: String,
    /// Topic of impression records.
    pub impressions_topic: String,
    /// Topic of event lines.
    pub events_topic: String,
    /// Compacted topic of checkpoints (created when missing).
    pub state_topic: String,
    /// The evaluator's name: checkpoint key prefix and Kafka consumer group.
    pub name: String,
    /// Partitions to read (of both topics); `None`: all of them.
    pub partitions: Option<Vec<i32>>,
    /// Window, lateness, log impressions.
    pub stream: StreamConfig,
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Exit (after a last checkpoint) when no record arrived for this long; `None`: run
    /// until SIGTERM.
    pub exit_when_idle: Option<Duration>,
}

/// What `/metrics` shows: the last durable checkpoint plus live gauges.
#[derive(Debug, Default)]
struct Exported {
    counts: EvalCounts,
    rows: Vec<VersionRow>,
    watermark: Option<i64>,
    newest: [Option<i64>; 2],
    open_pairs: usize,
    users: usize,
    queued: usize,
    checkpoints: u64,
    checkpoint_unix: Option<i64>,
}

/// A flag set by the first SIGTERM or SIGINT (watched on a thread of its own).
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let mut term = runtime
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        })
        .map_err(|e| format!("cannot install a SIGTERM handler: {e}"))?;
    std::thread::Builder::new()
        .name("movrek-signals".to_owned())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            });
            tracing::info!("shutdown signal received; stopping after a last checkpoint");
            flag.store(true, Ordering::Relaxed);
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(stop)
}

/// Runs the evaluator until SIGTERM/SIGINT (or idle, if configured). Returns the number
/// of records read.
pub fn run(
    config: &EvaluateConfig,
    runtimes: Runtimes,
    movies: MovieKeys,
    stop: &Arc<AtomicBool>,
) -> Result<u64, String> {
    let key = checkpoint_key(config);
    ensure_state_topic(config)?;
    let checkpoint = load_checkpoint(config, &key)?;
    // One consumer per topic, so that a partition's end-of-data event names its topic.
    let impressions = consumer(config)?;
    let events = consumer(config)?;
    let partitions = partitions(config, &impressions)?;
    let starts = Stream::start_offsets(checkpoint.as_ref());
    let readers = [
        Reader::assign(
            Source::Impressions,
            &config.impressions_topic,
            impressions,
            &partitions,
            &starts,
        )?,
        Reader::assign(
            Source::Events,
            &config.events_topic,
            events,
            &partitions,
            &starts,
        )?,
    ];
    let mut stream = match checkpoint {
        Some(checkpoint) => {
            tracing::info!(
                watermark = checkpoint.watermark,
                records = checkpoint.counts.records,
                "resuming from the last checkpoint"
            );
            Stream::resume(config.stream.clone(), runtimes, movies, checkpoint)?
        }
        None => Stream::new(config.stream.clone(), runtimes, movies),
    };
    stream.expect(
        partitions
            .iter()
            .flat_map(|&p| [(Source::Impressions, p), (Source::Events, p)]),
    );
    let exported = Arc::new(Mutex::new(Exported::default()));
    publish(&exported, &stream, None);
    let listener = TcpListener::bind(config.metrics_addr)
        .map_err(|e| format!("cannot listen on {}: {e}", config.metrics_addr))?;
    spawn_metrics_server(listener, Arc::clone(&exported), Arc::clone(stop))?;
    let mut writer = CheckpointWriter::new(config, key)?;
    tracing::info!(
        impressions = %config.impressions_topic,
        events = %config.events_topic,
        partitions = ?partitions,
        metrics = %config.metrics_addr,
        "evaluating"
    );

    let mut read = 0_u64;
    let mut last_record = Instant::now();
    let mut last_checkpoint = Instant::now();
    let errors = RateLimited::new();
    while !stop.load(Ordering::Relaxed) {
        stream.set_clock(unix_now());
        let mut got = 0;
        for reader in &readers {
            got += reader.drain(&mut stream, &errors);
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(20));
        } else {
            read += got;
            last_record = Instant::now();
            // Release what the watermark passed now, not at the next checkpoint: the queue
            // and the open windows then follow the lateness, not how fast we read.
            stream.advance();
        }
        if last_checkpoint.elapsed() >= config.checkpoint_interval {
            checkpoint_now(&mut stream, &mut writer, &exported, &readers)?;
            last_checkpoint = Instant::now();
        }
        if config
            .exit_when_idle
            .is_some_and(|idle| last_record.elapsed() >= idle)
        {
            tracing::info!("no record for the idle limit; stopping");
            break;
        }
    }
    checkpoint_now(&mut stream, &mut writer, &exported, &readers)?;
    tracing::info!(records = read, "stopped after a last checkpoint");
    Ok(read)
}

/// One topic's consumer.
struct Reader {
    source: Source,
    topic: String,
    consumer: BaseConsumer<EndAwareContext>,
}

impl Reader {
    /// Assigns `partitions` of `topic` at the checkpoint's resume offsets (else the start).
    fn assign(
        source: Source,
        topic: &str,
        consumer: BaseConsumer<EndAwareContext>,
        partitions: &[i32],
        starts: &HashMap<Partition, i64>,
    ) -> Result<Self, String> {
        let mut list = TopicPartitionList::new();
        for &partition in partitions {
            let offset = starts
                .get(&(source, partition))
                .map_or(Offset::Beginning, |&o| Offset::Offset(o));
            list.add_partition_offset(topic, partition, offset)
                .map_err(|e| e.to_string())?;
        }
        consumer
            .assign(&list)
            .map_err(|e| format!("cannot assign partitions of {topic}: {e}"))?;
        Ok(Self {
            source,
            topic: topic.to_owned(),
            consumer,
        })
    }

    /// Hands what the consumer has buffered (at most 5,000 records) to the stream; a
    /// partition read to its end stops holding the watermark back. Returns the records.
    fn drain(&self, stream: &mut Stream, errors: &RateLimited) -> u64 {
        let mut got = 0;
        while got < 5_000 {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(message)) => {
                    stream.take(
                        (self.source, message.partition()),
                        message.offset(),
                        message.payload().unwrap_or_default(),
                    );
                    got += 1;
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    stream.caught_up((self.source, partition));
                }
                Some(Err(error)) => {
                    if let Some(n) = errors.note(Instant::now()) {
                        tracing::warn!(topic = %self.topic, since_last_line = n, "kafka consumer: {error}");
                    }
                    break;
                }
                None => break,
            }
        }
        // Ends of partitions that were empty when assigned arrive as global errors.
        for partition in self.consumer.context().take_ends() {
            stream.caught_up((self.source, partition));
        }
        got
    }
}

/// Closes the windows the watermark passed, writes a checkpoint, and once it is durable
/// exports its counts and commits the read positions to the consumer group (for lag
/// monitoring only: restarts use the checkpoint).
fn checkpoint_now(
    stream: &mut Stream,
    writer: &mut CheckpointWriter,
    exported: &Arc<Mutex<Exported>>,
    readers: &[Reader],
) -> Result<(), String> {
    stream.advance();
    let checkpoint = stream.checkpoint();
    writer.write(&checkpoint)?;
    publish(exported, stream, Some(&checkpoint));
    let consumed = stream.consumed();
    for reader in readers {
        let mut positions = TopicPartitionList::new();
        for &((source, partition), offset) in &consumed {
            if source == reader.source {
                let _ = positions.add_partition_offset(
                    &reader.topic,
                    partition,
                    Offset::Offset(offset),
                );
            }
        }
        if positions.count() > 0 {
            let _ = reader
                .consumer
                .commit(&positions, rdkafka::consumer::CommitMode::Async);
        }
    }
    Ok(())
}

fn publish(exported: &Arc<Mutex<Exported>>, stream: &Stream, checkpoint: Option<&Checkpoint>) {
    let (open_pairs, users) = stream.open_state();
    let Ok(mut out) = exported.lock() else {
        return;
    };
    if let Some(checkpoint) = checkpoint {
        out.counts = checkpoint.counts.clone();
        out.rows = stream.rows();
        out.watermark = Some(checkpoint.watermark).filter(|&w| w > i64::MIN);
        out.checkpoints += 1;
        out.checkpoint_unix = Some(chrono::Utc::now().timestamp());
    } else {
        out.counts = stream.counts().clone();
        out.rows = stream.rows();
    }
    out.newest = stream.newest();
    out.open_pairs = open_pairs;
    out.users = users;
    out.queued = stream.queued();
}

fn checkpoint_key(config: &EvaluateConfig) -> String {
    match &config.partitions {
        None => format!("{}/all", config.name),
        Some(list) => {
            let names: Vec<String> = list.iter().map(i32::to_string).collect();
            format!("{}/{}", config.name, names.join(","))
        }
    }
}

fn admin(config: &EvaluateConfig) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .map_err(|e| {
            format!(
                "cannot create a Kafka admin client for {}: {e}",
                config.brokers
            )
        })
}

/// Creates the compacted state topic unless it exists.
fn ensure_state_topic(config: &EvaluateConfig) -> Result<(), String> {
    let admin = admin(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let topic = NewTopic::new(&config.state_topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let results = runtime
        .block_on(admin.create_topics(&[topic], &options))
        .map_err(|e| format!("cannot create topic {}: {e}", config.state_topic))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("cannot create topic {name}: {code}")),
        }
    }
    Ok(())
}

/// The last checkpoint under `key` in the state topic, if any.
fn load_checkpoint(config: &EvaluateConfig, key: &str) -> Result<Option<Checkpoint>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}-state-reader", config.name))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer: {e}"))?;
    let (low, high) = consumer
        .fetch_watermarks(&config.state_topic, 0, BROKER_TIMEOUT)
        .map_err(|e| format!("cannot read the offsets of {}: {e}", config.state_topic))?;
    if high <= low {
        return Ok(None);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&config.state_topic, 0, Offset::Offset(low))
        .map_err(|e| e.to_string())?;
    consumer.assign(&list).map_err(|e| e.to_string())?;
    let mut latest = None;
    let deadline = Instant::now() + BROKER_TIMEOUT;
    let mut next = low;
    while next < high {
        if Instant::now() > deadline {
            return Err(format!(
                "timed out reading checkpoints from {} ({next} of {high})",
                config.state_topic
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                next = message.offset() + 1;
                if message.key() == Some(key.as_bytes()) {
                    latest = message.payload().map(<[u8]>::to_vec);
                }
            }
            Some(Err(error)) => return Err(format!("cannot read checkpoints: {error}")),
            None => {}
        }
    }
    latest
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("the last checkpoint of {key} is unreadable: {e}"))
        })
        .transpose()
}

fn consumer(config: &EvaluateConfig) -> Result<BaseConsumer<EndAwareContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.name)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // librdkafka prefetches up to 100,000 records per partition (and 64 MiB) by default,
        // each as a message object of a few hundred bytes: with a backlog that was more
        // memory than the join state. 10,000 per partition is still a tenth of a second of
        // the evaluator's work at full speed (bench/evaluate.sh, "1M active users").
        .set("queued.min.messages", "10000")
        .set("queued.max.messages.kbytes", "16384")
        // With a small prefetch, librdkafka's default 1 s pause before fetching a partition
        // whose queue was full capped the evaluator at about 40,000 records/s.
        .set("fetch.queue.backoff.ms", "10")
        .create_with_context(EndAwareContext::default())
        .map_err(|e| format!("cannot create a Kafka consumer for {}: {e}", config.brokers))
}

/// The partitions to read: the configured ones, checked against both topics, or all.
fn partitions(
    config: &EvaluateConfig,
    consumer: &BaseConsumer<EndAwareContext>,
) -> Result<Vec<i32>, String> {
    let count = |topic: &str| -> Result<i32, String> {
        let metadata = consumer
            .fetch_metadata(Some(topic), BROKER_TIMEOUT)
            .map_err(|e| format!("cannot read the metadata of topic {topic}: {e}"))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| format!("topic {topic} does not exist on {}", config.brokers))?;
        Ok(found.partitions().len() as i32)
    };
    let impressions = count(&config.impressions_topic)?;
    let events = count(&config.events_topic)?;
    match &config.partitions {
        None => Ok((0..impressions.max(events)).collect()),
        Some(list) => {
            if impressions != events {
                return Err(format!(
                    "--partitions needs both topics partitioned alike, so that a user's \
                     records meet in one evaluator: {} has {impressions}, {} has {events}",
                    config.impressions_topic, config.events_topic
                ));
            }
            if let Some(bad) = list.iter().find(|&&p| p < 0 || p >= impressions) {
                return Err(format!(
                    "partition {bad} does not exist (topics have {impressions})"
                ));
            }
            Ok(list.clone())
        }
    }
}

/// Writes checkpoints under the evaluator's key; `Ok` only once the broker has each.
struct CheckpointWriter {
    records: EventWriter,
    key: String,
}

impl CheckpointWriter {
    fn new(config: &EvaluateConfig, key: String) -> Result<Self, String> {
        let uri = KafkaUri {
            brokers: config.brokers.clone(),
            topic: config.state_topic.clone(),
        };
        Ok(Self {
            records: EventWriter::open(&uri)?,
            key,
        })
    }

    fn write(&mut self, checkpoint: &Checkpoint) -> Result<(), String> {
        let payload = serde_json::to_vec(checkpoint)
            .map_err(|e| format!("checkpoint not serialisable: {e}"))?;
        self.records.write_keyed(self.key.as_bytes(), &payload)?;
        self.records.finish(BROKER_TIMEOUT).map(|_| ())
    }
}

/// Serves `/metrics` (and `/healthz`) on a thread, one connection at a time.
fn spawn_metrics_server(
    listener: TcpListener,
    exported: Arc<Mutex<Exported>>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("metrics listener: {e}"))?;
    std::thread::Builder::new()
        .name("movrek-metrics".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => answer(stream, &exported),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => tracing::warn!("metrics accept: {e}"),
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the metrics thread: {e}"))
}

fn answer(mut stream: std::net::TcpStream, exported: &Arc<Mutex<Exported>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let path = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let (status, body) = match path {
        b"/metrics" => {
            let body = exported
                .lock()
                .map_or_else(|_| String::new(), |e| render(&e));
            ("200 OK", body)
        }
        b"/healthz" => ("200 OK", "ok".to_owned()),
        _ => ("404 Not Found", "no such path".to_owned()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The evaluator's Prometheus text: per release, track and model version the score
/// histogram (`movrek_online_score`: buckets, sum and count of scored pairs), the sum of
/// squared scores, hits, impressions, unattributed and unscored actions; global record
/// counts by outcome; watermark and state gauges.
fn render(exported: &Exported) -> String {
    let mut out = String::with_capacity(4096);
    render_versions(&mut out, &exported.rows);
    render_counts(&mut out, &exported.counts);
    render_gauges(&mut out, exported);
    out
}

fn labels(row: &VersionRow) -> String {
    ConstLabels {
        release: &row.key.release,
        track: &row.key.track,
        model_version: &row.key.model_version,
    }
    .render()
}

/// A per-version counter: name, help, value.
type VersionCounter = (&'static str, &'static str, fn(&VersionRow) -> String);

fn render_versions(out: &mut String, rows: &[VersionRow]) {
    header(
        out,
        ONLINE_SCORE,
        "histogram",
        "Online score of each scored user x movie pair (0-60), by the version whose list the user saw.",
    );
    for row in rows {
        let base = labels(row);
        let mut cumulative = 0;
        for (i, bound) in SCORE_BUCKETS.iter().enumerate() {
            cumulative += row.stats.histogram.counts[i];
            let _ = writeln!(
                out,
                "{ONLINE_SCORE}_bucket{{{base},le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += row.stats.histogram.counts[SCORE_BUCKETS.len()];
        let _ = writeln!(
            out,
            "{ONLINE_SCORE}_bucket{{{base},le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(out, "{ONLINE_SCORE}_sum{{{base}}} {}", row.stats.score_sum);
        let _ = writeln!(out, "{ONLINE_SCORE}_count{{{base}}} {}", row.stats.scored);
    }
    let per_version: [VersionCounter; 5] = [
        (
            ONLINE_SCORE_SQUARES,
            "Sum of squared pair scores (for variances).",
            |r| r.stats.score_sum_squares.to_string(),
        ),
        (
            ONLINE_HITS,
            "Scored pairs whose movie was in the list.",
            |r| r.stats.hits.to_string(),
        ),
        (ONLINE_IMPRESSIONS, "Impressions read.", |r| {
            r.stats.impressions.to_string()
        }),
        (
            "movrek_online_unattributed_total",
            "Actions after the version's latest list to the user, but outside the attribution window.",
            |r| r.stats.unattributed.to_string(),
        ),
        (
            "movrek_online_unscored_total",
            "Attributed pairs left unscored (unknown runtime).",
            |r| r.stats.unscored.to_string(),
        ),
    ];
    for (name, help, value) in per_version {
        header(out, name, "counter", help);
        for row in rows {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(row), value(row));
        }
    }
}

fn render_counts(out: &mut String, c: &EvalCounts) {
    header(
        out,
        "movrek_online_records_total",
        "counter",
        "Records read from both topics.",
    );
    let _ = writeln!(out, "movrek_online_records_total {}", c.records);
    header(
        out,
        "movrek_online_released_early_total",
        "counter",
        "Records joined before the watermark passed them because the queue of records waiting for it was full (--max-queued).",
    );
    let _ = writeln!(
        out,
        "movrek_online_released_early_total {}",
        c.released_early
    );
    header(
        out,
        "movrek_online_record_outcomes_total",
        "counter",
        "What happened to records that were not simply joined, by outcome.",
    );
    for (outcome, value) in [
        ("malformed", c.malformed),
        ("out_of_range", c.out_of_range),
        ("failed_request", c.failed_requests),
        ("duplicate_impression", c.duplicate_impressions),
        ("out_of_order", c.out_of_order),
        ("duplicate_action", c.duplicate_actions),
        ("rating_update", c.rating_updates),
        ("no_impression", c.no_impression),
        ("outside_window", c.outside_window),
        ("unknown_runtime", c.unknown_runtime),
        ("late_impression", c.late_impressions),
        ("late_action", c.late_actions),
        ("future", c.future),
    ] {
        let _ = writeln!(
            out,
            "movrek_online_record_outcomes_total{{outcome=\"{outcome}\"}} {value}"
        );
    }
}

/// Unix seconds now (0 if the clock is before 1970).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn render_gauges(out: &mut String, exported: &Exported) {
    let gauges = [
        (
            "movrek_online_watermark_seconds",
            "Windows of impressions older than this event time (Unix seconds) are closed and scored.",
            exported.watermark.map_or(0, |w| w),
        ),
        (
            "movrek_online_open_pairs",
            "User x movie pairs waiting for their window to close.",
            exported.open_pairs as i64,
        ),
        (
            "movrek_online_queued_records",
            "Records read and waiting for the watermark (at most --max-queued).",
            exported.queued as i64,
        ),
        (
            "movrek_online_users",
            "Users with state in the evaluator.",
            exported.users as i64,
        ),
        (
            "movrek_online_checkpoints_total",
            "Checkpoints acknowledged by the broker (metrics follow them).",
            exported.checkpoints as i64,
        ),
        (
            "movrek_online_checkpoint_time_seconds",
            "Unix time of the last acknowledged checkpoint.",
            exported.checkpoint_unix.unwrap_or(0),
        ),
    ];
    for (name, help, value) in gauges {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(
        out,
        "movrek_online_newest_event_seconds",
        "gauge",
        "Newest event time read per topic (Unix seconds).",
    );
    for (topic, newest) in [
        ("impressions", exported.newest[0]),
        ("events", exported.newest[1]),
    ] {
        if let Some(t) = newest {
            let _ = writeln!(
                out,
                "movrek_online_newest_event_seconds{{topic=\"{topic}\"}} {t}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::aggregate::{VersionKey, VersionStats};

    #[test]
    fn metrics_show_the_histogram_cumulatively_and_escape_labels() {
        let mut stats = VersionStats::default();
        stats.observe(
            0.5,
            crate::online::score::Position::of(&[], &crate::online::MovieKey(1)),
        );
        stats.observe(
            50.0,
            crate::online::score::Position::of(&[], &crate::online::MovieKey(1)),
        );
        let exported = Exported {
            rows: vec![VersionRow {
                key: VersionKey {
                    release: "mo\"vies".to_owned(),
                    track: "canary".to_owned(),
                    model_version: "v2".to_owned(),
                },
                mean_score: stats.mean(),
                hit_rate: stats.hit_rate(),
                stats,
            }],
            watermark: Some(1_796_331_600),
            counts: EvalCounts {
                future: 3,
                released_early: 7,
                ..EvalCounts::default()
            },
            queued: 11,
            ..Exported::default()
        };
        let text = render(&exported);
        let base = r#"release="mo\"vies",track="canary",model_version="v2""#;
        assert!(
            text.contains(&format!("movrek_online_score_bucket{{{base},le=\"1\"}} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "movrek_online_score_bucket{{{base},le=\"+Inf\"}} 2"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("movrek_online_score_count{{{base}}} 2")),
            "{text}"
        );
        assert!(
            text.contains(&format!("movrek_online_score_sum{{{base}}} 50.5")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "movrek_online_score_squares_sum{{{base}}} 2500.25"
            )),
            "{text}"
        );
        assert!(
            text.contains("movrek_online_watermark_seconds 1796331600"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE movrek_online_score histogram"),
            "{text}"
        );
        // The queue's limits: records from the future, released early, waiting.
        for line in [
            "movrek_online_record_outcomes_total{outcome=\"future\"} 3",
            "movrek_online_released_early_total 7",
            "# TYPE movrek_online_released_early_total counter",
            "movrek_online_queued_records 11",
            "# TYPE movrek_online_queued_records gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
