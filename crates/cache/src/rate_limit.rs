//! GCRA (generic cell rate algorithm), after go-redis/redis_rate.
//!
//! GCRA keeps one number per key (the theoretical arrival time, TAT) instead of a window of
//! counters, refills smoothly instead of at window edges, and needs a single round trip.
//! The arithmetic exists twice, in Rust for the memory store and in Lua for Redis
//! ([`REDIS_SCRIPT`]); keep the two in step.

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

/// Float error can make an exact count such as 4 come out as 3.9999999 and floor to 3;
/// one millionth of a request is far below anything observable.
pub(crate) const REMAINING_EPSILON: f64 = 1e-6;

/// The outcome of one GCRA step, plus the new TAT to store when the request was allowed.
pub(crate) struct Step {
    pub decision: RateDecision,
    /// `(new_tat, ttl)` to store; `None` when nothing changes (denied).
    pub store: Option<(f64, Duration)>,
}

/// One GCRA step at time `now` (seconds on any monotonic scale shared with `tat`).
pub(crate) fn step(quota: Quota, now: f64, tat: Option<f64>) -> Step {
    let interval = quota.emission_interval();
    let burst_offset = interval * f64::from(quota.limit);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat - burst_offset;
    let diff = now - allow_at;
    let remaining = diff / interval;

    // `tat + interval - burst_offset` can land a hair after `now` in floating
    // point exactly at the boundary (the first request of a quota of one, a
    // request arriving just as a unit refills); within the epsilon it is on time.
    if remaining + REMAINING_EPSILON < 0.0 {
        return Step {
            decision: RateDecision {
                allowed: false,
                limit: quota.limit,
                remaining: 0,
                reset_after: secs(tat - now),
                retry_after: Some(secs(-diff)),
            },
            store: None,
        };
    }
    let reset_after = new_tat - now;
    Step {
        decision: RateDecision {
            allowed: true,
            limit: quota.limit,
            remaining: floor_remaining(remaining, quota.limit),
            reset_after: secs(reset_after),
            retry_after: None,
        },
        store: (reset_after > 0.0)
            .then(|| (new_tat, Duration::from_secs(reset_after.ceil() as u64))),
    }
}

pub(crate) fn floor_remaining(remaining: f64, limit: u32) -> u32 {
    let floored = (remaining + REMAINING_EPSILON).floor().max(0.0);
    // `as` saturates for floats, and the min keeps the documented bound.
    (floored as u32).min(limit)
}

pub(crate) fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

/// The Redis twin of [`step`]. It reads Redis `TIME` so all replicas share one clock,
/// and returns floats as strings because Redis truncates Lua numbers to integers.
/// `ARGV`: limit, period in seconds, epsilon. Returns `{allowed, remaining, retry_after,
/// reset_after}`.
pub(crate) const REDIS_SCRIPT: &str = r#"
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local epsilon = tonumber(ARGV[3])

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

local new_tat = tat + interval
local allow_at = new_tat - burst_offset
local diff = now - allow_at
local remaining = diff / interval

if remaining + epsilon < 0 then
  return {0, 0, tostring(-diff), tostring(tat - now)}
end

local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", key, string.format("%.6f", new_tat), "EX", math.ceil(reset_after))
end
return {1, math.floor(remaining + epsilon), "-1", tostring(reset_after)}
"#;

#[cfg(test)]
mod tests {
    use super::*;

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
    fn remaining_never_exceeds_limit() {
        assert_eq!(floor_remaining(7.5, 5), 5);
        assert_eq!(floor_remaining(3.999_999_9, 5), 4);
        assert_eq!(floor_remaining(-0.5, 5), 0);
    }
}
