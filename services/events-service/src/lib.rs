//! events-service: webhook subscriptions, the events the platform's services
//! publish, and their delivery to receivers outside the cluster (DESIGN §9).
//!
//! A library (`EventsService` builds the app, testable in-process or on port 0)
//! and a thin binary. Two route families, each in its product's dialect: the
//! SpaceOS webhooks API (`/api/v1/webhooks*`) and gospace's
//! (`/v1/webhooks/webhooks*`); `proto-docs/events-service.openapi.json`
//! documents every endpoint.
//!
//! ```text
//! events:<service> streams ──Consumer (group `events.group`)──► intake: event row (once, by id)
//!                                                                + one delivery per matching
//!                                                                  subscription, one transaction;
//!                                                                  ack after commit
//! deliveries ──dispatch (claim with a lease)──► POST to the receiver ──► attempt row, retry or done
//! ```
//!
//! Decisions the products leave open:
//! - **Matching** ([`intake`]): a subscription receives an event when it is
//!   enabled and not failing, lists the event's type, and is of the event's
//!   workspace; a SpaceOS subscription moreover only of its organization
//!   (events that concern a whole workspace, such as `member.added`, carry no
//!   organization and reach every SpaceOS subscription of the workspace that
//!   asked for them). Events are stored once by id (insert-or-ignore) in the
//!   same transaction as their deliveries, and acknowledged on the stream only
//!   after it commits, so a redelivered event changes nothing.
//! - **Delivery** ([`dispatch`]): at-least-once. Workers claim due deliveries
//!   with a lease (`webhooks.lease_secs`, longer than `webhooks.timeout_secs`):
//!   on PostgreSQL with `FOR UPDATE SKIP LOCKED`, on SQLite under the write
//!   lock, so two replicas never send one attempt; a crashed replica's claims
//!   are taken again once the lease has passed. A 2xx within
//!   `webhooks.timeout_secs` is success; anything else (another status, a
//!   redirect, a timeout, a refused connection) is a failed attempt, retried
//!   after the next delay of `webhooks.retry_schedule_secs` (±10% jitter).
//!   After the last retry fails the delivery is `failed` and its subscription
//!   `failing`: it gets no new deliveries and its pending ones wait, until a
//!   `PATCH` with `enabled: true` revives it. Every attempt is logged (when,
//!   duration, status, at most 64 KiB of the answer, error, next attempt).
//! - **Test and retry** are a client's requests: a `ping` to one subscription,
//!   or a delivery made due again, each attempted once whatever the
//!   subscription's state (a retry of a delivery waiting on the schedule of an
//!   active subscription only brings its next attempt forward), and never
//!   turning it `failing`.
//! - **Who is told** when a subscription starts failing: the address in its
//!   `notify_email`, once. events-service has no user directory and the
//!   gateway's identity carries no email address, so it cannot look up the
//!   workspace's or organization's admins itself; a subscription without
//!   `notify_email` is still marked `failing` (visible in the API, logged and
//!   counted in `webhook_subscriptions_failing`) but nobody is mailed.
//! - **Secrets** ([`secrets`], [`signatures`]): generated as `whsec_` + base64
//!   of 32 random bytes and shown once, in the create answer; a client may
//!   supply its own. Sealed at rest with AES-256-GCM under a key derived from
//!   `secret.key`. [`signatures`] says which key bytes each signature uses.
//! - **Tenancy** ([`access`]): every query filters by the identity's
//!   workspace; another workspace's ids answer 404. Reading needs
//!   `webhooks:read`, changing `webhooks:write`. A key bound to one
//!   organization reaches that organization's SpaceOS subscriptions only.
//!   `GET|PATCH|DELETE /api/v1/webhooks/{id}` serve SpaceOS subscriptions; the
//!   deliveries log, test and retry routes serve every subscription of the
//!   workspace, gospace ones too (gospace documents none of its own).
//! - **Receivers** are checked by the `outbound` crate: `https` only and no
//!   internal address, at registration (with a DNS look-up) and at connect
//!   time, unless `webhooks.allow_private_targets`.

pub mod access;
pub mod catalog;
pub mod config;
mod deliveries;
pub mod dispatch;
mod gospace;
pub mod intake;
pub mod metrics;
pub mod openapi;
pub mod schema;
pub mod secrets;
pub mod signatures;
pub mod subscriptions;
mod webhooks;

use actix_web::web;
use bootstrap::Backing;
use config::EventsConfig;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use events::EventStream;
use service_kit::cli::ServicePart;
use service_kit::{ApiError, AppSpec};
use std::sync::Arc;
use std::time::Duration;
use store::{Database, Migrations, StoreError};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

pub static MIGRATIONS: Migrations = Migrations {
    postgres: || POSTGRES_MIGRATIONS,
    sqlite: || SQLITE_MIGRATIONS,
};

/// Shared state of the handlers.
pub struct EventsState {
    pub db: Database,
    pub keys: secrets::Keys,
    /// Checks receivers' URLs at registration.
    pub guard: outbound::Guard,
    /// Wakes this replica's workers (a test event, a retry).
    pub dispatcher: dispatch::Dispatcher,
}

