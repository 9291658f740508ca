//! `/v1/auth/me` and `/v1/system/workspaces`.

use crate::helpers::TestAuth;
use identity::{Identity, PrincipalType, ScopeSet};
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

db_test!(profile_reads_and_updates, profile);
async fn profile(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("me@example.com").await;
    let me = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/auth/me"))
        .await;
    assert_eq!(me.status, 200);
    let data = me.json()["data"].clone();
    assert_eq!(data["email"], "me@example.com");
    assert_eq!(data["user_id"], owner.principal_id.as_str());
    assert_eq!(data["role"], "owner");
    assert_eq!(
        data["workspace_id"],
        owner.workspace_id.clone().unwrap().as_str()
    );

    let patch = |body: serde_json::Value| {
        auth.server.send(
            auth.request_as(&owner, Method::PATCH, "/v1/auth/me")
                .json(&body),
        )
    };
    let renamed = patch(serde_json::json!({"name": "  Ada Lovelace "})).await;
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.json()["data"]["name"], "Ada Lovelace");
    let read_only = patch(serde_json::json!({"email": "x@example.com"}))
        .await
        .assert_error(422, "validation_failed");
    assert_eq!(read_only["error"]["details"][0]["path"], "email");
    assert_eq!(read_only["error"]["details"][0]["message"], "is read-only");
    let unknown = patch(serde_json::json!({"nickname": "x"}))
        .await
        .assert_error(422, "validation_failed");
    assert_eq!(unknown["error"]["details"][0]["path"], "nickname");
    patch(serde_json::json!({"name": 5}))
        .await
        .assert_error(422, "validation_failed");
    patch(serde_json::json!({"name": "x".repeat(101)}))
        .await
        .assert_error(422, "validation_failed");
    let again = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/auth/me"))
        .await;
    assert_eq!(
        again.json()["data"]["name"],
        "Ada Lovelace",
        "failed updates change nothing"
    );

    let machine = Identity {
        principal_type: PrincipalType::ApiKey,
        principal_id: "apk_1".into(),
        ..owner.clone()
    };
    auth.server
        .send(auth.request_as(&machine, Method::GET, "/v1/auth/me"))
        .await
        .assert_error(403, "forbidden");
    auth.server
        .send(auth.request_as(&Identity::anonymous(), Method::GET, "/v1/auth/me"))
        .await
        .assert_error(401, "unauthorized");
}

db_test!(workspaces_are_listed_and_created, workspaces);
async fn workspaces(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("me@example.com").await;
    let other = auth.owner("other@example.com").await;
    let created = auth
        .server
        .send(
            auth.request_as(&owner, Method::POST, "/v1/system/workspaces")
                .json(&serde_json::json!({"name": "Acme"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    assert_eq!(created.json()["data"]["role"], "owner");
    let acme = created.json()["data"]["id"].as_str().unwrap().to_owned();

    let listed = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/system/workspaces?page_size=1"))
        .await;
    let body = listed.json();
    assert_eq!(body["pagination"]["total_results"], 2);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let page2 = auth
        .server
        .send(auth.request_as(
            &owner,
            Method::GET,
            "/v1/system/workspaces?page_size=1&page=2&sort=created_at.asc",
        ))
        .await
        .json();
    assert_eq!(page2["items"][0]["id"], acme.as_str());

    // Someone else does not see it.
    let theirs = auth
        .server
        .send(auth.request_as(&other, Method::GET, "/v1/system/workspaces"))
        .await
        .json();
    assert_eq!(theirs["pagination"]["total_results"], 1);
    assert_ne!(theirs["items"][0]["id"], acme.as_str());

    // A key sees its own workspace only.
    let key = Identity {
        principal_type: PrincipalType::ApiKey,
        principal_id: "apk_1".into(),
        scopes: ScopeSet::parse("workspace:read").unwrap(),
        ..owner.clone()
    };
    let seen = auth
        .server
        .send(auth.request_as(&key, Method::GET, "/v1/system/workspaces"))
        .await
        .json();
    assert_eq!(seen["pagination"]["total_results"], 1);
    assert_eq!(
        seen["items"][0]["id"],
        owner.workspace_id.clone().unwrap().as_str()
    );
    assert!(seen["items"][0].get("role").is_none());

    auth.server
        .send(
            auth.request_as(&owner, Method::POST, "/v1/system/workspaces")
                .json(&serde_json::json!({"name": " "})),
        )
        .await
        .assert_error(422, "validation_failed");
    auth.server
        .send(
            auth.request_as(&key, Method::POST, "/v1/system/workspaces")
                .json(&serde_json::json!({"name": "x"})),
        )
        .await
        .assert_error(403, "forbidden");

    // The system key sees every workspace.
    let system = Identity {
        principal_id: "system".into(),
        principal_type: PrincipalType::System,
        workspace_id: None,
        scopes: ScopeSet::all(),
        space_id: None,
        organization_id: None,
    };
    let everything = auth
        .server
        .send(auth.request_as(&system, Method::GET, "/v1/system/workspaces?page_size=100"))
        .await
        .json();
    assert_eq!(
        everything["pagination"]["total_results"], 3,
        "two personal workspaces and Acme"
    );
}

db_test!(
    refresh_switches_to_another_workspace_of_the_user,
    switch_workspace
);
async fn switch_workspace(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| c.otp.resend_interval_secs = 1).await;
    let session = auth.sign_in("me@example.com").await;
    let claims = auth.claims(session["access_token"].as_str().unwrap()).await;
    let me = Identity {
        principal_id: claims.sub.clone(),
        principal_type: PrincipalType::User,
        workspace_id: claims.wrk.clone(),
        scopes: claims.scopes(),
        space_id: None,
        organization_id: None,
    };
    let acme = auth
        .server
        .send(
            auth.request_as(&me, Method::POST, "/v1/system/workspaces")
                .json(&serde_json::json!({"name": "Acme"})),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stranger = auth.owner("stranger@example.com").await;

    // Not a member: refused, and the refresh token is not used up.
    let token = session["refresh_token"].as_str().unwrap();
    let refused = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({"refresh_token": token, "workspace_id": stranger.workspace_id}),
        )
        .await;
    assert_eq!(refused.json()["error"], "invalid_grant");
    let unknown = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({"refresh_token": token, "workspace_id": "wrk_nope"}),
        )
        .await;
    assert_eq!(
        unknown.json()["error"],
        "invalid_grant",
        "no difference between foreign and unknown"
    );

    let switched = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({"refresh_token": token, "workspace_id": acme}),
        )
        .await;
    assert_eq!(switched.status, 200, "{:?}", switched.json());
    let data = switched.json()["data"].clone();
    let new_claims = auth.claims(data["access_token"].as_str().unwrap()).await;
    assert_eq!(new_claims.wrk.as_deref(), Some(acme.as_str()));
    assert_eq!(new_claims.sid, claims.sid, "the same session");
    assert_eq!(new_claims.scopes(), ScopeSet::all());
    // The successor stays in Acme.
    let next = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({"refresh_token": data["refresh_token"]}),
        )
        .await;
    let next_claims = auth
        .claims(next.json()["data"]["access_token"].as_str().unwrap())
        .await;
    assert_eq!(next_claims.wrk.as_deref(), Some(acme.as_str()));
}

