//! Where the served model comes from: parse `MOVREK_MODEL_URI`, fetch the artifact bytes
//! (local file; `s3://`, `gs://`, `az://` through [`crate::store`]; or http(s)), each but the
//! local file with a size bound and a timeout, and check the digest. The bytes are complete
//! and verified before anything is decoded, so a failed load never leaves a partial model.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::store::FetchLimits;
use crate::store::ObjectUri;
pub use crate::util::sha256_hex;

/// A parsed model location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelUri {
    /// `file:///abs/path`, or a plain path.
    File(PathBuf),
    /// `http://...` or `https://...`.
    Http(String),
    /// `s3://bucket/key`, `gs://bucket/key` or `az://container/key`.
    Object(ObjectUri),
}

impl ModelUri {
    /// Parses a URI or plain path. Other schemes (`ftp://`...) are refused.
    ///
    /// # Errors
    /// [`LoadError::BadUri`] for an empty URI, an unknown scheme or a malformed store URI.
    pub fn parse(uri: &str) -> Result<Self, LoadError> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(LoadError::BadUri {
                uri: uri.to_owned(),
                reason: "empty",
            });
        }
        if let Some(path) = uri.strip_prefix("file://") {
            if path.is_empty() {
                return Err(LoadError::BadUri {
                    uri: uri.to_owned(),
                    reason: "file:// needs a path",
                });
            }
            return Ok(ModelUri::File(PathBuf::from(path)));
        }
        if let Some(parsed) = ObjectUri::parse(uri) {
            return parsed
                .map(ModelUri::Object)
                .map_err(|reason| LoadError::BadUri {
                    uri: uri.to_owned(),
                    reason,
                });
        }
        let lower = uri.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(ModelUri::Http(uri.to_owned()));
        }
        let is_scheme = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        };
        if uri
            .split_once("://")
            .is_some_and(|(scheme, _)| is_scheme(scheme))
        {
            return Err(LoadError::BadUri {
                uri: uri.to_owned(),
                reason: "unsupported scheme (use s3://, gs://, az://, file://, http://, https:// or a path)",
            });
        }
        Ok(ModelUri::File(PathBuf::from(uri)))
    }
}

impl std::fmt::Display for ModelUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelUri::File(path) => write!(f, "{}", path.display()),
            ModelUri::Http(url) => f.write_str(url),
            ModelUri::Object(uri) => uri.fmt(f),
        }
    }
}

/// Why the model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The URI is empty or has a scheme we do not fetch.
    #[error("model URI {uri:?}: {reason}")]
    BadUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading a local artifact failed.
    #[error("cannot read model file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The object store refused or failed the read (missing object, denied credentials,
    /// timeout, size limit).
    #[error("cannot fetch the model artifact")]
    Store(#[source] crate::store::StoreError),
    /// The HTTP request failed (connection, timeout, TLS, body).
    #[error("cannot download model from {uri}")]
    Download {
        /// The URI.
        uri: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-2xx status.
    #[error("downloading model from {uri}: HTTP status {status}")]
    HttpStatus {
        /// The URI.
        uri: String,
        /// The status received.
        status: u16,
    },
    /// The artifact is larger than [`FetchLimits::max_bytes`].
    #[error("model at {uri} is larger than the {limit}-byte limit")]
    TooLarge {
        /// The URI.
        uri: String,
        /// The limit.
        limit: u64,
    },
    /// The artifact's SHA-256 is not the expected one (`MOVREK_MODEL_SHA256`).
    #[error(
        "model artifact sha256 mismatch: expected {expected}, got {actual}; refusing to serve it"
    )]
    DigestMismatch {
        /// The expected digest.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// `MOVREK_MODEL_SHA256` is not 64 hex digits.
    #[error("expected sha256 {0:?} is not 64 hexadecimal digits")]
    BadExpectedDigest(String),
    /// The artifact is not a valid model file (bad magic, truncated, corrupted, wrong digest).
    #[error("invalid model artifact")]
    Artifact(#[source] crate::artifact::ArtifactError),
    /// The artifact's version differs from the one announced in `MOVREK_MODEL_VERSION`.
    #[error(
        "model version mismatch: MOVREK_MODEL_VERSION is {announced:?} but the artifact holds {actual:?}; refusing to serve it"
    )]
    VersionMismatch {
        /// The announced version.
        announced: String,
        /// The artifact's version.
        actual: String,
    },
    /// Building the default synthetic model failed.
    #[error("cannot train the default synthetic model")]
    Train(#[source] crate::train::TrainError),
    /// The loading task itself died.
    #[error("model loading task failed: {0}")]
    Task(String),
}

