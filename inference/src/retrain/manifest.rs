//! The `GitOps` handoff's edit: sets `spec.model` of one `RecommenderRelease` in the text of a
//! manifest file and leaves every other byte alone. [`set_model`] is pure (text in, text
//! out); the values are those of the direct handoff's apply ([`model_patch`]), so both modes
//! write the same version, URI, digest, rounded RMSE and provenance.
//!
//! The file is not parsed into a YAML tree and printed again: that would drop comments,
//! reorder keys and reformat the other documents a person wrote. Instead a small line scanner
//! finds the block mappings on the way to `spec.model` by their indentation, and only the
//! lines of the fields `movrek retrain` owns change.
//!
//! # Guarantees
//! - Lines outside `version`, `uri`, `sha256`, `offlineRmse` and `provenance` of the one
//!   release's `spec.model` come out byte for byte, line endings included.
//! - A field whose value already equals the wanted one keeps its line as it is (quotes,
//!   trailing comment), so an edit applied twice gives the same text as applied once.
//! - Strings are written double-quoted and `provenance` as one line of JSON (JSON is YAML):
//!   a version such as `1.10` or `no` can never be read back as a number or a boolean, and
//!   the provenance is the very text `--handoff none` prints.
//! - A rewritten scalar keeps its trailing comment; a missing field is added at the end of
//!   `spec.model` with that block's indentation.
//!
//! # Caveats
//! Refused with an error naming the line: no release of that name (and namespace, where a
//! document gives one), more than one, a tab in the release document's indentation, Helm
//! template braces in it, `spec` or `spec.model` in flow style (`{…}`) or missing, an anchor,
//! alias or merge key on `spec`, `spec.model` or one of the fields (changing it would change
//! whatever else refers to it), and a field written twice. A replaced multi-line value loses
//! the comments inside it. With no provenance to write (a version `movrek retrain` did not
//! publish), an existing `provenance` is removed: it described another model.

use std::fmt::Write as _;

use serde_json::Value;

use super::handoff::{ModelFields, model_patch};

/// The fields of `spec.model` this edit owns, in the order missing ones are added.
const FIELDS: [&str; 5] = ["version", "uri", "sha256", "offlineRmse", "provenance"];

/// Why a manifest cannot be edited. Lines are 1-based.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// No document is the release.
    #[error("no RecommenderRelease {wanted} in the file{}", found_note(.found, .unreadable.as_deref()))]
    NoRelease {
        /// `namespace/name` asked for.
        wanted: String,
        /// The releases the file does hold.
        found: Vec<String>,
        /// The first document that could not be read, and why.
        unreadable: Option<String>,
    },
    /// Several documents are the release.
    #[error("RecommenderRelease {wanted} is in the file {count} times (lines {lines}); edit one")]
    Ambiguous {
        /// `namespace/name`.
        wanted: String,
        /// How many documents match.
        count: usize,
        /// Their first lines.
        lines: String,
    },
    /// A tab where YAML wants spaces.
    #[error("line {line}: a tab in the indentation of the release's document; indent with spaces")]
    Tab {
        /// Where.
        line: usize,
    },
    /// The document is a template, not YAML.
    #[error(
        "line {line}: template braces ({{{{ … }}}}) in the release's document; edit the values it is rendered from instead"
    )]
    Templated {
        /// Where.
        line: usize,
    },
    /// A mapping the edit must enter is missing.
    #[error("the release has no {path} block")]
    Missing {
        /// `spec` or `spec.model`.
        path: &'static str,
    },
    /// A mapping the edit must enter is written `{…}`.
    #[error(
        "line {line}: {path} is written in flow style ({{…}}); write it as a block mapping, one key per line"
    )]
    FlowStyle {
        /// Where.
        line: usize,
        /// Which mapping.
        path: String,
    },
    /// An anchor, alias or merge key on what the edit changes.
    #[error(
        "line {line}: {path} carries an anchor, alias or merge key; editing it would change what refers to it"
    )]
    AnchorOrAlias {
        /// Where.
        line: usize,
        /// Which key.
        path: String,
    },
    /// The same key twice.
    #[error("line {line}: {path} appears twice")]
    DuplicateKey {
        /// The second occurrence.
        line: usize,
        /// Which key.
        path: String,
    },
    /// A line the scanner cannot place in a block mapping.
    #[error("line {line}: cannot read {path} as a block mapping here")]
    NotAMapping {
        /// Where.
        line: usize,
        /// Inside which mapping.
        path: String,
    },
}

