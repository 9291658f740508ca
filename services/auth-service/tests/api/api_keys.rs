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
    let entry = &listed.json()["items"][0];
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
        listed.json()["items"][0]["last_used_at"].is_string(),
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
    assert_eq!(beyond["error"]["details"][0]["path"], "scopes");
    let past = create(
        &owner,
        serde_json::json!({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .assert_error(422, "validation_failed");
    assert_eq!(past["error"]["details"][0]["path"], "expires_at");
    create(
        &owner,
        serde_json::json!({"name": "x", "expires_at": "tomorrow"}),
    )
    .await
    .assert_error(422, "validation_failed");
    // Any member may make keys, holding at most what the member holds.
    let mut member = owner.clone();
    member.scopes = ScopeSet::parse("bookings:read").unwrap();
    let theirs = create(&member, serde_json::json!({"name": "x"})).await;
    assert_eq!(theirs.status, 201, "{:?}", theirs.json());
    assert_eq!(
        theirs.json()["data"]["scopes"],
        serde_json::json!(["bookings:read"])
    );
    let greedy = create(
        &member,
        serde_json::json!({"name": "x", "scopes": "bookings:read bookings:write"}),
    )
    .await
    .assert_error(422, "validation_failed");
    assert_eq!(greedy["error"]["details"][0]["path"], "scopes");
    // Scopes the deployment does not grant are refused, whoever asks.
    let made_up = create(&owner, serde_json::json!({"scopes": "reports:read"}))
        .await
        .assert_error(422, "validation_failed");
    assert_eq!(made_up["error"]["details"][0]["path"], "scopes");
    // A space key reaches one space: it mints no workspace keys.
    let space_key = Identity {
        principal_type: identity::PrincipalType::SpaceKey,
        principal_id: "spk_1".into(),
        space_id: Some("spc_1".into()),
        organization_id: None,
        ..owner.clone()
    };
    create(&space_key, serde_json::json!({}))
        .await
        .assert_error(403, "forbidden");
    create(&Identity::anonymous(), serde_json::json!({}))
        .await
        .assert_error(401, "unauthorized");

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

db_test!(
    a_key_is_created_without_a_body_as_gospace_documents,
    without_a_body
);
async fn without_a_body(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let post = || auth.request_as(&owner, Method::POST, "/v1/auth/api-key");
    // No Content-Type, no body; and the getting-started page's JSON type with
    // no body.
    for request in [post(), post().header("content-type", "application/json")] {
        let created = auth.server.send(request).await;
        assert_eq!(created.status, 201, "{:?}", created.json());
        let body = created.json();
        assert_eq!(body["success"], true);
        let data = &body["data"];
        assert!(parse_workspace_key(data["api_key"].as_str().unwrap()).is_some());
        assert_eq!(data["name"], "API key");
        assert!(data["organization_id"].is_null());
        assert_eq!(data["created_by"], owner.principal_id.as_str());
        let scopes: ScopeSet = serde_json::from_value(data["scopes"].clone()).unwrap();
        assert_eq!(scopes, owner.scopes, "every scope of the creator");
    }
    // A body must still be JSON, well-formed and of known fields.
    auth.server
        .send(post().header("content-type", "text/plain").body("name=x"))
        .await
        .assert_error(415, "unsupported_media_type");
    auth.server
        .send(post().header("content-type", "application/json").body("{"))
        .await
        .assert_error(400, "invalid_json");
    let unknown = auth
        .server
        .send(post().json(&serde_json::json!({"colour": "red"})))
        .await
        .assert_error(422, "validation_failed");
    assert_eq!(unknown["error"]["details"][0]["path"], "colour");
    let blank = auth
        .server
        .send(post().json(&serde_json::json!({"name": "  "})))
        .await
        .assert_error(422, "validation_failed");
    assert_eq!(blank["error"]["details"][0]["path"], "name");
}

db_test!(members_see_and_revoke_their_own_keys, own_keys);
async fn own_keys(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let bob_id = auth
        .server
        .send(
            auth.request_as(&owner, Method::POST, "/v1/auth/admin/users")
                .json(&serde_json::json!({"email": "bob@example.com", "role": "member"})),
        )
        .await
        .json()["data"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lookup = auth
        .server
        .send(
            auth.request_as(
                &Identity::gateway(),
                Method::POST,
                "/internal/memberships/lookup",
            )
            .json(&serde_json::json!({"user_id": bob_id, "workspace_id": owner.workspace_id})),
        )
        .await;
    let bob = Identity {
        principal_id: bob_id.clone(),
        scopes: serde_json::from_value(lookup.json()["data"]["scopes"].clone()).unwrap(),
        ..owner.clone()
    };
    assert!(!bob.scopes.contains(&identity::Scope::KEYS_ADMIN));

    let create = |who: &Identity, name: &str| {
        auth.server.send(
            auth.request_as(who, Method::POST, "/v1/auth/api-key")
                .json(&serde_json::json!({ "name": name })),
        )
    };
    let owners = create(&owner, "owner's").await.json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = create(&bob, "bob's").await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let bobs = created.json()["data"]["id"].as_str().unwrap().to_owned();
    let bob_scopes: ScopeSet =
        serde_json::from_value(created.json()["data"]["scopes"].clone()).unwrap();
    assert_eq!(
        bob_scopes, bob.scopes,
        "a member's key holds the member's scopes"
    );

    let list = |who: &Identity| {
        auth.server
            .send(auth.request_as(who, Method::GET, "/v1/auth/api-key"))
    };
    let ids = |body: serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let seen_by_bob = list(&bob).await.json();
    assert_eq!(seen_by_bob["pagination"]["total_results"], 1);
    assert_eq!(ids(seen_by_bob), vec![bobs.clone()]);
    let mut seen_by_owner = ids(list(&owner).await.json());
    seen_by_owner.sort();
    let mut both = vec![owners.clone(), bobs.clone()];
    both.sort();
    assert_eq!(seen_by_owner, both, "keys:admin sees every key");

    let delete = |who: &Identity, id: &str| {
        auth.server
            .send(auth.request_as(who, Method::DELETE, &format!("/v1/auth/api-key/{id}")))
    };
    delete(&bob, &owners).await.assert_error(404, "not_found");
    assert_eq!(delete(&bob, &bobs).await.status, 200);
    assert_eq!(ids(list(&owner).await.json()), vec![owners.clone()]);
    assert_eq!(delete(&owner, &owners).await.status, 200);
}

db_test!(keys_bound_to_an_organization, organization_binding);
async fn organization_binding(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let create = |who: &Identity, body: serde_json::Value| {
        auth.server.send(
            auth.request_as(who, Method::POST, "/v1/auth/api-key")
                .json(&body),
        )
    };
    let org = "org_01JQ3ZKX5Q2W7E8R9T0Y1U2I3O";
    let bound = create(
        &owner,
        serde_json::json!({"name": "front desk", "scopes": "keys:admin bookings:read bookings:write", "organization_id": org}),
    )
    .await;
    assert_eq!(bound.status, 201, "{:?}", bound.json());
    let data = bound.json()["data"].clone();
    assert_eq!(data["organization_id"], org);
    let key = data["api_key"].as_str().unwrap().to_owned();
    let key_id = data["id"].as_str().unwrap().to_owned();
    let listed = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/auth/api-key"))
        .await
        .json();
    assert_eq!(listed["items"][0]["organization_id"], org);

    // The gateway learns the binding; an unbound key has none.
    let seen = introspect(&auth, &Identity::gateway(), &key).await.json()["data"].clone();
    assert_eq!(seen["organization_id"], org);
    let unbound = create(&owner, serde_json::json!({"name": "all"}))
        .await
        .json()["data"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = introspect(&auth, &Identity::gateway(), &unbound)
        .await
        .json()["data"]
        .clone();
    assert_eq!(seen["active"], true);
    assert!(seen.get("organization_id").is_none());

    for bad in ["acme", "org_", "org_a b", "wrk_01JQ3ZKX5Q2W7E8R9T0Y1U2I3O"] {
        let refused = create(&owner, serde_json::json!({"organization_id": bad}))
            .await
            .assert_error(422, "validation_failed");
        assert_eq!(
            refused["error"]["details"][0]["path"], "organization_id",
            "{bad}"
        );
    }

    // What a bound key makes reaches no further than it does.
    let as_key = Identity {
        principal_id: key_id,
        principal_type: identity::PrincipalType::ApiKey,
        scopes: ScopeSet::parse("keys:admin bookings:read bookings:write").unwrap(),
        ..owner.clone()
    };
    let child = create(&as_key, serde_json::json!({"name": "child"})).await;
    assert_eq!(child.status, 201, "{:?}", child.json());
    assert_eq!(child.json()["data"]["organization_id"], org);
    let same = create(&as_key, serde_json::json!({"organization_id": org})).await;
    assert_eq!(same.status, 201);
    create(
        &as_key,
        serde_json::json!({"organization_id": "org_01JQ3ZKX5Q2W7E8R9T0Y1U2I3P"}),
    )
    .await
    .assert_error(403, "forbidden");
    auth.server
        .send(
            auth.request_as(&as_key, Method::POST, "/v1/auth/service-principals")
                .json(&serde_json::json!({"name": "escape", "scopes": "bookings:read"})),
        )
        .await
        .assert_error(403, "forbidden");
    // Revoked while its request was on the way: it makes nothing.
    let path = format!("/v1/auth/api-key/{}", as_key.principal_id);
    let revoked = auth
        .server
        .send(auth.request_as(&owner, Method::DELETE, &path))
        .await;
    assert_eq!(revoked.status, 200);
    create(&as_key, serde_json::json!({}))
        .await
        .assert_error(401, "unauthorized");
}

db_test!(api_key_lists_page_by_cursor_and_sort, paging);
async fn paging(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let mut made = Vec::new();
    for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
        let created = auth
            .server
            .send(
                auth.request_as(&owner, Method::POST, "/v1/auth/api-key")
                    .json(&serde_json::json!({ "name": name })),
            )
            .await;
        assert_eq!(created.status, 201);
        made.push(created.json()["data"]["id"].as_str().unwrap().to_owned());
    }
    let get = |query: String| {
        auth.server
            .send(auth.request_as(&owner, Method::GET, &format!("/v1/auth/api-key{query}")))
    };

    // Forward by next_cursor, two at a time: every key exactly once.
    let mut seen = Vec::new();
    let mut query = "?page_size=2".to_owned();
    let mut pages = Vec::new();
    loop {
        let page = get(query.clone()).await;
        assert_eq!(page.status, 200, "{:?}", page.json());
        let body = page.json();
        assert_eq!(body["success"], true);
        assert_eq!(body["pagination"]["total_results"], 5);
        assert!(body["items"].as_array().unwrap().len() <= 2);
        seen.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["id"].as_str().unwrap().to_owned()),
        );
        if pages.is_empty() {
            assert!(body["prev_cursor"].is_null(), "the first page");
        } else {
            assert!(body["prev_cursor"].is_string());
        }
        pages.push(body.clone());
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("?page_size=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages.len(), 3);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "no key twice: {seen:?}");
    let mut expected = made.clone();
    expected.sort();
    assert_eq!(unique, expected, "every key");
    // The default order is the newest first.
    let created: Vec<String> = pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().clone())
        .map(|k| k["created_at"].as_str().unwrap().to_owned())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    // Back from the last page by prev_cursor: the page before it.
    let back = pages[2]["prev_cursor"].as_str().unwrap();
    let previous = get(format!("?page_size=2&cursor={back}")).await.json();
    assert_eq!(previous["items"], pages[1]["items"]);
    // A cursor overrides `page`.
    let next = pages[0]["next_cursor"].as_str().unwrap();
    let overridden = get(format!("?page_size=2&page=3&cursor={next}"))
        .await
        .json();
    assert_eq!(overridden["items"], pages[1]["items"]);

    // Sorting, in SQL, by each documented field.
    let names = |body: serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(get("?sort=name.asc".into()).await.json()),
        ["alpha", "bravo", "charlie", "delta", "echo"]
    );
    assert_eq!(
        names(
            get("?sort=name.desc&page_size=2&page=2".into())
                .await
                .json()
        ),
        ["charlie", "bravo"]
    );
    let ascending = get("?sort=created_at.asc".into()).await.json()["items"].clone();
    let mut descending = get("?sort=created_at.desc".into()).await.json()["items"]
        .as_array()
        .unwrap()
        .clone();
    descending.reverse();
    assert_eq!(ascending, serde_json::Value::Array(descending));

    // Bad paging is `validation_failed`, in gospace's shape, naming the parameter.
    for (query, parameter) in [
        ("?sort=colour.asc", "sort"),
        ("?sort=name", "sort"),
        ("?sort=name.sideways", "sort"),
        ("?sort=last_used_at.desc", "sort"),
        ("?page_size=0", "page_size"),
        ("?page_size=501", "page_size"),
        ("?page_size=many", "page_size"),
        ("?page=0", "page"),
        ("?cursor=not-a-cursor", "cursor"),
    ] {
        let refused = get(query.into())
            .await
            .assert_error(400, "validation_failed");
        assert_eq!(refused["success"], false);
        assert_eq!(refused["error"]["code"], "validation_failed", "{query}");
        assert_eq!(
            refused["error"]["details"][0]["path"], parameter,
            "{query}: {refused}"
        );
        assert!(
            refused["error"]["request_id"]
                .as_str()
                .unwrap()
                .starts_with("req_")
        );
    }
    // The largest page is allowed.
    assert_eq!(get("?page_size=500".into()).await.status, 200);
}
