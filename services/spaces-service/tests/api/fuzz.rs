//! Property: no request body (nor id, nor query) yields a 5xx; every answer
//! is in its family's shape (Tuzzle's `{data}` / `{message, errors?}`, the
//! internal route's SpaceOS envelope). On SQLite and PostgreSQL.

use crate::helpers::{TestSpaces, member, new_workspace};
use identity::Identity;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use testkit::DbKind;
use testkit::reqwest::Method;

/// Field names the endpoints know, and a few they do not.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "name", "description", "enabled", "folder_mode", "custom_domain", "webhook_url",
            "active_upload_config_id", "access_control", "requires_auth", "public_read",
            "security", "watermark", "url", "position", "opacity", "space_id", "config",
            "max_file_size", "allowed_formats", "signed_uploads", "unsigned_uploads",
            "expires_at", "key", "handle", "id", "type", "is_signed", "allow_unsigned",
            "delivery_type", "unsigned_restrictions", "allowed_referrers", "require_https",
            "max_uploads_per_hour", "storage", "folder", "generate_filename", "unique_filename",
            "validation", "min_image_width", "max_image_width", "min_image_height",
            "max_image_height", "transformations", "upload_quality", "upload_format",
            "progressive", "strip_metadata", "eager", "width", "height", "crop", "metadata",
            "tags", "auto_tagging", "notifications", "file_ids", "filename", "content_type",
            "size", "ref", "parent_id", "folder_id", "folder_path", "upload_config",
            "upload_config_id", "expiration_minutes", "expires_in", "transformations", "w", "f",
            "original_name", "mime_type", "storage_path",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ]
}

/// Strings that probe the checks: control characters, NULs, long text,
/// near-valid URLs, hosts, ids and enum values, and arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        2 => "[ -~]{0,40}",
        2 => prop::sample::select(vec![
            "", " ", "\u{0}", "a\u{0}b", "\n", "My App", "https://example.com/w.png",
            "http://example.com/", "https://127.0.0.1/", "https://[::1]/", "https://u:p@x.io/",
            "https://169.254.169.254/", "media.example.com", "localhost", "north", "center",
            "dynamic", "fixed", "jpg", "spc_01HQ0000000000000000000000", "upc_nope",
            "2999-01-01T00:00:00Z", "2001-01-01T00:00:00Z", "not a time", "sk_abc",
            "\u{202e}evil", "💥", "'; DROP TABLE spaces; --", "account", "space", "upload",
            "private", "authenticated", "auto", "original", "webp", "thumb", "jpg,png,webp",
            "jpg,,php", "a/../b", "*.example.com", "products/images", "9223372036854775808",
            "-1", "1",
        ])
        .prop_map(str::to_owned),
        1 => (0usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-2.0f64..3.0).prop_map(|f| json!(f)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly objects with known fields, sometimes anything at all.
fn body() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::btree_map(field_name(), json_value(), 0..7)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        1 => json_value(),
    ]
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// (method, path, body?, as the gateway?) of one probe.
type Probe = (Method, String, Option<Value>, bool);

/// Ids of what the probes may name.
struct Known {
    space: String,
    config: String,
    key_id: String,
    folder: String,
    file: String,
}