fn found_note(found: &[String], unreadable: Option<&str>) -> String {
    let mut note = String::new();
    if !found.is_empty() {
        let _ = write!(note, " (it holds {})", found.join(", "));
    }
    if let Some(why) = unreadable {
        let _ = write!(note, "; a document could not be read: {why}");
    }
    note
}

/// One line of the file.
#[derive(Clone, Copy, Debug)]
struct Line<'a> {
    /// Byte offset of its first character.
    start: usize,
    /// Byte offset after its line break (or the end of the text).
    end: usize,
    /// The line without its line break.
    body: &'a str,
    /// Leading spaces.
    indent: usize,
}

impl<'a> Line<'a> {
    /// What follows the indentation.
    fn rest(&self) -> &'a str {
        &self.body[self.indent..]
    }

    /// Not blank and not a comment.
    fn is_content(&self) -> bool {
        let rest = self.rest().trim_start();
        !rest.is_empty() && !rest.starts_with('#')
    }

    /// A tab right after the leading spaces, on a line with something on it.
    fn has_tab_indent(&self) -> bool {
        self.rest().starts_with('\t') && self.is_content()
    }

    /// The line break (`\n`, `\r\n`, or empty at the end of the text).
    fn terminator(&self, text: &'a str) -> &'a str {
        &text[self.start + self.body.len()..self.end]
    }
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for piece in text.split_inclusive('\n') {
        let end = start + piece.len();
        let body = piece.strip_suffix('\n').unwrap_or(piece);
        let body = body.strip_suffix('\r').unwrap_or(body);
        let indent = body.len() - body.trim_start_matches(' ').len();
        lines.push(Line {
            start,
            end,
            body,
            indent,
        });
        start = end;
    }
    lines
}

/// `---` (with anything after a space) or `...`: the boundaries between documents.
fn is_boundary(body: &str) -> bool {
    let marker = |m: &str| {
        body.strip_prefix(m)
            .is_some_and(|after| after.is_empty() || after.starts_with([' ', '\t']))
    };
    marker("---") || marker("...")
}

/// Line index ranges of the documents.
fn documents(lines: &[Line<'_>]) -> Vec<(usize, usize)> {
    let mut documents = Vec::new();
    let mut from = 0;
    for (i, line) in lines.iter().enumerate() {
        if is_boundary(line.body) {
            documents.push((from, i));
            from = i + 1;
        }
    }
    documents.push((from, lines.len()));
    documents
}

/// A key of a block mapping and the lines of its value.
#[derive(Clone, Debug)]
struct Entry {
    key: String,
    /// The key's line.
    line: usize,
    /// Byte offset in that line's body after the key's colon.
    after_colon: usize,
    /// One past the value's last content line (the key's own line when the value is on it).
    end: usize,
}

impl Entry {
    /// The value's text on the key's line, comment and surrounding spaces removed: empty
    /// when the value is on the following lines (a block) or null.
    fn inline_value<'a>(&self, lines: &[Line<'a>]) -> &'a str {
        let after = &lines[self.line].body[self.after_colon..];
        let after = after.trim_start();
        if after.starts_with('#') {
            ""
        } else {
            after.trim_end()
        }
    }
}

/// Reads a key at the start of `rest` (`key:`, `"key":`, `'key':`) and returns it with the
/// offset in `rest` after its colon. `None` for a sequence item or anything else.
fn key_of(rest: &str) -> Option<(String, usize)> {
    let colon_ends_key = |i: usize| {
        rest[i..].starts_with(':')
            && rest[i + 1..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ' || c == '\t')
    };
    if rest.starts_with('"') || rest.starts_with('\'') {
        let (key, len) = quoted(rest)?;
        let gap = rest[len..].len() - rest[len..].trim_start_matches(' ').len();
        return colon_ends_key(len + gap).then_some((key, len + gap + 1));
    }
    if rest.starts_with([
        '-', '?', '{', '[', '#', '&', '*', '!', '|', '>', '%', '@', '`',
    ]) {
        return None;
    }
    let mut i = 0;
    while i < rest.len() {
        if rest[i..].starts_with(" #") {
            return None;
        }
        if colon_ends_key(i) {
            return Some((rest[..i].trim_end().to_owned(), i + 1));
        }
        i += rest[i..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// A quoted scalar at the start of `text`: its value and its length in bytes. Double-quoted
/// scalars are read with JSON's escapes (a YAML-only escape makes it unreadable: `None`).
fn quoted(text: &str) -> Option<(String, usize)> {
    if let Some(inner) = text.strip_prefix('\'') {
        let mut value = String::new();
        let mut chars = inner.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|&(_, next)| next == '\'') {
                    chars.next();
                    value.push('\'');
                    continue;
                }
                return Some((value, i + 2));
            }
            value.push(c);
        }
        return None;
    }
    let inner = text.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => {
                let len = i + 2;
                return serde_json::from_str::<String>(&text[..len])
                    .ok()
                    .map(|v| (v, len));
            }
            _ => {}
        }
    }
    None
}