/// Follows `next_cursor` from `first` to the end; every page's items.
pub(crate) async fn walk(auth: &TestAuth, who: &Identity, first: &str) -> Vec<serde_json::Value> {
    let (path, _) = first.split_once('?').unwrap_or((first, ""));
    let mut pages = Vec::new();
    let mut next = first.to_owned();
    loop {
        let page = auth
            .server
            .send(auth.request_as(who, Method::GET, &next))
            .await;
        assert_eq!(page.status, 200, "{next}: {:?}", page.json());
        let body = page.json();
        let cursor = body["next_cursor"].as_str().map(str::to_owned);
        pages.push(body);
        match cursor {
            // The cursor carries the position; page_size and sort are sent again.
            Some(cursor) => {
                let query = first.split_once('?').map_or("", |(_, q)| q);
                next = format!("{path}?{query}&cursor={cursor}");
            }
            None => return pages,
        }
        assert!(pages.len() < 100, "the walk ends");
    }
}

db_test!(workspace_lists_page_and_sort, workspace_paging);
async fn workspace_paging(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("me@example.com").await;
    for name in ["Delta", "Bravo", "Echo", "Alpha"] {
        let created = auth
            .server
            .send(
                auth.request_as(&owner, Method::POST, "/v1/system/workspaces")
                    .json(&serde_json::json!({ "name": name })),
            )
            .await;
        assert_eq!(created.status, 201);
    }
    // gospace's first documented call, page by page.
    let pages = walk(
        &auth,
        &owner,
        "/v1/system/workspaces?page_size=2&sort=name.asc",
    )
    .await;
    assert_eq!(pages.len(), 3);
    let names: Vec<&str> = pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Alpha",
            "Bravo",
            "Delta",
            "Echo",
            "me@example.com's workspace"
        ]
    );
    for page in &pages {
        assert_eq!(page["success"], true);
        assert_eq!(page["pagination"]["total_results"], 5);
        assert!(page.get("data").is_none() && page.get("meta").is_none());
    }
    // Newest first by default; `updated_at` sorts too.
    let newest = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/system/workspaces?page_size=1"))
        .await
        .json();
    assert_eq!(newest["items"][0]["name"], "Alpha");
    assert!(newest["items"][0]["updated_at"].is_string());
    let by_update = walk(
        &auth,
        &owner,
        "/v1/system/workspaces?sort=updated_at.asc&page_size=4",
    )
    .await;
    assert_eq!(
        by_update[0]["items"][0]["name"], "me@example.com's workspace",
        "the personal workspace was made first"
    );
    let refused = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/system/workspaces?sort=role.asc"))
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(refused["error"]["details"][0]["path"], "sort");
}
