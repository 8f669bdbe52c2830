//! The model store's layout, content-addressed and immutable:
//! `<prefix>/<release>/<version>/model.movrek` beside `model.json` (the [`ModelRecord`]:
//! metadata, digest, offline report). A version once published keeps its bytes: publishing
//! the same bytes again is a no-op, other bytes are refused ([`decide`]), and the write
//! itself is create-only, so two publishers racing cannot both win.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Created, FetchLimits, ObjectUri, StoreError};
use crate::model::ModelMetadata;

/// File name of the artifact inside a version directory.
pub const ARTIFACT_NAME: &str = "model.movrek";
/// File name of the record inside a version directory.
pub const RECORD_NAME: &str = "model.json";

/// Where published models go: an object-store prefix or a local directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// `s3://`, `gs://` or `az://` prefix.
    Object(ObjectUri),
    /// `file:///dir` or a plain path.
    Local(PathBuf),
}

impl Prefix {
    /// Parses a destination. `http(s)://` is refused: plain HTTP servers have no create-only
    /// write, so immutability could not be kept.
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let uri = uri.trim();
        if let Some(parsed) = ObjectUri::parse(uri) {
            return parsed
                .map(Prefix::Object)
                .map_err(|reason| format!("store URI {uri:?}: {reason}"));
        }
        let lower = uri.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Err(format!(
                "cannot publish to {uri:?}: HTTP servers have no create-only write, so a \
                 version could be overwritten; publish to s3://, gs://, az:// or a directory \
                 and serve that over HTTP if needed"
            ));
        }
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        if path.is_empty() {
            return Err("the store prefix is empty".to_owned());
        }
        if uri.contains("://") && !lower.starts_with("file://") {
            return Err(format!(
                "store URI {uri:?}: unsupported scheme (use s3://, gs://, az://, file:// or a path)"
            ));
        }
        Ok(Prefix::Local(PathBuf::from(path)))
    }

    /// The URI of `<release>/<version>/<name>` under this prefix.
    pub fn entry(&self, release: &str, version: &str, name: &str) -> Entry {
        let relative = format!("{release}/{version}/{name}");
        match self {
            Prefix::Object(uri) => Entry::Object(uri.join(&relative)),
            Prefix::Local(dir) => Entry::Local(dir.join(relative)),
        }
    }
}

/// One object of the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// In an object store.
    Object(ObjectUri),
    /// A local file.
    Local(PathBuf),
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Object(uri) => uri.fmt(f),
            Entry::Local(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// Checks a release or version name: 1–128 characters of `[A-Za-z0-9._-]`, not starting
/// with `.` (so never `.` or `..`), so that it is one path segment on every store.
///
/// # Errors
/// A sentence naming the field and the rule.
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&value.len())
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} {value:?} must be 1-128 characters of letters, digits, '.', '_' or '-', \
             not starting with '.'"
        ))
    }
}

/// What to do with one object of a version, given what is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing there: write it (create-only).
    Write,
    /// The same contents are there: leave them.
    Keep,
    /// Other contents are there: refuse.
    Refuse,
}

/// Decides from the digest of what is stored (if anything) and the digest of what is to be
/// published.
pub fn decide(existing: Option<&str>, new: &str) -> Decision {
    match existing {
        None => Decision::Write,
        Some(existing) if existing == new => Decision::Keep,
        Some(_) => Decision::Refuse,
    }
}

/// `model.json`: what a published version is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Release name.
    pub release: String,
    /// Model version.
    pub version: String,
    /// URI of the artifact (`…/model.movrek`).
    pub uri: String,
    /// SHA-256 (hex) of the artifact: `spec.model.sha256`.
    pub sha256: String,
    /// Artifact size in bytes.
    pub size_bytes: u64,
    /// The artifact's own metadata (training data digest, parameters, hold-out RMSE …).
    pub model: ModelMetadata,
    /// Offline evaluation report (`movrek eval --json`), when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<serde_json::Value>,
    /// Data-quality report of the training data, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<serde_json::Value>,
}

/// What a publish did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The artifact's URI.
    pub artifact: String,
    /// The record's URI.
    pub record: String,
    /// Whether the artifact was written now (`false`: the same bytes were already there).
    pub wrote_artifact: bool,
    /// Whether the record was written now.
    pub wrote_record: bool,
}

