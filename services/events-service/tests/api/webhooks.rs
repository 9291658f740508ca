//! Registering, listing, changing and deleting webhooks on both route
//! families; input checks, scopes and tenancy.

use crate::helpers::{
    Start, TestEvents, admin, new_organization, new_workspace, on_both_databases, organization_key,
    reader, with_scopes,
};
use base64::Engine;
use identity::Identity;
use serde_json::{Value, json};
use testkit::{CacheKind, DbKind};

/// Names the tests register, resolving to a public address.
pub fn public_names() -> outbound::FixedLookup {
    let public = ["93.184.216.34".parse().unwrap()];
    outbound::FixedLookup::new()
        .with("hooks.example.com", &public)
        .with("other.example.com", &public)
}

async fn start(kind: DbKind) -> TestEvents {
    Start::new(kind, CacheKind::Memory)
        .lookup(public_names())
        .run(|_| {})
        .await
}

on_both_databases!(
    spaceos_webhooks_are_created_read_changed_and_deleted,
    spaceos_crud
);
async fn spaceos_crud(kind: DbKind) {
    let app = start(kind).await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();

    let created = app
        .post(
            &me,
            "/api/v1/webhooks",
            json!({
                "organization_id": organization,
                "url": "https://hooks.example.com/in?x=1",
                "events": ["booking.created", "booking.cancelled", "booking.created"],
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let body = created.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Webhook created");
    let hook = body["data"].clone();
    let id = hook["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_") && id.len() == 29, "{id}");
    assert_eq!(hook["organization_id"], organization);
    assert_eq!(hook["url"], "https://hooks.example.com/in?x=1");
    assert_eq!(
        hook["events"],
        json!(["booking.created", "booking.cancelled"])
    );
    assert_eq!(hook["enabled"], true);
    assert_eq!(hook["status"], "active");
    assert!(hook["failing_since"].is_null());
    let secret = hook["secret"].as_str().unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(key.len(), 32, "whsec_ + base64 of 32 random bytes");
    assert_eq!(
        hook["secret_hint"],
        format!("{}…", secret.chars().take(10).collect::<String>())
    );

    // The secret is shown once: never again.
    let path = format!("/api/v1/webhooks/{id}");
    let read = app.get(&me, &path).await;
    assert_eq!(read.status, 200, "{}", read.json());
    let read = read.json()["data"].clone();
    assert!(read.get("secret").is_none(), "{read}");
    assert_eq!(read["id"], id.as_str());
    assert_eq!(read["events"], hook["events"]);

    // A secret of the client's own is not echoed.
    let own = app
        .create_webhook(
            &me,
            json!({
                "organization_id": organization,
                "url": "https://hooks.example.com/other",
                "events": ["booking.end"],
                "secret": "your-webhook-secret",
                "notify_email": "ops@example.com",
                "enabled": false,
            }),
        )
        .await;
    assert!(own["secret"].is_null(), "{own}");
    assert_eq!(own["secret_hint"], "your-webho…");
    assert_eq!(own["notify_email"], "ops@example.com");
    assert_eq!(own["status"], "disabled");

    // Another organization's webhook, then the lists.
    let elsewhere = new_organization();
    app.create_webhook(
        &me,
        json!({"organization_id": elsewhere, "url": "https://other.example.com/", "events": ["ping"]}),
    )
    .await;
    let all = app.get(&me, "/api/v1/webhooks").await;
    assert_eq!(all.status, 200, "{}", all.json());
    assert_eq!(
        all.json()["meta"],
        json!({"page": 1, "limit": 20, "total": 3})
    );
    let ids: Vec<Value> = all.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].clone())
        .collect();
    assert_eq!(ids[0], id.as_str(), "oldest first");
    let mine = app
        .get(
            &me,
            &format!("/api/v1/webhooks?organization_id={organization}"),
        )
        .await;
    assert_eq!(mine.json()["meta"]["total"], 2);
    let page = app
        .get(
            &me,
            &format!("/api/v1/webhooks?organization_id={organization}&page=2&limit=1"),
        )
        .await;
    assert_eq!(page.json()["data"][0]["id"], own["id"]);
    assert_eq!(
        page.json()["meta"],
        json!({"page": 2, "limit": 1, "total": 2})
    );
    for bad in ["limit=0", "limit=101", "page=0", "sort=name.asc", "limit=x"] {
        app.get(&me, &format!("/api/v1/webhooks?{bad}"))
            .await
            .assert_error(400, "validation_failed");
    }

    // Changes: what is sent changes, the rest stays.
    let changed = app
        .patch(
            &me,
            &path,
            json!({
                "url": "https://other.example.com/new",
                "events": ["booking.start", "booking.end"],
                "enabled": false,
                "notify_email": "admin@example.com",
            }),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.json());
    let changed = changed.json()["data"].clone();
    assert_eq!(changed["url"], "https://other.example.com/new");
    assert_eq!(changed["events"], json!(["booking.start", "booking.end"]));
    assert_eq!(changed["status"], "disabled");
    assert_eq!(changed["notify_email"], "admin@example.com");
    assert_eq!(changed["organization_id"], organization);
    let cleared = app
        .patch(&me, &path, json!({"notify_email": null, "enabled": true}))
        .await;
    assert_eq!(cleared.json()["data"]["notify_email"], Value::Null);
    assert_eq!(cleared.json()["data"]["status"], "active");
    assert_eq!(
        cleared.json()["data"]["url"],
        "https://other.example.com/new"
    );
    let rotated = app
        .patch(&me, &path, json!({"secret": "a-brand-new-secret-value"}))
        .await;
    assert_eq!(rotated.json()["data"]["secret_hint"], "a-brand-ne…");
    for (body, field) in [
        (
            json!({"organization_id": new_organization()}),
            "organization_id",
        ),
        (json!({"events": ["booking.exploded"]}), "events[0]"),
        (json!({"events": []}), "events"),
        (json!({"url": "ftp://hooks.example.com/"}), "url"),
        (json!({"secret": "short"}), "secret"),
        (json!({"notify_email": "not an address"}), "notify_email"),
        (json!({"enabled": "yes"}), "enabled"),
    ] {
        let refused = app.patch(&me, &path, body.clone()).await;
        let error = refused.assert_error(400, "validation_failed");
        assert_eq!(error["errors"][0]["field"], field, "{body}: {error}");
    }

    let deleted = app.delete(&me, &path).await;
    assert_eq!(deleted.status, 200, "{}", deleted.json());
    assert_eq!(deleted.json()["data"], Value::Null);
    assert_eq!(deleted.json()["message"], "Webhook deleted");
    app.get(&me, &path).await.assert_error(404, "not_found");
    app.delete(&me, &path).await.assert_error(404, "not_found");
    app.get(&me, "/api/v1/webhooks/wh_nonsense")
        .await
        .assert_error(404, "not_found");
}

