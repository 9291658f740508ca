//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`.

use crate::AuthState;
use crate::openapi::constant;
use actix_web::{HttpResponse, web};
use utoipa::ToSchema;

/// The keys that sign access tokens (JWKS)
///
/// Ed25519 keys (RFC 8037). A new key appears here before it signs, and an old
/// one stays until its last token has expired.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "discovery",
    responses(
        (status = 200, description = "The key set.", body = Jwks, content_type = "application/jwk-set+json",
            headers(("cache-control" = String, description = "`public, max-age=300`"))),
    )
)]
pub async fn jwks(state: web::Data<AuthState>) -> HttpResponse {
    // Short caching: a new key is published `key_publish_lead_secs` before it
    // signs, which must exceed this.
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .json(state.ring.jwks())
}

/// Authorization server metadata
///
/// OpenID-style discovery of the token, revocation and introspection
/// endpoints, and of the signing keys.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    operation_id = "openid_configuration",
    tag = "discovery",
    responses(
        (status = 200, description = "The metadata.", body = OpenIdConfiguration,
            headers(("cache-control" = String, description = "`public, max-age=300`"))),
    )
)]
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
            "scopes_supported": state.scopes.all(),
            "response_types_supported": [],
            "subject_types_supported": ["public"],
        }))
}

// The documents above, described for the OpenAPI document (the handlers write
// them as JSON).

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built
struct Jwks {
    keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(ToSchema)]
#[allow(dead_code)]
struct Jwk {
    #[schema(schema_with = okp)]
    kty: String,
    #[schema(schema_with = ed25519)]
    crv: String,
    /// The public key, base64url without padding.
    x: String,
    /// Matches the `kid` header of the tokens it signed.
    kid: String,
    #[serde(rename = "use")]
    #[schema(schema_with = sig)]
    use_: String,
    #[schema(schema_with = eddsa)]
    alg: String,
}

fn okp() -> utoipa::openapi::Object {
    constant("OKP")
}

fn ed25519() -> utoipa::openapi::Object {
    constant("Ed25519")
}

fn sig() -> utoipa::openapi::Object {
    constant("sig")
}

fn eddsa() -> utoipa::openapi::Object {
    constant("EdDSA")
}

/// Authorization server metadata (RFC 8414 fields, as OpenID discovery names
/// them). The URLs are under `tokens.issuer`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenIdConfiguration {
    #[schema(format = "uri")]
    issuer: String,
    #[schema(format = "uri")]
    jwks_uri: String,
    #[schema(format = "uri")]
    token_endpoint: String,
    #[schema(format = "uri")]
    revocation_endpoint: String,
    #[schema(format = "uri")]
    introspection_endpoint: String,
    /// `client_credentials`, `refresh_token`
    grant_types_supported: Vec<String>,
    /// `client_secret_basic`, `client_secret_post`
    token_endpoint_auth_methods_supported: Vec<String>,
    /// `EdDSA`
    id_token_signing_alg_values_supported: Vec<String>,
    #[schema(value_type = Vec<crate::openapi::Scope>)]
    scopes_supported: Vec<String>,
    /// Empty: there is no authorization endpoint.
    response_types_supported: Vec<String>,
    /// `public`
    subject_types_supported: Vec<String>,
}
