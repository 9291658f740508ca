//! The shared HTTP surface over real loopback HTTP: every client mistake answers
//! a 4xx envelope, successes answer the success envelope.

use actix_web::web;
use serde::{Deserialize, Serialize};
use service_kit::pagination::OffsetQuery;
use service_kit::{ApiError, ApiResponse, AppSpec, Json, Query};
use testkit::TestServer;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Thing {
    name: String,
    count: u32,
}

async fn create(body: Json<Thing>) -> Result<ApiResponse<Thing>, ApiError> {
    Ok(ApiResponse::created(body.into_inner()).message("created"))
}

async fn list(query: Query<OffsetQuery>) -> Result<ApiResponse<Vec<u32>>, ApiError> {
    let page = query.validate()?;
    Ok(ApiResponse::ok(vec![1, 2, 3]).meta(page.meta(3)))
}

async fn broken() -> Result<ApiResponse<()>, ApiError> {
    Err(ApiError::internal(anyhow::anyhow!(
        "connection to db.internal:5432 refused, password=hunter2"
    )))
}

fn server() -> TestServer {
    TestServer::start(
        AppSpec::new("sample", |cfg| {
            cfg.service(web::resource("/things").post(create).get(list))
                .service(web::resource("/broken").get(broken));
        })
        .json_limit(1024),
    )
}

#[tokio::test]
async fn success_envelopes() {
    let s = server();
    let created = s
        .send(
            s.client
                .post(s.url("/things"))
                .json(&serde_json::json!({"name": "a", "count": 2})),
        )
        .await;
    assert_eq!(created.status, 201);
    let body = created.json();
    assert_eq!(body["status"], 201);
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "created");
    assert_eq!(body["data"], serde_json::json!({"name": "a", "count": 2}));
    let ts = body["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2025-01-15T10:00:00.000Z".len(),
        "{ts}"
    );

    let listed = s.get("/things?page=2&limit=5").await.json();
    assert_eq!(
        listed["meta"],
        serde_json::json!({"page": 2, "limit": 5, "total": 3})
    );
    s.stop().await;
}

#[tokio::test]
async fn client_mistakes_are_4xx_envelopes() {
    let s = server();
    let post = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = s.client.post(s.url("/things")).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request
    };

    s.send(post(r#"{"name": "a", "count""#, Some("application/json")))
        .await
        .assert_error(400, "invalid_json");
    s.send(post("", Some("application/json")))
        .await
        .assert_error(400, "invalid_json");
    s.send(post(r#"{"name":"a","count":1}"#, Some("text/plain")))
        .await
        .assert_error(415, "unsupported_media_type");
    s.send(post(r#"{"name":"a","count":1}"#, None))
        .await
        .assert_error(415, "unsupported_media_type");
    // application/merge-patch+json and parameters are fine.
    let patched = s
        .send(post(
            r#"{"name":"a","count":1}"#,
            Some("application/merge-patch+json; charset=utf-8"),
        ))
        .await;
    assert_eq!(patched.status, 201);

    let wrong_type = s
        .send(post(
            r#"{"name":"a","count":"many"}"#,
            Some("application/json"),
        ))
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(wrong_type["errors"][0]["field"], "count");
    let unknown = s
        .send(post(
            r#"{"name":"a","count":1,"admin":true}"#,
            Some("application/json"),
        ))
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(unknown["errors"][0]["field"], "admin");

    let big = format!(r#"{{"name":"{}","count":1}}"#, "x".repeat(2000));
    s.send(
        s.client
            .post(s.url("/things"))
            .header("content-type", "application/json")
            .body(big.clone()),
    )
    .await
    .assert_error(413, "payload_too_large");
    // Without a declared length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(100).map(|c| Ok(c.to_vec())).collect();
    s.send(
        s.client
            .post(s.url("/things"))
            .header("content-type", "application/json")
            .body(testkit::reqwest::Body::wrap_stream(
                futures_util::stream::iter(chunks),
            )),
    )
    .await
    .assert_error(413, "payload_too_large");

    let bad_query = s
        .get("/things?limit=lots")
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(bad_query["errors"][0]["field"], "limit");
    let out_of_range = s
        .get("/things?limit=1000")
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(out_of_range["errors"][0]["field"], "limit");

    s.get("/nothing/here").await.assert_error(404, "not_found");
    s.send(s.client.put(s.url("/things")))
        .await
        .assert_error(405, "method_not_allowed");
    s.stop().await;
}

#[tokio::test]
async fn internal_errors_are_opaque() {
    let s = server();
    let response = s.get("/broken").await;
    let body = response.assert_error(500, "internal_error");
    assert_eq!(body["message"], "internal error");
    let text = String::from_utf8_lossy(&response.body);
    assert!(
        !text.contains("hunter2") && !text.contains("db.internal"),
        "{text}"
    );
    s.stop().await;
}
