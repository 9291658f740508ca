//! Availability over HTTP: slots in the space's time zone, DST days, ranges.

use crate::helpers::{TestBooking, anonymous, at};
use chrono::Duration;
use serde_json::json;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

db_test!(availability_slots, availability_on);
async fn availability_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let space = t.space(&org, json!({"buffer_after": 30})).await;
    let day = at(2, 0, 0).date_naive();
    t.book(&space, at(2, 10, 0), at(2, 11, 0)).await;
    let r = t
        .get(&format!(
            "/api/v1/meeting-spaces/{space}/availability?date={day}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let data = r.json()["data"].clone();
    assert_eq!(data["timezone"], "UTC");
    let slots = data["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 48);
    let status = |i: usize| slots[i]["status"].as_str().unwrap().to_owned();
    assert_eq!(status(18), "available");
    assert_eq!(status(20), "booked");
    assert_eq!(status(21), "booked");
    // In the booking's buffer, and where this slot's own buffer would reach it.
    assert_eq!(status(22), "unavailable");
    assert_eq!(status(19), "unavailable");
    assert_eq!(status(23), "available");

    // A range of up to 31 days.
    let to = day + Duration::days(30);
    let month = t
        .get(&format!(
            "/api/v1/meeting-spaces/{space}/availability?from={day}&to={to}"
        ))
        .await;
    assert_eq!(
        month.json()["data"]["slots"].as_array().unwrap().len(),
        48 * 31
    );
    let too_long = day + Duration::days(31);
    t.get(&format!(
        "/api/v1/meeting-spaces/{space}/availability?from={day}&to={too_long}"
    ))
    .await
    .assert_error(400, "validation_failed");
    for bad in [
        "date=tomorrow",
        "date=2025-02-30",
        "",
        "from=2025-01-02&to=2025-01-01",
        "date=2025-01-01&from=2025-01-01",
    ] {
        t.get(&format!(
            "/api/v1/meeting-spaces/{space}/availability?{bad}"
        ))
        .await
        .assert_error(400, "validation_failed");
    }
    // Not public: anonymous callers see nothing.
    t.call(
        &anonymous(),
        Method::GET,
        &format!("/api/v1/meeting-spaces/{space}/availability?date={day}"),
        None,
    )
    .await
    .assert_error(404, "not_found");
}

db_test!(availability_across_dst, dst_on);
async fn dst_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org_in("Europe/London").await;
    let space = t
        .space(&org, json!({"booking_increment": 60, "min_duration": 60}))
        .await;
    let t = &t;
    let space = &space;
    let slots = |date: &'static str| async move {
        let path = format!("/api/v1/meeting-spaces/{space}/availability?date={date}");
        t.get(&path).await.json()["data"]["slots"]
            .as_array()
            .unwrap()
            .clone()
    };
    // Spring forward: 23 hours, no 01:00.
    let short = slots("2030-03-31").await;
    assert_eq!(short.len(), 23);
    let local: Vec<_> = short
        .iter()
        .map(|s| s["local_start_time"].as_str().unwrap()[11..16].to_owned())
        .collect();
    assert_eq!(&local[..3], ["00:00", "02:00", "03:00"]);
    assert_eq!(short[1]["start_time"], "2030-03-31T01:00:00.000Z");
    // Fall back: 25 hours, 01:00 twice (BST, then GMT).
    let long = slots("2030-10-27").await;
    assert_eq!(long.len(), 25);
    assert_eq!(long[1]["local_start_time"], "2030-10-27T01:00:00+01:00");
    assert_eq!(long[2]["local_start_time"], "2030-10-27T01:00:00+00:00");
    // Either 01:00 can be booked, and they are different hours.
    let first = t
        .book(
            space,
            "2030-10-27T00:00:00Z".parse().unwrap(),
            "2030-10-27T01:00:00Z".parse().unwrap(),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.json());
    let second = t
        .book(
            space,
            "2030-10-27T01:00:00Z".parse().unwrap(),
            "2030-10-27T02:00:00Z".parse().unwrap(),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.json());
    let after = slots("2030-10-27").await;
    assert_eq!(after[1]["status"], "booked");
    assert_eq!(after[2]["status"], "booked");
    assert_eq!(after[3]["status"], "available");
}
