//! Ingestion of the simulator's event log into an ML-1M style directory.
//!
//! Lines (see DESIGN.md):
//! - `<iso time>,<user>,GET /data/m/<movie>/<minute>.mpg` — a minute of a movie watched;
//! - `<iso time>,<user>,GET /rate/<movie>=<1-5>` — an explicit rating;
//! - `<iso time>,<user>,recommendation request <host>:<port>, status <code>, result: <ids>, <n> ms`.
//!
//! Movies are numeric ids or slugs such as `the+godfather+1972`. Numeric ids are kept;
//! a slug gets `0x8000_0000 | (FNV-1a(slug) & 0x7fff_ffff)`, so the same slug gets the
//! same id in every log; on a clash (rare) the id is probed upwards in slug order and
//! the clash is counted. `movies.dat` lists every movie with the slug as its title.
//!
//! Watch lines collapse per user×movie to the furthest minute; ratings per user×movie to
//! the latest (the later line on equal times); recommendation lines are summarised
//! (status codes, latency); anything else is a counted malformed line, never a panic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::movielens::write_ml1m;
use super::parse::{LineError, MAX_EXAMPLES, Rejected, is_blank, parse_u32, shown, trim_cr};
use super::quality::MalformedLine;
use super::{DataError, Dataset, Movie, Rating, RatingScale, User, Watch};
use crate::util::fnv1a32;

/// A movie as a log line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MovieRef<'a> {
    /// A numeric id.
    Id(u32),
    /// A slug such as `the+godfather+1972`.
    Slug(&'a str),
}

/// One parsed log line.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    /// `GET /data/m/<movie>/<minute>.mpg`.
    Watch {
        /// Unix seconds.
        time: i64,
        /// User id.
        user: u32,
        /// The movie.
        movie: MovieRef<'a>,
        /// Minute watched.
        minute: u32,
    },
    /// `GET /rate/<movie>=<rating>`.
    Rate {
        /// Unix seconds.
        time: i64,
        /// User id.
        user: u32,
        /// The movie.
        movie: MovieRef<'a>,
        /// Rating, 1–5.
        value: u8,
    },
    /// `recommendation request <host>:<port>, status <code>, result: <ids>, <n> ms`.
    Recommendation {
        /// Unix seconds.
        time: i64,
        /// User id.
        user: u32,
        /// `<host>:<port>` that answered, as written (the port is checked).
        host: &'a [u8],
        /// HTTP status code.
        status: u16,
        /// The ids in the result.
        result: ResultList<'a>,
        /// Reported latency in milliseconds.
        latency_ms: f64,
    },
}

/// The id list of a recommendation line as written: ids separated by commas, each a
/// number or a slug (not checked here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultList<'a>(pub &'a [u8]);

impl<'a> ResultList<'a> {
    /// The ids, trimmed, empty ones skipped.
    pub fn ids(self) -> impl Iterator<Item = &'a [u8]> {
        self.0
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|id| !id.is_empty())
    }
}

fn bad(field: &'static str, text: &[u8]) -> LineError {
    LineError::BadValue {
        field,
        text: shown(text),
    }
}

