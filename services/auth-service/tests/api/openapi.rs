//! The OpenAPI document (`proto-docs/auth-service.openapi.json`): committed as generated, complete,
//! and true to what the service answers (the checks are `testkit::openapi`'s).
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p auth-service --test api openapi`
//! (`make openapi`) rewrites the committed file.

use crate::helpers::TestAuth;
use testkit::DbKind;
use testkit::openapi::{Document, assert_response};
use testkit::reqwest::Method;

fn document() -> Document {
    Document::new(
        auth_service::openapi::document()
            .to_pretty_json()
            .expect("the document serializes"),
        "proto-docs/auth-service.openapi.json",
        "auth-service",
    )
}

#[test]
fn committed_document_is_current() {
    document().assert_committed_is_current();
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    document().assert_documents_exactly(auth_service::ROUTES);
}

#[test]
fn every_reference_resolves() {
    document().assert_references_resolve();
}

#[test]
fn operations_are_named_tagged_and_answer_errors() {
    document().assert_operations_are_named_tagged_and_answer_errors();
}

#[test]
fn shared_schemas_follow_the_code() {
    let doc = document();
    doc.assert_envelopes_follow_the_code(
        "ListEnvelope_Vec_KeyView",
        service_kit::envelope::Meta::Offset {
            page: 1,
            limit: 20,
            total: 0,
        },
    );
    doc.assert_paging_bounds("get", "/v1/auth/api-key");
}

#[test]
fn the_checker_notices_differences() {
    document().assert_checker_notices_differences();
}

#[test]
fn the_scope_catalog_and_internal_routes() {
    let doc = document().json;
    let scopes: std::collections::BTreeSet<&str> = doc["components"]["schemas"]["Scope"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let catalog: std::collections::BTreeSet<&str> =
        identity::scopes::CATALOG.iter().map(|(n, _)| *n).collect();
    assert_eq!(scopes, catalog);
    assert_eq!(
        doc["paths"]["/internal/api-keys/introspect"]["post"]["x-internal"],
        true
    );
}

/// Real answers of the endpoints whose shapes are described by hand.
#[tokio::test]
async fn answers_match_the_document() {
    let doc = document().json;
    let auth = TestAuth::start(DbKind::Sqlite).await;

    let response = auth.server.get("/.well-known/openid-configuration").await;
    assert_response(&doc, "get", "/.well-known/openid-configuration", &response);
    let response = auth.server.get("/.well-known/jwks.json").await;
    assert_response(&doc, "get", "/.well-known/jwks.json", &response);

    let refused = auth
        .post_form("/v1/auth/token", &[("grant_type", "password")])
        .await;
    assert_response(&doc, "post", "/v1/auth/token", &refused);

    // A person signs in and refreshes (JSON and form).
    let session = auth.sign_in("openapi@example.com").await;
    let refreshed = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({ "refresh_token": session["refresh_token"] }),
        )
        .await;
    assert_response(&doc, "post", "/v1/auth/token", &refreshed);
    let refresh_token = refreshed.json()["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refreshed = auth
        .post_form(
            "/v1/auth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
        )
        .await;
    assert_response(&doc, "post", "/v1/auth/token", &refreshed);
    let refresh_token = refreshed.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let access_token = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A service principal: its token, and what introspection says of tokens.
    let owner = auth.owner("openapi-owner@example.com").await;
    let created = auth
        .server
        .send(
            auth.request_as(&owner, Method::POST, "/v1/auth/service-principals")
                .json(&serde_json::json!({ "name": "docs", "scopes": ["bookings:read"] })),
        )
        .await;
    assert_response(&doc, "post", "/v1/auth/service-principals", &created);
    let principal = created.json()["data"].clone();
    let (client_id, secret) = (
        principal["client_id"].as_str().unwrap().to_owned(),
        principal["client_secret"].as_str().unwrap().to_owned(),
    );
    let granted = auth
        .post_form(
            "/v1/auth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_response(&doc, "post", "/v1/auth/token", &granted);
    for token in [refresh_token.as_str(), access_token.as_str(), "rt_unknown"] {
        let answer = auth
            .post_form(
                "/v1/auth/introspect",
                &[
                    ("token", token),
                    ("client_id", &client_id),
                    ("client_secret", &secret),
                ],
            )
            .await;
        assert_response(&doc, "post", "/v1/auth/introspect", &answer);
    }
    let unauthenticated = auth
        .post_form("/v1/auth/introspect", &[("token", &access_token)])
        .await;
    assert_response(&doc, "post", "/v1/auth/introspect", &unauthenticated);

    let wrong_secret = auth
        .post_form(
            "/v1/auth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", "sps_wrong"),
            ],
        )
        .await;
    assert_eq!(wrong_secret.status, 401);
    assert_response(&doc, "post", "/v1/auth/token", &wrong_secret);

    // Envelope answers, people's and administrators'.
    let as_owner = |method: Method, path: &str| auth.request_as(&owner, method, path);
    for path in [
        "/v1/auth/me",
        "/v1/auth/admin/users",
        "/v1/auth/admin/roles",
        "/v1/system/workspaces",
        "/v1/auth/service-principals",
    ] {
        let answer = auth.server.send(as_owner(Method::GET, path)).await;
        assert_response(&doc, "get", path, &answer);
    }
    let key = auth
        .server
        .send(
            as_owner(Method::POST, "/v1/auth/api-key")
                .json(&serde_json::json!({ "name": "docs", "scopes": "bookings:read" })),
        )
        .await;
    assert_response(&doc, "post", "/v1/auth/api-key", &key);
    let listed = auth
        .server
        .send(as_owner(Method::GET, "/v1/auth/api-key"))
        .await;
    assert_response(&doc, "get", "/v1/auth/api-key", &listed);
    for presented in [
        key.json()["data"]["api_key"].clone(),
        serde_json::json!("nope"),
    ] {
        let seen = auth
            .server
            .send(
                auth.request_as(
                    &identity::Identity::gateway(),
                    Method::POST,
                    "/internal/api-keys/introspect",
                )
                .json(&serde_json::json!({ "key": presented })),
            )
            .await;
        assert_response(&doc, "post", "/internal/api-keys/introspect", &seen);
    }

    // Failures in the error envelope, and bodiless answers.
    let invalid = auth
        .post_json(
            "/api/v1/auth/otp/request",
            serde_json::json!({ "email": "not an address" }),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/auth/otp/request", &invalid);
    let unconfigured = auth.server.get("/v1/auth/login/github").await;
    assert_response(&doc, "get", "/v1/auth/login/{provider}", &unconfigured);
    let revoked = auth
        .post_form("/v1/auth/revoke", &[("token", &refresh_token)])
        .await;
    assert_response(&doc, "post", "/v1/auth/revoke", &revoked);
    let signed_out = auth
        .post_json(
            "/v1/auth/logout",
            serde_json::json!({ "refresh_token": refresh_token }),
        )
        .await;
    assert_response(&doc, "post", "/v1/auth/logout", &signed_out);
}
