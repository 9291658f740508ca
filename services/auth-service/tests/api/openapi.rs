//! The OpenAPI document (`proto-docs/auth-service.openapi.json`): committed as generated, complete,
//! and true to what the service answers (the checks are `testkit::openapi`'s).
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p auth-service --test api openapi`
//! (`make openapi`) rewrites the committed file.

use crate::helpers::TestAuth;
use testkit::DbKind;
use testkit::openapi::{Document, assert_conforms, assert_response};
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
    // The gospace shapes of the same answers, as the writers write them.
    let doc = doc.json;
    let request = service_kit::pagination::ListQuery {
        page_size: Some(2),
        page: Some(2),
        ..Default::default()
    }
    .validate(&["created_at"])
    .unwrap();
    let page = service_kit::ApiResponse::ok(Vec::<u8>::new()).window(request.window(5));
    let written = page.render(service_kit::Dialect::Gospace).unwrap();
    let written: serde_json::Value = serde_json::from_slice(&written).unwrap();
    assert!(written["next_cursor"].is_string() && written["prev_cursor"].is_string());
    assert_conforms(&doc, "GospaceListEnvelope_Vec_KeyView", &written);
    let (status, refused) = service_kit::ApiError::invalid_query("sort", "must be one of …")
        .render(service_kit::Dialect::Gospace);
    assert_eq!(status, 400);
    assert_conforms(&doc, "GospaceErrorEnvelope", &refused);
}

/// Every gospace list takes `page_size`, `page`, `cursor` and `sort`, with the
/// code's bounds and the list's own sort fields.
#[test]
fn gospace_lists_document_their_paging() {
    use service_kit::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE};
    let doc = document().json;
    for (path, fields) in auth_service::openapi::SORTED_LISTS {
        let params = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has no parameters"));
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name && p["in"] == "query")
                .map(|p| p["schema"].clone())
                .unwrap_or_else(|| panic!("{path} lacks ?{name}"))
        };
        let size = param("page_size");
        assert_eq!(size["maximum"], MAX_PAGE_SIZE, "{path}");
        assert_eq!(size["minimum"], 1, "{path}");
        assert_eq!(size["default"], DEFAULT_PAGE_SIZE, "{path}");
        assert_eq!(param("page")["maximum"], MAX_PAGE, "{path}");
        assert_eq!(param("cursor")["type"], "string", "{path}");
        let sort = param("sort");
        assert_eq!(sort["default"], "created_at.desc", "{path}");
        let documented: Vec<&str> = sort["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let expected: Vec<String> = fields
            .iter()
            .flat_map(|f| [format!("{f}.asc"), format!("{f}.desc")])
            .collect();
        assert_eq!(documented, expected, "{path}");
        assert!(fields.contains(&"created_at"), "{path}: the default order");
        // Each documented value is one the code accepts, and nothing else is.
        for value in &expected {
            service_kit::pagination::ListQuery {
                sort: Some(value.clone()),
                ..Default::default()
            }
            .validate(fields)
            .unwrap_or_else(|e| panic!("{path} {value}: {e}"));
        }
        let response = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"];
        assert!(
            response.as_str().unwrap().contains("GospaceListEnvelope_"),
            "{path}: {response}"
        );
    }
    // Every list of the service is one of them.
    for (method, path) in auth_service::ROUTES {
        let answer = &doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"];
        if answer.as_str().is_some_and(|r| r.contains("ListEnvelope_")) {
            assert!(
                auth_service::openapi::SORTED_LISTS
                    .iter()
                    .any(|(listed, _)| listed == path),
                "{method} {path} is a list without gospace paging"
            );
        }
    }
}

#[test]
fn the_checker_notices_differences() {
    document().assert_checker_notices_differences();
}

#[test]
fn the_scope_catalog_and_internal_routes() {
    let doc = document().json;
    let schema = &doc["components"]["schemas"]["Scope"];
    let scopes: std::collections::BTreeSet<&str> = schema["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let catalog: std::collections::BTreeSet<&str> =
        identity::scopes::CATALOG.iter().map(|(n, _)| *n).collect();
    assert_eq!(scopes, catalog);
    let description = schema["description"].as_str().unwrap();
    for (name, meaning) in identity::scopes::CATALOG {
        assert!(
            description.contains(&format!("`{name}`: {meaning}")),
            "{name}"
        );
    }
    // The documented pattern is what `Scope::parse` accepts (a deployment
    // may grant scopes beyond the catalog).
    assert_eq!(schema["pattern"], auth_service::openapi::SCOPE_PATTERN);
    assert_eq!(schema["maxLength"], identity::scopes::MAX_SCOPE_LEN);
    for (name, fits) in [
        ("reports:read", true),
        ("agents:run", true),
        ("a_b-1:c_d-2", true),
        ("Reports:read", false),
        ("reports", false),
        ("a:b:c", false),
        (":read", false),
    ] {
        assert_eq!(identity::Scope::parse(name).is_some(), fits, "{name}");
        assert_eq!(matches_scope_pattern(name), fits, "{name}");
    }
    assert_eq!(
        doc["paths"]["/internal/api-keys/introspect"]["post"]["x-internal"],
        true
    );
}

/// `^[a-z0-9_-]+:[a-z0-9_-]+$`, without a regex engine.
fn matches_scope_pattern(name: &str) -> bool {
    assert_eq!(
        auth_service::openapi::SCOPE_PATTERN,
        "^[a-z0-9_-]+:[a-z0-9_-]+$"
    );
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    name.split_once(':')
        .is_some_and(|(resource, action)| part(resource) && part(action))
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
    // gospace's documented call: no body at all.
    let bare = auth
        .server
        .send(as_owner(Method::POST, "/v1/auth/api-key"))
        .await;
    assert_eq!(bare.status, 201);
    assert_response(&doc, "post", "/v1/auth/api-key", &bare);
    // Pages with neighbours, and refused paging, in the gospace shapes.
    for (query, status) in [
        ("?page_size=1&page=2", 200),
        ("?sort=name.asc", 200),
        ("?sort=colour.asc", 400),
        ("?page_size=501", 400),
    ] {
        for (path, _) in auth_service::openapi::SORTED_LISTS {
            let answer = auth
                .server
                .send(as_owner(Method::GET, &format!("{path}{query}")))
                .await;
            assert_eq!(answer.status, status, "{path}{query}");
            assert_response(&doc, "get", path, &answer);
        }
    }
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
