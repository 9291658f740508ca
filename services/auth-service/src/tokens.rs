//! Access tokens, and `POST /v1/auth/token`.
//!
//! The token endpoint speaks RFC 6749 so that stock OAuth2 clients work: form
//! posts get bare `{access_token, token_type, expires_in, …}` answers, and every
//! failure is `{error, error_description}`. A JSON refresh (the gospace form)
//! answers in the platform envelope.

use crate::AuthState;
use crate::accounts;
use crate::openapi::Envelope;
use crate::sessions::{self, Rotation};
use crate::verified_clients::VerifiedClient;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use identity::revocation::{self, Revocation};
use identity::{AccessClaims, PrincipalType, ScopeSet};
use serde::{Deserialize, Serialize};
use service_kit::ApiResponse;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use store::StoreError;
use utoipa::ToSchema;

/// Who a token is for, and what it may do.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: String,
    pub principal_type: PrincipalType,
    pub client_id: String,
    pub workspace_id: Option<String>,
    pub scopes: ScopeSet,
    pub session_id: Option<String>,
}

impl AuthState {
    /// Signs an access token; returns it with its lifetime in seconds.
    pub fn access_token(&self, grant: &Grant) -> (String, u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let ttl = self.tokens.access_token_ttl_secs;
        let claims = AccessClaims {
            iss: self.tokens.issuer.clone(),
            aud: self.tokens.audience.clone(),
            sub: grant.subject.clone(),
            client_id: grant.client_id.clone(),
            iat: now,
            exp: now + ttl,
            jti: ulid::Ulid::new().to_string(),
            ptyp: grant.principal_type,
            wrk: grant.workspace_id.clone(),
            scope: grant.scopes.to_string(),
            sid: grant.session_id.clone(),
        };
        (
            self.ring
                .active()
                .sign_jwt(identity::ACCESS_TOKEN_TYPE, &claims),
            ttl,
        )
    }

    pub fn refresh_ttl(&self) -> chrono::Duration {
        chrono::Duration::days(self.tokens.refresh_token_ttl_days as i64)
    }

    /// Tells every gateway; a failure to publish is logged, the revocation in the
    /// database stands either way.
    pub async fn publish_revocation(&self, revocation: Revocation) {
        if let Err(e) = self
            .cache
            .publish(revocation::CHANNEL, &revocation.to_bytes())
            .await
        {
            tracing::error!(error = %e, ?revocation, "could not publish a revocation");
        }
    }
}

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = match error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder.insert_header(("cache-control", "no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            builder.insert_header(("www-authenticate", "Basic realm=\"spaceport\""));
        }
        builder
            .json(serde_json::json!({"error": self.error, "error_description": self.description}))
    }
}

/// An RFC 6749 §5.2 error, as `OAuthError::response` writes it.
#[derive(ToSchema)]
#[schema(as = OAuthError)]
#[allow(dead_code)] // described, never built: `OAuthError::response` writes it
pub(crate) struct OAuthErrorBody {
    error: OAuthErrorCode,
    /// For people; not to be parsed.
    error_description: String,
}

/// A 401 of an OAuth endpoint: the service's RFC 6749 error, or the
/// gateway's envelope when it refused a bad bearer credential before the
/// request reached the service.
pub(crate) struct OAuthOrGatewayError;

impl utoipa::PartialSchema for OAuthOrGatewayError {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{OneOfBuilder, Ref};
        OneOfBuilder::new()
            .item(Ref::from_schema_name("OAuthError"))
            .item(Ref::from_schema_name("ErrorEnvelope"))
            .description(Some(
                "`OAuthError` from the service; the envelope (`error.code: unauthorized`) when \
                 the gateway refused a bad bearer credential first.",
            ))
            .into()
    }
}

impl ToSchema for OAuthOrGatewayError {
    fn name() -> std::borrow::Cow<'static, str> {
        "OAuthOrGatewayError".into()
    }
}

/// The RFC 6749 §5.2 codes this service answers (and, for `5xx`, the RFC
/// 6749 §4.1.2.1 ones).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    UnsupportedGrantType,
    ServerError,
    TemporarilyUnavailable,
}

impl From<StoreError> for OAuthError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => {
                OAuthError::new("temporarily_unavailable", "try again shortly")
            }
            other => {
                tracing::error!(error = ?other, "token endpoint failed");
                OAuthError::new("server_error", "internal error")
            }
        }
    }
}

