//! One cache API over Redis and an in-process store.
//!
//! Production runs several gateway replicas that must agree on rate limits, idempotency
//! keys and revocations, so they talk to Redis. The devstack and most tests run everything
//! in one process without external services, so the same calls work against an in-process
//! store. The backend is picked from the URL scheme, never by trying one after the other.
//!
//! Every key and channel name is prefixed with the handle's key prefix, so tenants and
//! parallel tests can share one Redis without seeing each other.

mod memory;
mod rate_limit;
mod redis_backend;
pub mod redis_url;
mod subscription;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use rate_limit::{Lease, Quota, RateDecision};
pub use subscription::Subscription;

use memory::MemoryStore;
use redis_backend::RedisBackend;

/// Errors are strings rather than wrapped sources because callers only ever log them or
/// answer 503; keeping `redis` types out of the public API lets services switch backends
/// without touching their error mapping.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The URL cannot be used. The message never repeats the URL's password.
    #[error("invalid cache URL: {0}")]
    InvalidUrl(String),
    /// A quota that would divide by zero; a configuration mistake, not an outage.
    #[error("invalid rate-limit quota: {0}")]
    InvalidQuota(String),
    /// The backend failed or is unreachable; callers usually treat this as "unavailable".
    #[error("cache backend error: {0}")]
    Backend(String),
}

/// A handle on a cache. Cloning is cheap (an `Arc`), so each request handler may hold its
/// own copy; all clones share the connection and, for `memory://`, the data.
#[derive(Clone)]
pub struct Cache {
    backend: Arc<Backend>,
    prefix: Arc<str>,
    /// Prefix of pub/sub channels. The channels are the platform's bus (the
    /// gateway hears what the services publish), so unlike keys they are not
    /// under each part's own prefix.
    bus_prefix: Arc<str>,
}

enum Backend {
    Memory(Arc<MemoryStore>),
    Redis(RedisBackend),
}

