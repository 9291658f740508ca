//! The OpenAPI document of booking-service, generated from the code: the
//! handlers' `#[utoipa::path]` annotations and the `ToSchema` derives of what
//! they read and write. `proto-docs/booking-service.openapi.json` is this
//! document, committed; the API tests fail when it is stale
//! (`SPACEPORT_UPDATE_OPENAPI=1 cargo test -p booking-service --test api openapi`
//! rewrites it) or when a route in [`crate::ROUTES`] is missing from it.

use crate::{availability, bookings, meeting_spaces, organizations, space_groups};
use service_kit::envelope::Meta;
pub(crate) use service_kit::openapi::{Envelope, ErrorEnvelope, ListEnvelope, NoData, PageParams};
use service_kit::{ErrorCode, FieldError};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

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

Bookings: `pending → confirmed → active → completed`, or `cancelled` with a \
reason (`user`, `admin`, `no_show`). Illegal moves answer 409. Time moves \
bookings too: a confirmed booking becomes `active` when checked in, or by \
itself at its start on spaces that do not require check-in; an active one \
becomes `completed` at check-out, or by itself at its end; bookings of spaces \
that require check-in and are not checked in within the grace period are \
released as `no_show`. Active bookings \
(pending, confirmed, active) of one space never overlap, buffers included; \
intervals are half-open, so a booking may start when another ends.

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
        service_kit::openapi::add_default_error_response(openapi);
        service_kit::openapi::apply_dialects(openapi, &crate::families());
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
