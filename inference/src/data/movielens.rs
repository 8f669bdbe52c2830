//! MovieLens file formats: one pure line parser per file kind (100k, 1M, "latest" CSV,
//! the `imdb.csv` join, `watches.dat`) and the ML-1M writer [`write_ml1m`].
//!
//! Line parsers take one line without its terminator and return a record or a
//! [`LineError`]; they never allocate for numeric fields and never panic.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use rayon::prelude::*;

use super::parse::{
    LineError, csv_fields, decode_text, fields, parse_decimal, parse_i64, parse_u32, push_i64,
    push_rating, push_u64, shown, split_on,
};
use super::{AgeBucket, DataError, Dataset, Gender, Movie, Rating, RatingScale, User, Watch};

/// ML-100k genre flag columns of `u.item`, in file order. The first (`unknown`) means "no
/// genre known" and is not kept as a genre.
pub const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// The genre that marks a movie as adult.
pub const ADULT_GENRE: &str = "Adult";

/// Highest ML-1M occupation code (`0` other … `20` writer).
pub const MAX_OCCUPATION_CODE: u32 = 20;

/// MPAA rating that marks a movie adult in the IMDb join.
pub const ADULT_MPAA: &str = "NC-17";

fn not_a_number(field: &'static str, text: &[u8]) -> LineError {
    LineError::NotANumber {
        field,
        text: shown(text),
    }
}

fn bad_value(field: &'static str, text: &[u8]) -> LineError {
    LineError::BadValue {
        field,
        text: shown(text),
    }
}

fn id(field: &'static str, text: &[u8]) -> Result<u32, LineError> {
    parse_u32(text).ok_or_else(|| not_a_number(field, text))
}

/// One rating line with four `sep`-separated fields `user movie rating timestamp`
/// (`\t` for `u.data`, `::` for `ratings.dat`, `,` for `ratings.csv`).
pub fn rating_line(line: &[u8], sep: &[u8], scale: RatingScale) -> Result<Rating, LineError> {
    match fast_rating(line, sep) {
        Some(rating) if scale.contains(rating.value) => Ok(rating),
        _ => rating_line_checked(line, sep, scale),
    }
}

/// Leading decimal digits of `bytes` as a number (at most 18 digits), and the rest.
fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes
        .iter()
        .take(19)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
    Some((value, &bytes[digits..]))
}

/// The common, well-formed case in one pass with no splitting: plain digits, an optional
/// one-digit fraction on the rating. Anything else goes to [`rating_line_checked`],
/// which also explains what is wrong.
fn fast_rating(line: &[u8], sep: &[u8]) -> Option<Rating> {
    let (user, rest) = leading_number(line)?;
    let (movie, rest) = leading_number(rest.strip_prefix(sep)?)?;
    let (whole, mut rest) = leading_number(rest.strip_prefix(sep)?)?;
    let mut value = whole as f32;
    if let [b'.', digit, tail @ ..] = rest {
        if !digit.is_ascii_digit() {
            return None;
        }
        value += f32::from(digit - b'0') / 10.0;
        rest = tail;
    }
    let (timestamp, rest) = leading_number(rest.strip_prefix(sep)?)?;
    if !rest.is_empty() {
        return None;
    }
    Some(Rating {
        user: u32::try_from(user).ok()?,
        movie: u32::try_from(movie).ok()?,
        value,
        timestamp: i64::try_from(timestamp).ok()?,
    })
}

fn rating_line_checked(line: &[u8], sep: &[u8], scale: RatingScale) -> Result<Rating, LineError> {
    let [user, movie, value, timestamp] = fields::<4>(line, sep)?;
    let user = id("user", user)?;
    let movie = id("movie", movie)?;
    let value = parse_decimal(value).ok_or_else(|| not_a_number("rating", value))?;
    if !scale.contains(value) {
        return Err(LineError::OutOfRange { value });
    }
    let timestamp = parse_i64(timestamp).ok_or_else(|| not_a_number("timestamp", timestamp))?;
    Ok(Rating {
        user,
        movie,
        value,
        timestamp,
    })
}

fn gender(text: &[u8]) -> Result<Option<Gender>, LineError> {
    match text.trim_ascii() {
        b"" => Ok(None),
        b"M" | b"m" => Ok(Some(Gender::Male)),
        b"F" | b"f" => Ok(Some(Gender::Female)),
        _ => Err(bad_value("gender", text)),
    }
}

