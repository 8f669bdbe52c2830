//! The original log line format as evaluator input: lines become [`Record`]s (through
//! [`crate::data::events::parse_event`]), movie runtimes come from a CSV, and
//! [`evaluate_log`] runs a whole log through an [`Evaluator`] with a bounded line reader.
//!
//! A recommendation-request line with status 200 is an impression: its `<host>:<port>`
//! is the only label the format has for who answered, so it becomes the row's model
//! version (release and track stay unknown). Other statuses carry no list and are counted
//! as failed requests.

use std::collections::HashMap;
use std::io::{self, BufRead};

use crate::data::events::{Event, MovieRef, parse_event};
use crate::data::parse::{
    LineError, MAX_EXAMPLES, csv_fields, is_blank, parse_u32, shown, trim_cr,
};

use super::aggregate::{OnlineReport, SCORE_BUCKETS, VersionKey};
use super::join::{Evaluator, MovieKey, Record};

/// Longest line read; a longer one is skipped (without being buffered) and counted as
/// oversized. A 20-item list line is about 200 bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Movie keys for log movies: numeric ids map to themselves, slugs are interned above
/// `2^32` in order of first sight, so the same slug is the same key within one run.
#[derive(Debug, Default)]
pub struct MovieKeys {
    slugs: HashMap<Box<str>, u64>,
}

impl MovieKeys {
    /// The key of a parsed movie reference.
    pub fn key(&mut self, movie: MovieRef<'_>) -> MovieKey {
        match movie {
            MovieRef::Id(id) => MovieKey(u64::from(id)),
            MovieRef::Slug(slug) => {
                if let Some(&k) = self.slugs.get(slug) {
                    return MovieKey(k);
                }
                let k = (1u64 << 32) + self.slugs.len() as u64;
                self.slugs.insert(slug.into(), k);
                MovieKey(k)
            }
        }
    }

    /// The key of a movie written in a list or a CSV field: digits are an id, anything
    /// else a slug. `None` for an empty field or non-UTF-8 bytes.
    pub fn key_of_text(&mut self, text: &[u8]) -> Option<MovieKey> {
        let text = text.trim_ascii();
        if text.is_empty() {
            return None;
        }
        if text.iter().all(u8::is_ascii_digit) {
            return parse_u32(text).map(|id| MovieKey(u64::from(id)));
        }
        std::str::from_utf8(text)
            .ok()
            .map(|s| self.key(MovieRef::Slug(s)))
    }
}

/// Movie runtimes in minutes, and what to assume for a movie not listed.
#[derive(Debug, Default)]
pub struct Runtimes {
    /// Known runtimes (0 is dropped on load: unknown).
    pub known: HashMap<MovieKey, u32>,
    /// Runtime assumed for other movies; `None` leaves their watches unscored.
    pub default: Option<u32>,
}

impl Runtimes {
    /// The runtime of a movie, if known or defaulted.
    pub fn get(&self, movie: MovieKey) -> Option<u32> {
        self.known.get(&movie).copied().or(self.default)
    }
}

/// Column names accepted for the runtime in a movie metadata CSV (case-insensitive).
pub const RUNTIME_COLUMNS: [&str; 4] = ["runtime", "runtimeminutes", "runtime_minutes", "length"];

/// Reads runtimes from a CSV with a header naming a `movieId` column and a runtime column
/// (one of [`RUNTIME_COLUMNS`], whole minutes): e.g. a MovieLens `movies.csv` extended
/// with an IMDb length column. Returns the table and the number of rows that could not
/// be read (bad id, bad or zero runtime, bad quoting).
///
/// # Errors
/// A message when the header lacks either column.
pub fn parse_runtimes(
    buf: &[u8],
    movies: &mut MovieKeys,
) -> Result<(HashMap<MovieKey, u32>, u64), String> {
    let mut lines = buf
        .split(|&b| b == b'\n')
        .map(trim_cr)
        .filter(|l| !is_blank(l));
    let header = lines.next().ok_or("empty movie metadata file")?;
    let header = csv_fields(header).map_err(|e| format!("header: {e}"))?;
    let column = |names: &[&str]| {
        header.iter().position(|h| {
            let h = String::from_utf8_lossy(h).trim().to_ascii_lowercase();
            names.contains(&h.as_str())
        })
    };
    let id_at = column(&["movieid", "movie_id", "id"]).ok_or("no movieId column in the header")?;
    let runtime_at = column(&RUNTIME_COLUMNS)
        .ok_or_else(|| format!("no runtime column in the header (one of {RUNTIME_COLUMNS:?})"))?;
    let mut known = HashMap::new();
    let mut bad = 0;
    for line in lines {
        let row = csv_fields(line).ok().and_then(|fields| {
            let movie = movies.key_of_text(fields.get(id_at)?)?;
            let minutes = parse_u32(fields.get(runtime_at)?.trim_ascii()).filter(|&m| m > 0)?;
            Some((movie, minutes))
        });
        match row {
            Some((movie, minutes)) => {
                known.insert(movie, minutes);
            }
            None => bad += 1,
        }
    }
    Ok((known, bad))
}

