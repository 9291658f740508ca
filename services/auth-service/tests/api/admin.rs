//! Members and custom roles of a workspace.

use crate::helpers::TestAuth;
use identity::revocation::{self, Revocation};
use identity::{Identity, ScopeSet};
use std::time::Duration;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

pub(crate) async fn call(
    auth: &TestAuth,
    who: &Identity,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> testkit::TestResponse {
    let mut request = auth.request_as(who, method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    auth.server.send(request).await
}

db_test!(members_are_invited_changed_and_removed, members);
async fn members(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| c.otp.resend_interval_secs = 1).await;
    let owner = auth.owner("owner@example.com").await;
    let workspace = owner.workspace_id.clone().unwrap();
    let invited = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "Bob@Example.com", "role": "member"})),
    )
    .await;
    assert_eq!(invited.status, 201, "{:?}", invited.json());
    let bob = invited.json()["data"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(invited.json()["data"]["email"], "bob@example.com");
    call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "bob@example.com", "role": "member"})),
    )
    .await
    .assert_error(409, "conflict");
    let bad_role = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "x@example.com", "role": "superuser"})),
    )
    .await
    .assert_error(422, "validation_failed");
    assert_eq!(bad_role["error"]["details"][0]["path"], "role");

    let listed = call(&auth, &owner, Method::GET, "/v1/auth/admin/users", None)
        .await
        .json();
    assert_eq!(listed["pagination"]["total_results"], 2);

    // Bob signs in and can move his session into the workspace, as a member.
    let session = auth.sign_in("bob@example.com").await;
    let switched = auth
        .post_json("/v1/auth/token", serde_json::json!({"refresh_token": session["refresh_token"], "workspace_id": workspace}))
        .await;
    let claims = auth
        .claims(switched.json()["data"]["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims.wrk.as_deref(), Some(workspace.as_str()));
    assert!(claims.scopes().contains(&identity::Scope::BOOKINGS_WRITE));
    assert!(!claims.scopes().contains(&identity::Scope::USERS_ADMIN));

    // Changes are published for the gateways.
    let bus = auth.cache.connect().await;
    let mut revocations = bus.subscribe(revocation::CHANNEL).await.unwrap();
    let path = format!("/v1/auth/admin/users/{bob}");
    let viewer = call(
        &auth,
        &owner,
        Method::PATCH,
        &path,
        Some(serde_json::json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(viewer.json()["data"]["role"], "viewer");
    let published = tokio::time::timeout(Duration::from_secs(2), revocations.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Revocation::from_bytes(&published),
        Some(Revocation::Membership {
            workspace_id: workspace.clone(),
            user_id: bob.clone()
        })
    );
    call(
        &auth,
        &owner,
        Method::PATCH,
        &path,
        Some(serde_json::json!({"status": "paused"})),
    )
    .await
    .assert_error(422, "validation_failed");
    // A change to nothing (the same role, or an empty body) revokes nothing:
    // the next message on the bus is the removal's.
    for unchanged in [serde_json::json!({"role": "viewer"}), serde_json::json!({})] {
        let same = call(&auth, &owner, Method::PATCH, &path, Some(unchanged)).await;
        assert_eq!(same.status, 200, "{:?}", same.json());
        assert_eq!(same.json()["data"]["role"], "viewer");
    }
    assert_eq!(
        call(&auth, &owner, Method::DELETE, &path, None)
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
        Some(Revocation::Membership {
            workspace_id: workspace.clone(),
            user_id: bob.clone()
        })
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), revocations.next())
            .await
            .is_err(),
        "one revocation for the removal, none for the unchanged updates"
    );
    call(&auth, &owner, Method::DELETE, &path, None)
        .await
        .assert_error(404, "not_found");
}

db_test!(owners_are_protected, owners);
async fn owners(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let me = format!("/v1/auth/admin/users/{}", owner.principal_id);
    // The last owner can be neither demoted nor removed.
    call(
        &auth,
        &owner,
        Method::PATCH,
        &me,
        Some(serde_json::json!({"role": "admin"})),
    )
    .await
    .assert_error(409, "conflict");
    call(&auth, &owner, Method::DELETE, &me, None)
        .await
        .assert_error(409, "conflict");

    // An admin (not an owner) may not make owners, nor touch owners.
    let admin_id = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "admin@example.com", "role": "admin"})),
    )
    .await
    .json()["data"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = Identity {
        principal_id: admin_id,
        ..owner.clone()
    };
    call(
        &auth,
        &admin,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "x@example.com", "role": "owner"})),
    )
    .await
    .assert_error(403, "forbidden");
    call(&auth, &admin, Method::DELETE, &me, None)
        .await
        .assert_error(403, "forbidden");

    // With a second owner, the first may step down.
    let second = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "co@example.com", "role": "owner"})),
    )
    .await;
    assert_eq!(second.status, 201);
    let stepped = call(
        &auth,
        &owner,
        Method::PATCH,
        &me,
        Some(serde_json::json!({"role": "admin"})),
    )
    .await;
    assert_eq!(stepped.status, 200, "{:?}", stepped.json());

    // Members without users:admin, and other workspaces, are refused.
    let mut member = owner.clone();
    member.scopes = ScopeSet::parse("users:read").unwrap();
    call(
        &auth,
        &member,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "y@example.com", "role": "viewer"})),
    )
    .await
    .assert_error(403, "forbidden");
    let other = auth.owner("other@example.com").await;
    call(&auth, &other, Method::DELETE, &me, None)
        .await
        .assert_error(404, "not_found");
    let theirs = call(&auth, &other, Method::GET, "/v1/auth/admin/users", None)
        .await
        .json();
    assert_eq!(theirs["pagination"]["total_results"], 1);
}