/// Parses an ISO-8601 time to Unix seconds: `2024-05-01T12:00:00`, optionally with
/// fractional seconds (dropped) and `Z` or a `±HH:MM`/`±HHMM`/`±HH` offset; a space may
/// stand for the `T`. No offset means UTC.
pub fn parse_time(text: &[u8]) -> Option<i64> {
    let text = text.trim_ascii();
    if text.len() < 19 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = &text[range];
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'))
        })
    };
    let punctuation_ok = text[4] == b'-'
        && text[7] == b'-'
        && (text[10] == b'T' || text[10] == b't' || text[10] == b' ')
        && text[13] == b':'
        && text[16] == b':';
    if !punctuation_ok {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (hours, minutes) = match tail {
                [h1, h2] => (&[*h1, *h2][..], &b"00"[..]),
                [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => (&[*h1, *h2][..], &[*m1, *m2][..]),
                _ => return None,
            };
            let h = i64::from(parse_u32(hours)?);
            let m = i64::from(parse_u32(minutes)?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = h * 3600 + m * 60;
            if *sign == b'+' { seconds } else { -seconds }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn movie_ref(text: &[u8]) -> Result<MovieRef<'_>, LineError> {
    if text.is_empty() {
        return Err(bad("movie", text));
    }
    if text.iter().all(u8::is_ascii_digit) {
        return parse_u32(text)
            .map(MovieRef::Id)
            .ok_or_else(|| LineError::NotANumber {
                field: "movie",
                text: shown(text),
            });
    }
    let slug_byte = |b: &u8| b.is_ascii_alphanumeric() || b"+-_.%'!&()*".contains(b);
    if !text.iter().all(slug_byte) {
        return Err(bad("movie", text));
    }
    // All bytes are ASCII, so this cannot fail.
    std::str::from_utf8(text)
        .map(MovieRef::Slug)
        .map_err(|_| bad("movie", text))
}

/// Parses one log line (without its terminator).
pub fn parse_event(line: &[u8]) -> Result<Event<'_>, LineError> {
    let mut parts = line.splitn(3, |&b| b == b',');
    let (Some(time), Some(user), Some(request)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(LineError::FieldCount {
            expected: 3,
            found: line.split(|&b| b == b',').count(),
        });
    };
    let time = parse_time(time).ok_or_else(|| bad("time", time))?;
    let user = parse_u32(user).ok_or_else(|| LineError::NotANumber {
        field: "user",
        text: shown(user),
    })?;
    let request = request.trim_ascii();
    if let Some(path) = request.strip_prefix(b"GET /data/m/") {
        let (movie, file) = path
            .iter()
            .position(|&b| b == b'/')
            .map(|p| (&path[..p], &path[p + 1..]))
            .ok_or_else(|| bad("request", request))?;
        let minute = file
            .strip_suffix(b".mpg")
            .and_then(parse_u32)
            .ok_or_else(|| bad("minute", file))?;
        return Ok(Event::Watch {
            time,
            user,
            movie: movie_ref(movie)?,
            minute,
        });
    }
    if let Some(path) = request.strip_prefix(b"GET /rate/") {
        let eq = path
            .iter()
            .rposition(|&b| b == b'=')
            .ok_or_else(|| bad("request", request))?;
        let movie = movie_ref(&path[..eq])?;
        let value_text = &path[eq + 1..];
        let value = parse_u32(value_text).ok_or_else(|| LineError::NotANumber {
            field: "rating",
            text: shown(value_text),
        })?;
        if !(1..=5).contains(&value) {
            return Err(LineError::OutOfRange {
                value: value as f32,
            });
        }
        return Ok(Event::Rate {
            time,
            user,
            movie,
            value: value as u8,
        });
    }
    if let Some(rest) = request.strip_prefix(b"recommendation request ") {
        return recommendation(time, user, rest);
    }
    Err(bad("request", request))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn recommendation(time: i64, user: u32, rest: &[u8]) -> Result<Event<'_>, LineError> {
    let status_at = find(rest, b", status ").ok_or_else(|| bad("request", rest))?;
    let host = &rest[..status_at];
    let port_ok = host
        .iter()
        .rposition(|&b| b == b':')
        .and_then(|p| parse_u32(&host[p + 1..]))
        .is_some_and(|port| u16::try_from(port).is_ok());
    if !port_ok {
        return Err(bad("host:port", host));
    }
    let after_status = &rest[status_at + b", status ".len()..];
    let code_len = after_status
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let status = parse_u32(&after_status[..code_len])
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| bad("status", after_status))?;
    let tail = &after_status[code_len..];
    let result_at = find(tail, b"result:").ok_or_else(|| bad("request", tail))?;
    let body = &tail[result_at + b"result:".len()..];
    let last_comma = body
        .iter()
        .rposition(|&b| b == b',')
        .ok_or_else(|| bad("latency", body))?;
    let latency_text = body[last_comma + 1..].trim_ascii();
    let latency_ms = latency_text
        .strip_suffix(b"ms")
        .and_then(|n| super::parse::parse_decimal(n.trim_ascii()))
        .filter(|ms| *ms >= 0.0)
        .ok_or_else(|| bad("latency", latency_text))?;
    Ok(Event::Recommendation {
        time,
        user,
        host,
        status,
        result: ResultList(&body[..last_comma]),
        latency_ms: f64::from(latency_ms),
    })
}

