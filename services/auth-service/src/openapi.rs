//! The OpenAPI document of auth-service, generated from the code: the handlers'
//! `#[utoipa::path]` annotations and the `ToSchema` derives of what they read
//! and write. `proto-docs/auth-service.openapi.json` is this document,
//! committed; the API tests fail when it is stale (`make openapi` rewrites it)
//! or when a route in [`crate::ROUTES`] is missing from it.
//!
//! Here: what every part of the API shares (the envelopes, paging, scopes, the
//! credentials). Shapes a module writes as ad-hoc JSON are described next to the
//! code that writes them.

use crate::{
    admin, api_keys, profile, service_principals, sign_in, social, token_management, tokens,
    wellknown,
};
use service_kit::envelope::Meta;
pub(crate) use service_kit::openapi::{
    Envelope, ErrorEnvelope, ListEnvelope, NoData, always_false, always_true, constant,
};
use service_kit::{ErrorCode, FieldError};
use std::borrow::Cow;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Object, Ref, RefOr, Schema, ServerBuilder};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

/// The document, as committed under `proto-docs/`.
pub fn document() -> utoipa::openapi::OpenApi {
    AuthApi::openapi()
}

/// Where the gateway reaches auth-service itself (`upstreams.auth`), for
/// `/internal/*`, which it never proxies.
const UPSTREAM_URL: &str = "http://127.0.0.1:8081";

const DESCRIPTION: &str = "\
People, workspaces, memberships, roles, credentials and sign-in.

Clients call through the gateway (the one public URL). It verifies the \
credential (see the security schemes), applies rate limits \
(`X-RateLimit-Limit`, `-Remaining`, `-Reset` on responses; 429 with \
`Retry-After`), and signs an identity token for auth-service, which refuses \
requests that did not come through it.

Each route family answers in its product's dialect. The gospace routes \
(`/v1/*`): `{success: true, data}`; lists `{success, items, next_cursor, \
prev_cursor, pagination: {total_results}}`, paged with `page_size` (1-500, \
default 50), `page`, `cursor` (opaque, overrides `page`) and `sort` \
(`FIELD.asc|desc`, `created_at.desc` by default); failures `{success: false, \
error: {code, message, details: [{path, message}], request_id}}` with \
gospace's codes (`unauthorised`, `forbidden`, `validation_failed`, \
`resource_not_found`, `rate_limited`, `internal_error`; the catalog's for \
other cases). The SpaceOS routes (`/api/v1/auth/otp/*`) and the platform's own \
(`/internal/*`): `{status, success: true, message?, data, timestamp}`, or on \
failure `{status, success: false, message, errors?: [{field, message}], \
error: {code, request_id}, timestamp}` (invalid input: 400 `Validation \
failed`). The OAuth endpoints (`/v1/auth/token`, `/v1/auth/revoke`, \
`/v1/auth/introspect`) answer in RFC 6749, 7009 and 7662 form instead, so that \
stock OAuth2 clients work (a JSON refresh at `/v1/auth/token` answers in the \
gospace envelope). Timestamps are RFC 3339, UTC, with milliseconds; ids look \
like `<prefix>_<ULID>`. Another workspace's resources answer 404, never 403.

Every response carries `x-request-id` (a sane incoming one is reused), which \
error bodies repeat as `error.request_id`. Malformed JSON (400 \
`invalid_json`), a wrong content type (415), an oversize body (413), an unknown \
route (404) or method (405) answer in the route family's error shape on every \
endpoint, as do the gateway's own refusals (401, 403, 429, 502, 503, 504).";

#[derive(OpenApi)]
#[openapi(
    info(title = "Spaceport auth-service", description = DESCRIPTION),
    servers((url = "http://localhost:8080", description = "The gateway; clients call every endpoint through it.")),
    paths(
        sign_in::otp_request,
        sign_in::otp_verify,
        sign_in::login,
        sign_in::verify,
        social::start,
        social::callback,
        tokens::token,
        crate::logout,
        token_management::revoke,
        token_management::introspect,
        profile::me,
        profile::update_me,
        profile::workspaces,
        profile::create_workspace,
        admin::list_users,
        admin::invite,
        admin::update_user,
        admin::remove_user,
        admin::list_roles,
        admin::create_role,
        admin::update_role,
        admin::delete_role,
        api_keys::create,
        api_keys::list,
        api_keys::delete,
        api_keys::introspect,
        admin::lookup_membership,
        service_principals::create,
        service_principals::list,
        service_principals::delete,
        service_principals::rotate_secret,
        wellknown::jwks,
        wellknown::openid_configuration,
    ),
    // Path parameters' schemas are not collected on their own.
    components(schemas(ErrorEnvelope, ErrorCode, FieldError, Meta, social::Provider)),
    modifiers(&Conventions),
    tags(
        (name = "sign-in", description = "One-time codes, magic links, Google and GitHub."),
        (name = "tokens", description = "OAuth 2.0 token, revocation and introspection endpoints; signing out."),
        (name = "profile", description = "The caller's own profile."),
        (name = "workspaces", description = "The caller's workspaces."),
        (name = "admin", description = "A workspace's members and custom roles."),
        (name = "api-keys", description = "Workspace API keys."),
        (name = "service-principals", description = "Machine clients that use the client-credentials grant."),
        (name = "discovery", description = "Signing keys and server metadata."),
        (name = "internal", description = "Called by the gateway only, never proxied."),
    )
)]
struct AuthApi;

