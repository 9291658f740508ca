//! One key's local allowance on one replica: units leased from the shared
//! budget and not spent yet, what the budget said when they were leased, and
//! when to lease more. No I/O here: the limiter runs the leases this asks for.

use cache::{Lease, RateDecision};
use std::time::{Duration, Instant};

/// The most one replica holds of a key's budget at a time: 1% of the limit,
/// at least one unit. It bounds both the overshoot (module doc of
/// `rate_limits`) and the units one replica can keep from the others.
pub fn max_lease(limit: u32) -> u32 {
    (limit / 100).max(1)
}

/// What a request should do next.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Spent a leased unit. `renew`: units to lease now, in the background
    /// (the allowance is running low and the key is busy).
    Spent {
        decision: RateDecision,
        renew: Option<u32>,
    },
    /// The shared budget was empty at the last lease and has not refilled.
    Denied(RateDecision),
    /// Lease this many units, then ask again.
    Lease(u32),
    /// A lease is in flight: wait for it, then ask again.
    Wait,
    /// The shared budget is unreachable and nothing is held: decide locally.
    Local,
}

#[derive(Debug)]
pub struct Allowance {
    limit: u32,
    /// Leased, not spent.
    held: u32,
    /// The shared budget's remaining units as of the last lease.
    shared_remaining: u32,
    /// When the shared budget is full again, as of the last lease.
    reset_at: Option<Instant>,
    /// The last lease found the budget empty: nothing before this.
    denied_until: Option<Instant>,
    in_flight: bool,
    /// Arrivals here in the current and the previous horizon-long window: a
    /// sliding count of the requests in the last horizon, the estimate of
    /// those in the next.
    window_start: Instant,
    this_window: u32,
    last_window: u32,
    last_used: Instant,
}

impl Allowance {
    pub fn new(limit: u32, now: Instant) -> Allowance {
        Allowance {
            limit,
            held: 0,
            shared_remaining: limit,
            reset_at: None,
            denied_until: None,
            in_flight: false,
            window_start: now,
            this_window: 0,
            last_window: 0,
            last_used: now,
        }
    }

    /// A request arrives (counted once, however often it asks [`next`]).
    pub fn arrive(&mut self, now: Instant, horizon: Duration) {
        self.last_used = now;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= horizon {
            let windows = elapsed.as_nanos() / horizon.as_nanos().max(1);
            self.last_window = if windows == 1 { self.this_window } else { 0 };
            self.this_window = 0;
            let into = elapsed.as_nanos() % horizon.as_nanos().max(1);
            self.window_start = now - Duration::from_nanos(into as u64);
        }
        self.this_window = self.this_window.saturating_add(1);
    }

    /// What the request should do. `shared_up`: the shared budget answered the
    /// last time it was asked.
    pub fn next(&mut self, now: Instant, horizon: Duration, shared_up: bool) -> Next {
        if self.held > 0 {
            self.held -= 1;
            let decision = self.allowed(now);
            let renew = if shared_up && !self.in_flight && !self.is_denied(now) {
                self.renewal(now, horizon)
            } else {
                None
            };
            if let Some(n) = renew {
                self.in_flight = true;
                debug_assert!(n + self.held <= max_lease(self.limit));
            }
            return Next::Spent { decision, renew };
        }
        if let Some(until) = self.denied_until {
            if until > now {
                return Next::Denied(self.denied(now, until));
            }
            self.denied_until = None;
        }
        match (self.in_flight, shared_up) {
            (true, true) => Next::Wait,
            (_, false) => Next::Local,
            (false, true) => {
                self.in_flight = true;
                Next::Lease(self.target(now, horizon))
            }
        }
    }

    /// Starts a lease while the shared budget is thought unreachable (a probe),
    /// unless one is in flight. Only asked for when nothing is held.
    pub fn probe(&mut self, now: Instant, horizon: Duration) -> Option<u32> {
        if self.in_flight || self.held > 0 {
            return None;
        }
        self.in_flight = true;
        Some(self.target(now, horizon))
    }

    /// A lease came back. Returns the units granted.
    pub fn granted(&mut self, now: Instant, lease: Lease) -> u32 {
        self.in_flight = false;
        self.held = self.held.saturating_add(lease.granted);
        self.shared_remaining = lease.remaining;
        self.reset_at = Some(now + lease.reset_after);
        self.denied_until = match (lease.granted, lease.retry_after) {
            (0, Some(retry)) => Some(now + retry),
            _ => None,
        };
        lease.granted
    }

    /// The lease in flight is over, whatever became of it (granted, failed,
    /// timed out, lost with its task).
    pub fn lease_over(&mut self) {
        self.in_flight = false;
    }

    /// Takes every held unit, to give it back to the shared budget.
    pub fn surrender(&mut self) -> u32 {
        std::mem::take(&mut self.held)
    }