/// Latency summary of recommendation lines, in milliseconds (nearest-rank percentiles).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    /// Lines summarised.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl LatencyStats {
    fn from_samples(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return LatencyStats::default();
        }
        samples.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        LatencyStats {
            count: samples.len() as u64,
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

/// What an ingest read and wrote. Written as `quality.json` beside the data.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// Non-blank lines read.
    pub lines: u64,
    /// Well-formed watch lines.
    pub watch_lines: u64,
    /// Well-formed rating lines.
    pub rate_lines: u64,
    /// Well-formed recommendation lines.
    pub recommendation_lines: u64,
    /// Lines dropped as malformed.
    pub malformed: u64,
    /// The first malformed lines (file `<input>`).
    pub malformed_examples: Vec<MalformedLine>,
    /// Rating lines dropped for a value outside 1–5.
    pub out_of_range: u64,
    /// Watch records written (one per user×movie).
    pub watches: u64,
    /// Watch lines folded into another (same user×movie).
    pub watch_duplicates: u64,
    /// Ratings written (one per user×movie).
    pub ratings: u64,
    /// Rating lines superseded by a later rating of the same user×movie.
    pub rating_duplicates: u64,
    /// Distinct users in well-formed lines.
    pub users: u64,
    /// Distinct movies in watch and rating lines.
    pub movies: u64,
    /// Movies named by slug.
    pub slug_movies: u64,
    /// Slugs whose hashed id clashed and was probed.
    pub slug_id_collisions: u64,
    /// Recommendation lines per HTTP status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// Latency of recommendation lines.
    pub latency_ms: LatencyStats,
    /// Recommendation lines with status 200 but fewer than 20 ids.
    pub short_results: u64,
}

impl IngestReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report of plain fields always serialises")
    }

    /// A short table for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::from("event-log ingest\n");
        let rows: [(&str, u64); 15] = [
            ("lines", self.lines),
            ("watch lines", self.watch_lines),
            ("rating lines", self.rate_lines),
            ("recommendation lines", self.recommendation_lines),
            ("malformed lines", self.malformed),
            ("out-of-range ratings", self.out_of_range),
            ("watches kept", self.watches),
            ("watch duplicates", self.watch_duplicates),
            ("ratings kept", self.ratings),
            ("rating duplicates", self.rating_duplicates),
            ("users", self.users),
            ("movies", self.movies),
            ("movies by slug", self.slug_movies),
            ("slug id collisions", self.slug_id_collisions),
            ("short results", self.short_results),
        ];
        for (label, value) in rows {
            let _ = writeln!(out, "  {label:<22}{value:>12}");
        }
        let statuses: Vec<String> = self
            .status_codes
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let _ = writeln!(out, "  {:<22}{}", "status codes", statuses.join(", "));
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "  {:<22}mean {:.1}, p50 {:.1}, p95 {:.1}, p99 {:.1}, max {:.1}",
            "latency ms", l.mean, l.p50, l.p95, l.p99, l.max
        );
        for m in &self.malformed_examples {
            let _ = writeln!(out, "  ! line {}: {}", m.line, m.reason);
        }
        out
    }
}

/// A movie key while slugs have no id yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Id(u32),
    Slug(u32),
}

