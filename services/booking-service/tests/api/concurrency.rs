//! The no-overlap guarantee under concurrency, and against a brute-force model.

use crate::helpers::{TestBooking, anonymous, at, nine_to_five};
use chrono::Duration;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::json;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

db_test!(concurrent_overlapping_bookings_one_wins, concurrent_on);
async fn concurrent_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    // Two replicas (two pools) on the one database, as deployed.
    let other = t.replica(|_| {}).await;
    let org = t.org().await;
    let space = t.space(&org, json!({"booking_increment": 15})).await;
    // Every request overlaps every other: starts 10:00–10:45, an hour long.
    let requests = (0..100).map(|i| {
        let start = at(2, 10, 0) + Duration::minutes(15 * (i % 4));
        let server = if i % 2 == 0 { &t.server } else { &other };
        let request = server
            .client
            .request(
                testkit::reqwest::Method::POST,
                server.url("/api/v1/bookings"),
            )
            .header(
                identity::HEADER,
                testkit::identity::token(&t.owner, "booking-service"),
            )
            .json(&TestBooking::booking(
                &space,
                start,
                start + Duration::hours(1),
            ));
        server.send(request)
    });
    let answers = futures_util::future::join_all(requests).await;
    let created: Vec<_> = answers.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "exactly one booking wins");
    let winner = created[0].json()["data"]["id"].as_str().unwrap().to_owned();
    for r in answers.iter().filter(|r| r.status != 201) {
        let body = r.assert_error(409, "conflict");
        assert!(
            body["message"].as_str().unwrap().contains(&winner),
            "{body}"
        );
    }
    let listed = t
        .get(&format!("/api/v1/bookings?meeting_space_id={space}"))
        .await
        .json();
    assert_eq!(listed["meta"]["total"], 1);
}

// Random bookings (and cancellations) of one space, sent one by one, are
// accepted exactly when a brute-force check of the accepted ones says they fit.
db_test!(overlap_agrees_with_brute_force, brute_force_on);
async fn brute_force_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let mut runner = TestRunner::deterministic();
    // (buffer before, buffer after) in quarter hours, then up to 12 requests of
    // (start quarter, length in quarters, cancel it afterwards?).
    let strategy = (
        0i64..3,
        0i64..3,
        prop::collection::vec((0i64..40, 1i64..8, prop::bool::weighted(0.2)), 1..12),
    );
    for case in 0..20 {
        let (before, after, requests) = strategy.new_tree(&mut runner).unwrap().current();
        let space = t
            .space(
                &org,
                json!({"booking_increment": 15, "min_duration": 15, "max_duration": 480,
                       "buffer_before": before * 15, "buffer_after": after * 15}),
            )
            .await;
        // Accepted, still active: blocked intervals in quarters.
        let mut active: Vec<(i64, i64)> = Vec::new();
        for (start, len, cancel) in requests {
            let blocked = (start - before, start + len + after);
            let expected = !active.iter().any(|&(s, e)| s < blocked.1 && blocked.0 < e);
            let from = at(2, 6, 0) + Duration::minutes(15 * start);
            let r = t
                .book(&space, from, from + Duration::minutes(15 * len))
                .await;
            assert_eq!(
                r.status,
                if expected { 201 } else { 409 },
                "case {case}: buffers {before}/{after}, [{start}, {}) against {active:?}: {}",
                start + len,
                r.json()
            );
            if expected {
                if cancel {
                    let id = r.json()["data"]["id"].as_str().unwrap().to_owned();
                    let c = t
                        .patch(&format!("/api/v1/bookings/{id}/cancel"), json!({}))
                        .await;
                    assert_eq!(c.status, 200);
                } else {
                    active.push(blocked);
                }
            }
        }
    }
}

db_test!(concurrent_reschedules_one_wins, reschedules_on);
async fn reschedules_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let space = t.space(&org, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let start = at(3, 0, 0) + Duration::hours(i);
        let r = t.book(&space, start, start + Duration::hours(1)).await;
        assert_eq!(r.status, 201);
        ids.push(r.json()["data"]["id"].as_str().unwrap().to_owned());
    }
    // All move onto one free hour at once.
    let target = at(4, 12, 0);
    let body = json!({"start_time": crate::helpers::rfc(target), "end_time": crate::helpers::rfc(target + Duration::hours(1))});
    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/api/v1/bookings/{id}"))
        .collect();
    let answers =
        futures_util::future::join_all(paths.iter().map(|path| t.patch(path, body.clone()))).await;
    let moved = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(moved, 1);
    for r in answers.iter().filter(|r| r.status != 200) {
        r.assert_error(409, "conflict");
    }
}

// A replica checks bookings against the spaces as it last read them; whatever
// changes through another replica holds on its next booking all the same,
// whether it refuses what was allowed or allows what was refused.
db_test!(a_replica_books_by_the_latest_version, latest_version_on);
async fn latest_version_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let other = t.replica(|_| {}).await;
    let org = t.org().await;
    let space = t
        .space(&org, json!({"booking_increment": 30, "max_duration": 120}))
        .await;
    let hours = |day, hour, length| (at(day, hour, 0), at(day, hour, 0) + Duration::hours(length));
    let book = |who, times| t.book_on(&other, who, &space, times);
    let space_path = format!("/api/v1/meeting-spaces/{space}");

    assert_eq!(book(&t.owner, hours(2, 10, 2)).await.status, 201);
    // Stricter through the first replica: refused through the other.
    assert_eq!(
        t.patch(&space_path, json!({"max_duration": 60}))
            .await
            .status,
        200
    );
    book(&t.owner, hours(3, 10, 2))
        .await
        .assert_error(400, "validation_failed");
    // Looser: allowed, although the other replica last read the stricter rule.
    assert_eq!(
        t.patch(&space_path, json!({"max_duration": 240}))
            .await
            .status,
        200
    );
    assert_eq!(book(&t.owner, hours(4, 10, 3)).await.status, 201);

    // Business hours, 09:00 to 17:00 every day.
    let put = t
        .call(
            &t.owner,
            Method::PUT,
            &format!("{space_path}/business-hours"),
            Some(nine_to_five()),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.json());
    book(&t.owner, hours(5, 7, 1))
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(book(&t.owner, hours(5, 9, 1)).await.status, 201);

    // An unavailability period.
    let added = t
        .post(
            &format!("{space_path}/unavailability"),
            json!({"start_time": crate::helpers::rfc(at(6, 12, 0)), "end_time": crate::helpers::rfc(at(6, 14, 0))}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.json());
    book(&t.owner, hours(6, 12, 1))
        .await
        .assert_error(400, "validation_failed");

    // The organization's time zone: 01:00 UTC is 10:00 in Tokyo, 10:00 UTC is 19:00.
    let moved = t
        .patch(
            &format!("/api/v1/organizations/{org}"),
            json!({"timezone": "Asia/Tokyo"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.json());
    book(&t.owner, hours(7, 10, 1))
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(book(&t.owner, hours(7, 1, 1)).await.status, 201);

    // Public booking, off and then on.
    let nobody = anonymous();
    book(&nobody, hours(8, 1, 1))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        t.patch(&space_path, json!({"public_booking": true}))
            .await
            .status,
        200
    );
    let public = book(&nobody, hours(8, 1, 1)).await;
    assert_eq!(public.status, 201, "{}", public.json());
    assert_eq!(public.json()["data"]["status"], "pending");

    // Deleted.
    let deleted = t.call(&t.owner, Method::DELETE, &space_path, None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.json());
    book(&t.owner, hours(9, 1, 1))
        .await
        .assert_error(404, "not_found");
}
