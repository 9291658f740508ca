//! booking-service: organizations, space groups, meeting spaces, availability and bookings,
//! the booking lifecycle that time drives, and the events all of them record.
//!
//! A library (`BookingService` builds the app, testable in-process or on port 0) and a thin
//! binary.

pub mod availability;
pub mod bookings;
pub mod config;
mod idempotency;
mod input;
pub mod lifecycle;
pub mod meeting_spaces;
pub mod openapi;
mod organizations;
pub mod outbox;
pub mod schema;
mod space_groups;
mod tenancy;

use actix_web::web;
use bootstrap::Backing;
use cache::Cache;
use config::{BookingConfig, BookingRules};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use identity::{Identity, Scope};
use lifecycle::Lifecycle;
use service_kit::cli::ServicePart;
use service_kit::{ApiError, AppSpec};
use std::time::Duration;
use store::{Database, Migrations, StoreError};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

pub static MIGRATIONS: Migrations = Migrations {
    postgres: || POSTGRES_MIGRATIONS,
    sqlite: || SQLITE_MIGRATIONS,
};

/// Shared state of the handlers.
pub struct BookingState {
    pub db: Database,
    pub cache: Cache,
    pub rules: BookingRules,
    pub spaces: std::sync::Arc<meeting_spaces::SpaceCache>,
    /// Wakes this replica's relay after a commit that recorded events.
    pub nudge: events::Nudge,
}

pub struct BookingService;

impl ServicePart for BookingService {
    const NAME: &'static str = "booking-service";
    const ENV_PREFIX: &'static str = "BOOKING";
    type Config = BookingConfig;

    fn default_config() -> BookingConfig {
        BookingConfig::defaults()
    }

    async fn migrate(config: &BookingConfig) -> anyhow::Result<()> {
        bootstrap::migrate(config, &MIGRATIONS).await
    }

    async fn build(config: BookingConfig) -> anyhow::Result<AppSpec> {
        let mut backing = Backing::connect(Self::NAME, &config, &MIGRATIONS).await?;
        let nudge = backing
            .start_relay(Self::NAME, &config, &config.events)
            .await?;
        spawn_scheduler(Lifecycle::new(
            backing.db.clone(),
            nudge.clone(),
            Duration::from_secs(config.bookings.lifecycle_interval_secs),
        ));
        let state = web::Data::new(BookingState {
            db: backing.db.clone(),
            cache: backing.cache.clone(),
            rules: config.bookings.clone(),
            spaces: Default::default(),
            nudge,
        });
        Ok(backing
            .app_spec(Self::NAME, &config, move |cfg| {
                cfg.app_data(state.clone());
                register(cfg);
            })
            .families(families()))
    }
}

/// How often a replica deletes expired idempotency keys.
const FORGET_KEYS_EVERY: Duration = Duration::from_secs(60);

/// Every replica runs the lifecycle (and, less often, forgets expired
/// idempotency keys) on one timer; each move is a conditional `UPDATE`, so
/// replicas running it at once make each move, and record its event, exactly
/// once.
fn spawn_scheduler(lifecycle: Lifecycle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(lifecycle.interval());
        // A pass that overran is not followed by a burst of passes.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut keys_forgotten: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            let now = chrono::Utc::now();
            match lifecycle.run(now).await {
                Ok(moves) if moves.is_empty() => {}
                Ok(moves) => tracing::info!(
                    announced = moves.announced,
                    started = moves.started,
                    ended = moves.ended,
                    released = moves.released,
                    late = moves.late,
                    "booking lifecycle"
                ),
                Err(e) => tracing::warn!(error = %e, "booking lifecycle pass failed"),
            }
            if keys_forgotten.is_none_or(|at| at.elapsed() >= FORGET_KEYS_EVERY) {
                keys_forgotten = Some(tokio::time::Instant::now());
                if let Err(e) = idempotency::forget_expired(lifecycle.database(), now).await {
                    tracing::warn!(error = %e, "idempotency key clean-up failed");
                }
            }
        }
    });
}

service_kit::service_routes! {
    SpaceOs {
        "/api/v1/organizations" => [get => organizations::list, post => organizations::create],
        "/api/v1/organizations/by-slug/{slug}" => [get => organizations::by_slug],
        "/api/v1/organizations/{id}" => [
            get => organizations::get,
            patch => organizations::update,
            delete => organizations::delete,
        ],
        "/api/v1/space-groups" => [get => space_groups::list, post => space_groups::create],
        "/api/v1/space-groups/{id}" => [
            get => space_groups::get,
            patch => space_groups::update,
            delete => space_groups::delete,
        ],
        "/api/v1/meeting-spaces" => [get => meeting_spaces::list, post => meeting_spaces::create],
        "/api/v1/meeting-spaces/by-slug/{slug}" => [get => meeting_spaces::by_slug],
        "/api/v1/meeting-spaces/{id}" => [
            get => meeting_spaces::get,
            patch => meeting_spaces::update,
            delete => meeting_spaces::delete,
        ],
        "/api/v1/meeting-spaces/{id}/business-hours" => [
            get => meeting_spaces::get_hours,
            put => meeting_spaces::put_hours,
        ],
        "/api/v1/meeting-spaces/{id}/unavailability" => [
            get => meeting_spaces::list_unavailability,
            post => meeting_spaces::add_unavailability,
        ],
        "/api/v1/meeting-spaces/{id}/unavailability/{unavailability_id}" => [
            delete => meeting_spaces::delete_unavailability,
        ],
        "/api/v1/meeting-spaces/{id}/availability" => [get => availability::get],
        "/api/v1/bookings" => [get => bookings::list, post => bookings::create],
        "/api/v1/bookings/{id}" => [get => bookings::get, patch => bookings::update],
        "/api/v1/bookings/{id}/confirm" => [post => bookings::confirm],
        "/api/v1/bookings/{id}/cancel" => [patch => bookings::cancel],
        "/api/v1/bookings/{id}/check-in" => [post => bookings::check_in],
        "/api/v1/bookings/{id}/check-out" => [post => bookings::check_out],
    }
}

/// Method and path patterns the gateway must route as `public` (no credential
/// needed; anonymous callers get only what the handler allows them).
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/organizations/by-slug/{slug}"),
    ("GET", "/api/v1/meeting-spaces/by-slug/{slug}"),
    ("GET", "/api/v1/meeting-spaces/{id}/availability"),
    ("POST", "/api/v1/bookings"),
];

/// The caller's workspace, once it holds `scope`: 401 anonymous, 403 without it.
pub(crate) fn workspace_with(identity: &Identity, scope: &Scope) -> Result<String, ApiError> {
    identity.require_scope(scope)?;
    Ok(identity.require_workspace()?.to_owned())
}

/// Failures decided inside a database closure: an answer for the client, or the
/// store's error (mapped in one place by `store`).
#[derive(Debug)]
pub enum Failure {
    Api(ApiError),
    Store(StoreError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Store(e.into())
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Api(e) => e,
            Failure::Store(e) => e.into(),
        }
    }
}
