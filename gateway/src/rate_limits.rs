//! Request budgets per credential (or per client IP when anonymous), shared by
//! every gateway replica through the cache, without a cache round trip per
//! request.
//!
//! # The budget
//!
//! Each key (an API key, a user or service-principal token, an anonymous
//! client IP) has a GCRA quota in the shared cache, as `Cache::rate_limit`
//! keeps it: `limit` per minute, all of it available at once, refilled
//! smoothly at one unit every `60 s / limit`. In Redis it is one key whose
//! arithmetic runs in Lua on the server's clock; with `cache.url = memory://`
//! the same leases run against the in-process store.
//!
//! # Leases
//!
//! A replica does not spend that budget one request at a time. It leases a
//! few units at once (`Cache::lease`: one script, what that many requests
//! arriving together would take) and spends them locally; when half of its
//! allowance is gone it leases more in the background, so a busy key's
//! requests do not wait on Redis. A lease covers what the key is expected to
//! spend on this replica within `rate_limits.lease_horizon_ms` at the rate
//! observed here: at least one unit, at most `max(1, ⌊limit / 100⌋)`, and a
//! replica never holds more than that. A request waits for a lease only when
//! the allowance is empty (a key's first request, a burst outrunning the
//! estimate, a key too slow to be worth leasing ahead for). A lease that finds
//! the budget empty is remembered until a unit is back, so requests over the
//! limit are refused here without asking again. Limits under 200 per minute
//! lease one unit per request and never ahead, which is exact.
//!
//! # Accuracy
//!
//! Every request admitted spends a unit the shared quota granted, and the
//! quota grants exactly what one limiter would admit. So over any interval
//! N replicas together admit at most what a single exact limiter could admit
//! over it, plus the units they held when it began: **at most N ×
//! max(1, ⌊limit / 100⌋) requests more, worst case** (one maximal lease per
//! replica, each at most 1% of the limit). Two replicas on a limit of
//! 1000/min: at most 20 over; on 100/min: at most 2 over.
//!
//! The error the other way is under-spending: units one replica holds
//! unspent are units another cannot have, at most one lease per replica per
//! key. They go back to the shared budget when the key has been idle for
//! [`IDLE_RETURN`] (checked every second) and when the gateway stops: the
//! limiter's drop gives them back before it returns, on a connection of its
//! own, and the process's runtime does not end before that is done. A lease
//! in flight at that moment is given back when it lands if its runtime still
//! runs; otherwise its units come back by refill within the minute.
//!
//! `X-RateLimit-Remaining` is the shared remaining as of this replica's last
//! lease plus what it holds (never above the limit, never counting what other
//! replicas hold); `X-RateLimit-Reset` is when the shared budget is full
//! again, as of that lease.
//!
//! # When Redis is unreachable
//!
//! A lease that fails or takes longer than `rate_limits.lease_timeout_ms`
//! marks the shared budget unreachable (one warning per outage). The replica
//! then spends what it holds and limits each key on its own to its share,
//! `max(1, ⌊limit / rate_limits.replicas⌋)` per minute (same arithmetic, in
//! its own memory). At most once every [`PROBE_EVERY`] one request's lease
//! asks again; the first that is granted puts the shared budget back in use
//! (logged). What is admitted during an outage is not charged to the shared
//! budget, so across an outage a key can get about one more limit (more if
//! more replicas run than configured).
//!
//! `/metrics` shows `gateway_rate_limit_leases_total{outcome}` (granted,
//! empty, unreachable: the Redis round trips), `gateway_rate_limit_held_units`
//! and `gateway_rate_limit_local` (1 during an outage).

mod allowance;

use crate::config::RateLimitConfig;
use allowance::{Allowance, Next};
use cache::{Cache, CacheError, Quota, RateDecision};
use identity::{Identity, PrincipalType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service_kit::config::CacheConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub use allowance::max_lease;

const MINUTE: Duration = Duration::from_secs(60);
/// Units held for a key nobody has used for this long go back to the shared
/// budget.
pub const IDLE_RETURN: Duration = Duration::from_secs(2);
/// While the shared budget is unreachable, one lease this often asks whether
/// it is back.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Keys unused for a whole window are forgotten: their budget is full again.
const FORGET_AFTER: Duration = MINUTE;
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long stopping may take to give unspent units back.
const GIVE_BACK_TIMEOUT: Duration = Duration::from_secs(1);

pub struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    config: RateLimitConfig,
    horizon: Duration,
    lease_timeout: Duration,
    cache: Cache,
    /// To give units back on a connection of its own when the runtime the
    /// shared one lives on is going away.
    cache_config: CacheConfig,
    /// Local limits while the shared budget is unreachable.
    local: Cache,
    buckets: Mutex<HashMap<BucketKey, Arc<Bucket>>>,
    unreachable: AtomicBool,
    next_probe: Mutex<Instant>,
    /// The gateway is stopping: units that land are given back at once.
    closing: AtomicBool,
    closed: Notify,
    /// Give-backs on stopping under way, which the process must not end
    /// before.
    giving_back: AtomicUsize,
    metrics: LeaseMetrics,
}

