//! The OpenAPI document (`proto-docs/auth-service.openapi.json`): committed as
//! generated, complete, and true to what the service answers.
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p auth-service --test api openapi`
//! (`make openapi`) rewrites the committed file.

use crate::helpers::TestAuth;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use testkit::DbKind;
use testkit::reqwest::Method;

const UPDATE_VARIABLE: &str = "SPACEPORT_UPDATE_OPENAPI";

const COMMITTED: &str = "proto-docs/auth-service.openapi.json";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(COMMITTED)
}

/// The document as the file holds it: pretty JSON, keys in a stable order, a
/// final newline.
fn generated() -> String {
    let mut json = auth_service::openapi::document()
        .to_pretty_json()
        .expect("the document serializes");
    json.push('\n');
    json
}

fn document() -> Value {
    serde_json::from_str(&generated()).unwrap()
}

#[test]
fn committed_document_is_current() {
    let path = committed_path();
    let fresh = generated();
    if std::env::var_os(UPDATE_VARIABLE).is_some_and(|v| !v.is_empty()) {
        std::fs::write(&path, &fresh).unwrap();
        eprintln!("wrote {COMMITTED}");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first_difference = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "{COMMITTED} is stale (first difference at line {}).\n\
             Regenerate it with `make openapi` \
             ({UPDATE_VARIABLE}=1 cargo test -p auth-service --test api openapi) and commit it.",
            first_difference + 1,
        );
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method.to_owned(), path.clone(), operation));
            }
        }
    }
    found
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let registered: BTreeSet<(String, String)> = auth_service::ROUTES
        .iter()
        .map(|(method, path)| (method.to_ascii_lowercase(), (*path).to_owned()))
        .collect();
    assert_eq!(
        registered.len(),
        auth_service::ROUTES.len(),
        "a route is registered twice"
    );
    let missing: Vec<_> = registered.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without documentation: {missing:?}; documented but not routed: {extra:?}"
    );
}

#[test]
fn every_reference_resolves() {
    fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    match (key.as_str(), field) {
                        ("$ref", Value::String(reference)) => found.push(reference),
                        _ => references(field, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| references(item, found)),
            _ => {}
        }
    }
    let doc = document();
    let mut found = Vec::new();
    references(&doc, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let target = reference
            .strip_prefix('#')
            .map(|pointer| doc.pointer(pointer));
        assert!(
            matches!(target, Some(Some(_))),
            "{reference} does not resolve"
        );
    }
}

#[test]
fn operations_are_named_tagged_and_answer_errors() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            ids.insert(id.to_owned()),
            "{method} {path}: operationId {id:?} repeats"
        );
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path}: no summary"
        );
        assert!(operation["tags"][0].is_string(), "{method} {path}: no tag");
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.contains_key("default"),
            "{method} {path}: no default (error) response"
        );
        assert!(
            responses
                .keys()
                .any(|status| status.starts_with('2') || status.starts_with('3')),
            "{method} {path}: no success response"
        );
        // Every path parameter is declared.
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let declared = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == name && p["in"] == "path");
                assert!(
                    declared,
                    "{method} {path}: path parameter {name} undeclared"
                );
            }
        }
        // Only the schemes the document defines.
        for requirement in operation["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(
                    doc["components"]["securitySchemes"].get(scheme).is_some(),
                    "{method} {path}: unknown security scheme {scheme}"
                );
            }
        }
    }
    assert_eq!(
        doc["paths"]["/internal/api-keys/introspect"]["post"]["x-internal"],
        true
    );
}

#[test]
fn shared_schemas_follow_the_code() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let codes: BTreeSet<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let catalog: BTreeSet<&str> = service_kit::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(codes, catalog);
    let scopes: BTreeSet<&str> = schemas["Scope"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let catalog: BTreeSet<&str> = identity::scopes::CATALOG.iter().map(|(n, _)| *n).collect();
    assert_eq!(scopes, catalog);

    // Paging bounds are written as literals in the annotations.
    let list = &doc["paths"]["/v1/auth/api-key"]["get"]["parameters"];
    let param = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    use service_kit::pagination::{DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE};
    assert_eq!(param("limit")["maximum"], MAX_LIMIT);
    assert_eq!(param("limit")["default"], DEFAULT_LIMIT);
    assert_eq!(param("page")["maximum"], MAX_PAGE);

    // The envelopes, as `ApiResponse` and `ApiError` write them.
    let ok = service_kit::ApiResponse::ok(serde_json::json!(null))
        .message("done")
        .to_json();
    assert_conforms(&doc, "Envelope_NoData", &ok);
    let listed = service_kit::ApiResponse::ok(Vec::<u8>::new())
        .meta(service_kit::envelope::Meta::Offset {
            page: 1,
            limit: 20,
            total: 0,
        })
        .to_json();
    let refused = service_kit::ApiError::validation(vec![service_kit::FieldError::new(
        "name",
        "is required",
    )])
    .body();
    assert_conforms(&doc, "ListEnvelope_Vec_KeyView", &listed);
    assert_conforms(&doc, "ErrorEnvelope", &refused);
    assert_conforms(
        &doc,
        "ErrorEnvelope",
        &service_kit::ApiError::forbidden("no").body(),
    );
}

#[test]
fn the_checker_notices_differences() {
    let doc = document();
    let body = service_kit::ApiError::forbidden("no").body();
    let mut extra = body.clone();
    extra["surprise"] = serde_json::json!(1);
    let mut missing = body.clone();
    missing.as_object_mut().unwrap().remove("timestamp");
    let mut wrong = body.clone();
    wrong["error"]["code"] = serde_json::json!("teapot");
    let mut mistyped = body;
    mistyped["success"] = serde_json::json!(true);
    for value in [extra, missing, wrong, mistyped] {
        let schema = serde_json::json!({ "$ref": "#/components/schemas/ErrorEnvelope" });
        assert!(!check(&doc, &schema, &value, "").is_empty(), "{value}");
    }
}

/// Real answers of the endpoints whose shapes are described by hand.
#[tokio::test]
async fn answers_match_the_document() {
    let doc = document();
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

/// The response's status is documented for the operation, and its JSON body
/// (if any) fits the documented schema.
fn assert_response(doc: &Value, method: &str, path: &str, response: &testkit::TestResponse) {
    let responses = &doc["paths"][path][method]["responses"];
    let documented = match responses.get(response.status.to_string()) {
        Some(r) => r.clone(),
        None => panic!(
            "{method} {path}: status {} is not documented: {:?}",
            response.status,
            String::from_utf8_lossy(&response.body)
        ),
    };
    let documented = resolve(doc, &documented);
    let Some(content) = documented["content"].as_object() else {
        assert!(
            response.body.is_empty(),
            "{method} {path}: an undocumented body"
        );
        return;
    };
    let (_, media) = content.iter().next().unwrap();
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    let errors = check(doc, &media["schema"], &body, "");
    assert!(
        errors.is_empty(),
        "{method} {path} {}: {errors:?} in {body}",
        response.status
    );
}

fn assert_conforms(doc: &Value, schema: &str, value: &Value) {
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{schema}") });
    let errors = check(doc, &schema, value, "");
    assert!(errors.is_empty(), "{errors:?} in {value}");
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').unwrap();
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference}")),
            )
        }
        None => schema,
    }
}

/// The subset of JSON Schema the document uses: `$ref`, `oneOf`, `type`,
/// `enum`, `properties`/`required` (and no undocumented property), `items`.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema["oneOf"].as_array() {
        let fitting = branches
            .iter()
            .filter(|branch| check(doc, branch, value, at).is_empty())
            .count();
        return match fitting {
            1 => Vec::new(),
            n => vec![format!("{at}: fits {n} of the oneOf branches")],
        };
    }
    let mut errors = Vec::new();
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty()
        && !types
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"))
    {
        errors.push(format!("{at}: a {actual}, documented as {types:?}"));
        return errors;
    }
    match value {
        Value::Object(fields) if schema.get("properties").is_some() || types == ["object"] => {
            let properties = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for required in schema["required"].as_array().into_iter().flatten() {
                if !fields.contains_key(required.as_str().unwrap()) {
                    errors.push(format!("{at}: {required} is missing"));
                }
            }
            for (name, field) in fields {
                match properties.get(name) {
                    Some(property) => {
                        errors.extend(check(doc, property, field, &format!("{at}.{name}")))
                    }
                    None => errors.push(format!("{at}.{name}: not documented")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    errors.extend(check(doc, item_schema, item, &format!("{at}[{i}]")));
                }
            }
        }
        _ => {}
    }
    errors
}
