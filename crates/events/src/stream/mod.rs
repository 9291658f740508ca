//! The event stream: Redis Streams in production, a process-wide in-process
//! stream in the devstack, one API over both.
//!
//! Semantics (both backends): a stream is an append-only log of entries with
//! increasing ids (`<ms>-<seq>`), trimmed to about `max_len` entries. A consumer
//! group remembers the last entry it handed out; each read hands out newer
//! entries to one consumer of the group and records them as pending (owner,
//! delivery time) until acknowledged. Entries a consumer held longer than a
//! minimum idle time can be claimed by another (`XAUTOCLAIM`), which is how the
//! work of a dead consumer is picked up.

mod memory;
mod redis_backend;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Event;
use memory::MemoryBus;
use redis_backend::RedisStream;

/// Entries a stream keeps by default before the oldest are trimmed (`MAXLEN ~`).
///
/// Trimming ignores consumer groups: a group that falls further behind than
/// this loses the oldest entries it had not read. At ~0.5 KB an entry this is
/// about 50 MB of Redis memory, several minutes at 1,000 events/s and hours at
/// ordinary rates; raise it with [`EventStream::with_max_len`] where consumers
/// may stay down longer.
pub const DEFAULT_MAX_LEN: u64 = 100_000;

/// The field of a stream entry that holds the event, as JSON.
pub(crate) const EVENT_FIELD: &str = "event";

/// Stream failures. Messages never contain a URL's password.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The URL cannot be used.
    #[error("invalid event stream URL: {0}")]
    InvalidUrl(String),
    /// The consumer group (or its stream) does not exist, for example after
    /// Redis restarted without persistence; `ensure_group` creates it again.
    #[error("consumer group does not exist: {0}")]
    NoGroup(String),
    /// The backend failed or cannot be reached.
    #[error("event stream error: {0}")]
    Backend(String),
    /// An event could not be encoded as JSON.
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// An entry handed to a consumer: acknowledge `entry_id` once the event is handled.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub entry_id: String,
    pub event: Event,
}

/// How far a consumer group is behind its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Entries handed out and not acknowledged yet.
    pub pending: u64,
    /// Entries not handed out yet. `None` when Redis cannot tell (entries in
    /// the unread range were deleted, or a server older than 7.0).
    pub undelivered: Option<u64>,
}

/// A handle on an event stream backend. Cloning is cheap; clones share the
/// connection (Redis) or the data (memory).
#[derive(Clone)]
pub struct EventStream {
    backend: Arc<Backend>,
    max_len: u64,
}

enum Backend {
    Memory(Arc<MemoryBus>),
    Redis(Box<RedisStream>),
}

