//! The impression record: which list, from which model, was shown to which user, when.
//!
//! Produced by `movrek serve` for every 200 from `/recommend` to the `impressions` topic
//! (key: the user id in decimal) and read back by `movrek evaluate`. It is also the
//! per-request provenance record: release, track, model version and artifact digest.
//!
//! # Wire format, version 1
//! One JSON object per record:
//! `{"v":1,"id":"…","time":"2026-12-03T21:00:00.123Z","user":7,"movies":[3,1,2],`
//! `"release":"movies","track":"canary","model_version":"v2","artifact_sha256":"…"}`.
//! `v` is the format version: a reader refuses a higher one with a clear error (never a
//! guess), and fields added in a later version 1 writer are ignored by older readers.
//! `id` is unique per process and request (see [`ImpressionIds`]) and is also sent to the
//! client as `X-Impression-Id`.

use serde::{Deserialize, Serialize};

use crate::data::parse::push_u64;
use crate::util::SplitMix64;

/// The format version this build writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// One impression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impression {
    /// Format version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// Impression id, as in `X-Impression-Id`.
    pub id: String,
    /// When the list was answered: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// User id.
    pub user: u32,
    /// The list, best first.
    pub movies: Vec<u32>,
    /// `MOVREK_RELEASE`.
    pub release: String,
    /// `stable` or `canary`.
    pub track: String,
    /// The loaded model's version.
    pub model_version: String,
    /// SHA-256 of the artifact file served.
    pub artifact_sha256: String,
}

/// Why a record is not a usable impression.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImpressionError {
    /// Not JSON, or fields missing or of the wrong type.
    #[error("not an impression record: {0}")]
    Malformed(String),
    /// Written by a newer movrek.
    #[error("impression format v{0} is newer than this reader (v{FORMAT_VERSION})")]
    TooNew(u32),
    /// The time field is not RFC 3339.
    #[error("impression time {0:?} is not an RFC 3339 time")]
    BadTime(String),
}

impl Impression {
    /// The record's JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses one record and checks its version and time.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImpressionError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version = serde_json::from_slice(bytes)
            .map_err(|error| ImpressionError::Malformed(error.to_string()))?;
        if version.v > FORMAT_VERSION {
            return Err(ImpressionError::TooNew(version.v));
        }
        let record: Impression = serde_json::from_slice(bytes)
            .map_err(|error| ImpressionError::Malformed(error.to_string()))?;
        record.unix_seconds()?;
        Ok(record)
    }

    /// The impression time in Unix seconds.
    pub fn unix_seconds(&self) -> Result<i64, ImpressionError> {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .map(|t| t.timestamp())
            .map_err(|_| ImpressionError::BadTime(self.time.clone()))
    }

    /// The Kafka record key: the user id in decimal (records of one user stay in order on
    /// one partition).
    pub fn key(&self) -> String {
        self.user.to_string()
    }
}

/// Writes version-1 records for one server process without building an [`Impression`].
///
/// The request path pays for what changes per request (id, time, user, list); the fields
/// fixed for the process's life (release, track, model version, artifact digest) are
/// serialized once, by serde, so their escaping is serde's. The bytes are exactly those of
/// [`Impression::to_json`] for the same record (tested), so readers see no difference.
#[derive(Clone, Debug)]
pub struct ImpressionEncoder {
    /// `,"release":…,"artifact_sha256":"…"}`: everything after the list.
    tail: Vec<u8>,
}