/// What a bucket is found under: a principal's key in the shared cache, or
/// an anonymous caller's address, whose key is formatted only when its
/// bucket is made (anonymous requests share one admission, so their bucket
/// is looked up on every request).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Named(String),
    Client(Option<IpAddr>),
}

impl BucketKey {
    /// The key of the budget in the shared cache.
    fn cache_key(&self) -> String {
        match self {
            BucketKey::Named(key) => key.clone(),
            BucketKey::Client(Some(ip)) => format!("rl:ip:{ip}"),
            BucketKey::Client(None) => "rl:ip:unknown".to_owned(),
        }
    }
}

/// A principal's bucket on this replica, once looked up: kept with what
/// the gateway remembers of a credential, so a repeat finds it at once.
#[derive(Default)]
pub struct Budget(OnceLock<Arc<Bucket>>);

/// One key's allowance on this replica.
pub(crate) struct Bucket {
    key: String,
    quota: Quota,
    allowance: Mutex<Allowance>,
    /// Wakes requests waiting for a lease in flight.
    landed: Notify,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    /// `granted`, `empty` (the budget had nothing left) or `unreachable`.
    outcome: &'static str,
}

/// What the limiter shows on `/metrics`.
#[derive(Clone, Default)]
pub struct LeaseMetrics {
    leases: Family<LeaseLabels, Counter>,
    held: Gauge,
    local: Gauge,
}

impl LeaseMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_rate_limit_leases",
            "Leases asked of the shared rate-limit budget, by outcome (granted, empty, unreachable)",
            self.leases.clone(),
        );
        registry.register(
            "gateway_rate_limit_held_units",
            "Rate-limit units leased from the shared budget and not spent yet, all keys",
            self.held.clone(),
        );
        registry.register(
            "gateway_rate_limit_local",
            "1 while the shared budget is unreachable and this replica limits on its own",
            self.local.clone(),
        );
    }

    fn lease(&self, outcome: &'static str) {
        self.leases.get_or_create(&LeaseLabels { outcome }).inc();
    }
}

