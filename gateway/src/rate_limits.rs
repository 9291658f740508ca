//! Request budgets per credential (or per client IP when anonymous), counted in
//! the shared cache so all gateway replicas spend one budget.

use crate::config::RateLimitConfig;
use actix_web::HttpResponse;
use cache::{Cache, Quota, RateDecision};
use identity::{Identity, PrincipalType};
use std::net::IpAddr;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

pub struct RateLimiter {
    cache: Cache,
    config: RateLimitConfig,
}

impl RateLimiter {
    pub fn new(cache: Cache, config: RateLimitConfig) -> RateLimiter {
        RateLimiter { cache, config }
    }

    /// Spends one request of the caller's budget. `None` when limits are off, or
    /// when the cache cannot be reached: limits protect capacity, they do not
    /// authorize, so an outage of the cache must not take the platform down.
    pub async fn spend(&self, identity: &Identity, client: Option<IpAddr>) -> Option<RateDecision> {
        if !self.config.enabled {
            return None;
        }
        let (key, limit) = match identity.principal_type {
            PrincipalType::User | PrincipalType::Service => (
                format!("rl:token:{}", identity.principal_id),
                self.config.per_token_per_minute,
            ),
            PrincipalType::ApiKey | PrincipalType::SpaceKey => (
                format!("rl:key:{}", identity.principal_id),
                self.config.per_api_key_per_minute,
            ),
            PrincipalType::System | PrincipalType::Gateway => return None,
            PrincipalType::Anonymous => {
                let ip = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
                (format!("rl:ip:{ip}"), self.config.per_ip_per_minute)
            }
        };
        match self
            .cache
            .rate_limit(
                &key,
                Quota {
                    limit,
                    period: MINUTE,
                },
            )
            .await
        {
            Ok(decision) => Some(decision),
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; request let through");
                None
            }
        }
    }
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs_f64().ceil() as u64
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset`: the Unix time (seconds)
/// when the budget is full again, as SpaceOS's rate-limit page shows it.
pub fn headers(decision: &RateDecision) -> [(&'static str, String); 3] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    [
        ("x-ratelimit-limit", decision.limit.to_string()),
        ("x-ratelimit-remaining", decision.remaining.to_string()),
        (
            "x-ratelimit-reset",
            whole_seconds(now + decision.reset_after).to_string(),
        ),
    ]
}

pub fn add_headers(response: &mut HttpResponse, decision: &RateDecision) {
    for (name, value) in headers(decision) {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(name),
                value,
            );
        }
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
