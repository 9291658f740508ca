//! spaces-service configuration (`SPACES__…`).

use serde::{Deserialize, Serialize};
use service_kit::config::{
    CacheConfig, ConfigError, DatabaseConfig, HttpConfig, IdentityConfig, LogConfig, Secret,
    ServiceConfig,
};

/// `secret.*`: the root secret the service's keys are derived from (the key
/// that hashes space API keys, the key that signs list cursors).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// 32 or more random bytes, base64. Clusters set it from a Secret; every
    /// replica must have the same one, or keys minted by one replica would be
    /// unknown to the others.
    pub key: Secret,
    /// Used when `key` is empty: read, or created (mode 0600) on first start.
    pub key_file: String,
}

/// `webhooks.*`: where spaces may send their webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Accept `webhook_url`s that name `localhost` or a loopback, private or
    /// link-local IP address. Off in production: such a URL would let a
    /// tenant make the platform call into its own network.
    pub allow_private_targets: bool,
}

/// `introspection.*`: how long a replica trusts what it read about a space key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// Seconds a key read from the database answers introspections from memory.
    /// Revocations evict at once (on the cache bus); this only bounds how long a
    /// replica that missed a revocation message keeps answering `active`.
    pub cache_ttl_secs: u64,
}

/// `storage.*`: where the bytes of files live (metadata stays in the database).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `file://DIR` (a local directory, created on start; relative to the
    /// working directory) or `s3://BUCKET` (any S3-compatible store).
    pub url: String,
    /// S3: the store's endpoint (`https://s3.example.com`,
    /// `http://127.0.0.1:9000`); empty: AWS itself, by `region`.
    pub endpoint: String,
    /// S3: the bucket's region.
    pub region: String,
    /// S3: address the bucket in the path (`ENDPOINT/BUCKET/KEY`), as most
    /// S3-compatible servers want, rather than in the host name.
    pub path_style: bool,
    /// S3 credentials. Empty: the AWS environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, …), else the instance's role.
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Bytes per part of a streamed write (5 MiB, S3's smallest part, to
    /// 64 MiB). An upload holds at most two parts in memory.
    pub part_size_bytes: usize,
}

/// `uploads.*`: limits and URLs of the Upload API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// Where clients reach the API (the gateway): signed upload URLs and the
    /// filesystem store's presigned PUT URLs start with it.
    pub public_url: String,
    /// The largest upload request body, whatever an upload config allows
    /// (config limits go up to 5 GiB per file; multipart framing and the
    /// other fields come on top).
    pub max_request_bytes: u64,
    /// Images are read whole, to be checked and processed (metadata
    /// stripped, converted, their blurhash computed), up to this size. A
    /// larger image is stored as sent when its config asks for no
    /// processing, and refused (413) when it does.
    pub image_memory_bytes: u64,
    /// Lifetime of a signed upload URL when the request names none, and the
    /// longest one may ask for (`expiration_minutes`).
    pub signed_url_default_minutes: u32,
    pub signed_url_max_minutes: u32,
    /// Lifetime of a presigned PUT URL (`expires_in`). A file still pending
    /// this long after its URL expired is deleted, with whatever was stored.
    pub presign_expires_secs: u64,
}

/// `delivery.*`: the URLs files are served at.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// The CDN's base URL: a file's `url` is `{cdn_url}/{storage_path}`
    /// (the storage path starts with the space's handle).
    pub cdn_url: String,
    /// Lifetime of a signed delivery URL when the request names none, and
    /// the longest one may ask for.
    pub signed_url_ttl_secs: u64,
    pub signed_url_max_ttl_secs: u64,
    /// `Cache-Control: public, max-age=…` of content anyone may read
    /// (Tuzzle's 30 days). Other answers are `private`.
    pub public_max_age_secs: u64,
    /// How long the first request for a variant waits for a free transform
    /// slot (one per core, shared with uploads) before answering 503 with
    /// `Retry-After`, as Tuzzle's CDN does when its processing limit is reached.
    pub transform_wait_ms: u64,
    /// How long a request waits for its variant to be rendered before
    /// answering 504. The rendering itself cannot be interrupted: it runs
    /// on, bounded by the pixel limit and the output bounds, holding its
    /// slot, and is stored for the next request.
    pub transform_timeout_ms: u64,
    /// The largest original transformed (it is read whole into memory, under
    /// a slot); a larger image is served only as it is.
    pub transform_max_source_bytes: u64,
    /// Seconds a replica serves a file it looked up (the file, its space, the
    /// access control in force) without asking the database again; 0: every
    /// request asks. Changes reach every replica at once over the cache bus;
    /// this bounds how long one that missed a message serves what it knew.
    pub cache_ttl_secs: u64,
    /// Bytes of variants (each at most 1 MiB) a replica keeps in memory, so
    /// the most requested are served without reading storage; 0: none.
    pub variant_memory_bytes: u64,
}

