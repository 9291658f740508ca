//! `POST /v1/auth/revoke` (RFC 7009) and `POST /v1/auth/introspect` (RFC 7662).
//! Both take `token` (and an optional `token_type_hint`) as a form or JSON.

use crate::AuthState;
use crate::schema::service_principals;
use crate::sessions;
use crate::tokens::OAuthError;
use crate::tokens::OAuthErrorBody;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel::prelude::*;
use identity::revocation::Revocation;
use identity::{AccessClaims, AccessTokenVerifier};
use serde::Deserialize;
use store::StoreError;

/// A form, or JSON with `Content-Type: application/json`; other fields are
/// ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct TokenForm {
    /// A refresh token (`rt_…`) or an access token. Required.
    token: Option<String>,
    /// Accepted and ignored: the token's shape tells its type.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    /// Introspection: the service principal, unless sent with HTTP Basic (never
    /// both). Ignored by revocation.
    client_id: Option<String>,
    /// Introspection: its secret, unless sent with HTTP Basic. Ignored by
    /// revocation.
    client_secret: Option<String>,
}

fn parse(req: &HttpRequest, body: &[u8]) -> Result<TokenForm, OAuthError> {
    crate::tokens::read_oauth_body(req, body, true).map(|(form, _json)| form)
}

/// An RFC 7662 answer, described for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // described, never built: `introspect_inner` writes it
enum TokenIntrospection {
    Inactive(InactiveToken),
    RefreshToken(ActiveRefreshToken),
    AccessToken(ActiveAccessToken),
}

/// Unknown, expired, revoked, or malformed.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct InactiveToken {
    #[schema(schema_with = crate::openapi::always_false)]
    active: bool,
}

/// A live refresh token (`rt_…`).
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ActiveRefreshToken {
    #[schema(schema_with = crate::openapi::always_true)]
    active: bool,
    #[schema(schema_with = refresh_token_type)]
    token_type: String,
    /// The user (`usr_…`).
    sub: String,
    /// Space-separated.
    scope: String,
    #[schema(schema_with = spaceport_client)]
    client_id: String,
    /// Expiry, seconds since the epoch.
    exp: i64,
}

/// A live access token, whose session (or service principal) still exists.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ActiveAccessToken {
    #[schema(schema_with = crate::openapi::always_true)]
    active: bool,
    #[schema(schema_with = crate::openapi::bearer)]
    token_type: String,
    /// A user (`usr_…`) or a service principal (`spn_…`).
    sub: String,
    /// Space-separated.
    scope: String,
    /// `spaceport` for people's tokens, the principal's id for its own.
    client_id: String,
    iss: String,
    aud: String,
    /// Seconds since the epoch.
    iat: u64,
    /// Seconds since the epoch.
    exp: u64,
    jti: String,
    /// The workspace the token acts in.
    #[schema(required = true)]
    workspace_id: Option<String>,
}

fn refresh_token_type() -> utoipa::openapi::Object {
    crate::openapi::constant("refresh_token")
}

fn spaceport_client() -> utoipa::openapi::Object {
    crate::openapi::constant("spaceport")
}

/// Verifies an access token against this service's own published keys.
fn verify_access_token(state: &AuthState, token: &str) -> Option<AccessClaims> {
    AccessTokenVerifier::new(
        &state.tokens.issuer,
        &state.tokens.audience,
        state.ring.public_keys(),
    )
    .verify(token)
    .ok()
}