impl fmt::Debug for EventStream {
    // By hand, so that nothing of the URL (passwords) reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("backend", &self.backend_name())
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl EventStream {
    /// Opens the stream backend a URL names, by its scheme:
    ///
    /// - `redis://…` / `rediss://…`: Redis Streams over a `ConnectionManager`
    ///   (reconnects by itself after a drop; a command during an outage fails and
    ///   is retried by its caller). Blocking reads use connections of their own,
    ///   so they never stall publishing.
    /// - `memory://NAME`: the in-process stream store named NAME, process-wide:
    ///   every handle opened with the same URL in one process shares it, as the
    ///   devstack's parts must; `memory://` is the default store.
    pub async fn connect(url: &str) -> Result<EventStream, StreamError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(StreamError::InvalidUrl(
                "missing scheme (expected redis://, rediss:// or memory://)".into(),
            ));
        };
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "memory" => Backend::Memory(memory::bus_named(rest)),
            "redis" | "rediss" => Backend::Redis(Box::new(RedisStream::connect(url).await?)),
            other => {
                // Only the scheme is echoed: the rest may hold credentials.
                return Err(StreamError::InvalidUrl(format!(
                    "unsupported scheme `{other}` (expected redis://, rediss:// or memory://)"
                )));
            }
        };
        Ok(EventStream {
            backend: Arc::new(backend),
            max_len: DEFAULT_MAX_LEN,
        })
    }

    /// Sets the approximate bound on a stream's length applied when this handle
    /// publishes (at least 1).
    pub fn with_max_len(mut self, max_len: u64) -> EventStream {
        self.max_len = max_len.max(1);
        self
    }

    pub fn max_len(&self) -> u64 {
        self.max_len
    }

    /// `memory` or `redis`, for logs.
    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// Reachability, for readiness checks.
    pub async fn ping(&self) -> Result<(), StreamError> {
        match &*self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(redis) => redis.ping().await,
        }
    }

    /// Appends one event (`XADD … MAXLEN ~ max_len`); returns its entry id.
    pub async fn publish(&self, stream: &str, event: &Event) -> Result<String, StreamError> {
        let mut ids = self
            .publish_batch(stream, std::slice::from_ref(event))
            .await?;
        ids.pop()
            .ok_or_else(|| StreamError::Backend("XADD returned no entry id".into()))
    }

    /// Appends events in order, all or none: on Redis one `MULTI`/`EXEC`
    /// pipeline, one round trip. Returns the entry ids in the same order.
    ///
    /// On an error the caller cannot know whether the server applied the batch
    /// (the reply may have been lost), so it must be ready to publish it again:
    /// the stream is at-least-once.
    pub async fn publish_batch(
        &self,
        stream: &str,
        events: &[Event],
    ) -> Result<Vec<String>, StreamError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let payloads = events
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        match &*self.backend {
            Backend::Memory(bus) => Ok(bus.publish(stream, payloads, self.max_len)),
            Backend::Redis(redis) => redis.publish(stream, &payloads, self.max_len).await,
        }
    }

    /// Sets the stream's epoch marker (a key beside the stream, in the same
    /// server) unless it is set; true when it was not. A marker that is gone
    /// means the server lost its data (a Redis without persistence restarted)
    /// or the stream is new: whatever was published to it before may be gone
    /// with it, so the relay publishes its retained rows again (consumers
    /// deduplicate by event id).
    pub async fn claim_epoch(&self, stream: &str) -> Result<bool, StreamError> {
        match &*self.backend {
            Backend::Memory(bus) => Ok(bus.claim_epoch(stream)),
            Backend::Redis(redis) => redis.claim_epoch(stream).await,
        }
    }

    /// Removes the stream's epoch marker: a relay that claimed it and then
    /// could not commit the re-publication gives it back.
    pub async fn drop_epoch(&self, stream: &str) -> Result<(), StreamError> {
        match &*self.backend {
            Backend::Memory(bus) => {
                bus.drop_epoch(stream);
                Ok(())
            }
            Backend::Redis(redis) => redis.drop_epoch(stream).await,
        }
    }

    /// Creates the consumer group (and the stream) unless it exists. A new group
    /// starts at the beginning of what the stream retains, so that events
    /// published before the consumer was first deployed are not skipped
    /// (consumers deduplicate by event id anyway).
    pub async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), StreamError> {
        match &*self.backend {
            Backend::Memory(bus) => {
                bus.ensure_group(stream, group);
                Ok(())
            }
            Backend::Redis(redis) => redis.ensure_group(stream, group).await,
        }
    }

    /// Hands up to `count` entries the group has not handed out yet to
    /// `consumer` (`XREADGROUP … >`), which then holds them pending until it
    /// acknowledges them. When there are none, waits up to `block` for new ones
    /// (`Duration::ZERO`: do not wait). Fails with [`StreamError::NoGroup`] when
    /// the group does not exist.
    ///
    /// An entry whose payload is not an event can never be handled: it is
    /// logged, acknowledged and left out.
    pub async fn read(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, StreamError> {
        let count = count.max(1);
        let entries = match &*self.backend {
            Backend::Memory(bus) => bus.read(stream, group, consumer, count, block).await?,
            Backend::Redis(redis) => redis.read(stream, group, consumer, count, block).await?,
        };
        self.decode(stream, group, entries).await
    }

    /// Acknowledges handled entries; returns how many were pending.
    pub async fn ack(
        &self,
        stream: &str,
        group: &str,
        entry_ids: &[String],
    ) -> Result<u64, StreamError> {
        if entry_ids.is_empty() {
            return Ok(0);
        }
        match &*self.backend {
            Backend::Memory(bus) => Ok(bus.ack(stream, group, entry_ids)),
            Backend::Redis(redis) => redis.ack(stream, group, entry_ids).await,
        }
    }

    /// Takes over up to `count` entries that some consumer of the group has held
    /// for at least `min_idle` without acknowledging them (`XAUTOCLAIM`), oldest
    /// first, and hands them to `consumer`. This is how entries of a consumer
    /// that died, or whose handler failed, are handled again. Pending entries
    /// whose stream entry was trimmed away are dropped from the pending list.
    pub async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, StreamError> {
        let count = count.max(1);
        let entries = match &*self.backend {
            Backend::Memory(bus) => bus.claim_stale(stream, group, consumer, min_idle, count)?,
            Backend::Redis(redis) => {
                redis
                    .claim_stale(stream, group, consumer, min_idle, count)
                    .await?
            }
        };
        self.decode(stream, group, entries).await
    }

    /// Removes from the group the consumers other than `keep` that hold no
    /// pending entry and have been idle for at least `idle`: the names of
    /// replicas that went away, which Redis otherwise keeps for good. Each is
    /// removed by a script that checks again, atomically, that it holds
    /// nothing, so no entry handed out in between is ever dropped; a live
    /// consumer removed while idle comes back with its next read. Returns how
    /// many went. The in-process stream keeps no consumers: nothing to do.
    pub async fn forget_idle_consumers(
        &self,
        stream: &str,
        group: &str,
        keep: &str,
        idle: Duration,
    ) -> Result<usize, StreamError> {
        match &*self.backend {
            Backend::Memory(_) => Ok(0),
            Backend::Redis(redis) => redis.forget_idle_consumers(stream, group, keep, idle).await,
        }
    }

    /// How far the group is behind (`XINFO GROUPS`).
    pub async fn lag(&self, stream: &str, group: &str) -> Result<Lag, StreamError> {
        match &*self.backend {
            Backend::Memory(bus) => bus.lag(stream, group),
            Backend::Redis(redis) => redis.lag(stream, group).await,
        }
    }

    /// Entries as events; the undecodable ones are acknowledged and dropped,
    /// since no retry can make them readable.
    async fn decode(
        &self,
        stream: &str,
        group: &str,
        entries: Vec<RawEntry>,
    ) -> Result<Vec<Delivery>, StreamError> {
        let mut deliveries = Vec::with_capacity(entries.len());
        let mut poison = Vec::new();
        for entry in entries {
            match entry.payload.as_deref().map(serde_json::from_str::<Event>) {
                Some(Ok(event)) => deliveries.push(Delivery {
                    entry_id: entry.id,
                    event,
                }),
                Some(Err(error)) => {
                    tracing::error!(%stream, %group, entry_id = %entry.id, %error,
                        "stream entry is not an event; acknowledged and skipped");
                    poison.push(entry.id);
                }
                None => {
                    tracing::error!(%stream, %group, entry_id = %entry.id,
                        "stream entry has no `event` field; acknowledged and skipped");
                    poison.push(entry.id);
                }
            }
        }
        if !poison.is_empty() {
            self.ack(stream, group, &poison).await?;
        }
        Ok(deliveries)
    }
}

/// An entry as a backend returns it: the id and the `event` field, if any.
pub(crate) struct RawEntry {
    pub(crate) id: String,
    pub(crate) payload: Option<String>,
}

/// `/readyz` sees the stream through this.
impl service_kit::ReadinessCheck for EventStream {
    fn name(&self) -> &'static str {
        "event stream"
    }

    fn check(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.ping().await.map_err(|e| e.to_string()) })
    }
}
