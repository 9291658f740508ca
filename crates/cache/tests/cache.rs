//! The behaviour suite, written once and run on both backends.
//!
//! Every case is a plain async function over a [`Harness`]; `on_both_backends!` turns it
//! into `<case>_memory` and `<case>_redis` tests. The Redis variants need `TEST_REDIS_URL`
//! and panic without it, so a misconfigured CI fails loudly instead of passing empty;
//! skip them locally with `cargo test -p cache -- --skip _redis`.
//! Each harness has its own random key prefix, so all tests run in parallel on one server.

use std::sync::Arc;
use std::time::Duration;

use cache::{Cache, Quota, RateDecision};

/// A cache handle plus what is needed to open a second, independent handle on the same
/// backend and prefix (as a second gateway replica would).
struct Harness {
    cache: Cache,
    url: String,
    prefix: String,
}

impl Harness {
    async fn memory() -> Self {
        Self::open("memory://".to_owned()).await
    }

    async fn redis() -> Self {
        Self::open(redis_url()).await
    }

    async fn open(url: String) -> Self {
        let prefix = format!("test:{}:", ulid::Ulid::new());
        let cache = connect(&url, &prefix).await;
        Harness { cache, url, prefix }
    }

    /// A separate handle (own connection for Redis) on the same backend and prefix.
    async fn another_handle(&self) -> Cache {
        connect(&self.url, &self.prefix).await
    }

    /// A handle on the same backend under a different, unrelated prefix.
    async fn other_prefix(&self) -> Cache {
        connect(&self.url, &format!("test:{}:", ulid::Ulid::new())).await
    }
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_REDIS_URL is not set: the *_redis tests need a Redis server \
             (e.g. TEST_REDIS_URL=redis://127.0.0.1:6379); run `cargo test -- --skip _redis` \
             to leave them out"
        )
    })
}

async fn connect(url: &str, prefix: &str) -> Cache {
    let cache = Cache::connect(url, prefix)
        .await
        .unwrap_or_else(|e| panic!("cannot open test cache (is TEST_REDIS_URL reachable?): {e}"));
    cache
        .ping()
        .await
        .unwrap_or_else(|e| panic!("test cache does not answer PING: {e}"));
    cache
}

