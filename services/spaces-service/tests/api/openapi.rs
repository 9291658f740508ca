//! The OpenAPI document (`proto-docs/spaces-service.openapi.json`): committed
//! as generated, complete, and true to what the service answers (the checks are
//! `testkit::openapi`'s).
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p spaces-service --test api openapi`
//! rewrites the committed file.

use crate::helpers::{TestSpaces, admin, member, new_workspace};
use identity::Identity;
use serde_json::json;
use testkit::DbKind;
use testkit::openapi::{Document, assert_response};

fn document() -> Document {
    Document::new(
        spaces_service::openapi::document()
            .to_pretty_json()
            .expect("the document serializes"),
        "proto-docs/spaces-service.openapi.json",
        "spaces-service",
    )
}

#[test]
fn committed_document_is_current() {
    document().assert_committed_is_current();
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    document().assert_documents_exactly(spaces_service::ROUTES);
}

#[test]
fn every_reference_resolves() {
    document().assert_references_resolve();
}

#[test]
fn operations_are_named_tagged_and_answer_errors() {
    let doc = document();
    doc.assert_operations_are_named_tagged_and_answer_errors();
    assert_eq!(
        doc.json["paths"]["/internal/space-keys/introspect"]["post"]["x-internal"],
        true
    );
}

#[test]
fn shared_schemas_follow_the_code() {
    let doc = document();
    doc.assert_envelopes_follow_the_code(
        "ListEnvelope_Vec_SpaceView",
        service_kit::envelope::Meta::Cursor {
            limit: 20,
            next_cursor: None,
            has_more: false,
        },
    );
    doc.assert_paging_bounds("get", "/api/v1/spaces");
}

#[test]
fn the_checker_notices_differences() {
    document().assert_checker_notices_differences();
}

#[tokio::test]
async fn answers_fit_the_document() {
    let doc = document().json;
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
    let sk = app.as_key(&key).await;
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
    let account = app
        .post(
            &admin(&workspace),
            &keys,
            json!({"name": "account", "type": "account"}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/spaces/{id}/api-keys", &account);
    let invalid_key = app
        .post(&me, &keys, json!({"name": "x", "type": "x"}))
        .await;
    assert_response(&doc, "post", "/api/v1/spaces/{id}/api-keys", &invalid_key);
    let key_path = format!("{keys}/{}", key["id"]);
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
    for path in [
        "/api/v1/upload-configs/all?limit=1",
        "/api/v1/upload-configs/all?limit=0",
    ] {
        assert_response(
            &doc,
            "get",
            "/api/v1/upload-configs/all",
            &app.get(&me, path).await,
        );
    }
    let full = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({"space_id": id, "name": "full", "description": "All of it", "is_signed": true,
                   "allow_unsigned": true, "delivery_type": "authenticated",
                   "config": {"storage": {"folder": "a/b"},
                              "validation": {"allowed_formats": "jpg", "min_image_width": 10, "max_image_width": 20},
                              "transformations": {"upload_quality": 75, "eager": [{"width": 5, "height": 5, "crop": "fill"}]},
                              "metadata": {"tags": ["t"], "auto_tagging": true},
                              "notifications": {"webhook_url": "https://h.example.com/u"}},
                   "unsigned_restrictions": {"allowed_referrers": ["*.example.com"], "require_https": true, "max_uploads_per_hour": 5}}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/upload-configs", &full);
    let refused = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({"space_id": id, "name": "full"}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/upload-configs", &refused);
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
    let partial = app
        .put(&me, &space_path, json!({"webhook_url": null}))
        .await;
    assert_response(&doc, "put", "/api/v1/spaces/{id}", &partial);
    let second = app.create_space(&me, "By body").await;
    let by_body = app
        .call(
            &me,
            testkit::reqwest::Method::DELETE,
            "/api/v1/spaces",
            Some(json!({"id": second["id"]})),
        )
        .await;
    assert_response(&doc, "delete", "/api/v1/spaces", &by_body);
    let gone = app.delete(&me, &format!("/api/v1/spaces?id={id}")).await;
    assert_response(&doc, "delete", "/api/v1/spaces", &gone);
    assert_response(
        &doc,
        "delete",
        "/api/v1/spaces/{id}",
        &app.delete(&me, &space_path).await,
    );
}

#[tokio::test]
async fn content_answers_fit_the_document() {
    use crate::helpers::{Multipart, mp4, png};
    let doc = document().json;
    let app = TestSpaces::start(DbKind::Sqlite).await;
    let me = member(&new_workspace());
    let stranger = member(&new_workspace());
    let space = app.create_space(&me, "Documented content").await;
    let (id, handle) = (
        space["id"].as_str().unwrap().to_owned(),
        space["handle"].as_str().unwrap().to_owned(),
    );
    let config = space["active_upload_config_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let check = |method: &str, path: &str, answer: &testkit::TestResponse| {
        assert_response(&doc, method, path, answer)
    };

    // Uploads and their refusals.
    let form = || Multipart::new().text("space", &handle);
    let one = app
        .upload(
            Some(&me),
            "/api/v1/upload",
            form()
                .text("ref", "doc-1")
                .file("file", "a.png", "image/png", &png(6, 6)),
        )
        .await;
    check("post", "/api/v1/upload", &one);
    let file = one.json()["data"]["id"].as_str().unwrap().to_owned();
    for refused in [
        form()
            .file("files[]", "b.png", "image/png", &png(5, 5))
            .file("files[]", "c.png", "image/png", &png(5, 5)),
        form().file("file", "shell.php.png", "image/png", &png(5, 5)),
        form().file("file", "x.jpg", "image/jpeg", &png(5, 5)),
        form().file("file", "../x.png", "image/png", &png(5, 5)),
        form().file("file", "big.png", "image/png", &vec![0u8; 11 * 1024 * 1024]),
        Multipart::new().file("file", "a.png", "image/png", &png(5, 5)),
    ] {
        check(
            "post",
            "/api/v1/upload",
            &app.upload(Some(&me), "/api/v1/upload", refused).await,
        );
    }
    check(
        "post",
        "/api/v1/upload",
        &app.upload(Some(&stranger), "/api/v1/upload", form()).await,
    );

    // Signed and unsigned uploads.
    let signed = app
        .post(
            &me,
            "/api/v1/upload/generate-signed-url",
            json!({"upload_config_id": config}),
        )
        .await;
    check("post", "/api/v1/upload/generate-signed-url", &signed);
    let url = url::Url::parse(signed.json()["data"]["url"].as_str().unwrap()).unwrap();
    let signed_path = format!("{}?{}", url.path(), url.query().unwrap());
    let uploaded = app
        .upload(
            None,
            &signed_path,
            Multipart::new().file("file", "s.png", "image/png", &png(4, 4)),
        )
        .await;
    check("post", "/api/v1/upload/signed", &uploaded);
    let tampered = app
        .upload(
            None,
            &signed_path.replace("expires=", "expires=9"),
            Multipart::new().file("file", "s.png", "image/png", &png(4, 4)),
        )
        .await;
    check("post", "/api/v1/upload/signed", &tampered);
    check(
        "post",
        "/api/v1/upload/generate-signed-url",
        &app.post(&me, "/api/v1/upload/generate-signed-url", json!({}))
            .await,
    );
    let unsigned = app
        .upload(
            None,
            &format!("/api/v1/upload/unsigned/{handle}/starter"),
            Multipart::new().file("file", "u.png", "image/png", &png(4, 4)),
        )
        .await;
    check(
        "post",
        "/api/v1/upload/unsigned/{spaceHandle}/{configName}",
        &unsigned,
    );

    // Presign, PUT, confirm.
    let changed = app
        .put(
            &me,
            &format!("/api/v1/upload-configs/{config}"),
            json!({"config": {"validation": {"allowed_formats": "mp4,png"}}}),
        )
        .await;
    assert_eq!(changed.status, 200);
    let bytes = mp4(1000);
    let presigned = app
        .post(
            &me,
            "/api/v1/upload/presign",
            json!({"space": handle, "filename": "v.mp4", "content_type": "video/mp4", "size": bytes.len()}),
        )
        .await;
    check("post", "/api/v1/upload/presign", &presigned);
    let pending = presigned.json()["file_id"].as_str().unwrap().to_owned();
    let confirm = format!("/api/v1/upload/confirm/{pending}");
    check(
        "post",
        "/api/v1/upload/confirm/{fileId}",
        &app.post(&me, &confirm, json!({})).await,
    );
    let put_url = url::Url::parse(presigned.json()["upload_url"].as_str().unwrap()).unwrap();
    let put = app
        .server
        .send(
            app.request_as(
                &Identity::anonymous(),
                testkit::reqwest::Method::PUT,
                &format!("{}?{}", put_url.path(), put_url.query().unwrap()),
            )
            .body(bytes),
        )
        .await;
    check("put", "/api/v1/upload/objects/{fileId}", &put);
    check(
        "post",
        "/api/v1/upload/confirm/{fileId}",
        &app.post(&me, &confirm, json!({})).await,
    );
    check(
        "post",
        "/api/v1/upload/presign",
        &app.post(&me, "/api/v1/upload/presign", json!({"space": handle}))
            .await,
    );

    // Files.
    let path = format!("/api/v1/files/{file}");
    check("get", "/api/v1/files/{id}", &app.get(&me, &path).await);
    check(
        "get",
        "/api/v1/files/{id}",
        &app.get(&stranger, &path).await,
    );
    check(
        "get",
        "/api/v1/files",
        &app.get(&me, &format!("/api/v1/files?space_id={id}&limit=1"))
            .await,
    );
    check("get", "/api/v1/files", &app.get(&me, "/api/v1/files").await);
    check(
        "get",
        "/api/v1/files/by-ref",
        &app.get(
            &me,
            &format!("/api/v1/files/by-ref?space_id={id}&ref=doc-1"),
        )
        .await,
    );
    check(
        "put",
        "/api/v1/files",
        &app.put(
            &me,
            "/api/v1/files",
            json!({"id": file, "original_name": "b.png"}),
        )
        .await,
    );
    check(
        "put",
        "/api/v1/files",
        &app.put(&me, "/api/v1/files", json!({"id": file, "size": 1}))
            .await,
    );
    check(
        "post",
        "/api/v1/files/{id}/signed-url",
        &app.post(
            &me,
            &format!("{path}/signed-url"),
            json!({"expires_in": 60}),
        )
        .await,
    );
    check(
        "post",
        "/api/v1/files/urls",
        &app.post(&me, "/api/v1/files/urls", json!({"file_ids": [file]}))
            .await,
    );
    let acl = format!("{path}/access-control");
    check(
        "put",
        "/api/v1/files/{id}/access-control",
        &app.put(&me, &acl, json!({"access_control": {"public_read": false}}))
            .await,
    );
    check(
        "delete",
        "/api/v1/files/{id}/access-control",
        &app.delete(&me, &acl).await,
    );

    // Folders.
    let created = app
        .post(
            &me,
            "/api/v1/folders",
            json!({"name": "docs", "space_id": id}),
        )
        .await;
    check("post", "/api/v1/folders", &created);
    check(
        "post",
        "/api/v1/folders",
        &app.post(
            &me,
            "/api/v1/folders",
            json!({"name": "docs", "space_id": id}),
        )
        .await,
    );
    let folder = format!(
        "/api/v1/folders/{}",
        created.json()["data"]["id"].as_str().unwrap()
    );
    check(
        "get",
        "/api/v1/folders",
        &app.get(&me, &format!("/api/v1/folders?space_id={id}"))
            .await,
    );
    check("get", "/api/v1/folders/{id}", &app.get(&me, &folder).await);
    check(
        "put",
        "/api/v1/folders/{id}",
        &app.put(&me, &folder, json!({"name": "papers"})).await,
    );
    let moved = app
        .put(
            &me,
            "/api/v1/files",
            json!({"id": file, "folder_path": "papers/"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.json());
    check(
        "delete",
        "/api/v1/folders/{id}",
        &app.delete(&me, &folder).await,
    );
    check(
        "put",
        "/api/v1/folders/{id}/access-control",
        &app.put(
            &me,
            &format!("{folder}/access-control"),
            json!({"access_control": {"requires_auth": true}}),
        )
        .await,
    );
    check(
        "delete",
        "/api/v1/folders/{id}/access-control",
        &app.delete(&me, &format!("{folder}/access-control")).await,
    );
    check(
        "delete",
        "/api/v1/files/{id}",
        &app.delete(&me, &path).await,
    );
    check(
        "delete",
        "/api/v1/folders/{id}",
        &app.delete(&me, &folder).await,
    );
}
