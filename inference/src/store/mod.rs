//! Model artifacts in object storage, through the `object_store` crate: what an
//! `s3://`, `gs://` or `az://` URI names ([`ObjectUri`]), how a store is reached (credentials
//! and endpoints from the provider's usual environment variables, bounded by a deadline),
//! bounded reads, create-only writes, and what a failure means ([`StoreError`]). The
//! immutable release layout and publishing live in [`layout`].
//!
//! Decisions are pure functions ([`ObjectUri::parse`], [`allows_plain_http`],
//! [`classify`]); the async functions below are the thin IO layer around them.

pub mod layout;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

/// Bounds on fetching an artifact (object stores and http(s)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchLimits {
    /// Largest accepted artifact, in bytes.
    pub max_bytes: u64,
    /// Whole-download deadline (connect + headers + body, retries included).
    pub timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4 << 30,
            timeout: Duration::from_secs(300),
        }
    }
}

/// The object-storage service a URI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Amazon S3 and S3-compatible stores (`s3://`; endpoint from `AWS_ENDPOINT_URL`).
    S3,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// Azure Blob Storage (`az://container/…`; account from `AZURE_STORAGE_ACCOUNT_NAME`).
    Azure,
}

impl Provider {
    /// The URI scheme.
    pub const fn scheme(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Gcs => "gs",
            Provider::Azure => "az",
        }
    }

    /// The environment variables that carry this provider's credentials (for messages).
    pub const fn credential_vars(self) -> &'static str {
        match self {
            Provider::S3 => "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN",
            Provider::Gcs => "GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS",
            Provider::Azure => "AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY",
        }
    }
}

/// An object (or a prefix) in a bucket: `s3://bucket/key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectUri {
    /// The service.
    pub provider: Provider,
    /// Bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    /// Key inside the bucket, without leading or trailing `/`; empty for the bucket root.
    pub key: String,
}

impl ObjectUri {
    /// Parses `s3://`, `gs://` or `az://` URIs. `None` for other schemes; an error for a
    /// store URI that is malformed (no bucket, empty or `.`/`..` key segments).
    pub fn parse(uri: &str) -> Option<Result<Self, &'static str>> {
        let (scheme, rest) = uri.trim().split_once("://")?;
        let provider = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Provider::S3,
            "gs" => Provider::Gcs,
            "az" => Provider::Azure,
            _ => return None,
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err("needs a bucket: scheme://bucket/key"));
        }
        if bucket.contains(['?', '#', '@', ' ']) {
            return Some(Err("the bucket name has a character buckets cannot have"));
        }
        let key = key.trim_end_matches('/');
        if !key.is_empty()
            && key
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".." || s.contains(['?', '#']))
        {
            return Some(Err(
                "the key has an empty, \".\" or \"..\" segment, or a ? or #",
            ));
        }
        Some(Ok(Self {
            provider,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }))
    }

    /// This URI with `/`-separated `child` appended.
    #[must_use]
    pub fn join(&self, child: &str) -> Self {
        let key = if self.key.is_empty() {
            child.to_owned()
        } else {
            format!("{}/{child}", self.key)
        };
        Self {
            key,
            ..self.clone()
        }
    }

    fn path(&self) -> ObjectPath {
        ObjectPath::from(self.key.as_str())
    }
}

impl std::fmt::Display for ObjectUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}/{}",
            self.provider.scheme(),
            self.bucket,
            self.key
        )
    }
}

/// What went wrong talking to a store, in the terms a user acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The object (or bucket) does not exist.
    NotFound,
    /// The store refused the credentials or the action; the text says which.
    Denied(&'static str),
    /// An object exists where a create-only write was asked.
    AlreadyExists,
    /// Anything else (network, server error, bad configuration).
    Other,
}

