//! Who reaches what: workspaces are sealed from each other (404), scopes gate
//! reading and changing, a space key reaches its own space only, an account
//! key every space of its workspace.

use crate::helpers::{TestSpaces, admin, member, new_workspace, with_scopes};
use identity::{Identity, PrincipalType};
use serde_json::json;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

db_test!(another_workspace_sees_nothing, tenant_isolation);
async fn tenant_isolation(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let stranger = member(&new_workspace());
    let space = app.create_space(&me, "Private").await;
    let id = space["id"].as_str().unwrap();
    let config = space["active_upload_config_id"].as_str().unwrap();
    let key = app.mint_key(&me, id, "ci").await;
    let key_id = key["id"].as_i64().unwrap();
    let attempts: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/api/v1/spaces/{id}"), None),
        (
            Method::PUT,
            format!("/api/v1/spaces/{id}"),
            Some(json!({"name": "Mine now"})),
        ),
        (Method::DELETE, format!("/api/v1/spaces/{id}"), None),
        (Method::DELETE, format!("/api/v1/spaces?id={id}"), None),
        (
            Method::PUT,
            format!("/api/v1/spaces/{id}/access-control"),
            Some(json!({"access_control": {"public_read": false}})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/spaces/{id}/access-control"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/spaces/{id}/security"),
            Some(json!({"security": {"watermark": {"opacity": 0.1}}})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/spaces/{id}/security"),
            None,
        ),
        (Method::GET, format!("/api/v1/spaces/{id}/api-keys"), None),
        (
            Method::POST,
            format!("/api/v1/spaces/{id}/api-keys"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/spaces/{id}/api-keys/{key_id}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/upload-configs/{config}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/upload-configs/{config}"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/upload-configs/{config}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/upload-configs?space_id={id}"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/upload-configs".to_owned(),
            Some(json!({"space_id": id, "name": "x"})),
        ),
    ];
    for (method, path, body) in attempts {
        let answer = app.call(&stranger, method.clone(), &path, body).await;
        answer.assert_error(404, "not_found");
        let _ = (method, path);
    }
    let listed = app.get(&stranger, "/api/v1/spaces").await;
    assert_eq!(listed.json()["data"], json!([]));
    let configs = app.get(&stranger, "/api/v1/upload-configs").await;
    assert_eq!(configs.json()["data"], json!([]));
    // Nothing changed.
    let mine = app.get(&me, &format!("/api/v1/spaces/{id}")).await;
    assert_eq!(mine.json()["data"], space);
    assert_eq!(
        app.introspect(key["key"].as_str().unwrap()).await["active"],
        true
    );
}

db_test!(scopes_gate_reading_and_changing, scopes);
async fn scopes(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let workspace = new_workspace();
    let me = member(&workspace);
    let space = app.create_space(&me, "Scoped").await;
    let path = format!("/api/v1/spaces/{}", space["id"].as_str().unwrap());

    // A workspace API key and a service principal with read only.
    for kind in [PrincipalType::ApiKey, PrincipalType::Service] {
        let reader = with_scopes(kind, &workspace, "spaces:read");
        assert_eq!(app.get(&reader, &path).await.status, 200);
        assert_eq!(
            app.get(&reader, "/api/v1/spaces").await.json()["data"][0],
            space
        );
        app.put(&reader, &path, json!({"name": "x"}))
            .await
            .assert_error(403, "forbidden");
        app.post(&reader, "/api/v1/spaces", json!({"name": "x"}))
            .await
            .assert_error(403, "forbidden");
        app.delete(&reader, &path)
            .await
            .assert_error(403, "forbidden");
    }
    // Without spaces scopes at all.
    let booker = with_scopes(
        PrincipalType::User,
        &workspace,
        "bookings:read bookings:write",
    );
    app.get(&booker, &path).await.assert_error(403, "forbidden");
    app.get(&booker, "/api/v1/spaces")
        .await
        .assert_error(403, "forbidden");
    // A workspace credential must name a workspace.
    let mut nowhere = member(&workspace);
    nowhere.workspace_id = None;
    app.get(&nowhere, "/api/v1/spaces")
        .await
        .assert_error(403, "forbidden");
    // No credential.
    app.get(&Identity::anonymous(), &path)
        .await
        .assert_error(401, "unauthorized");
    // The system key reaches every workspace; with one selected, that one.
    let mut system = with_scopes(
        PrincipalType::System,
        &workspace,
        "spaces:read spaces:write",
    );
    system.workspace_id = None;
    assert_eq!(app.get(&system, &path).await.status, 200);
    app.post(&system, "/api/v1/spaces", json!({"name": "x"}))
        .await
        .assert_error(403, "forbidden");
    system.workspace_id = Some(new_workspace());
    app.get(&system, &path).await.assert_error(404, "not_found");
}

db_test!(a_space_key_reaches_its_own_space_only, space_key_reach);
async fn space_key_reach(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let workspace = new_workspace();
    let me = member(&workspace);
    let own = app.create_space(&me, "Own").await;
    let sibling = app.create_space(&me, "Sibling").await;
    let own_id = own["id"].as_str().unwrap();
    let sibling_id = sibling["id"].as_str().unwrap();
    let key = app.mint_key(&me, own_id, "production").await;
    let sk = app.as_key(&key).await;

    // Lists show the own space only.
    let listed = app.get(&sk, "/api/v1/spaces").await;
    assert_eq!(listed.status, 200);
    let data = listed.json()["data"].clone();
    assert_eq!(data.as_array().unwrap().len(), 1);
    assert_eq!(data[0]["id"], own_id);
    let configs = app.get(&sk, "/api/v1/upload-configs").await.json()["data"].clone();
    assert_eq!(configs.as_array().unwrap().len(), 1);
    assert_eq!(configs[0]["space_id"], own_id);

    // It cannot create spaces nor keys.
    app.post(&sk, "/api/v1/spaces", json!({"name": "New"}))
        .await
        .assert_error(403, "forbidden");
    app.post(
        &sk,
        &format!("/api/v1/spaces/{own_id}/api-keys"),
        json!({"name": "more"}),
    )
    .await
    .assert_error(403, "forbidden");

    // The sibling space does not exist for it.
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/spaces/{sibling_id}"), None),
        (
            Method::PUT,
            format!("/api/v1/spaces/{sibling_id}"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/spaces?id={sibling_id}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/spaces/{sibling_id}/api-keys"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/spaces/{sibling_id}/api-keys"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::GET,
            format!(
                "/api/v1/upload-configs/{}",
                sibling["active_upload_config_id"].as_str().unwrap()
            ),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/upload-configs?space_id={sibling_id}"),
            None,
        ),
        (
            Method::POST,
            "/api/v1/upload-configs".to_owned(),
            Some(json!({"space_id": sibling_id, "name": "x"})),
        ),
    ] {
        app.call(&sk, method, &path, body)
            .await
            .assert_error(404, "not_found");
    }

    // It manages its own space.
    let own_path = format!("/api/v1/spaces/{own_id}");
    assert_eq!(app.get(&sk, &own_path).await.status, 200);
    let renamed = app.put(&sk, &own_path, json!({"name": "Renamed"})).await;
    assert_eq!(renamed.status, 200, "{}", renamed.json());
    let config = app
        .post(
            &sk,
            "/api/v1/upload-configs",
            json!({"space_id": own_id, "name": "videos"}),
        )
        .await;
    assert_eq!(config.status, 201, "{}", config.json());
    let keys = app.get(&sk, &format!("{own_path}/api-keys")).await;
    assert_eq!(keys.json()["data"][0]["id"], key["id"]);
    assert_eq!(
        app.get(&me, &format!("/api/v1/spaces/{sibling_id}"))
            .await
            .status,
        200
    );
}

db_test!(
    an_account_key_reaches_every_space_of_its_workspace,
    account_key_reach
);
async fn account_key_reach(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let workspace = new_workspace();
    let boss = admin(&workspace);
    let me = member(&workspace);
    let stranger = member(&new_workspace());
    let home = app.create_space(&me, "Home").await;
    let sibling = app.create_space(&me, "Sibling").await;
    let foreign = app.create_space(&stranger, "Foreign").await;
    let home_id = home["id"].as_str().unwrap();
    let sibling_id = sibling["id"].as_str().unwrap();
    let keys = format!("/api/v1/spaces/{home_id}/api-keys");
    let account = json!({"name": "deploys", "type": "account"});

    // Only a workspace admin mints account keys.
    app.post(&me, &keys, account.clone())
        .await
        .assert_error(403, "forbidden");
    let minted = app.post(&boss, &keys, account.clone()).await;
    assert_eq!(minted.status, 201, "{}", minted.json());
    let key = minted.json()["data"].clone();
    assert_eq!(key["type"], "account");
    assert_eq!(key["space_id"], home_id);
    // The gateway describes it as any `sk_` key: the space it was minted for.
    let seen = app.introspect(key["key"].as_str().unwrap()).await;
    assert_eq!(seen["space_id"], home_id);
    let ak = app.as_key(&key).await;

    // Every space of the workspace, none of another.
    let listed = app.get(&ak, "/api/v1/spaces").await.json()["data"].clone();
    let ids: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, [json!(home_id), json!(sibling_id)]);
    assert_eq!(
        app.get(&ak, &format!("/api/v1/spaces/{sibling_id}"))
            .await
            .status,
        200
    );
    let configs = app.get(&ak, "/api/v1/upload-configs/all").await.json()["data"].clone();
    assert_eq!(configs.as_array().unwrap().len(), 2);
    let foreign_id = foreign["id"].as_str().unwrap();
    app.get(&ak, &format!("/api/v1/spaces/{foreign_id}"))
        .await
        .assert_error(404, "not_found");
    app.post(
        &ak,
        &format!("/api/v1/spaces/{foreign_id}/api-keys"),
        json!({"name": "x"}),
    )
    .await
    .assert_error(404, "not_found");

    // It creates spaces and mints space keys, never account keys.
    let made = app
        .post(&ak, "/api/v1/spaces", json!({"name": "Made by a key"}))
        .await;
    assert_eq!(made.status, 201, "{}", made.json());
    let space_key = app
        .post(
            &ak,
            &format!("/api/v1/spaces/{sibling_id}/api-keys"),
            json!({"name": "sibling"}),
        )
        .await;
    assert_eq!(space_key.status, 201, "{}", space_key.json());
    assert_eq!(space_key.json()["data"]["type"], "space");
    app.post(&ak, &keys, account.clone())
        .await
        .assert_error(403, "forbidden");
    // A space key mints no keys at all, least of all account keys.
    let sk = app.as_key(&space_key.json()["data"]).await;
    for body in [account.clone(), json!({"name": "more"})] {
        app.post(&sk, &format!("/api/v1/spaces/{sibling_id}/api-keys"), body)
            .await
            .assert_error(403, "forbidden");
    }
    app.post(&sk, "/api/v1/spaces", json!({"name": "Nope"}))
        .await
        .assert_error(403, "forbidden");
    // Unknown types are refused.
    assert_eq!(
        crate::helpers::fields(
            &app.post(&boss, &keys, json!({"name": "x", "type": "global"}))
                .await
        ),
        ["type"]
    );

    // Revoking an account key takes an admin; then the key is refused.
    let path = format!("{keys}/{}", key["id"]);
    app.delete(&me, &path).await.assert_error(403, "forbidden");
    app.delete(&sk, &path).await.assert_error(404, "not_found");
    assert_eq!(app.delete(&boss, &path).await.status, 200);
    app.get(&ak, "/api/v1/spaces")
        .await
        .assert_error(401, "unauthorized");
}