/// Normalises an expected digest to lowercase hex, refusing anything else.
pub fn parse_expected_sha256(value: &str) -> Result<String, LoadError> {
    let value = value.trim();
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(LoadError::BadExpectedDigest(value.to_owned()))
    }
}

/// Fetches the artifact bytes. The digest is not checked here; see [`verify_digest`].
pub async fn fetch(uri: &ModelUri, limits: FetchLimits) -> Result<Vec<u8>, LoadError> {
    match uri {
        ModelUri::File(path) => tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            }),
        ModelUri::Http(url) => download(url, limits).await,
        ModelUri::Object(uri) => crate::store::read(uri, limits)
            .await
            .map_err(LoadError::Store),
    }
}

async fn download(url: &str, limits: FetchLimits) -> Result<Vec<u8>, LoadError> {
    let failed = |source| LoadError::Download {
        uri: url.to_owned(),
        source,
    };
    let too_large = || LoadError::TooLarge {
        uri: url.to_owned(),
        limit: limits.max_bytes,
    };
    let client = reqwest::Client::builder()
        .timeout(limits.timeout)
        .connect_timeout(limits.timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(failed)?;
    let mut response = client.get(url).send().await.map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        return Err(LoadError::HttpStatus {
            uri: url.to_owned(),
            status: status.as_u16(),
        });
    }
    if response
        .content_length()
        .is_some_and(|n| n > limits.max_bytes)
    {
        return Err(too_large());
    }
    let capacity = response
        .content_length()
        .map_or(0, |n| usize::try_from(n).unwrap_or(0));
    let mut bytes = Vec::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if (bytes.len() + chunk.len()) as u64 > limits.max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Loads the model from `source`: fetch, verify the digest, decode, check the announced
/// version. CPU-heavy steps run on the blocking pool so the server keeps answering probes.
pub async fn load_model(
    source: super::ModelSource,
    expected_sha256: Option<String>,
    announced_version: Option<String>,
    limits: FetchLimits,
) -> Result<super::LoadedModel, LoadError> {
    let loaded = match source {
        super::ModelSource::Uri(uri) => {
            tracing::info!(uri = %uri, "fetching model artifact");
            let bytes = fetch(&uri, limits).await?;
            blocking(move || decode(bytes, expected_sha256.as_deref())).await?
        }
        super::ModelSource::DefaultSynthetic => {
            let version = announced_version
                .clone()
                .unwrap_or_else(|| DEFAULT_SYNTHETIC_VERSION.to_owned());
            tracing::info!(
                %version,
                "no model given: generating the default synthetic data set and training on it"
            );
            blocking(move || train_default(&version)).await?
        }
    };
    check_version(announced_version.as_deref(), loaded.recommender.version())?;
    Ok(loaded)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoadError::Task(e.to_string()))?
}

/// Decodes artifact bytes into a served model. The artifact module checks the expected
/// whole-file digest itself; without one, the digest is computed here for `/version`.
fn decode(bytes: Vec<u8>, expected: Option<&str>) -> Result<super::LoadedModel, LoadError> {
    let artifact_sha256 = match expected {
        Some(expected) => expected.to_owned(),
        None => sha256_hex(&bytes),
    };
    let model = crate::artifact::from_bytes(bytes, expected).map_err(|error| match error {
        crate::artifact::ArtifactError::DigestMismatch { expected, actual } => {
            LoadError::DigestMismatch { expected, actual }
        }
        other => LoadError::Artifact(other),
    })?;
    Ok(super::LoadedModel {
        recommender: std::sync::Arc::new(model),
        artifact_sha256,
    })
}

