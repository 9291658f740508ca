//! The OpenAPI document of events-service, generated from the code: the
//! handlers' `#[utoipa::path]` annotations and the `ToSchema` derives of what
//! they read and write. `proto-docs/events-service.openapi.json` is this
//! document, committed; the API tests fail when it is stale
//! (`SPACEPORT_UPDATE_OPENAPI=1 cargo test -p events-service --test api openapi`
//! rewrites it) or when a route in [`crate::ROUTES`] is missing from it.

use crate::{catalog, deliveries, gospace, webhooks};
use service_kit::envelope::Meta;
pub(crate) use service_kit::openapi::{Envelope, ErrorEnvelope, ListEnvelope, NoData, PageParams};
use service_kit::{ErrorCode, FieldError};
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

/// The document, as committed under `proto-docs/`.
pub fn document() -> utoipa::openapi::OpenApi {
    EventsApi::openapi()
}

const DESCRIPTION: &str = "\
Webhook subscriptions, and the deliveries of the platform's events to them.

Clients call through the gateway (the one public URL). It verifies the \
credential (see the security schemes), applies rate limits \
(`X-RateLimit-Limit`, `-Remaining`, `-Reset` on responses; 429 with \
`Retry-After`), and signs an identity token for events-service, which refuses \
requests that did not come through it. Reading needs `webhooks:read`, changing \
`webhooks:write`; another workspace's webhooks answer 404, never 403. A key \
bound to one organization reaches that organization's SpaceOS webhooks only.

Two route families, each in its product's dialect. SpaceOS \
(`/api/v1/webhooks*`): `{status, success: true, message?, data, timestamp}`, \
lists with `meta {page, limit, total}` (`?page=&limit=`), failures `{status, \
success: false, message, errors?: [{field, message}], error: {code, \
request_id}, timestamp}` (invalid input: 400 `Validation failed`). gospace \
(`/v1/webhooks/*`): `{success: true, data}`, lists `{success, items, \
next_cursor, prev_cursor, pagination: {total_results}}` (`page_size` 1-500, \
`page`, `cursor`, `sort`), failures `{success: false, error: {code, message, \
details: [{path, message}], request_id}}` with gospace's codes. Unknown body \
fields are refused. Timestamps are RFC 3339, UTC, with milliseconds; ids look \
like `<prefix>_<ULID>` (`wh_`, `dlv_`, `evt_`).

**Deliveries.** Each event of a webhook's workspace (for SpaceOS webhooks, of \
its organization, or concerning the whole workspace) whose name the webhook \
lists is POSTed to it once it is enabled and not failing. SpaceOS webhooks \
receive `{event, timestamp, webhook_id, data}` with `X-Webhook-Signature: \
hex(HMAC-SHA256(secret, raw body))`; gospace webhooks `{event, workspace_id, \
request_id, payload}` with `x-gospace-signature` computed the same way. Every \
delivery also carries the Standard Webhooks headers: `webhook-id` (the \
delivery's id, the same on every attempt: deduplicate by it), \
`webhook-timestamp` (Unix seconds of the attempt: refuse stale ones) and \
`webhook-signature: v1,<base64 HMAC-SHA256 of \"{webhook-id}.{webhook-timestamp}.{body}\">`. \
Key bytes: the product signature uses the secret's UTF-8 bytes as written \
(`whsec_` prefix included); the Standard Webhooks signature uses the \
base64-decoded part after `whsec_` for a `whsec_` secret (generated secrets \
are `whsec_` + base64 of 32 random bytes, so stock Standard Webhooks \
libraries verify with the secret as shown), and the UTF-8 bytes of any other \
secret (give libraries `whsec_` + base64 of those bytes).

Delivery is at-least-once. A 2xx answer within the timeout (30 s by default) \
is success; anything else, redirects included, is retried after 1 min, 5 min, \
30 min, 2 h and 24 h (the deployment's schedule, ±10%). After the last retry \
fails the webhook turns `failing`: it receives no new events and its waiting \
deliveries pause until `PATCH` with `enabled: true` revives it, and its \
`notify_email` is mailed once. Receivers must be public `https` hosts (no \
loopback, private, link-local or metadata addresses, checked at registration \
and again at connect time); redirects are not followed; at most 64 KiB of an \
answer is kept in the deliveries log.

**Events.** One catalog of dotted names for both families; `data` (gospace: \
`payload`) is the event's payload as its producer wrote it (booking events: \
`{booking_id, meeting_space_id, organization_id, start_time, end_time, status, \
organizer: {name, email}}`); see the event catalog.

Every response carries `x-request-id` (a sane incoming one is reused). \
Malformed JSON (400), a wrong content type (415), an oversize body (413), an \
unknown route (404) or method (405) answer in the route family's error shape, \
as do the gateway's own refusals (401, 403, 429, 502, 503, 504).";

#[derive(OpenApi)]
#[openapi(
    info(title = "Spaceport events-service", description = DESCRIPTION),
    servers((url = "http://localhost:8080", description = "The gateway; clients call every endpoint through it.")),
    paths(
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        deliveries::list,
        deliveries::test,
        deliveries::retry,
        gospace::list,
        gospace::create,
        gospace::update,
        gospace::delete,
    ),
    components(schemas(ErrorEnvelope, ErrorCode, FieldError, Meta, EventName)),
    modifiers(&Conventions),
    tags(
        (name = "webhooks", description = "SpaceOS webhook subscriptions, one organization's each."),
        (name = "deliveries", description = "The deliveries log, test events and retries (every webhook of the workspace)."),
        (name = "gospace-webhooks", description = "gospace webhook subscriptions, the workspace's."),
    )
)]
struct EventsApi;

/// An event name of the catalog ([`catalog::EVENTS`]).
pub struct EventName;

impl PartialSchema for EventName {
    fn schema() -> RefOr<Schema> {
        let meanings = catalog::EVENTS
            .iter()
            .map(|(name, meaning)| format!("- `{name}`: {meaning}"))
            .collect::<Vec<_>>()
            .join("\n");
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(catalog::names()))
            .description(Some(format!(
                "An event name, one catalog for both route families:\n\n{meanings}"
            )))
            .into()
    }
}

impl ToSchema for EventName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventName")
    }
}

/// `?page_size=&page=&cursor=` of the gospace list; its `sort` is added from
/// [`gospace::SORT_FIELDS`]. The bounds are `service_kit::pagination`'s.
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

/// Every gospace list and the fields it sorts by (the handler validates
/// `sort` against the same constant).
pub const SORTED_LISTS: [(&str, &[&str]); 1] = [("/v1/webhooks/webhooks", gospace::SORT_FIELDS)];

/// What the annotations cannot say: the credentials, the gospace list's
/// `sort`, the error envelope every operation may answer, and each family's
/// dialect.
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
                            "An access token of a person or a service principal (an EdDSA JWT \
                             the gateway verifies against auth-service's JWKS), or a workspace \
                             API key (`key_…`). Scopes named on an operation must be held by the \
                             credential. `x-workspace-key: <workspace id>` selects the \
                             workspace when the credential names none.",
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
                     Send one credential only.",
                ))),
            ),
            (
                "org_api_key",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "x-org-api-key",
                    "The same workspace API key under its SpaceOS header name; a key bound to \
                     one organization reaches that organization's webhooks only.",
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
        service_kit::openapi::add_default_error_response(openapi);
        service_kit::openapi::apply_dialects(openapi, &crate::families());
    }
}
