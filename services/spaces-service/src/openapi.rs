//! The OpenAPI document of spaces-service, generated from the code: the
//! handlers' `#[utoipa::path]` annotations and the `ToSchema` derives of what
//! they read and write. `proto-docs/spaces-service.openapi.json` is this
//! document, committed; the API tests fail when it is stale
//! (`SPACEPORT_UPDATE_OPENAPI=1 cargo test -p spaces-service --test api openapi`
//! rewrites it) or when a route in [`crate::ROUTES`] is missing from it.

use crate::{cdn, files, folders, settings, space_keys, spaces, upload_configs, uploads};
use service_kit::envelope::Meta;
pub(crate) use service_kit::openapi::{
    CursorParams, Envelope, ErrorEnvelope, ListEnvelope, NoData,
};
use service_kit::{ErrorCode, FieldError};
use utoipa::openapi::ServerBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document, as committed under `proto-docs/`.
pub fn document() -> utoipa::openapi::OpenApi {
    SpacesApi::openapi()
}

/// Where the gateway reaches spaces-service itself (`upstreams.spaces`), for
/// `/internal/*`, which it never proxies.
const UPSTREAM_URL: &str = "http://127.0.0.1:8083";

const DESCRIPTION: &str = "\
Content spaces of a workspace: their settings (access control, security, \
custom domain, webhook), upload configs, space API keys, and their content: \
uploads, files and folders. The surface is Tuzzle's Upload and Admin APIs.

Clients call through the gateway (the one public URL). It verifies the \
credential (see the security schemes), applies rate limits \
(`X-RateLimit-Limit`, `-Remaining`, `-Reset` on responses; 429 with \
`Retry-After`), and signs an identity token for spaces-service, which refuses \
requests that did not come through it.

Workspace credentials (access tokens, workspace API keys) reach every space \
of their workspace. Space API keys (`sk_…`) are of two types: a `space` key \
reaches its own space only and cannot create spaces or keys; an `account` key \
(minted by a workspace admin, `keys:admin`) reaches every space of its \
workspace and may create spaces and mint space keys. Reading needs \
`spaces:read`, changing `spaces:write`. Another workspace's (or, for a space \
key, another space's) resources answer 404, never 403.

Three operations take no credential: an upload with a signed URL \
(`POST /api/v1/upload/signed`, authorised by its signature), an unsigned \
upload (`POST /api/v1/upload/unsigned/{spaceHandle}/{configName}`, within the \
config's `unsigned_restrictions`), and the PUT of a presigned upload on the \
filesystem store (`PUT /api/v1/upload/objects/{fileId}`, signed). Uploads are \
checked against an upload config as they stream: `File too large.` (413), \
`File type not allowed.` and `Security validation failed.` (422), a name or \
folder path that climbs out of its folder (400).

Answers are Tuzzle's (Laravel's): `{data}`; lists, cursor-paginated and \
oldest first, `{data, path, per_page, next_cursor, next_page_url, \
prev_cursor, prev_page_url}` (pass `next_cursor` back as `?cursor=`, with \
`?limit=`); failures `{message}`, and for invalid input 422 `{message, \
errors: {field: [sentences]}}` (`The given data was invalid.` when several \
fields are named). A name already taken is such a 422 (`The name has already \
been taken.`); 401 says `Unauthenticated.`, 403 `Forbidden.`. Unknown body \
fields are ignored. Timestamps are RFC 3339, UTC, with milliseconds; ids look \
like `<prefix>_<ULID>`, but for space API keys, whose ids are integers.

Every response carries `x-request-id` (a sane incoming one is reused). \
Malformed JSON (400), a wrong content type (415), an oversize body (413), an \
unknown route (404) or method (405) answer in the error shape on every \
endpoint, as do the gateway's own refusals (401, 403, 429, 502, 503, 504). \
`/internal/*` answers in the platform's own envelope.";

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
        upload_configs::list_all,
        upload_configs::create,
        upload_configs::get,
        upload_configs::update,
        upload_configs::delete,
        uploads::direct,
        uploads::generate_signed_url,
        uploads::signed,
        uploads::unsigned,
        uploads::presign,
        uploads::put_object,
        uploads::confirm,
        files::list,
        files::update,
        files::by_ref,
        files::urls,
        files::get,
        files::delete,
        files::signed_url,
        files::set_access_control,
        files::reset_access_control,
        folders::list,
        folders::create,
        folders::get,
        folders::update,
        folders::delete,
        folders::set_access_control,
        folders::reset_access_control,
        cdn::get,
        cdn::head,
        space_keys::introspect,
    ),
    components(schemas(ErrorEnvelope, ErrorCode, FieldError, Meta, cdn::CdnErrorBody)),
    modifiers(&Conventions),
    tags(
        (name = "spaces", description = "Spaces and their settings."),
        (name = "upload-configs", description = "What a space accepts for upload."),
        (name = "space-api-keys", description = "Keys that reach one space."),
        (name = "upload", description = "Tuzzle's Upload API: files into a space, checked against an upload config."),
        (name = "files", description = "A space's files, and their delivery URLs."),
        (name = "folders", description = "How a space's files are organised."),
        (name = "delivery", description = "Tuzzle's CDN: files served, images transformed and watermarked."),
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
                            "A space API key (`sk_…`, the Tuzzle form; the gateway also takes \
                             it as `?api_key=`), an access token of a person or a service \
                             principal (an EdDSA JWT the gateway verifies against \
                             auth-service's JWKS), or a workspace API key (`key_…`). Scopes \
                             named on an operation must be held by the credential; a space \
                             key holds `spaces:read` and `spaces:write` for its space (an \
                             account key for every space of its workspace). \
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
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path.starts_with("/internal/") {
                item.servers = Some(vec![
                    ServerBuilder::new()
                        .url(UPSTREAM_URL)
                        .description(Some("spaces-service itself; only the gateway calls it."))
                        .build(),
                ]);
            }
        }
        service_kit::openapi::add_default_error_response(openapi);
        service_kit::openapi::apply_dialects(openapi, &crate::families());
    }
}
