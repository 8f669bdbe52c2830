//! The S3-compatible server of a test (moto, `hack/s3`: `SigV4` and IAM enforced): the test
//! run's, named by `MOVREK_S3_ENDPOINT` with the `MOVREK_S3_*` credentials beside it (what
//! `hack/test.sh` exports), or one started here with `hack/s3/up` and stopped by pid with
//! `hack/s3/down` when the handle drops. It gives the environment a `movrek` process needs
//! for the store (`AWS_*`) and reads back what was published.
//!
//! Shared by `inference/tests` (as `support::s3`) and the end-to-end scenarios of the
//! workspace root (`tests/e2e.rs` includes this file by path), so it depends on nothing but
//! `std`, `object_store` and `tokio`.

#![allow(
    dead_code,
    reason = "shared by several test binaries: not every one uses every helper"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as Key;

/// A running S3-compatible server and its administrator's credentials.
#[derive(Debug)]
pub struct S3 {
    /// The store environment of a `movrek` process: `AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.
    pub env: Vec<(String, String)>,
    /// The bucket the server provisioned.
    pub bucket: String,
    /// `hack/s3/down` and the directory of a server started here.
    own: Option<(PathBuf, PathBuf)>,
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some((down, dir)) = &self.own {
            let _ = Command::new(down).arg(dir).status();
        }
    }
}

impl S3 {
    /// The test run's server (`MOVREK_S3_ENDPOINT` set), or a new one under `dir` started
    /// with `<repo>/hack/s3/up`; panics with the script's error when that fails.
    pub fn start(repo: &Path, dir: &Path) -> Self {
        if std::env::var("MOVREK_S3_ENDPOINT").is_ok_and(|e| !e.trim().is_empty()) {
            return Self::from_vars(&std::env::vars().collect::<Vec<_>>(), None);
        }
        let out = Command::new(repo.join("hack/s3/up"))
            .arg(dir)
            .output()
            .expect("run hack/s3/up");
        assert!(
            out.status.success(),
            "MOVREK_S3_ENDPOINT is not set and hack/s3/up {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.join("env")).expect("hack/s3/up writes DIR/env");
        let vars: Vec<(String, String)> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self::from_vars(&vars, Some((repo.join("hack/s3/down"), dir.to_owned())))
    }

    fn from_vars(vars: &[(String, String)], own: Option<(PathBuf, PathBuf)>) -> Self {
        let var = |name: &str| {
            let (_, value) = vars
                .iter()
                .find(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("{name} is not set (hack/s3/up writes it)"));
            value.trim().to_owned()
        };
        let env = [
            ("AWS_ENDPOINT_URL", "MOVREK_S3_ENDPOINT"),
            ("AWS_REGION", "MOVREK_S3_REGION"),
            ("AWS_ACCESS_KEY_ID", "MOVREK_S3_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", "MOVREK_S3_SECRET_ACCESS_KEY"),
        ]
        .into_iter()
        .map(|(aws, movrek)| (aws.to_owned(), var(movrek)))
        .collect();
        Self {
            env,
            bucket: var("MOVREK_S3_BUCKET"),
            own,
        }
    }

    /// One variable of [`S3::env`].
    pub fn var(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map_or_else(|| panic!("{name} is not in the store env"), |(_, v)| v)
    }

    /// A fresh prefix `s3://BUCKET/<name>-<pid>-<nanos>`, so runs never share objects.
    pub fn fresh_prefix(&self, name: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        format!("s3://{}/{name}-{}-{nanos}", self.bucket, std::process::id())
    }

    /// A client of the bucket with the administrator's key.
    pub fn client(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(self.var("AWS_ENDPOINT_URL"))
                .with_allow_http(true)
                .with_region(self.var("AWS_REGION"))
                .with_bucket_name(&self.bucket)
                .with_access_key_id(self.var("AWS_ACCESS_KEY_ID"))
                .with_secret_access_key(self.var("AWS_SECRET_ACCESS_KEY"))
                .build()
                .expect("S3 client"),
        )
    }

    /// The key of `uri` (`s3://BUCKET/rest`) in the bucket.
    pub fn key(&self, uri: &str) -> Key {
        let rest = uri
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .unwrap_or_else(|| panic!("{uri} is not in s3://{}/", self.bucket));
        Key::from(rest)
    }

    /// The bytes of the object at `uri`; panics when it cannot be read.
    pub async fn read(&self, uri: &str) -> Vec<u8> {
        self.client()
            .get(&self.key(uri))
            .await
            .unwrap_or_else(|e| panic!("read {uri}: {e}"))
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("read {uri}: {e}"))
            .to_vec()
    }

    /// The names one level below the "directory" `uri` (sub-directories and objects),
    /// sorted: the versions under `<prefix>/<release>`, the files of a version.
    pub async fn children(&self, uri: &str) -> Vec<String> {
        let key = self.key(uri);
        let listed = self
            .client()
            .list_with_delimiter(Some(&key))
            .await
            .unwrap_or_else(|e| panic!("list {uri}: {e}"));
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .chain(listed.objects.iter().map(|o| &o.location))
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        names.sort();
        names
    }
}
