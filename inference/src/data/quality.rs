//! The data-quality report every load produces: what was read, what was rejected and why,
//! and what was kept despite being suspicious.
//!
//! # Policy
//! - Malformed lines (wrong field count, non-numeric ids, bad codes, invalid CSV) are
//!   dropped and counted; the first few are listed with file, line number and reason.
//! - Ratings outside the data set's scale are dropped and counted (`out_of_range`).
//! - The same user rating the same movie twice: the latest timestamp wins (the later line
//!   on a tie); the others are counted in `duplicates`.
//! - A rating whose movie is absent from the catalogue is **kept** and counted in
//!   `unknown_movies`: the collaborative filter needs only ids, and dropping real
//!   behaviour because a catalogue file is stale loses signal. Likewise a rating by a user
//!   absent from the users file is kept and counted in `unknown_users` (that user simply
//!   has no demographics). Both counts are zero when the file they refer to is absent.
//! - `missing_demographics` counts distinct users (from the users file or the ratings)
//!   lacking gender, age or occupation.

use std::fmt::Write as _;

use serde::Serialize;

use super::RatingScale;
use super::parse::{Parsed, Rejected};

/// The data-set layout a load recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    /// MovieLens 100k: `u.data`, `u.user`, `u.item`.
    #[serde(rename = "ml-100k")]
    Ml100k,
    /// MovieLens 1M: `ratings.dat`, `users.dat`, `movies.dat` (also the ingest output).
    #[serde(rename = "ml-1m")]
    Ml1m,
    /// MovieLens "latest": `ratings.csv`, `movies.csv`.
    #[serde(rename = "ml-latest")]
    MlLatest,
}

impl Format {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::Ml100k => "ml-100k",
            Format::Ml1m => "ml-1m",
            Format::MlLatest => "ml-latest",
        }
    }

    /// The rating scale of this format: whole stars for 100k and 1M (and the ingest
    /// output), half stars for "latest".
    pub fn scale(self) -> RatingScale {
        match self {
            Format::Ml100k | Format::Ml1m => RatingScale::WHOLE_STARS,
            Format::MlLatest => RatingScale::HALF_STARS,
        }
    }
}

/// Counts for one input file.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FileQuality {
    /// File name (no directory).
    pub file: String,
    /// Non-blank data lines (headers excluded).
    pub rows: u64,
    /// Lines that produced a record.
    pub kept: u64,
    /// Lines dropped as malformed.
    pub malformed: u64,
}

/// One malformed line, for the report's examples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MalformedLine {
    /// File name.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// Why it was dropped.
    pub reason: String,
}

/// What a load found. Serialises to JSON; [`QualityReport::to_table`] renders it for people.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityReport {
    /// Layout recognised.
    pub format: Format,
    /// Per-file counts, in canonical file order.
    pub files: Vec<FileQuality>,
    /// Ratings kept after every check.
    pub ratings: u64,
    /// Distinct users: the users file and every rater.
    pub users: u64,
    /// Movies in the catalogue.
    pub movies: u64,
    /// Watch records loaded (ingest output only).
    pub watches: u64,
    /// Malformed lines over all files.
    pub malformed: u64,
    /// The first malformed lines (at most ten per file).
    pub malformed_examples: Vec<MalformedLine>,
    /// Ratings superseded by a later rating of the same user×movie.
    pub duplicates: u64,
    /// Ratings dropped for lying outside the scale.
    pub out_of_range: u64,
    /// Ratings kept whose user is not in the users file.
    pub unknown_users: u64,
    /// Ratings kept whose movie is not in the catalogue.
    pub unknown_movies: u64,
    /// Distinct users without complete demographics.
    pub missing_demographics: u64,
}

impl QualityReport {
    /// An empty report for `format`.
    pub fn new(format: Format) -> Self {
        QualityReport {
            format,
            files: Vec::new(),
            ratings: 0,
            users: 0,
            movies: 0,
            watches: 0,
            malformed: 0,
            malformed_examples: Vec::new(),
            duplicates: 0,
            out_of_range: 0,
            unknown_users: 0,
            unknown_movies: 0,
            missing_demographics: 0,
        }
    }

