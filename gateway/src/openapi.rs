//! The published API: one OpenAPI document for every public route (`GET
//! /openapi.json`), merged at start-up from the services' committed documents,
//! with the authentication page and the error catalog as its description.
//!
//! Internal operations (`/internal/*`, `x-internal`) are left out; so is any
//! path the route table would not send to the service that documents it.

use crate::routes::RouteTable;
use serde_json::{Map, Value, json};

/// The services' committed documents, by upstream name.
const DOCUMENTS: [(&str, &str); 4] = [
    (
        "auth",
        include_str!("../../proto-docs/auth-service.openapi.json"),
    ),
    (
        "booking",
        include_str!("../../proto-docs/booking-service.openapi.json"),
    ),
    (
        "spaces",
        include_str!("../../proto-docs/spaces-service.openapi.json"),
    ),
    (
        "events",
        include_str!("../../proto-docs/events-service.openapi.json"),
    ),
];

pub const AUTHENTICATION: &str = include_str!("../../proto-docs/authentication.md");
pub const ERRORS: &str = include_str!("../../proto-docs/errors.md");

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Renames references `from` → `to` (both `#/components/<kind>/<name>`)
/// everywhere in `value`.
fn rename_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(target) = v
                    && target == from
                {
                    *target = to.to_owned();
                } else {
                    rename_refs(v, from, to);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, from, to)),
        _ => {}
    }
}

fn is_internal(path: &str, item: &Value) -> bool {
    path == "/internal"
        || path.starts_with("/internal/")
        || item.as_object().is_some_and(|ops| {
            ops.values()
                .any(|op| op.get("x-internal") == Some(&json!(true)))
        })
}

/// The merged document.
pub fn merged(routes: &RouteTable) -> Value {
    let mut paths = Map::new();
    // components by kind (`schemas`, `responses`, …), security schemes aside.
    let mut components: Map<String, Value> = Map::new();
    let mut tags: Vec<Value> = Vec::new();
    let mut schemes = Map::new();
    for (upstream, text) in DOCUMENTS {
        let mut doc: Value = serde_json::from_str(text).expect("committed OpenAPI documents parse");
        // A component of the same name but another shape in an earlier
        // document is renamed after its service (`Meta` → `BookingMeta`).
        let kinds: Vec<String> = doc["components"]
            .as_object()
            .map(|m| {
                m.keys()
                    .filter(|k| *k != "securitySchemes")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for kind in kinds {
            let names: Vec<String> = doc["components"][&kind]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for name in names {
                let clash = components
                    .get(&kind)
                    .and_then(|known| known.get(&name))
                    .is_some_and(|known| known != &doc["components"][&kind][&name]);
                if clash {
                    let renamed = format!("{}{name}", capitalized(upstream));
                    rename_refs(
                        &mut doc,
                        &format!("#/components/{kind}/{name}"),
                        &format!("#/components/{kind}/{renamed}"),
                    );
                    if let Some(map) = doc["components"][&kind].as_object_mut()
                        && let Some(item) = map.remove(&name)
                    {
                        map.insert(renamed, item);
                    }
                }
            }
            if let (Some(merged), Some(map)) = (
                components
                    .entry(kind.clone())
                    .or_insert_with(|| json!({}))
                    .as_object_mut(),
                doc["components"][&kind].as_object(),
            ) {
                for (name, item) in map {
                    merged.insert(name.clone(), item.clone());
                }
            }
        }
        if let Some(map) = doc["components"]["securitySchemes"].as_object() {
            for (name, scheme) in map {
                schemes
                    .entry(name.clone())
                    .or_insert_with(|| scheme.clone());
            }
        }
        if let Some(map) = doc["paths"].as_object() {
            for (path, item) in map {
                let routed = routes
                    .find(path)
                    .is_some_and(|route| &*route.upstream == upstream);
                if routed && !is_internal(path, item) {
                    paths.insert(path.clone(), item.clone());
                }
            }
        }
        for tag in doc["tags"].as_array().into_iter().flatten() {
            let internal = tag["name"] == "internal";
            if !internal && !tags.iter().any(|t| t["name"] == tag["name"]) {
                tags.push(tag.clone());
            }
        }
    }
    // The gateway's own description of each credential replaces the services'.
    schemes.insert(
        "bearer_token".into(),
        json!({
            "type": "http",
            "scheme": "bearer",
            "description": "A user or service-principal access token (EdDSA JWT, verified against /.well-known/jwks.json), a space API key (`sk_…`) or a workspace API key (`key_…`)."
        }),
    );
    schemes.insert(
        "api_key".into(),
        json!({
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "A workspace API key (`key_…`; SpaceOS clients may send it as `x-org-api-key`), a space API key (`sk_…`) or an operator's system key (`sys_…`)."
        }),
    );
    // Only the schemes a published operation names (internal ones use the
    // gateway's identity token, which is not for clients).
    let mut used = Vec::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|ops| ops.values()) {
            for requirement in op["security"].as_array().into_iter().flatten() {
                if let Some(map) = requirement.as_object() {
                    used.extend(map.keys().cloned());
                }
            }
        }
    }
    schemes.retain(|name, _| used.contains(name));
    components.insert("securitySchemes".into(), Value::Object(schemes));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Spaceport API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("{AUTHENTICATION}\n\n{ERRORS}"),
        },
        "servers": [{"url": "/", "description": "This gateway: every endpoint is called through it."}],
        "tags": tags,
        "paths": paths,
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use crate::upstreams::Pool;

    fn document() -> Value {
        let config = GatewayConfig::defaults();
        merged(&RouteTable::new(&config, &Pool::new(&config.upstreams)))
    }

    /// Every `$ref` in `value`.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(target)) => out.push(target.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_public_operation_of_every_service_and_no_internal_one() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let mut expected = 0;
        for (_, text) in DOCUMENTS {
            let service: Value = serde_json::from_str(text).unwrap();
            for (path, item) in service["paths"].as_object().unwrap() {
                if is_internal(path, item) {
                    assert!(!paths.contains_key(path), "{path} is internal");
                } else {
                    expected += 1;
                    let ops = |item: &Value| -> Vec<Value> {
                        item.as_object()
                            .unwrap()
                            .values()
                            .map(|op| op["operationId"].clone())
                            .collect()
                    };
                    assert_eq!(
                        ops(&paths[path]),
                        ops(item),
                        "{path} is published as documented"
                    );
                }
            }
        }
        assert_eq!(paths.len(), expected);
        for path in [
            "/api/v1/auth/otp/request",
            "/api/v1/bookings",
            "/api/v1/spaces",
            "/api/v1/webhooks",
            "/v1/webhooks/webhooks",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for target in all {
            let pointer = target.strip_prefix('#').expect("local references only");
            assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
        }
        for tag in doc["tags"].as_array().unwrap() {
            assert_ne!(tag["name"], "internal");
        }
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert!(schemes.contains_key("bearer_token") && schemes.contains_key("api_key"));
        assert!(!schemes.contains_key("gateway_identity"));
    }

    #[test]
    fn clashing_schemas_are_renamed_after_their_service() {
        let mut doc = json!({"a": {"$ref": "#/components/schemas/Meta"}, "b": [{"$ref": "#/components/schemas/MetaX"}]});
        rename_refs(
            &mut doc,
            "#/components/schemas/Meta",
            "#/components/schemas/BookingMeta",
        );
        assert_eq!(doc["a"]["$ref"], "#/components/schemas/BookingMeta");
        assert_eq!(doc["b"][0]["$ref"], "#/components/schemas/MetaX");
    }
}
