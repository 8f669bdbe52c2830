//! Reading data sets from disk: layout detection, whole-file reads, the input digest, and
//! the assembly of parsed files into a [`Dataset`] with its [`QualityReport`].

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::clean::{cross_check, dedup_by_id, dedup_ratings};
use super::movielens::{
    apply_imdb, csv_movie_line, imdb_line, ml1m_movie_line, ml1m_user_line, ml100k_movie_line,
    ml100k_user_line, rating_line, watch_line,
};
use super::parse::{
    LineError, Parsed, first_line, is_blank, parse_lines, parse_numbered_lines, shown,
};
use super::quality::{Format, QualityReport};
use super::{DataError, Dataset, Movie, Rating, User};

/// A loaded data set, its quality report and the digest of the files it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The data.
    pub dataset: Dataset,
    /// What the load found.
    pub report: QualityReport,
    /// SHA-256 (hex) over the input files in canonical order (ratings, users, movies,
    /// `imdb.csv`, `watches.dat`; absent files skipped), each hashed as its file name, a
    /// zero byte, its length as a little-endian u64, then its bytes.
    pub sha256: String,
}

/// File names of one layout.
struct Layout {
    format: Format,
    ratings: &'static str,
    users: &'static str,
    movies: &'static str,
}

const LAYOUTS: [Layout; 3] = [
    Layout {
        format: Format::Ml1m,
        ratings: "ratings.dat",
        users: "users.dat",
        movies: "movies.dat",
    },
    Layout {
        format: Format::Ml100k,
        ratings: "u.data",
        users: "u.user",
        movies: "u.item",
    },
    Layout {
        format: Format::MlLatest,
        ratings: "ratings.csv",
        users: "",
        movies: "movies.csv",
    },
];

const IMDB_FILE: &str = "imdb.csv";
const WATCHES_FILE: &str = "watches.dat";

impl Format {
    fn separator(self) -> &'static [u8] {
        match self {
            Format::Ml100k => b"\t",
            Format::Ml1m => b"::",
            Format::MlLatest => b",",
        }
    }
}

/// One file read into memory (or absent).
struct Input {
    name: &'static str,
    bytes: Option<Vec<u8>>,
}

fn read_optional(dir: &Path, name: &'static str) -> Result<Input, DataError> {
    if name.is_empty() {
        return Ok(Input { name, bytes: None });
    }
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => Ok(Input {
            name,
            bytes: Some(bytes),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Input { name, bytes: None }),
        Err(source) => Err(DataError::Read { path, source }),
    }
}