    /// Records the line counts of one parsed file.
    pub fn add_file<T>(&mut self, file: &str, parsed: &Parsed<T>) {
        self.add_counts(
            file,
            parsed.rows,
            parsed.items.len() as u64,
            parsed.malformed,
            &parsed.examples,
        );
        self.out_of_range += parsed.out_of_range;
    }

    /// Records counts for one file parsed outside [`super::parse::parse_lines`].
    pub fn add_counts(
        &mut self,
        file: &str,
        rows: u64,
        kept: u64,
        malformed: u64,
        examples: &[Rejected],
    ) {
        self.files.push(FileQuality {
            file: file.to_owned(),
            rows,
            kept,
            malformed,
        });
        self.malformed += malformed;
        self.malformed_examples
            .extend(examples.iter().map(|r| MalformedLine {
                file: file.to_owned(),
                line: r.line,
                reason: r.error.to_string(),
            }));
    }

    /// Records one more malformed line found after parsing (e.g. a repeated id).
    pub fn add_late_malformed(&mut self, file: &str, rejected: &Rejected) {
        self.malformed += 1;
        if let Some(entry) = self.files.iter_mut().find(|f| f.file == file) {
            entry.malformed += 1;
            entry.kept = entry.kept.saturating_sub(1);
        }
        let shown = self
            .malformed_examples
            .iter()
            .filter(|m| m.file == file)
            .count();
        if shown < super::parse::MAX_EXAMPLES {
            self.malformed_examples.push(MalformedLine {
                file: file.to_owned(),
                line: rejected.line,
                reason: rejected.error.to_string(),
            });
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report of plain fields always serialises")
    }

    /// A short table for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "data quality ({})", self.format.name());
        let _ = writeln!(
            out,
            "  {:<22}{:>12}{:>12}{:>12}",
            "file", "rows", "kept", "malformed"
        );
        for f in &self.files {
            let _ = writeln!(
                out,
                "  {:<22}{:>12}{:>12}{:>12}",
                f.file, f.rows, f.kept, f.malformed
            );
        }
        let rows: [(&str, u64); 10] = [
            ("ratings kept", self.ratings),
            ("users", self.users),
            ("movies", self.movies),
            ("watches", self.watches),
            ("malformed lines", self.malformed),
            ("duplicate ratings", self.duplicates),
            ("out-of-range ratings", self.out_of_range),
            ("unknown users (kept)", self.unknown_users),
            ("unknown movies (kept)", self.unknown_movies),
            ("missing demographics", self.missing_demographics),
        ];
        for (label, value) in rows {
            let _ = writeln!(out, "  {label:<22}{value:>12}");
        }
        for m in &self.malformed_examples {
            let _ = writeln!(out, "  ! {}:{}: {}", m.file, m.line, m.reason);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse::LineError;

    #[test]
    fn table_and_json_show_counts_and_examples() {
        let mut report = QualityReport::new(Format::Ml1m);
        report.add_counts(
            "ratings.dat",
            10,
            8,
            2,
            &[Rejected {
                line: 3,
                error: LineError::FieldCount {
                    expected: 4,
                    found: 2,
                },
            }],
        );
        report.duplicates = 1;
        let table = report.to_table();
        assert!(table.contains("ml-1m"));
        assert!(table.contains("ratings.dat"));
        assert!(table.contains("ratings.dat:3: expected 4 fields, found 2"));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["format"], "ml-1m");
        assert_eq!(json["malformed"], 2);
        assert_eq!(json["duplicates"], 1);
        assert_eq!(json["malformed_examples"][0]["line"], 3);
    }

    #[test]
    fn late_malformed_moves_a_kept_line() {
        let mut report = QualityReport::new(Format::Ml100k);
        report.add_counts("u.user", 3, 3, 0, &[]);
        report.add_late_malformed(
            "u.user",
            &Rejected {
                line: 2,
                error: LineError::DuplicateId { id: 1 },
            },
        );
        assert_eq!(report.files[0].kept, 2);
        assert_eq!(report.files[0].malformed, 1);
        assert_eq!(report.malformed, 1);
    }
}