/// What a test (or an embedding process) may replace in the service.
#[derive(Clone)]
pub struct Options {
    /// The resolver the receivers' names are checked and connected through.
    pub lookup: Arc<dyn outbound::Lookup>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lookup: Arc::new(outbound::SystemLookup),
        }
    }
}

pub struct EventsService;

impl ServicePart for EventsService {
    const NAME: &'static str = "events-service";
    const ENV_PREFIX: &'static str = "EVENTS";
    type Config = EventsConfig;

    fn default_config() -> EventsConfig {
        EventsConfig::defaults()
    }

    async fn migrate(config: &EventsConfig) -> anyhow::Result<()> {
        bootstrap::migrate(config, &MIGRATIONS).await
    }

    async fn build(config: EventsConfig) -> anyhow::Result<AppSpec> {
        build_with(config, Options::default()).await
    }
}

/// Builds the app as [`EventsService::build`] does, with `options`: connects
/// the database, the cache and the event stream, and starts this replica's
/// consumers, workers and housekeeping on the current runtime.
pub async fn build_with(config: EventsConfig, options: Options) -> anyhow::Result<AppSpec> {
    let name = EventsService::NAME;
    let keys = secrets::Keys::load(config.secret.key.expose(), &config.secret.key_file)?;
    let mailer = mail::Mailer::from_config(&config.mail)?;
    let backing = Backing::connect(name, &config, &MIGRATIONS).await?;
    let stream = EventStream::connect(config.stream_url()).await?;
    let guard = outbound::Guard::with_lookup(
        outbound::Policy {
            allow_private: config.webhooks.allow_private_targets,
        },
        options.lookup,
    );
    let metrics = Arc::new(metrics::Metrics::default());
    let replica = dispatch::replica_name();
    let dispatcher = dispatch::Dispatcher::start(dispatch::Setup {
        db: backing.db.clone(),
        keys: keys.clone(),
        guard: guard.clone(),
        mailer,
        metrics: metrics.clone(),
        webhooks: config.webhooks.clone(),
        owner: replica.clone(),
    })?;
    intake::start(intake::Setup {
        db: backing.db.clone(),
        stream: stream.clone(),
        streams: config.streams(),
        group: config.events.group.clone(),
        consumer: replica,
        dispatcher: dispatcher.clone(),
        metrics: metrics.clone(),
    });
    let draining = dispatcher.clone();
    let drain_limit = Duration::from_secs(config.http.shutdown_timeout_secs);
    let state = web::Data::new(EventsState {
        db: backing.db.clone(),
        keys,
        guard,
        dispatcher,
    });
    let mut spec = backing
        .app_spec(name, &config, move |cfg| {
            cfg.app_data(state.clone());
            register(cfg);
        })
        .families(families())
        .readiness(Arc::new(stream))
        .on_stop(Arc::new(move || {
            let draining = draining.clone();
            Box::pin(async move { draining.drain(drain_limit).await })
        }));
    metrics.register(spec.metrics.registry_mut());
    tracing::info!(
        streams = %config.events.streams,
        group = %config.events.group,
        allow_private_targets = config.webhooks.allow_private_targets,
        "events-service ready"
    );
    Ok(spec)
}

service_kit::service_routes! {
    SpaceOs {
        "/api/v1/webhooks" => [get => webhooks::list, post => webhooks::create],
        "/api/v1/webhooks/{id}" => [
            get => webhooks::get,
            patch => webhooks::update,
            delete => webhooks::delete,
        ],
        "/api/v1/webhooks/{id}/deliveries" => [get => deliveries::list],
        "/api/v1/webhooks/{id}/test" => [post => deliveries::test],
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry" => [post => deliveries::retry],
    }
    Gospace {
        "/v1/webhooks/webhooks" => [get => gospace::list, post => gospace::create],
        "/v1/webhooks/webhooks/{webhook_id}" => [
            patch => gospace::update,
            delete => gospace::delete,
        ],
    }
}

/// A failure inside a transaction: an answer for the client, or the database's.
#[derive(Debug)]
pub(crate) enum Fail {
    Api(ApiError),
    Store(StoreError),
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Fail::Api(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<diesel::result::Error> for Fail {
    fn from(e: diesel::result::Error) -> Self {
        Fail::Store(e.into())
    }
}

impl From<Fail> for ApiError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Api(e) => e,
            Fail::Store(e) => e.into(),
        }
    }
}

/// Now, to the millisecond: what the wire carries.
pub(crate) fn now() -> chrono::NaiveDateTime {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis())
        .unwrap_or(now)
        .naive_utc()
}

pub(crate) fn rfc3339(t: chrono::NaiveDateTime) -> String {
    service_kit::time::format_rfc3339(t.and_utc())
}

/// The backend type of boxed queries.
pub(crate) type Backend = <store::DbConnection as diesel::Connection>::Backend;
