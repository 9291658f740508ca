//! The booking lifecycle that runs by itself: `booking.start` 15 minutes
//! before the start, `confirmed → active` at the start, `active → completed`
//! with `booking.end` at the end, no-shows released with `booking.cancelled`;
//! each move and event once however many replicas run it, and in time order,
//! marked `late`, after downtime.
//!
//! The API refuses times in the past, so tests that need a booking to have
//! started or ended move it in the database ([`move_bookings`]).

use crate::helpers::{
    Moved, Recorded, TestBooking, eventually, move_bookings, recorded, recorded_about,
};
use booking_service::lifecycle::Lifecycle;
use chrono::{DateTime, Duration, DurationRound, Utc};
use events::Nudge;
use serde_json::{Value, json};
use store::Database;
use testkit::{DbKind, db_test};

fn id_of(r: &testkit::TestResponse) -> String {
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()["data"]["id"].as_str().unwrap().to_owned()
}

/// The next whole `minutes` step after now, plus `steps` more.
fn step_after_now(minutes: i64, steps: i32) -> DateTime<Utc> {
    let step = Duration::minutes(minutes);
    Utc::now().duration_trunc(step).unwrap() + step * (1 + steps)
}

async fn booking(t: &TestBooking, id: &str) -> Value {
    t.get(&format!("/api/v1/bookings/{id}")).await.json()["data"].clone()
}

async fn wait_for_status(t: &TestBooking, id: &str, status: &str) -> Value {
    eventually(&format!("{id} to be {status}"), || async {
        let b = booking(t, id).await;
        (b["status"] == status).then_some(b)
    })
    .await
}

/// The events of `subject` once there are `n` of them.
async fn events_of(db: &Database, subject: &str, n: usize) -> Vec<Recorded> {
    eventually(&format!("{n} events about {subject}"), || async {
        let events = recorded_about(db, subject).await;
        (events.len() >= n).then_some(events)
    })
    .await
}

