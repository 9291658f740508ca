//! The one error type of the HTTP surface, its stable code catalog, and the single
//! place where errors become HTTP responses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

/// Stable, snake_case error codes. Clients branch on these, so a code is never
/// renamed or reused for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidJson,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    InternalError,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidJson,
        ErrorCode::ValidationFailed,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::InternalError,
        ErrorCode::BadGateway,
        ErrorCode::ServiceUnavailable,
        ErrorCode::GatewayTimeout,
    ];

    /// The status a code answers with unless the caller chose another.
    pub fn default_status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidJson => StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::BadGateway => "bad_gateway",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::GatewayTimeout => "gateway_timeout",
        }
    }

    /// The code as gospace names it: its own words for the cases its
    /// documentation lists, the catalog's for the others.
    pub fn gospace(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorised",
            ErrorCode::NotFound => "resource_not_found",
            other => other.as_str(),
        }
    }

    /// The code that best describes a bare status (used to turn framework-made error
    /// responses into envelopes).
    pub fn for_status(status: StatusCode) -> ErrorCode {
        match status.as_u16() {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            422 => ErrorCode::ValidationFailed,
            429 => ErrorCode::RateLimited,
            502 => ErrorCode::BadGateway,
            503 => ErrorCode::ServiceUnavailable,
            504 => ErrorCode::GatewayTimeout,
            // 400 and any other client error.
            400..=499 => ErrorCode::BadRequest,
            _ => ErrorCode::InternalError,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid input field: `{field, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answered to a client. The `source` (if any) is logged, never sent.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub errors: Vec<FieldError>,
    /// Seconds, sent as `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
    /// Further response headers (e.g. `WWW-Authenticate` on a 401).
    pub headers: Vec<(&'static str, String)>,
    source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: code.default_status(),
            code,
            message: message.into(),
            errors: Vec::new(),
            retry_after: None,
            headers: Vec::new(),
            source: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError::new(field, message));
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_source(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 422 with one entry per invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let message = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => "request validation failed".to_owned(),
        };
        ApiError {
            errors,
            ..Self::new(ErrorCode::ValidationFailed, message)
        }
    }

    /// A bad query-string parameter: 400, in the validation shape.
    pub fn invalid_query(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self::new(ErrorCode::ValidationFailed, format!("{field}: {message}"))
            .with_status(StatusCode::BAD_REQUEST)
            .with_field(field, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// 429 in SpaceOS's words: `Rate limit exceeded. Try again in N seconds.`
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            ErrorCode::RateLimited,
            format!("Rate limit exceeded. Try again in {retry_after_secs} seconds."),
        )
        .with_retry_after(retry_after_secs)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServiceUnavailable, message)
    }

    /// An unexpected failure: the client sees an opaque 500, the log gets the cause chain.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorCode::InternalError, "internal error").with_source(source)
    }

    /// The status and body written in the dialect of the request being handled.
    pub fn body(&self) -> serde_json::Value {
        self.render(crate::dialect::current()).1
    }

    /// The status and body of this error in `dialect` (DESIGN §5,
    /// `proto-docs/errors.md`):
    /// - SpaceOS: `{status, success: false, message, errors?: [{field, message}],
    ///   error: {code, request_id}, timestamp}`; validation failures answer 400
    ///   with the message `Validation failed`;
    /// - gospace: `{success: false, error: {code, message, details: [{path,
    ///   message}], request_id}}` with gospace's codes ([`ErrorCode::gospace`]);
    /// - Tuzzle: `{message, errors?: {field: [messages]}}` with Laravel's
    ///   messages; validation failures answer 422.
    pub fn render(&self, dialect: crate::Dialect) -> (StatusCode, serde_json::Value) {
        let request_id = crate::request_id::current();
        let validation = self.code == ErrorCode::ValidationFailed;
        match dialect {
            crate::Dialect::SpaceOs => {
                let status = if validation && self.status == StatusCode::UNPROCESSABLE_ENTITY {
                    StatusCode::BAD_REQUEST
                } else {
                    self.status
                };
                let message = if validation && !self.errors.is_empty() {
                    "Validation failed"
                } else {
                    self.message.as_str()
                };
                let mut body = serde_json::json!({
                    "status": status.as_u16(),
                    "success": false,
                    "message": message,
                    "error": {"code": self.code, "request_id": request_id},
                    "timestamp": crate::time::now_rfc3339(),
                });
                if !self.errors.is_empty() {
                    body["errors"] = serde_json::to_value(&self.errors).unwrap_or_default();
                }
                (status, body)
            }
            crate::Dialect::Gospace => {
                let details: Vec<_> = self
                    .errors
                    .iter()
                    .map(|e| serde_json::json!({"path": e.field, "message": e.message}))
                    .collect();
                let body = serde_json::json!({
                    "success": false,
                    "error": {
                        "code": self.code.gospace(),
                        "message": self.message,
                        "details": details,
                        "request_id": request_id,
                    },
                });
                (self.status, body)
            }
            crate::Dialect::Tuzzle => {
                let status = if validation {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    self.status
                };
                let message = match self.code {
                    ErrorCode::Unauthorized => "Unauthenticated.",
                    ErrorCode::Forbidden => "Forbidden.",
                    ErrorCode::ValidationFailed if self.errors.is_empty() => self.message.as_str(),
                    ErrorCode::ValidationFailed => match self.errors.as_slice() {
                        // Laravel's message for one invalid field is that field's.
                        [_one] => "",
                        _ => "The given data was invalid.",
                    },
                    _ => self.message.as_str(),
                };
                let mut errors = serde_json::Map::new();
                for error in &self.errors {
                    let entry = errors
                        .entry(error.field.clone())
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                    if let serde_json::Value::Array(list) = entry {
                        list.push(tuzzle_message(&error.field, &error.message).into());
                    }
                }
                let message = if message.is_empty() {
                    tuzzle_message(&self.errors[0].field, &self.errors[0].message)
                } else {
                    message.to_owned()
                };
                let mut body = serde_json::json!({ "message": message });
                if !errors.is_empty() {
                    body["errors"] = errors.into();
                }
                (status, body)
            }
        }
    }
}