/// Publishes `artifact` and its `record` under `prefix`: the artifact first, then the record,
/// each create-only. Re-publishing identical bytes is a no-op; any other bytes at either name
/// are refused with [`StoreError::Conflict`], and nothing is overwritten.
///
/// # Errors
/// [`StoreError`] from the store, or `Conflict`.
pub async fn publish(
    prefix: &Prefix,
    record: &ModelRecord,
    artifact: Vec<u8>,
    limits: FetchLimits,
) -> Result<Published, StoreError> {
    let artifact_entry = prefix.entry(&record.release, &record.version, ARTIFACT_NAME);
    let record_entry = prefix.entry(&record.release, &record.version, RECORD_NAME);
    let digest = crate::util::sha256_hex(&artifact);
    let record_bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
    let wrote_artifact = put_immutable(
        &artifact_entry,
        artifact,
        &digest,
        |bytes| Some(crate::util::sha256_hex(bytes)),
        limits,
    )
    .await?;
    // The record is identified by the artifact digest it describes: a record that differs
    // only in reports attached later is kept, one naming another artifact is refused.
    let wrote_record = put_immutable(
        &record_entry,
        record_bytes,
        &digest,
        |bytes| {
            serde_json::from_slice::<ModelRecord>(bytes)
                .ok()
                .map(|r| r.sha256)
        },
        limits,
    )
    .await?;
    Ok(Published {
        artifact: artifact_entry.to_string(),
        record: record_entry.to_string(),
        wrote_artifact,
        wrote_record,
    })
}

/// Writes `bytes` at `entry` unless it exists; `identity` maps stored bytes to the digest
/// compared with `digest` (`None`: unreadable, which counts as different). Returns whether it
/// wrote. (Public for `movrek retrain`, which publishes its data set and reports beside the
/// model the same way.)
///
/// # Errors
/// [`StoreError`] from the store, or `Conflict`.
pub async fn put_immutable(
    entry: &Entry,
    bytes: Vec<u8>,
    digest: &str,
    identity: impl Fn(&[u8]) -> Option<String>,
    limits: FetchLimits,
) -> Result<bool, StoreError> {
    // Look first, then write create-only; a writer that slipped in between is caught by the
    // create-only write, and what it wrote is judged like any existing object.
    let existing = read_optional(entry, limits).await?;
    let found = existing.as_deref().map(|b| identity(b).unwrap_or_default());
    match decide(found.as_deref(), digest) {
        Decision::Keep => return Ok(false),
        Decision::Refuse => return Err(conflict(entry, found, digest)),
        Decision::Write => {}
    }
    if write_create(entry, bytes, limits.timeout).await? == Created::Written {
        return Ok(true);
    }
    let raced = read_optional(entry, limits).await?;
    let found = raced.as_deref().map(|b| identity(b).unwrap_or_default());
    match decide(found.as_deref(), digest) {
        Decision::Keep => Ok(false),
        Decision::Refuse | Decision::Write => Err(conflict(entry, found, digest)),
    }
}

fn conflict(entry: &Entry, found: Option<String>, digest: &str) -> StoreError {
    StoreError::Conflict {
        uri: entry.to_string(),
        existing: found
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "unreadable".to_owned()),
        new: digest.to_owned(),
    }
}

/// Reads the object at `entry`; `None` when there is none.
///
/// # Errors
/// [`StoreError`] from the store or the file system.
pub async fn read_optional(
    entry: &Entry,
    limits: FetchLimits,
) -> Result<Option<Vec<u8>>, StoreError> {
    match entry {
        Entry::Object(uri) => match super::read(uri, limits).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        },
        Entry::Local(path) => match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error(path, "cannot read", source)),
        },
    }
}

async fn write_create(
    entry: &Entry,
    bytes: Vec<u8>,
    timeout: Duration,
) -> Result<Created, StoreError> {
    match entry {
        Entry::Object(uri) => {
            let store = super::open(uri, timeout)?;
            super::create(store.as_ref(), uri, bytes, timeout).await
        }
        Entry::Local(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || create_local(&path, &bytes))
                .await
                .map_err(|e| StoreError::Io {
                    path: String::new(),
                    what: "the writing task failed",
                    source: std::io::Error::other(e.to_string()),
                })?
        }
    }
}

