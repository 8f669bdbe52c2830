//! At most one log line a second for a recurring event, carrying how many happened.
//!
//! Hostile or broken clients can produce an event per request; a line each would let them
//! fill the log (and its disk, and the log writer's queue). Lock-free: two atomics.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Interval between two lines of the same event.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// A rate limit for one kind of log line.
#[derive(Debug, Default)]
pub struct RateLimited {
    epoch: OnceLock<Instant>,
    /// Milliseconds since `epoch` of the last line, plus one (0: never logged).
    last_ms: AtomicU64,
    /// Events since the last line.
    count: AtomicU64,
}

impl RateLimited {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one event at `now`; returns `Some(n)`, the events since the previous line
    /// (this one included), when a line is due, else `None`.
    pub fn note(&self, now: Instant) -> Option<u64> {
        let epoch = *self.epoch.get_or_init(|| now);
        let now_ms = u64::try_from(now.saturating_duration_since(epoch).as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        self.count.fetch_add(1, Ordering::AcqRel);
        let last = self.last_ms.load(Ordering::Acquire);
        let interval = u64::try_from(INTERVAL.as_millis()).unwrap_or(1000);
        if last != 0 && now_ms < last.saturating_add(interval) {
            return None;
        }
        // One caller wins the line; the others keep counting for the next one.
        self.last_ms
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| self.count.swap(0, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_event_logs_then_one_line_a_second_with_the_count() {
        let limit = RateLimited::new();
        let t0 = Instant::now();
        assert_eq!(limit.note(t0), Some(1));
        for i in 1..=99 {
            assert_eq!(limit.note(t0 + Duration::from_millis(i * 5)), None);
        }
        assert_eq!(limit.note(t0 + Duration::from_secs(1)), Some(100));
        assert_eq!(limit.note(t0 + Duration::from_millis(1500)), None);
        assert_eq!(limit.note(t0 + Duration::from_secs(5)), Some(2));
    }
}