/// A token request, as a form (RFC 6749) or JSON (gospace). Other fields are
/// ignored.
#[derive(Debug, Deserialize, ToSchema)]
struct TokenRequest {
    /// Required in a form. A JSON body may leave it out: then `refresh_token`
    /// means a refresh and `client_id` client credentials (the gospace forms).
    #[schema(value_type = Option<GrantType>)]
    grant_type: Option<String>,
    /// `refresh_token`: the token to rotate (`rt_…`).
    refresh_token: Option<String>,
    /// `client_credentials`: the service principal (`spn_…`), unless sent with
    /// HTTP Basic (never both).
    client_id: Option<String>,
    /// `client_credentials`: its secret (`sps_…`), unless sent with HTTP Basic.
    client_secret: Option<String>,
    /// gospace: the workspace the token is for. `refresh_token`: moves the
    /// session to another workspace of the user (scopes of their role there);
    /// `client_credentials`: must be the principal's own workspace.
    workspace_id: Option<String>,
    /// `client_credentials`: space-separated scopes, a subset of the
    /// principal's (default: all of them).
    scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct UserRef {
    /// `usr_…`
    user_id: String,
    #[schema(format = Email)]
    email: String,
}

/// The gospace answer to a JSON refresh.
#[derive(Serialize, ToSchema)]
struct RefreshedSession {
    user: UserRef,
    access_token: String,
    /// The successor of the presented token; the presented one is spent.
    refresh_token: String,
    #[schema(schema_with = crate::openapi::bearer)]
    token_type: &'static str,
    /// Seconds the access token lives.
    expires_in: u64,
}

/// The grant types the token endpoint serves.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // described, never built
enum GrantType {
    ClientCredentials,
    RefreshToken,
}

/// A bare RFC 6749 §5.1 answer, as `client_credentials` (and a form refresh)
/// write it.
#[derive(Serialize, ToSchema)]
struct TokenResponse {
    /// An EdDSA JWT (`typ: at+jwt`).
    access_token: String,
    #[schema(schema_with = crate::openapi::bearer)]
    token_type: &'static str,
    /// Seconds the access token lives.
    expires_in: u64,
    /// A refresh only: the successor of the presented token (`rt_…`); the
    /// presented one is spent.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// The granted scopes, space-separated.
    scope: String,
}

impl TokenResponse {
    /// The answer, not to be cached (RFC 6749 §5.1).
    fn into_response(self) -> HttpResponse {
        HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .json(self)
    }
}

/// What a successful token request answers.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // described, never built
enum TokenAnswer {
    Bare(TokenResponse),
    /// A refresh with a JSON body (gospace).
    Envelope(Envelope<RefreshedSession>),
}

const MAX_BODY: usize = 16 * 1024;

/// Token endpoint (RFC 6749)
///
/// Grants `client_credentials` (a service principal's id and secret, by HTTP
/// Basic or in the body) and `refresh_token` (rotates the token; a token used
/// twice revokes its whole session). Answers in RFC 6749 form, not the
/// envelope, so stock OAuth2 clients work; only a JSON refresh (the gospace
/// form) answers in the envelope. Bodies above 16 KiB are refused.
#[utoipa::path(
    post,
    path = "/v1/auth/token",
    operation_id = "token",
    tag = "tokens",
    request_body(content(
        (TokenRequest = "application/x-www-form-urlencoded"),
        (TokenRequest = "application/json"),
    )),
    security((), ("client_basic" = [])),
    responses(
        (status = 200, description = "A token. Bare RFC 6749 §5.1 JSON, except a JSON-bodied refresh: the envelope.", body = TokenAnswer,
            headers(("cache-control" = String, description = "`no-store` (bare answers)"))),
        (status = 400, description = "`invalid_request` (malformed body, wrong content type, missing field, credentials both in Basic and the body, `workspace_id` not the client's), `invalid_grant` (refresh token unknown, used, expired or revoked; not a member of `workspace_id`; membership ended), `invalid_scope`, `unsupported_grant_type`.", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`: client authentication missing, malformed or failed. A bearer credential the gateway cannot verify is refused there, in the envelope.", body = OAuthOrGatewayError,
            headers(("www-authenticate" = String, description = "`Basic realm=\"spaceport\"`"))),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the database is unreachable.", body = OAuthErrorBody),
    )
)]
pub async fn token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AuthState>,
) -> HttpResponse {
    match token_inner(&req, &body, &state).await {
        Ok(response) => response,
        Err(e) => e.response(),
    }
}

