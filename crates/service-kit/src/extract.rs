//! Request extractors whose failures are envelope errors naming the field:
//! `Json<T>` (422 `validation_failed` with `errors[{field, message}]`, 400
//! `invalid_json`, 413, 415) and `Query<T>` (400 with the parameter named).

use crate::app::AppSpec;
use crate::error::{ApiError, ErrorCode, FieldError};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use futures_util::future::{LocalBoxFuture, Ready, ready};
use serde::de::DeserializeOwned;

const DEFAULT_LIMIT: usize = 256 * 1024;

/// A JSON body. Only `application/json` (or `+json`) is accepted.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than {limit} bytes"),
    )
}

/// Parses `bytes` as `T`, naming the path of the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(describe_json_error)?;
    // Trailing characters after the document make it malformed too.
    de.end().map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("malformed JSON: {}", without_position(&e)),
        )
    })?;
    Ok(value)
}

fn describe_json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    {
        let inner = err.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                ErrorCode::InvalidJson,
                format!("malformed JSON: {}", without_position(inner)),
            );
        }
        let path = err.path().to_string();
        let message = without_position(inner);
        let field = match path.as_str() {
            "." | "" => unknown_or_missing_field(&message).unwrap_or_else(|| "body".into()),
            p => match unknown_or_missing_field(&message) {
                // A missing field is reported at its parent's path.
                Some(name) if !p.ends_with(&name) => format!("{p}.{name}"),
                _ => p.to_owned(),
            },
        };
        ApiError::validation(vec![FieldError::new(field, message)])
    }
}

/// `unknown field `x`` / `missing field `x``: the field is the one named.
fn unknown_or_missing_field(message: &str) -> Option<String> {
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        message.split('`').nth(1).map(str::to_owned)
    } else {
        None
    }
}

fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppSpec>>()
            .map_or(DEFAULT_LIMIT, |spec| spec.json_limit);
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let early = if !is_json(req) {
            Some(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ))
        } else if declared.is_some_and(|n| n > limit) {
            Some(too_large(limit))
        } else {
            None
        };
        let mut payload = payload.take();
        Box::pin(async move {
            if let Some(err) = early {
                return Err(err);
            }
            let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::bad_request(format!("could not read request body: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            if body.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidJson,
                    "request body is empty",
                ));
            }
            parse_json(&body).map(Json)
        })
    }
}

/// Query parameters, parsed with the offending parameter named.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let message = err.inner().to_string();
        let path = err.path().to_string();
        let field = match path.as_str() {
            "." | "" => unknown_or_missing_field(&message).unwrap_or_else(|| "query".into()),
            p => p.to_owned(),
        };
        ApiError::new(ErrorCode::ValidationFailed, format!("{field}: {message}"))
            .with_status(StatusCode::BAD_REQUEST)
            .with_field(field, message)
    })
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(parse_query(req.query_string()).map(Query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Thing {
        name: String,
        count: u32,
        #[serde(default)]
        items: Vec<Item>,
    }

    fn field_of(body: &str) -> (u16, String, String) {
        let err = parse_json::<Thing>(body.as_bytes()).unwrap_err();
        let field = err
            .errors
            .first()
            .map(|e| e.field.clone())
            .unwrap_or_default();
        (err.status.as_u16(), err.code.as_str().to_owned(), field)
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(
            field_of(r#"{"name":"a","count":"x"}"#),
            (422, "validation_failed".into(), "count".into())
        );
        assert_eq!(
            field_of(r#"{"name":"a"}"#),
            (422, "validation_failed".into(), "count".into())
        );
        assert_eq!(
            field_of(r#"{"name":"a","count":1,"extra":1}"#),
            (422, "validation_failed".into(), "extra".into())
        );
        assert_eq!(
            field_of(r#"{"name":"a","count":1,"items":[{"name":"x"},{"name":5}]}"#),
            (422, "validation_failed".into(), "items[1].name".into())
        );
        assert_eq!(
            field_of(r#"{"name":"a","count":1,"items":[{"nme":"x"}]}"#),
            (422, "validation_failed".into(), "items[0].nme".into())
        );
        assert_eq!(field_of(r#"{"name":"a","count":-1}"#).2, "count");
    }

    #[test]
    fn malformed_json_is_400() {
        for body in [
            r#"{"name":"#,
            "{",
            "nope",
            r#"{"name":"a","count":1} trailing"#,
        ] {
            let (status, code, _) = field_of(body);
            assert_eq!((status, code.as_str()), (400, "invalid_json"), "{body}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Params {
        limit: Option<u32>,
        from: Option<String>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let err = parse_query::<Params>("limit=abc&from=x").unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(err.errors[0].field, "limit");
        let ok = parse_query::<Params>("limit=5").unwrap();
        assert_eq!(ok.limit, Some(5));
    }
}