/// What the annotations cannot say: the credentials, the error envelope every
/// operation may answer, and where `/internal/*` lives.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let schemes = [
            (
                "bearer_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "An access token of a person or a service principal: an EdDSA JWT \
                             (`typ: at+jwt`) that the gateway verifies against \
                             `/.well-known/jwks.json` (`iss`, `aud`, `exp`, `nbf`, a known `kid`). \
                             A workspace API key (`key_…`) is also accepted as a bearer token. \
                             Scopes named on an operation must be held by the credential. \
                             `x-workspace-key: <workspace id>` selects the workspace when the \
                             credential names none.",
                        ))
                        .build(),
                ),
            ),
            (
                "api_key",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "x-api-key",
                    "A workspace API key, `key_<shard>.<LOC>.<WORKSPACE>.<secret>` with a \
                     checksum; the gateway checks its shape, then introspects it (cached). \
                     Send one credential only: a key header with a bearer token answers 401.",
                ))),
            ),
            (
                "org_api_key",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "x-org-api-key",
                    "The same workspace API key under its SpaceOS header name.",
                ))),
            ),
            (
                "client_basic",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Basic)
                        .description(Some(
                            "A service principal's `client_id` and `client_secret`, each \
                             form-urlencoded (RFC 6749 §2.3.1). The gateway passes Basic \
                             credentials through to auth-service.",
                        ))
                        .build(),
                ),
            ),
            (
                "gateway_identity",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "x-spaceport-identity",
                    "The identity token the gateway signs for each request it sends \
                     auth-service (and for its own calls to `/internal/*`). Clients never \
                     send it: the gateway drops a client's copy.",
                ))),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
        for (path, fields) in SORTED_LISTS {
            if let Some(list) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.get.as_mut())
            {
                list.parameters
                    .get_or_insert_with(Vec::new)
                    .push(service_kit::openapi::sort_parameter(fields).into());
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let internal = path.starts_with("/internal/");
            if internal {
                item.servers = Some(vec![
                    ServerBuilder::new()
                        .url(UPSTREAM_URL)
                        .description(Some("auth-service itself; only the gateway calls it."))
                        .build(),
                ]);
            }
        }
        service_kit::openapi::add_default_error_response(openapi);
        service_kit::openapi::apply_dialects(openapi, &crate::families());
    }
}

/// `?page_size=&page=&cursor=` of the gospace lists; each list's `sort` is
/// added from [`SORTED_LISTS`]. The bounds are `service_kit::pagination`'s
/// (`DEFAULT_PAGE_SIZE`, `MAX_PAGE_SIZE`, `MAX_PAGE`; the API tests hold them
/// equal).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `ListQuery` reads them
pub(crate) struct ListParams {
    /// Items per page.
    #[param(minimum = 1, maximum = 500, default = 50)]
    page_size: Option<u32>,
    /// The page to start at (1-based), for a first request; `cursor`
    /// overrides it.
    #[param(minimum = 1, maximum = 100000, default = 1)]
    page: Option<u32>,
    /// `next_cursor` or `prev_cursor` of an earlier answer, as it was sent:
    /// cursors are opaque.
    cursor: Option<String>,
}

/// Every gospace list and the fields it sorts by (the handlers validate
/// `sort` against the same constants).
pub const SORTED_LISTS: [(&str, &[&str]); 5] = [
    ("/v1/system/workspaces", profile::SORT_FIELDS),
    ("/v1/auth/admin/users", admin::MEMBER_SORT_FIELDS),
    ("/v1/auth/admin/roles", admin::ROLE_SORT_FIELDS),
    ("/v1/auth/api-key", api_keys::SORT_FIELDS),
    (
        "/v1/auth/service-principals",
        service_principals::SORT_FIELDS,
    ),
];

/// A scope, `resource:action`: the built-in catalog
/// (`identity::scopes::CATALOG`) and those a deployment adds (`scopes.extra`).
pub(crate) struct Scope;

/// What `identity::Scope::parse` accepts.
pub const SCOPE_PATTERN: &str = "^[a-z0-9_-]+:[a-z0-9_-]+$";

impl PartialSchema for Scope {
    fn schema() -> RefOr<Schema> {
        let catalog = identity::scopes::CATALOG;
        let meanings = catalog
            .iter()
            .map(|(name, meaning)| format!("- `{name}`: {meaning}"))
            .collect::<Vec<_>>()
            .join("\n");
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(SCOPE_PATTERN))
            .max_length(Some(identity::scopes::MAX_SCOPE_LEN))
            .examples(catalog.iter().map(|(name, _)| *name))
            .description(Some(format!(
                "A scope, `resource:action`; one catalog for every service:\n\n{meanings}\n\n\
                 A deployment may grant more (auth-service's `scopes.extra`); \
                 `/.well-known/openid-configuration` lists its `scopes_supported`."
            )))
            .into()
    }
}

impl ToSchema for Scope {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Scope")
    }
}

/// A set of scopes as answers write it.
pub(crate) struct Scopes;

impl PartialSchema for Scopes {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(Scope::name()))
            .unique_items(true)
            .description(Some("Scopes, sorted."))
            .into()
    }
}

impl ToSchema for Scopes {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Scopes")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Scope::name().into(), Scope::schema()));
    }
}

/// A set of scopes as requests may send it.
pub(crate) struct ScopesInput;

impl PartialSchema for ScopesInput {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Space-separated, as in OAuth `scope`.")),
            )
            .item(ArrayBuilder::new().items(Ref::from_schema_name(Scope::name())))
            .description(Some(
                "Scopes, as a list or a space-separated string; scopes the deployment does \
                 not grant are refused (422) and repeats ignored.",
            ))
            .into()
    }
}

impl ToSchema for ScopesInput {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ScopesInput")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Scope::name().into(), Scope::schema()));
    }
}

/// `token_type`.
pub(crate) fn bearer() -> Object {
    constant("Bearer")
}