/// Reads the body of an OAuth endpoint: at most 16 KiB, JSON or form-encoded
/// by its content type; `true` beside it when it was JSON. With
/// `form_by_default`, any other content type (or none) is read as a form, as
/// RFC 7009/7662 clients send; otherwise it is refused.
pub(crate) fn read_oauth_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    form_by_default: bool,
) -> Result<(T, bool), OAuthError> {
    if body.len() > MAX_BODY {
        return Err(OAuthError::new("invalid_request", "request body too large"));
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match content_type.as_str() {
        "application/json" => serde_json::from_slice(body)
            .map(|parsed| (parsed, true))
            .map_err(|e| OAuthError::new("invalid_request", format!("malformed JSON: {e}"))),
        "application/x-www-form-urlencoded" => read_form(body),
        _ if form_by_default => read_form(body),
        _ => Err(OAuthError::new(
            "invalid_request",
            "send application/json or application/x-www-form-urlencoded",
        )),
    }
}

fn read_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<(T, bool), OAuthError> {
    serde_urlencoded::from_bytes(body)
        .map(|parsed| (parsed, false))
        .map_err(|e| OAuthError::new("invalid_request", format!("malformed form: {e}")))
}

async fn token_inner(
    req: &HttpRequest,
    body: &[u8],
    state: &AuthState,
) -> Result<HttpResponse, OAuthError> {
    let (request, json): (TokenRequest, bool) = read_oauth_body(req, body, false)?;
    let grant_type = match (&request.grant_type, json) {
        (Some(g), _) => g.as_str(),
        // The gospace JSON forms carry no grant_type: the fields say which.
        (None, true) if request.refresh_token.is_some() => "refresh_token",
        (None, true) if request.client_id.is_some() => "client_credentials",
        (None, _) => return Err(OAuthError::new("invalid_request", "grant_type is required")),
    };
    match grant_type {
        "refresh_token" => {
            let presented = request
                .refresh_token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is required"))?;
            refresh(state, presented, request.workspace_id, json).await
        }
        "client_credentials" => {
            let (client_id, client_secret) = client_credentials_of(req, &request)?;
            let client = crate::service_principals::authenticate(state, &client_id, &client_secret)
                .await?
                .ok_or_else(|| OAuthError::new("invalid_client", "client authentication failed"))?;
            client_credentials(
                state,
                client,
                request.workspace_id.as_deref(),
                request.scope.as_deref(),
            )
        }
        _ => Err(OAuthError::new(
            "unsupported_grant_type",
            "supported: client_credentials, refresh_token",
        )),
    }
}

/// The client's id and secret, from HTTP Basic (RFC 6749 §2.3.1: each part
/// form-urlencoded) or the body, but not both.
fn client_credentials_of(
    req: &HttpRequest,
    request: &TokenRequest,
) -> Result<(String, String), OAuthError> {
    client_credentials_from(
        req,
        request.client_id.clone(),
        request.client_secret.clone(),
    )
}

/// As [`client_credentials_of`], for any endpoint that authenticates clients.
pub fn client_credentials_from(
    req: &HttpRequest,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<(String, String), OAuthError> {
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, encoded)| encoded.trim().to_owned());
    let in_body = client_secret.is_some();
    match basic {
        Some(_) if in_body => Err(OAuthError::new(
            "invalid_request",
            "send client credentials in the Authorization header or the body, not both",
        )),
        Some(encoded) => {
            use base64::Engine;
            let invalid = || OAuthError::new("invalid_client", "malformed Basic credentials");
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(invalid)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
            let unescape = |part: &str| {
                percent_encoding::percent_decode_str(&part.replace('+', " "))
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| invalid())
            };
            Ok((unescape(id)?, unescape(secret)?))
        }
        None => match (client_id, client_secret) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(OAuthError::new(
                "invalid_client",
                "client authentication is required",
            )),
        },
    }
}

/// Issues a token to an authenticated service principal.
fn client_credentials(
    state: &AuthState,
    client: Arc<VerifiedClient>,
    workspace_id: Option<&str>,
    scope: Option<&str>,
) -> Result<HttpResponse, OAuthError> {
    if workspace_id.is_some_and(|w| w != client.workspace_id) {
        return Err(OAuthError::new(
            "invalid_request",
            "workspace_id is not the client's workspace",
        ));
    }
    let scopes = match scope.map(str::trim).filter(|s| !s.is_empty()) {
        None => client.scopes.clone(),
        Some(requested) => {
            let requested = ScopeSet::parse(requested)
                .map_err(|e| OAuthError::new("invalid_scope", e.to_string()))?;
            if !requested.is_subset(&client.scopes) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    "the client may not have all the requested scopes",
                ));
            }
            requested
        }
    };
    let grant = Grant {
        subject: client.id.clone(),
        principal_type: PrincipalType::Service,
        client_id: client.id.clone(),
        workspace_id: Some(client.workspace_id.clone()),
        scopes: scopes.clone(),
        // Deleting the principal revokes its tokens through this id.
        session_id: Some(client.id.clone()),
    };
    let (access_token, expires_in) = state.access_token(&grant);
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
        refresh_token: None,
        scope: scopes.to_string(),
    }
    .into_response())
}

