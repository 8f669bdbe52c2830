//! Byte-level parsing shared by every loader: line splitting (LF or CRLF), number parsing
//! without allocation, latin-1/UTF-8 text decoding, a minimal CSV record splitter, and the
//! parallel, line-aligned chunked parse that keeps big rating files fast.
//!
//! Nothing here touches the file system; the loaders hand in byte buffers.

use std::borrow::Cow;
use std::fmt;

use rayon::prelude::*;

/// How many malformed-line examples a report keeps (per file).
pub const MAX_EXAMPLES: usize = 10;

/// Target size of one parallel parse chunk. Small enough to balance two to many cores,
/// large enough that per-chunk bookkeeping is noise.
const CHUNK_BYTES: usize = 1 << 20;

/// Why one line was rejected.
#[derive(Clone, Debug, PartialEq)]
pub enum LineError {
    /// The line did not split into the expected number of fields.
    FieldCount {
        /// Fields the format has.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A field that must be a number was not one (or overflowed).
    NotANumber {
        /// Field name, e.g. `"user"`.
        field: &'static str,
        /// The offending text (lossy, shortened).
        text: String,
    },
    /// A field held a value outside what the format allows (e.g. gender `X`).
    BadValue {
        /// Field name.
        field: &'static str,
        /// The offending text (lossy, shortened).
        text: String,
    },
    /// A rating outside the data set's scale. Counted apart from malformed lines.
    OutOfRange {
        /// The rating value found.
        value: f32,
    },
    /// A CSV field opened a quote and never closed it.
    UnclosedQuote,
    /// An id already seen earlier in the same file (the first occurrence is kept).
    DuplicateId {
        /// The repeated id.
        id: u32,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::FieldCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            LineError::NotANumber { field, text } => write!(f, "{field}: not a number: {text:?}"),
            LineError::BadValue { field, text } => write!(f, "{field}: invalid value {text:?}"),
            LineError::OutOfRange { value } => write!(f, "rating {value} outside the scale"),
            LineError::UnclosedQuote => f.write_str("unclosed quote"),
            LineError::DuplicateId { id } => write!(f, "id {id} repeated (first kept)"),
        }
    }
}

/// Short, lossy rendering of a field for error messages.
pub fn shown(bytes: &[u8]) -> String {
    let text = decode_text(bytes);
    if text.chars().count() > 40 {
        let mut short: String = text.chars().take(40).collect();
        short.push('…');
        short
    } else {
        text
    }
}

/// Decodes text that is UTF-8 when valid and latin-1 otherwise (MovieLens 100k and 1M
/// titles are latin-1; "latest" files are UTF-8). Never fails: every byte is a latin-1
/// character.
pub fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Removes one trailing `\r` (CRLF files).
pub fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// True for a line holding nothing but ASCII whitespace.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Iterates the lines of a buffer, LF or CRLF, without the terminator. A final line
/// without a terminator is still a line; a trailing terminator does not start an empty one.
pub fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let empty = buf.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(trim_cr)
}

/// The first line of a buffer (without terminator), or `None` for an empty buffer.
pub fn first_line(buf: &[u8]) -> Option<&[u8]> {
    lines(buf).next()
}

/// Parses an unsigned decimal integer (ASCII digits only, surrounding spaces allowed).
pub fn parse_u32(field: &[u8]) -> Option<u32> {
    let field = field.trim_ascii();
    if field.is_empty() || field.len() > 10 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    u32::try_from(value).ok()
}

/// Parses a signed decimal integer (optional leading `-`).
pub fn parse_i64(field: &[u8]) -> Option<i64> {
    let field = field.trim_ascii();
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(if negative { -value } else { value })
}

