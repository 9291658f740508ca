//! spaces-service: content spaces, access control, security settings, upload configs and space API keys.
//!
//! A library (`SpacesService` builds the app, testable in-process or on port 0) and a thin
//! binary. The surface is Tuzzle's spaces admin API, in Tuzzle's wire dialect (declared
//! once, in the route table below: `{data}`, Laravel cursor lists, `{message, errors}`
//! with 422 for invalid input); `proto-docs/spaces-service.openapi.json` documents every
//! endpoint.
//!
//! Decisions the Tuzzle reference leaves open:
//! - Who reaches what ([`access`]): workspace credentials reach every space of their
//!   workspace. A space key (`sk_…`, type `space`) reaches its own space only: it may
//!   read and change that space, its settings, configs and space keys (and delete it),
//!   but cannot create spaces or mint keys (403). An account key (type `account`)
//!   reaches every space of its workspace and may create spaces and mint space keys,
//!   never account keys; only a workspace admin (`keys:admin`, not a key) mints or
//!   revokes account keys: a key minting keys as broad as itself would outlive its own
//!   revocation. Anything out of reach answers 404. The gateway describes both types
//!   alike (introspection names the space a key was minted for); spaces-service looks
//!   the type up by the key's id, and refuses (401) a key that is gone.
//! - Names are unique per workspace by their lowercase form (`name_key`, folded by the
//!   service so both databases agree); a name already taken is a validation error on
//!   `name` (422, `The name has already been taken.`), for spaces and upload configs.
//!   Handles (six lowercase letters or digits) and custom domains are unique across the
//!   platform (a taken custom domain is a 409). The database holds all of these, and
//!   that a space's active upload config is one of its own and cannot be deleted.
//! - Unknown body fields are ignored (as Laravel does); the documented ones are checked,
//!   each failure named by its field. Required fields answer `The … field is required.`
//! - `PUT` on a space, access control, security and upload configs changes the fields
//!   named (`{"webhook_url": …}` alone is a whole request); absent fields keep their
//!   value, `null` clears the nullable ones. `DELETE` on access control and security
//!   restores the defaults. `DELETE /api/v1/spaces` takes the id as `?id=` or in a JSON
//!   body `{"id": …}`.
//! - `folder_mode` is `dynamic` (uploads create the folders they name) or `fixed`.
//! - Upload configs ([`upload_configs`]) have Tuzzle's shape; what a request leaves out
//!   takes Tuzzle's defaults (any format but executables and server scripts, up to
//!   50 MB, delivered publicly). `allow_unsigned` needs `unsigned_restrictions`. Lists
//!   leave `config` out. New spaces get `starter` (images up to 10 MiB, signed
//!   uploads), active. Configs stored in the earlier shape were migrated without loss.
//! - Space keys are stored as HMAC-SHA256 under a key derived from `secret.key`, looked
//!   up by that hash. Clients know a key by an integer id, never reused; introspection,
//!   revocations and identities name it by its internal `spk_…` id. Introspection
//!   answers from memory once a key was read (`introspection.cache_ttl_secs`), and every
//!   replica evicts a key as its revocation arrives on the cache bus. `last_used_at` is
//!   written at most once a minute per key.
//! - Events: every change of an existing space (`PUT` on the space, on its access
//!   control or security, and their `DELETE` resets) records `space.updated`
//!   (`{space_id, name, handle, changed}`, `changed` naming the fields that differ)
//!   in the outbox, in the same transaction; a request that changes nothing
//!   records nothing, and neither do creating or deleting a space, upload-config
//!   changes or key minting. The relay publishes them to `events:spaces-service`.

pub mod access;
pub mod addresses;
pub mod config;
pub mod handles;
pub mod openapi;
pub mod schema;
pub mod secrets;
mod settings;
pub mod space_keys;
mod spaces;
mod upload_configs;

use actix_web::web;
use bootstrap::Backing;
use cache::Cache;
use config::SpacesConfig;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use identity::revocation::{self, Revocation};
use service_kit::cli::ServicePart;
use service_kit::pagination::CursorCodec;
use service_kit::{ApiError, AppSpec};
use space_keys::KeyCache;
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
pub struct SpacesState {
    pub db: Database,
    pub cache: Cache,
    pub secrets: secrets::Keys,
    pub cursors: CursorCodec,
    pub keys: Arc<KeyCache>,
    pub allow_private_webhooks: bool,
    /// Wakes this replica's outbox relay after a commit that recorded events.
    pub events: events::Nudge,
}

impl SpacesState {
    /// Tells every gateway (and every replica's key cache) that a space key is
    /// gone. A failure is logged: the deletion itself has happened.
    async fn revoke_space_keys(&self, ids: Vec<String>) {
        for id in ids {
            self.keys.evict(&id);
            let revocation = Revocation::SpaceKey { id };
            if let Err(e) = self
                .cache
                .publish(revocation::CHANNEL, &revocation.to_bytes())
                .await
            {
                tracing::error!(error = %e, ?revocation, "could not publish a revocation");
            }
        }
    }
}