fn probes(known: Known) -> impl Strategy<Value = Probe> {
    let Known {
        space,
        config,
        key_id,
        folder,
        file,
    } = known;
    (0usize..28, body(), text(), any::<bool>()).prop_map(move |(which, body, raw_id, real_id)| {
        let id = if real_id {
            space.clone()
        } else {
            percent_encode(&raw_id)
        };
        let upc = if real_id {
            config.clone()
        } else {
            percent_encode(&raw_id)
        };
        let q = percent_encode(&raw_id);
        let fld = if real_id {
            folder.clone()
        } else {
            percent_encode(&raw_id)
        };
        let fil = if real_id {
            file.clone()
        } else {
            percent_encode(&raw_id)
        };
        match which {
            0 => (Method::POST, "/api/v1/spaces".into(), Some(body), false),
            1 => (
                Method::PUT,
                format!("/api/v1/spaces/{id}"),
                Some(body),
                false,
            ),
            2 => (
                Method::PUT,
                format!("/api/v1/spaces/{id}/access-control"),
                Some(body),
                false,
            ),
            3 => (
                Method::PUT,
                format!("/api/v1/spaces/{id}/security"),
                Some(body),
                false,
            ),
            4 => (
                Method::POST,
                format!("/api/v1/spaces/{id}/api-keys"),
                Some(body),
                false,
            ),
            5 => (
                Method::POST,
                "/api/v1/upload-configs".into(),
                Some(body),
                false,
            ),
            6 => (
                Method::PUT,
                format!("/api/v1/upload-configs/{upc}"),
                Some(body),
                false,
            ),
            7 => (
                Method::POST,
                "/internal/space-keys/introspect".into(),
                Some(body),
                true,
            ),
            8 => (
                Method::GET,
                format!("/api/v1/spaces?cursor={q}&limit={q}"),
                None,
                false,
            ),
            9 => (
                Method::GET,
                format!("/api/v1/upload-configs?space_id={q}"),
                None,
                false,
            ),
            10 => (
                Method::GET,
                format!("/api/v1/spaces/{id}/api-keys?cursor={q}"),
                None,
                false,
            ),
            11 => (
                Method::DELETE,
                format!("/api/v1/spaces?id={q}"),
                None,
                false,
            ),
            12 => (
                Method::DELETE,
                format!(
                    "/api/v1/spaces/{space}/api-keys/{}",
                    if real_id { key_id.clone() } else { q.clone() }
                ),
                None,
                false,
            ),
            13 => (
                Method::GET,
                format!("/api/v1/upload-configs/all?cursor={q}&limit={q}"),
                None,
                false,
            ),
            14 => (Method::DELETE, "/api/v1/spaces".into(), Some(body), false),
            15 => (
                Method::PUT,
                format!("/api/v1/upload-configs/{upc}"),
                Some(json!({ "config": body })),
                false,
            ),
            16 => (
                Method::GET,
                format!("/api/v1/upload-configs/{upc}"),
                None,
                false,
            ),
            17 => (Method::POST, "/api/v1/folders".into(), Some(body), false),
            18 => (
                Method::PUT,
                format!("/api/v1/folders/{fld}"),
                Some(body),
                false,
            ),
            19 => (Method::PUT, "/api/v1/files".into(), Some(body), false),
            20 => (
                Method::POST,
                "/api/v1/upload/presign".into(),
                Some(body),
                false,
            ),
            21 => (
                Method::POST,
                "/api/v1/upload/generate-signed-url".into(),
                Some(body),
                false,
            ),
            22 => (Method::POST, "/api/v1/files/urls".into(), Some(body), false),
            23 => (
                Method::POST,
                format!("/api/v1/files/{fil}/signed-url"),
                Some(body),
                false,
            ),
            24 => (
                Method::GET,
                format!("/api/v1/files?space_id={id}&cursor={q}&limit={q}"),
                None,
                false,
            ),
            25 => (
                Method::PUT,
                format!("/api/v1/files/{fil}/access-control"),
                Some(body),
                false,
            ),
            26 => (
                Method::GET,
                format!("/api/v1/files/by-ref?space_id={id}&ref={q}"),
                None,
                false,
            ),
            _ => (
                Method::POST,
                format!("/api/v1/upload/confirm/{fil}"),
                Some(body),
                false,
            ),
        }
    })
}

fn no_input_yields_a_server_error(kind: DbKind) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let workspace = new_workspace();
    let me = member(&workspace);
    let (app, known) = runtime.block_on(async {
        let app = TestSpaces::start(kind).await;
        let space = app.create_space(&me, "Fuzzed").await;
        let space_id = space["id"].as_str().unwrap().to_owned();
        let key = app.mint_key(&me, &space_id, "k").await;
        let folder = app
            .post(
                &me,
                "/api/v1/folders",
                json!({"name": "fuzzed", "space_id": space_id}),
            )
            .await;
        assert_eq!(folder.status, 201, "{}", folder.json());
        let form = crate::helpers::Multipart::new()
            .text("space", space["handle"].as_str().unwrap())
            .file("file", "f.png", "image/png", &crate::helpers::png(4, 4));
        let file = app.upload(Some(&me), "/api/v1/upload", form).await;
        assert_eq!(file.status, 201, "{}", file.json());
        let known = Known {
            config: space["active_upload_config_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            key_id: key["id"].to_string(),
            folder: folder.json()["data"]["id"].as_str().unwrap().to_owned(),
            file: file.json()["data"]["id"].as_str().unwrap().to_owned(),
            space: space_id,
        };
        (app, known)
    });
    // Which statuses the probes met: the property means little unless they
    // reach past the parsers into the checks and the database.
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::<u16>::new());
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&probes(known), |(method, path, body, gateway)| {
            let who = if gateway {
                Identity::gateway()
            } else {
                me.clone()
            };
            let answer = runtime.block_on(app.call(&who, method.clone(), &path, body.clone()));
            prop_assert!(
                answer.status < 500,
                "{} {} {:?} → {}: {}",
                method,
                path,
                body,
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
            let body: Value = serde_json::from_slice(&answer.body)
                .map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
            if path.starts_with("/internal/") {
                prop_assert_eq!(body["success"].as_bool(), Some(answer.status < 400));
            } else if answer.status < 400 {
                prop_assert!(body.get("data").is_some(), "{}", body);
                prop_assert!(body.get("success").is_none(), "{}", body);
            } else {
                prop_assert!(body["message"].is_string(), "{}", body);
                prop_assert!(body.get("success").is_none(), "{}", body);
                if let Some(errors) = body.get("errors") {
                    prop_assert!(
                        errors.as_object().is_some_and(|e| e
                            .values()
                            .all(|m| m.as_array().is_some_and(|m| m.iter().all(Value::is_string)))),
                        "{}",
                        body
                    );
                }
            }
            seen.lock().unwrap().insert(answer.status);
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    for status in [200, 400, 404, 422] {
        assert!(
            seen.contains(&status),
            "no probe answered {status}: {seen:?}"
        );
    }
    runtime.block_on(async move { app.server.stop().await });
}

#[test]
fn no_request_yields_a_server_error_sqlite() {
    no_input_yields_a_server_error(DbKind::Sqlite);
}

#[test]
fn no_request_yields_a_server_error_postgres() {
    no_input_yields_a_server_error(DbKind::Postgres);
}