/// Rotates a refresh token; with `switch_to`, the new tokens act in another
/// workspace the user belongs to (scopes of their role there).
async fn refresh(
    state: &AuthState,
    presented: String,
    switch_to: Option<String>,
    json: bool,
) -> Result<HttpResponse, OAuthError> {
    let ttl = state.refresh_ttl();
    let catalog = state.scopes.clone();
    let outcome = state
        .db
        .transaction(move |conn| {
            // A refused switch must not consume the token: check before rotating.
            let switch = match &switch_to {
                None => None,
                Some(workspace) => {
                    let role = match sessions::user_of(conn, &presented)? {
                        Some(user) => accounts::role_in(conn, &user, workspace)?,
                        None => None,
                    };
                    match role {
                        Some(role) => Some((workspace.clone(), role.scopes(&catalog).to_string())),
                        None => return Ok((Refreshed::NotMember, None)),
                    }
                }
            };
            let rotation = sessions::rotate(
                conn,
                &presented,
                ttl,
                switch.as_ref().map(|(w, s)| (w.as_str(), s.as_str())),
            )?;
            let Rotation::Rotated(session, issued) = rotation else {
                return Ok((rotation_without_session(rotation), None));
            };
            // The membership may have changed since sign-in: scopes shrink with
            // the role, and a removed member cannot refresh into the workspace.
            let user = accounts::user_by_id(conn, &session.user_id)?.ok_or(StoreError::NotFound)?;
            let allowed = match switch
                .as_ref()
                .map(|(w, _)| w)
                .or(session.workspace_id.as_ref())
            {
                Some(w) => accounts::role_in(conn, &user.id, w)?.map(|r| r.scopes(&catalog)),
                None => Some(ScopeSet::empty()),
            };
            Ok::<_, StoreError>((Refreshed::Ok, Some((session, issued, user, allowed))))
        })
        .await?;
    let (session, issued, user, allowed) = match outcome {
        (Refreshed::Reused(family_id), _) => {
            tracing::warn!(session = %family_id, "refresh token reuse: session revoked");
            state
                .publish_revocation(Revocation::Session { id: family_id })
                .await;
            return Err(OAuthError::new("invalid_grant", "refresh token is invalid"));
        }
        (Refreshed::NotMember, _) => {
            return Err(OAuthError::new(
                "invalid_grant",
                "not a member of that workspace",
            ));
        }
        (_, Some(rotated)) => rotated,
        _ => return Err(OAuthError::new("invalid_grant", "refresh token is invalid")),
    };
    let Some(allowed) = allowed else {
        let family = session.family_id.clone();
        state
            .db
            .run(move |conn| sessions::revoke_family(conn, &family))
            .await?;
        state
            .publish_revocation(Revocation::Session {
                id: session.family_id,
            })
            .await;
        return Err(OAuthError::new(
            "invalid_grant",
            "the membership behind this session has ended",
        ));
    };
    let scopes = ScopeSet::parse(&session.scope)
        .unwrap_or_default()
        .intersection(&allowed);
    let grant = Grant {
        subject: user.id.clone(),
        principal_type: PrincipalType::User,
        client_id: "spaceport".into(),
        workspace_id: session.workspace_id.clone(),
        scopes: scopes.clone(),
        session_id: Some(session.family_id.clone()),
    };
    let (access_token, expires_in) = state.access_token(&grant);
    if json {
        return Ok(ApiResponse::ok(RefreshedSession {
            user: UserRef {
                user_id: user.id,
                email: user.email,
            },
            access_token,
            refresh_token: issued.token,
            token_type: "Bearer",
            expires_in,
        })
        .into_response());
    }
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
        refresh_token: Some(issued.token),
        scope: scopes.to_string(),
    }
    .into_response())
}

enum Refreshed {
    Ok,
    Reused(String),
    Invalid,
    NotMember,
}

fn rotation_without_session(rotation: Rotation) -> Refreshed {
    match rotation {
        Rotation::Reused { family_id } => Refreshed::Reused(family_id),
        _ => Refreshed::Invalid,
    }
}
