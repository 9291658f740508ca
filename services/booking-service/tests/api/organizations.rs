//! Organizations and space groups: CRUD, slugs, time zones, tenant isolation,
//! the public look-up.

use crate::helpers::{TestBooking, anonymous, member, new_workspace, slug, with_scopes};
use serde_json::json;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

db_test!(organization_lifecycle, organization_lifecycle_on);
async fn organization_lifecycle_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let s = slug("acme");
    let created = t
        .post(
            "/api/v1/organizations",
            json!({"name": "Acme", "slug": s, "timezone": "Europe/London", "settings": {"color": "blue"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let org = created.json()["data"].clone();
    let id = org["id"].as_str().unwrap();
    assert!(id.starts_with("org_"));
    assert_eq!(org["slug"], s.as_str());
    assert_eq!(org["settings"]["color"], "blue");

    let list = t.get("/api/v1/organizations?limit=10").await.json();
    assert_eq!(list["success"], true);
    assert_eq!(list["meta"], json!({"page": 1, "limit": 10, "total": 1}));
    assert_eq!(list["data"][0]["id"], id);

    let changed = t
        .patch(
            &format!("/api/v1/organizations/{id}"),
            json!({"name": "Acme Ltd", "timezone": "America/New_York"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.json());
    assert_eq!(changed.json()["data"]["name"], "Acme Ltd");
    assert_eq!(changed.json()["data"]["timezone"], "America/New_York");
    assert_eq!(changed.json()["data"]["settings"]["color"], "blue");

    // The public look-up shows public fields only, to anyone.
    let public = t
        .call(
            &anonymous(),
            Method::GET,
            &format!("/api/v1/organizations/by-slug/{s}"),
            None,
        )
        .await;
    assert_eq!(public.status, 200);
    let data = public.json()["data"].clone();
    assert_eq!(data["id"], id);
    assert!(
        data.get("settings").is_none() && data.get("created_at").is_none(),
        "{data}"
    );
    t.call(
        &anonymous(),
        Method::GET,
        "/api/v1/organizations/by-slug/nope",
        None,
    )
    .await
    .assert_error(404, "not_found");
    // Anonymous callers get nothing else.
    t.call(&anonymous(), Method::GET, "/api/v1/organizations", None)
        .await
        .assert_error(401, "unauthorized");

    let deleted = t
        .call(
            &t.owner,
            Method::DELETE,
            &format!("/api/v1/organizations/{id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    t.get(&format!("/api/v1/organizations/{id}"))
        .await
        .assert_error(404, "not_found");
}

db_test!(organization_validation, organization_validation_on);
async fn organization_validation_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let bad = t
        .post(
            "/api/v1/organizations",
            json!({"name": "", "slug": "Not Valid", "timezone": "Mars/Olympus"}),
        )
        .await;
    let body = bad.assert_error(400, "validation_failed");
    let fields: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "slug", "timezone"]);
    t.post("/api/v1/organizations", json!({"name": "A", "slug": "a"}))
        .await
        .assert_error(400, "validation_failed");
    let settings = t
        .post(
            "/api/v1/organizations",
            json!({"name": "A", "slug": slug("a"), "timezone": "UTC", "settings": [1]}),
        )
        .await;
    assert_eq!(
        settings.assert_error(400, "validation_failed")["errors"][0]["field"],
        "settings"
    );

    // Slugs are unique across workspaces.
    let s = slug("taken");
    let body = json!({"name": "A", "slug": s, "timezone": "UTC"});
    assert_eq!(
        t.post("/api/v1/organizations", body.clone()).await.status,
        201
    );
    let other = member(&new_workspace());
    let again = t
        .call(&other, Method::POST, "/api/v1/organizations", Some(body))
        .await;
    assert_eq!(
        again.assert_error(409, "conflict")["errors"][0]["field"],
        "slug"
    );

    // Malformed input never answers 5xx.
    let raw = t
        .server
        .send(
            t.request_as(&t.owner, Method::POST, "/api/v1/organizations")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    raw.assert_error(400, "invalid_json");
    t.get("/api/v1/organizations?limit=500")
        .await
        .assert_error(400, "validation_failed");
    // NUL characters (which PostgreSQL text cannot hold) are refused, not stored.
    let nul = t
        .post(
            "/api/v1/organizations",
            json!({"name": "A\0B", "slug": slug("nul"), "timezone": "UTC"}),
        )
        .await;
    nul.assert_error(400, "validation_failed");
    for path in [
        "/api/v1/organizations/by-slug/a%00b",
        "/api/v1/meeting-spaces/by-slug/a%00b",
        "/api/v1/organizations/org_%00",
    ] {
        t.get(path).await.assert_error(404, "not_found");
    }
    for path in [
        "/api/v1/meeting-spaces?amenity=a%00b",
        "/api/v1/meeting-spaces?organization_id=a%00b",
        "/api/v1/space-groups?organization_id=a%00b",
        "/api/v1/bookings?organizer_email=a%00b",
    ] {
        t.get(path).await.assert_error(400, "validation_failed");
    }
    let org = t.org().await;
    for body in [
        json!({"organization_id": org, "name": "R", "slug": slug("r"), "description": "a\0"}),
        json!({"organization_id": org, "name": "R", "slug": slug("r"), "amenities": ["a\0"]}),
    ] {
        t.post("/api/v1/meeting-spaces", body)
            .await
            .assert_error(400, "validation_failed");
    }
    t.post(
        "/api/v1/meeting-spaces",
        json!({"space_group_id": "sg\0", "name": "R", "slug": slug("r")}),
    )
    .await
    .assert_error(404, "not_found");
}

db_test!(tenants_are_isolated, tenants_are_isolated_on);
async fn tenants_are_isolated_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let group = t
        .post(
            "/api/v1/space-groups",
            json!({"organization_id": org, "name": "HQ", "address": "1 Main St"}),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let space = t.space(&org, json!({})).await;
    let booking = t
        .book(
            &space,
            crate::helpers::at(2, 10, 0),
            crate::helpers::at(2, 11, 0),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let ua = t
        .post(
            &format!("/api/v1/meeting-spaces/{space}/unavailability"),
            json!({"start_time": "2040-01-01T00:00:00Z", "end_time": "2040-01-02T00:00:00Z"}),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let stranger = member(&new_workspace());
    for (method, path) in [
        (
            Method::DELETE,
            format!("/api/v1/meeting-spaces/{space}/unavailability/{ua}"),
        ),
        (Method::GET, format!("/api/v1/organizations/{org}")),
        (Method::DELETE, format!("/api/v1/organizations/{org}")),
        (Method::GET, format!("/api/v1/space-groups/{group}")),
        (Method::DELETE, format!("/api/v1/space-groups/{group}")),
        (Method::GET, format!("/api/v1/meeting-spaces/{space}")),
        (Method::DELETE, format!("/api/v1/meeting-spaces/{space}")),
        (
            Method::GET,
            format!("/api/v1/meeting-spaces/{space}/business-hours"),
        ),
        (
            Method::GET,
            format!("/api/v1/meeting-spaces/{space}/unavailability"),
        ),
        (
            Method::GET,
            format!("/api/v1/meeting-spaces/{space}/availability?date=2030-01-01"),
        ),
        (Method::GET, format!("/api/v1/bookings/{booking}")),
        (Method::POST, format!("/api/v1/bookings/{booking}/check-in")),
        (Method::POST, format!("/api/v1/bookings/{booking}/confirm")),
        (
            Method::POST,
            format!("/api/v1/bookings/{booking}/check-out"),
        ),
    ] {
        let r = t.call(&stranger, method.clone(), &path, None).await;
        r.assert_error(404, "not_found");
    }
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/organizations/{org}"),
            json!({"name": "x"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/space-groups/{group}"),
            json!({"name": "x"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/meeting-spaces/{space}"),
            json!({"name": "x"}),
        ),
        (
            Method::PUT,
            format!("/api/v1/meeting-spaces/{space}/business-hours"),
            json!({"hours": []}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/bookings/{booking}"),
            json!({"notes": "x"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/bookings/{booking}/cancel"),
            json!({}),
        ),
        (
            Method::POST,
            "/api/v1/space-groups".into(),
            json!({"organization_id": org, "name": "x"}),
        ),
        (
            Method::POST,
            "/api/v1/meeting-spaces".into(),
            json!({"organization_id": org, "name": "x", "slug": slug("x")}),
        ),
        (
            Method::POST,
            format!("/api/v1/meeting-spaces/{space}/unavailability"),
            json!({"start_time": "2041-01-01T00:00:00Z", "end_time": "2041-01-02T00:00:00Z"}),
        ),
        (
            Method::POST,
            "/api/v1/bookings".into(),
            TestBooking::booking(
                &space,
                crate::helpers::at(3, 10, 0),
                crate::helpers::at(3, 11, 0),
            ),
        ),
    ] {
        let r = t.call(&stranger, method, &path, Some(body)).await;
        r.assert_error(404, "not_found");
    }
    // Lists show only the caller's workspace.
    for path in [
        "/api/v1/organizations",
        "/api/v1/space-groups",
        "/api/v1/meeting-spaces",
        "/api/v1/bookings",
    ] {
        let r = t.call(&stranger, Method::GET, path, None).await;
        assert_eq!(r.json()["meta"]["total"], 0, "{path}");
        assert_eq!(t.get(path).await.json()["meta"]["total"], 1, "{path}");
    }
    // Scopes are enforced: reading does not allow writing.
    let reader = with_scopes(
        t.owner.workspace_id.as_deref().unwrap(),
        "organizations:read",
    );
    t.call(
        &reader,
        Method::POST,
        "/api/v1/organizations",
        Some(json!({"name": "a", "slug": slug("a"), "timezone": "UTC"})),
    )
    .await
    .assert_error(403, "forbidden");
    t.call(&reader, Method::GET, "/api/v1/bookings", None)
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        t.call(&reader, Method::GET, "/api/v1/organizations", None)
            .await
            .status,
        200
    );
}

db_test!(space_group_lifecycle, space_group_lifecycle_on);
async fn space_group_lifecycle_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org_in("Europe/London").await;
    let other_org = t.org().await;
    let created = t
        .post(
            "/api/v1/space-groups",
            json!({"organization_id": org, "name": "HQ", "timezone": "Europe/Berlin", "address": "Unter den Linden 1"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let group = created.json()["data"]["id"].as_str().unwrap().to_owned();
    assert!(group.starts_with("sg_"));
    t.post(
        "/api/v1/space-groups",
        json!({"organization_id": other_org, "name": "Annex"}),
    )
    .await;
    let listed = t
        .get(&format!("/api/v1/space-groups?organization_id={org}"))
        .await
        .json();
    assert_eq!(listed["meta"]["total"], 1);
    assert_eq!(listed["data"][0]["timezone"], "Europe/Berlin");
    let changed = t
        .patch(
            &format!("/api/v1/space-groups/{group}"),
            json!({"address": "Elsewhere"}),
        )
        .await;
    assert_eq!(changed.json()["data"]["address"], "Elsewhere");
    assert_eq!(changed.json()["data"]["name"], "HQ");

    // A space in the group keeps the group's time zone and joins its organization.
    let space = t
        .post(
            "/api/v1/meeting-spaces",
            json!({"space_group_id": group, "name": "Room", "slug": slug("room")}),
        )
        .await;
    assert_eq!(space.status, 201, "{}", space.json());
    assert_eq!(space.json()["data"]["timezone"], "Europe/Berlin");
    assert_eq!(space.json()["data"]["organization_id"], org.as_str());
    t.post(
        "/api/v1/meeting-spaces",
        json!({"space_group_id": group, "organization_id": other_org, "name": "Room", "slug": slug("room")}),
    )
    .await
    .assert_error(400, "validation_failed");
    t.post(
        "/api/v1/space-groups",
        json!({"organization_id": org, "name": "X", "timezone": "Nowhere/City"}),
    )
    .await
    .assert_error(400, "validation_failed");

    // Deleting the group deletes its spaces.
    let space_id = space.json()["data"]["id"].as_str().unwrap().to_owned();
    let deleted = t
        .call(
            &t.owner,
            Method::DELETE,
            &format!("/api/v1/space-groups/{group}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    t.get(&format!("/api/v1/meeting-spaces/{space_id}"))
        .await
        .assert_error(404, "not_found");
}