impl RateLimiter {
    /// `cache` is the shared cache opened from `cache_config`. Must be called
    /// within a Tokio runtime for the background sweep (and the give-back on
    /// stop) to run there.
    pub fn new(cache: Cache, cache_config: CacheConfig, config: RateLimitConfig) -> RateLimiter {
        let shared = Arc::new(Shared {
            horizon: Duration::from_millis(config.lease_horizon_ms),
            lease_timeout: Duration::from_millis(config.lease_timeout_ms),
            config,
            cache,
            cache_config,
            local: Cache::private("rl-local:"),
            buckets: Mutex::default(),
            unreachable: AtomicBool::new(false),
            next_probe: Mutex::new(Instant::now()),
            closing: AtomicBool::new(false),
            closed: Notify::new(),
            giving_back: AtomicUsize::new(0),
            metrics: LeaseMetrics::default(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_until_closed(shared.clone()));
        }
        RateLimiter { shared }
    }

    pub fn metrics(&self) -> LeaseMetrics {
        self.shared.metrics.clone()
    }

    /// Spends one request of the caller's budget. `None` when limits are off, or
    /// when neither the shared budget nor the local fallback can decide: limits
    /// protect capacity, they do not authorize, so an outage of the cache must
    /// not take the platform down.
    pub async fn spend(
        &self,
        (identity, budget): (&Identity, &Budget),
        client: Option<IpAddr>,
    ) -> Option<RateDecision> {
        if !self.shared.config.enabled {
            return None;
        }
        let shared = &self.shared;
        let bucket = match identity.principal_type {
            // One admission, many client addresses.
            PrincipalType::Anonymous => {
                let (key, limit) = self.subject(identity, client)?;
                shared.bucket(key, limit)
            }
            // The admission keeps its principal's bucket (which is then
            // never forgotten while it is held).
            _ => match budget.0.get() {
                Some(bucket) => bucket.clone(),
                None => {
                    let (key, limit) = self.subject(identity, client)?;
                    budget.0.get_or_init(|| shared.bucket(key, limit)).clone()
                }
            },
        };
        let mut arriving = true;
        loop {
            let landed = {
                let mut allowance = lock(&bucket.allowance);
                let now = Instant::now();
                if std::mem::take(&mut arriving) {
                    allowance.arrive(now, shared.horizon);
                }
                let up = !shared.unreachable.load(Ordering::Relaxed);
                match allowance.next(now, shared.horizon, up) {
                    Next::Spent { decision, renew } => {
                        drop(allowance);
                        shared.metrics.held.dec();
                        if let Some(n) = renew {
                            spawn_lease(shared, &bucket, n);
                        }
                        return Some(decision);
                    }
                    Next::Denied(decision) => return Some(decision),
                    Next::Lease(n) => {
                        // Registered before the lease can land.
                        let landed = bucket.landed.notified();
                        drop(allowance);
                        spawn_lease(shared, &bucket, n);
                        landed
                    }
                    Next::Wait => bucket.landed.notified(),
                    Next::Local => {
                        let probe = if shared.probe_due(now) {
                            allowance.probe(now, shared.horizon)
                        } else {
                            None
                        };
                        drop(allowance);
                        if let Some(n) = probe {
                            spawn_lease(shared, &bucket, n);
                        }
                        break;
                    }
                }
            };
            // A lease that never lands (its task lost) must not hold the
            // request; it has timed out itself well before this.
            if tokio::time::timeout(2 * shared.lease_timeout, landed)
                .await
                .is_err()
            {
                break;
            }
        }
        shared.local_decision(&bucket).await
    }

    fn subject(&self, identity: &Identity, client: Option<IpAddr>) -> Option<(BucketKey, u32)> {
        let config = &self.shared.config;
        Some(match identity.principal_type {
            PrincipalType::User | PrincipalType::Service => (
                BucketKey::Named(format!("rl:token:{}", identity.principal_id)),
                config.per_token_per_minute,
            ),
            PrincipalType::ApiKey | PrincipalType::SpaceKey => (
                BucketKey::Named(format!("rl:key:{}", identity.principal_id)),
                config.per_api_key_per_minute,
            ),
            PrincipalType::System | PrincipalType::Gateway => return None,
            PrincipalType::Anonymous => (BucketKey::Client(client), config.per_ip_per_minute),
        })
    }
}

/// Stopping gives unspent units back, before the drop returns.
impl Drop for RateLimiter {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.give_back_now();
        self.shared.closed.notify_one();
    }
}

impl Shared {
    fn bucket(&self, key: BucketKey, limit: u32) -> Arc<Bucket> {
        let mut buckets = lock(&self.buckets);
        if let Some(bucket) = buckets.get(&key) {
            return bucket.clone();
        }
        let bucket = Arc::new(Bucket {
            key: key.cache_key(),
            quota: Quota::new(limit, MINUTE),
            allowance: Mutex::new(Allowance::new(limit, Instant::now())),
            landed: Notify::new(),
        });
        buckets.insert(key, bucket.clone());
        bucket
    }

    /// This replica's share of the key's limit, counted here alone.
    async fn local_decision(&self, bucket: &Bucket) -> Option<RateDecision> {
        let share = (bucket.quota.limit / self.config.replicas).max(1);
        self.local
            .rate_limit(&bucket.key, Quota::new(share, MINUTE))
            .await
            .ok()
    }

    fn probe_due(&self, now: Instant) -> bool {
        let mut next = lock(&self.next_probe);
        if now < *next {
            return false;
        }
        *next = now + PROBE_EVERY;
        true
    }

    fn reachable(&self) {
        if self.unreachable.load(Ordering::Relaxed)
            && self.unreachable.swap(false, Ordering::SeqCst)
        {
            self.metrics.local.set(0);
            tracing::info!("rate limits: the shared budget answers again; limits are shared again");
        }
    }

    fn unreachable(&self, error: &str) {
        self.metrics.lease("unreachable");
        *lock(&self.next_probe) = Instant::now() + PROBE_EVERY;
        if !self.unreachable.swap(true, Ordering::SeqCst) {
            self.metrics.local.set(1);
            tracing::warn!(
                error,
                replicas = self.config.replicas,
                "rate limits: the shared budget is unreachable; each key is limited to \
                 limit / replicas on this replica until it answers again"
            );
        }
    }

