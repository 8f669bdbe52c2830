//! The pod contract's environment: what the operator sets on every inference container and
//! `movrek serve` reads (each also has a command-line flag).

/// Where the model artifact is (`s3://`, `gs://`, `file://`, …).
pub const MODEL_URI: &str = "MOVREK_MODEL_URI";
/// The artifact's SHA-256; the server refuses an artifact that does not match.
pub const MODEL_SHA256: &str = "MOVREK_MODEL_SHA256";
/// The model version the release names (the `model_version` label).
pub const MODEL_VERSION: &str = "MOVREK_MODEL_VERSION";
/// The release's name (the `release` label).
pub const RELEASE: &str = "MOVREK_RELEASE";
/// `stable` or `canary` (the `track` label).
pub const TRACK: &str = "MOVREK_TRACK";
/// The HTTP port the server listens on.
pub const PORT: &str = "MOVREK_PORT";
/// Kafka bootstrap servers of the impressions topic; impressions are off without it.
pub const KAFKA_BROKERS: &str = "MOVREK_KAFKA_BROKERS";
/// The impressions topic.
pub const IMPRESSIONS_TOPIC: &str = "MOVREK_IMPRESSIONS_TOPIC";