fn read_required(path: &Path) -> Result<Vec<u8>, DataError> {
    fs::read(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Digest of the inputs, see [`Loaded::sha256`].
fn digest(inputs: &[&Input]) -> String {
    let mut hasher = Sha256::new();
    for input in inputs {
        if let Some(bytes) = &input.bytes {
            hasher.update(input.name.as_bytes());
            hasher.update([0]);
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
    }
    hex::encode(hasher.finalize())
}

/// Loads a data-set directory, detecting the layout from the files present:
/// `ratings.dat` + `movies.dat` (MovieLens 1M, and the ingest output with `watches.dat`),
/// `u.data` + `u.item` (100k), `ratings.csv` + `movies.csv` ("latest"). The users file is
/// optional in every layout; an `imdb.csv` beside any layout is joined into the catalogue.
///
/// Ratings come back sorted by (user, movie) with duplicates resolved; see
/// [`super::quality`] for what is dropped and what is kept.
///
/// # Errors
/// [`DataError::UnknownLayout`] when no layout matches, [`DataError::Read`] on IO errors,
/// [`DataError::NoRatings`] when not one valid rating remains.
pub fn load_dir(dir: &Path) -> Result<Loaded, DataError> {
    let layout = LAYOUTS
        .iter()
        .find(|l| dir.join(l.ratings).is_file() && dir.join(l.movies).is_file())
        .ok_or_else(|| DataError::UnknownLayout {
            dir: dir.to_path_buf(),
        })?;
    let ratings_input = Input {
        name: layout.ratings,
        bytes: Some(read_required(&dir.join(layout.ratings))?),
    };
    let users_input = read_optional(dir, layout.users)?;
    let movies_input = Input {
        name: layout.movies,
        bytes: Some(read_required(&dir.join(layout.movies))?),
    };
    let imdb_input = read_optional(dir, IMDB_FILE)?;
    let watches_input = if layout.format == Format::Ml1m {
        read_optional(dir, WATCHES_FILE)?
    } else {
        Input {
            name: WATCHES_FILE,
            bytes: None,
        }
    };
    let all = [
        &ratings_input,
        &users_input,
        &movies_input,
        &imdb_input,
        &watches_input,
    ];
    let (sha256, assembled) = rayon::join(
        || digest(&all),
        || {
            assemble(
                layout.format,
                &ratings_input,
                &users_input,
                &movies_input,
                &imdb_input,
                &watches_input,
            )
        },
    );
    let (dataset, report) = assembled;
    if dataset.ratings.is_empty() {
        return Err(no_ratings(dir.join(layout.ratings), &report));
    }
    Ok(Loaded {
        dataset,
        report,
        sha256,
    })
}

fn no_ratings(path: PathBuf, report: &QualityReport) -> DataError {
    let rows = report.files.first().map_or(0, |f| f.rows);
    DataError::NoRatings {
        path,
        rows,
        malformed: report.files.first().map_or(0, |f| f.malformed),
        out_of_range: report.out_of_range,
    }
}

/// Strips a UTF-8 byte-order mark.
fn without_bom(buf: &[u8]) -> &[u8] {
    buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(buf)
}

/// Skips a CSV header: a first line whose first field is `name` (any case). Any other
/// first line is data, so a garbage first line is reported, never silently skipped.
fn after_header<'a>(buf: &'a [u8], name: &str) -> (&'a [u8], u64) {
    let buf = without_bom(buf);
    let Some(first) = first_line(buf) else {
        return (buf, 1);
    };
    let first_field = first.split(|&b| b == b',').next().unwrap_or(first);
    let first_field = first_field.trim_ascii();
    let first_field = first_field
        .strip_prefix(b"\"")
        .and_then(|f| f.strip_suffix(b"\""))
        .unwrap_or(first_field);
    if first_field.eq_ignore_ascii_case(name.as_bytes()) {
        let rest = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&buf[buf.len()..], |p| &buf[p + 1..]);
        (rest, 2)
    } else {
        (buf, 1)
    }
}

fn parse_ratings(format: Format, buf: &[u8]) -> Parsed<Rating> {
    let (body, first) = if format == Format::MlLatest {
        after_header(buf, "userId")
    } else {
        (without_bom(buf), 1)
    };
    let sep = format.separator();
    let scale = format.scale();
    parse_lines(body, first, |line| rating_line(line, sep, scale))
}

fn bytes(input: &Input) -> &[u8] {
    input.bytes.as_deref().unwrap_or_default()
}

fn assemble(
    format: Format,
    ratings_input: &Input,
    users_input: &Input,
    movies_input: &Input,
    imdb_input: &Input,
    watches_input: &Input,
) -> (Dataset, QualityReport) {
    let mut report = QualityReport::new(format);

    let mut ratings = parse_ratings(format, bytes(ratings_input));
    report.add_file(ratings_input.name, &ratings);

    let users = match &users_input.bytes {
        None => Vec::new(),
        Some(buf) => {
            let parse: fn(&[u8]) -> Result<User, LineError> = match format {
                Format::Ml100k => ml100k_user_line,
                Format::Ml1m | Format::MlLatest => ml1m_user_line,
            };
            let parsed = parse_numbered_lines(without_bom(buf), 1, parse);
            report.add_file(users_input.name, &parsed);
            let (users, repeated) = dedup_by_id(parsed.items, |u| u.id);
            for rejected in repeated {
                report.add_late_malformed(users_input.name, &rejected);
            }
            users
        }
    };

    let (movie_body, movie_first) = match format {
        Format::MlLatest => after_header(bytes(movies_input), "movieId"),
        Format::Ml100k | Format::Ml1m => (without_bom(bytes(movies_input)), 1),
    };
    let parse_movie: fn(&[u8]) -> Result<Movie, LineError> = match format {
        Format::Ml100k => ml100k_movie_line,
        Format::Ml1m => ml1m_movie_line,
        Format::MlLatest => csv_movie_line,
    };
    let parsed_movies = parse_numbered_lines(movie_body, movie_first, parse_movie);
    report.add_file(movies_input.name, &parsed_movies);
    let (mut movies, repeated) = dedup_by_id(parsed_movies.items, |m| m.id);
    for rejected in repeated {
        report.add_late_malformed(movies_input.name, &rejected);
    }

    if let Some(buf) = &imdb_input.bytes {
        let (body, first) = after_header(buf, "movieId");
        let parsed = parse_lines(body, first, imdb_line);
        report.add_file(imdb_input.name, &parsed);
        let matched = apply_imdb(&mut movies, &parsed.items);
        if let Some(entry) = report.files.last_mut() {
            entry.kept = matched;
        }
    }

    let watches = match &watches_input.bytes {
        None => Vec::new(),
        Some(buf) => {
            let parsed = parse_lines(without_bom(buf), 1, watch_line);
            report.add_file(watches_input.name, &parsed);
            parsed.items
        }
    };

    report.duplicates = dedup_ratings(&mut ratings.items);
    cross_check(
        &mut report,
        &users,
        users_input.bytes.is_some(),
        &movies,
        true,
        &ratings.items,
    );
    report.watches = watches.len() as u64;
    let dataset = Dataset {
        users,
        movies,
        ratings: std::mem::take(&mut ratings.items),
        watches,
        scale: format.scale(),
    };
    (dataset, report)
}

/// Detects the format of a single ratings file from its first non-blank line: `::` →
/// ML-1M, a tab → ML-100k, a comma → "latest" CSV (header optional).
fn detect_ratings_format(buf: &[u8]) -> Option<Format> {
    let line = super::parse::lines(buf).find(|l| !is_blank(l))?;
    if line.windows(2).any(|w| w == b"::") {
        Some(Format::Ml1m)
    } else if line.contains(&b'\t') {
        Some(Format::Ml100k)
    } else if line.contains(&b',') {
        Some(Format::MlLatest)
    } else {
        None
    }
}

/// Loads one ratings file in any supported format (for explicit train/test splits).
/// Duplicates are resolved as in [`load_dir`]. With no catalogue or users file, the
/// report's unknown-id and demographics counts are zero and `users` counts raters.
///
/// # Errors
/// [`DataError::Read`], [`DataError::UnknownFormat`] (including an empty file), or
/// [`DataError::NoRatings`].
pub fn load_ratings_file(path: &Path) -> Result<(Vec<Rating>, QualityReport), DataError> {
    let buf = read_required(path)?;
    let format = detect_ratings_format(&buf).ok_or_else(|| DataError::UnknownFormat {
        path: path.to_path_buf(),
        first_line: first_line(&buf).map(shown).unwrap_or_default(),
    })?;
    let mut parsed = parse_ratings(format, &buf);
    let mut report = QualityReport::new(format);
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    report.add_file(&name, &parsed);
    report.duplicates = dedup_ratings(&mut parsed.items);
    cross_check(&mut report, &[], false, &[], false, &parsed.items);
    report.missing_demographics = 0;
    if parsed.items.is_empty() {
        return Err(no_ratings(path.to_path_buf(), &report));
    }
    Ok((parsed.items, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_skipped_only_when_not_numeric() {
        assert_eq!(
            after_header(b"userId,movieId\n1,2\n", "userId"),
            (&b"1,2\n"[..], 2)
        );
        assert_eq!(
            after_header(b"\xEF\xBB\xBFUSERID,m\r\n1,2\n", "userId"),
            (&b"1,2\n"[..], 2)
        );
        assert_eq!(
            after_header(b"\xEF\xBB\xBF1,2\n", "userId"),
            (&b"1,2\n"[..], 1)
        );
        assert_eq!(
            after_header(b"garbage,x\n1,2\n", "userId"),
            (&b"garbage,x\n1,2\n"[..], 1)
        );
        assert_eq!(after_header(b"userId,movieId", "userId"), (&b""[..], 2));
    }

    #[test]
    fn ratings_formats_are_detected_from_content() {
        assert_eq!(detect_ratings_format(b"\n1::2::3::4\n"), Some(Format::Ml1m));
        assert_eq!(detect_ratings_format(b"1\t2\t3\t4"), Some(Format::Ml100k));
        assert_eq!(
            detect_ratings_format(b"userId,movieId,rating,timestamp"),
            Some(Format::MlLatest)
        );
        assert_eq!(detect_ratings_format(b""), None);
        assert_eq!(detect_ratings_format(b"1 2 3 4"), None);
    }

    #[test]
    fn digest_depends_on_names_and_bytes() {
        let a = Input {
            name: "ratings.dat",
            bytes: Some(b"1::2::3::4\n".to_vec()),
        };
        let b = Input {
            name: "u.data",
            bytes: Some(b"1::2::3::4\n".to_vec()),
        };
        let none = Input {
            name: "users.dat",
            bytes: None,
        };
        assert_ne!(digest(&[&a]), digest(&[&b]));
        assert_eq!(digest(&[&a]), digest(&[&a, &none]));
        assert_eq!(digest(&[&a]).len(), 64);
    }
}