db_test!(custom_roles, custom_roles_body);
async fn custom_roles_body(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let created = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/roles",
        Some(serde_json::json!({"name": "booker", "scopes": "bookings:read bookings:write"})),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let role_id = created.json()["data"]["id"].as_str().unwrap().to_owned();
    assert!(service_kit::ids::is_valid("rol", &role_id));
    let roles = call(&auth, &owner, Method::GET, "/v1/auth/admin/roles", None)
        .await
        .json();
    assert_eq!(
        roles["items"].as_array().unwrap().len(),
        5,
        "four built-in and one custom"
    );

    let invited = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "b@example.com", "role": role_id})),
    )
    .await;
    assert_eq!(invited.json()["data"]["role_name"], "booker");
    let path = format!("/v1/auth/admin/roles/{role_id}");
    let renamed = call(
        &auth,
        &owner,
        Method::PATCH,
        &path,
        Some(serde_json::json!({"name": "bookers"})),
    )
    .await;
    assert_eq!(renamed.json()["data"]["name"], "bookers");
    call(&auth, &owner, Method::DELETE, &path, None)
        .await
        .assert_error(409, "conflict");

    call(
        &auth,
        &owner,
        Method::PATCH,
        "/v1/auth/admin/roles/owner",
        Some(serde_json::json!({"scopes": "bookings:read"})),
    )
    .await
    .assert_error(409, "conflict");
    call(
        &auth,
        &owner,
        Method::DELETE,
        "/v1/auth/admin/roles/viewer",
        None,
    )
    .await
    .assert_error(409, "conflict");
    let clash = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/roles",
        Some(serde_json::json!({"name": "Admin", "scopes": "bookings:read"})),
    )
    .await
    .assert_error(422, "validation_failed");
    assert_eq!(clash["error"]["details"][0]["path"], "name");
    call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/roles",
        Some(serde_json::json!({"name": "bookers", "scopes": "bookings:read"})),
    )
    .await
    .assert_error(409, "conflict");
    // Another workspace cannot use or see the role.
    let other = auth.owner("other@example.com").await;
    call(
        &auth,
        &other,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "z@example.com", "role": role_id})),
    )
    .await
    .assert_error(422, "validation_failed");
    call(
        &auth,
        &other,
        Method::PATCH,
        &path,
        Some(serde_json::json!({"name": "x"})),
    )
    .await
    .assert_error(404, "not_found");
}