fn optional_text(text: &[u8]) -> Option<String> {
    let text = text.trim_ascii();
    (!text.is_empty()).then(|| decode_text(text))
}

/// One `u.user` line: `id|age|gender|occupation|zip` (exact age in years).
pub fn ml100k_user_line(line: &[u8]) -> Result<User, LineError> {
    let [user, age, gender_field, occupation, _zip] = fields::<5>(line, b"|")?;
    let age = match age.trim_ascii() {
        b"" => None,
        text => Some(AgeBucket::from_years(
            parse_u32(text).ok_or_else(|| not_a_number("age", text))?,
        )),
    };
    Ok(User {
        id: id("user", user)?,
        gender: gender(gender_field)?,
        age,
        occupation: optional_text(occupation),
    })
}

/// One `users.dat` line: `id::gender::age code::occupation code::zip`.
pub fn ml1m_user_line(line: &[u8]) -> Result<User, LineError> {
    let [user, gender_field, age, occupation, _zip] = fields::<5>(line, b"::")?;
    let age = match age.trim_ascii() {
        b"" => None,
        text => {
            let code = parse_u32(text).ok_or_else(|| not_a_number("age", text))?;
            Some(AgeBucket::from_ml1m_code(code).ok_or_else(|| bad_value("age", text))?)
        }
    };
    let occupation = match occupation.trim_ascii() {
        b"" => None,
        text => match parse_u32(text) {
            Some(code) if code <= MAX_OCCUPATION_CODE => Some(code.to_string()),
            Some(_) => return Err(bad_value("occupation", text)),
            // A name (as ML-100k has) written by `write_ml1m` is kept as it is.
            None => Some(decode_text(text)),
        },
    };
    Ok(User {
        id: id("user", user)?,
        gender: gender(gender_field)?,
        age,
        occupation,
    })
}

/// Splits a MovieLens title such as `Toy Story (1995)` into `("Toy Story", Some(1995))`.
/// Titles without a trailing four-digit year in parentheses are returned trimmed.
pub fn split_title_year(title: &str) -> (String, Option<u16>) {
    let trimmed = title.trim();
    let bytes = trimmed.as_bytes();
    if bytes.len() >= 6 && bytes.ends_with(b")") {
        let open = bytes.len() - 6;
        let digits = &bytes[open + 1..bytes.len() - 1];
        if bytes[open] == b'(' && digits.iter().all(u8::is_ascii_digit) {
            let year = parse_u32(digits).and_then(|y| u16::try_from(y).ok());
            let name = trimmed[..open].trim_end().to_owned();
            return (name, year);
        }
    }
    (trimmed.to_owned(), None)
}

fn genre_list(text: &[u8]) -> Vec<String> {
    let text = text.trim_ascii();
    if text.is_empty() || text == b"(no genres listed)" {
        return Vec::new();
    }
    split_on(text, b"|")
        .filter(|g| !g.is_empty())
        .map(decode_text)
        .collect()
}

fn movie(id: u32, title: &[u8], genres: Vec<String>) -> Movie {
    let (title, year) = split_title_year(&decode_text(title));
    let adult = genres.iter().any(|g| g == ADULT_GENRE);
    Movie {
        id,
        title,
        year,
        genres,
        adult,
        external_rating: None,
    }
}

/// One `movies.dat` line: `id::Title (year)::Genre|Genre`.
pub fn ml1m_movie_line(line: &[u8]) -> Result<Movie, LineError> {
    let [movie_id, title, genres] = fields::<3>(line, b"::")?;
    Ok(movie(id("movie", movie_id)?, title, genre_list(genres)))
}

/// One `u.item` line: id, title, release date, video date, URL, 19 genre flags.
pub fn ml100k_movie_line(line: &[u8]) -> Result<Movie, LineError> {
    let parts = fields::<24>(line, b"|")?;
    let movie_id = id("movie", parts[0])?;
    let mut genres = Vec::new();
    for (flag, name) in parts[5..].iter().zip(ML100K_GENRES) {
        match flag.trim_ascii() {
            b"0" => {}
            b"1" => {
                if name != "unknown" {
                    genres.push(name.to_owned());
                }
            }
            _ => return Err(bad_value("genre flag", flag)),
        }
    }
    let mut parsed = movie(movie_id, parts[1], genres);
    if parsed.year.is_none() {
        // Release dates look like `01-Jan-1995`.
        let date = parts[2].trim_ascii();
        if date.len() >= 4 {
            parsed.year = parse_u32(&date[date.len() - 4..]).and_then(|y| u16::try_from(y).ok());
        }
    }
    Ok(parsed)
}

