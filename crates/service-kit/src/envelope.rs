//! The success answer, written in the dialect of the request's route family
//! ([`crate::dialect`]): SpaceOS `{status, success: true, message?, data,
//! timestamp, meta?}`, gospace `{success: true, data}` (lists `{success, items,
//! next_cursor, prev_cursor, pagination: {total_results}}`), Tuzzle `{data}`
//! (lists `{data, path, per_page, next_cursor, next_page_url, prev_cursor,
//! prev_page_url}`).

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Responder};
use serde::Serialize;

/// List metadata: offset lists carry `{page, limit, total}`, cursor lists
/// `{limit, next_cursor, has_more}`. gospace and Tuzzle lists write the same
/// facts in their own shapes (an offset page's neighbours as page cursors).
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

/// A list's neighbours and size, as the gospace and Tuzzle shapes name them.
pub(crate) struct Links {
    pub(crate) next: Option<String>,
    pub(crate) prev: Option<String>,
    pub(crate) total: Option<u64>,
    pub(crate) per_page: u32,
}

impl Meta {
    fn links(&self) -> Links {
        match self {
            // Offset lists are SpaceOS's (`?page=`): other dialects page with
            // cursors, so their lists carry a `Window` instead.
            Meta::Offset { limit, total, .. } => Links {
                next: None,
                prev: None,
                total: Some(*total),
                per_page: *limit,
            },
            Meta::Cursor {
                limit, next_cursor, ..
            } => Links {
                next: next_cursor.clone(),
                prev: None,
                total: None,
                per_page: *limit,
            },
        }
    }
}

/// `path?query` with `cursor` set to `cursor` (Laravel's `next_page_url`).
fn page_url(path: &str, query: &str, cursor: &str) -> String {
    let mut url = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name != "cursor" && name != "page" {
            url.append_pair(&name, &value);
        }
    }
    url.append_pair("cursor", cursor);
    format!("{path}?{}", url.finish())
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
    window: Option<crate::pagination::Window>,
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
            window: None,
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

    /// A list paged by cursors over an offset window (gospace's lists).
    pub fn window(mut self, window: crate::pagination::Window) -> Self {
        self.window = Some(window);
        self
    }

    fn links(&self) -> Option<Links> {
        match (&self.window, &self.meta) {
            (Some(window), _) => Some(window.links()),
            (None, Some(meta)) => Some(meta.links()),
            (None, None) => None,
        }
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

    /// The body in `dialect`.
    pub fn render(&self, dialect: crate::Dialect) -> serde_json::Result<Vec<u8>> {
        match dialect {
            crate::Dialect::SpaceOs => serde_json::to_vec(&self.envelope()),
            crate::Dialect::Gospace => match self.links() {
                None => serde_json::to_vec(&serde_json::json!({
                    "success": true,
                    "data": &self.data,
                })),
                Some(links) => {
                    let mut body = serde_json::json!({
                        "success": true,
                        "items": &self.data,
                        "next_cursor": links.next,
                        "prev_cursor": links.prev,
                        "pagination": {},
                    });
                    if let Some(total) = links.total {
                        body["pagination"]["total_results"] = total.into();
                    }
                    serde_json::to_vec(&body)
                }
            },
            crate::Dialect::Tuzzle => match self.links() {
                None => serde_json::to_vec(&serde_json::json!({ "data": &self.data })),
                Some(links) => {
                    let context = crate::dialect::context();
                    let (path, query) = context
                        .as_ref()
                        .map_or(("", ""), |c| (c.path.as_str(), c.query.as_str()));
                    let url =
                        |cursor: &Option<String>| cursor.as_ref().map(|c| page_url(path, query, c));
                    serde_json::to_vec(&serde_json::json!({
                        "data": &self.data,
                        "path": path,
                        "per_page": links.per_page,
                        "next_cursor": links.next,
                        "next_page_url": url(&links.next),
                        "prev_cursor": links.prev,
                        "prev_page_url": url(&links.prev),
                    }))
                }
            },
        }
    }

    pub fn into_response(self) -> HttpResponse {
        match self.render(crate::dialect::current()) {
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

    fn rendered<T: Serialize>(
        response: &ApiResponse<T>,
        dialect: crate::Dialect,
    ) -> serde_json::Value {
        serde_json::from_slice(&response.render(dialect).unwrap()).unwrap()
    }

    #[test]
    fn gospace_answers() {
        let one = ApiResponse::ok(serde_json::json!({"id": "wrk_1"})).message("ignored");
        assert_eq!(
            rendered(&one, crate::Dialect::Gospace),
            serde_json::json!({"success": true, "data": {"id": "wrk_1"}})
        );
        let request = crate::pagination::ListQuery {
            page_size: Some(2),
            page: Some(2),
            ..Default::default()
        }
        .validate(&["created_at"])
        .unwrap();
        let list = ApiResponse::ok(vec![3, 4]).window(request.window(5));
        let body = rendered(&list, crate::Dialect::Gospace);
        assert_eq!(body["success"], true);
        assert_eq!(body["items"], serde_json::json!([3, 4]));
        assert_eq!(body["pagination"], serde_json::json!({"total_results": 5}));
        assert!(body["next_cursor"].is_string() && body["prev_cursor"].is_string());
        assert!(body.get("data").is_none());
    }

    #[tokio::test]
    async fn tuzzle_answers() {
        let one = ApiResponse::created(serde_json::json!({"id": "spc_1"}));
        assert_eq!(
            rendered(&one, crate::Dialect::Tuzzle),
            serde_json::json!({"data": {"id": "spc_1"}})
        );
        let list = ApiResponse::ok(vec![1]).meta(Meta::Cursor {
            limit: 1,
            next_cursor: Some("abc".into()),
            has_more: true,
        });
        let context = crate::dialect::Context {
            dialect: crate::Dialect::Tuzzle,
            path: "/api/v1/spaces".into(),
            query: "limit=1&cursor=old&q=a%20b".into(),
        };
        let body =
            crate::dialect::scope(context, async { rendered(&list, crate::Dialect::Tuzzle) }).await;
        assert_eq!(
            body,
            serde_json::json!({
                "data": [1],
                "path": "/api/v1/spaces",
                "per_page": 1,
                "next_cursor": "abc",
                "next_page_url": "/api/v1/spaces?limit=1&q=a+b&cursor=abc",
                "prev_cursor": null,
                "prev_page_url": null,
            })
        );
    }
}
