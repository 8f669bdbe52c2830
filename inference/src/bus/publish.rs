//! Publishing impressions to Kafka without ever holding up a request.
//!
//! [`Publisher::publish`] hands the record to librdkafka's own bounded queue and returns at
//! once: when the queue is full (the broker has been away long enough to fill it) the
//! record is dropped and counted, never waited for. A background thread delivers the
//! queue, retries while the broker is away for up to [`PublisherConfig::delivery_timeout`],
//! and counts each record as delivered or failed. Drops and failures are logged at most
//! once a second with their count. Over a broker restart shorter than the delivery timeout
//! with room in the queue, nothing is lost; the reader drops exact duplicates a retry may
//! make (see [`crate::online::join`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::impression::Impression;
use crate::server::lograte::RateLimited;

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
            .set("acks", "all")
            .set_log_level(RDKafkaLogLevel::Warning);
        config
    }
}

/// Counts of what happened to published impressions (all since start).
#[derive(Debug, Default)]
pub struct PublishCounts {
    /// Accepted into the queue.
    pub queued: AtomicU64,
    /// Acknowledged by the broker.
    pub delivered: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Dropped because delivery failed or timed out, or the record could not be queued
    /// for another reason.
    pub dropped_failed: AtomicU64,
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
}

impl ClientContext for Callbacks {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
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
        match result {
            Ok(_) => {
                self.counts.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.counts.dropped_failed.fetch_add(1, Ordering::Relaxed);
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

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the Kafka producer for {brokers}: {source}")]
pub struct PublisherError {
    brokers: String,
    #[source]
    source: KafkaError,
}

/// The impression publisher of one server process.
pub struct Publisher {
    producer: ThreadedProducer<Callbacks>,
    topic: String,
    counts: Arc<PublishCounts>,
    full_log: RateLimited,
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
        };
        let producer = config
            .client_config()
            .create_with_context(callbacks)
            .map_err(|source| PublisherError {
                brokers: config.brokers.clone(),
                source,
            })?;
        Ok(Self {
            producer,
            topic: config.topic.clone(),
            counts,
            full_log: RateLimited::new(),
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
                    &self.counts.dropped_failed
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
    pub fn snapshot(&self) -> PublishSnapshot {
        PublishSnapshot {
            queued: self.counts.queued.load(Ordering::Relaxed),
            delivered: self.counts.delivered.load(Ordering::Relaxed),
            dropped_queue_full: self.counts.dropped_queue_full.load(Ordering::Relaxed),
            dropped_failed: self.counts.dropped_failed.load(Ordering::Relaxed),
            in_flight: u64::try_from(self.producer.in_flight_count()).unwrap_or(0),
        }
    }

    /// Delivers what is queued, waiting at most `limit` (at shutdown). Returns the records
    /// still undelivered.
    pub fn flush(&self, limit: Duration) -> u64 {
        let _ = self.producer.flush(limit);
        u64::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }
}