/// Parses a plain decimal number such as `4`, `3.5` or `4.0`, with an optional leading
/// `-` (so that negative ratings are reported as out of range, not as malformed). No
/// exponents, no `inf`/`nan`.
pub fn parse_decimal(field: &[u8]) -> Option<f32> {
    let field = field.trim_ascii();
    let (negative, body) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    let (int_part, frac_part) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &b""[..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if int_part.len() > 9 || frac_part.len() > 9 {
        return None;
    }
    let mut int_value: u64 = 0;
    for &b in int_part {
        if !b.is_ascii_digit() {
            return None;
        }
        int_value = int_value * 10 + u64::from(b - b'0');
    }
    let mut frac_value: u64 = 0;
    let mut scale: f64 = 1.0;
    for &b in frac_part {
        if !b.is_ascii_digit() {
            return None;
        }
        frac_value = frac_value * 10 + u64::from(b - b'0');
        scale *= 10.0;
    }
    let value = int_value as f64 + frac_value as f64 / scale;
    Some(if negative { -value } else { value } as f32)
}

/// Splits `line` on `sep` into exactly `N` fields.
pub fn fields<'a, const N: usize>(line: &'a [u8], sep: &[u8]) -> Result<[&'a [u8]; N], LineError> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut found = 0;
    for field in split_on(line, sep) {
        if found < N {
            out[found] = field;
        }
        found += 1;
    }
    if found == N {
        Ok(out)
    } else {
        Err(LineError::FieldCount { expected: N, found })
    }
}

/// Splits on a one- or multi-byte separator (`b"\t"`, `b"|"`, `b"::"`).
pub fn split_on<'a>(line: &'a [u8], sep: &[u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let current = rest?;
        if let Some(at) = find(current, sep) {
            rest = Some(&current[at + sep.len()..]);
            Some(&current[..at])
        } else {
            rest = None;
            Some(current)
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => None,
        [single] => haystack.iter().position(|b| b == single),
        [first, tail @ ..] => {
            let mut from = 0;
            while let Some(pos) = haystack[from..].iter().position(|b| b == first) {
                let at = from + pos;
                if haystack[at + 1..].starts_with(tail) {
                    return Some(at);
                }
                from = at + 1;
            }
            None
        }
    }
}