/// One `movies.csv` line: `movieId,title,genres` with RFC 4180 quoting.
pub fn csv_movie_line(line: &[u8]) -> Result<Movie, LineError> {
    let parts = csv_fields(line)?;
    let [movie_id, title, genres] = parts.as_slice() else {
        return Err(LineError::FieldCount {
            expected: 3,
            found: parts.len(),
        });
    };
    Ok(movie(id("movie", movie_id)?, title, genre_list(genres)))
}

/// One row of `imdb.csv` (`movieId,imdbRating,imdbVotes,mpaa`), written by
/// `hack/movielens.sh` (and by [`write_ml1m`] when movies carry IMDb data).
#[derive(Clone, Debug, PartialEq)]
pub struct ImdbRow {
    /// MovieLens movie id.
    pub movie: u32,
    /// IMDb mean rating, 1–10.
    pub rating: Option<f32>,
    /// IMDb vote count.
    pub votes: Option<u32>,
    /// MPAA rating text (`R`, `NC-17`, …).
    pub mpaa: Option<String>,
}

/// The header line of `imdb.csv`.
pub const IMDB_HEADER: &str = "movieId,imdbRating,imdbVotes,mpaa";

/// One `imdb.csv` line.
pub fn imdb_line(line: &[u8]) -> Result<ImdbRow, LineError> {
    let parts = csv_fields(line)?;
    let [movie_id, rating, votes, mpaa] = parts.as_slice() else {
        return Err(LineError::FieldCount {
            expected: 4,
            found: parts.len(),
        });
    };
    let rating = match rating.trim_ascii() {
        b"" => None,
        text => {
            let value = parse_decimal(text).ok_or_else(|| not_a_number("imdbRating", text))?;
            if !(1.0..=10.0).contains(&value) {
                return Err(bad_value("imdbRating", text));
            }
            Some(value)
        }
    };
    let votes = match votes.trim_ascii() {
        b"" => None,
        text => Some(parse_u32(text).ok_or_else(|| not_a_number("imdbVotes", text))?),
    };
    Ok(ImdbRow {
        movie: id("movie", movie_id)?,
        rating,
        votes,
        mpaa: optional_text(mpaa),
    })
}

/// One `watches.dat` line: `user::movie::minute::timestamp`.
pub fn watch_line(line: &[u8]) -> Result<Watch, LineError> {
    let [user, movie, minute, timestamp] = fields::<4>(line, b"::")?;
    Ok(Watch {
        user: id("user", user)?,
        movie: id("movie", movie)?,
        minute: parse_u32(minute).ok_or_else(|| not_a_number("minute", minute))?,
        timestamp: parse_i64(timestamp).ok_or_else(|| not_a_number("timestamp", timestamp))?,
    })
}

/// Applies IMDb rows to a catalogue: sets `external_rating` and marks NC-17 movies adult.
/// Returns how many rows matched a movie.
pub fn apply_imdb(movies: &mut [Movie], rows: &[ImdbRow]) -> u64 {
    let index: std::collections::HashMap<u32, usize> =
        movies.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
    let mut matched = 0;
    for row in rows {
        if let Some(&i) = index.get(&row.movie) {
            matched += 1;
            let movie = &mut movies[i];
            if row.rating.is_some() {
                movie.external_rating = row.rating;
            }
            if row.mpaa.as_deref() == Some(ADULT_MPAA) {
                movie.adult = true;
            }
        }
    }
    matched
}

/// Ratings formatted per batch; bounds the writer's memory whatever the data size.
const WRITE_BATCH: usize = 1 << 20;
const FORMAT_CHUNK: usize = 1 << 15;

