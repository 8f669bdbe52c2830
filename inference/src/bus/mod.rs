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
