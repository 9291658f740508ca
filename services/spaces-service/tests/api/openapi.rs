//! The OpenAPI document (`proto-docs/spaces-service.openapi.json`): committed
//! as generated, complete, and true to what the service answers.
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p spaces-service --test api openapi`
//! rewrites the committed file.

use crate::helpers::{TestSpaces, member, new_workspace, space_key};
use identity::Identity;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use testkit::DbKind;

const UPDATE_VARIABLE: &str = "SPACEPORT_UPDATE_OPENAPI";

const COMMITTED: &str = "proto-docs/spaces-service.openapi.json";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(COMMITTED)
}

/// The document as the file holds it: pretty JSON, a final newline.
fn generated() -> String {
    let mut json = spaces_service::openapi::document()
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
             Regenerate it with \
             {UPDATE_VARIABLE}=1 cargo test -p spaces-service --test api openapi, and commit it.",
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
    let registered: BTreeSet<(String, String)> = spaces_service::ROUTES
        .iter()
        .map(|(method, path)| (method.to_ascii_lowercase(), (*path).to_owned()))
        .collect();
    assert_eq!(
        registered.len(),
        spaces_service::ROUTES.len(),
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
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path}: no success response"
        );
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
        doc["paths"]["/internal/space-keys/introspect"]["post"]["x-internal"],
        true
    );
    // The shared catalogs, as the code has them.
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
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
    let limit = doc["paths"]["/api/v1/spaces"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"]
        .clone();
    assert_eq!(limit["maximum"], service_kit::pagination::MAX_LIMIT);
    assert_eq!(limit["default"], service_kit::pagination::DEFAULT_LIMIT);
    // The envelopes, as `ApiResponse` and `ApiError` write them.
    let ok = service_kit::ApiResponse::ok(Value::Null)
        .message("done")
        .to_json();
    assert_conforms(&doc, "Envelope_NoData", &ok);
    let refused = service_kit::ApiError::validation(vec![service_kit::FieldError::new(
        "name",
        "is required",
    )])
    .body();
    assert_conforms(&doc, "ErrorEnvelope", &refused);
}

#[tokio::test]
async fn answers_fit_the_document() {
    let doc = document();
    let app = TestSpaces::start(DbKind::Sqlite).await;
    let workspace = new_workspace();
    let me = member(&workspace);
    let stranger = member(&new_workspace());

    let created = app
        .post(&me, "/api/v1/spaces", json!({"name": "Documented"}))
        .await;
    assert_response(&doc, "post", "/api/v1/spaces", &created);
    let space = created.json()["data"].clone();
    let id = space["id"].as_str().unwrap().to_owned();
    let config = space["active_upload_config_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let conflict = app
        .post(&me, "/api/v1/spaces", json!({"name": "documented"}))
        .await;
    assert_response(&doc, "post", "/api/v1/spaces", &conflict);
    let invalid = app.post(&me, "/api/v1/spaces", json!({"name": ""})).await;
    assert_response(&doc, "post", "/api/v1/spaces", &invalid);
    app.create_space(&me, "Second").await;

    let listed = app.get(&me, "/api/v1/spaces?limit=1").await;
    assert_response(&doc, "get", "/api/v1/spaces", &listed);
    let bad_cursor = app.get(&me, "/api/v1/spaces?cursor=x").await;
    assert_response(&doc, "get", "/api/v1/spaces", &bad_cursor);
    let space_path = format!("/api/v1/spaces/{id}");
    assert_response(
        &doc,
        "get",
        "/api/v1/spaces/{id}",
        &app.get(&me, &space_path).await,
    );
    assert_response(
        &doc,
        "get",
        "/api/v1/spaces/{id}",
        &app.get(&stranger, &space_path).await,
    );
    assert_response(
        &doc,
        "get",
        "/api/v1/spaces/{id}",
        &app.get(&Identity::anonymous(), &space_path).await,
    );
    let updated = app
        .put(
            &me,
            &space_path,
            json!({"name": "Documented", "description": "d", "custom_domain": "docs.example.com", "webhook_url": "https://h.example.com/x", "folder_mode": "fixed"}),
        )
        .await;
    assert_response(&doc, "put", "/api/v1/spaces/{id}", &updated);
    let refused = app
        .put(
            &me,
            &space_path,
            json!({"name": "x", "webhook_url": "http://x"}),
        )
        .await;
    assert_response(&doc, "put", "/api/v1/spaces/{id}", &refused);

    let acl = format!("{space_path}/access-control");
    let set = app
        .put(
            &me,
            &acl,
            json!({"access_control": {"requires_auth": true}}),
        )
        .await;
    assert_response(&doc, "put", "/api/v1/spaces/{id}/access-control", &set);
    assert_response(
        &doc,
        "delete",
        "/api/v1/spaces/{id}/access-control",
        &app.delete(&me, &acl).await,
    );
    let security = format!("{space_path}/security");
    let set = app
        .put(
            &me,
            &security,
            json!({"security": {"watermark": {"enabled": true, "url": "https://example.com/w.png", "position": "north", "opacity": 0.25}}}),
        )
        .await;
    assert_response(&doc, "put", "/api/v1/spaces/{id}/security", &set);
    let bad = app
        .put(
            &me,
            &security,
            json!({"security": {"watermark": {"opacity": 2}}}),
        )
        .await;
    assert_response(&doc, "put", "/api/v1/spaces/{id}/security", &bad);
    assert_response(
        &doc,
        "delete",
        "/api/v1/spaces/{id}/security",
        &app.delete(&me, &security).await,
    );

    let keys = format!("{space_path}/api-keys");
    let minted = app
        .post(
            &me,
            &keys,
            json!({"name": "docs", "expires_at": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/spaces/{id}/api-keys", &minted);
    let key = minted.json()["data"].clone();
    let sk = space_key(&key, &workspace);
    let forbidden = app.post(&sk, &keys, json!({"name": "more"})).await;
    assert_response(&doc, "post", "/api/v1/spaces/{id}/api-keys", &forbidden);
    for secret in [key["key"].clone(), json!("nope")] {
        let seen = app
            .post(
                &Identity::gateway(),
                "/internal/space-keys/introspect",
                json!({"key": secret}),
            )
            .await;
        assert_response(&doc, "post", "/internal/space-keys/introspect", &seen);
    }
    let hidden = app
        .post(&me, "/internal/space-keys/introspect", json!({"key": "x"}))
        .await;
    assert_response(&doc, "post", "/internal/space-keys/introspect", &hidden);
    assert_response(
        &doc,
        "get",
        "/api/v1/spaces/{id}/api-keys",
        &app.get(&me, &keys).await,
    );
    let key_path = format!("{keys}/{}", key["id"].as_str().unwrap());
    assert_response(
        &doc,
        "delete",
        "/api/v1/spaces/{id}/api-keys/{key_id}",
        &app.delete(&me, &key_path).await,
    );
    assert_response(
        &doc,
        "delete",
        "/api/v1/spaces/{id}/api-keys/{key_id}",
        &app.delete(&me, &key_path).await,
    );

    let made = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({"space_id": id, "name": "videos", "config": {"allowed_formats": ["mp4"]}}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/upload-configs", &made);
    let made_id = made.json()["data"]["id"].as_str().unwrap().to_owned();
    let listed = app
        .get(
            &me,
            &format!("/api/v1/upload-configs?space_id={id}&limit=1"),
        )
        .await;
    assert_response(&doc, "get", "/api/v1/upload-configs", &listed);
    let config_path = format!("/api/v1/upload-configs/{config}");
    assert_response(
        &doc,
        "get",
        "/api/v1/upload-configs/{id}",
        &app.get(&me, &config_path).await,
    );
    let changed = app
        .put(
            &me,
            &config_path,
            json!({"config": {"max_file_size": 1024}}),
        )
        .await;
    assert_response(&doc, "put", "/api/v1/upload-configs/{id}", &changed);
    assert_response(
        &doc,
        "delete",
        "/api/v1/upload-configs/{id}",
        &app.delete(&me, &config_path).await,
    );
    let made_path = format!("/api/v1/upload-configs/{made_id}");
    assert_response(
        &doc,
        "delete",
        "/api/v1/upload-configs/{id}",
        &app.delete(&me, &made_path).await,
    );

    let missing = app.delete(&me, "/api/v1/spaces").await;
    assert_response(&doc, "delete", "/api/v1/spaces", &missing);
    let gone = app.delete(&me, &format!("/api/v1/spaces?id={id}")).await;
    assert_response(&doc, "delete", "/api/v1/spaces", &gone);
    assert_response(
        &doc,
        "delete",
        "/api/v1/spaces/{id}",
        &app.delete(&me, &space_path).await,
    );
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
