//! The Redis backend: shared state for all replicas.

use std::sync::LazyLock;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSub};
use redis::{Client, RedisError, Script};
use tokio::sync::mpsc;

use crate::CacheError;
use crate::rate_limit::{self, Lease, Quota, RateDecision};
use crate::redis_url::{self, ConnectError, redact};
use crate::subscription::Subscription;

/// Bounds the whole pub/sub handshake, which has no timeout of its own in the driver.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
const RESUBSCRIBE_MIN_DELAY: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(5);
/// Messages buffered per subscription before new ones are dropped (and logged).
const SUBSCRIPTION_BUFFER: usize = 1024;

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(rate_limit::REDIS_TAKE_SCRIPT));
static GIVE_BACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(rate_limit::REDIS_GIVE_BACK_SCRIPT));

/// `EXISTS` and `INCRBY` in one script so that the TTL is set exactly when the key is
/// created, even if the caller dies between the two commands.
static INCR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local existed = redis.call("EXISTS", KEYS[1])
local value = redis.call("INCRBY", KEYS[1], ARGV[1])
local ttl_ms = tonumber(ARGV[2])
if existed == 0 and ttl_ms > 0 then
  redis.call("PEXPIRE", KEYS[1], ttl_ms)
end
return value
"#,
    )
});

pub(crate) struct RedisBackend {
    /// Kept to open one dedicated pub/sub connection per subscription.
    client: Client,
    connection: ConnectionManager,
    /// For error messages: the URL with any credentials blanked out.
    redacted_url: String,
}

impl RedisBackend {
    pub(crate) async fn connect(url: &str) -> Result<Self, CacheError> {
        let redacted_url = redact(url);
        let (client, connection) = redis_url::connect(url).await.map_err(|e| match e {
            ConnectError::InvalidUrl(message) => CacheError::InvalidUrl(message),
            ConnectError::Unreachable(message) => CacheError::Backend(message),
        })?;
        Ok(RedisBackend {
            client,
            connection,
            redacted_url,
        })
    }

    fn conn(&self) -> ConnectionManager {
        // A clone shares the one multiplexed connection; commands need `&mut`.
        self.connection.clone()
    }

    fn error<'a>(&'a self, op: &'a str) -> impl Fn(RedisError) -> CacheError + 'a {
        move |e| CacheError::Backend(format!("redis {op} on {}: {e}", self.redacted_url))
    }

    pub(crate) async fn ping(&self) -> Result<(), CacheError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map(drop)
            .map_err(self.error("PING"))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(self.error("GET"))
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_millis(ttl));
        }
        cmd.query_async::<()>(&mut self.conn())
            .await
            .map_err(self.error("SET"))
    }

    pub(crate) async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl_millis(ttl));
        }
        let reply: Option<String> = cmd
            .query_async(&mut self.conn())
            .await
            .map_err(self.error("SET NX"))?;
        Ok(reply.is_some())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(self.error("DEL"))?;
        Ok(removed > 0)
    }

    pub(crate) async fn incr(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        INCR.key(key)
            .arg(by)
            .arg(ttl.map_or(0, ttl_millis))
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.error("INCRBY"))
    }

    pub(crate) async fn rate_limit(
        &self,
        key: &str,
        quota: Quota,
    ) -> Result<RateDecision, CacheError> {
        Ok(self.lease(key, quota, 1).await?.decision(quota.limit))
    }

    pub(crate) async fn lease(
        &self,
        key: &str,
        quota: Quota,
        wanted: u32,
    ) -> Result<Lease, CacheError> {
        let (granted, remaining, retry_after, reset_after): (i64, i64, f64, f64) = TAKE
            .key(key)
            .arg(quota.limit)
            .arg(quota.period.as_secs_f64())
            .arg(rate_limit::REMAINING_EPSILON)
            .arg(wanted)
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.error("rate limit script"))?;
        let granted = u32::try_from(granted.max(0)).unwrap_or(0).min(wanted);
        Ok(Lease {
            granted,
            remaining: rate_limit::floor_remaining(remaining as f64, quota.limit),
            reset_after: rate_limit::secs(reset_after),
            retry_after: (granted == 0 && wanted > 0).then(|| rate_limit::secs(retry_after)),
        })
    }

    pub(crate) async fn release(
        &self,
        key: &str,
        quota: Quota,
        units: u32,
    ) -> Result<(), CacheError> {
        GIVE_BACK
            .key(key)
            .arg(quota.limit)
            .arg(quota.period.as_secs_f64())
            .arg(units)
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(self.error("rate limit give-back script"))
    }

    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(self.error("PUBLISH"))
    }

    pub(crate) async fn subscribe(&self, channel: String) -> Result<Subscription, CacheError> {
        // The first connection is made here, not in the task, so that the caller learns
        // about an unreachable server and messages published after we return are seen.
        let pubsub = open_pubsub(&self.client, &channel).await.map_err(|e| {
            CacheError::Backend(format!("redis SUBSCRIBE on {}: {e}", self.redacted_url))
        })?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let task = tokio::spawn(forward(self.client.clone(), channel, pubsub, sender));
        Ok(Subscription::from_forwarder(receiver, task))
    }
}

async fn open_pubsub(client: &Client, channel: &str) -> Result<PubSub, String> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, RedisError>(pubsub)
    };
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, connect).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("timed out after {SUBSCRIBE_TIMEOUT:?}")),
    }
}

/// Owns the pub/sub connection for one subscription: forwards payloads and, when the
/// connection drops, reconnects with backoff and subscribes again. Ends when the
/// `Subscription` is dropped (the task is aborted) or its receiver is gone.
async fn forward(
    client: Client,
    channel: String,
    mut pubsub: PubSub,
    sender: mpsc::Sender<Vec<u8>>,
) {
    loop {
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            match sender.try_send(message.get_payload_bytes().to_vec()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(%channel, "subscriber lagging; message dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        tracing::warn!(
            %channel,
            "redis pub/sub connection lost; reconnecting (messages published meanwhile are lost)"
        );
        let mut delay = RESUBSCRIBE_MIN_DELAY;
        pubsub = loop {
            if sender.is_closed() {
                return;
            }
            match open_pubsub(&client, &channel).await {
                Ok(pubsub) => {
                    tracing::info!(%channel, "redis pub/sub resubscribed");
                    break pubsub;
                }
                Err(error) => {
                    tracing::warn!(%channel, %error, ?delay, "redis pub/sub reconnect failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
                }
            }
        };
    }
}

/// Redis rejects a zero expiry, and sub-millisecond precision is meaningless here, so
/// round up to whole milliseconds, at least one.
fn ttl_millis(ttl: Duration) -> u64 {
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(1)), 1000);
    }
}
