//! Signing in with Google or GitHub: `GET /v1/auth/login/{provider}` sends the
//! browser to the provider (OAuth 2.0 authorization code with PKCE S256 and a
//! single-use `state`); `GET /v1/auth/callback/{provider}` exchanges the code,
//! takes the provider's *verified* email, and signs the person in.

use crate::AuthState;
use crate::config::ProviderConfig;
use crate::openapi::{Envelope, ErrorEnvelope};
use crate::sign_in::{SignedIn, open_session, signed_in};
use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use service_kit::{ApiError, ApiResponse, Query};
use sha2::{Digest, Sha256};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

const STATE_TTL: Duration = Duration::from_secs(600);

/// A sign-in provider; it answers 404 unless configured (`social.<provider>.client_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Google,
    Github,
}

impl Provider {
    fn parse(name: &str) -> Option<Provider> {
        match name {
            "google" => Some(Provider::Google),
            "github" => Some(Provider::Github),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Github => "github",
        }
    }
}

/// What the `state` remembers between the redirect and the callback.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    provider: Provider,
    verifier: String,
}

fn configured(state: &AuthState, name: &str) -> Result<(Provider, ProviderConfig), ApiError> {
    let provider = Provider::parse(name).ok_or_else(|| ApiError::not_found("sign-in provider"))?;
    let config = match provider {
        Provider::Google => &state.social.google,
        Provider::Github => &state.social.github,
    };
    if config.client_id.is_empty() {
        return Err(ApiError::not_found("sign-in provider"));
    }
    Ok((provider, config.clone()))
}

fn callback_url(state: &AuthState, provider: Provider) -> String {
    format!(
        "{}/v1/auth/callback/{}",
        state.tokens.issuer.trim_end_matches('/'),
        provider.name()
    )
}

/// Sign in with Google or GitHub
///
/// Sends the browser to the provider: OAuth 2.0 authorization code with PKCE
/// (S256) and a single-use `state` that lives ten minutes. The provider comes
/// back to `GET /v1/auth/callback/{provider}`.
#[utoipa::path(
    get,
    path = "/v1/auth/login/{provider}",
    operation_id = "social_login",
    tag = "sign-in",
    params(("provider" = Provider, Path, description = "The sign-in provider.")),
    responses(
        (status = 302, description = "To the provider's authorization page.",
            headers(
                ("location" = String, description = "The provider's authorization URL with `response_type=code`, `client_id`, `redirect_uri`, `scope`, `state`, `code_challenge` and `code_challenge_method=S256`."),
                ("cache-control" = String, description = "`no-store`"),
            )),
        (status = 404, description = "Unknown provider, or not configured.", body = ErrorEnvelope),
        (status = 503, description = "The cache holding `state` is unavailable.", body = ErrorEnvelope),
    )
)]
pub async fn start(
    path: web::Path<String>,
    state: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    let (provider, config) = configured(&state, &path)?;
    let state_token = crate::secrets::random_credential("st_");
    // RFC 7636: a 43-character verifier; the provider sees only its hash.
    let verifier = crate::secrets::random_credential("");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let pending = serde_json::to_vec(&Pending { provider, verifier }).expect("serializes");
    state
        .cache
        .set(
            &format!("social:state:{state_token}"),
            &pending,
            Some(STATE_TTL),
        )
        .await
        .map_err(|e| ApiError::service_unavailable("sign-in is unavailable").with_source(e))?;
    let mut location = url::Url::parse(&config.authorize_url).map_err(ApiError::internal)?;
    location
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &config.client_id)
        .append_pair("redirect_uri", &callback_url(&state, provider))
        .append_pair("scope", &config.scope)
        .append_pair("state", &state_token)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(HttpResponse::Found()
        .insert_header(("location", location.to_string()))
        .insert_header(("cache-control", "no-store"))
        .finish())
}

/// What the provider sends back; other parameters are ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Callback {
    /// The authorization code (with `state`).
    code: Option<String>,
    /// The `state` of `GET /v1/auth/login/{provider}`; single use.
    state: Option<String>,
    /// The provider's refusal (e.g. `access_denied`), instead of `code`.
    error: Option<String>,
}

fn refused(message: &str) -> ApiError {
    ApiError::unauthorized(format!("sign-in with the provider failed: {message}"))
}

