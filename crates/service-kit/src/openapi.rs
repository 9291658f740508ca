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
    /// `next_cursor` of the previous page (SpaceOS: `meta.next_cursor`); opaque
    /// and signed.
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
}

/// `?sort=FIELD.asc|desc` of a gospace list sorted by `fields`
/// ([`crate::pagination::ListQuery`]).
pub fn sort_parameter(fields: &[&str]) -> utoipa::openapi::path::Parameter {
    let values: Vec<String> = fields
        .iter()
        .flat_map(|f| [format!("{f}.asc"), format!("{f}.desc")])
        .collect();
    utoipa::openapi::path::ParameterBuilder::new()
        .name("sort")
        .parameter_in(utoipa::openapi::path::ParameterIn::Query)
        .required(utoipa::openapi::Required::False)
        .description(Some(
            "The order: a field and a direction; ties are broken by id, the same way. \
             Any other value is refused (400 `validation_failed`).",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(values))
                .default(Some(serde_json::json!("created_at.desc"))),
        ))
        .build()
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

/// Rewrites a service's document so that each path's answers are described in
/// its family's dialect ([`crate::dialect`]): the handlers' annotations name
/// the SpaceOS envelopes (`Envelope_T`, `ListEnvelope_T`, `ErrorEnvelope`, the
/// `Error` response), and here the operations of gospace and Tuzzle paths get
/// their own shapes of the same data (`GospaceEnvelope_T`, `TuzzleList_T`, …),
/// and validation failures their dialect's status (SpaceOS 400, Tuzzle 422).
pub fn apply_dialects(openapi: &mut utoipa::openapi::OpenApi, families: &crate::dialect::Families) {
    let Ok(mut doc) = serde_json::to_value(&*openapi) else {
        return;
    };
    rewrite_dialects(&mut doc, families);
    if let Ok(rewritten) = serde_json::from_value(doc) {
        *openapi = rewritten;
    }
}

const SCHEMAS: &str = "#/components/schemas/";

fn rewrite_dialects(doc: &mut serde_json::Value, families: &crate::dialect::Families) {
    use crate::Dialect;
    use serde_json::{Value, json};
    let paths: Vec<String> = doc["paths"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let mut made = std::collections::BTreeMap::new();
    for path in paths {
        let dialect = families.for_path(&path);
        let methods: Vec<String> = doc["paths"][&path]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for method in methods {
            let Some(responses) = doc["paths"][&path][&method]
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            move_validation_status(responses, dialect);
            if dialect == Dialect::SpaceOs {
                continue;
            }
            let mut responses = std::mem::take(responses);
            for response in responses.values_mut() {
                if response["$ref"] == "#/components/responses/Error" {
                    let error = translate(doc, dialect, "ErrorEnvelope", &mut made)
                        .unwrap_or_else(|| "ErrorEnvelope".into());
                    let name = dialect_name(dialect, "Error");
                    let mut component = doc["components"]["responses"]["Error"].clone();
                    component["content"]["application/json"]["schema"]["$ref"] =
                        json!(format!("{SCHEMAS}{error}"));
                    doc["components"]["responses"][&name] = component;
                    response["$ref"] = json!(format!("#/components/responses/{name}"));
                    continue;
                }
                if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
                    for media in content.values_mut() {
                        translate_refs(doc, dialect, &mut media["schema"], &mut made);
                    }
                }
            }
            doc["paths"][&path][&method]["responses"] = Value::Object(responses);
        }
    }
}

/// Replaces, inside `schema`, every reference to a schema that has another
/// shape in `dialect`.
fn translate_refs(
    doc: &mut serde_json::Value,
    dialect: crate::Dialect,
    schema: &mut serde_json::Value,
    made: &mut std::collections::BTreeMap<(crate::Dialect, String), Option<String>>,
) {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "$ref" {
                    let target = value
                        .as_str()
                        .and_then(|r| r.strip_prefix(SCHEMAS))
                        .map(str::to_owned);
                    if let Some(name) = target
                        && let Some(renamed) = translate(doc, dialect, &name, made)
                    {
                        *value = format!("{SCHEMAS}{renamed}").into();
                    }
                } else {
                    translate_refs(doc, dialect, value, made);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                translate_refs(doc, dialect, item, made);
            }
        }
        _ => {}
    }
}

/// The name of `name`'s shape in `dialect`, made on first use: the envelopes
/// get the dialect's shape around the same `data`; a schema that refers to an
/// envelope (a `oneOf` of answers) is copied with its references translated;
/// `None` for a schema that is the same in every dialect.
fn translate(
    doc: &mut serde_json::Value,
    dialect: crate::Dialect,
    name: &str,
    made: &mut std::collections::BTreeMap<(crate::Dialect, String), Option<String>>,
) -> Option<String> {
    let key = (dialect, name.to_owned());
    if let Some(known) = made.get(&key) {
        return known.clone();
    }
    // Cycles resolve to "unchanged" while the schema is being looked at.
    made.insert(key.clone(), None);
    let renamed = dialect_name(dialect, name);
    let original = doc["components"]["schemas"][name].clone();
    let shaped = if name == "ErrorEnvelope"
        || name.starts_with("Envelope_")
        || name.starts_with("ListEnvelope_")
    {
        Some(dialect_schema(dialect, name, &original))
    } else {
        let mut copy = original.clone();
        translate_refs(doc, dialect, &mut copy, made);
        (copy != original).then_some(copy)
    };
    let result = shaped.map(|schema| {
        doc["components"]["schemas"][&renamed] = schema;
        renamed
    });
    made.insert(key, result.clone());
    result
}

