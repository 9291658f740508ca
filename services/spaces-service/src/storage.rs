//! Where the bytes of files live, through the `object_store` crate: a local
//! directory (`storage.url = "file://./data/objects"`, the embedded default)
//! or any S3-compatible store (`s3://BUCKET`, with `storage.endpoint`,
//! `storage.region`, `storage.path_style` and credentials from the
//! environment). Metadata stays in the database.
//!
//! Writes stream: an [`ObjectWriter`] takes the bytes as they arrive and sends
//! them on in parts of `storage.part_size_bytes` (a multipart upload on S3, a
//! staging file renamed into place on the filesystem), waiting for one part
//! to be stored before buffering the next, so a write holds at most two parts
//! in memory whatever its size. Reads stream too ([`Storage::get`], with an
//! optional byte range).
//!
//! Keys are `/`-separated paths of safe segments ([`key`]); a key that is not
//! one is refused before it reaches the store.

use crate::config::StorageConfig;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// A failure of the store, or a key it cannot hold.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such object")]
    NotFound,
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("object store: {0}")]
    Store(#[source] object_store::Error),
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            other => StorageError::Store(other),
        }
    }
}

impl From<StorageError> for service_kit::ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => service_kit::ApiError::not_found("file"),
            other => service_kit::ApiError::service_unavailable("storage unavailable")
                .with_retry_after(1)
                .with_source(other),
        }
    }
}

/// What `storage.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on the local filesystem.
    Directory(String),
    /// A bucket of an S3-compatible store.
    Bucket(String),
}

impl Location {
    pub fn parse(url: &str) -> Result<Location, String> {
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.trim().is_empty() {
                return Err("file:// needs a directory (file://./data/objects)".into());
            }
            return Ok(Location::Directory(dir.to_owned()));
        }
        if let Some(bucket) = url.strip_prefix("s3://") {
            let valid = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !valid {
                return Err(
                    "s3:// needs a bucket name (3 to 63 lowercase letters, digits, - and .)".into(),
                );
            }
            return Ok(Location::Bucket(bucket.to_owned()));
        }
        Err("must be file://DIRECTORY or s3://BUCKET".into())
    }
}

/// An object's key: `/`-separated segments, none empty, `.` or `..`, without
/// control characters or backslashes. The service builds keys from space
/// handles and sanitised names; this is the last check before the store.
pub fn key(raw: &str) -> Result<Path, StorageError> {
    let invalid = || StorageError::InvalidKey(raw.to_owned());
    let sound = !raw.is_empty()
        && raw.len() <= 1024
        && raw
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && !raw.chars().any(|c| c.is_control() || c == '\\');
    if !sound {
        return Err(invalid());
    }
    Path::parse(raw).map_err(|_| invalid())
}

/// The object store, and how to presign writes to it.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// S3 presigns PUTs itself; the filesystem has no signer (spaces-service
    /// accepts its own signed PUTs instead).
    signer: Option<Arc<dyn Signer>>,
    part_size: usize,
    kind: &'static str,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.store)
    }
}