/// Generates the default synthetic data set (`SynthParams::default()`: 2,000 users ×
/// 1,000 movies × 100,000 ratings, seed 42), trains on it, and serves the result. The data
/// digest is the SHA-256 of the generator parameters as JSON (the data is a pure function of
/// them); the artifact digest is that of the artifact this model would be written as.
fn train_default(version: &str) -> Result<super::LoadedModel, LoadError> {
    use crate::data::synth::{SynthParams, generate};
    let params = SynthParams::default();
    let started = std::time::Instant::now();
    let dataset = generate(&params);
    let described = serde_json::to_vec(&params).unwrap_or_default();
    let data_sha256 = sha256_hex(&described);
    let model = crate::train::train(
        &dataset,
        &crate::train::TrainParams::default(),
        version,
        &data_sha256,
    )
    .map_err(LoadError::Train)?;
    let artifact_sha256 = sha256_hex(&crate::artifact::to_bytes(&model));
    tracing::info!(
        users = params.users,
        movies = params.movies,
        ratings = params.ratings,
        seed = params.seed,
        seconds = started.elapsed().as_secs_f64(),
        "trained the default synthetic model"
    );
    Ok(super::LoadedModel {
        recommender: std::sync::Arc::new(model),
        artifact_sha256,
    })
}

/// Version given to the default synthetic model when `MOVREK_MODEL_VERSION` is not set.
pub const DEFAULT_SYNTHETIC_VERSION: &str = "synthetic-default";

/// Refuses `bytes` unless their SHA-256 equals `expected` (already normalised). Returns the
/// actual digest either way it succeeds.
pub fn verify_digest(bytes: &[u8], expected: Option<&str>) -> Result<String, LoadError> {
    let actual = sha256_hex(bytes);
    match expected {
        Some(expected) if expected != actual => Err(LoadError::DigestMismatch {
            expected: expected.to_owned(),
            actual,
        }),
        _ => Ok(actual),
    }
}

/// Refuses a model whose version differs from the announced one.
pub fn check_version(announced: Option<&str>, actual: &str) -> Result<(), LoadError> {
    match announced {
        Some(announced) if announced != actual => Err(LoadError::VersionMismatch {
            announced: announced.to_owned(),
            actual: actual.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_to_files_http_or_stores() {
        assert_eq!(
            ModelUri::parse("file:///models/v7.movrek").unwrap(),
            ModelUri::File("/models/v7.movrek".into())
        );
        assert_eq!(
            ModelUri::parse("models/v7.movrek").unwrap(),
            ModelUri::File("models/v7.movrek".into())
        );
        assert_eq!(
            ModelUri::parse("https://models.internal/v7").unwrap(),
            ModelUri::Http("https://models.internal/v7".into())
        );
        assert_eq!(
            ModelUri::parse("HTTP://x/y").unwrap(),
            ModelUri::Http("HTTP://x/y".into())
        );
        assert_eq!(
            ModelUri::parse("s3://models/movies/v7/model.movrek")
                .unwrap()
                .to_string(),
            "s3://models/movies/v7/model.movrek"
        );
        assert!(matches!(
            ModelUri::parse("gs://b/k").unwrap(),
            ModelUri::Object(_)
        ));
        for bad in ["", "  ", "file://", "s3://", "s3://b/../k", "ftp://x/y"] {
            assert!(
                matches!(ModelUri::parse(bad), Err(LoadError::BadUri { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expected_digest_is_validated_and_lowercased() {
        let upper = "AB".repeat(32);
        assert_eq!(parse_expected_sha256(&upper).unwrap(), "ab".repeat(32));
        assert!(parse_expected_sha256("abc").is_err());
        assert!(parse_expected_sha256(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn digest_mismatch_is_refused_with_both_digests() {
        let bytes = b"model bytes";
        let actual = sha256_hex(bytes);
        assert_eq!(verify_digest(bytes, None).unwrap(), actual);
        assert_eq!(verify_digest(bytes, Some(&actual)).unwrap(), actual);
        let wrong = "0".repeat(64);
        match verify_digest(bytes, Some(&wrong)) {
            Err(LoadError::DigestMismatch {
                expected,
                actual: got,
            }) => {
                assert_eq!(expected, wrong);
                assert_eq!(got, actual);
            }
            other => panic!("expected mismatch, got {other:?}"),
        }
    }

    #[test]
    fn announced_version_must_match_when_given() {
        assert!(check_version(None, "v1").is_ok());
        assert!(check_version(Some("v1"), "v1").is_ok());
        assert!(matches!(
            check_version(Some("v2"), "v1"),
            Err(LoadError::VersionMismatch { .. })
        ));
    }
}