/// Accumulates events; pure (no IO), so it is tested directly.
#[derive(Debug, Default)]
pub struct Ingest {
    report: IngestReport,
    slugs: Vec<String>,
    slug_index: HashMap<String, u32>,
    users: HashSet<u32>,
    /// (user, movie) → (furthest minute, its time).
    watches: HashMap<(u32, Key), (u32, i64)>,
    /// (user, movie) → (rating, time).
    ratings: HashMap<(u32, Key), (u8, i64)>,
    latencies: Vec<f64>,
}

impl Ingest {
    fn key(&mut self, movie: MovieRef<'_>) -> Key {
        match movie {
            MovieRef::Id(id) => Key::Id(id),
            MovieRef::Slug(slug) => {
                if let Some(&i) = self.slug_index.get(slug) {
                    return Key::Slug(i);
                }
                let i = self.slugs.len() as u32;
                self.slugs.push(slug.to_owned());
                self.slug_index.insert(slug.to_owned(), i);
                Key::Slug(i)
            }
        }
    }

    /// Adds one line (`line_number` is 1-based; blank lines should not be passed).
    pub fn add_line(&mut self, line_number: u64, line: &[u8]) {
        self.report.lines += 1;
        match parse_event(line) {
            Ok(event) => self.add_event(&event),
            Err(LineError::OutOfRange { .. }) => self.report.out_of_range += 1,
            Err(error) => {
                self.report.malformed += 1;
                if self.report.malformed_examples.len() < MAX_EXAMPLES {
                    let rejected = Rejected {
                        line: line_number,
                        error,
                    };
                    self.report.malformed_examples.push(MalformedLine {
                        file: "<input>".to_owned(),
                        line: rejected.line,
                        reason: rejected.error.to_string(),
                    });
                }
            }
        }
    }

    fn add_event(&mut self, event: &Event<'_>) {
        match *event {
            Event::Watch {
                time,
                user,
                movie,
                minute,
            } => {
                self.report.watch_lines += 1;
                self.users.insert(user);
                let key = self.key(movie);
                match self.watches.entry((user, key)) {
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert((minute, time));
                    }
                    std::collections::hash_map::Entry::Occupied(mut slot) => {
                        self.report.watch_duplicates += 1;
                        let (best_minute, best_time) = *slot.get();
                        if (minute, time) > (best_minute, best_time) {
                            slot.insert((minute, time));
                        }
                    }
                }
            }
            Event::Rate {
                time,
                user,
                movie,
                value,
            } => {
                self.report.rate_lines += 1;
                self.users.insert(user);
                let key = self.key(movie);
                match self.ratings.entry((user, key)) {
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert((value, time));
                    }
                    std::collections::hash_map::Entry::Occupied(mut slot) => {
                        self.report.rating_duplicates += 1;
                        // Later line wins on equal times.
                        if time >= slot.get().1 {
                            slot.insert((value, time));
                        }
                    }
                }
            }
            Event::Recommendation {
                user,
                status,
                result,
                latency_ms,
                ..
            } => {
                self.report.recommendation_lines += 1;
                self.users.insert(user);
                *self.report.status_codes.entry(status).or_default() += 1;
                if status == 200 && result.ids().count() < 20 {
                    self.report.short_results += 1;
                }
                self.latencies.push(latency_ms);
            }
        }
    }

    /// Resolves slug ids and returns the data set and the report.
    pub fn finish(self) -> (Dataset, IngestReport) {
        let Ingest {
            mut report,
            slugs,
            users,
            watches,
            ratings,
            latencies,
            ..
        } = self;
        let numeric: HashSet<u32> = watches
            .keys()
            .chain(ratings.keys())
            .filter_map(|(_, key)| match key {
                Key::Id(id) => Some(*id),
                Key::Slug(_) => None,
            })
            .collect();
        let (slug_ids, collisions) = assign_slug_ids(&slugs, &numeric);
        let resolve = |key: Key| match key {
            Key::Id(id) => id,
            Key::Slug(i) => slug_ids[i as usize],
        };

        let mut watch_list: Vec<Watch> = watches
            .into_iter()
            .map(|((user, key), (minute, timestamp))| Watch {
                user,
                movie: resolve(key),
                minute,
                timestamp,
            })
            .collect();
        watch_list.sort_unstable_by_key(|w| (w.user, w.movie));
        let mut rating_list: Vec<Rating> = ratings
            .into_iter()
            .map(|((user, key), (value, timestamp))| Rating {
                user,
                movie: resolve(key),
                value: f32::from(value),
                timestamp,
            })
            .collect();
        rating_list.sort_unstable_by_key(|r| (r.user, r.movie));

        let mut movies: Vec<Movie> = numeric
            .iter()
            .map(|&id| Movie {
                id,
                title: String::new(),
                year: None,
                genres: Vec::new(),
                adult: false,
                external_rating: None,
            })
            .chain(slugs.iter().zip(&slug_ids).map(|(slug, &id)| Movie {
                id,
                title: slug.clone(),
                year: slug_year(slug),
                genres: Vec::new(),
                adult: false,
                external_rating: None,
            }))
            .collect();
        movies.sort_unstable_by_key(|m| m.id);
        let mut user_list: Vec<User> = users
            .into_iter()
            .map(|id| User {
                id,
                gender: None,
                age: None,
                occupation: None,
            })
            .collect();
        user_list.sort_unstable_by_key(|u| u.id);

        report.watches = watch_list.len() as u64;
        report.ratings = rating_list.len() as u64;
        report.users = user_list.len() as u64;
        report.movies = movies.len() as u64;
        report.slug_movies = slugs.len() as u64;
        report.slug_id_collisions = collisions;
        report.latency_ms = LatencyStats::from_samples(latencies);
        let dataset = Dataset {
            users: user_list,
            movies,
            ratings: rating_list,
            watches: watch_list,
            scale: RatingScale::WHOLE_STARS,
        };
        (dataset, report)
    }
}

