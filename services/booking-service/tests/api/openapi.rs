//! The OpenAPI document (`proto-docs/booking-service.openapi.json`): committed as
//! generated, complete, and true to what the service answers.
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p booking-service --test api openapi`
//! (`make openapi`) rewrites the committed file.

use crate::helpers::TestBooking;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use testkit::DbKind;
use testkit::reqwest::Method;

const UPDATE_VARIABLE: &str = "SPACEPORT_UPDATE_OPENAPI";

const COMMITTED: &str = "proto-docs/booking-service.openapi.json";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(COMMITTED)
}

/// The document as the file holds it: pretty JSON, keys in a stable order, a
/// final newline.
fn generated() -> String {
    let mut json = booking_service::openapi::document()
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
             ({UPDATE_VARIABLE}=1 cargo test -p booking-service --test api openapi) and commit it.",
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
    let registered: BTreeSet<(String, String)> = booking_service::ROUTES
        .iter()
        .map(|(method, path)| (method.to_ascii_lowercase(), (*path).to_owned()))
        .collect();
    assert_eq!(
        registered.len(),
        booking_service::ROUTES.len(),
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
    // Paging bounds are written as literals in the annotations.
    let list = &doc["paths"]["/api/v1/organizations"]["get"]["parameters"];
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
    assert_conforms(&doc, "ListEnvelope_Vec_OrganizationView", &listed);
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

/// Real answers of the main endpoints conform to the document.
#[tokio::test]
async fn answers_match_the_document() {
    let doc = document();
    let t = TestBooking::start(DbKind::Sqlite).await;
    let org = t
        .post(
            "/api/v1/organizations",
            serde_json::json!({"name": "Docs", "slug": crate::helpers::slug("docs"), "timezone": "UTC"}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/organizations", &org);
    let org_id = org.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_response(
        &doc,
        "get",
        "/api/v1/organizations",
        &t.get("/api/v1/organizations").await,
    );
    let slug = org.json()["data"]["slug"].as_str().unwrap().to_owned();
    let public = t
        .get(&format!("/api/v1/organizations/by-slug/{slug}"))
        .await;
    assert_response(&doc, "get", "/api/v1/organizations/by-slug/{slug}", &public);
    let group = t
        .post(
            "/api/v1/space-groups",
            serde_json::json!({"organization_id": org_id, "name": "HQ"}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/space-groups", &group);
    let space = t
        .post(
            "/api/v1/meeting-spaces",
            serde_json::json!({"organization_id": org_id, "name": "Room", "slug": crate::helpers::slug("room"), "amenities": ["tv"]}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/meeting-spaces", &space);
    let space_id = space.json()["data"]["id"].as_str().unwrap().to_owned();
    let space_slug = space.json()["data"]["slug"].as_str().unwrap().to_owned();
    let public = t
        .get(&format!("/api/v1/meeting-spaces/by-slug/{space_slug}"))
        .await;
    assert_response(
        &doc,
        "get",
        "/api/v1/meeting-spaces/by-slug/{slug}",
        &public,
    );
    assert_response(
        &doc,
        "get",
        "/api/v1/meeting-spaces",
        &t.get("/api/v1/meeting-spaces").await,
    );
    let hours = t
        .server
        .send(
            t.request_as(&t.owner, Method::PUT, &format!("/api/v1/meeting-spaces/{space_id}/business-hours"))
                .json(&serde_json::json!({"hours": [{"weekday": "monday", "open": "09:00", "close": "24:00"}]})),
        )
        .await;
    assert_response(
        &doc,
        "put",
        "/api/v1/meeting-spaces/{id}/business-hours",
        &hours,
    );
    let ua = t
        .post(
            &format!("/api/v1/meeting-spaces/{space_id}/unavailability"),
            serde_json::json!({"start_time": "2040-01-01T00:00:00Z", "end_time": "2040-01-02T00:00:00Z"}),
        )
        .await;
    assert_response(
        &doc,
        "post",
        "/api/v1/meeting-spaces/{id}/unavailability",
        &ua,
    );
    t.server
        .send(
            t.request_as(
                &t.owner,
                Method::PUT,
                &format!("/api/v1/meeting-spaces/{space_id}/business-hours"),
            )
            .json(&serde_json::json!({"hours": []})),
        )
        .await;
    let start = crate::helpers::at(2, 10, 0);
    let booking = t
        .book(&space_id, start, start + chrono::Duration::hours(1))
        .await;
    assert_response(&doc, "post", "/api/v1/bookings", &booking);
    let clash = t
        .book(&space_id, start, start + chrono::Duration::hours(1))
        .await;
    assert_response(&doc, "post", "/api/v1/bookings", &clash);
    let invalid = t
        .post(
            "/api/v1/bookings",
            serde_json::json!({"meeting_space_id": space_id}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/bookings", &invalid);
    assert_response(
        &doc,
        "get",
        "/api/v1/bookings",
        &t.get("/api/v1/bookings").await,
    );
    let id = booking.json()["data"]["id"].as_str().unwrap().to_owned();
    let cancelled = t
        .patch(
            &format!("/api/v1/bookings/{id}/cancel"),
            serde_json::json!({"reason": "admin"}),
        )
        .await;
    assert_response(&doc, "patch", "/api/v1/bookings/{id}/cancel", &cancelled);
    let again = t
        .patch(
            &format!("/api/v1/bookings/{id}/cancel"),
            serde_json::json!({}),
        )
        .await;
    assert_response(&doc, "patch", "/api/v1/bookings/{id}/cancel", &again);
    let availability = t
        .get(&format!(
            "/api/v1/meeting-spaces/{space_id}/availability?date={}",
            start.date_naive()
        ))
        .await;
    assert_response(
        &doc,
        "get",
        "/api/v1/meeting-spaces/{id}/availability",
        &availability,
    );
}

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

/// The operations documented as needing no credential are exactly the ones the
/// gateway is told to route as public.
#[test]
fn public_operations_are_the_public_routes() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .filter(|(_, _, operation)| {
            operation["security"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|req| req.as_object().is_some_and(|o| o.is_empty()))
            })
        })
        .map(|(method, path, _)| (method, path))
        .collect();
    let public: BTreeSet<(String, String)> = booking_service::PUBLIC_ROUTES
        .iter()
        .map(|(method, path)| (method.to_ascii_lowercase(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, public);
}
