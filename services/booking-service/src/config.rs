//! booking-service configuration (`BOOKING__…`).

use events::config::OutboxConfig;
use serde::{Deserialize, Serialize};
use service_kit::config::{
    CacheConfig, ConfigError, DatabaseConfig, HttpConfig, IdentityConfig, LogConfig, ServiceConfig,
};

/// `bookings.*`: limits and background work of the booking surface.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingRules {
    /// Bookings an anonymous client (one address, as the gateway saw it) may
    /// create per minute on spaces with `public_booking`.
    pub anonymous_per_minute: u32,
    /// How often each replica runs the booking lifecycle: `booking.start`
    /// 15 minutes before a confirmed booking starts, `confirmed → active` at
    /// the start (spaces without check-in), `active → completed` at the end,
    /// and the release of bookings not checked in by their deadline
    /// (`cancelled`, reason `no_show`). Also the lateness bound: an event
    /// emitted more than one interval after it was due is marked `late`.
    pub lifecycle_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingConfig {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub identity: IdentityConfig,
    pub log: LogConfig,
    pub bookings: BookingRules,
    /// Where the service's events go (`booking.*`, `organization.updated`,
    /// `space.availability_changed`) and how its relay runs.
    pub events: OutboxConfig,
}

impl BookingConfig {
    pub fn defaults() -> BookingConfig {
        let base = ServiceConfig::defaults(8082, "booking");
        BookingConfig {
            http: base.http,
            database: base.database,
            cache: base.cache,
            identity: base.identity,
            log: base.log,
            bookings: BookingRules {
                anonymous_per_minute: 10,
                lifecycle_interval_secs: 5,
            },
            events: OutboxConfig::default(),
        }
    }
}

service_kit::service_settings!(BookingConfig, validate = BookingConfig::check_sections);

impl BookingConfig {
    /// What the types cannot say: ranges, schemes, cross-field rules.
    fn check_sections(&self) -> Result<(), ConfigError> {
        if self.bookings.anonymous_per_minute == 0 {
            return Err(ConfigError::invalid(
                "bookings.anonymous_per_minute",
                "must be at least 1",
            ));
        }
        if !(1..=3_600).contains(&self.bookings.lifecycle_interval_secs) {
            return Err(ConfigError::invalid(
                "bookings.lifecycle_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        self.events.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<BookingConfig, ConfigError> {
        service_kit::config::load_from(
            "BOOKING",
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &BookingConfig::defaults(),
        )
    }

    fn refused_key(env: &[(&str, &str)]) -> String {
        match load(env) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn lifecycle_and_events_sections_are_checked() {
        let c = load(&[
            ("BOOKING__BOOKINGS__LIFECYCLE_INTERVAL_SECS", "1"),
            ("BOOKING__EVENTS__STREAM_URL", "memory://devstack"),
        ])
        .unwrap();
        assert_eq!(c.bookings.lifecycle_interval_secs, 1);
        assert_eq!(
            c.events.stream_name("booking-service"),
            "events:booking-service"
        );
        assert_eq!(
            refused_key(&[("BOOKING__BOOKINGS__LIFECYCLE_INTERVAL_SECS", "0")]),
            "bookings.lifecycle_interval_secs"
        );
        assert_eq!(
            refused_key(&[("BOOKING__EVENTS__STREAM_URL", "http://example.com")]),
            "events.stream_url"
        );
        assert_eq!(
            refused_key(&[("BOOKING__EVENTS__RELAY_BATCH", "0")]),
            "events.relay_batch"
        );
    }
}