impl fmt::Debug for Cache {
    // Hand-written so that nothing from the connection URL (passwords) can leak into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.backend_name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Cache {
    /// Opens the cache named by `url`.
    ///
    /// `memory://` is the process-wide default in-process store: every handle opened with it
    /// in one process shares data and pub/sub, because the devstack runs the gateway and the
    /// services in one process and they must share the revocation bus. `memory://NAME` is a
    /// separate named process-wide store, for tests that want isolation. `redis://` and
    /// `rediss://` use a `ConnectionManager`, which reconnects by itself after a drop.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Cache, CacheError> {
        Cache::connect_with_bus(url, key_prefix, key_prefix).await
    }

    /// Like `connect`, with channels under `bus_prefix` rather than the key prefix.
    pub async fn connect_with_bus(
        url: &str,
        key_prefix: &str,
        bus_prefix: &str,
    ) -> Result<Cache, CacheError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(CacheError::InvalidUrl(
                "missing scheme (expected redis://, rediss:// or memory://)".into(),
            ));
        };
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "memory" => Backend::Memory(memory::store_named(rest)),
            "redis" | "rediss" => Backend::Redis(RedisBackend::connect(url).await?),
            other => {
                // Only the scheme is echoed: the rest may hold credentials.
                return Err(CacheError::InvalidUrl(format!(
                    "unsupported scheme `{other}` (expected redis://, rediss:// or memory://)"
                )));
            }
        };
        Ok(Cache {
            backend: Arc::new(backend),
            prefix: key_prefix.into(),
            bus_prefix: bus_prefix.into(),
        })
    }

    /// An in-process store of its own, shared only by this handle's clones: state
    /// one process keeps for itself whatever `cache.url` says (a gateway's local
    /// rate limits while Redis is unreachable).
    pub fn private(key_prefix: &str) -> Cache {
        Cache {
            backend: Arc::new(Backend::Memory(Arc::new(MemoryStore::new()))),
            prefix: key_prefix.into(),
            bus_prefix: key_prefix.into(),
        }
    }

    /// For logs and readiness output, so operators can see which store a process uses.
    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// A handle on the same backend whose keys live under `prefix + extra`; lets one
    /// connection serve several namespaces (per feature, per tenant) without key clashes.
    pub fn with_prefix(&self, extra: &str) -> Cache {
        Cache {
            backend: Arc::clone(&self.backend),
            prefix: format!("{}{extra}", self.prefix).into(),
            bus_prefix: Arc::clone(&self.bus_prefix),
        }
    }

    /// Readiness probe: fails when Redis cannot be reached, so the orchestrator stops
    /// routing traffic to an instance that could not enforce rate limits.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &*self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(redis) => redis.ping().await,
        }
    }

    /// Expired keys read as absent on both backends, even before Redis or the sweep evicts them.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(store) => Ok(store.get(&key)),
            Backend::Redis(redis) => redis.get(&key).await,
        }
    }

    /// Overwrites the value. Without a TTL the key persists, and any earlier TTL is dropped
    /// (Redis `SET` semantics, mirrored by the memory store).
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(store) => {
                store.set(key, value, ttl);
                Ok(())
            }
            Backend::Redis(redis) => redis.set(&key, value, ttl).await,
        }
    }

    /// Stores only if the key does not exist (`SET NX`) and returns whether it stored; the
    /// building block for idempotency keys and one-shot locks across replicas.
    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(store) => Ok(store.set_if_absent(key, value, ttl)),
            Backend::Redis(redis) => redis.set_if_absent(&key, value, ttl).await,
        }
    }

    /// Returns whether a key was removed, so callers can tell "revoked now" from "already gone".
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(store) => Ok(store.delete(&key)),
            Backend::Redis(redis) => redis.delete(&key).await,
        }
    }

    /// Atomic `INCRBY`. The TTL is applied only when this call creates the key, so a
    /// fixed-window counter expires one window after its first hit instead of being pushed
    /// forward by every hit; in Redis the check and the expiry run in one Lua script so no
    /// replica can observe a counter that never expires.
    pub async fn incr(&self, key: &str, by: i64, ttl: Option<Duration>) -> Result<i64, CacheError> {
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(store) => store.incr(key, by, ttl),
            Backend::Redis(redis) => redis.incr(&key, by, ttl).await,
        }
    }

    /// GCRA rate limit (one unit per call). In Redis the whole decision runs in one Lua
    /// script that reads the server's `TIME`, so replicas with skewed clocks still share
    /// one limit; the memory store applies the same arithmetic under a lock.
    pub async fn rate_limit(&self, key: &str, quota: Quota) -> Result<RateDecision, CacheError> {
        quota.validate()?;
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(store) => store.rate_limit(key, quota),
            Backend::Redis(redis) => redis.rate_limit(&key, quota).await,
        }
    }

    /// Takes up to `wanted` units of a GCRA quota at once, for the caller to spend
    /// locally (a gateway replica's allowance): the same key and arithmetic as
    /// [`Cache::rate_limit`], so taking `n` units is what `n` requests arriving
    /// together would do. Fewer are granted when fewer are left, none when the quota
    /// is spent (then `retry_after` says when one unit is back). `wanted = 0` only
    /// looks. One Lua script in Redis, reading the server's `TIME`.
    pub async fn lease(&self, key: &str, quota: Quota, wanted: u32) -> Result<Lease, CacheError> {
        quota.validate()?;
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(store) => store.lease(key, quota, wanted),
            Backend::Redis(redis) => redis.lease(&key, quota, wanted).await,
        }
    }

    /// Gives back `units` leased earlier and not spent: the quota grows by as many,
    /// never past full (units that would have refilled meanwhile are not counted
    /// twice). A key that has expired is left alone.
    pub async fn release(&self, key: &str, quota: Quota, units: u32) -> Result<(), CacheError> {
        quota.validate()?;
        if units == 0 {
            return Ok(());
        }
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(store) => {
                store.release(key, quota, units);
                Ok(())
            }
            Backend::Redis(redis) => redis.release(&key, quota, units).await,
        }
    }

    /// Fire-and-forget delivery to current subscribers; nothing is stored for later ones.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        let channel = self.channel(channel);
        match &*self.backend {
            Backend::Memory(store) => {
                store.publish(&channel, payload);
                Ok(())
            }
            Backend::Redis(redis) => redis.publish(&channel, payload).await,
        }
    }

    /// A stream of payloads published on `channel` after this call returned.
    ///
    /// With Redis, each subscription has its own pub/sub connection, watched by a background
    /// task that reconnects and resubscribes (with a logged warning) when it drops. Messages
    /// published while disconnected are lost, so consumers that must not miss an event (such
    /// as revocations) should also bound how long they trust cached state. Dropping the
    /// `Subscription` closes its connection.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError> {
        let channel = self.channel(channel);
        match &*self.backend {
            Backend::Memory(store) => Ok(store.subscribe(&channel)),
            Backend::Redis(redis) => redis.subscribe(channel).await,
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn channel(&self, channel: &str) -> String {
        format!("{}{channel}", self.bus_prefix)
    }
}

