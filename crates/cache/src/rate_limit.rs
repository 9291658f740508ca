//! GCRA (generic cell rate algorithm), after go-redis/redis_rate.
//!
//! GCRA keeps one number per key (the theoretical arrival time, TAT) instead of a window of
//! counters, refills smoothly instead of at window edges, and needs a single round trip.
//! A request takes one unit; a lease ([`Lease`]) takes several at once for a
//! replica to spend locally, and unspent units can be given back. The arithmetic
//! exists twice, in Rust for the memory store ([`take`], [`give_back`]) and in Lua
//! for Redis ([`REDIS_TAKE_SCRIPT`], [`REDIS_GIVE_BACK_SCRIPT`]); keep the two in
//! step.

use std::time::Duration;

use crate::CacheError;

/// `limit` requests per `period`; the whole quota may be spent at once (burst = limit),
/// after which it refills at one request every `period / limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period: Duration,
}

impl Quota {
    pub const fn new(limit: u32, period: Duration) -> Self {
        Quota { limit, period }
    }

    pub(crate) fn validate(&self) -> Result<(), CacheError> {
        if self.limit == 0 {
            return Err(CacheError::InvalidQuota("limit must be at least 1".into()));
        }
        if self.period.is_zero() {
            return Err(CacheError::InvalidQuota("period must be positive".into()));
        }
        Ok(())
    }

    fn emission_interval(&self) -> f64 {
        self.period.as_secs_f64() / f64::from(self.limit)
    }
}

/// Everything needed for `X-RateLimit-*` headers and a 429 `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests that would still be allowed right now; never above `limit`.
    pub remaining: u32,
    /// Time until the quota is fully refilled.
    pub reset_after: Duration,
    /// Set only when denied: how long until one request would be allowed.
    pub retry_after: Option<Duration>,
}

/// Units taken from a quota at once, to be spent later by whoever took them (a
/// gateway replica spending a local allowance). Taking `n` units is exactly what
/// `n` requests arriving together would do to the quota, so leases and single
/// requests can share one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// At most what was asked for, fewer when the quota holds fewer; zero when it
    /// is spent (or when nothing was asked for: a look at `remaining`).
    pub granted: u32,
    /// Units left in the quota after this grant; never above the limit.
    pub remaining: u32,
    /// Time until the quota is fully refilled.
    pub reset_after: Duration,
    /// Set only when units were asked for and none granted: how long until one
    /// unit is available.
    pub retry_after: Option<Duration>,
}

impl Lease {
    /// A lease of one unit is one request's decision.
    pub(crate) fn decision(self, limit: u32) -> RateDecision {
        RateDecision {
            allowed: self.granted > 0,
            limit,
            remaining: self.remaining,
            reset_after: self.reset_after,
            retry_after: self.retry_after,
        }
    }
}

/// Float error can make an exact count such as 4 come out as 3.9999999 and floor to 3;
/// one millionth of a request is far below anything observable.
pub(crate) const REMAINING_EPSILON: f64 = 1e-6;

/// The outcome of taking units at time `now`, plus the new TAT to store when any
/// were granted.
pub(crate) struct Take {
    pub lease: Lease,
    /// `(new_tat, ttl)` to store; `None` when nothing changes.
    pub store: Option<(f64, Duration)>,
}

