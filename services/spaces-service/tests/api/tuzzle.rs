//! The Tuzzle documentation's examples, verbatim: the same paths and bodies
//! (byte for byte, but for the ids the examples leave to the reader), with an
//! `sk_` key as the credential as the gateway describes it after
//! introspection; and every answer parsed with Tuzzle's documented shapes:
//! `{data}`, cursor lists `{data, path, per_page, next_cursor, next_page_url,
//! prev_cursor, prev_page_url}`, errors `{message, errors?: {field: [..]}}`.
//!
//! The reference examples create spaces and mint keys with an `sk_` key: an
//! account key, which a workspace admin mints first. The space key minted in
//! the examples then shows what a space key may not do.

use crate::helpers::{TestSpaces, admin, new_workspace};
use identity::Identity;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use testkit::reqwest::Method;
use testkit::{DbKind, TestResponse, db_test};

/// `curl -X METHOD …/api/v1PATH [-H "Content-Type: application/json" -d 'BODY']`
async fn curl(
    app: &TestSpaces,
    who: &Identity,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> TestResponse {
    let mut request = app.request_as(who, method, &format!("/api/v1{path}"));
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_owned());
    }
    app.server.send(request).await
}

fn keys(body: &Value) -> BTreeSet<&str> {
    body.as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// A success: `{"data": …}` and nothing else; returns `data`.
fn data(response: &TestResponse) -> Value {
    assert!(
        (200..300).contains(&response.status),
        "{}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let body = response.json();
    assert_eq!(keys(&body), BTreeSet::from(["data"]), "{body}");
    body["data"].clone()
}

/// A page of a list, Laravel's cursor paginator: returns the whole body.
fn page(response: &TestResponse) -> Value {
    assert_eq!(response.status, 200, "{}", response.json());
    let body = response.json();
    assert_eq!(
        keys(&body),
        BTreeSet::from([
            "data",
            "path",
            "per_page",
            "next_cursor",
            "next_page_url",
            "prev_cursor",
            "prev_page_url",
        ]),
        "{body}"
    );
    assert!(body["data"].is_array(), "{body}");
    assert!(body["path"].is_string(), "{body}");
    assert!(body["per_page"].as_u64().is_some_and(|n| n > 0), "{body}");
    for cursor in [
        "next_cursor",
        "next_page_url",
        "prev_cursor",
        "prev_page_url",
    ] {
        assert!(
            body[cursor].is_null() || body[cursor].is_string(),
            "{cursor}: {body}"
        );
    }
    assert_eq!(
        body["next_cursor"].is_null(),
        body["next_page_url"].is_null(),
        "{body}"
    );
    body
}

/// An error: `{message}` or `{message, errors: {field: [sentences]}}`.
fn error(response: &TestResponse, status: u16) -> Value {
    assert_eq!(response.status, status, "{}", response.json());
    let body = response.json();
    assert!(body["message"].is_string(), "{body}");
    match body.get("errors") {
        None => assert_eq!(keys(&body), BTreeSet::from(["message"]), "{body}"),
        Some(errors) => {
            assert_eq!(keys(&body), BTreeSet::from(["errors", "message"]), "{body}");
            for (field, messages) in errors.as_object().unwrap() {
                let messages = messages.as_array().unwrap();
                assert!(!messages.is_empty(), "{field}");
                assert!(messages.iter().all(Value::is_string), "{field}");
            }
        }
    }
    body
}

/// Every field of the documented `example` is in `actual`, with the same
/// JSON type (a documented `null` matches anything, an actual `null` a
/// documented value of a nullable field): the answer parses as documented.
fn has_documented_fields(example: &Value, actual: &Value, at: &str) {
    match (example, actual) {
        (Value::Object(example), Value::Object(actual)) => {
            for (name, value) in example {
                let found = actual
                    .get(name)
                    .unwrap_or_else(|| panic!("{at}.{name} is missing from {actual:?}"));
                has_documented_fields(value, found, &format!("{at}.{name}"));
            }
        }
        (Value::Array(example), Value::Array(actual)) => {
            if let (Some(e), Some(a)) = (example.first(), actual.first()) {
                has_documented_fields(e, a, &format!("{at}[0]"));
            }
        }
        (Value::Null, _) | (_, Value::Null) => {}
        (e, a) => assert_eq!(
            std::mem::discriminant(e),
            std::mem::discriminant(a),
            "{at}: documented {e}, answered {a}"
        ),
    }
}

db_test!(the_tuzzle_examples_work_verbatim, tuzzle_flows);
async fn tuzzle_flows(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let workspace = new_workspace();
    let owner = admin(&workspace);

    // The workspace admin's account key: what the examples' `sk_` is.
    let home = app.create_space(&owner, "Home").await;
    let account = data(
        &curl(
            &app,
            &owner,
            Method::POST,
            &format!("/spaces/{}/api-keys", home["id"].as_str().unwrap()),
            Some(r#"{ "name": "deploy", "type": "account" }"#),
        )
        .await,
    );
    assert_eq!(account["type"], "account");
    let sk = app.as_key(&account).await;

    // POST /spaces
    let created = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/spaces",
            Some(r#"{ "name": "My App" }"#),
        )
        .await,
    );
    let space_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "My App");
    // The same name again: a validation error on `name`.
    let taken = error(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/spaces",
            Some(r#"{ "name": "My App" }"#),
        )
        .await,
        422,
    );
    assert_eq!(
        taken,
        json!({
            "message": "The name has already been taken.",
            "errors": {"name": ["The name has already been taken."]},
        })
    );

    // POST /spaces/:id/api-keys
    let key = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            &format!("/spaces/{space_id}/api-keys"),
            Some(r#"{ "name": "production" }"#),
        )
        .await,
    );
    has_documented_fields(
        &json!({"id": 1, "name": "production", "key": "sk_…", "type": "space",
                "space_id": "01HQ…", "is_active": true, "last_used_at": null, "expires_at": null}),
        &key,
        "key",
    );
    assert!(key["id"].is_i64(), "{key}");
    assert!(key["key"].as_str().unwrap().starts_with("sk_"));
    assert_eq!(key["type"], "space");
    assert_eq!(key["space_id"], space_id.as_str());
    assert_eq!(key["is_active"], true);
    assert!(key["last_used_at"].is_null());
    let production = app.as_key(&key).await;

    // GET /spaces: cursor-paginated, `next_cursor` at the top.
    let listed = page(&curl(&app, &production, Method::GET, "/spaces", None).await);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["id"], space_id.as_str());
    assert!(listed["next_cursor"].is_null());
    assert_eq!(listed["path"], "/api/v1/spaces");
    let everything = page(&curl(&app, &sk, Method::GET, "/spaces", None).await);
    assert_eq!(everything["data"].as_array().unwrap().len(), 2);

    // GET /spaces/:id
    let got = data(
        &curl(
            &app,
            &production,
            Method::GET,
            &format!("/spaces/{space_id}"),
            None,
        )
        .await,
    );
    assert_eq!(got["id"], space_id.as_str());
    assert_eq!(got["name"], "My App");
    let handle = got["handle"].as_str().unwrap();
    assert!(
        handle.len() == 6
            && handle
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_eq!(got["enabled"], true);
    assert_eq!(got["folder_mode"], "dynamic");
    assert_eq!(got["custom_domain"], Value::Null);
    assert_eq!(got["webhook_url"], Value::Null);
    assert!(got["access_control"].is_object());
    assert!(got["security"].is_object());
    assert!(got["active_upload_config_id"].is_string());

    // PUT /spaces/:id
    let updated = data(
        &curl(
            &app,
            &production,
            Method::PUT,
            &format!("/spaces/{space_id}"),
            Some(r#"{ "name": "Updated Name" }"#),
        )
        .await,
    );
    assert_eq!(updated["name"], "Updated Name");
    // The webhooks guide: `webhook_url` alone.
    let hooked = data(
        &curl(
            &app,
            &production,
            Method::PUT,
            &format!("/spaces/{space_id}"),
            Some(r#"{ "webhook_url": "https://your-app.com/webhooks/tuzzle" }"#),
        )
        .await,
    );
    assert_eq!(
        hooked["webhook_url"],
        "https://your-app.com/webhooks/tuzzle"
    );
    assert_eq!(hooked["name"], "Updated Name");

    // PUT and DELETE /spaces/:id/access-control
    let controlled = data(
        &curl(
            &app,
            &production,
            Method::PUT,
            &format!("/spaces/{space_id}/access-control"),
            Some(
                r#"{
    "access_control": {
      "requires_auth": true,
      "public_read": false
    }
  }"#,
            ),
        )
        .await,
    );
    assert_eq!(
        controlled["access_control"],
        json!({"requires_auth": true, "public_read": false})
    );
    let reset = data(
        &curl(
            &app,
            &production,
            Method::DELETE,
            &format!("/spaces/{space_id}/access-control"),
            None,
        )
        .await,
    );
    assert_eq!(
        reset["access_control"],
        json!({"requires_auth": false, "public_read": true})
    );

    // PUT and DELETE /spaces/:id/security
    let secured = data(
        &curl(
            &app,
            &production,
            Method::PUT,
            &format!("/spaces/{space_id}/security"),
            Some(
                r#"{
    "security": {
      "watermark": {
        "enabled": true,
        "url": "https://example.com/watermark.png",
        "position": "southeast",
        "opacity": 0.5
      }
    }
  }"#,
            ),
        )
        .await,
    );
    assert_eq!(
        secured["security"],
        json!({"watermark": {"enabled": true, "url": "https://example.com/watermark.png", "position": "southeast", "opacity": 0.5}})
    );
    let reset = data(
        &curl(
            &app,
            &production,
            Method::DELETE,
            &format!("/spaces/{space_id}/security"),
            None,
        )
        .await,
    );
    assert_eq!(reset["security"]["watermark"]["enabled"], false);

    // GET /spaces/:id/api-keys, DELETE /spaces/:id/api-keys/:keyId
    let second = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            &format!("/spaces/{space_id}/api-keys"),
            Some(r#"{ "name": "staging" }"#),
        )
        .await,
    );
    let keys_page = page(
        &curl(
            &app,
            &production,
            Method::GET,
            &format!("/spaces/{space_id}/api-keys"),
            None,
        )
        .await,
    );
    let names: Vec<_> = keys_page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert!(k["id"].is_i64(), "{k}");
            k["name"].clone()
        })
        .collect();
    assert_eq!(names, [json!("production"), json!("staging")]);
    let revoked = data(
        &curl(
            &app,
            &production,
            Method::DELETE,
            &format!("/spaces/{space_id}/api-keys/{}", second["id"]),
            None,
        )
        .await,
    );
    assert!(revoked.is_null());
    assert_eq!(
        app.introspect(second["key"].as_str().unwrap()).await["active"],
        false
    );

    // Upload configs: the guide's POST /upload-configs, byte for byte.
    let config_body = r#"{
    "name": "product-images",
    "description": "Config for product catalog images",
    "space_id": "SPACE_ID",
    "delivery_type": "upload",
    "config": {
      "validation": {
        "allowed_formats": "jpg,png,webp",
        "max_file_size": 10485760
      },
      "transformations": {
        "upload_quality": "auto",
        "upload_format": "original"
      }
    }
  }"#
    .replace("SPACE_ID", &space_id);
    let config = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/upload-configs",
            Some(&config_body),
        )
        .await,
    );
    let config_id = config["id"].as_str().unwrap().to_owned();
    // GET /upload-configs/:id answers the reference's documented response.
    let documented = json!({
        "id": "01HQ...",
        "name": "product-images",
        "description": "Config for product catalog images",
        "space_id": "01HQ...",
        "is_signed": false,
        "allow_unsigned": false,
        "delivery_type": "upload",
        "config": {
            "storage": {"folder": "products", "generate_filename": true, "unique_filename": true},
            "validation": {
                "allowed_formats": "jpg,png,webp",
                "max_file_size": 10485760,
                "min_image_width": null,
                "min_image_height": null,
                "max_image_width": 4000,
                "max_image_height": 4000
            },
            "transformations": {
                "upload_quality": "auto",
                "upload_format": "original",
                "progressive": true,
                "strip_metadata": false,
                "eager": []
            },
            "metadata": {"tags": [], "auto_tagging": false},
            "notifications": {"webhook_url": null}
        }
    });
    let read = data(
        &curl(
            &app,
            &production,
            Method::GET,
            &format!("/upload-configs/{config_id}"),
            None,
        )
        .await,
    );
    has_documented_fields(&documented, &read, "config");
    assert_eq!(read, config);
    assert_eq!(read["name"], "product-images");
    assert_eq!(read["description"], "Config for product catalog images");
    assert_eq!(read["is_signed"], false);
    assert_eq!(read["allow_unsigned"], false);
    assert_eq!(
        read["config"]["validation"]["allowed_formats"],
        "jpg,png,webp"
    );
    assert_eq!(read["config"]["validation"]["max_file_size"], 10485760);
    assert_eq!(read["config"]["transformations"]["upload_quality"], "auto");
    // The reference's example, with eager transformations.
    let avatars = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/upload-configs",
            Some(
                &r#"{
    "name": "avatars",
    "space_id": "SPACE_ID",
    "delivery_type": "upload",
    "config": {
      "validation": {
        "allowed_formats": "jpg,png,webp",
        "max_file_size": 5242880
      },
      "transformations": {
        "eager": [
          { "width": 64, "height": 64, "crop": "thumb" }
        ]
      }
    }
  }"#
                .replace("SPACE_ID", &space_id),
            ),
        )
        .await,
    );
    assert_eq!(
        avatars["config"]["transformations"]["eager"],
        json!([{"width": 64, "height": 64, "crop": "thumb"}])
    );
    // The unsigned-upload guide's settings.
    let unsigned = data(
        &curl(
            &app,
            &sk,
            Method::PUT,
            &format!("/upload-configs/{}", avatars["id"].as_str().unwrap()),
            Some(
                r#"{
  "allow_unsigned": true,
  "unsigned_restrictions": {
    "allowed_referrers": ["example.com", "*.example.com"],
    "require_https": true,
    "max_uploads_per_hour": 100
  }
}"#,
            ),
        )
        .await,
    );
    assert_eq!(unsigned["allow_unsigned"], true);
    assert_eq!(
        unsigned["unsigned_restrictions"]["allowed_referrers"],
        json!(["example.com", "*.example.com"])
    );
    // Lists leave `config` out; `/all` spans every space.
    for path in ["/upload-configs", "/upload-configs/all"] {
        let listed = page(&curl(&app, &sk, Method::GET, path, None).await);
        let items = listed["data"].as_array().unwrap();
        assert_eq!(
            items.len(),
            4,
            "{path}: two starters and two of the examples"
        );
        for item in items {
            assert!(item.get("config").is_none(), "{item}");
            has_documented_fields(
                &json!({"id": "", "name": "", "space_id": "", "is_signed": false,
                        "allow_unsigned": false, "delivery_type": "upload"}),
                item,
                path,
            );
        }
    }

    // Errors, as documented.
    let invalid = error(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/upload-configs",
            Some(r#"{ "description": "x" }"#),
        )
        .await,
        422,
    );
    assert_eq!(invalid["message"], "The given data was invalid.");
    assert_eq!(
        invalid["errors"]["name"],
        json!(["The name field is required."])
    );
    assert_eq!(
        invalid["errors"]["space_id"],
        json!(["The space id field is required."])
    );
    let required = error(
        &curl(&app, &sk, Method::POST, "/spaces", Some("{}")).await,
        422,
    );
    assert_eq!(
        required,
        json!({"message": "The name field is required.", "errors": {"name": ["The name field is required."]}})
    );
    let bad_limit = error(
        &curl(&app, &sk, Method::GET, "/spaces?limit=1000", None).await,
        422,
    );
    assert!(bad_limit["errors"]["limit"].is_array(), "{bad_limit}");
    assert_eq!(
        error(
            &curl(&app, &Identity::anonymous(), Method::GET, "/spaces", None).await,
            401
        ),
        json!({"message": "Unauthenticated."})
    );
    // What a space key may not do: create spaces, mint keys.
    assert_eq!(
        error(
            &curl(
                &app,
                &production,
                Method::POST,
                "/spaces",
                Some(r#"{ "name": "My App" }"#)
            )
            .await,
            403
        ),
        json!({"message": "Forbidden."})
    );
    error(
        &curl(
            &app,
            &production,
            Method::POST,
            &format!("/spaces/{space_id}/api-keys"),
            Some(r#"{ "name": "production" }"#),
        )
        .await,
        403,
    );
    error(
        &curl(
            &app,
            &production,
            Method::GET,
            &format!("/spaces/{}", home["id"].as_str().unwrap()),
            None,
        )
        .await,
        404,
    );

    // The SDK's delete: `DELETE /spaces` with `{ id }` in the body.
    let deleted = data(
        &curl(
            &app,
            &sk,
            Method::DELETE,
            "/spaces",
            Some(&json!({ "id": space_id }).to_string()),
        )
        .await,
    );
    assert!(deleted.is_null());
    assert_eq!(
        app.introspect(key["key"].as_str().unwrap()).await,
        json!({"active": false})
    );
    error(
        &curl(&app, &sk, Method::GET, &format!("/spaces/{space_id}"), None).await,
        404,
    );
    // DELETE /spaces?id=SPACE_ID
    let other = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/spaces",
            Some(r#"{ "name": "Other" }"#),
        )
        .await,
    );
    data(
        &curl(
            &app,
            &sk,
            Method::DELETE,
            &format!("/spaces?id={}", other["id"].as_str().unwrap()),
            None,
        )
        .await,
    );
}