/// What one line became.
#[derive(Debug, PartialEq)]
pub enum LineOutcome {
    /// A record for the evaluator.
    Record(Record),
    /// A recommendation request that failed (no list).
    FailedRequest,
}

/// Turns one log line (without its terminator) into a record.
///
/// # Errors
/// The parser's [`LineError`]; an id in a result list that is neither a number nor a
/// slug is a `BadValue` of field `result`.
pub fn log_record(
    line: &[u8],
    movies: &mut MovieKeys,
    evaluator: &mut Evaluator,
) -> Result<LineOutcome, LineError> {
    let record = match parse_event(line)? {
        Event::Watch {
            time,
            user,
            movie,
            minute,
        } => Record::Watch {
            time,
            user,
            movie: movies.key(movie),
            minute,
        },
        Event::Rate {
            time,
            user,
            movie,
            value,
        } => Record::Rate {
            time,
            user,
            movie: movies.key(movie),
            value,
        },
        Event::Recommendation { status, .. } if status != 200 => {
            return Ok(LineOutcome::FailedRequest);
        }
        Event::Recommendation {
            time,
            user,
            host,
            result,
            ..
        } => {
            let items = result
                .ids()
                .map(|id| {
                    movies.key_of_text(id).ok_or_else(|| LineError::BadValue {
                        field: "result",
                        text: shown(id),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let version = evaluator.version(&VersionKey::model_version(String::from_utf8_lossy(
                host.trim_ascii(),
            )));
            Record::Impression {
                time,
                user,
                version,
                items,
            }
        }
    };
    Ok(LineOutcome::Record(record))
}

/// Reads one line into `buf` (terminator removed), at most `limit` bytes; the rest of a
/// longer line is consumed unbuffered. `None` at the end of input, else whether the line
/// was oversized (then `buf` is empty).
pub fn read_bounded_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let (mut any, mut oversized) = (false, false);
    loop {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(oversized));
        }
        any = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(available.len());
        if !oversized {
            if buf.len() + take > limit {
                oversized = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&available[..take]);
            }
        }
        input.consume(take + usize::from(newline.is_some()));
        if newline.is_some() {
            return Ok(Some(oversized));
        }
    }
}

/// A whole-log evaluation fed one record at a time: the log lines of a file
/// ([`evaluate_log`]) or of a Kafka topic, and impression records (`movrek online-eval
/// --impressions`). Pairs are scored by [`LogEvaluation::finish`], at the end of the input.
#[derive(Debug)]
pub struct LogEvaluation {
    evaluator: Evaluator,
    examples: Vec<(u64, String)>,
}

impl LogEvaluation {
    /// An evaluation with the given attribution window.
    pub fn new(window_seconds: i64) -> Self {
        Self {
            evaluator: Evaluator::new(window_seconds),
            examples: Vec::new(),
        }
    }