/// A field's message as Laravel words it: `The name has already been taken.`,
/// `The space id field is required.` (underscores read as spaces, as Laravel
/// names attributes). The JSON reader's own wording (`missing field`,
/// `invalid type: …, expected a string`, `unknown variant`) becomes Laravel's
/// rule messages. Messages that already name their subject (start with a
/// capital) stay as they are.
fn tuzzle_message(field: &str, message: &str) -> String {
    let name = field.replace('_', " ");
    let mut sentence = if message.starts_with(|c: char| c.is_ascii_uppercase()) {
        message.to_owned()
    } else if message.starts_with("unknown variant") {
        format!("The selected {name} is invalid")
    } else {
        format!("The {name} {}", laravel_rule(message))
    };
    if !sentence.ends_with('.') {
        sentence.push('.');
    }
    sentence
}

/// serde's description of a bad value, as the Laravel rule it breaks.
fn laravel_rule(message: &str) -> &str {
    if message.starts_with("missing field") {
        return "field is required";
    }
    let Some(expected) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
        .map(|(_, expected)| expected)
    else {
        return message;
    };
    match expected {
        "a string" | "a borrowed string" => "must be a string",
        "a boolean" => "field must be true or false",
        "a sequence" => "must be an array",
        e if e.starts_with("struct") || e.starts_with("a map") => "must be an object",
        e if [
            "u8",
            "u16",
            "u32",
            "u64",
            "i16",
            "i32",
            "i64",
            "usize",
            "an integer",
        ]
        .iter()
        .any(|t| e.starts_with(t)) =>
        {
            "must be an integer"
        }
        e if e.starts_with("f32") || e.starts_with("f64") => "must be a number",
        _ => message,
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(code = %self.code, error = ?source, "request failed")
                }
                None => {
                    tracing::warn!(code = %self.code, message = %self.message, "request failed")
                }
            }
        }
        let (status, body) = self.render(crate::dialect::current());
        let mut response = HttpResponse::build(status);
        if let Some(seconds) = self.retry_after {
            response.insert_header(("retry-after", seconds.to_string()));
        }
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        response.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(err: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let response = err.error_response();
        let status = response.status();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[actix_web::test]
    async fn validation_error_has_envelope_shape() {
        let err = ApiError::validation(vec![
            FieldError::new("email", "must be a valid email address"),
            FieldError::new("name", "must not be empty"),
        ]);
        let (status, body, _) = body_of(err).await;
        // SpaceOS answers validation failures with 400 "Validation failed".
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["status"], 400);
        assert_eq!(body["message"], "Validation failed");
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["errors"][0]["field"], "email");
        assert_eq!(body["errors"][1]["message"], "must not be empty");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(body.get("data").is_none());
    }

    #[test]
    fn gospace_errors_have_its_shape_and_codes() {
        let (status, body) = ApiError::validation(vec![FieldError::new("page_size", "too big")])
            .render(crate::Dialect::Gospace);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["error", "success"]
        );
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["details"][0]["path"], "page_size");
        assert_eq!(body["error"]["details"][0]["message"], "too big");
        for (error, code) in [
            (ApiError::unauthorized("no"), "unauthorised"),
            (ApiError::not_found("space"), "resource_not_found"),
            (ApiError::forbidden("no"), "forbidden"),
            (ApiError::rate_limited(3), "rate_limited"),
            (ApiError::internal(anyhow::anyhow!("x")), "internal_error"),
            (ApiError::conflict("taken"), "conflict"),
        ] {
            let (_, body) = error.render(crate::Dialect::Gospace);
            assert_eq!(body["error"]["code"], code);
            assert_eq!(body["error"]["details"], serde_json::json!([]));
        }
    }

    #[test]
    fn tuzzle_errors_are_laravels() {
        let (status, body) = ApiError::validation(vec![
            FieldError::new("name", "missing field `name`"),
            FieldError::new("space", "field is required"),
            FieldError::new("name", "invalid type: integer `5`, expected a string"),
            FieldError::new("space_id", "invalid type: string \"x\", expected u32"),
            FieldError::new("delivery_type", "unknown variant `x`, expected `upload`"),
        ])
        .render(crate::Dialect::Tuzzle);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body,
            serde_json::json!({
                "message": "The given data was invalid.",
                "errors": {
                    "name": ["The name field is required.", "The name must be a string."],
                    "space": ["The space field is required."],
                    "space_id": ["The space id must be an integer."],
                    "delivery_type": ["The selected delivery type is invalid."],
                },
            })
        );
        let (status, body) =
            ApiError::validation(vec![FieldError::new("name", "has already been taken.")])
                .render(crate::Dialect::Tuzzle);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["message"], "The name has already been taken.");
        assert_eq!(
            body["errors"]["name"][0],
            "The name has already been taken."
        );
        // A bad query parameter is a validation failure too: 422.
        let (status, _) =
            ApiError::invalid_query("limit", "too big").render(crate::Dialect::Tuzzle);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            ApiError::unauthorized("bad token").render(crate::Dialect::Tuzzle),
            (
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"message": "Unauthenticated."})
            )
        );
        assert_eq!(
            ApiError::forbidden("no").render(crate::Dialect::Tuzzle).1,
            serde_json::json!({"message": "Forbidden."})
        );
    }

    #[actix_web::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let err = ApiError::internal(anyhow::anyhow!("password=hunter2 connection refused"));
        let (status, body, _) = body_of(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["message"], "internal error");
        assert!(!body.to_string().contains("hunter2"));
        assert!(body.get("errors").is_none());
    }

    #[actix_web::test]
    async fn rate_limited_sets_retry_after() {
        let (status, body, retry) = body_of(ApiError::rate_limited(7)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            body["message"],
            "Rate limit exceeded. Try again in 7 seconds."
        );
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(retry.as_deref(), Some("7"));
    }

    #[test]
    fn every_code_round_trips_through_its_status() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            if code != ErrorCode::InvalidJson {
                assert_eq!(ErrorCode::for_status(code.default_status()), code);
            }
        }
    }
}