/// A year at the end of a slug (`the+godfather+1972` → 1972).
fn slug_year(slug: &str) -> Option<u16> {
    let (_, last) = slug.rsplit_once('+')?;
    let year = u16::try_from(parse_u32(last.as_bytes())?).ok()?;
    (last.len() == 4 && (1870..=2100).contains(&year)).then_some(year)
}

/// Ids for slugs (indexed like `slugs`), avoiding numeric ids and each other.
fn assign_slug_ids(slugs: &[String], numeric: &HashSet<u32>) -> (Vec<u32>, u64) {
    let mut order: Vec<usize> = (0..slugs.len()).collect();
    order.sort_unstable_by(|&a, &b| slugs[a].cmp(&slugs[b]));
    let mut taken: HashSet<u32> = numeric.clone();
    let mut ids = vec![0u32; slugs.len()];
    let mut collisions = 0;
    for i in order {
        let mut id = 0x8000_0000 | (fnv1a32(slugs[i].as_bytes()) & 0x7fff_ffff);
        if taken.contains(&id) {
            collisions += 1;
            while taken.contains(&id) {
                id = 0x8000_0000 | (id.wrapping_add(1) & 0x7fff_ffff);
            }
        }
        taken.insert(id);
        ids[i] = id;
    }
    (ids, collisions)
}

/// Reads an event log and writes `ratings.dat`, `movies.dat`, `users.dat` (ids only),
/// `watches.dat` and `quality.json` into `out_dir`, in the layout
/// [`super::load_dir`] reads. Printing [`IngestReport::to_table`] is up to the caller.
///
/// # Errors
/// [`DataError::Read`] when the input fails, [`DataError::Write`]/[`DataError::Json`]
/// when the output cannot be written. Bad lines are never errors.
pub fn ingest(mut input: impl BufRead, out_dir: &Path) -> Result<IngestReport, DataError> {
    let mut state = Ingest::default();
    let mut buf = Vec::new();
    let mut line_number = 0;
    loop {
        buf.clear();
        let read = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| DataError::Read {
                path: PathBuf::from("<input>"),
                source,
            })?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let line = trim_cr(buf.strip_suffix(b"\n").unwrap_or(&buf));
        if !is_blank(line) {
            state.add_line(line_number, line);
        }
    }
    write_ingest(state, out_dir)
}