impl Cache {
    /// Connects with a part's `cache.*` settings.
    pub async fn from_config(
        config: &service_kit::config::CacheConfig,
    ) -> Result<Cache, CacheError> {
        Cache::connect_with_bus(config.url.expose(), &config.key_prefix, &config.bus_prefix).await
    }
}

/// `/readyz` sees the cache through this.
impl service_kit::ReadinessCheck for Cache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn check(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.ping().await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn named_memory_stores_are_separate_and_default_is_shared() {
        let prefix = "unit:stores:";
        let a = Cache::connect("memory://a", prefix).await.unwrap();
        let b = Cache::connect("memory://b", prefix).await.unwrap();
        a.set("k", b"from-a", None).await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
        let a_again = Cache::connect("memory://a", prefix).await.unwrap();
        assert_eq!(
            a_again.get("k").await.unwrap().as_deref(),
            Some(&b"from-a"[..])
        );

        let d1 = Cache::connect("memory://", prefix).await.unwrap();
        let d2 = Cache::connect("memory://", prefix).await.unwrap();
        d1.set("shared", b"yes", None).await.unwrap();
        assert_eq!(
            d2.get("shared").await.unwrap().as_deref(),
            Some(&b"yes"[..])
        );
        assert_eq!(a.get("shared").await.unwrap(), None);
        assert_eq!(d1.backend_name(), "memory");

        let own = Cache::private(prefix);
        own.set("shared", b"no", None).await.unwrap();
        assert_eq!(
            d1.get("shared").await.unwrap().as_deref(),
            Some(&b"yes"[..])
        );
        assert_eq!(
            own.clone().get("shared").await.unwrap().as_deref(),
            Some(&b"no"[..])
        );
        assert_eq!(Cache::private(prefix).get("shared").await.unwrap(), None);
    }

    /// Parts keep their keys apart but share one bus: what auth-service
    /// publishes under its own key prefix reaches the gateway under another.
    #[tokio::test]
    async fn parts_with_their_own_key_prefixes_share_the_bus() {
        let auth = Cache::connect_with_bus("memory://unit-bus-share", "auth:", "bus:")
            .await
            .unwrap();
        let gateway = Cache::connect_with_bus("memory://unit-bus-share", "gateway:", "bus:")
            .await
            .unwrap();
        let mut heard = gateway.subscribe("revocations").await.unwrap();
        auth.publish("revocations", b"key-1").await.unwrap();
        assert_eq!(heard.next().await.as_deref(), Some(&b"key-1"[..]));
        auth.set("k", b"auth's", None).await.unwrap();
        assert_eq!(gateway.get("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn default_memory_store_shares_pub_sub() {
        let d1 = Cache::connect("memory://", "unit:bus:").await.unwrap();
        let d2 = Cache::connect("memory://", "unit:bus:").await.unwrap();
        let mut sub = d2.subscribe("revocations").await.unwrap();
        d1.publish("revocations", b"key-1").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(1), sub.next()).await;
        assert_eq!(got.unwrap().as_deref(), Some(&b"key-1"[..]));
    }

    #[tokio::test]
    async fn unsupported_scheme_is_invalid_url_without_password() {
        let err = Cache::connect("memcached://user:hunter2@cache:11211", "p:")
            .await
            .unwrap_err();
        assert!(matches!(err, CacheError::InvalidUrl(_)), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("memcached"), "{text}");
        assert!(!text.contains("hunter2"), "password leaked: {text}");

        let err = Cache::connect("user:hunter2@nowhere", "p:")
            .await
            .unwrap_err();
        assert!(matches!(err, CacheError::InvalidUrl(_)), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn unreachable_server_error_hides_password() {
        // Port 1 on loopback refuses connections immediately.
        let err = Cache::connect("redis://user:hunter2@127.0.0.1:1/0", "p:")
            .await
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "password leaked: {text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }

    #[tokio::test]
    async fn with_prefix_extends_the_prefix() {
        let base = Cache::connect("memory://unit-prefix", "svc:")
            .await
            .unwrap();
        let tenant = base.with_prefix("tenant-1:");
        tenant.set("k", b"v", None).await.unwrap();
        assert_eq!(
            base.get("tenant-1:k").await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(base.get("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn zero_quota_is_rejected() {
        let cache = Cache::connect("memory://unit-quota", "q:").await.unwrap();
        let err = cache
            .rate_limit("k", Quota::new(0, Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, CacheError::InvalidQuota(_)));
        let err = cache
            .rate_limit("k", Quota::new(5, Duration::ZERO))
            .await
            .unwrap_err();
        assert!(matches!(err, CacheError::InvalidQuota(_)));
    }
}
