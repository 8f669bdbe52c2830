//! movrek-operator: rolls out movie-recommendation models on Kubernetes with canaries,
//! Prometheus analysis, promotion and rollback.

pub mod analysis;
pub mod crd;
pub mod notify;
