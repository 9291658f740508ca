//! The OpenAPI document of spaces-service, generated from the code: the
//! handlers' `#[utoipa::path]` annotations and the `ToSchema` derives of what
//! they read and write. `proto-docs/spaces-service.openapi.json` is this
//! document, committed; the API tests fail when it is stale
//! (`SPACEPORT_UPDATE_OPENAPI=1 cargo test -p spaces-service --test api openapi`
//! rewrites it) or when a route in [`crate::ROUTES`] is missing from it.

use crate::{settings, space_keys, spaces, upload_configs};
use service_kit::envelope::Meta;
use service_kit::{ErrorCode, FieldError};
use std::borrow::Cow;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Object, Ref, RefOr, ResponseBuilder, Schema, ServerBuilder};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

/// The document, as committed under `proto-docs/`.
pub fn document() -> utoipa::openapi::OpenApi {
    SpacesApi::openapi()
}

/// Where the gateway reaches spaces-service itself (`upstreams.spaces`), for
/// `/internal/*`, which it never proxies.
const UPSTREAM_URL: &str = "http://127.0.0.1:8083";

const DESCRIPTION: &str = "\
Content spaces of a workspace: their settings (access control, security, \
custom domain, webhook), upload configs and space API keys. The surface is \
Tuzzle's admin API.

Clients call through the gateway (the one public URL). It verifies the \
credential (see the security schemes), applies rate limits \
(`X-RateLimit-Limit`, `-Remaining`, `-Reset` on responses; 429 with \
`Retry-After`), and signs an identity token for spaces-service, which refuses \
requests that did not come through it.

Workspace credentials (access tokens, workspace API keys) reach every space \
of their workspace; a space API key (`sk_…`) reaches its own space only and \
cannot create spaces or keys. Reading needs `spaces:read`, changing \
`spaces:write`. Another workspace's (or, for a space key, another space's) \
resources answer 404, never 403.

Every JSON answer is an envelope: `{status, success: true, message?, data, \
timestamp, meta?}`, or on failure `{status, success: false, message, \
errors?, error: {code, request_id}, timestamp}`. Lists are cursor-paginated, \
oldest first: `meta {limit, next_cursor, has_more}`; pass `next_cursor` back \
as `?cursor=`. Timestamps are RFC 3339, UTC, with milliseconds; ids look like \
`<prefix>_<ULID>`.

Every response carries `x-request-id` (a sane incoming one is reused), which \
error bodies repeat as `error.request_id`. Malformed JSON (400 \
`invalid_json`), a wrong content type (415), an oversize body (413), an unknown \
route (404) or method (405) answer in the error envelope on every endpoint, as \
do the gateway's own refusals (401, 403, 429, 502, 503, 504).";

