//! auth-service: users, workspaces, memberships, roles, credentials and sign-in.
//!
//! A library (`AuthService` builds the app, testable in-process or on port 0) and a thin
//! binary.

pub mod accounts;
mod admin;
mod api_keys;
pub mod config;
mod lists;
pub mod openapi;
mod profile;
pub mod schema;
pub mod secrets;
mod service_principals;
pub mod sessions;
mod sign_in;
pub mod signing_keys;
mod social;
mod token_management;
pub mod tokens;
pub mod verified_clients;
mod wellknown;

use actix_web::web;
use bootstrap::Backing;
use cache::Cache;
use config::{ApiKeyConfig, AuthConfig, MagicLinkConfig, OtpConfig, SocialConfig, TokenConfig};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use identity::revocation::Revocation;
use openapi::{Envelope, ErrorEnvelope, NoData};
use serde::Deserialize;
use service_kit::cli::ServicePart;
use service_kit::{ApiError, ApiResponse, AppSpec, Json};
use signing_keys::{KeyRing, RotationPolicy};
use std::sync::Arc;
use std::time::Duration;
use store::{Database, Migrations};
use verified_clients::VerifiedClients;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

pub static MIGRATIONS: Migrations = Migrations {
    postgres: || POSTGRES_MIGRATIONS,
    sqlite: || SQLITE_MIGRATIONS,
};

/// Shared state of the handlers.
pub struct AuthState {
    pub db: Database,
    pub cache: Cache,
    pub secrets: secrets::Keys,
    pub ring: Arc<KeyRing>,
    pub mailer: mail::Mailer,
    pub tokens: TokenConfig,
    /// Client ids and secrets that verified, remembered for a short while.
    pub clients: Arc<VerifiedClients>,
    pub otp: OtpConfig,
    pub api_keys: ApiKeyConfig,
    pub magic_links: MagicLinkConfig,
    pub social: SocialConfig,
    /// The scopes this deployment grants: the built-in catalog and `scopes.extra`.
    pub scopes: identity::scopes::Catalog,
    /// For calls to sign-in providers.
    pub http: reqwest::Client,
    /// Wakes this replica's outbox relay after a commit that recorded events.
    pub events: events::Nudge,
}

/// How often each replica applies the key rotation policy and reloads keys.
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

pub struct AuthService;

impl ServicePart for AuthService {
    const NAME: &'static str = "auth-service";
    const ENV_PREFIX: &'static str = "AUTH";
    type Config = AuthConfig;

    fn default_config() -> AuthConfig {
        AuthConfig::defaults()
    }

    async fn migrate(config: &AuthConfig) -> anyhow::Result<()> {
        bootstrap::migrate(config, &MIGRATIONS).await
    }

    async fn build(config: AuthConfig) -> anyhow::Result<AppSpec> {
        let secrets = secrets::Keys::load(config.secret.key.expose(), &config.secret.key_file)?;
        let mailer = mail::Mailer::from_config(&config.mail)?;
        tracing::info!(transport = %mailer.describe(), "mail");
        let mut backing = Backing::connect(Self::NAME, &config, &MIGRATIONS).await?;
        service_kit::tls::ensure_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let policy = RotationPolicy {
            rotate_after: Duration::from_secs(config.tokens.key_rotation_days * 86_400),
            publish_lead: Duration::from_secs(config.tokens.key_publish_lead_secs),
            retire_after: Duration::from_secs(config.tokens.access_token_ttl_secs + 300),
        };
        let ring = KeyRing::open(backing.db.clone(), secrets.clone(), policy).await?;
        let nudge = backing
            .start_relay(Self::NAME, &config, &config.events)
            .await?;
        let refresher = ring.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEY_REFRESH_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = refresher.refresh().await {
                    tracing::warn!(error = %e, "signing key refresh failed");
                }
            }
        });
        let clients = Arc::new(VerifiedClients::from_config(&config.tokens));
        if clients.is_on() {
            clients.clone().listen(&backing.cache).await?;
        }
        let state = web::Data::new(AuthState {
            db: backing.db.clone(),
            cache: backing.cache.clone(),
            secrets,
            ring,
            mailer,
            tokens: config.tokens.clone(),
            clients: clients.clone(),
            otp: config.otp.clone(),
            api_keys: config.api_keys.clone(),
            magic_links: config.magic_links.clone(),
            social: config.social.clone(),
            scopes: config.scopes.catalog()?,
            http,
            events: nudge,
        });
        let mut spec = backing
            .app_spec(Self::NAME, &config, move |cfg| routes(cfg, state.clone()))
            .families(families());
        clients.register(spec.metrics.registry_mut());
        Ok(spec)
    }
}

