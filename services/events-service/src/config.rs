//! events-service configuration (`EVENTS__…`).

use serde::{Deserialize, Serialize};
use service_kit::config::{
    CacheConfig, ConfigError, DatabaseConfig, HttpConfig, IdentityConfig, LogConfig, Secret,
    ServiceConfig,
};
use std::time::Duration;

/// The port events-service listens on by default.
pub const DEFAULT_PORT: u16 = 8084;

/// `secret.*`: the root secret the service's keys are derived from (the key
/// that seals subscription secrets at rest).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// 32 or more random bytes, base64. Every replica must have the same one,
    /// or secrets sealed by one replica cannot be opened by the others.
    pub key: Secret,
    /// Used when `key` is empty: read, or created (mode 0600) on first start.
    pub key_file: String,
}

/// `events.*`: which streams the service consumes, and as which group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    /// The event stream: `redis://…` (Redis Streams) or `memory://NAME` (the
    /// in-process bus of the devstack). Empty: `cache.url`.
    pub stream_url: Secret,
    /// The streams consumed, comma-separated: one per producing service.
    pub streams: String,
    /// The consumer group every replica joins, so that each event is handed to
    /// one replica.
    pub group: String,
}

/// `webhooks.*`: how deliveries are made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Seconds to wait before each retry after a failed attempt,
    /// comma-separated (a little jitter is added). After the last one fails
    /// the subscription becomes `failing`.
    pub retry_schedule_secs: String,
    /// An attempt succeeds when the receiver answers 2xx within this time.
    pub timeout_secs: u64,
    /// Accept `http` receivers and loopback, private and link-local targets.
    /// Off in production: it would let a tenant make the platform call into
    /// its own network. The devstack turns it on for local receivers.
    pub allow_private_targets: bool,
    /// Attempts one replica makes at once.
    pub workers: usize,
    /// How long a replica holds the deliveries it claimed. Longer than
    /// `timeout_secs`, so that a claim never expires under a live attempt; a
    /// crashed replica's claims are retried once it has passed.
    pub lease_secs: u64,
    /// How often each replica looks for due deliveries when nothing wakes it
    /// (new events on this replica wake it at once).
    pub poll_interval_ms: u64,
    /// Days events, deliveries and their attempts are kept.
    pub retention_days: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub identity: IdentityConfig,
    pub log: LogConfig,
    /// Where the mail that a subscription is failing goes out (`mail.url`, as
    /// in auth-service).
    pub mail: mail::MailConfig,
    pub secret: SecretConfig,
    pub events: IntakeConfig,
    pub webhooks: WebhookConfig,
}

impl EventsConfig {
    pub fn defaults() -> EventsConfig {
        let base = ServiceConfig::defaults(DEFAULT_PORT, "events");
        EventsConfig {
            http: base.http,
            database: base.database,
            cache: base.cache,
            identity: base.identity,
            log: base.log,
            mail: mail::MailConfig::default(),
            secret: SecretConfig {
                key: Secret::default(),
                key_file: "./data/events-secret.key".into(),
            },
            events: IntakeConfig {
                stream_url: Secret::default(),
                streams: "events:booking-service,events:auth-service,events:spaces-service".into(),
                group: "events-service".into(),
            },
            webhooks: WebhookConfig {
                retry_schedule_secs: "60,300,1800,7200,86400".into(),
                timeout_secs: 30,
                allow_private_targets: false,
                workers: 32,
                lease_secs: 60,
                poll_interval_ms: 1000,
                retention_days: 30,
            },
        }
    }

    /// The stream URL: `events.stream_url`, or `cache.url` when it is empty.
    pub fn stream_url(&self) -> &str {
        match self.events.stream_url.expose().trim() {
            "" => self.cache.url.expose(),
            url => url,
        }
    }