    /// Takes the units of every key nobody has used for [`IDLE_RETURN`] and
    /// forgets keys unused for a whole window.
    fn surrender_idle(&self, now: Instant) -> Vec<(Arc<Bucket>, u32)> {
        let give_back = !self.unreachable.load(Ordering::Relaxed);
        let mut idle = Vec::new();
        lock(&self.buckets).retain(|_, bucket| {
            let mut allowance = lock(&bucket.allowance);
            if allowance.in_flight() {
                return true;
            }
            let idle_for = allowance.idle_for(now);
            if give_back && idle_for >= IDLE_RETURN && allowance.held() > 0 {
                idle.push((bucket.clone(), allowance.surrender()));
            }
            // Only the map holds it: no request is using it.
            let unused = Arc::strong_count(bucket) == 1;
            !(idle_for >= FORGET_AFTER && allowance.held() == 0 && unused)
        });
        self.surrendered(idle.iter().map(|(_, units)| *units));
        idle
    }

    /// Takes every unit held, to give back on stopping.
    fn surrender_all(&self) -> Vec<(Arc<Bucket>, u32)> {
        let all: Vec<_> = lock(&self.buckets)
            .values()
            .filter_map(|bucket| {
                let units = lock(&bucket.allowance).surrender();
                (units > 0).then(|| (bucket.clone(), units))
            })
            .collect();
        self.surrendered(all.iter().map(|(_, units)| *units));
        all
    }

    fn surrendered(&self, units: impl Iterator<Item = u32>) {
        self.metrics.held.dec_by(units.map(i64::from).sum());
    }

    async fn give_back(&self, bucket: &Bucket, units: u32) {
        let released = tokio::time::timeout(
            GIVE_BACK_TIMEOUT,
            self.cache.release(&bucket.key, bucket.quota, units),
        )
        .await;
        if !matches!(released, Ok(Ok(()))) {
            // Under-spending only: they come back by refill within the minute.
            tracing::debug!(units, "rate limits: unspent units could not be given back");
        }
    }
}

fn spawn_lease(shared: &Arc<Shared>, bucket: &Arc<Bucket>, wanted: u32) {
    tokio::spawn(lease(shared.clone(), bucket.clone(), wanted));
}

/// Ends a lease however it ends (even if its task is dropped): whoever waits
/// for it asks again, and unless it was granted (which settles the allowance
/// itself, after which another lease may start at once) it is no longer in
/// flight.
struct Landing<'a> {
    bucket: &'a Bucket,
    granted: bool,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        if !self.granted {
            lock(&self.bucket.allowance).lease_over();
        }
        self.bucket.landed.notify_waiters();
    }
}

async fn lease(shared: Arc<Shared>, bucket: Arc<Bucket>, wanted: u32) {
    let mut landing = Landing {
        bucket: &bucket,
        granted: false,
    };
    let answer = tokio::time::timeout(
        shared.lease_timeout,
        shared.cache.lease(&bucket.key, bucket.quota, wanted),
    )
    .await;
    let lease = match answer {
        Ok(Ok(lease)) => lease,
        Ok(Err(e)) => return shared.unreachable(&e.to_string()),
        Err(_) => {
            return shared.unreachable(&format!(
                "no answer within {} ms (rate_limits.lease_timeout_ms)",
                shared.config.lease_timeout_ms
            ));
        }
    };
    shared.reachable();
    shared.metrics.lease(if lease.granted > 0 {
        "granted"
    } else {
        "empty"
    });
    let surplus = {
        let mut allowance = lock(&bucket.allowance);
        let granted = allowance.granted(Instant::now(), lease);
        landing.granted = true;
        shared.metrics.held.inc_by(i64::from(granted));
        if shared.closing.load(Ordering::SeqCst) {
            let units = allowance.surrender();
            shared.surrendered(std::iter::once(units));
            units
        } else {
            0
        }
    };
    drop(landing);
    if surplus > 0 {
        shared.give_back(&bucket, surplus).await;
    }
}

/// Every second, gives back what idle keys hold, until the limiter is dropped.
///
/// It also sees the process out: the drop of the limiter gives units back,
/// but it may happen on a server worker's thread while the main thread is
/// already ending the process. The main runtime drops this task before it
/// ends, and the guard then gives back what is left and waits for a give-back
/// under way elsewhere.
async fn sweep_until_closed(shared: Arc<Shared>) {
    let _guard = GiveBackOnDrop(shared.clone());
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {
                for (bucket, units) in shared.surrender_idle(Instant::now()) {
                    shared.give_back(&bucket, units).await;
                }
            }
            () = shared.closed.notified() => return,
        }
    }
}

