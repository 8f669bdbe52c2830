//! The event bus: Apache Kafka topics of impressions and user events.
//!
//! - `impressions` (key: user id): [`impression::Impression`] records, one per 200 from
//!   `/recommend`, published by [`publish::Publisher`] off the request path.
//! - `events` (key: user id): the movie service's user actions, one original log line per
//!   record (see [`crate::data::events`]).
//!
//! Addresses on the command line are `kafka://HOST:PORT[,HOST:PORT…]/TOPIC` ([`KafkaUri`]).

pub mod batch;
pub mod evaluate;
pub mod events;
pub mod impression;
pub mod publish;
pub mod read;

/// A consumer's context that takes the end of a partition for what it is.
///
/// librdkafka reports reaching the end of a partition (with `enable.partition.eof`) as a
/// message error from `poll` — and, for a partition that is empty when it is assigned, as
/// a *global* error without the partition, which rdkafka's default context logs at ERROR
/// level on every start. This context logs such an end at debug level (keeping the
/// partition when the error names one, for the reader to treat like any other end:
/// [`EndAwareContext::take_ends`]); other global errors keep rdkafka's ERROR line.
#[derive(Debug, Default)]
pub struct EndAwareContext {
    ends: std::sync::Mutex<Vec<i32>>,
}

impl EndAwareContext {
    /// Partitions whose end was reported as a global error since the last call.
    pub fn take_ends(&self) -> Vec<i32> {
        self.ends
            .lock()
            .map(|mut ends| std::mem::take(&mut *ends))
            .unwrap_or_default()
    }
}

impl rdkafka::client::ClientContext for EndAwareContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        match error_kind(&error) {
            ErrorKind::EndOfPartition(partition) => {
                tracing::debug!(?partition, "end of partition: {reason}");
                if let (Some(partition), Ok(mut ends)) = (partition, self.ends.lock()) {
                    ends.push(partition);
                }
            }
            ErrorKind::Other => tracing::error!("librdkafka: {error}: {reason}"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndAwareContext {}

/// How a consumer error is treated.
#[derive(Debug, PartialEq, Eq)]
enum ErrorKind {
    /// The normal end of a partition (which one, when the error says): not an error.
    EndOfPartition(Option<i32>),
    /// Anything else.
    Other,
}

fn error_kind(error: &rdkafka::error::KafkaError) -> ErrorKind {
    match error {
        rdkafka::error::KafkaError::PartitionEOF(partition) => {
            ErrorKind::EndOfPartition(Some(*partition))
        }
        rdkafka::error::KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {
            ErrorKind::EndOfPartition(None)
        }
        _ => ErrorKind::Other,
    }
}

/// Default topic of impressions.
pub const IMPRESSIONS_TOPIC: &str = "impressions";
/// Default topic of user events.
pub const EVENTS_TOPIC: &str = "events";

/// `kafka://HOST:PORT[,HOST:PORT…]/TOPIC`: brokers and one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaUri {
    /// `host:port[,host:port…]`, as librdkafka's `bootstrap.servers` takes it.
    pub brokers: String,
    /// The topic.
    pub topic: String,
}

impl std::str::FromStr for KafkaUri {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("kafka://")
            .ok_or_else(|| format!("{text:?} is not a kafka://HOST:PORT/TOPIC address"))?;
        let (brokers, topic) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text:?} names no topic (kafka://HOST:PORT/TOPIC)"))?;
        if brokers.is_empty() {
            return Err(format!("{text:?} names no broker"));
        }
        for broker in brokers.split(',') {
            let port = broker
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(port))) if !host.is_empty() && port > 0 => {}
                _ => return Err(format!("broker {broker:?} in {text:?} is not HOST:PORT")),
            }
        }
        let valid_topic = !topic.is_empty()
            && topic.len() <= 249
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid_topic {
            return Err(format!(
                "topic {topic:?} in {text:?} is not a Kafka topic name ([a-zA-Z0-9._-], 1–249)"
            ));
        }
        Ok(KafkaUri {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_partition_is_kept_not_logged_as_an_error() {
        use rdkafka::client::ClientContext as _;
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        assert_eq!(
            error_kind(&KafkaError::PartitionEOF(3)),
            ErrorKind::EndOfPartition(Some(3))
        );
        // What librdkafka reports for a partition empty when assigned.
        assert_eq!(
            error_kind(&KafkaError::Global(RDKafkaErrorCode::PartitionEOF)),
            ErrorKind::EndOfPartition(None)
        );
        assert_eq!(
            error_kind(&KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure
            )),
            ErrorKind::Other
        );
        let context = EndAwareContext::default();
        context.error(KafkaError::PartitionEOF(1), "reached end");
        context.error(KafkaError::Global(RDKafkaErrorCode::PartitionEOF), "end");
        context.error(KafkaError::PartitionEOF(0), "reached end");
        assert_eq!(context.take_ends(), vec![1, 0]);
        assert_eq!(context.take_ends(), Vec::<i32>::new(), "taken once");
    }

    #[test]
    fn addresses_parse_into_brokers_and_topic() {
        let uri: KafkaUri = "kafka://127.0.0.1:9092,broker-2:9093/events"
            .parse()
            .expect("valid");
        assert_eq!(uri.brokers, "127.0.0.1:9092,broker-2:9093");
        assert_eq!(uri.topic, "events");
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let cases = [
            ("http://127.0.0.1:9092/events", "not a kafka://"),
            ("kafka://127.0.0.1:9092", "names no topic"),
            ("kafka:///events", "names no broker"),
            ("kafka://127.0.0.1/events", "is not HOST:PORT"),
            ("kafka://127.0.0.1:0/events", "is not HOST:PORT"),
            ("kafka://127.0.0.1:9092/", "not a Kafka topic name"),
            ("kafka://127.0.0.1:9092/a/b", "not a Kafka topic name"),
        ];
        for (text, expected) in cases {
            let error = text.parse::<KafkaUri>().expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
