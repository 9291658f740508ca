//! The `[events]` section of a producing service's configuration, and the
//! start-up step that runs its relay.

use crate::{EventStream, Nudge, Relay};
use serde::{Deserialize, Serialize};
use service_kit::config::{ConfigError, Secret};
use std::time::Duration;
use store::Database;

/// Where a service's events go and how its relay runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// The event stream: `redis://…` (Redis Streams) or `memory://NAME` (the
    /// in-process bus of the devstack). Empty: the service's `cache.url`.
    pub stream_url: Secret,
    /// The stream this service's events go to; empty: `events:<service>`.
    pub stream: String,
    /// Time between relay passes when no commit wakes the relay.
    pub relay_interval_ms: u64,
    /// Outbox rows per pass.
    pub relay_batch: usize,
    /// How long published rows stay in the outbox.
    pub retention_hours: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            stream_url: Secret::new(""),
            stream: String::new(),
            relay_interval_ms: crate::defaults::RELAY_INTERVAL.as_millis() as u64,
            relay_batch: crate::defaults::RELAY_BATCH,
            retention_hours: crate::defaults::RELAY_RETENTION.as_secs() / 3600,
        }
    }
}

impl OutboxConfig {
    /// Checks the section, naming the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.stream_url.expose();
        if !url.is_empty()
            && !["redis://", "rediss://", "memory://"]
                .iter()
                .any(|s| url.starts_with(s))
        {
            return Err(ConfigError::invalid(
                "events.stream_url",
                "expected redis://, rediss:// or memory://",
            ));
        }
        if !(10..=60_000).contains(&self.relay_interval_ms) {
            return Err(ConfigError::invalid(
                "events.relay_interval_ms",
                "must be between 10 and 60000",
            ));
        }
        if !(1..=10_000).contains(&self.relay_batch) {
            return Err(ConfigError::invalid(
                "events.relay_batch",
                "must be between 1 and 10000",
            ));
        }
        if !(1..=24 * 90).contains(&self.retention_hours) {
            return Err(ConfigError::invalid(
                "events.retention_hours",
                "must be between 1 and 2160",
            ));
        }
        Ok(())
    }

    /// The stream's name for `producer`.
    pub fn stream_name(&self, producer: &str) -> String {
        if self.stream.is_empty() {
            format!("events:{producer}")
        } else {
            self.stream.clone()
        }
    }
}

/// Connects the stream (`cache_url` when `events.stream_url` is empty) and
/// starts `producer`'s relay on this replica; the nudge wakes it after a
/// commit that recorded events, the metrics count what it relays.
pub async fn start_relay(
    db: &Database,
    cache_url: &str,
    config: &OutboxConfig,
    producer: &str,
) -> anyhow::Result<(Nudge, crate::RelayMetrics)> {
    let url = match config.stream_url.expose() {
        "" => cache_url,
        url => url,
    };
    let stream = EventStream::connect(url).await?;
    let mut relay = Relay::new(db.clone(), stream, config.stream_name(producer));
    relay.batch = config.relay_batch;
    relay.interval = Duration::from_millis(config.relay_interval_ms);
    relay.retention = Duration::from_secs(config.retention_hours * 3600);
    let handles = (relay.nudge(), relay.metrics.clone());
    relay.spawn();
    Ok(handles)
}