db_test!(the_gateway_looks_up_memberships, membership_lookup);
async fn membership_lookup(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let workspace = owner.workspace_id.clone().unwrap();
    let bob = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(serde_json::json!({"email": "bob@example.com", "role": "viewer"})),
    )
    .await
    .json()["data"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ask = |who: Identity, user: String| lookup(&auth, who, user, workspace.clone());
    let answer = ask(Identity::gateway(), bob.clone()).await.json()["data"].clone();
    assert_eq!(answer["member"], true);
    assert_eq!(answer["role"], "viewer");
    assert!(
        answer["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "bookings:read")
    );
    ask(owner.clone(), bob.clone())
        .await
        .assert_error(404, "not_found");

    call(
        &auth,
        &owner,
        Method::DELETE,
        &format!("/v1/auth/admin/users/{bob}"),
        None,
    )
    .await;
    assert_eq!(
        ask(Identity::gateway(), bob).await.json()["data"],
        serde_json::json!({"member": false})
    );
    assert_eq!(
        ask(
            Identity::gateway(),
            "usr_01JNOSUCHUSER00000000000000".into()
        )
        .await
        .json()["data"]["member"],
        false
    );
}

async fn lookup(
    auth: &TestAuth,
    who: Identity,
    user: String,
    workspace: String,
) -> testkit::TestResponse {
    call(
        auth,
        &who,
        Method::POST,
        "/internal/memberships/lookup",
        Some(serde_json::json!({"user_id": user, "workspace_id": workspace})),
    )
    .await
}

db_test!(member_and_role_lists_page_and_sort, admin_paging);
async fn admin_paging(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    for email in ["dora@example.com", "bob@example.com", "carl@example.com"] {
        call(
            &auth,
            &owner,
            Method::POST,
            "/v1/auth/admin/users",
            Some(serde_json::json!({"email": email, "role": "viewer"})),
        )
        .await;
    }
    let emails = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["email"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_email = call(
        &auth,
        &owner,
        Method::GET,
        "/v1/auth/admin/users?sort=email.desc",
        None,
    )
    .await
    .json();
    assert_eq!(
        emails(&by_email),
        [
            "owner@example.com",
            "dora@example.com",
            "carl@example.com",
            "bob@example.com"
        ]
    );
    let pages = crate::profile::walk(&auth, &owner, "/v1/auth/admin/users?page_size=3").await;
    assert_eq!(pages.len(), 2);
    let mut walked: Vec<String> = pages.iter().flat_map(emails).collect();
    assert_eq!(walked[0], "carl@example.com", "the newest member first");
    walked.sort();
    walked.dedup();
    assert_eq!(walked.len(), 4);

    // Roles: the four built-in ones first, then the custom ones in `sort` order.
    for name in ["zeta", "eta", "theta"] {
        let created = call(
            &auth,
            &owner,
            Method::POST,
            "/v1/auth/admin/roles",
            Some(serde_json::json!({"name": name, "scopes": "bookings:read"})),
        )
        .await;
        assert_eq!(created.status, 201, "{:?}", created.json());
        assert!(created.json()["data"]["created_at"].is_string());
    }
    let pages = crate::profile::walk(
        &auth,
        &owner,
        "/v1/auth/admin/roles?page_size=3&sort=name.asc",
    )
    .await;
    let names: Vec<&str> = pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["owner", "admin", "member", "viewer", "eta", "theta", "zeta"]
    );
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|p| p["pagination"]["total_results"] == 7));
    let newest = call(
        &auth,
        &owner,
        Method::GET,
        "/v1/auth/admin/roles?page=2&page_size=4",
        None,
    )
    .await
    .json();
    let names: Vec<&str> = newest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["theta", "eta", "zeta"], "custom roles newest first");
    assert!(newest["next_cursor"].is_null());
    assert!(newest["prev_cursor"].is_string());
    call(
        &auth,
        &owner,
        Method::GET,
        "/v1/auth/admin/roles?sort=scopes.asc",
        None,
    )
    .await
    .assert_error(400, "validation_failed");
}
