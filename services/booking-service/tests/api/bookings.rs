//! Bookings: creation rules, conflicts, the state machine, no-shows,
//! idempotency and anonymous bookings.

use crate::helpers::{TestBooking, anonymous, at, rfc};
use booking_service::lifecycle::Lifecycle;
use chrono::{Duration, DurationRound, Utc};
use events::Nudge;
use serde_json::json;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

fn id_of(r: &testkit::TestResponse) -> String {
    r.json()["data"]["id"].as_str().unwrap().to_owned()
}

db_test!(booking_basics, booking_basics_on);
async fn booking_basics_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let space = t.space(&org, json!({})).await;
    let first = t.book(&space, at(2, 10, 0), at(2, 11, 0)).await;
    assert_eq!(first.status, 201, "{}", first.json());
    let b = first.json()["data"].clone();
    assert!(b["id"].as_str().unwrap().starts_with("bk_"));
    assert_eq!(b["status"], "confirmed");
    assert_eq!(b["organizer_email"], "john@example.com");
    assert_eq!(
        b["start_time"],
        service_kit::time::format_rfc3339(at(2, 10, 0))
    );

    // Touching intervals both hold; an overlap is refused naming the booking.
    assert_eq!(t.book(&space, at(2, 11, 0), at(2, 12, 0)).await.status, 201);
    assert_eq!(t.book(&space, at(2, 9, 0), at(2, 10, 0)).await.status, 201);
    let clash = t.book(&space, at(2, 10, 30), at(2, 11, 30)).await;
    let body = clash.assert_error(409, "conflict");
    let first_id = b["id"].as_str().unwrap();
    assert!(
        body["message"].as_str().unwrap().contains(first_id),
        "{body}"
    );
    // Times with an offset are the same instants.
    let offset = t
        .post(
            "/api/v1/bookings",
            json!({"meeting_space_id": space, "start_time": (at(2, 10, 0)).with_timezone(&chrono::FixedOffset::east_opt(7200).unwrap()).to_rfc3339(),
                   "end_time": rfc(at(2, 10, 30)), "organizer_name": "A", "organizer_email": "a@example.com"}),
        )
        .await;
    offset.assert_error(409, "conflict");

    // Another space is independent.
    let other = t.space(&org, json!({})).await;
    assert_eq!(
        t.book(&other, at(2, 10, 30), at(2, 11, 30)).await.status,
        201
    );

    // Lists filter.
    let all = t.get("/api/v1/bookings").await.json();
    assert_eq!(all["meta"]["total"], 4);
    let second = t.get("/api/v1/bookings?limit=3&page=2").await.json();
    assert_eq!(second["meta"], json!({"page": 2, "limit": 3, "total": 4}));
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["id"], all["data"][3]["id"]);
    let by_organizer = t
        .get("/api/v1/bookings?organizer_email=nobody%40example.com")
        .await
        .json();
    assert_eq!(by_organizer["meta"]["total"], 0);
    let by_org = t
        .get(&format!("/api/v1/bookings?organization_id={org}"))
        .await
        .json();
    assert_eq!(by_org["meta"]["total"], 4);
    let of_space = t
        .get(&format!(
            "/api/v1/bookings?meeting_space_id={space}&status=confirmed"
        ))
        .await
        .json();
    assert_eq!(of_space["meta"]["total"], 3);
    assert_eq!(
        of_space["data"][0]["start_time"],
        service_kit::time::format_rfc3339(at(2, 9, 0))
    );
    let window = t
        .get(&format!(
            "/api/v1/bookings?from={}&to={}",
            rfc(at(2, 10, 0)).replace(':', "%3A"),
            rfc(at(2, 11, 0)).replace(':', "%3A")
        ))
        .await
        .json();
    assert_eq!(window["meta"]["total"], 2, "{window}");
    t.get("/api/v1/bookings?status=lost")
        .await
        .assert_error(400, "validation_failed");
    t.get("/api/v1/bookings?from=yesterday")
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(
        t.get(&format!("/api/v1/bookings/{first_id}")).await.json()["data"]["id"],
        first_id
    );
    t.get("/api/v1/bookings/bk_nope")
        .await
        .assert_error(404, "not_found");
}

