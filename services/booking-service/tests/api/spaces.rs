//! Meeting spaces: CRUD, rules, filters, business hours, unavailability.

use crate::helpers::{TestBooking, anonymous, at, nine_to_five, rfc, slug};
use serde_json::json;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

db_test!(space_lifecycle, space_lifecycle_on);
async fn space_lifecycle_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org_in("Europe/London").await;
    let s = slug("board-room");
    let created = t
        .post(
            "/api/v1/meeting-spaces",
            json!({
                "organization_id": org, "name": "Board room", "slug": s, "capacity": 12,
                "description": "Top floor", "amenities": ["projector", "whiteboard"],
                "booking_increment": 15, "min_duration": 30, "max_duration": 240,
                "buffer_before": 5, "buffer_after": 10, "public_booking": true,
                "requires_check_in": true, "check_in_grace_minutes": 10
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let space = created.json()["data"].clone();
    let id = space["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ms_"));
    assert_eq!(space["timezone"], "Europe/London");
    assert_eq!(space["timezone_override"], serde_json::Value::Null);
    assert_eq!(space["amenities"], json!(["projector", "whiteboard"]));
    assert_eq!(space["buffer_after"], 10);

    let public = t
        .call(
            &anonymous(),
            Method::GET,
            &format!("/api/v1/meeting-spaces/by-slug/{s}"),
            None,
        )
        .await;
    assert_eq!(public.status, 200);
    let data = public.json()["data"].clone();
    assert_eq!(data["id"], id.as_str());
    assert!(
        data.get("buffer_before").is_none() && data.get("organization_id").is_none(),
        "{data}"
    );

    let changed = t
        .patch(
            &format!("/api/v1/meeting-spaces/{id}"),
            json!({"capacity": 20, "timezone": "Asia/Tokyo"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.json());
    assert_eq!(changed.json()["data"]["capacity"], 20);
    assert_eq!(changed.json()["data"]["timezone"], "Asia/Tokyo");
    assert_eq!(changed.json()["data"]["min_duration"], 30);

    // Rules are checked together, on create and on change.
    let bad = t
        .patch(
            &format!("/api/v1/meeting-spaces/{id}"),
            json!({"booking_increment": 7, "min_duration": 0}),
        )
        .await;
    let body = bad.assert_error(400, "validation_failed");
    let fields: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].clone())
        .collect();
    assert!(
        fields.contains(&json!("booking_increment")) && fields.contains(&json!("min_duration")),
        "{body}"
    );
    t.post(
        "/api/v1/meeting-spaces",
        json!({"organization_id": org, "name": "R", "slug": slug("r"), "min_duration": 60, "max_duration": 30}),
    )
    .await
    .assert_error(400, "validation_failed");
    t.post(
        "/api/v1/meeting-spaces",
        json!({"name": "R", "slug": slug("r")}),
    )
    .await
    .assert_error(400, "validation_failed");
    t.post(
        "/api/v1/meeting-spaces",
        json!({"organization_id": org, "name": "R", "slug": s}),
    )
    .await
    .assert_error(409, "conflict");

    let deleted = t
        .call(
            &t.owner,
            Method::DELETE,
            &format!("/api/v1/meeting-spaces/{id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    t.get(&format!("/api/v1/meeting-spaces/{id}"))
        .await
        .assert_error(404, "not_found");
}

db_test!(space_filters, space_filters_on);
async fn space_filters_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let small = t
        .space(&org, json!({"capacity": 4, "amenities": ["tv"]}))
        .await;
    let big = t
        .space(
            &org,
            json!({"capacity": 20, "amenities": ["projector", "tv"]}),
        )
        .await;
    let other_org = t.org().await;
    t.space(&other_org, json!({"capacity": 50})).await;

    let ids = |r: serde_json::Value| -> Vec<String> {
        r["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(t
            .get(&format!("/api/v1/meeting-spaces?organization_id={org}"))
            .await
            .json()),
        [small.clone(), big.clone()]
    );
    assert_eq!(
        ids(t
            .get(&format!(
                "/api/v1/meeting-spaces?organization_id={org}&capacity_gte=10"
            ))
            .await
            .json()),
        vec![big.clone()]
    );
    assert_eq!(
        ids(t
            .get(&format!(
                "/api/v1/meeting-spaces?organization_id={org}&amenity=projector"
            ))
            .await
            .json()),
        vec![big.clone()]
    );
    assert_eq!(
        ids(t
            .get(&format!(
                "/api/v1/meeting-spaces?organization_id={org}&amenity=tv"
            ))
            .await
            .json())
        .len(),
        2
    );
    assert_eq!(
        ids(t.get("/api/v1/meeting-spaces?amenity=p%25").await.json()).len(),
        0
    );

    // Booked spaces drop out of an availability window that overlaps the booking.
    assert_eq!(t.book(&small, at(2, 10, 0), at(2, 11, 0)).await.status, 201);
    let window = |from, to| {
        format!(
            "/api/v1/meeting-spaces?organization_id={org}&available_from={}&available_to={}",
            urlencode(&rfc(from)),
            urlencode(&rfc(to))
        )
    };
    assert_eq!(
        ids(t.get(&window(at(2, 10, 30), at(2, 12, 0))).await.json()),
        vec![big.clone()]
    );
    // Touching is free.
    assert_eq!(
        ids(t.get(&window(at(2, 11, 0), at(2, 12, 0))).await.json()).len(),
        2
    );
    t.get(&format!(
        "/api/v1/meeting-spaces?available_from={}",
        urlencode(&rfc(at(2, 10, 0)))
    ))
    .await
    .assert_error(400, "validation_failed");
    t.get("/api/v1/meeting-spaces?capacity_gte=lots")
        .await
        .assert_error(400, "validation_failed");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

db_test!(business_hours_and_unavailability, business_hours_on);
async fn business_hours_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let space = t.space(&org, json!({})).await;
    let path = format!("/api/v1/meeting-spaces/{space}/business-hours");
    let put = t
        .call(&t.owner, Method::PUT, &path, Some(nine_to_five()))
        .await;
    assert_eq!(put.status, 200, "{}", put.json());
    let got = t.get(&path).await.json();
    assert_eq!(got["data"]["hours"].as_array().unwrap().len(), 7);
    assert_eq!(
        got["data"]["hours"][0],
        json!({"weekday": "monday", "open": "09:00", "close": "17:00"})
    );

    // Inside business hours it books; outside it does not.
    assert_eq!(t.book(&space, at(3, 9, 0), at(3, 10, 0)).await.status, 201);
    let early = t.book(&space, at(3, 8, 0), at(3, 9, 0)).await;
    assert_eq!(
        early.assert_error(400, "validation_failed")["errors"][0]["field"],
        "start_time"
    );
    t.book(&space, at(3, 16, 30), at(3, 17, 30))
        .await
        .assert_error(400, "validation_failed");

    for bad in [
        json!({"hours": [{"weekday": "monday", "open": "17:00", "close": "09:00"}]}),
        json!({"hours": [{"weekday": "monday", "open": "9am", "close": "17:00"}]}),
        json!({"hours": [{"weekday": "monday", "open": "09:00", "close": "12:00"}, {"weekday": "monday", "open": "11:00", "close": "13:00"}]}),
        json!({"hours": [{"weekday": "funday", "open": "09:00", "close": "12:00"}]}),
    ] {
        let r = t
            .call(&t.owner, Method::PUT, &path, Some(bad.clone()))
            .await;
        r.assert_error(400, "validation_failed");
    }

    // Unavailability blocks new bookings.
    let ua_path = format!("/api/v1/meeting-spaces/{space}/unavailability");
    let added = t
        .post(&ua_path, json!({"start_time": rfc(at(4, 12, 0)), "end_time": rfc(at(4, 14, 0)), "reason": "cleaning"}))
        .await;
    assert_eq!(added.status, 201, "{}", added.json());
    let ua = added.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.get(&ua_path).await.json()["meta"]["total"], 1);
    let blocked = t.book(&space, at(4, 13, 0), at(4, 14, 0)).await;
    assert!(
        blocked.assert_error(400, "validation_failed")["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
    assert_eq!(t.book(&space, at(4, 14, 0), at(4, 15, 0)).await.status, 201);
    t.post(
        &ua_path,
        json!({"start_time": rfc(at(4, 14, 0)), "end_time": rfc(at(4, 12, 0))}),
    )
    .await
    .assert_error(400, "validation_failed");
    let del = t
        .call(&t.owner, Method::DELETE, &format!("{ua_path}/{ua}"), None)
        .await;
    assert_eq!(del.status, 200);
    assert_eq!(t.book(&space, at(4, 13, 0), at(4, 14, 0)).await.status, 201);
    t.call(&t.owner, Method::DELETE, &format!("{ua_path}/{ua}"), None)
        .await
        .assert_error(404, "not_found");

    // An empty list opens the space around the clock.
    t.call(&t.owner, Method::PUT, &path, Some(json!({"hours": []})))
        .await;
    assert_eq!(t.book(&space, at(5, 2, 0), at(5, 3, 0)).await.status, 201);
}
