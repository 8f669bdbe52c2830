//! Publishing impressions to Kafka without ever holding up a request.
//!
//! [`Publisher::publish`] hands the record to librdkafka's own bounded queue and returns at
//! once: when the queue is full (the broker has been away long enough to fill it) the
//! record is dropped and counted, never waited for. librdkafka's threads deliver the
//! queue and retry while the broker is away for up to [`PublisherConfig::delivery_timeout`].
//! Drops and failures are logged at most once a second with their count.
//!
//! The client shares the server's cores, so it is made to stay out of the requests' way:
//! - librdkafka reports only failed deliveries: a report per delivered record cost the
//!   server's core about 2 ms per second at 3,500 records/s (`perf sched timehist` during
//!   bench/impressions.sh). Delivered records are counted as queued − failed − in flight.
//! - The client's events (failed deliveries, logs, errors) are served by our own thread
//!   every [`POLL_INTERVAL`], not by rdkafka's `ThreadedProducer`, whose poll loop turns the
//!   last sub-millisecond of each 100 ms wait into a zero timeout and spins on the clock
//!   until the deadline: up to a millisecond of busy CPU ten times a second.
//! - A batch holds at most [`PublisherConfig::batch_records`] records and is sent when full,
//!   before its linger is out: at 35–45k requests/s a 100 ms batch (3,500 records and more)
//!   took the server's core for about 0.4 ms to compress and write, and a request arriving
//!   meanwhile waited behind it (the paced p99 of `bench/http.sh` fell from 1.3–2.0 ms to
//!   0.66–0.72 ms with 500-record batches, and librdkafka's CPU fell too).
//! - Every thread of the client (librdkafka's and the polling thread) runs at a lower
//!   priority, [`CLIENT_NICE`]: a request's thread that wakes up preempts them at once, and
//!   they still get the few percent of a core they need when the server is saturated.
//!
//! Over a broker restart shorter than the delivery timeout with room in the queue, nothing
//! is lost; the reader drops exact duplicates a retry may make (see [`crate::online::join`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::impression::Impression;
use crate::server::lograte::RateLimited;

/// The nice value of the Kafka client's threads (the server's own threads run at 0). Linux
/// gives a thread at nice 10 about a tenth of the CPU share of one at 0 when they compete.
pub const CLIENT_NICE: i32 = 10;

/// How often the client's queued events (failed deliveries, logs, errors) are served.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How to reach the broker and how much to hold while it is away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Topic of impressions.
    pub topic: String,
    /// Records queued at most (librdkafka `queue.buffering.max.messages`).
    pub queue_records: u32,
    /// A record not delivered by then is counted as failed (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Kafka `client.id` (the release and track, for the broker's logs and quotas).
    pub client_id: String,
    /// How long a record may wait for others to fill its batch (`linger.ms`): fewer, larger
    /// requests cost the server less CPU per record.
    pub linger: Duration,
    /// Batch compression (`compression.codec`).
    pub compression: Compression,
    /// Records per partition batch at most (`batch.num.messages`): a full batch is sent
    /// without waiting out the linger, so the work of one send (compression, the socket
    /// write) stays short however busy the server is.
    pub batch_records: u32,
}

/// Compression of impression batches. Only codecs librdkafka carries in its own source (the
/// build links no zlib or zstd).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// LZ4: costs the server no measurable CPU and sends fewer bytes.
    #[default]
    Lz4,
    /// Snappy.
    Snappy,
}

impl Compression {
    /// librdkafka's name for the codec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Snappy => "snappy",
        }
    }
}

impl PublisherConfig {
    /// Default queue bound: 100,000 records (about 30 MB of lists), a few seconds of a
    /// busy pod's traffic while the broker is away.
    pub const DEFAULT_QUEUE_RECORDS: u32 = 100_000;
    /// Default delivery timeout: 5 minutes, longer than a broker's rolling restart.
    pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);
    /// Default linger: 100 ms, small beside the evaluator's attribution window (minutes)
    /// and its lag target (2 s).
    pub const DEFAULT_LINGER: Duration = Duration::from_millis(100);
    /// Default batch cap: 500 records (about 50 KB before compression): short sends at any
    /// rate, while a quiet server still lingers to fill its batches.
    pub const DEFAULT_BATCH_RECORDS: u32 = 500;

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set(
                "queue.buffering.max.messages",
                self.queue_records.to_string(),
            )
            // The record bound is the one that matters; the byte bound only guards memory.
            .set("queue.buffering.max.kbytes", "262144")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("compression.codec", self.compression.as_str())
            .set("batch.num.messages", self.batch_records.to_string())
            .set("acks", "all")
            .set("delivery.report.only.error", "true")
            .set_log_level(RDKafkaLogLevel::Warning);
        config
    }
}

