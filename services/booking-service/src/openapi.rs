//! The OpenAPI document of booking-service, generated from the code: the
//! handlers' `#[utoipa::path]` annotations and the `ToSchema` derives of what
//! they read and write. `proto-docs/booking-service.openapi.json` is this
//! document, committed; the API tests fail when it is stale
//! (`SPACEPORT_UPDATE_OPENAPI=1 cargo test -p booking-service --test api openapi`
//! rewrites it) or when a route in [`crate::ROUTES`] is missing from it.

use crate::{availability, bookings, meeting_spaces, organizations, space_groups};
use service_kit::envelope::Meta;
use service_kit::{ErrorCode, FieldError};
use std::borrow::Cow;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Object, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

/// The document, as committed under `proto-docs/`.
pub fn document() -> utoipa::openapi::OpenApi {
    BookingApi::openapi()
}

const DESCRIPTION: &str = "\
Organizations, space groups, meeting spaces, their business hours and \
unavailability, availability, and bookings.

Clients call through the gateway (the one public URL). It verifies the \
credential, applies rate limits (`X-RateLimit-*` headers; 429 with \
`Retry-After`), and signs an identity token for booking-service, which refuses \
requests that did not come through it. Organizations live in the caller's \
workspace; another workspace's ids answer 404.

Public (no credential): the by-slug look-ups (public fields only), the \
availability of spaces with `public_booking`, and `POST /api/v1/bookings` on \
such spaces (rate-limited per client address; the booking starts `pending`).

Bookings: `pending → confirmed → active (check-in) → completed (check-out)`, \
or `cancelled` with a reason (`user`, `admin`, `no_show`). Illegal moves \
answer 409. Active bookings (pending, confirmed, active) of one space never \
overlap, buffers included; intervals are half-open, so a booking may start \
when another ends. Bookings of spaces that require check-in and are not \
checked in within the grace period are released as `no_show`.

Every JSON answer is an envelope: `{status, success: true, message?, data, \
timestamp, meta?}`, or on failure `{status, success: false, message, \
errors?, error: {code, request_id}, timestamp}`. Timestamps are RFC 3339, \
UTC, with milliseconds; ids look like `<prefix>_<ULID>`. POST endpoints \
honour `Idempotency-Key`.";

#[derive(OpenApi)]
#[openapi(
    info(title = "Spaceport booking-service", description = DESCRIPTION),
    servers((url = "http://localhost:8080", description = "The gateway; clients call every endpoint through it.")),
    paths(
        organizations::list,
        organizations::create,
        organizations::by_slug,
        organizations::get,
        organizations::update,
        organizations::delete,
        space_groups::list,
        space_groups::create,
        space_groups::get,
        space_groups::update,
        space_groups::delete,
        meeting_spaces::list,
        meeting_spaces::create,
        meeting_spaces::by_slug,
        meeting_spaces::get,
        meeting_spaces::update,
        meeting_spaces::delete,
        meeting_spaces::get_hours,
        meeting_spaces::put_hours,
        meeting_spaces::list_unavailability,
        meeting_spaces::add_unavailability,
        meeting_spaces::delete_unavailability,
        availability::get,
        bookings::list,
        bookings::create,
        bookings::get,
        bookings::update,
        bookings::confirm,
        bookings::cancel,
        bookings::check_in,
        bookings::check_out,
    ),
    components(schemas(ErrorEnvelope, ErrorCode, FieldError, Meta)),
    modifiers(&Conventions),
    tags(
        (name = "organizations", description = "Organizations of the caller's workspace."),
        (name = "space-groups", description = "Buildings or floors of an organization."),
        (name = "meeting-spaces", description = "Bookable rooms, their business hours and unavailability."),
        (name = "availability", description = "Slots of a space in its time zone."),
        (name = "bookings", description = "Bookings and their state machine."),
    )
)]
struct BookingApi;

/// What the annotations cannot say: the credentials and the error envelope
/// every operation may answer.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token of a person or a service principal, verified by the \
                         gateway; a workspace API key is also accepted as a bearer token. Scopes \
                         named on an operation must be held by the credential. \
                         `x-workspace-key: <workspace id>` selects the workspace when the \
                         credential names none.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A workspace API key, `key_<shard>.<LOC>.<WORKSPACE>.<secret>`.",
            ))),
        );
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
        for (_, item) in openapi.paths.paths.iter_mut() {
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

/// The `Idempotency-Key` request header of POSTs.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // described, never built: `idempotency::Claim` reads it
pub(crate) struct IdempotencyHeader {
    /// 1–255 visible ASCII characters. The same key with the same request
    /// within 24 hours replays the first answer (`idempotent-replayed: true`);
    /// with another request it answers 422.
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
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

/// The success envelope of an offset list (`?page=&limit=`).
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
    /// `{page, limit, total}`.
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

/// The error envelope: every failure outside the OAuth endpoints.
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

/// `?page=&limit=` of offset lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `OffsetQuery` reads them
pub(crate) struct PageParams {
    /// 1-based.
    #[param(minimum = 1, maximum = 100000, default = 1)]
    page: Option<u32>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
}

/// `success` of the success envelope (and `active` of live tokens).
pub(crate) fn always_true() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

/// `success` of the error envelope (and `active` of dead tokens).
pub(crate) fn always_false() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
}