/// Takes up to `wanted` units at time `now` (seconds on any monotonic scale shared
/// with `tat`). GCRA: the quota is full when the TAT is at or before `now`, and
/// each unit taken moves the TAT one emission interval on; at most `limit`
/// intervals ahead of `now` (the burst).
pub(crate) fn take(quota: Quota, now: f64, tat: Option<f64>, wanted: u32) -> Take {
    let interval = quota.emission_interval();
    let burst_offset = interval * f64::from(quota.limit);
    let tat = tat.unwrap_or(now).max(now);
    // `tat + interval - burst_offset` can land a hair after `now` in floating
    // point exactly at the boundary (the first request of a quota of one, a
    // request arriving just as a unit refills); within the epsilon it is on time.
    let available = floor_remaining((now + burst_offset - tat) / interval, quota.limit);
    let granted = wanted.min(available);
    if granted == 0 {
        return Take {
            lease: Lease {
                granted: 0,
                remaining: available,
                reset_after: secs(tat - now),
                retry_after: (wanted > 0).then(|| secs(tat + interval - burst_offset - now)),
            },
            store: None,
        };
    }
    let new_tat = tat + f64::from(granted) * interval;
    let reset_after = new_tat - now;
    Take {
        lease: Lease {
            granted,
            remaining: available - granted,
            reset_after: secs(reset_after),
            retry_after: None,
        },
        store: (reset_after > 0.0)
            .then(|| (new_tat, Duration::from_secs(reset_after.ceil() as u64))),
    }
}

/// Gives `units` taken earlier back: the TAT moves back as many intervals, never
/// before `now` (a quota is never fuller than full). `None`: the quota is full,
/// the key can go.
pub(crate) fn give_back(quota: Quota, now: f64, tat: f64, units: u32) -> Option<(f64, Duration)> {
    let new_tat = tat - f64::from(units) * quota.emission_interval();
    let reset_after = new_tat - now;
    (reset_after > 0.0).then(|| (new_tat, Duration::from_secs(reset_after.ceil() as u64)))
}

pub(crate) fn floor_remaining(remaining: f64, limit: u32) -> u32 {
    let floored = (remaining + REMAINING_EPSILON).floor().max(0.0);
    // `as` saturates for floats, and the min keeps the documented bound.
    (floored as u32).min(limit)
}

pub(crate) fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

/// The Redis twin of [`take`]. It reads Redis `TIME` so all replicas share one clock,
/// and returns floats as strings because Redis truncates Lua numbers to integers.
/// `ARGV`: limit, period in seconds, epsilon, units wanted. Returns `{granted,
/// remaining, retry_after (or "-1"), reset_after}`.
pub(crate) const REDIS_TAKE_SCRIPT: &str = r#"
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local epsilon = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])

local interval = period / limit
local burst_offset = interval * limit

-- Seconds since 2017-01-01: keeps the float small enough for microsecond precision.
local t = redis.call("TIME")
local now = (tonumber(t[1]) - 1483228800) + (tonumber(t[2]) / 1000000)

local tat = tonumber(redis.call("GET", key))
if not tat then
  tat = now
end
tat = math.max(tat, now)

local available = math.floor((now + burst_offset - tat) / interval + epsilon)
available = math.max(0, math.min(available, limit))
local granted = math.min(wanted, available)

if granted == 0 then
  local retry_after = "-1"
  if wanted > 0 then
    retry_after = tostring(tat + interval - burst_offset - now)
  end
  return {0, available, retry_after, tostring(tat - now)}
end

local new_tat = tat + granted * interval
local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", key, string.format("%.6f", new_tat), "EX", math.ceil(reset_after))
end
return {granted, available - granted, "-1", tostring(reset_after)}
"#;

/// The Redis twin of [`give_back`]. `ARGV`: limit, period in seconds, units.
pub(crate) const REDIS_GIVE_BACK_SCRIPT: &str = r#"
local key = KEYS[1]
local tat = tonumber(redis.call("GET", key))
if not tat then
  return 0
end
local interval = tonumber(ARGV[2]) / tonumber(ARGV[1])
local t = redis.call("TIME")
local now = (tonumber(t[1]) - 1483228800) + (tonumber(t[2]) / 1000000)
local new_tat = tat - tonumber(ARGV[3]) * interval
local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", key, string.format("%.6f", new_tat), "EX", math.ceil(reset_after))
else
  redis.call("DEL", key)