/// Counts of what happened to published impressions (all since start).
#[derive(Debug, Default)]
pub struct PublishCounts {
    /// Accepted into the queue.
    pub queued: AtomicU64,
    /// The largest delivered count reported so far: see [`Publisher::snapshot`].
    pub delivered: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Accepted, then not delivered: the delivery failed or timed out.
    pub failed_delivery: AtomicU64,
    /// Not accepted into the queue for a reason other than a full queue.
    pub failed_send: AtomicU64,
}

/// A snapshot of [`PublishCounts`] plus the records still waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishSnapshot {
    /// Accepted into the queue.
    pub queued: u64,
    /// Acknowledged by the broker.
    pub delivered: u64,
    /// Dropped: queue full.
    pub dropped_queue_full: u64,
    /// Dropped: delivery failed.
    pub dropped_failed: u64,
    /// Accepted and not yet delivered or failed.
    pub in_flight: u64,
}

/// librdkafka callbacks: delivery counts and rate-limited logs.
struct Callbacks {
    counts: Arc<PublishCounts>,
    failed_log: RateLimited,
    client_log: RateLimited,
    /// Events served so far (any callback), so the poller knows when the queue is empty.
    served: AtomicU64,
}

impl ClientContext for Callbacks {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.served.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.client_log.note(Instant::now()) {
            tracing::warn!(
                target: "movrek::impressions",
                level = ?level,
                facility = fac,
                since_last_line = n,
                "kafka client: {log_message}"
            );
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.served.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.client_log.note(Instant::now()) {
            tracing::warn!(
                target: "movrek::impressions",
                since_last_line = n,
                "kafka client error: {error}: {reason}"
            );
        }
    }
}

impl ProducerContext for Callbacks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        self.served.fetch_add(1, Ordering::Relaxed);
        match result {
            // Not reported (`delivery.report.only.error`); counted in `Publisher::snapshot`.
            Ok(_) => {}
            Err((error, _)) => {
                self.counts.failed_delivery.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = self.failed_log.note(Instant::now()) {
                    tracing::warn!(
                        target: "movrek::impressions",
                        failed_since_last_line = n,
                        "impression not delivered: {error}"
                    );
                }
            }
        }
    }
}

/// Runs `create` on a short-lived thread at nice [`CLIENT_NICE`] and returns its result.
/// A thread inherits its creator's nice value, so every thread the Kafka client starts
/// there (and the threads those start later, such as one per broker) runs below the
/// request threads. Raising one's own nice value needs no privilege; if the system refuses
/// anyway, the client runs at normal priority and says so.
fn with_lower_priority<T: Send + 'static>(create: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name("kafka-client-start".into())
        .spawn(move || {
            // On Linux, PRIO_PROCESS with no pid sets the calling thread's nice value only.
            if let Err(e) = rustix::process::setpriority_process(None, CLIENT_NICE) {
                tracing::warn!(target: "movrek::impressions", "kafka client threads keep normal priority: {e}");
            }
            create()
        })
        .expect("spawning a thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the Kafka producer for {brokers}: {source}")]
pub struct PublisherError {
    brokers: String,
    #[source]
    source: KafkaError,
}