/// S3 error codes of refused credentials, and what each means, most specific first.
const DENIAL_CODES: [(&str, &str); 7] = [
    ("ExpiredToken", "the credentials have expired"),
    (
        "InvalidToken",
        "the session token is invalid or has expired",
    ),
    ("TokenRefreshRequired", "the session token has expired"),
    ("InvalidAccessKeyId", "the access key id is not known"),
    (
        "SignatureDoesNotMatch",
        "the signature does not match: wrong secret key",
    ),
    ("RequestTimeTooSkewed", "the clock differs from the store's"),
    ("AccessDenied", "the credentials lack permission"),
];

/// Addresses of the metadata services the clients ask for credentials when the environment
/// has none (EC2, ECS, GCE): an error reaching one means "no credentials were given".
const METADATA_SERVICES: [&str; 3] = [
    "169.254.169.254",
    "169.254.170.2",
    "metadata.google.internal",
];

/// Classifies a store error. `PermissionDenied`/`Unauthenticated` (HTTP 403/401) and S3's
/// credential error codes (some of which, like `ExpiredToken`, arrive as HTTP 400) are
/// denials, and so is a failure to reach a cloud metadata service (where the clients look
/// for credentials the environment lacks); `text` is the error's whole cause chain.
pub fn classify(error: &object_store::Error, text: &str) -> Failure {
    let code = DENIAL_CODES
        .iter()
        .find(|(code, _)| text.contains(code))
        .map(|(_, meaning)| *meaning);
    match error {
        object_store::Error::NotFound { .. } => Failure::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            Failure::AlreadyExists
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            Failure::Denied(code.unwrap_or("credentials rejected or not permitted"))
        }
        _ => match code {
            Some(meaning) => Failure::Denied(meaning),
            None if METADATA_SERVICES.iter().any(|host| text.contains(host)) => Failure::Denied(
                "no credentials in the environment, and the instance metadata service gave none",
            ),
            None => Failure::Other,
        },
    }
}

/// Whether a store may be reached over plain HTTP: only when its endpoint says `http://`
/// (an S3-compatible server on the cluster network or loopback).
pub fn allows_plain_http(endpoint: Option<&str>) -> bool {
    endpoint.is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("http://"))
}