fn types(events: &[Recorded]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

fn wire(t: DateTime<Utc>) -> String {
    service_kit::time::format_rfc3339(t)
}

db_test!(a_start_within_15_minutes_is_announced_at_once, announced_on);
async fn announced_on(kind: DbKind) {
    let t = TestBooking::start_with(kind, |c| c.bookings.lifecycle_interval_secs = 1).await;
    let db = t.database().await;
    let org = t.org().await;
    let space = t.space(&org, json!({"booking_increment": 5})).await;
    let start = step_after_now(5, 1);
    let soon = id_of(&t.book(&space, start, start + Duration::minutes(30)).await);
    let later_start = step_after_now(5, 24);
    let later = id_of(
        &t.book(&space, later_start, later_start + Duration::minutes(30))
            .await,
    );

    let events = events_of(&db, &soon, 2).await;
    assert_eq!(types(&events), ["booking.created", "booking.start"]);
    let announced = &events[1];
    assert_eq!(
        announced.data,
        json!({
            "booking_id": soon,
            "meeting_space_id": space,
            "organization_id": org,
            "start_time": wire(start),
            "end_time": wire(start + Duration::minutes(30)),
            "status": "confirmed",
            "organizer": {"name": "John Doe", "email": "john@example.com"},
        }),
        "on time: no `late`"
    );
    assert_eq!(announced.organization_id.as_deref(), Some(org.as_str()));
    assert_eq!(
        announced.workspace_id.as_deref(),
        t.owner.workspace_id.as_deref()
    );
    assert_eq!(announced.producer, "booking-service");
    assert_eq!(announced.request_id, None, "the lifecycle is no request");
    // A booking two hours away is not announced yet, and the announced one
    // stays confirmed until it starts.
    assert_eq!(
        types(&recorded_about(&db, &later).await),
        ["booking.created"]
    );
    assert_eq!(booking(&t, &soon).await["status"], "confirmed");
}

db_test!(
    a_one_minute_booking_starts_and_ends_by_itself,
    one_minute_on
);
async fn one_minute_on(kind: DbKind) {
    let t = TestBooking::start_with(kind, |c| c.bookings.lifecycle_interval_secs = 1).await;
    let db = t.database().await;
    let org = t.org().await;
    let space = t
        .space(&org, json!({"booking_increment": 1, "min_duration": 1}))
        .await;
    // The API takes a one-minute booking on the next minute…
    let start = step_after_now(1, 1);
    let id = id_of(&t.book(&space, start, start + Duration::minutes(1)).await);
    assert_eq!(
        types(&events_of(&db, &id, 2).await),
        ["booking.created", "booking.start"]
    );

    // …which is then brought to start two seconds from now.
    let start = Utc::now() + Duration::seconds(2);
    let end = start + Duration::minutes(1);
    let deadline = None;
    move_bookings(
        &db,
        vec![(
            id.clone(),
            Moved {
                start,
                end,
                deadline,
            },
        )],
    )
    .await;
    let active = wait_for_status(&t, &id, "active").await;
    let started_at = DateTime::parse_from_rfc3339(active["updated_at"].as_str().unwrap()).unwrap();
    assert!(started_at >= start.duration_trunc(Duration::milliseconds(1)).unwrap());
    assert!(active["checked_in_at"].is_null(), "started, not checked in");
    assert_eq!(types(&recorded_about(&db, &id).await).len(), 2, "no event");

    // The minute passes (its end brought to a second from now).
    let end = Utc::now() + Duration::seconds(1);
    move_bookings(
        &db,
        vec![(
            id.clone(),
            Moved {
                start,
                end,
                deadline,
            },
        )],
    )
    .await;
    let completed = wait_for_status(&t, &id, "completed").await;
    let ended_at = DateTime::parse_from_rfc3339(completed["updated_at"].as_str().unwrap()).unwrap();
    assert!(ended_at >= end.duration_trunc(Duration::milliseconds(1)).unwrap());
    let events = events_of(&db, &id, 3).await;
    assert_eq!(
        types(&events),
        ["booking.created", "booking.start", "booking.end"]
    );
    assert_eq!(events[2].data["status"], "completed");
    assert_eq!(events[2].data["end_time"], wire(end));
    assert_eq!(events[2].data.get("late"), None);
}

db_test!(two_replicas_make_each_move_once, two_replicas_on);
async fn two_replicas_on(kind: DbKind) {
    let t = TestBooking::start_with(kind, |c| c.bookings.lifecycle_interval_secs = 1).await;
    let _replica = t.replica(|c| c.bookings.lifecycle_interval_secs = 1).await;
    let db = t.database().await;
    let org = t.org().await;
    let free = t.space(&org, json!({"booking_increment": 5})).await;
    let strict = t
        .space(
            &org,
            json!({"booking_increment": 5, "requires_check_in": true, "check_in_grace_minutes": 5}),
        )
        .await;
    let now = Utc::now();
    let mut runs = Vec::new();
    let mut no_shows = Vec::new();
    let mut moves = Vec::new();
    for i in 0..4 {
        let slot = step_after_now(5, 20 + i);
        let run = id_of(&t.book(&free, slot, slot + Duration::minutes(5)).await);
        let no_show = id_of(&t.book(&strict, slot, slot + Duration::minutes(5)).await);
        // Half over already, half due in the next seconds, while both
        // replicas run.
        let start = if i % 2 == 0 {
            now - Duration::minutes(30) + Duration::minutes(5 * i64::from(i))
        } else {
            now + Duration::seconds(i64::from(i))
        };
        let end = start + Duration::seconds(2);
        moves.push((
            run.clone(),
            Moved {
                start,
                end,
                deadline: None,
            },
        ));
        moves.push((
            no_show.clone(),
            Moved {
                start,
                end,
                deadline: Some(start + Duration::seconds(1)),
            },
        ));
        runs.push(run);
        no_shows.push(no_show);
    }
    move_bookings(&db, moves).await;
    for id in &runs {
        wait_for_status(&t, id, "completed").await;
    }
    for id in &no_shows {
        assert_eq!(
            wait_for_status(&t, id, "cancelled").await["cancel_reason"],
            "no_show"
        );
    }
    // Nothing is left to do, whoever runs now.
    let lifecycle = Lifecycle::new(db.clone(), Nudge::new(), std::time::Duration::from_secs(1));
    let (a, b) = tokio::join!(lifecycle.run(Utc::now()), lifecycle.run(Utc::now()));
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty());

    let all = recorded(&db).await;
    let count = |subject: &str, event_type: &str| {
        all.iter()
            .filter(|e| e.subject_id == subject && e.event_type == event_type)
            .count()
    };
    for id in &runs {
        assert_eq!(count(id, "booking.start"), 1, "{id}");
        assert_eq!(count(id, "booking.end"), 1, "{id}");
        assert_eq!(count(id, "booking.cancelled"), 0, "{id}");
    }
    for id in &no_shows {
        assert_eq!(count(id, "booking.start"), 1, "{id}");
        assert_eq!(count(id, "booking.cancelled"), 1, "{id}");
        assert_eq!(count(id, "booking.end"), 0, "{id}");
    }
    let by_type = |event_type: &str| all.iter().filter(|e| e.event_type == event_type).count();
    assert_eq!(by_type("booking.created"), 8);
    assert_eq!(by_type("booking.start"), 8);
    assert_eq!(by_type("booking.end"), 4);
    assert_eq!(by_type("booking.cancelled"), 4);
    assert_eq!(all.len(), 24);
}