/// Finishes an ingest fed line by line (as `movrek ingest --from kafka://…` does) and
/// writes its output like [`ingest`].
///
/// # Errors
/// [`DataError::Write`]/[`DataError::Json`] when the output cannot be written.
pub fn write_ingest(state: Ingest, out_dir: &Path) -> Result<IngestReport, DataError> {
    let (dataset, report) = state.finish();
    write_ml1m(&dataset, out_dir)?;
    let path = out_dir.join("quality.json");
    let json = serde_json::to_vec_pretty(&report).map_err(|source| DataError::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, json).map_err(|source| DataError::Write { path, source })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_fractions_and_offsets() {
        let base = parse_time(b"2024-05-01T12:00:00").unwrap();
        assert_eq!(base, 1_714_564_800);
        assert_eq!(parse_time(b"2024-05-01T12:00:00Z"), Some(base));
        assert_eq!(parse_time(b"2024-05-01T12:00:00.123456"), Some(base));
        assert_eq!(parse_time(b"2024-05-01 12:00:00.5Z"), Some(base));
        assert_eq!(parse_time(b"2024-05-01T14:00:00+02:00"), Some(base));
        assert_eq!(parse_time(b"2024-05-01T10:30:00-0130"), Some(base));
        assert_eq!(parse_time(b"2024-05-01T13:00:00+01"), Some(base));
        assert_eq!(parse_time(b"1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_time(b"2024-02-29T00:00:00"), Some(1_709_164_800));
        for bad in [
            &b"2023-02-29T00:00:00"[..],
            b"2024-13-01T00:00:00",
            b"2024-05-01T24:00:00",
            b"2024-05-01",
            b"2024-05-01T12:00:00.",
            b"2024-05-01T12:00:00+2",
            b"2024-05-01T12:00:00 junk",
            b"2024/05/01T12:00:00",
        ] {
            assert_eq!(parse_time(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_three_line_kinds() {
        assert_eq!(
            parse_event(b"2024-05-01T12:00:00,42,GET /data/m/the+godfather+1972/17.mpg"),
            Ok(Event::Watch {
                time: 1_714_564_800,
                user: 42,
                movie: MovieRef::Slug("the+godfather+1972"),
                minute: 17
            })
        );
        assert_eq!(
            parse_event(b"2024-05-01T12:00:00,42,GET /rate/123=4"),
            Ok(Event::Rate {
                time: 1_714_564_800,
                user: 42,
                movie: MovieRef::Id(123),
                value: 4
            })
        );
        let rec = parse_event(
            b"2024-05-01T12:00:00.5,7,recommendation request host-1:8082, status 200, result: 1, 2, 3, 12 ms",
        );
        assert_eq!(
            rec,
            Ok(Event::Recommendation {
                time: 1_714_564_800,
                user: 7,
                host: b"host-1:8082",
                status: 200,
                result: ResultList(b" 1, 2, 3"),
                latency_ms: 12.0
            })
        );
        let Ok(Event::Recommendation { result, .. }) = rec else {
            unreachable!()
        };
        assert_eq!(result.ids().collect::<Vec<_>>(), [b"1", b"2", b"3"]);
    }

    #[test]
    fn malformed_lines_say_why() {
        let cases: [(&[u8], &str); 9] = [
            (b"2024-05-01T12:00:00,42", "fields"),
            (b"yesterday,42,GET /rate/1=4", "time"),
            (b"2024-05-01T12:00:00,-4,GET /rate/1=4", "user"),
            (b"2024-05-01T12:00:00,4,GET /rate/1=four", "rating"),
            (b"2024-05-01T12:00:00,4,GET /data/m/1/x.mpg", "minute"),
            (b"2024-05-01T12:00:00,4,GET /data/m/bad slug/1.mpg", "movie"),
            (b"2024-05-01T12:00:00,4,POST /rate/1=4", "request"),
            (b"2024-05-01T12:00:00,4,recommendation request h:99999, status 200, result: 1, 3 ms", "host"),
            (b"2024-05-01T12:00:00,4,recommendation request h:1, status 200, result: 1, slow", "latency"),
        ];
        for (line, field) in cases {
            let err = parse_event(line).unwrap_err().to_string();
            assert!(
                err.contains(field),
                "{err} for {}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            parse_event(b"2024-05-01T12:00:00,4,GET /rate/1=6"),
            Err(LineError::OutOfRange { value: 6.0 })
        );
        assert!(parse_event(b"2024-05-01T12:00:00,4,GET /data/m/\xff\xfe/1.mpg").is_err());
    }

    #[test]
    fn furthest_minute_and_latest_rating_win() {
        let mut ingest = Ingest::default();
        let lines: [&[u8]; 7] = [
            b"2024-05-01T12:00:00,1,GET /data/m/a+film+1999/3.mpg",
            b"2024-05-01T12:01:00,1,GET /data/m/a+film+1999/9.mpg",
            b"2024-05-01T12:02:00,1,GET /data/m/a+film+1999/4.mpg",
            b"2024-05-01T12:05:00,1,GET /rate/a+film+1999=2",
            b"2024-05-01T12:03:00,1,GET /rate/a+film+1999=5",
            b"2024-05-01T12:05:00,1,GET /rate/7=3",
            b"nonsense",
        ];
        for (i, line) in lines.iter().enumerate() {
            ingest.add_line(i as u64 + 1, line);
        }
        let (data, report) = ingest.finish();
        assert_eq!(data.watches.len(), 1);
        assert_eq!(data.watches[0].minute, 9);
        assert_eq!(data.watches[0].timestamp, 1_714_564_860);
        assert_eq!(report.watch_duplicates, 2);
        let film = data.watches[0].movie;
        assert!(film >= 0x8000_0000);
        let rating = data.ratings.iter().find(|r| r.movie == film).unwrap();
        assert!(
            (rating.value - 2.0).abs() < f32::EPSILON,
            "latest time wins, not latest line"
        );
        assert_eq!(report.rating_duplicates, 1);
        assert_eq!(report.malformed, 1);
        assert_eq!(report.malformed_examples[0].line, 7);
        let titles: Vec<&str> = data.movies.iter().map(|m| m.title.as_str()).collect();
        assert_eq!(titles, vec!["", "a+film+1999"]);
        assert_eq!(data.movies[1].year, Some(1999));
    }

    #[test]
    fn slug_ids_are_stable_and_avoid_clashes() {
        let slugs = vec!["b".to_owned(), "a".to_owned()];
        let (ids, collisions) = assign_slug_ids(&slugs, &HashSet::new());
        assert_eq!(collisions, 0);
        assert_eq!(ids[0], 0x8000_0000 | (fnv1a32(b"b") & 0x7fff_ffff));
        // A numeric id equal to a slug's hash pushes the slug to the next free id.
        let clash: HashSet<u32> = [ids[1]].into_iter().collect();
        let (moved, collisions) = assign_slug_ids(&slugs, &clash);
        assert_eq!(collisions, 1);
        assert_eq!(moved[1], ids[1] + 1);
        assert_eq!(moved[0], ids[0]);
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let stats = LatencyStats::from_samples((1..=100).map(f64::from).collect());
        assert_eq!(
            (stats.p50, stats.p95, stats.p99, stats.max),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert!((stats.mean - 50.5).abs() < 1e-9);
        assert_eq!(LatencyStats::from_samples(Vec::new()).count, 0);
    }
}