/// Why a store operation failed. Every variant names the URI.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{uri}: no such object")]
    NotFound {
        /// The URI.
        uri: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Credentials were refused (wrong, unknown or expired) or lack permission.
    #[error("{uri}: access denied ({reason}; credentials come from {vars})")]
    Denied {
        /// The URI.
        uri: String,
        /// What the store said, in words.
        reason: &'static str,
        /// Where the credentials were read from.
        vars: &'static str,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// No complete answer within the deadline (retries included).
    #[error("{uri}: no complete answer within {} s (MOVREK_MODEL_TIMEOUT_SECS)", after.as_secs_f64())]
    Timeout {
        /// The URI.
        uri: String,
        /// The deadline.
        after: Duration,
    },
    /// The object is larger than the limit.
    #[error("{uri}: the object is larger than the {limit}-byte limit")]
    TooLarge {
        /// The URI.
        uri: String,
        /// The limit.
        limit: u64,
    },
    /// A create-only write found an object with other contents.
    #[error(
        "{uri} already exists with other contents (sha256 {existing}, not {new}); published versions are immutable: publish under a new version"
    )]
    Conflict {
        /// The URI.
        uri: String,
        /// Digest of what is there.
        existing: String,
        /// Digest of what was to be written.
        new: String,
    },
    /// The store could not be configured (bad environment, unknown account).
    #[error("cannot set up the store for {uri}")]
    Config {
        /// The URI.
        uri: String,
        /// The builder's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Any other store failure (network, server error).
    #[error("{uri}: request failed")]
    Request {
        /// The URI.
        uri: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A local file could not be read or written (`file://` destinations).
    #[error("{path}: {what}")]
    Io {
        /// The path.
        path: String,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    fn from_store(uri: &ObjectUri, source: object_store::Error) -> Self {
        let text = crate::util::error_chain(&source);
        let uri_text = uri.to_string();
        match classify(&source, &text) {
            Failure::NotFound => StoreError::NotFound {
                uri: uri_text,
                source: Box::new(source),
            },
            Failure::Denied(reason) => StoreError::Denied {
                uri: uri_text,
                reason,
                vars: uri.provider.credential_vars(),
                source: Box::new(source),
            },
            Failure::AlreadyExists | Failure::Other => StoreError::Request {
                uri: uri_text,
                source: Box::new(source),
            },
        }
    }
}

/// Opens the store that holds `uri`, configured from the provider's environment variables
/// (`AWS_*`, `GOOGLE_*`, `AZURE_*`). Every request gets `timeout`; retries stop at it too.
///
/// # Errors
/// [`StoreError::Config`] when the environment does not describe a usable store.
pub fn open(uri: &ObjectUri, timeout: Duration) -> Result<Arc<dyn ObjectStore>, StoreError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::azure::MicrosoftAzureBuilder;
    use object_store::gcp::GoogleCloudStorageBuilder;
    use object_store::{ClientOptions, RetryConfig};
    // The callers' own deadline (tokio) is the one that fires; the client's, a second
    // later, only stops a request nobody waits for any more.
    let mut client = ClientOptions::new()
        .with_timeout(timeout + Duration::from_secs(1))
        .with_connect_timeout(timeout.min(Duration::from_secs(10)));
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: timeout,
        ..RetryConfig::default()
    };
    let config_error = |source| StoreError::Config {
        uri: uri.to_string(),
        source: Box::new(source),
    };
    let store: Arc<dyn ObjectStore> = match uri.provider {
        Provider::S3 => {
            let builder = AmazonS3Builder::from_env();
            let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
            if allows_plain_http(endpoint.as_deref()) {
                client = client.with_allow_http(true);
            }
            Arc::new(
                builder
                    .with_bucket_name(&uri.bucket)
                    .with_client_options(client)
                    .with_retry(retry)
                    .build()
                    .map_err(config_error)?,
            )
        }
        Provider::Gcs => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&uri.bucket)
                .with_client_options(client)
                .with_retry(retry)
                .build()
                .map_err(config_error)?,
        ),
        Provider::Azure => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(&uri.bucket)
                .with_client_options(client)
                .with_retry(retry)
                .build()
                .map_err(config_error)?,
        ),
    };
    Ok(store)
}

/// Reads the whole object at `uri`, refusing one larger than `limits.max_bytes` (from its
/// size before any byte is read, and again while reading) and giving up after
/// `limits.timeout`. Returns all the bytes or an error, never a part.
///
/// # Errors
/// [`StoreError::NotFound`], [`StoreError::Denied`], [`StoreError::Timeout`],
/// [`StoreError::TooLarge`], [`StoreError::Request`], [`StoreError::Config`].
pub async fn read(uri: &ObjectUri, limits: FetchLimits) -> Result<Vec<u8>, StoreError> {
    let store = open(uri, limits.timeout)?;
    read_from(store.as_ref(), uri, limits).await
}

/// [`read`] on an opened store.
///
/// # Errors
/// As [`read`].
pub async fn read_from(
    store: &dyn ObjectStore,
    uri: &ObjectUri,
    limits: FetchLimits,
) -> Result<Vec<u8>, StoreError> {
    let too_large = || StoreError::TooLarge {
        uri: uri.to_string(),
        limit: limits.max_bytes,
    };
    let work = async {
        let result = store
            .get_opts(&uri.path(), object_store::GetOptions::default())
            .await
            .map_err(|e| StoreError::from_store(uri, e))?;
        if result.meta.size > limits.max_bytes {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(result.meta.size).unwrap_or(0));
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StoreError::from_store(uri, e))?;
            if (bytes.len() + chunk.len()) as u64 > limits.max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    tokio::time::timeout(limits.timeout, work)
        .await
        .map_err(|_| StoreError::Timeout {
            uri: uri.to_string(),
            after: limits.timeout,
        })?
}

