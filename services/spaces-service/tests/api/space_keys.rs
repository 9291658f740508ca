//! Space API keys: shown once, stored hashed, introspected by the gateway,
//! revoked on the cache bus (keys deleted alone or with their space).

use crate::helpers::{TestSpaces, fields, member, new_workspace};
use identity::Identity;
use identity::credentials::is_space_key;
use identity::revocation::{self, Revocation};
use serde_json::json;
use spaces_service::schema::space_api_keys;
use std::time::Duration;
use testkit::reqwest::Method;
use testkit::{CacheKind, DbKind, cache_test, db_test};

async fn next_revocation(subscription: &mut cache::Subscription) -> Revocation {
    let message = tokio::time::timeout(Duration::from_secs(1), subscription.next())
        .await
        .expect("a revocation within a second")
        .expect("the bus is open");
    Revocation::from_bytes(&message).expect("a revocation")
}

db_test!(space_keys_are_shown_once_and_introspected, lifecycle);
async fn lifecycle(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let workspace = new_workspace();
    let me = member(&workspace);
    let space = app.create_space(&me, "Keys").await;
    let space_id = space["id"].as_str().unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let created = app
        .post(
            &me,
            &format!("/api/v1/spaces/{space_id}/api-keys"),
            json!({"name": "production", "expires_at": expires}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let data = created.json()["data"].clone();
    let key = data["key"].as_str().unwrap().to_owned();
    let id = data["id"].as_i64().expect("an integer id");
    assert!(id > 0);
    assert!(is_space_key(&key));
    assert_eq!(data["type"], "space");
    assert_eq!(data["space_id"], space_id);
    assert_eq!(data["is_active"], true);
    assert_eq!(data["name"], "production");
    assert!(data["last_used_at"].is_null());
    assert!(data.as_object().unwrap().contains_key("last_used_at"));
    assert!(data["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(data["created_at"].is_string());

    // Only a hash is stored.
    let stored: Vec<String> = {
        use diesel::prelude::*;
        let db = store::Database::connect(&app.db.config()).await.unwrap();
        db.run(|conn| {
            space_api_keys::table
                .select(space_api_keys::key_hash)
                .load(conn)
                .map_err(store::StoreError::from)
        })
        .await
        .unwrap()
    };
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], key);
    assert!(!stored[0].contains(&key[3..]));

    // Lists never show the key.
    let listed = app
        .get(&me, &format!("/api/v1/spaces/{space_id}/api-keys"))
        .await;
    assert_eq!(listed.status, 200);
    assert!(!String::from_utf8_lossy(&listed.body).contains(&key));
    let entry = listed.json()["data"][0].clone();
    assert_eq!(entry["id"], id);
    assert_eq!(entry["type"], "space");
    assert!(key.starts_with(entry["prefix"].as_str().unwrap().trim_end_matches('…')));
    assert!(entry["last_used_at"].is_null());
    assert!(entry.get("key").is_none());
    assert!(listed.json()["next_cursor"].is_null());

    // Introspection: the gateway only. It names the key by its internal id.
    let seen = app.introspect(&key).await;
    assert_eq!(seen["active"], true);
    assert!(service_kit::ids::is_valid(
        "spk",
        seen["key_id"].as_str().unwrap()
    ));
    assert_eq!(seen["space_id"], space_id);
    assert_eq!(seen["workspace_id"], workspace.as_str());
    assert_eq!(seen["expires_at"], data["expires_at"]);
    app.post(&me, "/internal/space-keys/introspect", json!({"key": key}))
        .await
        .assert_error(404, "not_found");
    let mut typo = key.clone().into_bytes();
    typo[5] = if typo[5] == b'a' { b'b' } else { b'a' };
    for other in [
        String::from_utf8(typo).unwrap(),
        "sk_short".to_owned(),
        "garbage".to_owned(),
        identity::credentials::new_space_key(),
    ] {
        assert_eq!(
            app.introspect(&other).await,
            json!({"active": false}),
            "{other}"
        );
    }
    // The use is recorded (in the background, to the minute).
    let mut recorded = false;
    for _ in 0..50 {
        let listed = app
            .get(&me, &format!("/api/v1/spaces/{space_id}/api-keys"))
            .await;
        if listed.json()["data"][0]["last_used_at"].is_string() {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recorded, "last_used_at is set after an introspection");

    // Validation.
    let path = format!("/api/v1/spaces/{space_id}/api-keys");
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "expires_at": "tomorrow"}), "expires_at"),
        (
            json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (json!({"name": "x", "type": "workspace"}), "type"),
        (json!({"name": "x", "type": 1}), "type"),
    ] {
        assert_eq!(
            fields(&app.post(&me, &path, body.clone()).await),
            [field],
            "{body}"
        );
    }
    // Unknown fields are ignored: a key gets no scopes from its body.
    let ignored = app
        .post(&me, &path, json!({"name": "x", "scopes": ["keys:admin"]}))
        .await;
    assert_eq!(ignored.status, 201, "{}", ignored.json());
    assert_eq!(ignored.json()["data"]["type"], "space");
    // Integer ids are the database's: never reused, increasing.
    let next = app.mint_key(&me, space_id, "next").await;
    assert!(next["id"].as_i64().unwrap() > ignored.json()["data"]["id"].as_i64().unwrap());
}

