//! Logging: JSON lines on stderr, filtered by `RUST_LOG` (default `info`). The controller
//! opens a span carrying `namespace` and `release` around each reconcile, so every line it
//! logs names the release.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global JSON subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .try_init();
}
