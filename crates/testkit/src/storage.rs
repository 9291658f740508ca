//! An object store for one test: a temporary directory, or a fresh bucket on
//! the S3 API server at `TEST_S3_URL` (moto in CI). Whoever configures a
//! store from it (spaces-service's `storage.*`) maps the fields across.

use crate::{required_env, unique_suffix};

/// Generates one test per object store: `NAME::filesystem` and `NAME::s3`,
/// each calling `BODY(StorageKind)`. Arguments after the body go to
/// `#[tokio::test(…)]` (`flavor = "multi_thread", worker_threads = 2`).
#[macro_export]
macro_rules! storage_test {
    ($name:ident, $body:ident $(, $($runtime:tt)+)?) => {
        mod $name {
            #[tokio::test$(($($runtime)+))?]
            async fn filesystem() {
                super::$body($crate::StorageKind::Filesystem).await
            }
            #[tokio::test$(($($runtime)+))?]
            async fn s3() {
                super::$body($crate::StorageKind::S3).await
            }
        }
    };
}

/// Where a test's file bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// A temporary directory.
    Filesystem,
    /// A fresh bucket of the S3 API server at `TEST_S3_URL`.
    S3,
}

/// A store that exists for one test. The directory is removed afterwards;
/// a bucket and its objects stay on the server until it stops.
pub struct TestStore {
    pub kind: StorageKind,
    /// `file://DIRECTORY` or `s3://BUCKET`.
    pub url: String,
    /// S3: the server's base URL (`http://127.0.0.1:9000`), addressed
    /// path-style; empty for the filesystem.
    pub endpoint: String,
    /// S3: credentials the server takes (moto takes any); empty for the
    /// filesystem.
    pub access_key_id: String,
    pub secret_access_key: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A temporary directory, or a new bucket; panics (the test fails) when
    /// `TEST_S3_URL` is unset or the server unreachable.
    pub async fn new(kind: StorageKind) -> TestStore {
        match kind {
            StorageKind::Filesystem => {
                let dir = tempfile::tempdir().expect("temp dir");
                TestStore {
                    kind,
                    url: format!("file://{}", dir.path().display()),
                    endpoint: String::new(),
                    access_key_id: String::new(),
                    secret_access_key: String::new(),
                    _dir: Some(dir),
                }
            }
            StorageKind::S3 => {
                let endpoint = required_env("TEST_S3_URL", "an S3 API server")
                    .trim_end_matches('/')
                    .to_owned();
                let bucket = format!("spaceport-test-{}", unique_suffix());
                let created = crate::client()
                    .put(format!("{endpoint}/{bucket}"))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("no S3 API server at TEST_S3_URL={endpoint}: {e}"));
                assert!(
                    created.status().is_success(),
                    "creating bucket {bucket} at {endpoint}: {}",
                    created.status()
                );
                TestStore {
                    kind,
                    url: format!("s3://{bucket}"),
                    endpoint,
                    access_key_id: "test".into(),
                    secret_access_key: "test".into(),
                    _dir: None,
                }
            }
        }
    }
}