on_both_databases!(spaceos_creates_name_every_bad_field, spaceos_validation);
async fn spaceos_validation(kind: DbKind) {
    let app = start(kind).await;
    let me = admin(&new_workspace());
    let fields = |body: &Value| -> Vec<String> {
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let refused = app.post(&me, "/api/v1/webhooks", json!({})).await;
    let body = refused.assert_error(400, "validation_failed");
    assert_eq!(
        fields(&body),
        ["organization_id", "url", "events"],
        "{body}"
    );
    let refused = app
        .post(
            &me,
            "/api/v1/webhooks",
            json!({
                "organization_id": "wrk_notanorg",
                "url": "https://hooks.example.com/",
                "events": ["booking.created", "device.online"],
                "secret": "whsec_tooshort",
                "notify_email": "nobody",
            }),
        )
        .await;
    let body = refused.assert_error(400, "validation_failed");
    assert_eq!(
        fields(&body),
        ["organization_id", "events[1]", "secret", "notify_email"],
        "{body}"
    );
    assert!(
        body["errors"][1]["message"]
            .as_str()
            .unwrap()
            .contains("booking.created"),
        "the message lists the catalog: {body}"
    );
    let unknown = app
        .post(
            &me,
            "/api/v1/webhooks",
            json!({"organization_id": new_organization(), "url": "https://hooks.example.com/",
                   "events": ["ping"], "filter": "x"}),
        )
        .await;
    let body = unknown.assert_error(400, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "filter");
    let wrong_type = app
        .post(
            &me,
            "/api/v1/webhooks",
            json!({"organization_id": new_organization(), "url": "https://hooks.example.com/",
                   "events": "booking.created"}),
        )
        .await;
    wrong_type.assert_error(400, "validation_failed");
    let malformed = app
        .server
        .send(
            app.server
                .client
                .post(app.server.url("/api/v1/webhooks"))
                .header(
                    identity::HEADER,
                    testkit::identity::token(&me, "events-service"),
                )
                .header("content-type", "application/json")
                .body("{"),
        )
        .await;
    malformed.assert_error(400, "invalid_json");
}

on_both_databases!(scopes_and_workspaces_bound_every_route, tenancy);
async fn tenancy(kind: DbKind) {
    let app = start(kind).await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let hook = app
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": "https://hooks.example.com/",
                   "events": ["booking.created"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let gospace = app
        .post(
            &me,
            "/v1/webhooks/webhooks",
            json!({"endpoint": "https://hooks.example.com/g", "events": ["member.added"]}),
        )
        .await;
    assert_eq!(gospace.status, 201, "{}", gospace.json());
    let gospace_id = gospace.json()["data"]["id"].as_str().unwrap().to_owned();

    // Another workspace's ids do not exist, on every route.
    let stranger = admin(&new_workspace());
    for (method, path) in [
        ("GET", format!("/api/v1/webhooks/{id}")),
        ("PATCH", format!("/api/v1/webhooks/{id}")),
        ("DELETE", format!("/api/v1/webhooks/{id}")),
        ("GET", format!("/api/v1/webhooks/{id}/deliveries")),
        ("POST", format!("/api/v1/webhooks/{id}/test")),
        (
            "POST",
            format!("/api/v1/webhooks/{id}/deliveries/dlv_01JAAAAAAAAAAAAAAAAAAAAAAA/retry"),
        ),
        ("PATCH", format!("/v1/webhooks/webhooks/{gospace_id}")),
        ("DELETE", format!("/v1/webhooks/webhooks/{gospace_id}")),
    ] {
        let body = (method == "PATCH").then(|| json!({"enabled": false}));
        let answer = app
            .call(&stranger, method.parse().unwrap(), &path, body)
            .await;
        answer.assert_error(404, "not_found");
    }
    let theirs = app.get(&stranger, "/api/v1/webhooks").await;
    assert_eq!(theirs.json()["meta"]["total"], 0);
    let theirs = app.get(&stranger, "/v1/webhooks/webhooks").await;
    assert_eq!(theirs.json()["pagination"]["total_results"], 0);
    assert_eq!(
        app.get(&me, &format!("/api/v1/webhooks/{id}")).await.status,
        200
    );

    // Each family's own routes reach its own webhooks; the deliveries log any.
    app.get(&me, &format!("/api/v1/webhooks/{gospace_id}"))
        .await
        .assert_error(404, "not_found");
    app.call(
        &me,
        "PATCH".parse().unwrap(),
        &format!("/v1/webhooks/webhooks/{id}"),
        Some(json!({"enabled": false})),
    )
    .await
    .assert_error(404, "not_found");
    let log = app
        .get(&me, &format!("/api/v1/webhooks/{gospace_id}/deliveries"))
        .await;
    assert_eq!(log.status, 200, "{}", log.json());

    // Reading needs webhooks:read, changing webhooks:write.
    let viewer = reader(&workspace);
    assert_eq!(app.get(&viewer, "/api/v1/webhooks").await.status, 200);
    assert_eq!(
        app.get(&viewer, &format!("/api/v1/webhooks/{id}"))
            .await
            .status,
        200
    );
    assert_eq!(app.get(&viewer, "/v1/webhooks/webhooks").await.status, 200);
    for (method, path, body) in [
        ("POST", "/api/v1/webhooks".to_owned(), Some(json!({}))),
        ("PATCH", format!("/api/v1/webhooks/{id}"), Some(json!({}))),
        ("DELETE", format!("/api/v1/webhooks/{id}"), None),
        ("POST", format!("/api/v1/webhooks/{id}/test"), None),
        ("POST", "/v1/webhooks/webhooks".to_owned(), Some(json!({}))),
    ] {
        let answer = app
            .call(&viewer, method.parse().unwrap(), &path, body)
            .await;
        answer.assert_error(403, "forbidden");
    }
    let outsider = with_scopes(&workspace, "bookings:read");
    app.get(&outsider, "/api/v1/webhooks")
        .await
        .assert_error(403, "forbidden");
    app.get(&Identity::anonymous(), "/api/v1/webhooks")
        .await
        .assert_error(401, "unauthorized");
    let no_workspace = Identity {
        workspace_id: None,
        ..admin(&workspace)
    };
    app.get(&no_workspace, "/api/v1/webhooks")
        .await
        .assert_error(403, "forbidden");

    // A key bound to one organization reaches that organization's only.
    let bound = organization_key(&workspace, &organization);
    let listed = app.get(&bound, "/api/v1/webhooks").await;
    assert_eq!(listed.json()["meta"]["total"], 1);
    let other = new_organization();
    let other_hook = app
        .create_webhook(
            &me,
            json!({"organization_id": other, "url": "https://hooks.example.com/", "events": ["ping"]}),
        )
        .await;
    app.get(
        &bound,
        &format!("/api/v1/webhooks/{}", other_hook["id"].as_str().unwrap()),
    )
    .await
    .assert_error(404, "not_found");
    app.get(&bound, &format!("/api/v1/webhooks?organization_id={other}"))
        .await
        .assert_error(404, "not_found");
    app.post(
        &bound,
        "/api/v1/webhooks",
        json!({"organization_id": other, "url": "https://hooks.example.com/", "events": ["ping"]}),
    )
    .await
    .assert_error(404, "not_found");
    app.get(&bound, &format!("/api/v1/webhooks/{gospace_id}/deliveries"))
        .await
        .assert_error(404, "not_found");
    app.get(&bound, "/v1/webhooks/webhooks")
        .await
        .assert_error(403, "forbidden");
    let own = app
        .post(
            &bound,
            "/api/v1/webhooks",
            json!({"organization_id": organization, "url": "https://hooks.example.com/b",
                   "events": ["booking.end"]}),
        )
        .await;
    assert_eq!(own.status, 201, "{}", own.json());
}

on_both_databases!(gospace_webhooks_speak_gospace, gospace_crud);
async fn gospace_crud(kind: DbKind) {
    let app = start(kind).await;
    let me = admin(&new_workspace());
    let created = app
        .post(
            &me,
            "/v1/webhooks/webhooks",
            json!({"endpoint": "https://hooks.example.com/g", "events": ["booking.created", "member.added"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let body = created.json();
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["data", "success"]
    );
    let hook = body["data"].clone();
    let id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(hook["endpoint"], "https://hooks.example.com/g");
    assert!(hook["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(hook.get("organization_id").is_none());
    for n in 0..2 {
        // Creation times are kept to the millisecond; keep them apart.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let more = app
            .post(
                &me,
                "/v1/webhooks/webhooks",
                json!({"endpoint": format!("https://hooks.example.com/{n}"), "events": ["ping"],
                       "secret": "a-secret-of-my-own"}),
            )
            .await;
        assert!(more.json()["data"]["secret"].is_null());
    }

    let first = app.get(&me, "/v1/webhooks/webhooks?page_size=2").await;
    assert_eq!(first.status, 200, "{}", first.json());
    let page = first.json();
    assert_eq!(page["success"], true);
    assert_eq!(page["pagination"]["total_results"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["items"][0]["endpoint"], "https://hooks.example.com/1",
        "newest first"
    );
    let next = page["next_cursor"].as_str().unwrap();
    let second = app
        .get(
            &me,
            &format!("/v1/webhooks/webhooks?page_size=2&cursor={next}"),
        )
        .await;
    assert_eq!(second.json()["items"][0]["id"], id.as_str());
    assert!(second.json()["next_cursor"].is_null());
    let oldest = app
        .get(&me, "/v1/webhooks/webhooks?sort=created_at.asc")
        .await;
    assert_eq!(oldest.json()["items"][0]["id"], id.as_str());
    let bad = app
        .get(&me, "/v1/webhooks/webhooks?sort=endpoint.asc")
        .await;
    let error = bad.assert_error(400, "validation_failed");
    assert_eq!(error["error"]["details"][0]["path"], "sort");

    let path = format!("/v1/webhooks/webhooks/{id}");
    let changed = app
        .patch(
            &me,
            &path,
            json!({"events": ["booking.end"], "enabled": false}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.json());
    assert_eq!(changed.json()["data"]["events"], json!(["booking.end"]));
    assert_eq!(changed.json()["data"]["status"], "disabled");
    let refused = app
        .patch(&me, &path, json!({"endpoint": "http://hooks.example.com/"}))
        .await;
    let error = refused.assert_error(422, "validation_failed");
    assert_eq!(error["error"]["details"][0]["path"], "endpoint");
    let refused = app
        .post(&me, "/v1/webhooks/webhooks", json!({"events": ["nope"]}))
        .await;
    let error = refused.assert_error(422, "validation_failed");
    let paths: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["endpoint", "events[0]"]);

    let deleted = app.delete(&me, &path).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json(), json!({"success": true, "data": null}));
    let gone = app.delete(&me, &path).await;
    let error = gone.assert_error(404, "not_found");
    assert_eq!(error["error"]["code"], "resource_not_found");
}