impl ImpressionEncoder {
    /// An encoder for the records of one loaded model.
    pub fn new(release: &str, track: &str, model_version: &str, artifact_sha256: &str) -> Self {
        #[derive(Serialize)]
        struct Fixed<'a> {
            release: &'a str,
            track: &'a str,
            model_version: &'a str,
            artifact_sha256: &'a str,
        }
        let fixed = serde_json::to_vec(&Fixed {
            release,
            track,
            model_version,
            artifact_sha256,
        })
        .unwrap_or_else(|_| b"{}".to_vec());
        // `{"release":…}` → `,"release":…}`
        let mut tail = fixed;
        tail[0] = b',';
        Self { tail }
    }

    /// Replaces `out` with the record. `id` comes from [`ImpressionIds`] (hex digits, `-`
    /// and decimal digits: nothing to escape); `time` is seconds and milliseconds since the
    /// Unix epoch.
    pub fn encode_into(
        &self,
        out: &mut Vec<u8>,
        id: &str,
        time: Millis,
        user: u32,
        movies: &[u32],
    ) {
        debug_assert!(
            id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{id}"
        );
        out.clear();
        out.extend_from_slice(b"{\"v\":");
        push_u64(out, u64::from(FORMAT_VERSION));
        out.extend_from_slice(b",\"id\":\"");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\",\"time\":\"");
        write_rfc3339_millis(out, time);
        out.extend_from_slice(b"\",\"user\":");
        push_u64(out, u64::from(user));
        out.extend_from_slice(b",\"movies\":[");
        for (i, movie) in movies.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_u64(out, u64::from(*movie));
        }
        out.push(b']');
        out.extend_from_slice(&self.tail);
    }
}

/// A wall-clock time to the millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Millis {
    /// Whole seconds since the Unix epoch.
    pub secs: i64,
    /// Milliseconds within the second (0..1000).
    pub millis: u16,
}

impl Millis {
    /// The current time.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            secs: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            millis: u16::try_from(since.subsec_millis()).unwrap_or(0),
        }
    }
}

