//! booking-service: organizations, space groups, meeting spaces, availability and bookings.
//!
//! A library (`BookingService` builds the app, testable in-process or on port 0) and a thin
//! binary.

pub mod schema;

use actix_web::web;
use cache::Cache;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use service_kit::AppSpec;
use service_kit::cli::ServicePart;
use service_kit::config::ServiceConfig;
use std::sync::Arc;
use store::{Database, Migrations};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

pub static MIGRATIONS: Migrations = Migrations {
    postgres: || POSTGRES_MIGRATIONS,
    sqlite: || SQLITE_MIGRATIONS,
};

pub struct BookingService;

impl ServicePart for BookingService {
    const NAME: &'static str = "booking-service";
    const ENV_PREFIX: &'static str = "BOOKING";
    type Config = ServiceConfig;

    fn default_config() -> ServiceConfig {
        ServiceConfig::defaults(8082, "booking")
    }

    async fn migrate(config: &ServiceConfig) -> anyhow::Result<()> {
        store::migrate(&config.database, &MIGRATIONS).await?;
        Ok(())
    }

    async fn build(config: ServiceConfig) -> anyhow::Result<AppSpec> {
        let verifier = identity::verifier_from_config(Self::NAME, &config.identity)?;
        let db = Database::connect_and_migrate(&config.database, &MIGRATIONS).await?;
        let cache = Cache::from_config(&config.cache).await?;
        Ok(AppSpec::new(Self::NAME, routes)
            .readiness(Arc::new(db))
            .readiness(Arc::new(cache))
            .guard(Arc::new(verifier))
            .json_limit(config.http.json_limit_bytes))
    }
}

/// The public endpoints of this service.
fn routes(_cfg: &mut web::ServiceConfig) {}
