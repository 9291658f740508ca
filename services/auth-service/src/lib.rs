//! auth-service: users, workspaces, memberships, roles, credentials and sign-in.
//!
//! A library (`AuthService` builds the app, testable in-process or on port 0) and a thin
//! binary.

pub mod schema;

use actix_web::web;
use bootstrap::Backing;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use service_kit::AppSpec;
use service_kit::cli::ServicePart;
use service_kit::config::ServiceConfig;
use store::Migrations;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

pub static MIGRATIONS: Migrations = Migrations {
    postgres: || POSTGRES_MIGRATIONS,
    sqlite: || SQLITE_MIGRATIONS,
};

pub struct AuthService;

impl ServicePart for AuthService {
    const NAME: &'static str = "auth-service";
    const ENV_PREFIX: &'static str = "AUTH";
    type Config = ServiceConfig;

    fn default_config() -> ServiceConfig {
        ServiceConfig::defaults(8081, "auth")
    }

    async fn migrate(config: &ServiceConfig) -> anyhow::Result<()> {
        bootstrap::migrate(config, &MIGRATIONS).await
    }

    async fn build(config: ServiceConfig) -> anyhow::Result<AppSpec> {
        let backing = Backing::connect(Self::NAME, &config, &MIGRATIONS).await?;
        Ok(backing.app_spec(Self::NAME, &config, routes))
    }
}

/// The public endpoints of this service.
fn routes(_cfg: &mut web::ServiceConfig) {}