/// An envelope's shape in `dialect` around the SpaceOS envelope's `data`.
fn dialect_schema(
    dialect: crate::Dialect,
    name: &str,
    original: &serde_json::Value,
) -> serde_json::Value {
    use crate::Dialect;
    use serde_json::json;
    let data = original["properties"]["data"].clone();
    let nullable_string = json!({"type": ["string", "null"]});
    match (dialect, name) {
        (Dialect::Gospace, "ErrorEnvelope") => json!({
            "type": "object",
            "description": "A failure: `error.code` is gospace's (`unauthorised`, `forbidden`, `validation_failed`, `resource_not_found`, `rate_limited`, `internal_error`) or the catalog's for other cases.",
            "required": ["success", "error"],
            "properties": {
                "success": {"type": "boolean", "enum": [false]},
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details", "request_id"],
                    "properties": {
                        "code": {"type": "string", "enum": crate::ErrorCode::ALL.iter().map(|c| c.gospace()).collect::<Vec<_>>()},
                        "message": {"type": "string"},
                        "details": {"type": "array", "items": {
                            "type": "object",
                            "required": ["path", "message"],
                            "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                            "additionalProperties": false,
                        }},
                        "request_id": {"type": ["string", "null"]},
                    },
                    "additionalProperties": false,
                },
            },
            "additionalProperties": false,
        }),
        (Dialect::Tuzzle, "ErrorEnvelope") => json!({
            "type": "object",
            "description": "A failure, as Laravel answers it: `message`, and for invalid fields `errors` (messages by field).",
            "required": ["message"],
            "properties": {
                "message": {"type": "string"},
                "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            },
            "additionalProperties": false,
        }),
        (Dialect::Gospace, list) if list.starts_with("ListEnvelope_") => json!({
            "type": "object",
            "description": "A page of a list: pass `next_cursor` (or `prev_cursor`) back as `?cursor=`.",
            "required": ["success", "items", "next_cursor", "prev_cursor", "pagination"],
            "properties": {
                "success": {"type": "boolean", "enum": [true]},
                "items": data,
                "next_cursor": nullable_string,
                "prev_cursor": nullable_string,
                "pagination": {
                    "type": "object",
                    "properties": {"total_results": {"type": "integer", "minimum": 0}},
                    "additionalProperties": false,
                },
            },
            "additionalProperties": false,
        }),
        (Dialect::Tuzzle, list) if list.starts_with("ListEnvelope_") => json!({
            "type": "object",
            "description": "A page of a list (Laravel's cursor paginator): pass `next_cursor` back as `?cursor=`.",
            "required": ["data", "path", "per_page", "next_cursor", "next_page_url", "prev_cursor", "prev_page_url"],
            "properties": {
                "data": data,
                "path": {"type": "string"},
                "per_page": {"type": "integer", "minimum": 1},
                "next_cursor": nullable_string,
                "next_page_url": nullable_string,
                "prev_cursor": nullable_string,
                "prev_page_url": nullable_string,
            },
            "additionalProperties": false,
        }),
        (Dialect::Gospace, _) => json!({
            "type": "object",
            "required": ["success", "data"],
            "properties": {"success": {"type": "boolean", "enum": [true]}, "data": data},
            "additionalProperties": false,
        }),
        _ => json!({
            "type": "object",
            "required": ["data"],
            "properties": {"data": data},
            "additionalProperties": false,
        }),
    }
}

/// `GospaceEnvelope_T`, `TuzzleErrorEnvelope`, …
fn dialect_name(dialect: crate::Dialect, name: &str) -> String {
    let prefix = match dialect {
        crate::Dialect::SpaceOs => "",
        crate::Dialect::Gospace => "Gospace",
        crate::Dialect::Tuzzle => "Tuzzle",
    };
    format!("{prefix}{name}")
}

/// Validation failures answer 400 on SpaceOS routes and 422 on Tuzzle routes
/// (query parameters included): the documented statuses follow.
fn move_validation_status(
    responses: &mut serde_json::Map<String, serde_json::Value>,
    dialect: crate::Dialect,
) {
    match dialect {
        crate::Dialect::SpaceOs => {
            if let Some(invalid) = responses.remove("422") {
                match responses.get_mut("400") {
                    Some(existing) => {
                        let joined = format!(
                            "{} {}",
                            existing["description"].as_str().unwrap_or_default(),
                            invalid["description"].as_str().unwrap_or_default()
                        );
                        existing["description"] = joined.trim().into();
                    }
                    None => {
                        responses.insert("400".into(), invalid);
                    }
                }
            }
        }
        crate::Dialect::Tuzzle => {
            if let Some(bad) = responses.get("400").cloned() {
                responses.entry("422").or_insert(bad);
            }
        }
        crate::Dialect::Gospace => {}
    }
}
