//! `POST /v1/auth/revoke` (RFC 7009) and `POST /v1/auth/introspect` (RFC 7662).
//! Both take `token` (and an optional `token_type_hint`) as a form or JSON.

use crate::AuthState;
use crate::schema::service_principals;
use crate::sessions;
use crate::tokens::OAuthError;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel::prelude::*;
use identity::revocation::Revocation;
use identity::{AccessClaims, AccessTokenVerifier, PublicKeys};
use serde::Deserialize;
use store::StoreError;

#[derive(Debug, Deserialize)]
struct TokenForm {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn parse(req: &HttpRequest, body: &[u8]) -> Result<TokenForm, OAuthError> {
    if body.len() > 16 * 1024 {
        return Err(OAuthError::new("invalid_request", "request body too large"));
    }
    let json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if json {
        serde_json::from_slice(body)
            .map_err(|e| OAuthError::new("invalid_request", format!("malformed JSON: {e}")))
    } else {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| OAuthError::new("invalid_request", format!("malformed form: {e}")))
    }
}

/// Verifies an access token against this service's own published keys.
fn verify_access_token(state: &AuthState, token: &str) -> Option<AccessClaims> {
    let keys = PublicKeys::from_jwks(&state.ring.jwks()).ok()?;
    AccessTokenVerifier::new(&state.tokens.issuer, &state.tokens.audience, keys)
        .verify(token)
        .ok()
}

/// RFC 7009: revokes a refresh token's session, or the session an access token
/// derives from. Answers 200 for unknown tokens too (§2.2).
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

/// RFC 7662: for an authenticated service principal, whether a token is active
/// and what it carries.
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