    pub fn held(&self) -> u32 {
        self.held
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_used)
    }

    fn is_denied(&self, now: Instant) -> bool {
        self.denied_until.is_some_and(|until| until > now)
    }

    /// Units to lease in the background after a spend: only for a key busy
    /// enough here that another request is expected within the horizon, once
    /// half the allowance is gone, topping it up to the target. Limits under
    /// 200/min (a lease of one) never lease ahead: one unit held here would be
    /// the budget's last unit kept from the other replicas, so each request
    /// takes its own.
    fn renewal(&self, now: Instant, horizon: Duration) -> Option<u32> {
        if max_lease(self.limit) < 2 || self.expected(now, horizon) < 2.0 {
            return None;
        }
        let target = self.target(now, horizon);
        (self.held <= target / 2)
            .then(|| target.saturating_sub(self.held))
            .filter(|&n| n > 0)
    }

    /// What the key is expected to spend here within the horizon: at least
    /// one unit, at most [`max_lease`].
    fn target(&self, now: Instant, horizon: Duration) -> u32 {
        let expected = self.expected(now, horizon).ceil();
        // `as` saturates; the clamp keeps the bound.
        (expected as u32).clamp(1, max_lease(self.limit))
    }

    /// Requests in the last horizon (the current window plus the part of the
    /// previous one the horizon still covers): the estimate of those in the
    /// next.
    fn expected(&self, now: Instant, horizon: Duration) -> f64 {
        let into = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64()
            / horizon.as_secs_f64().max(f64::MIN_POSITIVE);
        let (this, last) = (f64::from(self.this_window), f64::from(self.last_window));
        if into >= 2.0 {
            0.0
        } else if into >= 1.0 {
            this * (2.0 - into)
        } else {
            last * (1.0 - into) + this
        }
    }

    fn reset_after(&self, now: Instant) -> Duration {
        self.reset_at
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
    }

    /// Remaining: the shared budget as of the last lease plus what is held
    /// here; other replicas' allowances are not counted, so never more than
    /// is truly left (short of refills since the lease).
    fn allowed(&self, now: Instant) -> RateDecision {
        RateDecision {
            allowed: true,
            limit: self.limit,
            remaining: self
                .shared_remaining
                .saturating_add(self.held)
                .min(self.limit),
            reset_after: self.reset_after(now),
            retry_after: None,
        }
    }

    fn denied(&self, now: Instant, until: Instant) -> RateDecision {
        RateDecision {
            allowed: false,
            limit: self.limit,
            remaining: 0,
            reset_after: self.reset_after(now),
            retry_after: Some(until.saturating_duration_since(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HORIZON: Duration = Duration::from_millis(200);

    fn lease(granted: u32, remaining: u32) -> Lease {
        Lease {
            granted,
            remaining,
            reset_after: Duration::from_secs(60),
            retry_after: None,
        }
    }

    /// A new request (counted), asking what to do.
    fn arrive(a: &mut Allowance, now: Instant, shared_up: bool) -> Next {
        a.arrive(now, HORIZON);
        a.next(now, HORIZON, shared_up)
    }

    fn spent(next: Next) -> (RateDecision, Option<u32>) {
        match next {
            Next::Spent { decision, renew } => (decision, renew),
            other => panic!("expected a spend, got {other:?}"),
        }
    }

    #[test]
    fn leases_are_a_percent_of_the_limit_and_at_least_one() {
        assert_eq!(max_lease(10), 1);
        assert_eq!(max_lease(199), 1);
        assert_eq!(max_lease(200), 2);
        assert_eq!(max_lease(1000), 10);
        assert_eq!(max_lease(1_000_000_000), 10_000_000);
    }

    #[test]
    fn a_lone_request_leases_one_and_nothing_ahead() {
        let now = Instant::now();
        let mut a = Allowance::new(1000, now);
        assert_eq!(arrive(&mut a, now, true), Next::Lease(1));
        a.granted(now, lease(1, 999));
        let (decision, renew) = spent(a.next(now, HORIZON, true));
        assert_eq!(decision.remaining, 999);
        assert!(decision.allowed);
        assert_eq!(renew, None, "no other request seen: nothing leased ahead");
        // A client calling every few seconds never holds anything.
        let mut now = now;
        for remaining in [998, 997, 996] {
            now += Duration::from_secs(3);
            assert_eq!(arrive(&mut a, now, true), Next::Lease(1));
            a.granted(now, lease(1, remaining));
            assert_eq!(spent(a.next(now, HORIZON, true)).1, None);
            assert_eq!(a.held(), 0);
        }
    }

    #[test]
    fn requests_arriving_together_wait_for_one_lease_sized_for_them() {
        let now = Instant::now();
        let mut a = Allowance::new(1000, now);
        assert_eq!(arrive(&mut a, now, true), Next::Lease(1));
        for _ in 0..5 {
            assert_eq!(arrive(&mut a, now, true), Next::Wait);
        }
        a.granted(now, lease(1, 999));
        // One of the six spends and leases for the six seen, in the
        // background; the others wait for it.
        assert_eq!(spent(a.next(now, HORIZON, true)).1, Some(6));
        assert_eq!(a.next(now, HORIZON, true), Next::Wait);
    }

    #[test]
    fn a_busy_key_leases_ahead_up_to_the_cap() {
        let mut now = Instant::now();
        let mut a = Allowance::new(1000, now);
        assert_eq!(arrive(&mut a, now, true), Next::Lease(1));
        a.granted(now, lease(1, 999));
        spent(a.next(now, HORIZON, true));
        let mut leased = 1;
        let mut renewals = Vec::new();
        // One request every 2 ms: 100 expected in 200 ms, capped at 10 (1% of 1000).
        for i in 0..200 {
            now += Duration::from_millis(2);
            let next = match arrive(&mut a, now, true) {
                Next::Lease(n) => {
                    leased += n;
                    a.granted(now, lease(n, 1000 - leased));
                    a.next(now, HORIZON, true)
                }
                other => other,
            };
            let (decision, renew) = spent(next);
            assert!(decision.remaining <= 1000 - leased + a.held());
            if let Some(n) = renew {
                renewals.push((i, a.held(), n));
                leased += n;
                a.granted(now, lease(n, 1000 - leased));
            }
            assert!(a.held() <= max_lease(1000));
        }
        // Once the estimate has seen ten requests: leased ahead once half was
        // gone, back up to the cap.
        assert!(renewals.len() >= 30, "{renewals:?}");
        for &(_, held, n) in renewals.iter().filter(|(i, _, _)| *i >= 10) {
            assert!(held <= 5, "renewed at {held}");
            assert_eq!(held + n, 10);
        }
    }

    #[test]
    fn small_limits_take_one_unit_at_a_time() {
        let t0 = Instant::now();
        let mut a = Allowance::new(10, t0);
        let mut now = t0;
        for remaining in (0..10).rev() {
            assert_eq!(arrive(&mut a, now, true), Next::Lease(1));
            a.granted(now, lease(1, remaining));
            let (decision, renew) = spent(a.next(now, HORIZON, true));
            assert_eq!(decision.remaining, remaining);
            assert_eq!(renew, None, "never ahead with a limit of 10");
            now += Duration::from_millis(1);
        }
    }

    #[test]
    fn an_empty_budget_denies_locally_until_a_unit_is_back() {
        let t0 = Instant::now();
        let mut a = Allowance::new(100, t0);
        assert_eq!(arrive(&mut a, t0, true), Next::Lease(1));
        a.granted(
            t0,
            Lease {
                granted: 0,
                remaining: 0,
                reset_after: Duration::from_secs(60),
                retry_after: Some(Duration::from_millis(600)),
            },
        );
        let later = t0 + Duration::from_millis(100);
        let Next::Denied(decision) = arrive(&mut a, later, true) else {
            panic!("denied without asking again");
        };
        assert_eq!(decision.remaining, 0);
        assert_eq!(decision.retry_after, Some(Duration::from_millis(500)));
        assert!(decision.reset_after > Duration::from_secs(59));
        // Once the unit is back, ask the shared budget again.
        assert!(matches!(
            arrive(&mut a, t0 + Duration::from_millis(600), true),
            Next::Lease(_)
        ));
    }

    #[test]
    fn unreachable_budget_spends_what_is_held_then_goes_local() {
        let t0 = Instant::now();
        let mut a = Allowance::new(1000, t0);
        assert_eq!(arrive(&mut a, t0, true), Next::Lease(1));
        a.granted(t0, lease(2, 990));
        let (_, renew) = spent(a.next(t0, HORIZON, false));
        assert_eq!(renew, None, "no renewal while unreachable");
        spent(arrive(&mut a, t0, false));
        assert_eq!(arrive(&mut a, t0, false), Next::Local);
        assert!(a.probe(t0, HORIZON).is_some());
        // A probe in flight does not hold requests up while unreachable.
        assert_eq!(arrive(&mut a, t0, false), Next::Local);
        assert_eq!(a.probe(t0, HORIZON), None, "one probe at a time");
        a.lease_over();
        assert_eq!(a.surrender(), 0);
    }

    #[test]
    fn surrender_hands_back_what_is_held() {
        let t0 = Instant::now();
        let mut a = Allowance::new(1000, t0);
        assert_eq!(arrive(&mut a, t0, true), Next::Lease(1));
        a.granted(t0, lease(7, 900));
        spent(a.next(t0, HORIZON, true));
        assert_eq!(a.surrender(), 6);
        assert_eq!(a.held(), 0);
    }
}
