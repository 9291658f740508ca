//! What every service's OpenAPI document shares: the response envelopes, the
//! paging parameters, the `default` error response every operation carries, and
//! a few schema helpers. The services describe their own operations and
//! credentials; the envelope itself is written here ([`crate::envelope`],
//! [`crate::ApiError`]), so its description lives here too.

use crate::envelope::Meta;
use crate::{ErrorCode, FieldError};
use std::borrow::Cow;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Object, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// The success envelope.
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built: `ApiResponse` writes it
pub struct Envelope<T> {
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

/// The success envelope of a list: `meta` is `{page, limit, total}` for offset
/// lists (`?page=&limit=`), `{limit, next_cursor, has_more}` for cursor lists
/// (`?cursor=&limit=`).
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built: `ApiResponse` writes it
pub struct ListEnvelope<T> {
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
    meta: Meta,
}

/// `data` of an answer that carries none: `null`.
pub struct NoData;

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

/// The error envelope: every failure (auth-service's OAuth endpoints answer
/// theirs in RFC 6749 form).
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built: `ApiError::body` writes it
pub struct ErrorEnvelope {
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
pub struct ErrorInfo {
    code: ErrorCode,
    /// The `x-request-id` of the response.
    #[schema(required = true)]
    request_id: Option<String>,
}

/// `?page=&limit=` of offset lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `OffsetQuery` reads them
pub struct PageParams {
    /// 1-based.
    #[param(minimum = 1, maximum = 100000, default = 1)]
    page: Option<u32>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
}

/// `?cursor=&limit=` of cursor lists.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `CursorQuery` reads them
pub struct CursorParams {
    /// `meta.next_cursor` of the previous page; opaque and signed.
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
}

/// A string that is always `value`.
pub fn constant(value: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .build()
}

/// `success` of the success envelope (and the like).
pub fn always_true() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

/// `success` of the error envelope (and the like).
pub fn always_false() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
}

/// The operations of a path item.
pub fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
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

/// Adds the `Error` response (the error envelope) and makes it the `default`
/// answer of every operation that documents no other.
pub fn add_default_error_response(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
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
