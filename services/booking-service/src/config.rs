//! booking-service configuration (`BOOKING__…`).

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
    /// How often each replica releases bookings not checked in within their
    /// space's grace period (`cancelled`, reason `no_show`).
    pub no_show_sweep_interval_secs: u64,
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
                no_show_sweep_interval_secs: 60,
            },
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
        if !(1..=86_400).contains(&self.bookings.no_show_sweep_interval_secs) {
            return Err(ConfigError::invalid(
                "bookings.no_show_sweep_interval_secs",
                "must be between 1 and 86400",
            ));
        }
        Ok(())
    }
}