#[derive(OpenApi)]
#[openapi(
    info(title = "Spaceport spaces-service", description = DESCRIPTION),
    servers((url = "http://localhost:8080", description = "The gateway; clients call every endpoint through it.")),
    paths(
        spaces::list,
        spaces::create,
        spaces::delete_by_query,
        spaces::get,
        spaces::update,
        spaces::delete,
        settings::set_access_control,
        settings::reset_access_control,
        settings::set_security,
        settings::reset_security,
        space_keys::create,
        space_keys::list,
        space_keys::delete,
        upload_configs::list,
        upload_configs::create,
        upload_configs::get,
        upload_configs::update,
        upload_configs::delete,
        space_keys::introspect,
    ),
    components(schemas(ErrorEnvelope, ErrorCode, FieldError, Meta)),
    modifiers(&Conventions),
    tags(
        (name = "spaces", description = "Spaces and their settings."),
        (name = "upload-configs", description = "What a space accepts for upload."),
        (name = "space-api-keys", description = "Keys that reach one space."),
        (name = "internal", description = "Called by the gateway only, never proxied."),
    )
)]
struct SpacesApi;

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
                        .description(Some(
                            "A space API key (`sk_…`, the Tuzzle form), an access token of a \
                             person or a service principal (an EdDSA JWT the gateway verifies \
                             against auth-service's JWKS), or a workspace API key (`key_…`). \
                             Scopes named on an operation must be held by the credential; a \
                             space key holds `spaces:read` and `spaces:write` for its space. \
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
                    "A space API key (`sk_…`) or a workspace API key (`key_…`); keys carry a \
                     checksum, which the gateway checks before it introspects them (cached). \
                     Send one credential only.",
                ))),
            ),
            (
                "gateway_identity",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "x-spaceport-identity",
                    "The identity token the gateway signs for each request it sends \
                     spaces-service (and for its own calls to `/internal/*`). Clients never \
                     send it: the gateway drops a client's copy.",
                ))),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
        components.responses.insert(
            "Error".into(),
            ResponseBuilder::new()
                .description(
                    "Any other failure, in the error envelope: malformed JSON (400 \
                     `invalid_json`), 405, 413, 415, the gateway's refusals (401, 403, 429) and \
                     server-side failures (500, 502, 503, 504).",
                )
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ErrorEnvelope::name())))
                        .build(),
                )
                .build()
                .into(),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path.starts_with("/internal/") {
                item.servers = Some(vec![
                    ServerBuilder::new()
                        .url(UPSTREAM_URL)
                        .description(Some("spaces-service itself; only the gateway calls it."))
                        .build(),
                ]);
            }
            for operation in operations(item) {
                operation
                    .responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| Ref::from_response_name("Error").into());
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The success envelope.
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built: `ApiResponse` writes it
pub(crate) struct Envelope<T> {
    /// The HTTP status, repeated.
    status: u16,
    #[schema(schema_with = always_true)]
    success: bool,
    /// A note for people, on some answers.
    #[schema(nullable = false)]
    message: Option<String>,
    data: T,
    /// When the answer was made: RFC 3339, UTC, milliseconds.
    #[schema(format = DateTime)]
    timestamp: String,
    /// Only on lists.
    #[schema(nullable = false)]
    meta: Option<Meta>,
}

/// The success envelope of a cursor list (`?cursor=&limit=`).
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built: `ApiResponse` writes it
pub(crate) struct ListEnvelope<T> {
    /// The HTTP status, repeated.
    status: u16,
    #[schema(schema_with = always_true)]
    success: bool,
    /// A note for people, on some answers.
    #[schema(nullable = false)]
    message: Option<String>,
    data: T,
    /// When the answer was made: RFC 3339, UTC, milliseconds.
    #[schema(format = DateTime)]
    timestamp: String,
    /// `{limit, next_cursor, has_more}`.
    meta: Meta,
}

/// `data` of an answer that carries none: `null`.
pub(crate) struct NoData;

impl PartialSchema for NoData {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Null).into()
    }
}

impl ToSchema for NoData {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NoData")
    }
}

/// The error envelope.
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built: `ApiError::body` writes it
pub(crate) struct ErrorEnvelope {
    /// The HTTP status, repeated.
    status: u16,
    #[schema(schema_with = always_false)]
    success: bool,
    /// What went wrong, for people (for 500, always `internal error`).
    message: String,
    /// One entry per invalid field or query parameter; only when there are any.
    #[schema(nullable = false)]
    errors: Option<Vec<FieldError>>,
    error: ErrorInfo,
    /// When the answer was made: RFC 3339, UTC, milliseconds.
    #[schema(format = DateTime)]
    timestamp: String,
}

#[derive(ToSchema)]
#[allow(dead_code)] // described, never built
pub(crate) struct ErrorInfo {
    code: ErrorCode,
    /// The `x-request-id` of the response.
    #[schema(required = true)]
    request_id: Option<String>,
}

/// `?cursor=&limit=` of cursor lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `CursorQuery` reads them
pub(crate) struct CursorParams {
    /// `meta.next_cursor` of the previous page; opaque and signed.
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
}

/// A string that is always `value`.
pub(crate) fn constant(value: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .build()
}

/// `success` of the success envelope.
pub(crate) fn always_true() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

/// `success` of the error envelope.
pub(crate) fn always_false() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
}