    /// `events.streams`, split.
    pub fn streams(&self) -> Vec<String> {
        split(&self.events.streams)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    }
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl WebhookConfig {
    /// `retry_schedule_secs`, parsed (validated at start-up).
    pub fn retry_schedule(&self) -> Vec<Duration> {
        parse_schedule(&self.retry_schedule_secs).unwrap_or_default()
    }
}

/// Longest wait between two attempts: a week.
const MAX_RETRY_DELAY_SECS: u64 = 7 * 24 * 3600;
const MAX_RETRIES: usize = 20;

fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let delays = split(text)
        .map(|part| {
            part.parse::<u64>()
                .ok()
                .filter(|secs| (1..=MAX_RETRY_DELAY_SECS).contains(secs))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    format!(
                        "`{part}` is not a number of seconds between 1 and {MAX_RETRY_DELAY_SECS}"
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() || delays.len() > MAX_RETRIES {
        return Err(format!(
            "must list 1 to {MAX_RETRIES} delays in seconds, comma-separated"
        ));
    }
    Ok(delays)
}

/// A stream or group name: printable, no spaces.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 200 && name.chars().all(|c| c.is_ascii_graphic())
}

service_kit::service_settings!(EventsConfig, validate = EventsConfig::check_sections);

impl EventsConfig {
    /// What the types cannot say: ranges, schemes, cross-field rules.
    fn check_sections(&self) -> Result<(), ConfigError> {
        self.mail.validate()?;
        if self.secret.key.expose().trim().is_empty() && self.secret.key_file.trim().is_empty() {
            return Err(ConfigError::invalid(
                "secret.key_file",
                "must be set when secret.key is empty",
            ));
        }
        let url = self.events.stream_url.expose().trim();
        if !url.is_empty()
            && !["redis://", "rediss://", "memory://"]
                .iter()
                .any(|s| url.starts_with(s))
        {
            return Err(ConfigError::invalid(
                "events.stream_url",
                "expected redis://, rediss:// or memory:// (or empty for cache.url)",
            ));
        }
        let streams = self.streams();
        if streams.is_empty() || !streams.iter().all(|s| plain_name(s)) {
            return Err(ConfigError::invalid(
                "events.streams",
                "must list one or more stream names (printable, no spaces), comma-separated",
            ));
        }
        let mut unique = streams.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != streams.len() {
            return Err(ConfigError::invalid(
                "events.streams",
                "names a stream twice",
            ));
        }
        if !plain_name(&self.events.group) {
            return Err(ConfigError::invalid(
                "events.group",
                "must be a name of 1 to 200 printable characters without spaces",
            ));
        }
        let webhooks = &self.webhooks;
        parse_schedule(&webhooks.retry_schedule_secs)
            .map_err(|e| ConfigError::invalid("webhooks.retry_schedule_secs", e))?;
        if !(1..=300).contains(&webhooks.timeout_secs) {
            return Err(ConfigError::invalid(
                "webhooks.timeout_secs",
                "must be between 1 and 300",
            ));
        }
        if !(1..=1024).contains(&webhooks.workers) {
            return Err(ConfigError::invalid(
                "webhooks.workers",
                "must be between 1 and 1024",
            ));
        }
        if webhooks.lease_secs < webhooks.timeout_secs + 10 || webhooks.lease_secs > 86_400 {
            return Err(ConfigError::invalid(
                "webhooks.lease_secs",
                "must be at least webhooks.timeout_secs + 10 (a claim must outlive an attempt) and at most 86400",
            ));
        }
        if !(10..=60_000).contains(&webhooks.poll_interval_ms) {
            return Err(ConfigError::invalid(
                "webhooks.poll_interval_ms",
                "must be between 10 and 60000",
            ));
        }
        if !(1..=3650).contains(&webhooks.retention_days) {
            return Err(ConfigError::invalid(
                "webhooks.retention_days",
                "must be between 1 and 3650",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::config::load_from;

    fn error_of(pairs: &[(&str, &str)]) -> String {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load_from::<EventsConfig>("EVENTS", None, env, &EventsConfig::defaults())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_are_valid_and_parse() {
        let config: EventsConfig = load_from(
            "EVENTS",
            None,
            Vec::<(String, String)>::new(),
            &EventsConfig::defaults(),
        )
        .unwrap();
        assert_eq!(config.http.addr.port(), 8084);
        assert_eq!(
            config.webhooks.retry_schedule(),
            [60, 300, 1800, 7200, 86400].map(Duration::from_secs)
        );
        assert_eq!(
            config.streams(),
            [
                "events:booking-service",
                "events:auth-service",
                "events:spaces-service"
            ]
        );
        assert_eq!(config.stream_url(), "memory://");
    }

    #[test]
    fn the_environment_sets_lists() {
        let env = [
            ("EVENTS__WEBHOOKS__RETRY_SCHEDULE_SECS", "1, 1,2"),
            ("EVENTS__EVENTS__STREAMS", "events:a"),
            ("EVENTS__EVENTS__STREAM_URL", "redis://127.0.0.1:6379"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let config: EventsConfig =
            load_from("EVENTS", None, env, &EventsConfig::defaults()).unwrap();
        assert_eq!(
            config.webhooks.retry_schedule(),
            [1, 1, 2].map(Duration::from_secs)
        );
        assert_eq!(config.streams(), ["events:a"]);
        assert_eq!(config.stream_url(), "redis://127.0.0.1:6379");
        // One delay alone reads as a number; it is still a schedule.
        let env = [("EVENTS__WEBHOOKS__RETRY_SCHEDULE_SECS", "60")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let config: EventsConfig =
            load_from("EVENTS", None, env, &EventsConfig::defaults()).unwrap();
        assert_eq!(config.webhooks.retry_schedule(), [Duration::from_secs(60)]);
    }

    #[test]
    fn every_key_is_checked_by_name() {
        for (var, value, key) in [
            (
                "WEBHOOKS__RETRY_SCHEDULE_SECS",
                "",
                "webhooks.retry_schedule_secs",
            ),
            (
                "WEBHOOKS__RETRY_SCHEDULE_SECS",
                "60,x",
                "webhooks.retry_schedule_secs",
            ),
            (
                "WEBHOOKS__RETRY_SCHEDULE_SECS",
                "0",
                "webhooks.retry_schedule_secs",
            ),
            ("WEBHOOKS__TIMEOUT_SECS", "0", "webhooks.timeout_secs"),
            ("WEBHOOKS__TIMEOUT_SECS", "soon", "webhooks.timeout_secs"),
            ("WEBHOOKS__WORKERS", "0", "webhooks.workers"),
            ("WEBHOOKS__LEASE_SECS", "30", "webhooks.lease_secs"),
            (
                "WEBHOOKS__POLL_INTERVAL_MS",
                "1",
                "webhooks.poll_interval_ms",
            ),
            ("WEBHOOKS__RETENTION_DAYS", "0", "webhooks.retention_days"),
            (
                "WEBHOOKS__ALLOW_PRIVATE_TARGETS",
                "maybe",
                "webhooks.allow_private_targets",
            ),
            ("EVENTS__STREAM_URL", "kafka://x", "events.stream_url"),
            ("EVENTS__STREAMS", " , ", "events.streams"),
            ("EVENTS__STREAMS", "a,a", "events.streams"),
            ("EVENTS__GROUP", "two words", "events.group"),
            ("MAIL__URL", "imap://x", "mail.url"),
            ("SECRET__KEY_FILE", "", "secret.key_file"),
        ] {
            let message = error_of(&[(&format!("EVENTS__{var}"), value)]);
            assert!(message.contains(key), "{var}={value}: {message}");
        }
    }
}