    fn malformed(&mut self, line_number: u64, reason: String, oversized: bool) {
        let counts = self.evaluator.counts_mut();
        counts.records += 1;
        counts.malformed += 1;
        counts.oversized += u64::from(oversized);
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push((line_number, reason));
        }
    }

    /// A line longer than [`MAX_LINE_BYTES`], skipped unread: counted malformed.
    pub fn oversized(&mut self, line_number: u64) {
        self.malformed(
            line_number,
            format!("longer than {MAX_LINE_BYTES} bytes"),
            true,
        );
    }

    /// One log line (terminator removed; `line_number` 1-based, for the examples). Blank
    /// lines are skipped; a line over [`MAX_LINE_BYTES`] counts as oversized.
    pub fn line(&mut self, line_number: u64, line: &[u8], movies: &mut MovieKeys) {
        if line.len() > MAX_LINE_BYTES {
            self.oversized(line_number);
            return;
        }
        let line = trim_cr(line);
        if is_blank(line) {
            return;
        }
        match log_record(line, movies, &mut self.evaluator) {
            Ok(LineOutcome::Record(record)) => self.evaluator.add(record),
            Ok(LineOutcome::FailedRequest) => {
                let counts = self.evaluator.counts_mut();
                counts.records += 1;
                counts.failed_requests += 1;
            }
            Err(LineError::OutOfRange { .. }) => {
                let counts = self.evaluator.counts_mut();
                counts.records += 1;
                counts.out_of_range += 1;
            }
            Err(error) => self.malformed(line_number, error.to_string(), false),
        }
    }

    /// One impression record (the JSON of [`crate::bus::impression::Impression`]);
    /// `record_number` names it in the malformed examples.
    pub fn impression(&mut self, record_number: u64, payload: &[u8]) {
        match super::stream::impression_record(payload, &mut self.evaluator) {
            Ok(record) => self.evaluator.add(record),
            Err(reason) => self.malformed(record_number, reason, false),
        }
    }

    /// Scores every pair and returns the report. `runtimes_source` says in words where
    /// runtimes came from.
    pub fn finish(self, runtimes: &Runtimes, runtimes_source: &str) -> OnlineReport {
        let window_seconds = self.evaluator.window();
        let (counts, versions) = self.evaluator.finish(|movie| runtimes.get(movie));
        OnlineReport {
            window_seconds: window_seconds.max(0),
            runtimes: runtimes_source.to_owned(),
            score_buckets: SCORE_BUCKETS,
            counts,
            versions,
            malformed_examples: self.examples,
        }
    }
}

