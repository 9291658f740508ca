//! Spaces: creation with a handle and a `starter` config, reading, listing by
//! cursor, updating, deleting; the uniqueness rules.

use crate::helpers::{TestSpaces, fields, member, new_workspace, sorted};
use serde_json::json;
use testkit::{CacheKind, DbKind, db_test};

db_test!(spaces_are_created_read_updated_and_deleted, lifecycle);
async fn lifecycle(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let created = app
        .post(
            &me,
            "/api/v1/spaces",
            json!({"name": "  My App ", "description": "Photos"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let space = created.json()["data"].clone();
    let id = space["id"].as_str().unwrap().to_owned();
    assert!(service_kit::ids::is_valid("spc", &id));
    assert_eq!(space["name"], "My App");
    assert_eq!(space["description"], "Photos");
    assert!(spaces_service::handles::is_handle(
        space["handle"].as_str().unwrap()
    ));
    assert_eq!(space["enabled"], true);
    assert_eq!(space["folder_mode"], "dynamic");
    assert_eq!(space["custom_domain"], serde_json::Value::Null);
    assert_eq!(space["webhook_url"], serde_json::Value::Null);
    assert_eq!(
        space["access_control"],
        json!({"requires_auth": false, "public_read": true})
    );
    assert_eq!(space["security"]["watermark"]["enabled"], false);
    assert!(space["created_at"].as_str().unwrap().ends_with('Z'));

    // The starter config exists and is active.
    let config_id = space["active_upload_config_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = app
        .get(&me, &format!("/api/v1/upload-configs/{config_id}"))
        .await;
    assert_eq!(config.status, 200, "{}", config.json());
    assert_eq!(config.json()["data"]["name"], "starter");
    assert_eq!(config.json()["data"]["is_active"], true);
    assert_eq!(config.json()["data"]["space_id"], id.as_str());

    let read = app.get(&me, &format!("/api/v1/spaces/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["data"], space);

    let updated = app
        .put(
            &me,
            &format!("/api/v1/spaces/{id}"),
            json!({
                "name": "Updated Name",
                "enabled": false,
                "folder_mode": "fixed",
                "custom_domain": "Media.Example.com",
                "webhook_url": "https://hooks.example.com/spaces?src=1",
            }),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.json());
    let data = updated.json()["data"].clone();
    assert_eq!(data["name"], "Updated Name");
    assert_eq!(data["description"], "Photos", "absent fields are kept");
    assert_eq!(data["enabled"], false);
    assert_eq!(data["folder_mode"], "fixed");
    assert_eq!(data["custom_domain"], "media.example.com");
    assert_eq!(
        data["webhook_url"],
        "https://hooks.example.com/spaces?src=1"
    );
    assert_eq!(data["handle"], space["handle"]);
    assert_eq!(data["created_at"], space["created_at"]);

    // Partial bodies: what is named changes, the rest stays.
    let partial = app
        .put(
            &me,
            &format!("/api/v1/spaces/{id}"),
            json!({"webhook_url": "https://hooks.example.com/other"}),
        )
        .await;
    assert_eq!(partial.status, 200, "{}", partial.json());
    let after = partial.json()["data"].clone();
    assert_eq!(after["webhook_url"], "https://hooks.example.com/other");
    for kept in [
        "name",
        "description",
        "enabled",
        "folder_mode",
        "custom_domain",
    ] {
        assert_eq!(after[kept], data[kept], "{kept}");
    }
    let untouched = app
        .put(&me, &format!("/api/v1/spaces/{id}"), json!({}))
        .await;
    assert_eq!(untouched.status, 200, "{}", untouched.json());
    assert_eq!(untouched.json()["data"]["name"], "Updated Name");

    let cleared = app
        .put(
            &me,
            &format!("/api/v1/spaces/{id}"),
            json!({"description": null, "custom_domain": null, "webhook_url": null}),
        )
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.json());
    for field in ["description", "custom_domain", "webhook_url"] {
        assert!(cleared.json()["data"][field].is_null(), "{field}");
    }
    assert_eq!(cleared.json()["data"]["name"], "Updated Name");

    // Every form of deletion: by path, by query, by body.
    let other = app.create_space(&me, "Other").await;
    let third = app.create_space(&me, "Third").await;
    let deleted = app.delete(&me, &format!("/api/v1/spaces?id={id}")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.json());
    assert_eq!(deleted.json(), json!({"data": null}));
    app.get(&me, &format!("/api/v1/spaces/{id}"))
        .await
        .assert_error(404, "not_found");
    app.get(&me, &format!("/api/v1/upload-configs/{config_id}"))
        .await
        .assert_error(404, "not_found");
    let other_id = other["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&me, &format!("/api/v1/spaces/{other_id}"))
            .await
            .status,
        200
    );
    app.delete(&me, &format!("/api/v1/spaces/{other_id}"))
        .await
        .assert_error(404, "not_found");
    assert_eq!(fields(&app.delete(&me, "/api/v1/spaces").await), ["id"]);
    app.delete(&me, "/api/v1/spaces?id=nonsense")
        .await
        .assert_error(404, "not_found");
    let third_id = third["id"].as_str().unwrap();
    for (query, body, field) in [
        ("", json!({}), "id"),
        ("", json!({"id": 5}), "id"),
        ("?id=spc_other", json!({"id": third_id}), "id"),
    ] {
        let answer = app
            .call(
                &me,
                testkit::reqwest::Method::DELETE,
                &format!("/api/v1/spaces{query}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(fields(&answer), [field], "{query} {body}");
    }
    let malformed = app
        .server
        .send(
            app.request_as(&me, testkit::reqwest::Method::DELETE, "/api/v1/spaces")
                .header("content-type", "application/json")
                .body("{\"id\":"),
        )
        .await;
    malformed.assert_error(400, "invalid_json");
    let by_body = app
        .call(
            &me,
            testkit::reqwest::Method::DELETE,
            "/api/v1/spaces",
            Some(json!({"id": third_id, "reason": "ignored"})),
        )
        .await;
    assert_eq!(by_body.status, 200, "{}", by_body.json());
    app.get(&me, &format!("/api/v1/spaces/{third_id}"))
        .await
        .assert_error(404, "not_found");
    let listed = app.get(&me, "/api/v1/spaces").await;
    assert_eq!(listed.json()["data"], json!([]));
}

db_test!(
    names_are_unique_per_workspace_regardless_of_case,
    unique_names
);
async fn unique_names(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let them = member(&new_workspace());
    let first = app.create_space(&me, "My App").await;
    for name in ["My App", "my app", " MY APP "] {
        let taken = app
            .post(&me, "/api/v1/spaces", json!({ "name": name }))
            .await;
        assert_eq!(fields(&taken), ["name"]);
        assert_eq!(
            taken.json(),
            json!({
                "message": "The name has already been taken.",
                "errors": {"name": ["The name has already been taken."]},
            })
        );
    }
    // Another workspace may use the name.
    app.create_space(&them, "my app").await;
    // Renaming onto another space's name conflicts; onto its own (any case) not.
    let second = app.create_space(&me, "Second").await;
    let second_path = format!("/api/v1/spaces/{}", second["id"].as_str().unwrap());
    let taken = app.put(&me, &second_path, json!({"name": "MY app"})).await;
    assert_eq!(fields(&taken), ["name"]);
    assert_eq!(
        taken.json()["errors"]["name"],
        json!(["The name has already been taken."])
    );
    let first_path = format!("/api/v1/spaces/{}", first["id"].as_str().unwrap());
    let recased = app.put(&me, &first_path, json!({"name": "MY APP"})).await;
    assert_eq!(recased.status, 200, "{}", recased.json());
    assert_eq!(recased.json()["data"]["name"], "MY APP");
    // Handles differ.
    assert_ne!(first["handle"], second["handle"]);
}

db_test!(custom_domains_are_unique_across_workspaces, unique_domains);
async fn unique_domains(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let them = member(&new_workspace());
    let mine = app.create_space(&me, "Mine").await;
    let theirs = app.create_space(&them, "Theirs").await;
    let path = |s: &serde_json::Value| format!("/api/v1/spaces/{}", s["id"].as_str().unwrap());
    let set = app
        .put(
            &me,
            &path(&mine),
            json!({"name": "Mine", "custom_domain": "cdn.example.com"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.json());
    app.put(
        &them,
        &path(&theirs),
        json!({"name": "Theirs", "custom_domain": "CDN.example.com"}),
    )
    .await
    .assert_error(409, "conflict");
    // Setting the same domain again on its own space is fine.
    let again = app
        .put(
            &me,
            &path(&mine),
            json!({"name": "Mine", "custom_domain": "cdn.example.com"}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.json());
}

db_test!(space_fields_are_validated, validation);
async fn validation(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "tab\there"}), "name"),
        (json!({"name": "nul\u{0}"}), "name"),
        (json!({"name": 5}), "name"),
        (json!({"name": null}), "name"),
        (
            json!({"name": "ok", "description": "d".repeat(1001)}),
            "description",
        ),
        (json!({"name": "ok", "description": 7}), "description"),
    ] {
        let answer = app.post(&me, "/api/v1/spaces", body.clone()).await;
        assert_eq!(fields(&answer), [field], "{body}");
    }
    let required = app.post(&me, "/api/v1/spaces", json!({})).await;
    assert_eq!(
        required.json(),
        json!({
            "message": "The name field is required.",
            "errors": {"name": ["The name field is required."]},
        })
    );
    // Unknown fields are ignored, never applied: the handle is generated.
    let ignored = app
        .post(
            &me,
            "/api/v1/spaces",
            json!({"name": "Ignored", "handle": "abcdef", "enabled": "no", "id": "spc_mine"}),
        )
        .await;
    assert_eq!(ignored.status, 201, "{}", ignored.json());
    assert_ne!(ignored.json()["data"]["handle"], "abcdef");
    assert_ne!(ignored.json()["data"]["id"], "spc_mine");
    let space = app.create_space(&me, "Valid").await;
    let path = format!("/api/v1/spaces/{}", space["id"].as_str().unwrap());
    for (body, field) in [
        (json!({"name": null}), "name"),
        (json!({"name": ""}), "name"),
        (
            json!({"name": "ok", "folder_mode": "chaotic"}),
            "folder_mode",
        ),
        (json!({"name": "ok", "enabled": "yes"}), "enabled"),
        (
            json!({"name": "ok", "custom_domain": "not a host"}),
            "custom_domain",
        ),
        (
            json!({"name": "ok", "custom_domain": "localhost"}),
            "custom_domain",
        ),
        (
            json!({"name": "ok", "custom_domain": "10.0.0.1"}),
            "custom_domain",
        ),
        (
            json!({"name": "ok", "webhook_url": "http://hooks.example.com/"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "webhook_url": "https://u:p@hooks.example.com/"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "webhook_url": "https://localhost/hook"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "webhook_url": "https://127.0.0.1/hook"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "webhook_url": "https://192.168.0.10/hook"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "webhook_url": "https://169.254.169.254/latest"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "webhook_url": "https://[::1]/hook"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "webhook_url": "https://[fe80::1]/hook"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "webhook_url": "relative/path"}),
            "webhook_url",
        ),
        (
            json!({"name": "ok", "active_upload_config_id": "upc_nope"}),
            "active_upload_config_id",
        ),
        (json!({"webhook_url": "https://10.0.0.1/x"}), "webhook_url"),
    ] {
        let answer = app.put(&me, &path, body.clone()).await;
        assert_eq!(fields(&answer), [field], "{body}");
    }
    // Unknown fields are ignored on updates too; nothing changes by them.
    let ignored = app
        .put(
            &me,
            &path,
            json!({"handle": "abcdef", "workspace_id": "wrk_x"}),
        )
        .await;
    assert_eq!(ignored.status, 200, "{}", ignored.json());
    let mut after = ignored.json()["data"].clone();
    let mut before = space.clone();
    for view in [&mut after, &mut before] {
        view.as_object_mut().unwrap().remove("updated_at");
    }
    assert_eq!(after, before);
    // Several bad fields are reported together.
    let many = app
        .put(
            &me,
            &path,
            json!({"name": "", "custom_domain": "-x-", "webhook_url": "ftp://x"}),
        )
        .await;
    assert_eq!(
        fields(&many),
        sorted(["name", "custom_domain", "webhook_url"])
    );
    assert_eq!(many.json()["message"], "The given data was invalid.");
    // Malformed JSON and wrong content types are 4xx too.
    let malformed = app
        .server
        .send(
            app.request_as(&me, testkit::reqwest::Method::POST, "/api/v1/spaces")
                .header("content-type", "application/json")
                .body("{\"name\":"),
        )
        .await;
    malformed.assert_error(400, "invalid_json");
    let text = app
        .server
        .send(
            app.request_as(&me, testkit::reqwest::Method::POST, "/api/v1/spaces")
                .body("name=x"),
        )
        .await;
    text.assert_error(415, "unsupported_media_type");
}

db_test!(
    private_webhook_targets_need_the_config_flag,
    private_webhooks
);
async fn private_webhooks(kind: DbKind) {
    let app = TestSpaces::start_with(kind, CacheKind::Memory, |c| {
        c.webhooks.allow_private_targets = true;
    })
    .await;
    let me = member(&new_workspace());
    let space = app.create_space(&me, "Dev").await;
    let path = format!("/api/v1/spaces/{}", space["id"].as_str().unwrap());
    let local = app
        .put(
            &me,
            &path,
            json!({"name": "Dev", "webhook_url": "https://127.0.0.1:8443/hook"}),
        )
        .await;
    assert_eq!(local.status, 200, "{}", local.json());
    // Local receivers speak plain http too (as events-service's
    // allow_private_targets); credentials stay refused.
    let plain = app
        .put(
            &me,
            &path,
            json!({"name": "Dev", "webhook_url": "http://127.0.0.1/hook"}),
        )
        .await;
    assert_eq!(plain.status, 200, "{}", plain.json());
    let with_credentials = app
        .put(
            &me,
            &path,
            json!({"name": "Dev", "webhook_url": "http://user:pw@127.0.0.1/hook"}),
        )
        .await;
    assert_eq!(fields(&with_credentials), ["webhook_url"]);
}

db_test!(spaces_are_listed_by_cursor_oldest_first, pagination);
async fn pagination(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let them = member(&new_workspace());
    app.create_space(&them, "Not mine").await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_space(&me, &format!("Space {i}")).await["id"].clone());
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/spaces?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = app.get(&me, &path).await;
        assert_eq!(page.status, 200, "{}", page.json());
        let body = page.json();
        assert_eq!(body["per_page"], 2);
        assert_eq!(body["path"], "/api/v1/spaces");
        assert!(body.get("meta").is_none(), "{body}");
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].clone()),
        );
        pages += 1;
        let Some(cursor) = body["next_cursor"].as_str() else {
            assert!(body["next_page_url"].is_null());
            break;
        };
        // The next page's URL is this one's with the cursor.
        let next = body["next_page_url"].as_str().unwrap();
        assert!(next.starts_with("/api/v1/spaces?limit=2&cursor="), "{next}");
        path = next.to_owned();
        assert!(path.ends_with(cursor), "{path}");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every space once, in creation order");

    let first = app.get(&me, "/api/v1/spaces?limit=2").await.json();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let mut tampered = cursor.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // Bad paging parameters are validation errors: 422, naming the parameter.
    for (bad, field) in [
        (format!("/api/v1/spaces?cursor={tampered}"), "cursor"),
        ("/api/v1/spaces?cursor=garbage".to_owned(), "cursor"),
        ("/api/v1/spaces?limit=0".to_owned(), "limit"),
        ("/api/v1/spaces?limit=101".to_owned(), "limit"),
        ("/api/v1/spaces?limit=x".to_owned(), "limit"),
    ] {
        assert_eq!(fields(&app.get(&me, &bad).await), [field], "{bad}");
    }
    let defaults = app.get(&me, "/api/v1/spaces").await.json();
    defaults["data"].as_array().unwrap();
    assert_eq!(
        serde_json::json!({
            "path": defaults["path"],
            "per_page": defaults["per_page"],
            "next_cursor": defaults["next_cursor"],
            "next_page_url": defaults["next_page_url"],
            "prev_cursor": defaults["prev_cursor"],
            "prev_page_url": defaults["prev_page_url"],
        }),
        serde_json::json!({
            "path": "/api/v1/spaces",
            "per_page": 20,
            "next_cursor": null,
            "next_page_url": null,
            "prev_cursor": null,
            "prev_page_url": null,
        })
    );
    assert_eq!(defaults.as_object().unwrap().len(), 7, "{defaults}");
}

db_test!(
    concurrent_creations_of_one_name_make_one_space,
    concurrent_names
);
async fn concurrent_names(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let attempts = (0..8).map(|i| {
        let name = if i % 2 == 0 { "Race" } else { "RACE" };
        app.post(&me, "/api/v1/spaces", json!({ "name": name }))
    });
    let answers = futures_util::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 422, 422, 422, 422, 422, 422, 422]);
    for answer in answers.iter().filter(|a| a.status == 422) {
        assert_eq!(
            answer.json()["errors"]["name"],
            json!(["The name has already been taken."])
        );
    }
    let listed = app.get(&me, "/api/v1/spaces").await.json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    // The refused attempts left no upload configs behind.
    let configs = app.get(&me, "/api/v1/upload-configs").await.json();
    assert_eq!(configs["data"].as_array().unwrap().len(), 1);
}
