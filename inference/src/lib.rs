//! `movrek-inference`: everything that turns ratings into served recommendations.
//!
//! Dependency direction, inner to outer: [`data`] (loading, synthetic generation, event-log
//! ingestion, quality reports) → [`model`] (user-kNN, EASE^R and ALS maths, cold start, filters) →
//! [`artifact`] (one versioned, checksummed model file) → [`eval`] (offline metrics) →
//! [`server`] (HTTP, metrics, the only place that knows hyper and tokio), and [`online`]
//! (scoring what users did after a recommendation). [`store`] reads and publishes artifacts in
//! object storage (`s3://`, `gs://`, `az://`) in an immutable per-release layout.
//! The model never imports hyper or tokio; the server never does maths. [`util`] holds the
//! few primitives every layer shares (`SplitMix64`, FNV-1a, NDCG), once.

pub mod artifact;
pub mod bus;
pub mod data;
pub mod eval;
pub mod model;
pub mod online;
pub mod retrain;
pub mod server;
pub mod simulate;
pub mod store;
pub mod train;
pub mod util;
