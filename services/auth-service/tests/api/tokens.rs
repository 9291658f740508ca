//! `POST /v1/auth/token` (refresh), logout, and reuse detection.

use crate::helpers::TestAuth;
use identity::revocation::{self, Revocation};
use std::time::Duration;
use testkit::{DbKind, db_test};

db_test!(refresh_rotates_in_the_gospace_envelope, refresh_json);
async fn refresh_json(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let session = auth.sign_in("a@example.com").await;
    let first = session["refresh_token"].as_str().unwrap();
    let response = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({ "refresh_token": first }),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    let body = response.json();
    assert_eq!(body["success"], true);
    let data = &body["data"];
    assert_eq!(data["user"]["user_id"], session["user"]["id"]);
    assert_eq!(data["user"]["email"], "a@example.com");
    let second = data["refresh_token"].as_str().unwrap();
    assert_ne!(second, first, "refresh tokens rotate");
    let claims = auth.claims(data["access_token"].as_str().unwrap()).await;
    let original = auth.claims(session["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.sid, original.sid, "the same session");
    assert_eq!(claims.wrk, original.wrk);

    // The successor works.
    let third = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({ "refresh_token": second }),
        )
        .await;
    assert_eq!(third.status, 200);
}

db_test!(reusing_a_refresh_token_revokes_the_session, reuse_detection);
async fn reuse_detection(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let bus = auth.cache.connect().await;
    let mut revocations = bus.subscribe(revocation::CHANNEL).await.unwrap();
    let session = auth.sign_in("a@example.com").await;
    let session_id = auth
        .claims(session["access_token"].as_str().unwrap())
        .await
        .sid
        .unwrap();
    let stolen = session["refresh_token"].as_str().unwrap().to_owned();
    let rotated = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({ "refresh_token": stolen }),
        )
        .await
        .json()["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The old token comes back: the whole session is revoked.
    let reused = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({ "refresh_token": stolen }),
        )
        .await;
    assert_eq!(reused.status, 400);
    assert_eq!(reused.json()["error"], "invalid_grant");
    let legit = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({ "refresh_token": rotated }),
        )
        .await;
    assert_eq!(
        legit.json()["error"],
        "invalid_grant",
        "the successor dies with its family"
    );

    let published = tokio::time::timeout(Duration::from_secs(2), revocations.next())
        .await
        .expect("a revocation within 2 s")
        .expect("a message");
    assert_eq!(
        Revocation::from_bytes(&published),
        Some(Revocation::Session { id: session_id })
    );
}

db_test!(refresh_in_rfc6749_form, refresh_form);
async fn refresh_form(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let session = auth.sign_in("a@example.com").await;
    let response = auth
        .post_form(
            "/v1/auth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", session["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let body = response.json();
    assert!(body.get("success").is_none(), "bare RFC 6749 body");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert!(body["scope"].as_str().unwrap().contains("bookings:write"));
    auth.claims(body["access_token"].as_str().unwrap()).await;
}

db_test!(token_endpoint_errors_follow_rfc6749, token_errors);
async fn token_errors(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let cases: Vec<(testkit::TestResponse, &str)> = vec![
        (
            auth.post_form("/v1/auth/token", &[("grant_type", "password")])
                .await,
            "unsupported_grant_type",
        ),
        (
            auth.post_form("/v1/auth/token", &[("grant_type", "refresh_token")])
                .await,
            "invalid_request",
        ),
        (
            auth.post_form(
                "/v1/auth/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "rt_nope"),
                ],
            )
            .await,
            "invalid_grant",
        ),
        (
            auth.post_form("/v1/auth/token", &[]).await,
            "invalid_request",
        ),
        (
            auth.post_json(
                "/v1/auth/token",
                serde_json::json!({ "refresh_token": "garbage" }),
            )
            .await,
            "invalid_grant",
        ),
        (
            auth.server
                .send(
                    auth.server
                        .request(testkit::reqwest::Method::POST, "/v1/auth/token")
                        .header("content-type", "application/json")
                        .body("{not json"),
                )
                .await,
            "invalid_request",
        ),
        (
            auth.server
                .send(
                    auth.server
                        .request(testkit::reqwest::Method::POST, "/v1/auth/token")
                        .header("content-type", "text/plain")
                        .body("x"),
                )
                .await,
            "invalid_request",
        ),
    ];
    for (response, error) in cases {
        assert_eq!(response.status, 400, "{:?}", response.json());
        let body = response.json();
        assert_eq!(body["error"], error, "{body}");
        assert!(body["error_description"].is_string());
    }
}

db_test!(logout_ends_the_session, logout);
async fn logout(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let session = auth.sign_in("a@example.com").await;
    let token = session["refresh_token"].as_str().unwrap();
    let out = auth
        .post_json(
            "/v1/auth/logout",
            serde_json::json!({ "refresh_token": token }),
        )
        .await;
    assert_eq!(out.status, 200);
    let refreshed = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({ "refresh_token": token }),
        )
        .await;
    assert_eq!(refreshed.json()["error"], "invalid_grant");
    // Unknown tokens answer the same.
    let unknown = auth
        .post_json(
            "/v1/auth/logout",
            serde_json::json!({ "refresh_token": "rt_unknown" }),
        )
        .await;
    assert_eq!(unknown.status, 200);
}