db_test!(
    after_downtime_moves_catch_up_in_time_order_marked_late,
    catch_up_on
);
async fn catch_up_on(kind: DbKind) {
    // The first replica runs the lifecycle once, at start-up: after that it
    // is as good as down.
    let t = TestBooking::start_with(kind, |c| c.bookings.lifecycle_interval_secs = 3600).await;
    let db = t.database().await;
    let org = t.org().await;
    let free = t.space(&org, json!({})).await;
    let other = t.space(&org, json!({})).await;
    let strict = t
        .space(
            &org,
            json!({"requires_check_in": true, "check_in_grace_minutes": 10}),
        )
        .await;
    let slot = |days| crate::helpers::at(days, 10, 0);
    let a = id_of(&t.book(&free, slot(2), slot(2) + Duration::hours(1)).await);
    let b = id_of(&t.book(&other, slot(2), slot(2) + Duration::hours(1)).await);
    let c = id_of(&t.book(&strict, slot(2), slot(2) + Duration::hours(1)).await);

    // What happened while no replica ran, oldest first:
    //   a announced −3h15, started −3h; b announced −2h45, started −2h30;
    //   a ended −2h; c announced −1h55, released (no-show) −1h30; b ended −1h.
    let now = Utc::now();
    let ago = |minutes| now - Duration::minutes(minutes);
    move_bookings(
        &db,
        vec![
            (
                a.clone(),
                Moved {
                    start: ago(180),
                    end: ago(120),
                    deadline: None,
                },
            ),
            (
                b.clone(),
                Moved {
                    start: ago(150),
                    end: ago(60),
                    deadline: None,
                },
            ),
            (
                c.clone(),
                Moved {
                    start: ago(100),
                    end: ago(40),
                    deadline: Some(ago(90)),
                },
            ),
        ],
    )
    .await;

    // A replica comes up and catches up.
    let _replica = t.replica(|c| c.bookings.lifecycle_interval_secs = 1).await;
    wait_for_status(&t, &b, "completed").await;
    let lifecycle: Vec<(String, String)> = recorded(&db)
        .await
        .into_iter()
        .filter(|e| e.event_type != "booking.created")
        .map(|e| {
            assert_eq!(e.data["late"], true, "{} {}", e.event_type, e.subject_id);
            (e.event_type, e.subject_id)
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("booking.start", &a),
        ("booking.start", &b),
        ("booking.end", &a),
        ("booking.start", &c),
        ("booking.cancelled", &c),
        ("booking.end", &b),
    ]
    .iter()
    .map(|(t, id)| (t.to_string(), id.to_string()))
    .collect();
    assert_eq!(lifecycle, expected);
    assert_eq!(booking(&t, &a).await["status"], "completed");
    assert_eq!(booking(&t, &c).await["cancel_reason"], "no_show");

    // Back on time: a booking made now is announced without `late`.
    let space = t.space(&org, json!({"booking_increment": 5})).await;
    let start = step_after_now(5, 1);
    let d = id_of(&t.book(&space, start, start + Duration::minutes(30)).await);
    let events = events_of(&db, &d, 2).await;
    assert_eq!(events[1].event_type, "booking.start");
    assert_eq!(events[1].data.get("late"), None);
}
