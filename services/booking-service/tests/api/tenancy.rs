//! SpaceOS's system key (`x-api-key: sys_…`, no `x-workspace-key`) on the
//! booking routes: lists span every workspace (narrowed by `organization_id`),
//! a route naming a resource acts in its workspace, a create in the workspace
//! of the organization or space it names. Organizations' `logo`. A `page`
//! walk returns every item once.

use crate::helpers::{TestBooking, at, member, new_workspace, slug};
use identity::{Identity, PrincipalType, ScopeSet};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

fn system() -> Identity {
    Identity {
        principal_id: "system".into(),
        principal_type: PrincipalType::System,
        workspace_id: None,
        scopes: ScopeSet::all(),
        space_id: None,
        organization_id: None,
    }
}

fn ids(body: &Value) -> BTreeSet<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

db_test!(
    a_system_key_spans_workspaces,
    a_system_key_spans_workspaces_on
);
async fn a_system_key_spans_workspaces_on(kind: DbKind) {
    let app = TestBooking::start(kind).await;
    let other = member(&new_workspace());
    let sys = system();
    // Workspace A (the app's owner) and B, an organization, a space and a
    // booking each.
    let org_a = app.org().await;
    let space_a = app.space(&org_a, json!({})).await;
    let booked_a = app.book(&space_a, at(2, 10, 0), at(2, 11, 0)).await;
    assert_eq!(booked_a.status, 201, "{}", booked_a.json());
    let org_b = app
        .call(
            &other,
            Method::POST,
            "/api/v1/organizations",
            Some(json!({"name": "Beta", "slug": slug("beta"), "timezone": "UTC"})),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let space_b = app
        .call(
            &other,
            Method::POST,
            "/api/v1/meeting-spaces",
            Some(json!({"organization_id": org_b, "name": "B room", "slug": slug("b-room")})),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let booked_b = app
        .call(
            &other,
            Method::POST,
            "/api/v1/bookings",
            Some(TestBooking::booking(&space_b, at(2, 12, 0), at(2, 13, 0))),
        )
        .await;
    assert_eq!(booked_b.status, 201, "{}", booked_b.json());
    let booking_b = booked_b.json()["data"]["id"].as_str().unwrap().to_owned();

    // Lists span both workspaces; organization_id narrows them.
    let orgs = app
        .call(&sys, Method::GET, "/api/v1/organizations?limit=100", None)
        .await;
    assert_eq!(orgs.status, 200, "{}", orgs.json());
    assert!(ids(&orgs.json()).is_superset(&[org_a.clone(), org_b.clone()].into()));
    let spaces = app
        .call(&sys, Method::GET, "/api/v1/meeting-spaces", None)
        .await
        .json();
    assert_eq!(ids(&spaces), [space_a.clone(), space_b.clone()].into());
    let all_bookings = app.call(&sys, Method::GET, "/api/v1/bookings", None).await;
    assert_eq!(all_bookings.json()["meta"]["total"], 2);
    let narrowed = app
        .call(
            &sys,
            Method::GET,
            &format!("/api/v1/bookings?organization_id={org_b}"),
            None,
        )
        .await
        .json();
    assert_eq!(ids(&narrowed), [booking_b.clone()].into());

    // A route naming a resource acts in its workspace.
    let got = app
        .call(
            &sys,
            Method::GET,
            &format!("/api/v1/bookings/{booking_b}"),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.json());
    assert_eq!(got.json()["data"]["meeting_space_id"], space_b.as_str());
    let renamed = app
        .call(
            &sys,
            Method::PATCH,
            &format!("/api/v1/organizations/{org_b}"),
            Some(json!({"name": "Beta renamed"})),
        )
        .await;
    assert_eq!(renamed.json()["data"]["name"], "Beta renamed");
    app.call(
        &sys,
        Method::GET,
        "/api/v1/organizations/org_01J0X0M7KNG7KQZ4XQY4J6V6P4",
        None,
    )
    .await
    .assert_error(404, "not_found");

    // A create acts in the workspace of what it names: B's owner sees the new
    // space, A's does not.
    let made = app
        .call(
            &sys,
            Method::POST,
            "/api/v1/meeting-spaces",
            Some(json!({"organization_id": org_b, "name": "Sys room", "slug": slug("sys")})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.json());
    let made = made.json()["data"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/meeting-spaces/{made}");
    assert_eq!(app.call(&other, Method::GET, &path, None).await.status, 200);
    app.get(&path).await.assert_error(404, "not_found");
    let sys_booking = app
        .call(
            &sys,
            Method::POST,
            "/api/v1/bookings",
            Some(TestBooking::booking(&space_a, at(3, 10, 0), at(3, 11, 0))),
        )
        .await;
    assert_eq!(sys_booking.status, 201, "{}", sys_booking.json());
    let sys_booking = sys_booking.json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get(&format!("/api/v1/bookings/{sys_booking}"))
            .await
            .status,
        200
    );
    // Naming nothing that exists is a 404; naming nothing, a validation error.
    app.call(
        &sys,
        Method::POST,
        "/api/v1/space-groups",
        Some(json!({"organization_id": "org_01J0X0M7KNG7KQZ4XQY4J6V6P4", "name": "G"})),
    )
    .await
    .assert_error(404, "not_found");
    app.call(
        &sys,
        Method::POST,
        "/api/v1/meeting-spaces",
        Some(json!({"name": "Nowhere", "slug": slug("nowhere")})),
    )
    .await
    .assert_error(400, "validation_failed");
    // An organization belongs to a workspace the key cannot tell: it must
    // select one.
    app.call(
        &sys,
        Method::POST,
        "/api/v1/organizations",
        Some(json!({"name": "Gamma", "slug": slug("gamma"), "timezone": "UTC"})),
    )
    .await
    .assert_error(403, "forbidden");
    // Other credentials still reach their own workspace only.
    let mine = app.get("/api/v1/bookings").await.json();
    assert_eq!(
        mine["meta"]["total"], 2,
        "A's own and the one the system key made"
    );
}

db_test!(organizations_carry_a_logo, organizations_carry_a_logo_on);
async fn organizations_carry_a_logo_on(kind: DbKind) {
    let app = TestBooking::start(kind).await;
    let logo = "https://cdn.example.com/acme/logo.png";
    let slug = slug("logo");
    let created = app
        .post(
            "/api/v1/organizations",
            json!({"name": "Acme", "slug": slug, "timezone": "UTC", "logo": logo}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let id = created.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["data"]["logo"], logo);
    let path = format!("/api/v1/organizations/{id}");
    assert_eq!(app.get(&path).await.json()["data"]["logo"], logo);
    let public = app
        .call(
            &Identity::anonymous(),
            Method::GET,
            &format!("/api/v1/organizations/by-slug/{slug}"),
            None,
        )
        .await;
    assert_eq!(public.json()["data"]["logo"], logo);
    // An absent logo stays; null removes it.
    let renamed = app.patch(&path, json!({"name": "Acme 2"})).await;
    assert_eq!(renamed.json()["data"]["logo"], logo);
    let cleared = app.patch(&path, json!({"logo": null})).await;
    assert_eq!(cleared.json()["data"]["logo"], Value::Null);
    for bad in [
        "not a url",
        "ftp://x/y.png",
        "https://",
        "javascript:alert(1)",
    ] {
        let refused = app.patch(&path, json!({"logo": bad})).await;
        let body = refused.assert_error(400, "validation_failed");
        assert_eq!(body["errors"][0]["field"], "logo", "{bad}");
    }
    let long = format!("https://x.example/{}", "a".repeat(2048));
    app.patch(&path, json!({"logo": long}))
        .await
        .assert_error(400, "validation_failed");
}

db_test!(pages_walk_every_item_once, pages_walk_every_item_once_on);
async fn pages_walk_every_item_once_on(kind: DbKind) {
    let app = TestBooking::start(kind).await;
    let mut made = BTreeSet::new();
    for _ in 0..5 {
        made.insert(app.org().await);
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let body = app
            .get(&format!("/api/v1/organizations?page={page}&limit=2"))
            .await
            .json();
        assert_eq!(body["meta"], json!({"page": page, "limit": 2, "total": 5}));
        seen.extend(ids(&body));
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), made);
    let past = app.get("/api/v1/organizations?page=4&limit=2").await.json();
    assert_eq!(past["data"], json!([]));
}

db_test!(
    an_organization_bound_key_reaches_its_organization_only,
    bound_key_on
);
async fn bound_key_on(kind: DbKind) {
    let app = TestBooking::start(kind).await;
    let workspace = app.owner.workspace_id.clone().unwrap();
    let ours = app.org().await;
    let theirs = app.org().await;
    let our_space = app.space(&ours, json!({})).await;
    let their_space = app.space(&theirs, json!({})).await;
    let our_booking = app
        .book(&our_space, at(2, 10, 0), at(2, 11, 0))
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let their_booking = app
        .book(&their_space, at(2, 10, 0), at(2, 11, 0))
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // What the gateway sends for a workspace API key bound to `ours`.
    let key = Identity {
        principal_id: "apk_1".into(),
        principal_type: PrincipalType::ApiKey,
        workspace_id: Some(workspace),
        scopes: ScopeSet::parse(
            "organizations:read organizations:write bookings:read bookings:write",
        )
        .unwrap(),
        space_id: None,
        organization_id: Some(ours.clone()),
    };
    let get = |path: String| {
        let (app, key) = (&app, &key);
        async move { app.call(key, Method::GET, &path, None).await }
    };
    // Its own organization's resources, and nothing of the other's.
    for path in [
        format!("/api/v1/organizations/{ours}"),
        format!("/api/v1/meeting-spaces/{our_space}"),
        format!("/api/v1/bookings/{our_booking}"),
    ] {
        assert_eq!(get(path.clone()).await.status, 200, "{path}");
    }
    for path in [
        format!("/api/v1/organizations/{theirs}"),
        format!("/api/v1/meeting-spaces/{their_space}"),
        format!("/api/v1/meeting-spaces/{their_space}/availability?date=2030-01-01"),
        format!("/api/v1/bookings/{their_booking}"),
        format!("/api/v1/bookings?organization_id={theirs}"),
    ] {
        get(path.clone()).await.assert_error(404, "not_found");
    }
    app.call(
        &key,
        Method::PATCH,
        &format!("/api/v1/bookings/{their_booking}/cancel"),
        None,
    )
    .await
    .assert_error(404, "not_found");
    // Lists show its organization's only.
    let orgs = get("/api/v1/organizations".into()).await.json();
    assert_eq!(ids(&orgs), [ours.clone()].into());
    let spaces = get("/api/v1/meeting-spaces".into()).await.json();
    assert_eq!(ids(&spaces), [our_space.clone()].into());
    let bookings = get("/api/v1/bookings".into()).await.json();
    assert_eq!(ids(&bookings), [our_booking].into());
    // It creates within its organization only, and no organizations.
    let made = app
        .call(
            &key,
            Method::POST,
            "/api/v1/meeting-spaces",
            Some(json!({"organization_id": ours, "name": "Ours", "slug": slug("ours")})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.json());
    app.call(
        &key,
        Method::POST,
        "/api/v1/meeting-spaces",
        Some(json!({"organization_id": theirs, "name": "Theirs", "slug": slug("theirs")})),
    )
    .await
    .assert_error(404, "not_found");
    app.call(
        &key,
        Method::POST,
        "/api/v1/bookings",
        Some(TestBooking::booking(
            &their_space,
            at(3, 10, 0),
            at(3, 11, 0),
        )),
    )
    .await
    .assert_error(404, "not_found");
    let booked = app
        .call(
            &key,
            Method::POST,
            "/api/v1/bookings",
            Some(TestBooking::booking(&our_space, at(3, 10, 0), at(3, 11, 0))),
        )
        .await;
    assert_eq!(booked.status, 201, "{}", booked.json());
    app.call(
        &key,
        Method::POST,
        "/api/v1/organizations",
        Some(json!({"name": "New", "slug": slug("new"), "timezone": "UTC"})),
    )
    .await
    .assert_error(403, "forbidden");
}
