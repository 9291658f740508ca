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
    /// Where `space.updated` goes (the outbox relay).
    pub events: events::config::OutboxConfig,
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
        }
    }
}

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
        self.events.validate()
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
}