/// `watermarks.*`: the images spaces lay over the images they deliver
/// (`security.watermark.url`), fetched through the outbound guard.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarksConfig {
    /// Accept watermark URLs that are `http`, or name `localhost` or a
    /// loopback, private or link-local address. Off in production: such a URL
    /// would let a tenant make the platform fetch from its own network.
    pub allow_private_targets: bool,
    /// Watermarks kept decoded (each at most 1024 pixels a side, 4 MiB),
    /// by URL, position and opacity; the least recently used go first.
    pub cache_entries: usize,
    /// A fetched watermark is used this long, then fetched again: a changed
    /// image gives new variants. A failed fetch is retried after 30 s.
    pub refresh_secs: u64,
    /// The largest watermark image fetched, in bytes.
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpacesConfig {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub identity: IdentityConfig,
    pub log: LogConfig,
    pub secret: SecretConfig,
    pub webhooks: WebhookConfig,
    pub introspection: IntrospectionConfig,
    /// Where `space.updated` and `file.uploaded` go (the outbox relay).
    pub events: events::config::OutboxConfig,
    pub storage: StorageConfig,
    pub uploads: UploadsConfig,
    pub delivery: DeliveryConfig,
    pub watermarks: WatermarksConfig,
}

impl SpacesConfig {
    pub fn defaults() -> SpacesConfig {
        let base = ServiceConfig::defaults(8083, "spaces");
        SpacesConfig {
            http: base.http,
            database: base.database,
            cache: base.cache,
            identity: base.identity,
            log: base.log,
            secret: SecretConfig {
                key: Secret::default(),
                key_file: "./data/spaces-secret.key".into(),
            },
            webhooks: WebhookConfig {
                allow_private_targets: false,
            },
            introspection: IntrospectionConfig { cache_ttl_secs: 30 },
            events: events::config::OutboxConfig::default(),
            storage: StorageConfig {
                url: "file://./data/objects".into(),
                endpoint: String::new(),
                region: "us-east-1".into(),
                path_style: false,
                access_key_id: Secret::default(),
                secret_access_key: Secret::default(),
                part_size_bytes: 5 * MIB as usize,
            },
            uploads: UploadsConfig {
                public_url: "http://127.0.0.1:8080".into(),
                max_request_bytes: 5 * 1024 * MIB + 16 * MIB,
                image_memory_bytes: 64 * MIB,
                signed_url_default_minutes: 60,
                signed_url_max_minutes: 7 * 24 * 60,
                presign_expires_secs: 3600,
            },
            delivery: DeliveryConfig {
                cdn_url: "http://127.0.0.1:8080/cdn".into(),
                signed_url_ttl_secs: 3600,
                signed_url_max_ttl_secs: 7 * 24 * 3600,
                public_max_age_secs: 30 * 24 * 3600,
                transform_wait_ms: 1000,
                transform_timeout_ms: 10_000,
                transform_max_source_bytes: 64 * MIB,
                cache_ttl_secs: 5,
                variant_memory_bytes: 64 * MIB,
            },
            watermarks: WatermarksConfig {
                allow_private_targets: false,
                cache_entries: 16,
                refresh_secs: 300,
                max_bytes: 4 * MIB,
            },
        }
    }
}

const MIB: u64 = 1024 * 1024;

service_kit::service_settings!(SpacesConfig, validate = SpacesConfig::check_sections);

