//! The success envelope: `{status, success: true, message?, data, timestamp, meta?}`.

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Responder};
use serde::Serialize;

/// List metadata: offset lists carry `{page, limit, total}`, cursor lists
/// `{limit, next_cursor, has_more}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Meta {
    Offset {
        page: u32,
        limit: u32,
        total: u64,
    },
    Cursor {
        limit: u32,
        #[schema(required = true)]
        next_cursor: Option<String>,
        has_more: bool,
    },
}

#[derive(Debug, Serialize)]
struct Envelope<'a, T> {
    status: u16,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    data: &'a T,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a Meta>,
}

/// A successful answer; handlers return `Result<ApiResponse<T>, ApiError>`.
#[derive(Debug)]
pub struct ApiResponse<T> {
    status: StatusCode,
    message: Option<String>,
    data: T,
    meta: Option<Meta>,
}

impl<T: Serialize> ApiResponse<T> {
    pub fn ok(data: T) -> Self {
        Self::with_status(StatusCode::OK, data)
    }

    pub fn created(data: T) -> Self {
        Self::with_status(StatusCode::CREATED, data)
    }

    pub fn with_status(status: StatusCode, data: T) -> Self {
        ApiResponse {
            status,
            message: None,
            data,
            meta: None,
        }
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn meta(mut self, meta: Meta) -> Self {
        self.meta = Some(meta);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The envelope as JSON (what the body will be, give or take the timestamp).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.envelope()).unwrap_or_default()
    }

    fn envelope(&self) -> Envelope<'_, T> {
        Envelope {
            status: self.status.as_u16(),
            success: true,
            message: self.message.as_deref(),
            data: &self.data,
            timestamp: crate::time::now_rfc3339(),
            meta: self.meta.as_ref(),
        }
    }

    pub fn into_response(self) -> HttpResponse {
        match serde_json::to_vec(&self.envelope()) {
            Ok(body) => HttpResponse::build(self.status)
                .content_type("application/json")
                .body(body),
            Err(err) => actix_web::ResponseError::error_response(&crate::ApiError::internal(err)),
        }
    }
}

impl<T: Serialize> Responder for ApiResponse<T> {
    type Body = BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        self.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_envelope_shape() {
        let json = ApiResponse::ok(serde_json::json!({"id": "org_1"}))
            .message("found")
            .to_json();
        assert_eq!(json["status"], 200);
        assert_eq!(json["success"], true);
        assert_eq!(json["message"], "found");
        assert_eq!(json["data"]["id"], "org_1");
        assert!(json.get("meta").is_none());
    }

    #[test]
    fn list_meta_shapes() {
        let offset = ApiResponse::ok(Vec::<u8>::new())
            .meta(Meta::Offset {
                page: 2,
                limit: 20,
                total: 41,
            })
            .to_json();
        assert_eq!(
            offset["meta"],
            serde_json::json!({"page": 2, "limit": 20, "total": 41})
        );
        let cursor = ApiResponse::created(vec![1])
            .meta(Meta::Cursor {
                limit: 10,
                next_cursor: None,
                has_more: false,
            })
            .to_json();
        assert_eq!(cursor["status"], 201);
        assert_eq!(
            cursor["meta"],
            serde_json::json!({"limit": 10, "next_cursor": null, "has_more": false})
        );
        assert!(cursor.get("message").is_none());
    }
}
