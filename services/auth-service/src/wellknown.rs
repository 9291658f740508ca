//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`.

use crate::AuthState;
use actix_web::{HttpResponse, web};

pub async fn jwks(state: web::Data<AuthState>) -> HttpResponse {
    // Short caching: a new key is published `key_publish_lead_secs` before it
    // signs, which must exceed this.
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .json(state.ring.jwks())
}

pub async fn openid_configuration(state: web::Data<AuthState>) -> HttpResponse {
    let issuer = state.tokens.issuer.trim_end_matches('/');
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .json(serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "token_endpoint": format!("{issuer}/v1/auth/token"),
            "revocation_endpoint": format!("{issuer}/v1/auth/revoke"),
            "introspection_endpoint": format!("{issuer}/v1/auth/introspect"),
            "grant_types_supported": ["client_credentials", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "scopes_supported": identity::scopes::CATALOG.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            "response_types_supported": [],
            "subject_types_supported": ["public"],
        }))
}