/// Appends `time` as RFC 3339 UTC with milliseconds (`2026-12-03T21:00:00.123Z`). Formatting the date costs a calendar computation, so each
/// thread keeps the last second it formatted and only appends the milliseconds within it.
fn write_rfc3339_millis(out: &mut Vec<u8>, time: Millis) {
    use std::cell::RefCell;
    thread_local! {
        static LAST_SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    LAST_SECOND.with(|cell| {
        let mut last = cell.borrow_mut();
        if last.0 != time.secs || last.1.is_empty() {
            let formatted = chrono::DateTime::from_timestamp(time.secs, 0).map_or_else(
                || "1970-01-01T00:00:00".to_owned(),
                |t| t.format("%Y-%m-%dT%H:%M:%S").to_string(),
            );
            *last = (time.secs, formatted);
        }
        out.extend_from_slice(last.1.as_bytes());
    });
    let ms = time.millis.min(999);
    out.extend_from_slice(&[
        b'.',
        b'0' + u8::try_from(ms / 100).unwrap_or(0),
        b'0' + u8::try_from(ms / 10 % 10).unwrap_or(0),
        b'0' + u8::try_from(ms % 10).unwrap_or(0),
        b'Z',
    ]);
}

/// Impression ids: a random 64-bit process prefix and a counter, `"<16 hex>-<decimal>"`.
///
/// Unique across processes with overwhelming probability (2^64 prefixes), unique within one
/// by construction, and cheap on the request path (one atomic increment).
#[derive(Debug)]
pub struct ImpressionIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl ImpressionIds {
    /// A generator whose prefix comes from `seed` (use [`ImpressionIds::from_clock`] in
    /// servers).
    pub fn new(seed: u64) -> Self {
        Self {
            prefix: format!("{:016x}", SplitMix64::new(seed).next_u64()),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A generator seeded from the clock and the process id.
    pub fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next id.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Impression {
        Impression {
            v: FORMAT_VERSION,
            id: "00000000000000ff-3".to_owned(),
            time: "2026-12-03T21:00:00.123Z".to_owned(),
            user: 7,
            movies: vec![3, 1, 2],
            release: "movies".to_owned(),
            track: "canary".to_owned(),
            model_version: "v2".to_owned(),
            artifact_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn a_record_round_trips_and_keeps_its_fields() {
        let record = sample();
        let json = record.to_json();
        let text = String::from_utf8(json.clone()).expect("utf-8");
        assert!(
            text.starts_with(r#"{"v":1,"id":"00000000000000ff-3","#),
            "{text}"
        );
        assert_eq!(Impression::parse(&json), Ok(record.clone()));
        assert_eq!(record.unix_seconds(), Ok(1_796_331_600));
        assert_eq!(record.key(), "7");
    }

    #[test]
    fn newer_formats_and_broken_records_are_refused_with_the_reason() {
        let newer = br#"{"v":2,"id":"x","time":"2026-12-03T21:00:00Z","user":1,"movies":[],"release":"r","track":"stable","model_version":"v","artifact_sha256":"s"}"#;
        assert_eq!(Impression::parse(newer), Err(ImpressionError::TooNew(2)));
        let extra_field = br#"{"v":1,"id":"x","time":"2026-12-03T21:00:00Z","user":1,"movies":[4],"release":"r","track":"stable","model_version":"v","artifact_sha256":"s","shard":3}"#;
        assert_eq!(
            Impression::parse(extra_field).map(|r| r.movies),
            Ok(vec![4])
        );
        let bad_time = br#"{"v":1,"id":"x","time":"yesterday","user":1,"movies":[],"release":"r","track":"stable","model_version":"v","artifact_sha256":"s"}"#;
        assert_eq!(
            Impression::parse(bad_time),
            Err(ImpressionError::BadTime("yesterday".to_owned()))
        );
        for broken in [&b"not json"[..], br#"{"v":1}"#, br#"{"v":"1"}"#, br#"{"v":1,"id":"x","time":"2026-12-03T21:00:00Z","user":-1,"movies":[],"release":"r","track":"t","model_version":"v","artifact_sha256":"s"}"#] {
            assert!(
                matches!(Impression::parse(broken), Err(ImpressionError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
    }

    #[test]
    fn ids_are_unique_within_a_process_and_differ_between_seeds() {
        let ids = ImpressionIds::new(1);
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert!(a.ends_with("-0") && b.ends_with("-1"), "{a} {b}");
        assert_eq!(a.len(), 18);
        let other = ImpressionIds::new(2).next();
        assert_ne!(a[..16], other[..16]);
    }

    #[test]
    fn the_encoder_writes_exactly_what_serde_writes() {
        let odd = Impression {
            release: "q\"uote\\back\u{1}ctl-é".to_owned(),
            track: "stable".to_owned(),
            model_version: "v\n2".to_owned(),
            ..sample()
        };
        let cases = [
            (
                sample(),
                Millis {
                    secs: 1_796_331_600,
                    millis: 123,
                },
            ),
            (
                odd,
                Millis {
                    secs: 1_796_331_659,
                    millis: 7,
                },
            ),
            (
                Impression {
                    user: u32::MAX,
                    movies: vec![],
                    ..sample()
                },
                Millis {
                    secs: 0,
                    millis: 999,
                },
            ),
            (
                Impression {
                    user: 0,
                    movies: vec![0, 10, 4_294_967_295, 193_609],
                    ..sample()
                },
                Millis {
                    secs: 1_796_331_660,
                    millis: 0,
                },
            ),
        ];
        let mut out = Vec::new();
        for (mut record, time) in cases {
            let encoder = ImpressionEncoder::new(
                &record.release,
                &record.track,
                &record.model_version,
                &record.artifact_sha256,
            );
            encoder.encode_into(&mut out, &record.id, time, record.user, &record.movies);
            record.time =
                chrono::DateTime::from_timestamp(time.secs, u32::from(time.millis) * 1_000_000)
                    .expect("in range")
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&record.to_json())
            );
            assert_eq!(Impression::parse(&out), Ok(record));
        }
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        // Same thread, seconds going forwards, backwards and repeating: each record carries
        // its own second, never the cached one of the record before.
        let encoder = ImpressionEncoder::new("r", "stable", "v", "s");
        let mut out = Vec::new();
        for secs in [
            1_796_331_600,
            1_796_331_600,
            1_796_331_601,
            1_796_331_599,
            86_400,
        ] {
            encoder.encode_into(&mut out, "a-1", Millis { secs, millis: 5 }, 1, &[2]);
            let record = Impression::parse(&out).expect("parses");
            assert_eq!(record.unix_seconds(), Ok(secs));
            assert_eq!(record.time.get(19..), Some(".005Z"), "{}", record.time);
        }
    }

    #[test]
    fn now_is_written_in_the_format_parse_accepts() {
        let before = chrono::Utc::now().timestamp();
        let mut out = Vec::new();
        ImpressionEncoder::new("r", "canary", "v", "s").encode_into(
            &mut out,
            "a-0",
            Millis::now(),
            1,
            &[],
        );
        let record = Impression::parse(&out).expect("parses");
        assert!(record.time.ends_with('Z'), "{}", record.time);
        let at = record.unix_seconds().expect("a time");
        assert!((before..=before + 2).contains(&at), "{at} vs {before}");
    }
}