macro_rules! on_both_backends {
    ($($case:ident => $memory:ident, $redis:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $memory() {
                $case(Harness::memory().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $redis() {
                $case(Harness::redis().await).await;
            }
        )*
    };
}

on_both_backends! {
    get_set_delete_roundtrip => get_set_delete_roundtrip_memory, get_set_delete_roundtrip_redis;
    ttl_expires_and_keys_without_ttl_persist => ttl_expires_and_keys_without_ttl_persist_memory, ttl_expires_and_keys_without_ttl_persist_redis;
    set_if_absent_stores_only_once => set_if_absent_stores_only_once_memory, set_if_absent_stores_only_once_redis;
    incr_is_atomic_under_concurrency => incr_is_atomic_under_concurrency_memory, incr_is_atomic_under_concurrency_redis;
    incr_ttl_applies_only_on_creation => incr_ttl_applies_only_on_creation_memory, incr_ttl_applies_only_on_creation_redis;
    rate_limit_allows_quota_then_denies => rate_limit_allows_quota_then_denies_memory, rate_limit_allows_quota_then_denies_redis;
    rate_limit_refills_smoothly => rate_limit_refills_smoothly_memory, rate_limit_refills_smoothly_redis;
    rate_limit_is_shared_between_handles => rate_limit_is_shared_between_handles_memory, rate_limit_is_shared_between_handles_redis;
    leases_share_the_quota_with_requests => leases_share_the_quota_with_requests_memory, leases_share_the_quota_with_requests_redis;
    released_units_can_be_spent_again => released_units_can_be_spent_again_memory, released_units_can_be_spent_again_redis;
    pubsub_delivers_to_subscriber => pubsub_delivers_to_subscriber_memory, pubsub_delivers_to_subscriber_redis;
    pubsub_delivers_to_every_subscriber => pubsub_delivers_to_every_subscriber_memory, pubsub_delivers_to_every_subscriber_redis;
    pubsub_ignores_other_channels => pubsub_ignores_other_channels_memory, pubsub_ignores_other_channels_redis;
    prefixes_isolate_keys_and_channels => prefixes_isolate_keys_and_channels_memory, prefixes_isolate_keys_and_channels_redis;
}

async fn get_set_delete_roundtrip(h: Harness) {
    let c = &h.cache;
    assert_eq!(c.get("k").await.unwrap(), None);
    c.set("k", b"v1", None).await.unwrap();
    assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    c.set("k", b"\x00binary\xff", None).await.unwrap();
    assert_eq!(
        c.get("k").await.unwrap().as_deref(),
        Some(&b"\x00binary\xff"[..])
    );
    assert!(c.delete("k").await.unwrap());
    assert_eq!(c.get("k").await.unwrap(), None);
    assert!(!c.delete("k").await.unwrap());
}

async fn ttl_expires_and_keys_without_ttl_persist(h: Harness) {
    let c = &h.cache;
    c.set("short", b"v", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    c.set("forever", b"v", None).await.unwrap();
    // A plain SET drops an earlier TTL, as in Redis.
    c.set("reset", b"v", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    c.set("reset", b"v2", None).await.unwrap();
    assert!(c.get("short").await.unwrap().is_some());

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.get("short").await.unwrap(), None);
    assert!(!c.delete("short").await.unwrap());
    assert!(c.get("forever").await.unwrap().is_some());
    assert_eq!(c.get("reset").await.unwrap().as_deref(), Some(&b"v2"[..]));
}

async fn set_if_absent_stores_only_once(h: Harness) {
    let c = &h.cache;
    assert!(c.set_if_absent("idem", b"first", None).await.unwrap());
    assert!(!c.set_if_absent("idem", b"second", None).await.unwrap());
    assert_eq!(c.get("idem").await.unwrap().as_deref(), Some(&b"first"[..]));
    assert!(c.delete("idem").await.unwrap());
    assert!(c.set_if_absent("idem", b"third", None).await.unwrap());

    let ttl = Some(Duration::from_millis(300));
    assert!(c.set_if_absent("lock", b"a", ttl).await.unwrap());
    assert!(!c.set_if_absent("lock", b"b", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.set_if_absent("lock", b"c", ttl).await.unwrap());
    assert_eq!(c.get("lock").await.unwrap().as_deref(), Some(&b"c"[..]));
}

async fn incr_is_atomic_under_concurrency(h: Harness) {
    const TASKS: i64 = 50;
    const PER_TASK: i64 = 20;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let c = h.cache.clone();
            tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    c.incr("counter", 1, None).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let total = TASKS * PER_TASK;
    assert_eq!(
        h.cache.get("counter").await.unwrap(),
        Some(total.to_string().into_bytes())
    );
    assert_eq!(h.cache.incr("counter", -total, None).await.unwrap(), 0);
}

async fn incr_ttl_applies_only_on_creation(h: Harness) {
    let c = &h.cache;
    let ttl = Some(Duration::from_secs(1));
    assert_eq!(c.incr("window", 1, ttl).await.unwrap(), 1);
    // A key that exists without a TTL must not gain one from a later incr.
    assert_eq!(c.incr("plain", 5, None).await.unwrap(), 5);
    assert_eq!(
        c.incr("plain", 1, Some(Duration::from_millis(300)))
            .await
            .unwrap(),
        6
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    // Hitting the counter again must not push its expiry forward.
    assert_eq!(c.incr("window", 2, ttl).await.unwrap(), 3);
    tokio::time::sleep(Duration::from_millis(600)).await;

    assert_eq!(c.get("window").await.unwrap(), None, "TTL was extended");
    assert_eq!(c.get("plain").await.unwrap().as_deref(), Some(&b"6"[..]));
    assert_eq!(c.incr("window", 1, ttl).await.unwrap(), 1, "new window");
}

fn assert_allowed(decision: RateDecision, remaining: u32, limit: u32) {
    assert!(decision.allowed, "{decision:?}");
    assert_eq!(decision.remaining, remaining, "{decision:?}");
    assert_eq!(decision.limit, limit);
    assert_eq!(decision.retry_after, None, "{decision:?}");
}

fn assert_denied(decision: RateDecision) {
    assert!(!decision.allowed, "{decision:?}");
    assert_eq!(decision.remaining, 0, "{decision:?}");
    assert!(
        decision.retry_after.is_some_and(|d| d > Duration::ZERO),
        "{decision:?}"
    );
}

async fn rate_limit_allows_quota_then_denies(h: Harness) {
    let quota = Quota::new(5, Duration::from_secs(60));
    for expected in [4, 3, 2, 1, 0] {
        let decision = h.cache.rate_limit("api-key", quota).await.unwrap();
        assert_allowed(decision, expected, 5);
        assert!(
            decision.reset_after <= Duration::from_secs(60),
            "{decision:?}"
        );
    }
    for _ in 0..3 {
        let decision = h.cache.rate_limit("api-key", quota).await.unwrap();
        assert_denied(decision);
        // One emission interval (12 s) until the next request fits.
        let retry = decision.retry_after.unwrap();
        assert!(retry <= Duration::from_secs(12), "{decision:?}");
        assert!(retry > Duration::from_secs(11), "{decision:?}");
        assert!(
            decision.reset_after > Duration::from_secs(59),
            "{decision:?}"
        );
    }
    // Other keys have their own budget.
    assert_allowed(h.cache.rate_limit("other", quota).await.unwrap(), 4, 5);
}

async fn rate_limit_refills_smoothly(h: Harness) {
    let quota = Quota::new(10, Duration::from_secs(1));
    for _ in 0..10 {
        assert!(h.cache.rate_limit("ip", quota).await.unwrap().allowed);
    }
    assert_denied(h.cache.rate_limit("ip", quota).await.unwrap());
    // One emission interval is 100 ms: after 150 ms exactly one request fits again.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_allowed(h.cache.rate_limit("ip", quota).await.unwrap(), 0, 10);
    assert_denied(h.cache.rate_limit("ip", quota).await.unwrap());
}

async fn rate_limit_is_shared_between_handles(h: Harness) {
    let replica_b = h.another_handle().await;
    let quota = Quota::new(5, Duration::from_secs(60));
    let mut allowed = 0;
    for i in 0..10 {
        let replica = if i % 2 == 0 { &h.cache } else { &replica_b };
        if replica.rate_limit("user", quota).await.unwrap().allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
    assert_denied(replica_b.rate_limit("user", quota).await.unwrap());
    assert_denied(h.cache.rate_limit("user", quota).await.unwrap());
}

async fn leases_share_the_quota_with_requests(h: Harness) {
    let replica_b = h.another_handle().await;
    let quota = Quota::new(10, Duration::from_secs(60));
    let first = h.cache.lease("key", quota, 4).await.unwrap();
    assert_eq!(
        (first.granted, first.remaining, first.retry_after),
        (4, 6, None)
    );
    // The same budget, seen by a single request from another replica.
    assert_allowed(replica_b.rate_limit("key", quota).await.unwrap(), 5, 10);
    // More than is left: what is left.
    let rest = replica_b.lease("key", quota, 8).await.unwrap();
    assert_eq!((rest.granted, rest.remaining), (5, 0));
    assert!(rest.reset_after > Duration::from_secs(59), "{rest:?}");
    let none = h.cache.lease("key", quota, 3).await.unwrap();
    assert_eq!(none.granted, 0);
    let retry = none.retry_after.expect("when one unit is back");
    assert!(
        retry > Duration::from_secs(5) && retry <= Duration::from_secs(6),
        "{none:?}"
    );
    assert_denied(h.cache.rate_limit("key", quota).await.unwrap());
    // A look takes nothing.
    let look = h.cache.lease("other", quota, 0).await.unwrap();
    assert_eq!(
        (look.granted, look.remaining, look.retry_after),
        (0, 10, None)
    );
    assert_eq!(
        h.cache.lease("other", quota, 0).await.unwrap().remaining,
        10
    );
}

async fn released_units_can_be_spent_again(h: Harness) {
    let replica_b = h.another_handle().await;
    let quota = Quota::new(100, Duration::from_secs(60));
    assert_eq!(h.cache.lease("key", quota, 100).await.unwrap().granted, 100);
    assert_denied(replica_b.rate_limit("key", quota).await.unwrap());
    h.cache.release("key", quota, 30).await.unwrap();
    let back = replica_b.lease("key", quota, 0).await.unwrap();
    // 30 back, plus at most one refilled meanwhile (one every 0.6 s).
    assert!((30..=31).contains(&back.remaining), "{back:?}");
    assert_eq!(replica_b.lease("key", quota, 30).await.unwrap().granted, 30);
    // Everything back: the quota is full, never fuller.
    h.cache.release("key", quota, 200).await.unwrap();
    assert_eq!(h.cache.lease("key", quota, 0).await.unwrap().remaining, 100);
    // Giving back to a key that has gone is harmless.
    h.cache.release("gone", quota, 5).await.unwrap();
    assert_eq!(
        h.cache.lease("gone", quota, 0).await.unwrap().remaining,
        100
    );
}

async fn receive(subscription: &mut cache::Subscription) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(1), subscription.next())
        .await
        .expect("no message within 1 s")
        .expect("subscription ended")
}

async fn pubsub_delivers_to_subscriber(h: Harness) {
    let publisher = h.another_handle().await;
    let mut sub = h.cache.subscribe("revocations").await.unwrap();
    publisher.publish("revocations", b"key-1").await.unwrap();
    publisher.publish("revocations", b"key-2").await.unwrap();
    assert_eq!(receive(&mut sub).await, b"key-1");
    assert_eq!(receive(&mut sub).await, b"key-2");
}

async fn pubsub_delivers_to_every_subscriber(h: Harness) {
    let gateway_b = h.another_handle().await;
    let mut a = h.cache.subscribe("revocations").await.unwrap();
    let mut b = gateway_b.subscribe("revocations").await.unwrap();
    h.cache.publish("revocations", b"session-9").await.unwrap();
    assert_eq!(receive(&mut a).await, b"session-9");
    assert_eq!(receive(&mut b).await, b"session-9");
}

async fn pubsub_ignores_other_channels(h: Harness) {
    let mut sub = h.cache.subscribe("wanted").await.unwrap();
    h.cache.publish("unwanted", b"noise").await.unwrap();
    h.cache.publish("wanted", b"signal").await.unwrap();
    // Delivery is ordered, so had "noise" been delivered it would come first.
    assert_eq!(receive(&mut sub).await, b"signal");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err()
    );
}

async fn prefixes_isolate_keys_and_channels(h: Harness) {
    let other = h.other_prefix().await;
    h.cache.set("k", b"mine", None).await.unwrap();
    other.set("k", b"theirs", None).await.unwrap();
    assert_eq!(
        h.cache.get("k").await.unwrap().as_deref(),
        Some(&b"mine"[..])
    );
    assert!(other.delete("k").await.unwrap());
    assert_eq!(
        h.cache.get("k").await.unwrap().as_deref(),
        Some(&b"mine"[..])
    );

    // with_prefix appends to the prefix: `{prefix}{extra}{key}`.
    let nested = h.cache.with_prefix("tenant-1:");
    nested.set("k", b"nested", None).await.unwrap();
    assert_eq!(
        h.cache.get("tenant-1:k").await.unwrap().as_deref(),
        Some(&b"nested"[..])
    );

    let mut theirs = other.subscribe("events").await.unwrap();
    let mut mine = h.cache.subscribe("events").await.unwrap();
    h.cache.publish("events", b"for-me").await.unwrap();
    other.publish("events", b"for-them").await.unwrap();
    assert_eq!(receive(&mut mine).await, b"for-me");
    assert_eq!(receive(&mut theirs).await, b"for-them");
}

/// The background task must reconnect and resubscribe after the server drops the pub/sub
/// connection. The subscriber uses a database number no other test uses, so its
/// connection can be told apart in `CLIENT LIST` and killed without disturbing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_connection_loss_redis() {
    const DB: u32 = 15;
    let url = with_database(&redis_url(), DB);
    let h = Harness::open(url).await;
    let mut sub = h.cache.subscribe("revocations").await.unwrap();

    let admin = redis::Client::open(redis_url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    let ids: Vec<&str> = clients
        .lines()
        .filter(|line| line.split(' ').any(|field| field == format!("db={DB}")))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "expected one pub/sub client on db {DB}:\n{clients}"
    );
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(ids[0])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);

    // Messages sent while reconnecting are lost by design, so keep publishing until one
    // arrives.
    let publisher = Arc::new(h.another_handle().await);
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            publisher
                .publish("revocations", b"after-kill")
                .await
                .unwrap();
            if let Ok(message) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                return message;
            }
        }
    })
    .await
    .expect("no message after the pub/sub connection was killed");
    assert_eq!(received.as_deref(), Some(&b"after-kill"[..]));
}

/// The same server and credentials with the database number replaced.
fn with_database(url: &str, db: u32) -> String {
    let (scheme, rest) = url.split_once("://").expect("TEST_REDIS_URL has no scheme");
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let query = tail.find(['?', '#']).map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}
