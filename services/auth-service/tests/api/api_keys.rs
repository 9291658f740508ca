//! Workspace API keys and their introspection by the gateway.

use crate::helpers::TestAuth;
use identity::credentials::parse_workspace_key;
use identity::revocation::{self, Revocation};
use identity::{Identity, ScopeSet};
use std::time::Duration;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

async fn introspect(auth: &TestAuth, who: &Identity, key: &str) -> testkit::TestResponse {
    auth.server
        .send(
            auth.request_as(who, Method::POST, "/internal/api-keys/introspect")
                .json(&serde_json::json!({ "key": key })),
        )
        .await
}

db_test!(
    api_keys_are_shown_once_and_introspected_by_the_gateway,
    lifecycle
);
async fn lifecycle(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let workspace = owner.workspace_id.clone().unwrap();
    let created = auth
        .server
        .send(
            auth.request_as(&owner, Method::POST, "/v1/auth/api-key")
                .json(
                    &serde_json::json!({"name": "ci", "scopes": ["bookings:read", "spaces:read"]}),
                ),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let data = created.json()["data"].clone();
    let key = data["api_key"].as_str().unwrap().to_owned();
    let parsed = parse_workspace_key(&key).expect("key_<shard>.<LOC>.<WORKSPACE>.<secret>");
    assert_eq!(
        (parsed.shard, parsed.location, parsed.workspace_id),
        ("01", "UK", workspace.as_str())
    );
    let id = data["id"].as_str().unwrap().to_owned();
    assert!(service_kit::ids::is_valid("apk", &id));

    // Lists show a prefix, never the key.
    let listed = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/auth/api-key"))
        .await;
    let text = String::from_utf8_lossy(&listed.body).into_owned();
    assert!(!text.contains(&key));
    let entry = &listed.json()["data"][0];
    assert_eq!(entry["id"], id.as_str());
    assert!(key.starts_with(entry["prefix"].as_str().unwrap().trim_end_matches('…')));
    assert!(entry["last_used_at"].is_null());

    // Introspection: the gateway only.
    let gateway = Identity::gateway();
    let seen = introspect(&auth, &gateway, &key).await;
    assert_eq!(seen.status, 200);
    let info = seen.json()["data"].clone();
    assert_eq!(info["active"], true);
    assert_eq!(info["key_id"], id.as_str());
    assert_eq!(info["workspace_id"], workspace.as_str());
    assert_eq!(
        info["scopes"],
        serde_json::json!(["bookings:read", "spaces:read"])
    );
    introspect(&auth, &owner, &key)
        .await
        .assert_error(404, "not_found");
    for other in [
        "key_01.UK.wrk_x.nope",
        "garbage",
        &key.replace("key_01", "key_02"),
    ] {
        assert_eq!(
            introspect(&auth, &gateway, other).await.json()["data"]["active"],
            false,
            "{other}"
        );
    }
    let listed = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/auth/api-key"))
        .await;
    assert!(
        listed.json()["data"][0]["last_used_at"].is_string(),
        "use is recorded"
    );

    // Deletion is revoked everywhere.
    let bus = auth.cache.connect().await;
    let mut revocations = bus.subscribe(revocation::CHANNEL).await.unwrap();
    let other = auth.owner("other@example.com").await;
    let path = format!("/v1/auth/api-key/{id}");
    auth.server
        .send(auth.request_as(&other, Method::DELETE, &path))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        auth.server
            .send(auth.request_as(&owner, Method::DELETE, &path))
            .await
            .status,
        200
    );
    let published = tokio::time::timeout(Duration::from_secs(2), revocations.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Revocation::from_bytes(&published),
        Some(Revocation::ApiKey { id })
    );
    assert_eq!(
        introspect(&auth, &gateway, &key).await.json()["data"]["active"],
        false
    );
}

db_test!(api_key_scopes_and_expiry, scopes_and_expiry);
async fn scopes_and_expiry(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let create = |who: &Identity, body: serde_json::Value| {
        auth.server.send(
            auth.request_as(who, Method::POST, "/v1/auth/api-key")
                .json(&body),
        )
    };
    // Without scopes: the creator's.
    let default = create(&owner, serde_json::json!({"name": "all"})).await;
    assert_eq!(default.status, 201);
    assert_eq!(
        ScopeSet::parse(
            &default.json()["data"]["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        )
        .unwrap(),
        owner.scopes
    );

    let mut limited = owner.clone();
    limited.scopes = ScopeSet::parse("keys:admin bookings:read").unwrap();
    let beyond = create(
        &limited,
        serde_json::json!({"name": "x", "scopes": "bookings:write"}),
    )
    .await
    .assert_error(422, "validation_failed");
    assert_eq!(beyond["errors"][0]["field"], "scopes");
    let past = create(
        &owner,
        serde_json::json!({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .assert_error(422, "validation_failed");
    assert_eq!(past["errors"][0]["field"], "expires_at");
    create(
        &owner,
        serde_json::json!({"name": "x", "expires_at": "tomorrow"}),
    )
    .await
    .assert_error(422, "validation_failed");
    let mut member = owner.clone();
    member.scopes = ScopeSet::parse("bookings:read").unwrap();
    create(&member, serde_json::json!({"name": "x"}))
        .await
        .assert_error(403, "forbidden");

    // An expired key is inactive.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let key = create(
        &owner,
        serde_json::json!({"name": "short", "expires_at": soon}),
    )
    .await
    .json()["data"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        introspect(&auth, &Identity::gateway(), &key).await.json()["data"]["active"],
        true
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        introspect(&auth, &Identity::gateway(), &key).await.json()["data"]["active"],
        false
    );
}