/// A one-line scalar value: its value, whether it was quoted, and what follows it on the
/// line (spaces and a comment, kept when the value is rewritten). `None` when `after_colon`
/// holds something else (a flow collection, a block scalar, a tag, nothing).
fn scalar(after_colon: &str) -> Option<(String, bool, &str)> {
    let text = after_colon.trim_start();
    let suffix_ok = |s: &str| s.trim_start().is_empty() || s.trim_start().starts_with('#');
    if text.starts_with('"') || text.starts_with('\'') {
        let (value, len) = quoted(text)?;
        let suffix = &text[len..];
        return suffix_ok(suffix).then_some((value, true, suffix));
    }
    if text.is_empty() || text.starts_with(['#', '{', '[', '|', '>', '!', '&', '*', '%', '@', '`'])
    {
        return None;
    }
    let end = text.find(" #").unwrap_or(text.len());
    let value = text[..end].trim_end();
    Some((value.to_owned(), false, &text[value.len()..]))
}

/// A plain scalar YAML could read as something other than a string (number, boolean, null).
fn plain_might_not_be_string(value: &str) -> bool {
    const WORDS: [&str; 12] = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".inf", ".nan",
    ];
    let lower = value.to_ascii_lowercase();
    // Numbers in any base, with `_` or sexagesimal `:`, and YAML 1.1 dates all start with a
    // digit, sign or dot and hold nothing but these characters.
    let number_like = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '+' | '-'));
    WORDS.contains(&lower.as_str()) || value.parse::<f64>().is_ok() || number_like
}

/// Whether a key's current value (`entry`, a single line) is already `want`.
fn holds(entry: &Entry, lines: &[Line<'_>], want: &Value) -> bool {
    if entry.end != entry.line + 1 {
        return false;
    }
    let after = &lines[entry.line].body[entry.after_colon..];
    match want {
        Value::Object(_) | Value::Array(_) => {
            serde_json::from_str::<Value>(entry.inline_value(lines)).is_ok_and(|v| &v == want)
        }
        Value::String(s) => scalar(after)
            .is_some_and(|(v, quoted, _)| &v == s && (quoted || !plain_might_not_be_string(&v))),
        Value::Number(n) => scalar(after).is_some_and(|(v, quoted, _)| {
            !quoted && v.parse::<f64>().ok() == n.as_f64() && n.as_f64().is_some()
        }),
        Value::Null => matches!(entry.inline_value(lines), "" | "null" | "~"),
        Value::Bool(b) => scalar(after).is_some_and(|(v, quoted, _)| !quoted && v == b.to_string()),
    }
}

/// The entries of the block mapping whose content lines are `from..to`, keys at `indent`.
/// A content line at that indentation that is neither a key nor a sequence item (the value of
/// the key before it) cannot be placed.
fn entries(
    lines: &[Line<'_>],
    (from, to): (usize, usize),
    indent: usize,
    path: &str,
) -> Result<Vec<Entry>, ManifestError> {
    let mut found: Vec<Entry> = Vec::new();
    for (i, line) in lines.iter().enumerate().take(to).skip(from) {
        if !line.is_content() {
            continue;
        }
        let rest = line.rest();
        let item = rest == "-" || rest.starts_with("- ");
        // Deeper lines, and sequence items at the keys' indentation, continue the last value.
        if (line.indent > indent || (line.indent == indent && item))
            && let Some(last) = found.last_mut()
        {
            last.end = i + 1;
            continue;
        }
        let key = (line.indent == indent).then(|| key_of(rest)).flatten();
        let Some((key, after)) = key else {
            return Err(ManifestError::NotAMapping {
                line: i + 1,
                path: path.to_owned(),
            });
        };
        found.push(Entry {
            key,
            line: i,
            after_colon: line.indent + after,
            end: i + 1,
        });
    }
    Ok(found)
}

/// The one entry named `key`, or `None`; a second one is an error.
fn find<'e>(
    entries: &'e [Entry],
    key: &str,
    path: &str,
) -> Result<Option<&'e Entry>, ManifestError> {
    let mut named = entries.iter().filter(|e| e.key == key);
    let first = named.next();
    if let Some(second) = named.next() {
        return Err(ManifestError::DuplicateKey {
            line: second.line + 1,
            path: path.to_owned(),
        });
    }
    Ok(first)
}