impl SpacesConfig {
    /// What the types cannot say: ranges, schemes, cross-field rules.
    fn check_sections(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.introspection.cache_ttl_secs) {
            return Err(ConfigError::invalid(
                "introspection.cache_ttl_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.secret.key.expose().trim().is_empty() && self.secret.key_file.trim().is_empty() {
            return Err(ConfigError::invalid(
                "secret.key_file",
                "must be set when secret.key is empty",
            ));
        }
        self.check_content()?;
        self.events.validate()
    }

    fn check_content(&self) -> Result<(), ConfigError> {
        crate::storage::Location::parse(&self.storage.url)
            .map_err(|message| ConfigError::invalid("storage.url", message))?;
        if !self.storage.endpoint.is_empty() {
            check_base_url(&self.storage.endpoint, "storage.endpoint")?;
        }
        if self.storage.region.trim().is_empty() {
            return Err(ConfigError::invalid("storage.region", "must not be empty"));
        }
        if !(5 * MIB..=64 * MIB).contains(&(self.storage.part_size_bytes as u64)) {
            return Err(ConfigError::invalid(
                "storage.part_size_bytes",
                "must be between 5 MiB and 64 MiB",
            ));
        }
        check_base_url(&self.uploads.public_url, "uploads.public_url")?;
        check_base_url(&self.delivery.cdn_url, "delivery.cdn_url")?;
        let ranges: [(&str, u64, u64, u64); 12] = [
            (
                "uploads.max_request_bytes",
                self.uploads.max_request_bytes,
                MIB,
                16 * 1024 * MIB,
            ),
            (
                "uploads.image_memory_bytes",
                self.uploads.image_memory_bytes,
                MIB,
                1024 * MIB,
            ),
            (
                "uploads.signed_url_max_minutes",
                self.uploads.signed_url_max_minutes.into(),
                1,
                30 * 24 * 60,
            ),
            (
                "uploads.presign_expires_secs",
                self.uploads.presign_expires_secs,
                60,
                7 * 24 * 3600,
            ),
            (
                "delivery.signed_url_max_ttl_secs",
                self.delivery.signed_url_max_ttl_secs,
                60,
                365 * 24 * 3600,
            ),
            (
                "delivery.signed_url_ttl_secs",
                self.delivery.signed_url_ttl_secs,
                60,
                self.delivery.signed_url_max_ttl_secs,
            ),
            (
                "delivery.public_max_age_secs",
                self.delivery.public_max_age_secs,
                0,
                365 * 24 * 3600,
            ),
            (
                "delivery.transform_wait_ms",
                self.delivery.transform_wait_ms,
                0,
                60_000,
            ),
            (
                "delivery.transform_timeout_ms",
                self.delivery.transform_timeout_ms,
                100,
                300_000,
            ),
            (
                "delivery.transform_max_source_bytes",
                self.delivery.transform_max_source_bytes,
                MIB,
                1024 * MIB,
            ),
            (
                "watermarks.cache_entries",
                self.watermarks.cache_entries as u64,
                1,
                1024,
            ),
            (
                "watermarks.max_bytes",
                self.watermarks.max_bytes,
                1024,
                64 * MIB,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        if !(1..=86_400).contains(&self.watermarks.refresh_secs) {
            return Err(ConfigError::invalid(
                "watermarks.refresh_secs",
                "must be between 1 and 86400",
            ));
        }
        let default = u64::from(self.uploads.signed_url_default_minutes);
        if !(1..=u64::from(self.uploads.signed_url_max_minutes)).contains(&default) {
            return Err(ConfigError::invalid(
                "uploads.signed_url_default_minutes",
                "must be between 1 and uploads.signed_url_max_minutes",
            ));
        }
        Ok(())
    }
}

/// An absolute `http(s)` URL without a query, to which paths are appended.
fn check_base_url(raw: &str, key: &str) -> Result<(), ConfigError> {
    match url::Url::parse(raw) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.query().is_none()
                && !raw.ends_with('/') =>
        {
            Ok(())
        }
        _ => Err(ConfigError::invalid(
            key,
            "must be an http(s) URL without a query or a trailing slash",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_section_is_checked_and_named() {
        let mut config = SpacesConfig::defaults();
        config.events.stream_url = Secret::new("memory://devstack");
        config.check_sections().unwrap();
        type Spoil = fn(&mut SpacesConfig);
        let cases: [(&str, Spoil); 4] = [
            ("events.stream_url", |c| {
                c.events.stream_url = Secret::new("http://localhost:6379")
            }),
            ("events.relay_batch", |c| c.events.relay_batch = 0),
            ("events.relay_interval_ms", |c| {
                c.events.relay_interval_ms = 0
            }),
            ("events.retention_hours", |c| c.events.retention_hours = 0),
        ];
        for (key, bad) in cases {
            let mut config = SpacesConfig::defaults();
            bad(&mut config);
            let err = config.check_sections().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn the_content_sections_are_checked_and_named() {
        let mut s3 = SpacesConfig::defaults();
        s3.storage.url = "s3://media".into();
        s3.storage.endpoint = "http://127.0.0.1:9000".into();
        s3.check_sections().unwrap();
        type Spoil = fn(&mut SpacesConfig);
        let cases: [(&str, Spoil); 15] = [
            ("delivery.transform_timeout_ms", |c| {
                c.delivery.transform_timeout_ms = 0
            }),
            ("delivery.transform_max_source_bytes", |c| {
                c.delivery.transform_max_source_bytes = 10
            }),
            ("watermarks.cache_entries", |c| {
                c.watermarks.cache_entries = 0
            }),
            ("watermarks.refresh_secs", |c| c.watermarks.refresh_secs = 0),
            ("watermarks.max_bytes", |c| c.watermarks.max_bytes = 1),
            ("storage.url", |c| c.storage.url = "ftp://x".into()),
            ("storage.url", |c| c.storage.url = "s3://No_Bucket".into()),
            ("storage.endpoint", |c| c.storage.endpoint = "nope".into()),
            ("storage.region", |c| c.storage.region = " ".into()),
            ("storage.part_size_bytes", |c| {
                c.storage.part_size_bytes = 1024
            }),
            ("uploads.public_url", |c| {
                c.uploads.public_url = "http://x/".into()
            }),
            ("delivery.cdn_url", |c| c.delivery.cdn_url = "/cdn".into()),
            ("uploads.max_request_bytes", |c| {
                c.uploads.max_request_bytes = 0
            }),
            ("uploads.signed_url_default_minutes", |c| {
                c.uploads.signed_url_default_minutes = 0
            }),
            ("delivery.signed_url_ttl_secs", |c| {
                c.delivery.signed_url_ttl_secs = c.delivery.signed_url_max_ttl_secs + 1
            }),
        ];
        for (key, bad) in cases {
            let mut config = SpacesConfig::defaults();
            bad(&mut config);
            let err = config.check_sections().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