service_kit::service_routes! {
    SpaceOs {
        "/api/v1/auth/otp/request" => [post => sign_in::otp_request],
        "/api/v1/auth/otp/verify" => [post => sign_in::otp_verify],
        // The gateway's own calls and discovery documents: the platform's envelope.
        "/internal/api-keys/introspect" => [post => api_keys::introspect],
        "/internal/memberships/lookup" => [post => admin::lookup_membership],
        "/.well-known/jwks.json" => [get => wellknown::jwks],
        "/.well-known/openid-configuration" => [get => wellknown::openid_configuration],
    }
    Gospace {
        // First: the busiest route is matched before any pattern with a parameter.
        "/v1/auth/token" => [post => tokens::token],
        "/v1/auth/login" => [post => sign_in::login],
        "/v1/auth/verify" => [post => sign_in::verify],
        "/v1/auth/login/{provider}" => [get => social::start],
        "/v1/auth/callback/{provider}" => [get => social::callback],
        "/v1/auth/logout" => [post => logout],
        "/v1/auth/revoke" => [post => token_management::revoke],
        "/v1/auth/admin/users" => [get => admin::list_users, post => admin::invite],
        "/v1/auth/admin/users/{user_id}" => [patch => admin::update_user, delete => admin::remove_user],
        "/v1/auth/admin/roles" => [get => admin::list_roles, post => admin::create_role],
        "/v1/auth/admin/roles/{id}" => [patch => admin::update_role, delete => admin::delete_role],
        "/v1/auth/introspect" => [post => token_management::introspect],
        "/v1/auth/api-key" => [post => api_keys::create, get => api_keys::list],
        "/v1/auth/api-key/{id}" => [delete => api_keys::delete],
        "/v1/auth/me" => [get => profile::me, patch => profile::update_me],
        "/v1/system/workspaces" => [get => profile::workspaces, post => profile::create_workspace],
        "/v1/auth/service-principals" => [
            post => service_principals::create,
            get => service_principals::list,
        ],
        "/v1/auth/service-principals/{id}" => [delete => service_principals::delete],
        "/v1/auth/service-principals/{id}/rotate-secret" => [post => service_principals::rotate_secret],
    }
}

fn routes(cfg: &mut web::ServiceConfig, state: web::Data<AuthState>) {
    cfg.app_data(state);
    register(cfg);
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    /// The session's current refresh token (`rt_…`).
    refresh_token: String,
}

/// Sign out
///
/// Ends the session of a refresh token, at every gateway within a second.
/// Unknown tokens answer the same, so the endpoint tells nothing about which
/// tokens exist.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    operation_id = "logout",
    tag = "tokens",
    request_body = LogoutRequest,
    responses(
        (status = 200, description = "Signed out (message `signed out`), known token or not.", body = Envelope<NoData>),
        (status = 503, description = "The database is unreachable.", body = ErrorEnvelope),
    )
)]
async fn logout(
    body: Json<LogoutRequest>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<()>, ApiError> {
    let presented = body.into_inner().refresh_token;
    let family = state
        .db
        .transaction(move |conn| {
            let Some(family) = sessions::family_of(conn, &presented)? else {
                return Ok::<_, store::StoreError>(None);
            };
            sessions::revoke_family(conn, &family)?;
            Ok(Some(family))
        })
        .await?;
    if let Some(id) = family {
        state.publish_revocation(Revocation::Session { id }).await;
    }
    Ok(ApiResponse::ok(()).message("signed out"))
}