db_test!(buffers_keep_bookings_apart, buffers_on);
async fn buffers_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let space = t
        .space(
            &org,
            json!({"buffer_before": 15, "buffer_after": 30, "booking_increment": 15}),
        )
        .await;
    assert_eq!(t.book(&space, at(2, 10, 0), at(2, 11, 0)).await.status, 201);
    // Needs 30 (after) + 15 (before) minutes between bookings.
    t.book(&space, at(2, 11, 0), at(2, 12, 0))
        .await
        .assert_error(409, "conflict");
    t.book(&space, at(2, 11, 30), at(2, 12, 0))
        .await
        .assert_error(409, "conflict");
    assert_eq!(
        t.book(&space, at(2, 11, 45), at(2, 12, 0)).await.status,
        201
    );
    t.book(&space, at(2, 9, 0), at(2, 9, 30))
        .await
        .assert_error(409, "conflict");
    assert_eq!(t.book(&space, at(2, 8, 45), at(2, 9, 15)).await.status, 201);
}

db_test!(booking_validation, booking_validation_on);
async fn booking_validation_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let space = t
        .space(
            &org,
            json!({"booking_increment": 30, "min_duration": 30, "max_duration": 120}),
        )
        .await;
    let field_of = |r: &testkit::TestResponse| {
        r.assert_error(400, "validation_failed")["errors"][0]["field"].clone()
    };
    let mut body = TestBooking::booking(&space, at(2, 11, 0), at(2, 10, 0));
    assert_eq!(
        field_of(&t.post("/api/v1/bookings", body.clone()).await),
        "end_time"
    );
    body = TestBooking::booking(&space, at(-1, 10, 0), at(-1, 11, 0));
    assert_eq!(
        field_of(&t.post("/api/v1/bookings", body.clone()).await),
        "start_time"
    );
    body = TestBooking::booking(&space, at(2, 10, 0), at(2, 11, 0));
    body["start_time"] = json!("2030-01-01T10:00:00");
    assert_eq!(
        field_of(&t.post("/api/v1/bookings", body.clone()).await),
        "start_time"
    );
    body = TestBooking::booking(&space, at(2, 10, 0), at(2, 11, 0));
    body["organizer_email"] = json!("not-an-email");
    assert_eq!(
        field_of(&t.post("/api/v1/bookings", body.clone()).await),
        "organizer_email"
    );
    body = TestBooking::booking(&space, at(2, 10, 0), at(2, 11, 0));
    body["notes"] = json!("x".repeat(2001));
    assert_eq!(
        field_of(&t.post("/api/v1/bookings", body.clone()).await),
        "notes"
    );
    body["organizer_name"] = json!("");
    let both = t.post("/api/v1/bookings", body.clone()).await;
    assert_eq!(
        both.assert_error(400, "validation_failed")["errors"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Length and alignment against the space's rules.
    assert_eq!(
        field_of(&t.book(&space, at(2, 10, 0), at(2, 10, 20)).await),
        "end_time"
    );
    assert_eq!(
        field_of(&t.book(&space, at(2, 10, 0), at(2, 13, 0)).await),
        "end_time"
    );
    assert_eq!(
        field_of(&t.book(&space, at(2, 10, 15), at(2, 10, 45)).await),
        "start_time"
    );
    // Unknown fields and spaces.
    body = TestBooking::booking(&space, at(2, 10, 0), at(2, 11, 0));
    body["colour"] = json!("red");
    assert_eq!(field_of(&t.post("/api/v1/bookings", body).await), "colour");
    t.book("ms_01ARZ3NDEKTSV4RRFFQ69G5FAV", at(2, 10, 0), at(2, 11, 0))
        .await
        .assert_error(404, "not_found");
    t.book("nonsense", at(2, 10, 0), at(2, 11, 0))
        .await
        .assert_error(404, "not_found");
    body = TestBooking::booking(&space, at(2, 10, 0), at(2, 11, 0));
    body["start_time"] = json!(12);
    assert_eq!(
        field_of(&t.post("/api/v1/bookings", body).await),
        "start_time"
    );
    body = TestBooking::booking(&space, at(2, 10, 0), at(2, 11, 0));
    body["start_time"] = json!("+275760-09-13T00:00:00Z");
    assert_eq!(
        field_of(&t.post("/api/v1/bookings", body).await),
        "start_time"
    );
}

/// The next `step`-minute boundary at least a minute away.
fn soon(step: i64) -> chrono::DateTime<Utc> {
    (Utc::now() + Duration::minutes(1) + Duration::minutes(step))
        .duration_trunc(Duration::minutes(step))
        .unwrap()
}

db_test!(state_machine, state_machine_on);
async fn state_machine_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let space = t
        .space(&org, json!({"booking_increment": 5, "min_duration": 5}))
        .await;

    // confirmed → active → completed.
    let start = soon(5);
    let now_booking = id_of(&t.book(&space, start, start + Duration::minutes(30)).await);
    let path = |id: &str, action: &str| format!("/api/v1/bookings/{id}/{action}");
    t.post(&path(&now_booking, "confirm"), json!({}))
        .await
        .assert_error(409, "conflict");
    t.post(&path(&now_booking, "check-out"), json!({}))
        .await
        .assert_error(409, "conflict");
    let check_in = || {
        t.server.send(
            t.request_as(&t.owner, Method::POST, &path(&now_booking, "check-in"))
                .header("idempotency-key", "check-in-1"),
        )
    };
    let active = check_in().await;
    assert_eq!(active.status, 200, "{}", active.json());
    assert_eq!(active.json()["data"]["status"], "active");
    assert!(active.json()["data"]["checked_in_at"].is_string());
    // A retried check-in with its key replays the answer instead of a 409.
    let retried = check_in().await;
    assert_eq!(retried.status, 200, "{}", retried.json());
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(retried.json()["data"], active.json()["data"]);
    let cancel_active = t.patch(&path(&now_booking, "cancel"), json!({})).await;
    assert!(
        cancel_active.assert_error(409, "conflict")["message"]
            .as_str()
            .unwrap()
            .contains("active")
    );
    t.patch(
        &format!("/api/v1/bookings/{now_booking}"),
        json!({"start_time": rfc(at(3, 10, 0))}),
    )
    .await
    .assert_error(409, "conflict");
    let done = t
        .call(
            &t.owner,
            Method::POST,
            &path(&now_booking, "check-out"),
            None,
        )
        .await;
    assert_eq!(done.json()["data"]["status"], "completed");
    t.call(
        &t.owner,
        Method::POST,
        &path(&now_booking, "check-out"),
        None,
    )
    .await
    .assert_error(409, "conflict");

    // Check-in opens 15 minutes before the start.
    let later = id_of(&t.book(&space, at(2, 10, 0), at(2, 11, 0)).await);
    let early = t
        .call(&t.owner, Method::POST, &path(&later, "check-in"), None)
        .await;
    assert!(
        early.assert_error(409, "conflict")["message"]
            .as_str()
            .unwrap()
            .contains("15 minutes")
    );

    // Reschedule with the same rules; the old slot is freed.
    let moved = t
        .patch(
            &format!("/api/v1/bookings/{later}"),
            json!({"start_time": rfc(at(2, 14, 0)), "end_time": rfc(at(2, 15, 0)), "notes": "moved"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.json());
    assert_eq!(moved.json()["data"]["notes"], "moved");
    assert_eq!(t.book(&space, at(2, 10, 0), at(2, 11, 0)).await.status, 201);
    let blocker = id_of(&t.book(&space, at(2, 16, 0), at(2, 17, 0)).await);
    let onto = t
        .patch(
            &format!("/api/v1/bookings/{later}"),
            json!({"start_time": rfc(at(2, 15, 30)), "end_time": rfc(at(2, 16, 30))}),
        )
        .await;
    assert!(
        onto.assert_error(409, "conflict")["message"]
            .as_str()
            .unwrap()
            .contains(&blocker)
    );
    // Moving within its own old interval is no conflict with itself.
    let shift = t
        .patch(
            &format!("/api/v1/bookings/{later}"),
            json!({"start_time": rfc(at(2, 14, 30)), "end_time": rfc(at(2, 15, 30))}),
        )
        .await;
    assert_eq!(shift.status, 200, "{}", shift.json());
    t.patch(
        &format!("/api/v1/bookings/{later}"),
        json!({"end_time": rfc(at(2, 14, 0))}),
    )
    .await
    .assert_error(400, "validation_failed");

    // Cancel with a reason; cancelled is final.
    let cancelled = t
        .patch(&path(&later, "cancel"), json!({"reason": "admin"}))
        .await;
    assert_eq!(cancelled.json()["data"]["status"], "cancelled");
    assert_eq!(cancelled.json()["data"]["cancel_reason"], "admin");
    t.patch(&path(&later, "cancel"), json!({}))
        .await
        .assert_error(409, "conflict");
    t.call(&t.owner, Method::POST, &path(&later, "check-in"), None)
        .await
        .assert_error(409, "conflict");
    t.patch(&format!("/api/v1/bookings/{later}"), json!({"notes": "x"}))
        .await
        .assert_error(409, "conflict");
    // A cancelled booking frees its time.
    assert_eq!(
        t.book(&space, at(2, 14, 30), at(2, 15, 30)).await.status,
        201
    );
    // Without a body the reason is `user`; `no_show` is the service's own.
    let plain = id_of(&t.book(&space, at(3, 10, 0), at(3, 11, 0)).await);
    t.patch(&path(&plain, "cancel"), json!({"reason": "no_show"}))
        .await
        .assert_error(400, "validation_failed");
    t.patch(&path(&plain, "cancel"), json!({"reason": "bored"}))
        .await
        .assert_error(400, "validation_failed");
    let bare = t
        .server
        .send(t.request_as(&t.owner, Method::PATCH, &path(&plain, "cancel")))
        .await;
    assert_eq!(bare.status, 200, "{}", bare.json());
    assert_eq!(bare.json()["data"]["cancel_reason"], "user");
}

db_test!(no_shows_are_released, no_shows_on);
async fn no_shows_on(kind: DbKind) {
    let t = TestBooking::start_with(kind, |c| c.bookings.lifecycle_interval_secs = 1).await;
    let org = t.org().await;
    let strict = t
        .space(
            &org,
            json!({"requires_check_in": true, "check_in_grace_minutes": 10}),
        )
        .await;
    let relaxed = t.space(&org, json!({})).await;
    let b = t.book(&strict, at(2, 10, 0), at(2, 11, 0)).await.json()["data"].clone();
    assert_eq!(
        b["check_in_deadline"],
        service_kit::time::format_rfc3339(at(2, 10, 10))
    );
    let keep = id_of(&t.book(&relaxed, at(2, 10, 0), at(2, 11, 0)).await);

    let db = t.database().await;
    let lifecycle = Lifecycle::new(db.clone(), Nudge::new(), std::time::Duration::from_secs(1));
    // Before the deadline nothing is released (the other booking, on a space
    // without check-in, starts by itself).
    let before = lifecycle.run(at(2, 10, 9)).await.unwrap();
    assert_eq!((before.released, before.started), (0, 1));
    // Two replicas running at once release the booking once.
    let sweep_at = at(2, 10, 11);
    let (a, b2) = tokio::join!(lifecycle.run(sweep_at), lifecycle.run(sweep_at));
    assert_eq!(a.unwrap().released + b2.unwrap().released, 1);
    let released = t
        .get(&format!("/api/v1/bookings/{}", b["id"].as_str().unwrap()))
        .await
        .json();
    assert_eq!(released["data"]["status"], "cancelled");
    assert_eq!(released["data"]["cancel_reason"], "no_show");
    assert!(released["data"]["check_in_deadline"].is_null());
    assert_eq!(
        t.get(&format!("/api/v1/bookings/{keep}")).await.json()["data"]["status"],
        "active"
    );
    // The time is free again.
    let again = t.book(&strict, at(2, 10, 0), at(2, 11, 0)).await;
    assert_eq!(again.status, 201);

    // The service's own sweep releases it once its deadline has passed
    // (moved into the past here rather than waited for).
    let id = again.json()["data"]["id"].as_str().unwrap().to_owned();
    let past = (Utc::now() - Duration::minutes(1)).naive_utc();
    let moved = id.clone();
    db.run(move |conn| {
        use booking_service::schema::bookings;
        use diesel::prelude::*;
        diesel::update(bookings::table.filter(bookings::id.eq(moved)))
            .set(bookings::check_in_deadline.eq(past))
            .execute(conn)
            .map_err(store::StoreError::from)
    })
    .await
    .unwrap();
    let mut status = String::new();
    for _ in 0..50 {
        status = t.get(&format!("/api/v1/bookings/{id}")).await.json()["data"]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "cancelled" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "cancelled");
}

db_test!(idempotency_keys, idempotency_on);
async fn idempotency_on(kind: DbKind) {
    let t = TestBooking::start(kind).await;
    let org = t.org().await;
    let space = t.space(&org, json!({})).await;
    let body = TestBooking::booking(&space, at(2, 10, 0), at(2, 11, 0));
    let send = |key: &str, body: serde_json::Value| {
        t.server.send(
            t.request_as(&t.owner, Method::POST, "/api/v1/bookings")
                .header("idempotency-key", key)
                .json(&body),
        )
    };
    let first = send("k-1", body.clone()).await;
    assert_eq!(first.status, 201);
    assert!(first.header("idempotent-replayed").is_none());
    let again = send("k-1", body.clone()).await;
    assert_eq!(again.status, 201, "{}", again.json());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["data"], first.json()["data"]);
    let mut other = body.clone();
    other["notes"] = json!("different");
    let misuse = send("k-1", other).await;
    assert_eq!(
        misuse.assert_error(400, "validation_failed")["errors"][0]["field"],
        "Idempotency-Key"
    );
    // Keys belong to a workspace: another workspace's same key is its own.
    let stranger = crate::helpers::member(&crate::helpers::new_workspace());
    let theirs = t
        .server
        .send(
            t.request_as(&stranger, Method::POST, "/api/v1/bookings")
                .header("idempotency-key", "k-1")
                .json(&body),
        )
        .await;
    theirs.assert_error(404, "not_found");
    // A failed request is not stored: the key stays usable.
    let clash = send("k-2", body.clone()).await;
    clash.assert_error(409, "conflict");
    let fixed = send(
        "k-2",
        TestBooking::booking(&space, at(2, 12, 0), at(2, 13, 0)),
    )
    .await;
    assert_eq!(fixed.status, 201);
    send("", body.clone())
        .await
        .assert_error(400, "validation_failed");

    // Concurrent duplicates make one booking.
    let body = TestBooking::booking(&space, at(3, 10, 0), at(3, 11, 0));
    let answers = futures_util::future::join_all((0..10).map(|_| send("k-3", body.clone()))).await;
    let ids: std::collections::BTreeSet<_> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.json());
            r.json()["data"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let listed = t
        .get(&format!("/api/v1/bookings?meeting_space_id={space}"))
        .await
        .json();
    assert_eq!(listed["meta"]["total"], 3);
}

db_test!(anonymous_bookings, anonymous_on);
async fn anonymous_on(kind: DbKind) {
    let t = TestBooking::start_with(kind, |c| c.bookings.anonymous_per_minute = 2).await;
    let org = t.org().await;
    let private = t.space(&org, json!({})).await;
    let public = t.space(&org, json!({"public_booking": true})).await;
    let anon = anonymous();
    let book = |space: &str, ip: &str, hour: u32| {
        t.server.send(
            t.request_as(&anon, Method::POST, "/api/v1/bookings")
                .header("x-forwarded-for", ip)
                .json(&TestBooking::booking(
                    space,
                    at(2, hour, 0),
                    at(2, hour + 1, 0),
                )),
        )
    };
    book(&private, "203.0.113.1", 8)
        .await
        .assert_error(404, "not_found");
    let made = book(&public, "203.0.113.1", 9).await;
    assert_eq!(made.status, 201, "{}", made.json());
    assert_eq!(made.json()["data"]["status"], "pending");
    book(&public, "203.0.113.1", 10)
        .await
        .assert_error(429, "rate_limited");
    // Another address has its own allowance.
    assert_eq!(book(&public, "203.0.113.2", 10).await.status, 201);

    // Public availability for public spaces only.
    let avail = |space: &str| {
        let path = format!(
            "/api/v1/meeting-spaces/{space}/availability?date={}",
            at(2, 0, 0).date_naive()
        );
        let anon = &anon;
        let t = &t;
        async move { t.call(anon, Method::GET, &path, None).await }
    };
    let open = avail(&public).await;
    assert_eq!(open.status, 200);
    assert_eq!(open.json()["data"]["slots"][18]["status"], "booked");
    avail(&private).await.assert_error(404, "not_found");
    // Anonymous callers read no bookings.
    t.call(&anon, Method::GET, "/api/v1/bookings", None)
        .await
        .assert_error(401, "unauthorized");

    // Members confirm pending bookings.
    let id = id_of(&made);
    let confirmed = t
        .call(
            &t.owner,
            Method::POST,
            &format!("/api/v1/bookings/{id}/confirm"),
            None,
        )
        .await;
    assert_eq!(confirmed.json()["data"]["status"], "confirmed");
}

/// Replicas share the anonymous limit through Redis.
#[tokio::test]
async fn anonymous_limit_is_shared_by_replicas() {
    let limit =
        |c: &mut booking_service::config::BookingConfig| c.bookings.anonymous_per_minute = 3;
    let t = TestBooking::start_on(DbKind::Sqlite, testkit::CacheKind::Redis, limit).await;
    let other = t.replica(limit).await;
    let org = t.org().await;
    let public = t.space(&org, json!({"public_booking": true})).await;
    let anon = anonymous();
    let mut statuses = Vec::new();
    for hour in 8..13 {
        let server = if hour % 2 == 0 { &t.server } else { &other };
        let request = server
            .client
            .request(Method::POST, server.url("/api/v1/bookings"))
            .header(
                identity::HEADER,
                testkit::identity::token(&anon, "booking-service"),
            )
            .header("x-forwarded-for", "198.51.100.7")
            .json(&TestBooking::booking(
                &public,
                at(2, hour, 0),
                at(2, hour + 1, 0),
            ));
        statuses.push(server.send(request).await.status);
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
}