/// Splits one CSV record (RFC 4180 quoting, `""` inside quotes is a quote). Records are
/// single lines here: MovieLens files have no embedded newlines.
pub fn csv_fields(line: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, LineError> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        if line.get(i) == Some(&b'"') {
            let mut value = Vec::new();
            i += 1;
            loop {
                match line.get(i) {
                    None => return Err(LineError::UnclosedQuote),
                    Some(b'"') if line.get(i + 1) == Some(&b'"') => {
                        value.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            out.push(Cow::Owned(value));
            match line.get(i) {
                None => return Ok(out),
                Some(b',') => i += 1,
                Some(_) => {
                    return Err(LineError::BadValue {
                        field: "csv",
                        text: "text after closing quote".to_owned(),
                    });
                }
            }
        } else {
            let end = line[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(line.len(), |p| i + p);
            out.push(Cow::Borrowed(&line[i..end]));
            if end == line.len() {
                return Ok(out);
            }
            i = end + 1;
        }
    }
}

/// One rejected line: 1-based line number and reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// 1-based line number in the file.
    pub line: u64,
    /// Why it was rejected.
    pub error: LineError,
}

/// The result of parsing one file's lines.
#[derive(Debug)]
pub struct Parsed<T> {
    /// Items from well-formed lines, in file order.
    pub items: Vec<T>,
    /// Non-blank lines seen (header excluded).
    pub rows: u64,
    /// Lines rejected as malformed (everything but out-of-range ratings).
    pub malformed: u64,
    /// Lines rejected because the rating was outside the scale.
    pub out_of_range: u64,
    /// The first [`MAX_EXAMPLES`] malformed lines.
    pub examples: Vec<Rejected>,
}

impl<T> Parsed<T> {
    fn empty() -> Self {
        Parsed {
            items: Vec::new(),
            rows: 0,
            malformed: 0,
            out_of_range: 0,
            examples: Vec::new(),
        }
    }
}

/// Parses every line of `buf` with `parse_line`, in parallel over line-aligned chunks.
/// `first_line_number` is the 1-based number of the first line in `buf` (2 after a
/// skipped header). Blank lines are skipped and not counted. The result is identical to
/// a sequential parse, whatever the number of threads.
pub fn parse_lines<T, F>(buf: &[u8], first_line_number: u64, parse_line: F) -> Parsed<T>
where
    T: Send,
    F: Fn(&[u8]) -> Result<T, LineError> + Sync,
{
    parse_impl(
        buf,
        first_line_number,
        |_, line| parse_line(line),
        |_, item| item,
    )
}

/// Like [`parse_lines`], but each item comes with its 1-based line number (for reports
/// that must point at a line found bad only later, such as a repeated id).
pub fn parse_numbered_lines<T, F>(
    buf: &[u8],
    first_line_number: u64,
    parse_line: F,
) -> Parsed<(u64, T)>
where
    T: Send,
    F: Fn(&[u8]) -> Result<T, LineError> + Sync,
{
    parse_impl(
        buf,
        first_line_number,
        |index, line| parse_line(line).map(|item| (index, item)),
        |base, (index, item)| (base + index, item),
    )
}

fn parse_impl<U, T, F, G>(buf: &[u8], first_line_number: u64, parse_line: F, fix: G) -> Parsed<T>
where
    U: Send,
    F: Fn(u64, &[u8]) -> Result<U, LineError> + Sync,
    G: Fn(u64, U) -> T,
{
    let chunks = line_aligned_chunks(buf, CHUNK_BYTES);
    let parts: Vec<(u64, Parsed<U>)> = chunks
        .par_iter()
        .map(|chunk| parse_chunk(chunk, &parse_line))
        .collect();
    let total_items = parts.iter().map(|(_, p)| p.items.len()).sum();
    let mut out = Parsed::empty();
    out.items.reserve_exact(total_items);
    let mut line_base = first_line_number;
    for (line_count, part) in parts {
        out.items
            .extend(part.items.into_iter().map(|item| fix(line_base, item)));
        out.rows += part.rows;
        out.malformed += part.malformed;
        out.out_of_range += part.out_of_range;
        for rejected in part.examples {
            if out.examples.len() < MAX_EXAMPLES {
                out.examples.push(Rejected {
                    line: line_base + rejected.line,
                    error: rejected.error,
                });
            }
        }
        line_base += line_count;
    }
    out
}

/// Parses one chunk; returns its line count and result with 0-based local line numbers.
fn parse_chunk<T, F>(chunk: &[u8], parse_line: &F) -> (u64, Parsed<T>)
where
    F: Fn(u64, &[u8]) -> Result<T, LineError>,
{
    let mut out = Parsed::empty();
    // Lines of real data sets are longer than 16 bytes, so this usually reserves once
    // (untouched capacity costs address space, not memory).
    out.items.reserve(chunk.len() / 16 + 1);
    let mut line_count = 0;
    for (index, line) in lines(chunk).enumerate() {
        let index = index as u64;
        line_count = index + 1;
        if is_blank(line) {
            continue;
        }
        out.rows += 1;
        match parse_line(index, line) {
            Ok(item) => out.items.push(item),
            Err(LineError::OutOfRange { .. }) => out.out_of_range += 1,
            Err(error) => {
                out.malformed += 1;
                if out.examples.len() < MAX_EXAMPLES {
                    out.examples.push(Rejected { line: index, error });
                }
            }
        }
    }
    (line_count, out)
}

/// Splits `buf` into chunks of about `target` bytes, each ending just after a `\n`
/// (the last chunk ends where the buffer ends).
fn line_aligned_chunks(buf: &[u8], target: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::with_capacity(buf.len() / target + 1);
    let mut start = 0;
    while start < buf.len() {
        let tentative = (start + target).min(buf.len());
        let end = if tentative == buf.len() {
            tentative
        } else {
            buf[tentative..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |p| tentative + p + 1)
        };
        chunks.push(&buf[start..end]);
        start = end;
    }
    chunks
}

/// Appends the decimal form of `value` to `out` (no allocation).
pub fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends the decimal form of a signed integer.
pub fn push_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_u64(out, value.unsigned_abs());
}

/// Appends a rating: whole values without a fraction (`4`), others in shortest form (`3.5`).
pub fn push_rating(out: &mut Vec<u8>, value: f32) {
    if value.fract() == 0.0 && (0.0..1e9).contains(&value) {
        push_u64(out, value as u64);
    } else {
        out.extend_from_slice(value.to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_handle_crlf_missing_terminator_and_empty_input() {
        let got: Vec<&[u8]> = lines(b"a\r\nb\nc").collect();
        assert_eq!(got, vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(lines(b"a\n").count(), 1);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").count(), 1);
    }

    #[test]
    fn integers_reject_junk_and_overflow() {
        assert_eq!(parse_u32(b"42"), Some(42));
        assert_eq!(parse_u32(b" 7 "), Some(7));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b"1a"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"-"), None);
    }

    #[test]
    fn decimals_parse_plain_forms_only() {
        assert_eq!(parse_decimal(b"4"), Some(4.0));
        assert_eq!(parse_decimal(b"3.5"), Some(3.5));
        assert_eq!(parse_decimal(b".5"), Some(0.5));
        assert_eq!(parse_decimal(b"-1"), Some(-1.0));
        assert_eq!(parse_decimal(b"1e3"), None);
        assert_eq!(parse_decimal(b"nan"), None);
        assert_eq!(parse_decimal(b"."), None);
        assert_eq!(parse_decimal(b""), None);
    }

    #[test]
    fn latin1_bytes_decode_without_loss() {
        assert_eq!(decode_text(b"Caf\xe9"), "Café");
        assert_eq!(decode_text("Café".as_bytes()), "Café");
    }

    #[test]
    fn fields_split_on_multibyte_separator_and_count() {
        let [a, b, c] = fields::<3>(b"1::x:y::3", b"::").unwrap();
        assert_eq!((a, b, c), (&b"1"[..], &b"x:y"[..], &b"3"[..]));
        assert_eq!(
            fields::<3>(b"1::2", b"::"),
            Err(LineError::FieldCount {
                expected: 3,
                found: 2
            })
        );
        assert_eq!(
            fields::<2>(b"1|2|3", b"|"),
            Err(LineError::FieldCount {
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn csv_handles_quotes_and_reports_unclosed_ones() {
        let got = csv_fields(br#"1,"Big, ""Bad"" Wolf (2001)",Drama|Horror"#).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(&*got[1], &br#"Big, "Bad" Wolf (2001)"#[..]);
        assert_eq!(csv_fields(br#"1,"open"#), Err(LineError::UnclosedQuote));
        assert_eq!(csv_fields(b"a,,b").unwrap().len(), 3);
    }

    #[test]
    fn parallel_parse_numbers_lines_like_a_sequential_one() {
        let mut buf = Vec::new();
        for i in 0..50_000u32 {
            if i % 9_973 == 0 {
                buf.extend_from_slice(b"junk\n");
            } else {
                push_u64(&mut buf, u64::from(i));
                buf.push(b'\n');
            }
        }
        // Tiny chunks force many chunk boundaries.
        let chunks = line_aligned_chunks(&buf, 1000);
        assert!(chunks.len() > 100);
        assert_eq!(chunks.concat(), buf);
        let parsed = parse_lines(&buf, 1, |l| {
            parse_u32(l).ok_or(LineError::NotANumber {
                field: "n",
                text: shown(l),
            })
        });
        assert_eq!(parsed.rows, 50_000);
        assert_eq!(parsed.malformed, 6);
        let bad_lines: Vec<u64> = parsed.examples.iter().map(|r| r.line).collect();
        assert_eq!(bad_lines, vec![1, 9_974, 19_947, 29_920, 39_893, 49_866]);
        assert_eq!(parsed.items.len(), 49_994);
        assert!(parsed.items.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn number_writers_round_trip() {
        let mut out = Vec::new();
        push_i64(&mut out, -1_234_567_890_123);
        out.push(b' ');
        push_rating(&mut out, 3.5);
        out.push(b' ');
        push_rating(&mut out, 4.0);
        assert_eq!(out, b"-1234567890123 3.5 4");
    }
}
