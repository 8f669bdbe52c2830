//! movrek-operator: rolls out movie-recommendation models on Kubernetes with canaries,
//! Prometheus analysis, promotion and rollback.

pub mod admission;
pub mod analysis;
pub mod cache;
pub mod children;
pub mod controller;
pub mod crd;
pub mod egress;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod router;
pub mod telemetry;