/// Writes `dataset` as an ML-1M directory: `users.dat`, `movies.dat`, `ratings.dat`, plus
/// `watches.dat` when there are watches and `imdb.csv` when movies carry an external rating
/// or are adult without the `Adult` genre (so that [`super::load_dir`] reads back the same
/// data). Stale `watches.dat`/`imdb.csv` from an earlier write are removed.
///
/// Text is written as UTF-8 (the loader reads UTF-8 first, latin-1 otherwise). Missing
/// demographics become empty fields. Ratings are written in the dataset's order.
///
/// # Errors
/// [`DataError::Unwritable`] when a title, genre or occupation contains `::`, `|` (genres)
/// or a line break; [`DataError::Write`] on IO failure.
pub fn write_ml1m(dataset: &Dataset, dir: &Path) -> Result<(), DataError> {
    fs::create_dir_all(dir).map_err(|source| DataError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let users = format_users(&dataset.users)?;
    write_file(&dir.join("users.dat"), &[users])?;
    let movies = format_movies(&dataset.movies)?;
    write_file(&dir.join("movies.dat"), &[movies])?;
    write_ratings(&dir.join("ratings.dat"), &dataset.ratings)?;

    let watches_path = dir.join("watches.dat");
    if dataset.watches.is_empty() {
        remove_if_present(&watches_path)?;
    } else {
        write_file(&watches_path, &[format_watches(&dataset.watches)])?;
    }
    let imdb_path = dir.join("imdb.csv");
    match format_imdb(&dataset.movies) {
        Some(imdb) => write_file(&imdb_path, &[imdb])?,
        None => remove_if_present(&imdb_path)?,
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), DataError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataError::Write {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, parts: &[Vec<u8>]) -> Result<(), DataError> {
    let to_err = |source| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufWriter::new(File::create(path).map_err(to_err)?);
    for part in parts {
        file.write_all(part).map_err(to_err)?;
    }
    file.flush().map_err(to_err)
}

fn write_ratings(path: &Path, ratings: &[Rating]) -> Result<(), DataError> {
    let to_err = |source| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(to_err)?);
    for batch in ratings.chunks(WRITE_BATCH) {
        let formatted: Vec<Vec<u8>> = batch
            .par_chunks(FORMAT_CHUNK)
            .map(|chunk| {
                let mut out = Vec::with_capacity(chunk.len() * 28);
                for r in chunk {
                    push_u64(&mut out, u64::from(r.user));
                    out.extend_from_slice(b"::");
                    push_u64(&mut out, u64::from(r.movie));
                    out.extend_from_slice(b"::");
                    push_rating(&mut out, r.value);
                    out.extend_from_slice(b"::");
                    push_i64(&mut out, r.timestamp);
                    out.push(b'\n');
                }
                out
            })
            .collect();
        for part in &formatted {
            file.write_all(part).map_err(to_err)?;
        }
    }
    file.flush().map_err(to_err)
}

fn checked<'a>(
    what: &'static str,
    id: u32,
    text: &'a str,
    forbid_bar: bool,
) -> Result<&'a str, DataError> {
    if text.contains("::") || text.contains(['\n', '\r']) || (forbid_bar && text.contains('|')) {
        return Err(DataError::Unwritable {
            what,
            id,
            text: text.to_owned(),
        });
    }
    Ok(text)
}

fn format_users(users: &[User]) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::with_capacity(users.len() * 20);
    for user in users {
        push_u64(&mut out, u64::from(user.id));
        out.extend_from_slice(b"::");
        match user.gender {
            Some(Gender::Male) => out.push(b'M'),
            Some(Gender::Female) => out.push(b'F'),
            None => {}
        }
        out.extend_from_slice(b"::");
        if let Some(age) = user.age {
            push_u64(&mut out, u64::from(age.ml1m_code()));
        }
        out.extend_from_slice(b"::");
        if let Some(occupation) = &user.occupation {
            out.extend_from_slice(checked("occupation", user.id, occupation, false)?.as_bytes());
        }
        out.extend_from_slice(b"::\n");
    }
    Ok(out)
}

fn format_movies(movies: &[Movie]) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::with_capacity(movies.len() * 48);
    for movie in movies {
        push_u64(&mut out, u64::from(movie.id));
        out.extend_from_slice(b"::");
        out.extend_from_slice(checked("title", movie.id, &movie.title, false)?.as_bytes());
        if let Some(year) = movie.year {
            out.extend_from_slice(b" (");
            push_u64(&mut out, u64::from(year));
            out.push(b')');
        }
        out.extend_from_slice(b"::");
        for (i, genre) in movie.genres.iter().enumerate() {
            if i > 0 {
                out.push(b'|');
            }
            out.extend_from_slice(checked("genre", movie.id, genre, true)?.as_bytes());
        }
        out.push(b'\n');
    }
    Ok(out)
}