/// Serves the producer's event queue every [`POLL_INTERVAL`] until dropped.
struct Poller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    /// Started on the low-priority thread, so it inherits [`CLIENT_NICE`].
    fn start(producer: Arc<BaseProducer<Callbacks>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("impressions-poll".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        serve_events(&producer);
                        std::thread::park_timeout(POLL_INTERVAL);
                    }
                })
                .expect("spawning a thread")
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Serves every event queued now, without waiting: a zero-timeout poll serves at most one
/// event, so poll until one serves nothing (bounded, should the queue refill as fast).
fn serve_events(producer: &BaseProducer<Callbacks>) {
    for _ in 0..100_000 {
        let before = producer.context().served.load(Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if producer.context().served.load(Ordering::Relaxed) == before {
            return;
        }
    }
}

/// The impression publisher of one server process.
pub struct Publisher {
    producer: Arc<BaseProducer<Callbacks>>,
    topic: String,
    counts: Arc<PublishCounts>,
    full_log: RateLimited,
    /// Dropping it stops and joins the polling thread, which holds the other reference to
    /// the producer.
    _poller: Poller,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Creates the producer. No connection is made yet: an absent broker is not an error
    /// here (the server starts and counts what it cannot deliver).
    pub fn start(config: &PublisherConfig) -> Result<Self, PublisherError> {
        let counts = Arc::new(PublishCounts::default());
        let callbacks = Callbacks {
            counts: Arc::clone(&counts),
            failed_log: RateLimited::new(),
            client_log: RateLimited::new(),
            served: AtomicU64::new(0),
        };
        let client_config = config.client_config();
        let (producer, poller) = with_lower_priority(move || {
            let producer = Arc::new(client_config.create_with_context(callbacks)?);
            let poller = Poller::start(Arc::clone(&producer));
            Ok((producer, poller))
        })
        .map_err(|source| PublisherError {
            brokers: config.brokers.clone(),
            source,
        })?;
        Ok(Self {
            producer,
            topic: config.topic.clone(),
            counts,
            full_log: RateLimited::new(),
            _poller: poller,
        })
    }

    /// Queues one impression; never blocks. A full queue drops the record and counts it.
    pub fn publish(&self, impression: &Impression) {
        self.publish_encoded(impression.user, &impression.to_json());
    }

    /// Queues one record already encoded (by [`super::impression::ImpressionEncoder`]) for
    /// `user`, the key; never blocks. librdkafka copies both, so the caller may reuse its
    /// buffer at once.
    pub fn publish_encoded(&self, user: u32, payload: &[u8]) {
        let mut key = Vec::with_capacity(10);
        crate::data::parse::push_u64(&mut key, u64::from(user));
        let record = BaseRecord::to(&self.topic).key(&key[..]).payload(payload);
        match self.producer.send(record) {
            Ok(()) => {
                self.counts.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                let full = matches!(
                    error,
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                );
                let counter = if full {
                    &self.counts.dropped_queue_full
                } else {
                    &self.counts.failed_send
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = self.full_log.note(Instant::now()) {
                    tracing::warn!(
                        target: "movrek::impressions",
                        dropped_since_last_line = n,
                        "impression dropped: {error}"
                    );
                }
            }
        }
    }

    /// What happened to the impressions so far.
    ///
    /// Delivered records are not reported one by one, so their count is derived: accepted,
    /// minus failed, minus still in flight. `queued` is read before `in_flight`, so a record
    /// accepted in between is counted in flight but not as accepted, and the derived count
    /// can only fall short of the truth, never exceed it; it is kept monotone (a counter for
    /// Prometheus) by reporting the largest value derived so far, and it is exact whenever
    /// the queue is quiet.
    pub fn snapshot(&self) -> PublishSnapshot {
        let queued = self.counts.queued.load(Ordering::Acquire);
        let failed_delivery = self.counts.failed_delivery.load(Ordering::Acquire);
        let in_flight = u64::try_from(self.producer.in_flight_count()).unwrap_or(0);
        let derived = queued
            .saturating_sub(failed_delivery)
            .saturating_sub(in_flight);
        let delivered = self
            .counts
            .delivered
            .fetch_max(derived, Ordering::AcqRel)
            .max(derived);
        PublishSnapshot {
            queued,
            delivered,
            dropped_queue_full: self.counts.dropped_queue_full.load(Ordering::Relaxed),
            dropped_failed: failed_delivery + self.counts.failed_send.load(Ordering::Relaxed),
            in_flight,
        }
    }

    /// Delivers what is queued, waiting at most `limit` (at shutdown). Returns the records
    /// still undelivered.
    pub fn flush(&self, limit: Duration) -> u64 {
        let _ = self.producer.flush(limit);
        u64::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }
}