end
return 1
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// One request's outcome, plus the new TAT to store when it was allowed.
    struct Step {
        decision: RateDecision,
        /// `(new_tat, ttl)` to store; `None` when nothing changes (denied).
        store: Option<(f64, Duration)>,
    }

    /// One request: a lease of one unit.
    fn step(quota: Quota, now: f64, tat: Option<f64>) -> Step {
        let take = take(quota, now, tat, 1);
        Step {
            decision: take.lease.decision(quota.limit),
            store: take.store,
        }
    }

    #[test]
    fn burst_then_smooth_refill() {
        let quota = Quota::new(5, Duration::from_secs(60));
        let mut tat = None;
        let mut remaining = Vec::new();
        for _ in 0..5 {
            let step = step(quota, 1000.0, tat);
            assert!(step.decision.allowed);
            remaining.push(step.decision.remaining);
            tat = step.store.map(|(t, _)| t);
        }
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        let denied = step(quota, 1000.0, tat);
        assert!(!denied.decision.allowed);
        assert_eq!(denied.decision.retry_after, Some(Duration::from_secs(12)));
        assert_eq!(denied.decision.reset_after, Duration::from_secs(60));
        // One emission interval later exactly one more is allowed.
        let later = step(quota, 1012.0, tat);
        assert!(later.decision.allowed);
        assert!(
            !step(quota, 1012.0, later.store.map(|(t, _)| t))
                .decision
                .allowed
        );
    }

    #[test]
    fn boundary_requests_survive_float_rounding() {
        // `now + T - T` is not always `now` in floating point (0.1 + 1.0 - 1.0 is
        // 0.10000000000000009), whether the clock is near zero (the in-process
        // store) or epoch-sized (Redis).
        for limit in [1, 3, 7, 60, 1000] {
            let quota = Quota::new(limit, Duration::from_secs(1));
            for i in 0..2000 {
                let offset = if i % 2 == 0 { 0.0 } else { 535_000_000.0 };
                let now = offset + f64::from(i) * 0.013_7;
                assert!(
                    step(quota, now, None).decision.allowed,
                    "limit {limit}, now {now}"
                );
            }
        }
    }

    #[test]
    fn leases_take_what_is_there_and_come_back() {
        let quota = Quota::new(10, Duration::from_secs(10));
        let first = take(quota, 100.0, None, 4);
        assert_eq!((first.lease.granted, first.lease.remaining), (4, 6));
        let tat = first.store.map(|(t, _)| t);
        // More than is left: what is left.
        let second = take(quota, 100.0, tat, 8);
        assert_eq!((second.lease.granted, second.lease.remaining), (6, 0));
        let tat = second.store.map(|(t, _)| t);
        let spent = take(quota, 100.0, tat, 3);
        assert_eq!(spent.lease.granted, 0);
        assert_eq!(spent.lease.retry_after, Some(Duration::from_secs(1)));
        assert!(spent.store.is_none());
        // A look (nothing wanted) changes nothing and promises no retry time.
        let look = take(quota, 100.0, tat, 0);
        assert_eq!((look.lease.granted, look.lease.retry_after), (0, None));
        // Five units back: five available again; all back: the key can go.
        let (back, _) = give_back(quota, 100.0, tat.unwrap(), 5).unwrap();
        assert_eq!(take(quota, 100.0, Some(back), 0).lease.remaining, 5);
        assert!(give_back(quota, 100.0, back, 5).is_none());
        // Returned after some refill: never fuller than full.
        assert!(give_back(quota, 105.0, tat.unwrap(), 10).is_none());
        let (late, _) = give_back(quota, 105.0, tat.unwrap(), 2).unwrap();
        assert_eq!(take(quota, 105.0, Some(late), 0).lease.remaining, 7);
    }

    #[test]
    fn remaining_never_exceeds_limit() {
        assert_eq!(floor_remaining(7.5, 5), 5);
        assert_eq!(floor_remaining(3.999_999_9, 5), 4);
        assert_eq!(floor_remaining(-0.5, 5), 0);
    }
}