/// What a create-only write found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// The object was written.
    Written,
    /// An object was already there; nothing was written.
    Existed,
}

/// Writes `bytes` at `uri` only if no object is there (`If-None-Match: *` on S3, generation
/// preconditions on GCS, `If-None-Match` on Azure), within `timeout`.
///
/// # Errors
/// As [`read`], apart from `TooLarge`.
pub async fn create(
    store: &dyn ObjectStore,
    uri: &ObjectUri,
    bytes: Vec<u8>,
    timeout: Duration,
) -> Result<Created, StoreError> {
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let path = uri.path();
    let put = store.put_opts(&path, PutPayload::from(bytes), options);
    match tokio::time::timeout(timeout, put).await {
        Err(_) => Err(StoreError::Timeout {
            uri: uri.to_string(),
            after: timeout,
        }),
        Ok(Ok(_)) => Ok(Created::Written),
        Ok(Err(error)) => {
            let text = crate::util::error_chain(&error);
            if classify(&error, &text) == Failure::AlreadyExists {
                Ok(Created::Existed)
            } else {
                Err(StoreError::from_store(uri, error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_uris_parse_and_print_back() {
        let uri = ObjectUri::parse("s3://models/movies/v7/model.movrek")
            .unwrap()
            .unwrap();
        assert_eq!(uri.provider, Provider::S3);
        assert_eq!(uri.bucket, "models");
        assert_eq!(uri.key, "movies/v7/model.movrek");
        assert_eq!(uri.to_string(), "s3://models/movies/v7/model.movrek");
        let root = ObjectUri::parse("GS://bucket/").unwrap().unwrap();
        assert_eq!((root.provider, root.key.as_str()), (Provider::Gcs, ""));
        assert_eq!(root.join("a/b").to_string(), "gs://bucket/a/b");
        let az = ObjectUri::parse("az://container/prefix").unwrap().unwrap();
        assert_eq!(az.join("x").to_string(), "az://container/prefix/x");
        for other in ["http://x/y", "file:///m", "/models/v7", "ftp://x"] {
            assert!(ObjectUri::parse(other).is_none(), "{other}");
        }
        for bad in [
            "s3://",
            "s3:///key",
            "s3://b/a//c",
            "s3://b/../c",
            "gs://b/./c",
        ] {
            assert!(matches!(ObjectUri::parse(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn plain_http_only_for_an_http_endpoint() {
        assert!(allows_plain_http(Some("http://127.0.0.1:9000")));
        assert!(allows_plain_http(Some(" HTTP://minio:9000 ")));
        assert!(!allows_plain_http(Some(
            "https://s3.eu-west-1.amazonaws.com"
        )));
        assert!(!allows_plain_http(None));
    }

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.into(),
        }
    }

    #[test]
    fn errors_are_classified_by_kind_and_s3_code() {
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "403".into(),
        };
        assert_eq!(
            classify(&denied, "<Code>SignatureDoesNotMatch</Code>"),
            Failure::Denied("the signature does not match: wrong secret key")
        );
        assert_eq!(
            classify(&denied, "403 Forbidden"),
            Failure::Denied("credentials rejected or not permitted")
        );
        // S3 answers an expired session with 400 ExpiredToken, not 403.
        assert_eq!(
            classify(
                &generic("400 <Code>ExpiredToken</Code>"),
                "400 <Code>ExpiredToken</Code>"
            ),
            Failure::Denied("the credentials have expired")
        );
        let missing = object_store::Error::NotFound {
            path: "k".into(),
            source: "404".into(),
        };
        assert_eq!(classify(&missing, ""), Failure::NotFound);
        let exists = object_store::Error::Precondition {
            path: "k".into(),
            source: "412".into(),
        };
        assert_eq!(classify(&exists, ""), Failure::AlreadyExists);
        assert_eq!(
            classify(&generic("connection reset"), "connection reset"),
            Failure::Other
        );
    }
}