/// The provider's redirect back
///
/// Exchanges the code (with the PKCE verifier), reads the person's *verified*
/// email from the provider and signs them in, creating their account and
/// personal workspace the first time. Answers in the envelope, not a redirect.
#[utoipa::path(
    get,
    path = "/v1/auth/callback/{provider}",
    operation_id = "social_callback",
    tag = "sign-in",
    params(("provider" = Provider, Path, description = "The sign-in provider."), Callback),
    responses(
        (status = 200, description = "Signed in.", body = Envelope<SignedIn>),
        (status = 400, description = "`code` or `state` missing, or `state` unknown, used, expired or of another provider (`errors[].field` = `state`).", body = ErrorEnvelope),
        (status = 401, description = "The provider refused (`error`), or did not accept the code, or its profile could not be read.", body = ErrorEnvelope),
        (status = 403, description = "The provider has no verified email for this account.", body = ErrorEnvelope),
        (status = 404, description = "Unknown provider, or not configured.", body = ErrorEnvelope),
        (status = 503, description = "The provider or the cache is unreachable.", body = ErrorEnvelope),
    )
)]
pub async fn callback(
    path: web::Path<String>,
    query: Query<Callback>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<SignedIn>, ApiError> {
    let (provider, config) = configured(&state, &path)?;
    let Callback {
        code,
        state: state_token,
        error,
    } = query.into_inner();
    if let Some(error) = error {
        return Err(refused(&format!("the provider answered {error}")));
    }
    let (Some(code), Some(state_token)) = (code, state_token) else {
        return Err(ApiError::invalid_query(
            "state",
            "code and state are required",
        ));
    };
    // The state is single use: whoever deletes it first owns the callback.
    let key = format!("social:state:{state_token}");
    let unavailable = |e: cache::CacheError| {
        ApiError::service_unavailable("sign-in is unavailable").with_source(e)
    };
    let stored = state.cache.get(&key).await.map_err(unavailable)?;
    let consumed = state.cache.delete(&key).await.map_err(unavailable)?;
    let pending = stored
        .filter(|_| consumed)
        .and_then(|bytes| serde_json::from_slice::<Pending>(&bytes).ok())
        .filter(|p| p.provider == provider)
        .ok_or_else(|| ApiError::invalid_query("state", "unknown, used or expired"))?;

    let email = verified_email(&state, provider, &config, &code, &pending.verifier).await?;
    let refresh_ttl = state.refresh_ttl();
    let catalog = state.scopes.clone();
    let request_id = service_kit::request_id::current();
    let parts = state
        .db
        .transaction(move |conn| {
            open_session(conn, &catalog, &email, refresh_ttl, request_id.as_deref())
        })
        .await?;
    Ok(signed_in(&state, parts))
}

#[derive(Debug, Deserialize)]
struct ProviderToken {
    access_token: String,
}

#[derive(Debug, Deserialize)]
struct GoogleUser {
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

#[derive(Debug, Deserialize)]
struct GithubEmail {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

/// Exchanges the code (with the PKCE verifier) and reads the person's verified
/// email; an unverified one is refused.
async fn verified_email(
    state: &AuthState,
    provider: Provider,
    config: &ProviderConfig,
    code: &str,
    verifier: &str,
) -> Result<String, ApiError> {
    let unreachable = |e: reqwest::Error| {
        ApiError::service_unavailable("the sign-in provider is unreachable").with_source(e)
    };
    let callback = callback_url(state, provider);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", callback.as_str()),
        ("client_id", config.client_id.as_str()),
        ("client_secret", config.client_secret.expose()),
        ("code_verifier", verifier),
    ];
    let body = serde_urlencoded::to_string(form).map_err(ApiError::internal)?;
    let response = state
        .http
        .post(&config.token_url)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(refused("the code was not accepted"));
    }
    let token: ProviderToken = response
        .json()
        .await
        .map_err(|_| refused("unexpected token answer"))?;
    let info = state
        .http
        .get(&config.userinfo_url)
        .bearer_auth(&token.access_token)
        .header("accept", "application/json")
        .header("user-agent", "spaceport")
        .send()
        .await
        .map_err(unreachable)?;
    if !info.status().is_success() {
        return Err(refused("the profile could not be read"));
    }
    let email = match provider {
        Provider::Google => {
            let user: GoogleUser = info
                .json()
                .await
                .map_err(|_| refused("unexpected profile"))?;
            user.email.filter(|_| user.email_verified)
        }
        Provider::Github => {
            let mut emails: Vec<GithubEmail> = info
                .json()
                .await
                .map_err(|_| refused("unexpected profile"))?;
            emails.retain(|e| e.verified);
            emails.sort_by_key(|e| !e.primary);
            emails.into_iter().next().map(|e| e.email)
        }
    };
    email
        .as_deref()
        .and_then(crate::accounts::normalize_email)
        .ok_or_else(|| ApiError::forbidden("the provider has no verified email for this account"))
}