pub struct SpacesService;

impl ServicePart for SpacesService {
    const NAME: &'static str = "spaces-service";
    const ENV_PREFIX: &'static str = "SPACES";
    type Config = SpacesConfig;

    fn default_config() -> SpacesConfig {
        SpacesConfig::defaults()
    }

    async fn migrate(config: &SpacesConfig) -> anyhow::Result<()> {
        bootstrap::migrate(config, &MIGRATIONS).await
    }

    async fn build(config: SpacesConfig) -> anyhow::Result<AppSpec> {
        let secrets = secrets::Keys::load(config.secret.key.expose(), &config.secret.key_file)?;
        let mut backing = Backing::connect(Self::NAME, &config, &MIGRATIONS).await?;
        let keys = Arc::new(KeyCache::new(Duration::from_secs(
            config.introspection.cache_ttl_secs,
        )));
        keys.clone().listen(&backing.cache).await?;
        let nudge = backing
            .start_relay(Self::NAME, &config, &config.events)
            .await?;
        let state = web::Data::new(SpacesState {
            db: backing.db.clone(),
            cache: backing.cache.clone(),
            cursors: secrets.cursor_codec(),
            secrets,
            keys,
            allow_private_webhooks: config.webhooks.allow_private_targets,
            events: nudge,
        });
        Ok(backing
            .app_spec(Self::NAME, &config, move |cfg| {
                cfg.app_data(state.clone());
                register(cfg);
            })
            .families(families()))
    }
}

service_kit::service_routes! {
    Tuzzle {
        "/api/v1/spaces" => [
            get => spaces::list,
            post => spaces::create,
            delete => spaces::delete_by_query,
        ],
        "/api/v1/spaces/{id}" => [
            get => spaces::get,
            put => spaces::update,
            delete => spaces::delete,
        ],
        "/api/v1/spaces/{id}/access-control" => [
            put => settings::set_access_control,
            delete => settings::reset_access_control,
        ],
        "/api/v1/spaces/{id}/security" => [
            put => settings::set_security,
            delete => settings::reset_security,
        ],
        "/api/v1/spaces/{id}/api-keys" => [
            post => space_keys::create,
            get => space_keys::list,
        ],
        "/api/v1/spaces/{id}/api-keys/{key_id}" => [delete => space_keys::delete],
        "/api/v1/upload-configs" => [
            get => upload_configs::list,
            post => upload_configs::create,
        ],
        // Before `{id}`, which would take `all` for an id.
        "/api/v1/upload-configs/all" => [get => upload_configs::list_all],
        "/api/v1/upload-configs/{id}" => [
            get => upload_configs::get,
            put => upload_configs::update,
            delete => upload_configs::delete,
        ],
    }
    SpaceOs {
        "/internal/space-keys/introspect" => [post => space_keys::introspect],
    }
}

/// A failure inside a transaction: an answer for the client, or the database's.
/// Database conflicts become 409s that say which rule was broken.
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

/// What each named constraint means to a client: a name already taken is a
/// validation error on `name` (as Laravel's `unique` rule makes it), the
/// others conflicts that say which rule was broken.
const CONSTRAINTS: &[(&str, Option<&str>)] = &[
    ("spaces_name_unique", None),
    ("spaces_handle_unique", Some("the handle is taken")),
    (
        "spaces_custom_domain_unique",
        Some("the custom domain is used by another space"),
    ),
    ("upload_configs_name_unique", None),
    (
        "spaces_active_upload_config_fk",
        Some("the active upload config cannot be deleted"),
    ),
];

impl From<Fail> for ApiError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Api(e) => e,
            Fail::Store(e) => {
                let meaning = e
                    .constraint()
                    .and_then(|c| CONSTRAINTS.iter().find(|(name, _)| *name == c))
                    .map(|(_, meaning)| *meaning);
                match meaning {
                    Some(None) => spaces::name_taken_error(),
                    Some(Some(message)) => ApiError::conflict(message).with_source(e),
                    None => e.into(),
                }
            }
        }
    }
}

/// Now, to the millisecond: what cursors can name exactly.
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

/// `created_at` of a cursor position, or 400 for a position no list wrote.
pub(crate) fn cursor_time(ms: i64) -> Result<chrono::NaiveDateTime, ApiError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.naive_utc())
        .ok_or_else(|| ApiError::invalid_query("cursor", "is not a valid cursor"))
}

/// Text a person typed (names, descriptions): no control characters, which
/// some databases refuse and no display wants. Line breaks are allowed where
/// `multiline`.
pub(crate) fn plain_text(value: &str, multiline: bool) -> bool {
    value
        .chars()
        .all(|c| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t')))
}
