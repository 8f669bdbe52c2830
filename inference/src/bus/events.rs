//! Writing records that must not be lost: user-event lines to the `events` topic
//! (`movrek simulate`, replays of a log file) and the evaluator's checkpoints. Unlike impressions, a full queue waits here
//! (the writer is a batch job, not a request) and [`EventWriter::finish`] reports every
//! record the broker did not acknowledge as an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::KafkaUri;

/// How long a full queue may stay full before a write gives up: the broker is gone.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

struct Context(Arc<Deliveries>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        if let Err((error, _)) = result {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.0.first_error.lock() {
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Writes event lines keyed by user id; lossless or an error.
pub struct EventWriter {
    producer: ThreadedProducer<Context>,
    topic: String,
    deliveries: Arc<Deliveries>,
    written: u64,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("topic", &self.topic)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl EventWriter {
    /// A writer to `uri`'s topic (no connection is made until the first record).
    pub fn open(uri: &KafkaUri) -> Result<Self, String> {
        let deliveries = Arc::new(Deliveries::default());
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &uri.brokers)
            .set("client.id", "movrek-events")
            .set("linger.ms", "20")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // Checkpoints of an evaluator with many versions can outgrow the 1 MB default.
            .set("message.max.bytes", "8000000")
            .create_with_context(Context(Arc::clone(&deliveries)))
            .map_err(|e| format!("cannot create a Kafka producer for {}: {e}", uri.brokers))?;
        Ok(Self {
            producer,
            topic: uri.topic.clone(),
            deliveries,
            written: 0,
        })
    }

    /// Queues one line under `user`'s key, waiting while the queue is full (at most
    /// [`STALL_LIMIT`]).
    pub fn write(&mut self, user: u32, line: &str) -> Result<(), String> {
        self.write_keyed(user.to_string().as_bytes(), line.as_bytes())
    }

    /// Queues one record under any key, waiting while the queue is full (at most
    /// [`STALL_LIMIT`]).
    pub fn write_keyed(&mut self, key: &[u8], payload: &[u8]) -> Result<(), String> {
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
        let started = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.written += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < STALL_LIMIT =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => {
                    return Err(format!(
                        "cannot write to Kafka topic {}: {error}",
                        self.topic
                    ));
                }
            }
        }
    }

    /// Waits until every record is acknowledged (at most `limit`); an error names how many
    /// were not, and why the first failed.
    pub fn finish(&mut self, limit: Duration) -> Result<u64, String> {
        let flushed = self.producer.flush(limit);
        let failed = self.deliveries.failed.load(Ordering::Relaxed);
        let pending = self.producer.in_flight_count();
        if failed == 0 && pending == 0 && flushed.is_ok() {
            return Ok(self.written);
        }
        let first = self
            .deliveries
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "timed out".to_owned());
        Err(format!(
            "{failed} of {} event records failed and {pending} are still unacknowledged after \
             {limit:?} on topic {} (first error: {first})",
            self.written, self.topic
        ))
    }
}