/// Evaluates a whole log: every line through [`log_record`] and the evaluator, then the
/// report. `runtimes_source` says in words where runtimes came from (for the report).
///
/// # Errors
/// Only a failing read; bad lines are counted in the report.
pub fn evaluate_log(
    mut input: impl BufRead,
    movies: &mut MovieKeys,
    runtimes: &Runtimes,
    window_seconds: i64,
    runtimes_source: &str,
) -> io::Result<OnlineReport> {
    let mut evaluation = LogEvaluation::new(window_seconds);
    let mut buf = Vec::new();
    let mut line_number = 0u64;
    while let Some(oversized) = read_bounded_line(&mut input, &mut buf, MAX_LINE_BYTES)? {
        line_number += 1;
        if oversized {
            evaluation.oversized(line_number);
        } else {
            evaluation.line(line_number, &buf, movies);
        }
    }
    Ok(evaluation.finish(runtimes, runtimes_source))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::online::join::DEFAULT_WINDOW_SECONDS;

    fn report(log: &str, runtimes: &Runtimes) -> OnlineReport {
        evaluate_log(
            Cursor::new(log.as_bytes().to_vec()),
            &mut MovieKeys::default(),
            runtimes,
            DEFAULT_WINDOW_SECONDS,
            "test",
        )
        .expect("in-memory read")
    }

    fn all_100() -> Runtimes {
        Runtimes {
            known: HashMap::new(),
            default: Some(100),
        }
    }

    #[test]
    fn impressions_come_from_recommendation_lines() {
        let mut movies = MovieKeys::default();
        let mut ev = Evaluator::new(60);
        let line = b"2024-05-01T12:00:00,7,recommendation request host-1:8082, status 200, result: 5, the+godfather+1972, 9, 12 ms";
        let Ok(LineOutcome::Record(Record::Impression { user, items, .. })) =
            log_record(line, &mut movies, &mut ev)
        else {
            panic!("not an impression");
        };
        assert_eq!(user, 7);
        let slug = movies.key(MovieRef::Slug("the+godfather+1972"));
        assert_eq!(items, vec![MovieKey(5), slug, MovieKey(9)]);
        assert_eq!(
            ev.version(&VersionKey::model_version("host-1:8082")),
            0,
            "interned by the line"
        );
        let failed =
            b"2024-05-01T12:00:00,7,recommendation request host-1:8082, status 503, result: , 1 ms";
        assert_eq!(
            log_record(failed, &mut movies, &mut ev),
            Ok(LineOutcome::FailedRequest)
        );
        let bad_id = b"2024-05-01T12:00:00,7,recommendation request h:1, status 200, result: 1, \xff\xfe, 1 ms";
        assert!(log_record(bad_id, &mut movies, &mut ev).is_err());
    }

    #[test]
    fn a_log_scores_per_host_and_counts_bad_lines() {
        let log = "\
2024-05-01T12:00:00,1,recommendation request a:8082, status 200, result: 10, 11, 12, 5 ms
2024-05-01T12:01:00,1,GET /data/m/11/1.mpg
2024-05-01T12:40:00,1,GET /data/m/11/60.mpg
2024-05-01T12:02:00,1,GET /rate/11=5
2024-05-01T12:00:00,2,recommendation request b:8082, status 200, result: 20, 4 ms
2024-05-01T12:05:00,2,GET /rate/21=5
2024-05-01T12:05:00,2,GET /rate/21=9
2024-05-01T12:05:00,3,GET /rate/21=3
2024-05-01T12:05:00,3,recommendation request b:8082, status 500, result: , 4 ms

garbage
";
        let r = report(log, &all_100());
        let c = &r.counts;
        assert_eq!(
            (c.records, c.malformed, c.out_of_range, c.failed_requests),
            (10, 1, 1, 1)
        );
        assert_eq!(
            (c.impressions, c.no_impression, c.outside_window),
            (2, 1, 1)
        );
        assert_eq!(r.malformed_examples[0].0, 11);
        let a = &r.versions[0];
        assert_eq!(a.key.model_version, "a:8082");
        // Position 2; the 12:40 watch is outside the 30 min window, so 1 of 100 minutes:
        // 10 × 1; rated 5: 10.
        assert_eq!(
            (a.stats.scored, a.stats.hits, a.stats.unattributed),
            (1, 1, 1)
        );
        assert!((a.stats.score_sum - 20.0).abs() < 1e-9);
        let b = &r.versions[1];
        assert_eq!(
            (b.key.model_version.as_str(), b.stats.scored, b.stats.hits),
            ("b:8082", 1, 0)
        );
        assert!((b.stats.score_sum - 0.01).abs() < 1e-12);
        assert!(r.to_table().contains("a:8082"));
    }

    #[test]
    fn oversized_lines_are_skipped_unbuffered() {
        let mut log = String::from(
            "2024-05-01T12:00:00,1,recommendation request a:1, status 200, result: 1, 5 ms\n",
        );
        log.push_str("2024-05-01T12:00:01,1,GET /rate/");
        log.push_str(&"9".repeat(MAX_LINE_BYTES));
        log.push_str("=5\n");
        log.push_str("2024-05-01T12:00:02,1,GET /rate/1=5");
        let r = report(&log, &all_100());
        assert_eq!((r.counts.oversized, r.counts.malformed), (1, 1));
        assert_eq!(
            r.versions[0].stats.scored, 1,
            "the line after it still counts"
        );
        assert_eq!(r.malformed_examples[0].0, 2);

        // Through a tiny buffer: the limit holds across refills, and the end without a
        // newline still yields the last line.
        let mut input = io::BufReader::with_capacity(4, Cursor::new(b"abcdefgh\nxy\nz".to_vec()));
        let mut buf = Vec::new();
        assert_eq!(
            read_bounded_line(&mut input, &mut buf, 5).unwrap(),
            Some(true)
        );
        assert!(buf.is_empty());
        assert_eq!(
            read_bounded_line(&mut input, &mut buf, 5).unwrap(),
            Some(false)
        );
        assert_eq!(buf, b"xy");
        assert_eq!(
            read_bounded_line(&mut input, &mut buf, 5).unwrap(),
            Some(false)
        );
        assert_eq!(buf, b"z");
        assert_eq!(read_bounded_line(&mut input, &mut buf, 5).unwrap(), None);
    }

    #[test]
    fn runtimes_from_a_metadata_csv() {
        let mut movies = MovieKeys::default();
        let csv = b"movieId,title,Runtime\n1,\"Heat, 1995\",170\nthe+godfather+1972,x,175\n3,y,\n4,z,0\nfive,w,90x\n";
        let (known, bad) = parse_runtimes(csv, &mut movies).unwrap();
        assert_eq!(bad, 3);
        assert_eq!(known.get(&MovieKey(1)), Some(&170));
        assert_eq!(
            known.get(&movies.key(MovieRef::Slug("the+godfather+1972"))),
            Some(&175)
        );
        assert!(
            parse_runtimes(b"movieId,title\n1,x\n", &mut movies)
                .unwrap_err()
                .contains("runtime")
        );
        assert!(parse_runtimes(b"", &mut movies).is_err());
        let table = Runtimes {
            known,
            default: None,
        };
        assert_eq!(table.get(MovieKey(3)), None);
        assert_eq!(
            Runtimes {
                default: Some(90),
                ..table
            }
            .get(MovieKey(3)),
            Some(90)
        );
    }
}
