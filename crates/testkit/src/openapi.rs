//! Checks every service runs on its OpenAPI document: committed as generated,
//! complete, self-consistent, and true to what the service answers. The
//! services' API tests call these with their own document and routes.
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p <service> --test api openapi`
//! (`make openapi`) rewrites a committed document.

use crate::TestResponse;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

pub const UPDATE_VARIABLE: &str = "SPACEPORT_UPDATE_OPENAPI";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A service's document as generated now, and where it is committed.
pub struct Document {
    /// Pretty JSON with a final newline, as the committed file holds it.
    text: String,
    pub json: Value,
    /// Relative to the workspace root, e.g. `proto-docs/auth-service.openapi.json`.
    committed: &'static str,
    package: &'static str,
}

impl Document {
    /// `pretty_json`: the service's `document().to_pretty_json()`.
    pub fn new(pretty_json: String, committed: &'static str, package: &'static str) -> Document {
        let mut text = pretty_json;
        text.push('\n');
        let json = serde_json::from_str(&text).expect("the document is JSON");
        Document {
            text,
            json,
            committed,
            package,
        }
    }

    fn committed_path(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(self.committed)
    }

    /// The committed file is this document; with `SPACEPORT_UPDATE_OPENAPI`
    /// set, it is rewritten instead.
    pub fn assert_committed_is_current(&self) {
        let path = self.committed_path();
        if std::env::var_os(UPDATE_VARIABLE).is_some_and(|v| !v.is_empty()) {
            std::fs::write(&path, &self.text).unwrap();
            eprintln!("wrote {}", self.committed);
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != self.text {
            let first_difference = committed
                .lines()
                .zip(self.text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(self.text.lines().count()));
            panic!(
                "{} is stale (first difference at line {}).\n\
                 Regenerate it with `make openapi` \
                 ({UPDATE_VARIABLE}=1 cargo test -p {} --test api openapi) and commit it.",
                self.committed,
                first_difference + 1,
                self.package,
            );
        }
    }

    /// Every registered route (`(METHOD, path)`) is documented, and nothing else.
    pub fn assert_documents_exactly(&self, routes: &[(&str, &str)]) {
        let documented: BTreeSet<(String, String)> = operations(&self.json)
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let registered: BTreeSet<(String, String)> = routes
            .iter()
            .map(|(method, path)| (method.to_ascii_lowercase(), (*path).to_owned()))
            .collect();
        assert_eq!(
            registered.len(),
            routes.len(),
            "a route is registered twice"
        );
        let missing: Vec<_> = registered.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&registered).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "routes without documentation: {missing:?}; documented but not routed: {extra:?}"
        );
    }

    /// Every `$ref` points at something in the document.
    pub fn assert_references_resolve(&self) {
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
        let doc = &self.json;
        let mut found = Vec::new();
        references(doc, &mut found);
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

    /// Unique operation ids, a summary and a tag each, a success and a default
    /// (error) response, declared path parameters, known security schemes.
    pub fn assert_operations_are_named_tagged_and_answer_errors(&self) {
        let doc = &self.json;
        let mut ids = BTreeSet::new();
        for (method, path, operation) in operations(doc) {
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
    }

    /// The error codes are the catalog's; the envelopes `ApiResponse` and
    /// `ApiError` write fit their schemas (`list_schema` with `list_meta`).
    pub fn assert_envelopes_follow_the_code(
        &self,
        list_schema: &str,
        list_meta: service_kit::envelope::Meta,
    ) {
        let doc = &self.json;
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
        let ok = service_kit::ApiResponse::ok(serde_json::json!(null))
            .message("done")
            .to_json();
        assert_conforms(doc, "Envelope_NoData", &ok);
        let listed = service_kit::ApiResponse::ok(Vec::<u8>::new())
            .meta(list_meta)
            .to_json();
        assert_conforms(doc, list_schema, &listed);
        let refused = service_kit::ApiError::validation(vec![service_kit::FieldError::new(
            "name",
            "is required",
        )])
        .body();
        assert_conforms(doc, "ErrorEnvelope", &refused);
        assert_conforms(
            doc,
            "ErrorEnvelope",
            &service_kit::ApiError::forbidden("no").body(),
        );
    }

    /// The paging bounds written as literals in the annotations of `(method,
    /// path)` are the code's.
    pub fn assert_paging_bounds(&self, method: &str, path: &str) {
        use service_kit::pagination::{DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE};
        let list = &self.json["paths"][path][method]["parameters"];
        let param = |name: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["schema"].clone())
        };
        let limit = param("limit").expect("a limit parameter");
        assert_eq!(limit["maximum"], MAX_LIMIT);
        assert_eq!(limit["default"], DEFAULT_LIMIT);
        if let Some(page) = param("page") {
            assert_eq!(page["maximum"], MAX_PAGE);
        }
    }

    /// The checker itself: an error envelope with an extra, a missing, a wrong
    /// or a mistyped field does not pass.
    pub fn assert_checker_notices_differences(&self) {
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
            assert!(
                !check(&self.json, &schema, &value, "").is_empty(),
                "{value}"
            );
        }
    }
}

/// `(method, path, operation)` of every operation.
pub fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
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

/// The response's status is documented for the operation, and its JSON body
/// (if any) fits the documented schema.
pub fn assert_response(doc: &Value, method: &str, path: &str, response: &TestResponse) {
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

pub fn assert_conforms(doc: &Value, schema: &str, value: &Value) {
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{schema}") });
    let errors = check(doc, &schema, value, "");
    assert!(errors.is_empty(), "{errors:?} in {value}");
}

pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
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
/// `enum`, `properties`/`required` (and no undocumented property, unless
/// `additionalProperties` is a schema, which such properties must fit), `items`.
pub fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
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
                match (properties.get(name), &schema["additionalProperties"]) {
                    (Some(property), _) => {
                        errors.extend(check(doc, property, field, &format!("{at}.{name}")))
                    }
                    (None, additional @ Value::Object(_)) => {
                        errors.extend(check(doc, additional, field, &format!("{at}.{name}")))
                    }
                    (None, _) => errors.push(format!("{at}.{name}: not documented")),
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