struct GiveBackOnDrop(Arc<Shared>);

impl Drop for GiveBackOnDrop {
    fn drop(&mut self) {
        let shared = &self.0;
        shared.closing.store(true, Ordering::SeqCst);
        shared.give_back_now();
        let deadline = Instant::now() + 2 * GIVE_BACK_TIMEOUT;
        while shared.giving_back.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Shared {
    /// Gives back whatever is held, blocking until done (at most
    /// [`GIVE_BACK_TIMEOUT`]), on a thread and connection of its own: this
    /// runs while the runtime that owns the shared connection may be
    /// shutting down.
    fn give_back_now(&self) {
        self.giving_back.fetch_add(1, Ordering::SeqCst);
        let left: Vec<(String, Quota, u32)> = self
            .surrender_all()
            .into_iter()
            .map(|(bucket, units)| (bucket.key.clone(), bucket.quota, units))
            .collect();
        if !left.is_empty() && !self.unreachable.load(Ordering::Relaxed) {
            let config = self.cache_config.clone();
            let thread = std::thread::Builder::new()
                .name("rate-limit-give-back".into())
                .spawn(move || give_back_on_own_connection(&config, left));
            if let Ok(thread) = thread {
                let _ = thread.join();
            }
        }
        self.giving_back.fetch_sub(1, Ordering::SeqCst);
    }
}

fn give_back_on_own_connection(config: &CacheConfig, left: Vec<(String, Quota, u32)>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let give_back = async {
            let cache = Cache::from_config(config).await?;
            for (key, quota, units) in left {
                cache.release(&key, quota, units).await?;
            }
            Ok::<(), CacheError>(())
        };
        if !matches!(
            tokio::time::timeout(GIVE_BACK_TIMEOUT, give_back).await,
            Ok(Ok(()))
        ) {
            tracing::debug!("rate limits: unspent units could not be given back");
        }
    });
}

/// A panic elsewhere while holding a lock leaves at worst one key's allowance
/// off by a request; not worth taking the gateway down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs_f64().ceil() as u64
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset`: the Unix time (seconds)
/// when the budget is full again, as SpaceOS's rate-limit page shows it.
pub fn headers(decision: &RateDecision) -> [(&'static str, String); 3] {
    let [limit, remaining, reset] = header_numbers(decision);
    [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ]
}

fn header_numbers(decision: &RateDecision) -> [u64; 3] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    [
        decision.limit.into(),
        decision.remaining.into(),
        whole_seconds(now + decision.reset_after),
    ]
}

/// The same headers on an answer (numbers written straight into them: this
/// runs on every request).
pub fn add_headers(headers: &mut hyper::HeaderMap, decision: &RateDecision) {
    use hyper::header::{HeaderName, HeaderValue};
    const NAMES: [HeaderName; 3] = [
        HeaderName::from_static("x-ratelimit-limit"),
        HeaderName::from_static("x-ratelimit-remaining"),
        HeaderName::from_static("x-ratelimit-reset"),
    ];
    for (name, number) in NAMES.into_iter().zip(header_numbers(decision)) {
        headers.insert(name, HeaderValue::from(number));
    }
}

/// The 429 for a spent budget.
pub fn exceeded(decision: &RateDecision) -> service_kit::ApiError {
    let retry = decision.retry_after.map_or(1, whole_seconds).max(1);
    let mut error = service_kit::ApiError::rate_limited(retry);
    for (name, value) in headers(decision) {
        error = error.with_header(name, value);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::BucketKey;

    #[test]
    fn an_anonymous_callers_budget_is_kept_under_its_address() {
        let v4 = BucketKey::Client(Some("203.0.113.9".parse().unwrap()));
        let v6 = BucketKey::Client(Some("2001:db8::1".parse().unwrap()));
        assert_eq!(v4.cache_key(), "rl:ip:203.0.113.9");
        assert_eq!(v6.cache_key(), "rl:ip:2001:db8::1");
        assert_eq!(BucketKey::Client(None).cache_key(), "rl:ip:unknown");
        assert_eq!(
            BucketKey::Named("rl:key:key_1".into()).cache_key(),
            "rl:key:key_1"
        );
        assert_ne!(v4, v6);
    }
}