/// An object's size and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub e_tag: Option<String>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// An object being read: its metadata, the range sent, and the bytes.
pub struct Object {
    pub info: ObjectInfo,
    pub range: Range<u64>,
    pub bytes: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl Storage {
    /// Connects the store `config` names. The filesystem directory is created
    /// when missing. Nothing is sent to S3 until the first request.
    pub fn from_config(config: &StorageConfig) -> anyhow::Result<Storage> {
        let location = Location::parse(&config.url)
            .map_err(|m| anyhow::anyhow!("invalid configuration `storage.url`: {m}"))?;
        let part_size = config.part_size_bytes;
        match location {
            Location::Directory(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    anyhow::anyhow!("invalid configuration `storage.url`: {dir}: {e}")
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| anyhow::anyhow!("invalid configuration `storage.url`: {e}"))?
                    .with_automatic_cleanup(true);
                Ok(Storage {
                    store: Arc::new(store),
                    signer: None,
                    part_size,
                    kind: "filesystem",
                })
            }
            Location::Bucket(bucket) => {
                // The TLS of the S3 client is the workspace's rustls with ring.
                service_kit::tls::ensure_provider();
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(&config.region)
                    .with_virtual_hosted_style_request(!config.path_style);
                if !config.endpoint.is_empty() {
                    builder = builder
                        .with_endpoint(&config.endpoint)
                        .with_allow_http(config.endpoint.starts_with("http://"));
                }
                if !config.access_key_id.expose().is_empty() {
                    builder = builder
                        .with_access_key_id(config.access_key_id.expose())
                        .with_secret_access_key(config.secret_access_key.expose());
                }
                let s3 = Arc::new(
                    builder
                        .build()
                        .map_err(|e| anyhow::anyhow!("invalid configuration `storage`: {e}"))?,
                );
                Ok(Storage {
                    store: s3.clone(),
                    signer: Some(s3),
                    part_size,
                    kind: "s3",
                })
            }
        }
    }

    /// `filesystem` or `s3`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether the store presigns writes itself ([`Storage::presigned_put`]).
    pub fn presigns(&self) -> bool {
        self.signer.is_some()
    }

    /// A streaming writer of the object `key`; nothing is visible under the
    /// key until [`ObjectWriter::finish`].
    pub async fn writer(&self, key: &str) -> Result<ObjectWriter, StorageError> {
        let path = self::key(key)?;
        let upload = self.store.put_multipart(&path).await?;
        Ok(ObjectWriter {
            inner: Some(WriteMultipart::new_with_chunk_size(upload, self.part_size)),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Stores `bytes` (already in memory) under `key` in one request.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<Written, StorageError> {
        let path = self::key(key)?;
        let written = Written {
            size: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
        };
        self.store.put(&path, PutPayload::from(bytes)).await?;
        Ok(written)
    }

    /// The object's size and version, or [`StorageError::NotFound`].
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, StorageError> {
        let meta = self.store.head(&self::key(key)?).await?;
        Ok(ObjectInfo {
            size: meta.size,
            e_tag: meta.e_tag,
            last_modified: meta.last_modified,
        })
    }

    /// The object, all of it or `range` (clipped to its end; a range that
    /// starts past the end is [`StorageError::Store`]), as a stream.
    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Object, StorageError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self.store.get_opts(&self::key(key)?, options).await?;
        let info = ObjectInfo {
            size: result.meta.size,
            e_tag: result.meta.e_tag.clone(),
            last_modified: result.meta.last_modified,
        };
        let range = result.range.clone();
        Ok(Object {
            info,
            range,
            bytes: result
                .into_stream()
                .map(|r| r.map_err(StorageError::from))
                .boxed(),
        })
    }

    /// Up to the first `n` bytes of the object (fewer when it is shorter).
    pub async fn read_head(&self, key: &str, n: u64) -> Result<Bytes, StorageError> {
        let path = self::key(key)?;
        let size = self.store.head(&path).await?.size;
        if size == 0 {
            return Ok(Bytes::new());
        }
        Ok(self.store.get_range(&path, 0..n.min(size)).await?)
    }

    /// Moves the object `from` to `to` (a rename on the filesystem, a copy
    /// and a delete on S3).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.store
            .rename(&self::key(from)?, &self::key(to)?)
            .await?;
        Ok(())
    }

    /// The object's size and SHA-256, read through once.
    pub async fn digest(&self, key: &str) -> Result<Written, StorageError> {
        let mut object = self.get(key, None).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = object.bytes.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Written {
            size,
            sha256: hex(&hasher.finalize()),
        })
    }

    /// The whole object, in memory (callers bound its size first).
    pub async fn read_all(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let mut object = self.get(key, None).await?;
        let mut bytes = Vec::with_capacity(object.info.size as usize);
        while let Some(chunk) = object.bytes.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }

    /// Deletes the object; one that is already gone is no error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self::key(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under `prefix` (whole segments: `abc` covers
    /// `abc/x`, not `abcd/x`); returns how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        self.delete_chosen(prefix, |_| true).await
    }

    /// Deletes the objects under `prefix` last written before `cutoff`;
    /// returns how many there were.
    pub async fn delete_prefix_older_than(
        &self,
        prefix: &str,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, StorageError> {
        self.delete_chosen(prefix, move |meta| meta.last_modified < cutoff)
            .await
    }

    /// Deletes the objects under `prefix` that `chosen` picks; returns how
    /// many there were (one already gone is not counted, and no error).
    async fn delete_chosen(
        &self,
        prefix: &str,
        chosen: impl Fn(&object_store::ObjectMeta) -> bool + Send + 'static,
    ) -> Result<usize, StorageError> {
        let prefix = self::key(prefix)?;
        let listed = self.store.list(Some(&prefix)).filter_map(move |meta| {
            std::future::ready(match meta {
                Ok(meta) if chosen(&meta) => Some(Ok(meta.location)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
        });
        let mut deleted = 0;
        let mut results = self.store.delete_stream(listed.boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }

    /// A URL that lets its holder PUT the object `key` for `expires_in`,
    /// from the store itself (S3); `None` from a store that cannot presign.
    pub async fn presigned_put(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<url::Url>, StorageError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(reqwest::Method::PUT, &self::key(key)?, expires_in)
            .await?;
        Ok(Some(url))
    }
}

/// What a finished write stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

/// A write in progress ([`Storage::writer`]): counts and hashes what passes.
/// Dropped unfinished, or after [`ObjectWriter::abort`], it leaves nothing
/// under its key (S3 parts are aborted; the filesystem's staging file is
/// removed).
pub struct ObjectWriter {
    inner: Option<WriteMultipart>,
    hasher: Sha256,
    size: u64,
}

impl ObjectWriter {
    /// Takes `chunk`, first waiting until at most one part is still being
    /// stored: what makes a write's memory flat.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        let inner = self.inner.as_mut().expect("writer used after finish");
        inner.wait_for_capacity(1).await?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        inner.write(chunk);
        Ok(())
    }

    /// Bytes taken so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Stores what is left and makes the object visible.
    pub async fn finish(mut self) -> Result<Written, StorageError> {
        let inner = self.inner.take().expect("writer finished once");
        inner.finish().await?;
        Ok(Written {
            size: self.size,
            sha256: hex(&std::mem::take(&mut self.hasher).finalize()),
        })
    }

    /// Gives the write up, removing what was stored of it.
    pub async fn abort(mut self) {
        if let Some(inner) = self.inner.take()
            && let Err(e) = inner.abort().await
        {
            tracing::warn!(error = %e, "could not abort an unfinished write");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        // Dropped unfinished (a client gone mid-upload): abort in the
        // background, so no parts or staging files are left behind.
        if let Some(inner) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = inner.abort().await {
                    tracing::warn!(error = %e, "could not abort an abandoned write");
                }
            });
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("file://./data/objects"),
            Ok(Location::Directory("./data/objects".into()))
        );
        assert_eq!(
            Location::parse("s3://media-bucket"),
            Ok(Location::Bucket("media-bucket".into()))
        );
        for bad in [
            "", "file://", "s3://", "s3://A", "s3://-x-", "http://x", "/data",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_safe_paths() {
        assert!(key("a1b2c3/image-01HQ").is_ok());
        assert!(key("a1b2c3/photos/x y.jpg").is_ok());
        for bad in [
            "", "/a", "a/", "a//b", "a/../b", "..", "./a", "a/\u{0}", "a\\b", "a/\nb",
        ] {
            assert!(key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