db_test!(expired_keys_are_inactive, expiry);
async fn expiry(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = app.create_space(&me, "Short").await;
    let space_id = space["id"].as_str().unwrap();
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let created = app
        .post(
            &me,
            &format!("/api/v1/spaces/{space_id}/api-keys"),
            json!({"name": "brief", "expires_at": soon}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let key = created.json()["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect(&key).await["active"], true);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        app.introspect(&key).await,
        json!({"active": false}),
        "even from memory"
    );
    let listed = app
        .get(&me, &format!("/api/v1/spaces/{space_id}/api-keys"))
        .await;
    assert_eq!(listed.json()["data"][0]["is_active"], false);
}

cache_test!(revoked_keys_are_published_and_refused, revocation);
async fn revocation(cache: CacheKind) {
    let app = TestSpaces::start_with(DbKind::Sqlite, cache, |_| {}).await;
    let me = member(&new_workspace());
    let stranger = member(&new_workspace());
    let space = app.create_space(&me, "Revoked").await;
    let space_id = space["id"].as_str().unwrap();
    let key = app.mint_key(&me, space_id, "a").await;
    let (number, secret) = (key["id"].as_i64().unwrap(), key["key"].as_str().unwrap());
    // Served from memory after the first look-up; a revocation still wins.
    let internal = app.introspect(secret).await["key_id"].clone();
    let id = internal.as_str().unwrap();
    assert_eq!(app.introspect(secret).await["active"], true);
    let bus = app.cache.connect().await;
    let mut revocations = bus.subscribe(revocation::CHANNEL).await.unwrap();
    let path = format!("/api/v1/spaces/{space_id}/api-keys/{number}");
    app.delete(&stranger, &path)
        .await
        .assert_error(404, "not_found");
    for other in ["spk_nope", id, "0", "-1", "99999999", "1.5"] {
        app.delete(&me, &format!("/api/v1/spaces/{space_id}/api-keys/{other}"))
            .await
            .assert_error(404, "not_found");
    }
    let revoked = app.delete(&me, &path).await;
    assert_eq!(revoked.status, 200, "{}", revoked.json());
    assert_eq!(revoked.json(), json!({"data": null}));
    assert_eq!(
        next_revocation(&mut revocations).await,
        Revocation::SpaceKey { id: id.to_owned() }
    );
    assert_eq!(app.introspect(secret).await, json!({"active": false}));
    app.delete(&me, &path).await.assert_error(404, "not_found");

    // Deleting the space revokes each of its keys.
    let b = app.mint_key(&me, space_id, "b").await;
    let c = app.mint_key(&me, space_id, "c").await;
    let b_id = app.introspect(b["key"].as_str().unwrap()).await["key_id"].clone();
    let c_id = app.introspect(c["key"].as_str().unwrap()).await["key_id"].clone();
    let deleted = app.delete(&me, &format!("/api/v1/spaces/{space_id}")).await;
    assert_eq!(deleted.status, 200);
    let mut published = vec![
        next_revocation(&mut revocations).await,
        next_revocation(&mut revocations).await,
    ];
    published.sort_by_key(|r| format!("{r:?}"));
    let mut expected = vec![
        Revocation::SpaceKey {
            id: b_id.as_str().unwrap().to_owned(),
        },
        Revocation::SpaceKey {
            id: c_id.as_str().unwrap().to_owned(),
        },
    ];
    expected.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(published, expected);
    for k in [&b, &c] {
        assert_eq!(
            app.introspect(k["key"].as_str().unwrap()).await,
            json!({"active": false})
        );
    }
}

cache_test!(revocations_from_another_replica_evict_the_memory, replicas);
async fn replicas(cache: CacheKind) {
    // Two replicas on one database and one cache bus, with one root secret.
    let first = TestSpaces::start_with(DbKind::Sqlite, cache, |_| {}).await;
    let shared = service_kit::config::Secret::new({
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    });
    let replica = |secret: service_kit::config::Secret| {
        testkit::part::start_part_with::<spaces_service::SpacesService>(
            Some(&first.db),
            &first.cache,
            move |cfg| cfg.secret.key = secret,
        )
    };
    let a = replica(shared.clone()).await;
    let b = replica(shared).await;
    let me = member(&new_workspace());
    let space = send(
        &a,
        &me,
        Method::POST,
        "/api/v1/spaces",
        Some(json!({"name": "Shared"})),
    )
    .await
    .json()["data"]
        .clone();
    let space_id = space["id"].as_str().unwrap();
    let key = send(
        &a,
        &me,
        Method::POST,
        &format!("/api/v1/spaces/{space_id}/api-keys"),
        Some(json!({"name": "k"})),
    )
    .await
    .json()["data"]
        .clone();
    let gateway = Identity::gateway();
    let probe = Some(json!({"key": key["key"]}));
    let introspect_path = "/internal/space-keys/introspect";
    assert_eq!(
        send(&b, &gateway, Method::POST, introspect_path, probe.clone())
            .await
            .json()["data"]["active"],
        true
    );
    let revoked = send(
        &a,
        &me,
        Method::DELETE,
        &format!("/api/v1/spaces/{space_id}/api-keys/{}", key["id"]),
        None,
    )
    .await;
    assert_eq!(revoked.status, 200);
    // Replica b had the key in memory; the revocation on the bus evicts it.
    let mut refused = false;
    for _ in 0..50 {
        if send(&b, &gateway, Method::POST, introspect_path, probe.clone())
            .await
            .json()["data"]["active"]
            == false
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the other replica refuses the key within a second");
}

async fn send(
    server: &testkit::TestServer,
    who: &Identity,
    method: testkit::reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> testkit::TestResponse {
    let mut request = server.client.request(method, server.url(path)).header(
        identity::HEADER,
        testkit::identity::token(who, "spaces-service"),
    );
    if let Some(body) = body {
        request = request.json(&body);
    }
    server.send(request).await
}