db_test!(a_tuzzle_client_pages_through_every_space, pagination_walk);
async fn pagination_walk(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let owner = admin(&new_workspace());
    app.create_space(&admin(&new_workspace()), "Someone else's")
        .await;
    let mut created = BTreeSet::new();
    for i in 0..5 {
        let space = app.create_space(&owner, &format!("Space {i}")).await;
        created.insert(space["id"].as_str().unwrap().to_owned());
    }
    // `while (res.next_cursor)`, as a Tuzzle client pages.
    let mut seen: Vec<String> = Vec::new();
    let mut pages = 0;
    let mut res = page(&curl(&app, &owner, Method::GET, "/spaces?limit=2", None).await);
    loop {
        pages += 1;
        assert_eq!(res["per_page"], 2);
        let items = res["data"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        let Some(cursor) = res["next_cursor"].as_str() else {
            break;
        };
        let path = format!("/spaces?limit=2&cursor={cursor}");
        res = page(&curl(&app, &owner, Method::GET, &path, None).await);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(
        seen.iter().cloned().collect::<BTreeSet<_>>(),
        created,
        "every space exactly once"
    );
    // Following `next_page_url` instead walks the same pages.
    let mut by_url: Vec<String> = Vec::new();
    let mut url = Some("/spaces?limit=2".to_owned());
    while let Some(path) = url {
        let res = page(&curl(&app, &owner, Method::GET, &path, None).await);
        by_url.extend(
            res["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned()),
        );
        url = res["next_page_url"]
            .as_str()
            .map(|u| u.strip_prefix("/api/v1").unwrap().to_owned());
    }
    assert_eq!(by_url, seen);
}

/// `curl -X POST …/api/v1PATH -F …`: a multipart form as curl sends it
/// (`-F "file=@photo.jpg"` names the part's file and guesses its type).
async fn curl_form(
    app: &TestSpaces,
    who: &Identity,
    path: &str,
    form: crate::helpers::Multipart,
) -> TestResponse {
    app.upload(Some(who), &format!("/api/v1{path}"), form).await
}

db_test!(the_tuzzle_upload_examples_work_verbatim, tuzzle_content);
async fn tuzzle_content(kind: DbKind) {
    use crate::helpers::{Multipart, jpeg, sha256};
    let app = TestSpaces::start(kind).await;
    let workspace = new_workspace();
    let owner = admin(&workspace);
    let home = app.create_space(&owner, "Home").await;
    let space_id = home["id"].as_str().unwrap().to_owned();
    let a1b2c3 = home["handle"].as_str().unwrap().to_owned();
    let key = app.mint_key(&owner, &space_id, "uploads").await;
    let sk = app.as_key(&key).await;
    let photo = jpeg(32, 24);
    let file = |name: &str| ("file", name.to_owned());

    // Direct upload: `-F "file=@photo.jpg" -F "space=a1b2c3"`.
    let (field, name) = file("photo.jpg");
    let uploaded = data(
        &curl_form(
            &app,
            &sk,
            "/upload",
            Multipart::new()
                .file(field, &name, "image/jpeg", &photo)
                .text("space", &a1b2c3),
        )
        .await,
    );
    has_documented_fields(
        &json!({"id": "01HQ...", "name": "image-01HQ...", "original_name": "photo.jpg",
                "mime_type": "image/jpeg", "size": 245000, "storage_path": "a1b2c3/image-01HQ...",
                "type": "upload", "resource_type": "image", "status": "active", "extension": "jpg"}),
        &uploaded,
        "data",
    );
    assert_eq!(uploaded["hash"], sha256(&photo));
    let file_id = uploaded["id"].as_str().unwrap().to_owned();

    // Multiple files: `-F "files[]=@photo1.jpg" -F "files[]=@photo2.jpg" -F "space=a1b2c3"`.
    let many = data(
        &curl_form(
            &app,
            &sk,
            "/upload",
            Multipart::new()
                .file("files[]", "photo1.jpg", "image/jpeg", &photo)
                .file("files[]", "photo2.jpg", "image/jpeg", &jpeg(8, 8))
                .text("space", &a1b2c3),
        )
        .await,
    );
    assert_eq!(many.as_array().map(Vec::len), Some(2), "{many}");

    // Folders: `{"name": "photos", "space_id": "01HQ..."}`, then a child.
    let photos = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/folders",
            Some(&format!(
                "{{\n    \"name\": \"photos\",\n    \"space_id\": \"{space_id}\"\n  }}"
            )),
        )
        .await,
    );
    let photos_id = photos["id"].as_str().unwrap().to_owned();
    let vacation = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/folders",
            Some(&format!(
                "{{\n    \"name\": \"vacation\",\n    \"space_id\": \"{space_id}\",\n    \"parent_id\": \"{photos_id}\"\n  }}"
            )),
        )
        .await,
    );
    has_documented_fields(
        &json!({"id": "01HQ...", "name": "photos", "path": "photos/", "space_id": "01HQ...",
                "parent_id": null, "has_children": true, "access_control": {}, "security": {}}),
        &photos,
        "folder",
    );
    assert_eq!(vacation["path"], "photos/vacation/");
    let vacation_id = vacation["id"].as_str().unwrap().to_owned();
    let listed = page(
        &curl(
            &app,
            &sk,
            Method::GET,
            &format!("/folders?space_id={space_id}"),
            None,
        )
        .await,
    );
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert_eq!(listed["data"][0]["has_children"], true);

    // Upload to a folder: `-F "folder_id=01HQ..." -F "folder_path=photos/vacation/"`.
    let (field, name) = file("photo.jpg");
    let in_folder = data(
        &curl_form(
            &app,
            &sk,
            "/upload",
            Multipart::new()
                .file(field, &name, "image/jpeg", &photo)
                .text("space", &a1b2c3)
                .text("folder_id", &vacation_id)
                .text("folder_path", "photos/vacation/"),
        )
        .await,
    );
    assert_eq!(in_folder["folder_path"], "photos/vacation/");

    // GET /files/:id, with storage_meta.
    let got = data(&curl(&app, &sk, Method::GET, &format!("/files/{file_id}"), None).await);
    has_documented_fields(
        &json!({"id": "01HQ...", "name": "image-01HQ...", "original_name": "photo.jpg",
                "mime_type": "image/jpeg", "size": 245000, "storage_path": "a1b2c3/image-01HQ...",
                "type": "upload", "resource_type": "image", "status": "active", "extension": "jpg",
                "public_id": null, "ref": null, "folder_path": null,
                "storage_meta": {"width": 1920, "height": 1080, "blur_hash": "LEHV6nWB2yk8...",
                                 "face_detections": []}}),
        &got,
        "data",
    );
    assert_eq!(got["storage_meta"]["width"], 32);
    // GET /files?space_id=SPACE_ID&limit=20
    let files = page(
        &curl(
            &app,
            &sk,
            Method::GET,
            &format!("/files?space_id={space_id}&limit=20"),
            None,
        )
        .await,
    );
    assert_eq!(files["data"].as_array().unwrap().len(), 4);
    assert_eq!(files["per_page"], 20);
    // PUT /files (the management guide's example).
    let renamed = data(
        &curl(
            &app,
            &sk,
            Method::PUT,
            "/files",
            Some(&format!(
                "{{\n    \"id\": \"{file_id}\",\n    \"name\": \"new-name\",\n    \"original_name\": \"renamed-photo.jpg\",\n    \"folder_id\": \"{photos_id}\",\n    \"folder_path\": \"photos/\"\n  }}"
            )),
        )
        .await,
    );
    assert_eq!(renamed["name"], "new-name");
    assert_eq!(renamed["original_name"], "renamed-photo.jpg");
    assert_eq!(renamed["folder_path"], "photos/");
    assert_eq!(renamed["storage_path"], format!("{a1b2c3}/new-name"));
    // POST /files/FILE_ID/signed-url, no body.
    let signed = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            &format!("/files/{file_id}/signed-url"),
            None,
        )
        .await,
    );
    let url = signed["url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/{a1b2c3}/new-name?expires=")),
        "{url}"
    );
    assert!(url.contains("&signature="), "{url}");

    // Folder management: rename, access control, delete when empty.
    let folder_path = format!("/folders/{vacation_id}");
    let renamed = data(
        &curl(
            &app,
            &sk,
            Method::PUT,
            &folder_path,
            Some(r#"{ "name": "new-name" }"#),
        )
        .await,
    );
    assert_eq!(renamed["path"], "photos/new-name/");
    let controlled = data(
        &curl(
            &app,
            &sk,
            Method::PUT,
            &format!("{folder_path}/access-control"),
            Some(
                r#"{
    "access_control": {
      "requires_auth": true
    }
  }"#,
            ),
        )
        .await,
    );
    assert_eq!(controlled["access_control"]["requires_auth"], true);
    data(
        &curl(
            &app,
            &sk,
            Method::DELETE,
            &format!("{folder_path}/access-control"),
            None,
        )
        .await,
    );
    error(
        &curl(&app, &sk, Method::DELETE, &folder_path, None).await,
        409,
    );

    // Signed upload: generate-signed-url, then the multipart form.
    let config = home["active_upload_config_id"].as_str().unwrap();
    let signed = data(
        &curl(
            &app,
            &sk,
            Method::POST,
            "/upload/generate-signed-url",
            Some(&format!(
                "{{\n    \"upload_config_id\": \"{config}\",\n    \"expiration_minutes\": 30,\n    \"filename\": \"photo.jpg\",\n    \"content_type\": \"image/jpeg\"\n  }}"
            )),
        )
        .await,
    );
    let url = url::Url::parse(signed["url"].as_str().unwrap()).unwrap();
    let signed_path = format!("{}?{}", url.path(), url.query().unwrap());
    let (field, name) = file("photo.jpg");
    let via_url = app
        .upload(
            None,
            &signed_path,
            Multipart::new()
                .file(field, &name, "image/jpeg", &photo)
                .text("upload_config_id", config)
                .text("space_id", &space_id),
        )
        .await;
    assert_eq!(data(&via_url)["original_name"], "photo.jpg");

    // Presign: the documented request, answered without `data`.
    let answer = curl(
        &app,
        &owner,
        Method::PUT,
        &format!("/upload-configs/{config}"),
        Some(
            r#"{"config": {"validation": {"allowed_formats": "mp4", "max_file_size": 209715200}}}"#,
        ),
    )
    .await;
    data(&answer);
    let presigned = curl(
        &app,
        &sk,
        Method::POST,
        "/upload/presign",
        Some(&format!(
            "{{\n    \"space\": \"{a1b2c3}\",\n    \"filename\": \"large-video.mp4\",\n    \"content_type\": \"video/mp4\",\n    \"size\": 104857600\n  }}"
        )),
    )
    .await;
    assert_eq!(presigned.status, 201, "{}", presigned.json());
    let presigned = presigned.json();
    has_documented_fields(
        &json!({"file_id": "01HQ...", "upload_url": "https://...r2.cloudflarestorage.com/...",
                "object_key": "a1b2c3/video-01HQ...", "expires_in": 3600}),
        &presigned,
        "presign",
    );
    assert_eq!(keys(&presigned).len(), 4, "{presigned}");
    let pending = data(
        &curl(
            &app,
            &sk,
            Method::GET,
            &format!("/files/{}", presigned["file_id"].as_str().unwrap()),
            None,
        )
        .await,
    );
    assert_eq!(pending["status"], "pending");
    assert_eq!(
        pending["name"].as_str().unwrap().split('-').next(),
        Some("video")
    );
}