fn format_watches(watches: &[Watch]) -> Vec<u8> {
    let mut out = Vec::with_capacity(watches.len() * 32);
    for w in watches {
        push_u64(&mut out, u64::from(w.user));
        out.extend_from_slice(b"::");
        push_u64(&mut out, u64::from(w.movie));
        out.extend_from_slice(b"::");
        push_u64(&mut out, u64::from(w.minute));
        out.extend_from_slice(b"::");
        push_i64(&mut out, w.timestamp);
        out.push(b'\n');
    }
    out
}

fn format_imdb(movies: &[Movie]) -> Option<Vec<u8>> {
    let needs_row = |m: &Movie| {
        m.external_rating.is_some() || (m.adult && !m.genres.iter().any(|g| g == ADULT_GENRE))
    };
    if !movies.iter().any(needs_row) {
        return None;
    }
    let mut out = Vec::new();
    out.extend_from_slice(IMDB_HEADER.as_bytes());
    out.push(b'\n');
    for movie in movies.iter().filter(|m| needs_row(m)) {
        push_u64(&mut out, u64::from(movie.id));
        out.push(b',');
        if let Some(rating) = movie.external_rating {
            out.extend_from_slice(rating.to_string().as_bytes());
        }
        out.extend_from_slice(b",,");
        if movie.adult && !movie.genres.iter().any(|g| g == ADULT_GENRE) {
            out.extend_from_slice(ADULT_MPAA.as_bytes());
        }
        out.push(b'\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rating_lines_in_every_separator() {
        let want = Rating {
            user: 196,
            movie: 242,
            value: 3.0,
            timestamp: 881_250_949,
        };
        let scale = RatingScale::WHOLE_STARS;
        assert_eq!(
            rating_line(b"196\t242\t3\t881250949", b"\t", scale),
            Ok(want)
        );
        assert_eq!(
            rating_line(b"196::242::3::881250949", b"::", scale),
            Ok(want)
        );
        assert_eq!(rating_line(b"196,242,3.0,881250949", b",", scale), Ok(want));
    }

    #[test]
    fn rating_lines_reject_bad_fields_and_range() {
        let scale = RatingScale::WHOLE_STARS;
        assert!(matches!(
            rating_line(b"1::2::3", b"::", scale),
            Err(LineError::FieldCount {
                expected: 4,
                found: 3
            })
        ));
        assert!(matches!(
            rating_line(b"x::2::3::4", b"::", scale),
            Err(LineError::NotANumber { field: "user", .. })
        ));
        assert!(matches!(
            rating_line(b"1::2::three::4", b"::", scale),
            Err(LineError::NotANumber {
                field: "rating",
                ..
            })
        ));
        assert_eq!(
            rating_line(b"1::2::6::4", b"::", scale),
            Err(LineError::OutOfRange { value: 6.0 })
        );
        assert_eq!(
            rating_line(b"1::2::0.5::4", b"::", scale),
            Err(LineError::OutOfRange { value: 0.5 })
        );
        assert!(rating_line(b"1,2,0.5,4", b",", RatingScale::HALF_STARS).is_ok());
        assert!(matches!(
            rating_line(b"1::2::3::4 ", b"::", scale),
            Ok(Rating { timestamp: 4, .. })
        ));
        assert!(matches!(
            rating_line(b"1::2::3.::4", b"::", scale),
            Ok(Rating { value: 3.0, .. })
        ));
        assert!(matches!(
            rating_line(b"1::2::3::4::5", b"::", scale),
            Err(LineError::FieldCount { found: 5, .. })
        ));
        assert!(matches!(
            rating_line(b"1::99999999999::3::4", b"::", scale),
            Err(LineError::NotANumber { field: "movie", .. })
        ));
        assert!(matches!(
            rating_line(b"1::2::3.25::-4", b"::", scale),
            Ok(Rating { timestamp: -4, .. })
        ));
    }

    #[test]
    fn users_in_both_formats() {
        let u = ml100k_user_line(b"1|24|M|technician|85711").unwrap();
        assert_eq!(u.age, Some(AgeBucket::From18To24));
        assert_eq!(u.gender, Some(Gender::Male));
        assert_eq!(u.occupation.as_deref(), Some("technician"));
        let u = ml1m_user_line(b"2::F::1::10::48067").unwrap();
        assert_eq!(u.age, Some(AgeBucket::Under18));
        assert_eq!(u.gender, Some(Gender::Female));
        assert_eq!(u.occupation.as_deref(), Some("10"));
        let u = ml1m_user_line(b"3::::::::").unwrap();
        assert_eq!((u.gender, u.age, u.occupation), (None, None, None));
        assert!(matches!(
            ml1m_user_line(b"2::F::17::10::48067"),
            Err(LineError::BadValue { field: "age", .. })
        ));
        assert!(matches!(
            ml1m_user_line(b"2::F::18::21::48067"),
            Err(LineError::BadValue {
                field: "occupation",
                ..
            })
        ));
        assert!(matches!(
            ml1m_user_line(b"2::X::18::2::48067"),
            Err(LineError::BadValue {
                field: "gender",
                ..
            })
        ));
    }

    #[test]
    fn titles_lose_their_year_suffix_only() {
        assert_eq!(
            split_title_year("Toy Story (1995)"),
            ("Toy Story".to_owned(), Some(1995))
        );
        assert_eq!(
            split_title_year("City of Lost Children, The (Cité des enfants perdus, La) (1995) "),
            (
                "City of Lost Children, The (Cité des enfants perdus, La)".to_owned(),
                Some(1995)
            )
        );
        assert_eq!(
            split_title_year("Babylon 5"),
            ("Babylon 5".to_owned(), None)
        );
        assert_eq!(split_title_year("(1995)"), (String::new(), Some(1995)));
        assert_eq!(
            split_title_year("Cosmos (19x5)"),
            ("Cosmos (19x5)".to_owned(), None)
        );
    }

    #[test]
    fn latin1_titles_and_genres() {
        let m = ml1m_movie_line(b"73::Mis\xe9rables, Les (1995)::Drama|Musical").unwrap();
        assert_eq!(m.title, "Misérables, Les");
        assert_eq!(m.year, Some(1995));
        assert_eq!(m.genres, vec!["Drama", "Musical"]);
        assert!(!m.adult);
        let m = ml1m_movie_line(b"9::Night (2001)::Adult|Drama").unwrap();
        assert!(m.adult);
    }

    #[test]
    fn ml100k_items_map_genre_flags() {
        let line =
            b"1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0";
        let m = ml100k_movie_line(line).unwrap();
        assert_eq!(m.title, "Toy Story");
        assert_eq!(m.genres, vec!["Animation", "Children's", "Comedy"]);
        let no_year = b"267|unknown|01-Jan-1995||x|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0";
        let m = ml100k_movie_line(no_year).unwrap();
        assert_eq!((m.year, m.genres.len()), (Some(1995), 0));
        let bad_flag = b"1|T|d||x|0|0|0|2|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0";
        assert!(matches!(
            ml100k_movie_line(bad_flag),
            Err(LineError::BadValue {
                field: "genre flag",
                ..
            })
        ));
    }

    #[test]
    fn csv_movies_with_quotes() {
        let m =
            csv_movie_line(br#"11,"American President, The (1995)",Comedy|Drama|Romance"#).unwrap();
        assert_eq!(m.title, "American President, The");
        assert_eq!(m.genres.len(), 3);
        let m = csv_movie_line(b"5,Nothing (2003),(no genres listed)").unwrap();
        assert!(m.genres.is_empty());
        assert!(csv_movie_line(b"5,Nothing").is_err());
    }

    #[test]
    fn imdb_rows_and_nc17_marks_adult() {
        let row = imdb_line(b"7,6.5,1200,NC-17").unwrap();
        assert_eq!(row.rating, Some(6.5));
        assert!(imdb_line(b"7,11,1200,R").is_err());
        let mut movies = vec![ml1m_movie_line(b"7::Seven (1995)::Thriller").unwrap()];
        assert_eq!(
            apply_imdb(&mut movies, &[row, imdb_line(b"8,5,,").unwrap()]),
            1
        );
        assert!(movies[0].adult);
        assert_eq!(movies[0].external_rating, Some(6.5));
    }

    #[test]
    fn writer_refuses_separator_in_titles() {
        let mut movie = ml1m_movie_line(b"1::A::Drama").unwrap();
        movie.title = "A::B".to_owned();
        assert!(matches!(
            format_movies(&[movie]),
            Err(DataError::Unwritable {
                what: "title",
                id: 1,
                ..
            })
        ));
    }
}