/// The lines `(from, to)` of a block mapping's value, and the indentation of its keys
/// (`None` when it has no content line).
fn block(lines: &[Line<'_>], entry: &Entry) -> (usize, usize, Option<usize>) {
    let (from, to) = (entry.line + 1, entry.end);
    let indent = lines[from..to]
        .iter()
        .find(|l| l.is_content())
        .map(|l| l.indent);
    (from, to, indent)
}

/// Refuses a mapping value written inline (flow style, an anchor or alias, anything else on
/// the key's line) where the edit must go inside it.
fn check_block(entry: &Entry, lines: &[Line<'_>], path: &str) -> Result<(), ManifestError> {
    let inline = entry.inline_value(lines);
    let (line, path) = (entry.line + 1, path.to_owned());
    match inline.chars().next() {
        None => Ok(()),
        Some('{') => Err(ManifestError::FlowStyle { line, path }),
        Some('&' | '*') => Err(ManifestError::AnchorOrAlias { line, path }),
        Some(_) => Err(ManifestError::NotAMapping { line, path }),
    }
}

/// A `RecommenderRelease` document's `metadata.name` and `metadata.namespace`, or `None`
/// when the document is something else. Errors are a document that cannot be read.
fn release_of(
    lines: &[Line<'_>],
    (from, to): (usize, usize),
) -> Result<Option<(String, Option<String>)>, ManifestError> {
    let Some(first) = lines[from..to].iter().find(|l| l.is_content()) else {
        return Ok(None);
    };
    if first.rest().starts_with('%') {
        return Ok(None); // directives before a `---`
    }
    let root = entries(lines, (from, to), first.indent, "the document")?;
    let text = |entry: Option<&Entry>| {
        entry.and_then(|e| scalar(&lines[e.line].body[e.after_colon..]).map(|(v, _, _)| v))
    };
    let kind = text(find(&root, "kind", "kind")?);
    let api = text(find(&root, "apiVersion", "apiVersion")?);
    if kind.as_deref() != Some("RecommenderRelease")
        || api.is_some_and(|a| !a.starts_with("movrek.dev/"))
    {
        return Ok(None);
    }
    let Some(metadata) = find(&root, "metadata", "metadata")? else {
        return Ok(None);
    };
    check_block(metadata, lines, "metadata")?;
    let (mfrom, mto, mindent) = block(lines, metadata);
    let Some(mindent) = mindent else {
        return Ok(None);
    };
    let fields = entries(lines, (mfrom, mto), mindent, "metadata")?;
    let name = text(find(&fields, "name", "metadata.name")?);
    let namespace = text(find(&fields, "namespace", "metadata.namespace")?);
    Ok(name.map(|name| (name, namespace)))
}

/// The one document that is release `name` (in `namespace`, where the document says).
fn find_release(
    lines: &[Line<'_>],
    name: &str,
    namespace: &str,
) -> Result<(usize, usize), ManifestError> {
    let wanted = format!("{namespace}/{name}");
    let (mut matches, mut found, mut unreadable) = (Vec::new(), Vec::new(), None);
    for document in documents(lines) {
        match release_of(lines, document) {
            Ok(Some((n, ns))) => {
                if n == name && ns.as_deref().is_none_or(|ns| ns == namespace) {
                    matches.push(document);
                }
                found.push(match ns {
                    Some(ns) => format!("{ns}/{n}"),
                    None => format!("{n} (no namespace)"),
                });
            }
            Ok(None) => {}
            Err(e) => {
                unreadable.get_or_insert_with(|| e.to_string());
            }
        }
    }
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ManifestError::NoRelease {
            wanted,
            found,
            unreadable,
        }),
        many => Err(ManifestError::Ambiguous {
            wanted,
            count: many.len(),
            lines: many
                .iter()
                .map(|(from, _)| (from + 1).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `spec.model` of the release document `(from, to)`: its entry and its fields.
fn model_block(
    lines: &[Line<'_>],
    (from, to): (usize, usize),
) -> Result<(Entry, Vec<Entry>, usize), ManifestError> {
    for (i, line) in lines.iter().enumerate().take(to).skip(from) {
        if line.has_tab_indent() {
            return Err(ManifestError::Tab { line: i + 1 });
        }
        if line.body.contains("{{") {
            return Err(ManifestError::Templated { line: i + 1 });
        }
    }
    let indent = lines[from..to]
        .iter()
        .find(|l| l.is_content())
        .map_or(0, |l| l.indent);
    let root = entries(lines, (from, to), indent, "the document")?;
    let spec = find(&root, "spec", "spec")?.ok_or(ManifestError::Missing { path: "spec" })?;
    check_block(spec, lines, "spec")?;
    let (sfrom, sto, sindent) = block(lines, spec);
    let sindent = sindent.ok_or(ManifestError::Missing { path: "spec.model" })?;
    let spec_fields = entries(lines, (sfrom, sto), sindent, "spec")?;
    let model = find(&spec_fields, "model", "spec.model")?
        .ok_or(ManifestError::Missing { path: "spec.model" })?;
    check_block(model, lines, "spec.model")?;
    let (mfrom, mto, mindent) = block(lines, model);
    // An empty `model:` gets its fields one indentation step (the file's) deeper.
    let mindent = mindent.unwrap_or(sindent + (sindent - indent));
    let fields = entries(lines, (mfrom, mto), mindent, "spec.model")?;
    if let Some(merge) = fields.iter().find(|e| e.key == "<<") {
        return Err(ManifestError::AnchorOrAlias {
            line: merge.line + 1,
            path: "spec.model".to_owned(),
        });
    }
    Ok((model.clone(), fields, mindent))
}

/// One change: bytes `start..end` of the text become `with`.
#[derive(Debug)]
struct Splice {
    start: usize,
    end: usize,
    with: String,
}

/// The changes that make `spec.model`'s `fields` hold `want`.
fn splices(
    text: &str,
    lines: &[Line<'_>],
    (model, fields, indent): (&Entry, &[Entry], usize),
    want: &serde_json::Map<String, Value>,
) -> Result<Vec<Splice>, ManifestError> {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for key in FIELDS {
        let path = format!("spec.model.{key}");
        let present = find(fields, key, &path)?;
        if let Some(entry) = present
            && entry.inline_value(lines).starts_with(['&', '*'])
        {
            return Err(ManifestError::AnchorOrAlias {
                line: entry.line + 1,
                path,
            });
        }
        match (present, want.get(key)) {
            (Some(entry), Some(value)) if holds(entry, lines, value) => {}
            (Some(entry), wanted) => {
                let (first, last) = (&lines[entry.line], &lines[entry.end - 1]);
                let with = wanted.map_or_else(String::new, |value| {
                    let after = &first.body[entry.after_colon..];
                    let comment = scalar(after)
                        .filter(|_| entry.end == entry.line + 1)
                        .map_or("", |(_, _, suffix)| suffix);
                    let key_part = &first.body[..entry.after_colon];
                    format!("{key_part} {value}{comment}{}", last.terminator(text))
                });
                changes.push(Splice {
                    start: first.start,
                    end: last.end,
                    with,
                });
            }
            (None, Some(value)) => missing.push(format!("{:indent$}{key}: {value}", "")),
            (None, None) => {}
        }
    }
    if !missing.is_empty() {
        // After the last content line of spec.model (its key's line when it is empty).
        let last = &lines[model.end - 1];
        let with = match last.terminator(text) {
            "" => format!("{eol}{}", missing.join(eol)),
            _ => missing.iter().flat_map(|l| [l.as_str(), eol]).collect(),
        };
        changes.push(Splice {
            start: last.end,
            end: last.end,
            with,
        });
    }
    Ok(changes)
}

/// Sets `spec.model`'s `version`, `uri`, `sha256`, `offlineRmse` and `provenance` of the
/// `RecommenderRelease` named `name` in `text` (a YAML file of one or more documents) to
/// the values [`model_patch`] applies, leaving every other line as it was. A document that
/// gives no namespace matches any `namespace` (it is applied into one).
///
/// # Errors
/// See the module's caveats: what cannot be edited safely is refused, never guessed at.
pub fn set_model(
    text: &str,
    name: &str,
    namespace: &str,
    fields: &ModelFields,
) -> Result<String, ManifestError> {
    let patch = model_patch(name, namespace, fields);
    let want: serde_json::Map<String, Value> = patch["spec"]["model"]
        .as_object()
        .expect("model_patch writes spec.model as an object")
        .clone();
    let lines = split_lines(text);
    let document = find_release(&lines, name, namespace)?;
    let (model, entries, indent) = model_block(&lines, document)?;
    let mut changes = splices(text, &lines, (&model, &entries, indent), &want)?;
    changes.sort_by_key(|c| (c.start, c.end));
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for change in changes {
        out.push_str(&text[at..change.start]);
        out.push_str(&change.with);
        at = change.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests;