/// Create-only local write: the bytes go to a temporary file in the same directory, which is
/// then hard-linked to the final name (fails if the name exists, atomically) and removed. A
/// reader never sees a partial file under the final name.
fn create_local(path: &Path, bytes: &[u8]) -> Result<Created, StoreError> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create directory", e))?;
    let tmp = dir.join(format!(
        ".{}.{}.partial",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object"),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(&tmp, "cannot write", e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Created::Written),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::Existed),
        Err(e) => Err(io_error(path, "cannot create", e)),
    }
}

fn io_error(path: &Path, what: &'static str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        what,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_to_stores_or_directories() {
        let object = Prefix::parse("s3://models/prod").unwrap();
        assert_eq!(
            object.entry("movies", "v7", ARTIFACT_NAME).to_string(),
            "s3://models/prod/movies/v7/model.movrek"
        );
        assert_eq!(
            Prefix::parse("file:///srv/models").unwrap(),
            Prefix::Local("/srv/models".into())
        );
        assert_eq!(
            Prefix::parse("models")
                .unwrap()
                .entry("r", "v1", RECORD_NAME),
            Entry::Local("models/r/v1/model.json".into())
        );
        for bad in ["https://models.internal/x", "ftp://x/y", "", "s3://"] {
            assert!(Prefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_single_safe_segments() {
        for good in ["movies", "v7", "v1.2.3", "2026-12-04_a"] {
            assert!(check_name("version", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "v 7",
            "é",
            &"x".repeat(129),
        ] {
            assert!(check_name("version", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_version_keeps_its_first_bytes() {
        assert_eq!(decide(None, "aa"), Decision::Write);
        assert_eq!(decide(Some("aa"), "aa"), Decision::Keep);
        assert_eq!(decide(Some("bb"), "aa"), Decision::Refuse);
        assert_eq!(decide(Some(""), "aa"), Decision::Refuse);
    }

    fn record(sha256: &str) -> ModelRecord {
        use crate::data::synth::{SynthParams, generate};
        let data = generate(&SynthParams {
            users: 30,
            movies: 40,
            ratings: 500,
            ..SynthParams::default()
        });
        let model = crate::train::train(&data, &crate::train::TrainParams::default(), "v1", "d")
            .expect("train");
        ModelRecord {
            release: "movies".into(),
            version: "v1".into(),
            uri: "file:///x/movies/v1/model.movrek".into(),
            sha256: sha256.into(),
            size_bytes: 5,
            model: model.metadata().clone(),
            offline: None,
            quality: None,
        }
    }

    #[test]
    fn publishing_to_a_directory_is_idempotent_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = Prefix::Local(dir.path().to_path_buf());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let limits = FetchLimits::default();
        let first = b"first".to_vec();
        let digest = crate::util::sha256_hex(&first);
        let rec = record(&digest);
        let published = rt
            .block_on(publish(&prefix, &rec, first.clone(), limits))
            .unwrap();
        assert!(published.wrote_artifact && published.wrote_record);
        let artifact = dir.path().join("movies/v1/model.movrek");
        assert_eq!(std::fs::read(&artifact).unwrap(), first);
        let stored: ModelRecord = serde_json::from_slice(
            &std::fs::read(dir.path().join("movies/v1/model.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(stored, rec);

        let again = rt
            .block_on(publish(&prefix, &rec, first.clone(), limits))
            .unwrap();
        assert!(!again.wrote_artifact && !again.wrote_record);

        let other = b"other".to_vec();
        let other_digest = crate::util::sha256_hex(&other);
        match rt.block_on(publish(&prefix, &record(&other_digest), other, limits)) {
            Err(StoreError::Conflict { uri, existing, new }) => {
                assert!(uri.ends_with("movies/v1/model.movrek"), "{uri}");
                assert_eq!((existing, new), (digest, other_digest));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(std::fs::read(&artifact).unwrap(), first);
    }

    #[test]
    fn local_writes_are_create_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/v1/model.movrek");
        assert_eq!(create_local(&path, b"one").unwrap(), Created::Written);
        assert_eq!(create_local(&path, b"two").unwrap(), Created::Existed);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("model.movrek")]);
    }
}