/// Revoke a token (RFC 7009)
///
/// Revokes a refresh token's session, or the session an access token derives
/// from, at every gateway within a second. Answers 200 for unknown tokens too
/// (§2.2). Needs no client authentication.
#[utoipa::path(
    post,
    path = "/v1/auth/revoke",
    operation_id = "revoke",
    tag = "tokens",
    request_body(content(
        (TokenForm = "application/x-www-form-urlencoded"),
        (TokenForm = "application/json"),
    )),
    responses(
        (status = 200, description = "Revoked, or unknown: an empty body.",
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_request`: `token` missing, a malformed body, or a body above 16 KiB.", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the database is unreachable.", body = OAuthErrorBody),
    )
)]
pub async fn revoke(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AuthState>,
) -> HttpResponse {
    let form = match parse(&req, &body) {
        Ok(form) => form,
        Err(e) => return e.response(),
    };
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return OAuthError::new("invalid_request", "token is required").response();
    };
    let session = if token.starts_with("rt_") {
        let presented = token.clone();
        match state
            .db
            .run(move |conn| sessions::family_of(conn, &presented))
            .await
        {
            Ok(family) => family,
            Err(e) => return OAuthError::from(e).response(),
        }
    } else {
        verify_access_token(&state, &token).and_then(|claims| claims.sid)
    };
    if let Some(family) = session {
        let id = family.clone();
        if let Err(e) = state
            .db
            .run(move |conn| sessions::revoke_family(conn, &id))
            .await
        {
            return OAuthError::from(e).response();
        }
        state
            .publish_revocation(Revocation::Session { id: family })
            .await;
    }
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .finish()
}

/// Introspect a token (RFC 7662)
///
/// For an authenticated service principal: whether a token is active, and
/// what it carries. A token is only as live as its session (or its service
/// principal).
#[utoipa::path(
    post,
    path = "/v1/auth/introspect",
    operation_id = "introspect",
    tag = "tokens",
    request_body(content(
        (TokenForm = "application/x-www-form-urlencoded"),
        (TokenForm = "application/json"),
    )),
    security(("client_basic" = []), ()),
    responses(
        (status = 200, description = "The token's state; `{active: false}` for anything unknown, expired, revoked or malformed.", body = TokenIntrospection,
            headers(("cache-control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_request`: `token` missing, credentials both in Basic and the body, a malformed body, or a body above 16 KiB.", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`: client authentication missing, malformed or failed. Credentials go in HTTP Basic or as `client_id`/`client_secret` in the body. A bearer credential the gateway cannot verify is refused there, in the envelope.", body = crate::tokens::OAuthOrGatewayError,
            headers(("www-authenticate" = String, description = "`Basic realm=\"spaceport\"`"))),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the database is unreachable.", body = OAuthErrorBody),
    )
)]
pub async fn introspect(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AuthState>,
) -> HttpResponse {
    match introspect_inner(&req, &body, &state).await {
        Ok(answer) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .json(answer),
        Err(e) => e.response(),
    }
}

async fn introspect_inner(
    req: &HttpRequest,
    body: &[u8],
    state: &AuthState,
) -> Result<serde_json::Value, OAuthError> {
    let form = parse(req, body)?;
    let (client_id, client_secret) =
        crate::tokens::client_credentials_from(req, form.client_id, form.client_secret)?;
    crate::service_principals::authenticate(state, &client_id, &client_secret)
        .await?
        .ok_or_else(|| OAuthError::new("invalid_client", "client authentication failed"))?;
    let token = form
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
    let inactive = serde_json::json!({ "active": false });
    if token.starts_with("rt_") {
        let presented = token.clone();
        let described = state
            .db
            .run(move |conn| sessions::describe(conn, &presented))
            .await?;
        return Ok(match described {
            Some(refresh) if refresh.live => serde_json::json!({
                "active": true,
                "token_type": "refresh_token",
                "sub": refresh.user_id,
                "scope": refresh.scope,
                "client_id": "spaceport",
                "exp": refresh.expires_at.and_utc().timestamp(),
            }),
            _ => inactive,
        });
    }
    let Some(claims) = verify_access_token(state, &token) else {
        return Ok(inactive);
    };
    // A token is only as live as its session (or its service principal).
    let live = match claims.sid.clone() {
        None => true,
        Some(sid) if sid.starts_with("spn_") => {
            state
                .db
                .run(move |conn| {
                    service_principals::table
                        .find(&sid)
                        .count()
                        .get_result::<i64>(conn)
                        .map(|n| n > 0)
                        .map_err(StoreError::from)
                })
                .await?
        }
        Some(sid) => {
            !state
                .db
                .run(move |conn| sessions::family_revoked(conn, &sid))
                .await?
        }
    };
    if !live {
        return Ok(inactive);
    }
    Ok(serde_json::json!({
        "active": true,
        "token_type": "Bearer",
        "sub": claims.sub,
        "scope": claims.scope,
        "client_id": claims.client_id,
        "iss": claims.iss,
        "aud": claims.aud,
        "iat": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
        "workspace_id": claims.wrk,
    }))
}
