//! Each change through the API records exactly its event in the outbox, in
//! its transaction, with the envelope's ids and the documented payload; reads,
//! refused changes, replays and changes that do not bear on an event record
//! nothing.

use crate::helpers::{Recorded, TestBooking, anonymous, at, nine_to_five, recorded, slug};
use chrono::{Duration, DurationRound, Utc};
use serde_json::{Value, json};
use store::Database;
use testkit::reqwest::Method;
use testkit::{DbKind, TestResponse, db_test};

/// Reads the outbox as it grows.
struct Outbox {
    db: Database,
    seen: usize,
}

impl Outbox {
    /// The events recorded since the last call.
    async fn new_events(&mut self) -> Vec<Recorded> {
        let all = recorded(&self.db).await;
        let fresh = all[self.seen..].to_vec();
        self.seen = all.len();
        fresh
    }

    /// Exactly one event was recorded since the last call, of `event_type`,
    /// about `subject`, caused by the request that answered `r`.
    async fn one(&mut self, r: &TestResponse, event_type: &str, subject: &str) -> Recorded {
        assert!(r.status < 300, "{}", r.json());
        let fresh = self.new_events().await;
        let types: Vec<_> = fresh.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, [event_type], "after {}", r.json());
        let e = fresh.into_iter().next().unwrap();
        assert_eq!(e.subject_id, subject);
        assert_eq!(e.producer, "booking-service");
        assert_eq!(e.request_id.as_deref(), r.header("x-request-id"));
        e
    }

    async fn none(&mut self, after: &str) {
        let fresh = self.new_events().await;
        assert!(fresh.is_empty(), "{after} recorded {fresh:?}");
    }
}

fn id_of(r: &TestResponse) -> String {
    assert!(r.status < 300, "{}", r.json());
    r.json()["data"]["id"].as_str().unwrap().to_owned()
}

db_test!(each_change_records_exactly_its_event, each_change_on);
async fn each_change_on(kind: DbKind) {
    // The lifecycle runs once at start-up and then not for an hour, so every
    // event here is a request's.
    let t = TestBooking::start_with(kind, |c| c.bookings.lifecycle_interval_secs = 3600).await;
    let workspace = t.owner.workspace_id.clone();
    let mut outbox = Outbox {
        db: t.database().await,
        seen: 0,
    };

    // Organizations.
    let org = t.org().await;
    outbox.none("creating an organization").await;
    let r = t
        .patch(
            &format!("/api/v1/organizations/{org}"),
            json!({"name": "Acme Ltd", "logo": "https://example.com/logo.png"}),
        )
        .await;
    let e = outbox.one(&r, "organization.updated", &org).await;
    assert_eq!(e.workspace_id, workspace);
    assert_eq!(e.organization_id.as_deref(), Some(org.as_str()));
    let org_slug = r.json()["data"]["slug"].clone();
    assert_eq!(
        e.data,
        json!({"organization_id": org, "name": "Acme Ltd", "slug": org_slug,
               "timezone": "UTC", "logo": "https://example.com/logo.png"})
    );

    // Spaces: only what bears on booking them.
    let space = t.space(&org, json!({"booking_increment": 5})).await;
    outbox.none("creating a space").await;
    let space_path = format!("/api/v1/meeting-spaces/{space}");
    let r = t
        .patch(&space_path, json!({"name": "Board room", "capacity": 12}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    outbox.none("renaming a space").await;
    let availability =
        |reason: &str| json!({"meeting_space_id": space, "organization_id": org, "reason": reason});
    let r = t.patch(&space_path, json!({"buffer_after": 5})).await;
    let e = outbox.one(&r, "space.availability_changed", &space).await;
    assert_eq!(e.data, availability("space_updated"));
    assert_eq!(e.organization_id.as_deref(), Some(org.as_str()));
    assert_eq!(e.workspace_id, workspace);
    let r = t
        .call(
            &t.owner,
            Method::PUT,
            &format!("{space_path}/business-hours"),
            Some(nine_to_five()),
        )
        .await;
    let e = outbox.one(&r, "space.availability_changed", &space).await;
    assert_eq!(e.data, availability("business_hours"));
    let r = t
        .post(
            &format!("{space_path}/unavailability"),
            json!({"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z"}),
        )
        .await;
    let period = id_of(&r);
    let e = outbox.one(&r, "space.availability_changed", &space).await;
    assert_eq!(e.data, availability("unavailability_added"));
    let r = t
        .call(
            &t.owner,
            Method::DELETE,
            &format!("{space_path}/unavailability/{period}"),
            None,
        )
        .await;
    let e = outbox.one(&r, "space.availability_changed", &space).await;
    assert_eq!(e.data, availability("unavailability_removed"));

    // A time zone that spaces keep moves their slots: the organization's…
    let r = t
        .patch(
            &format!("/api/v1/organizations/{org}"),
            json!({"timezone": "Europe/London"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let fresh = outbox.new_events().await;
    let seen: Vec<_> = fresh
        .iter()
        .map(|e| (e.event_type.as_str(), e.subject_id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("organization.updated", org.as_str()),
            ("space.availability_changed", space.as_str())
        ]
    );
    assert_eq!(fresh[1].data, availability("space_updated"));
    // …and a group's, for the spaces that keep it (not for one with its own).
    let r = t
        .post(
            "/api/v1/space-groups",
            json!({"organization_id": org, "name": "Floor 1"}),
        )
        .await;
    let group = id_of(&r);
    let in_group = id_of(
        &t.post(
            "/api/v1/meeting-spaces",
            json!({"space_group_id": group, "name": "Nook", "slug": slug("nook")}),
        )
        .await,
    );
    let own_zone = id_of(
        &t.post(
            "/api/v1/meeting-spaces",
            json!({"space_group_id": group, "name": "Far", "slug": slug("far"),
                   "timezone": "Asia/Tokyo"}),
        )
        .await,
    );
    outbox.none("creating a group and its spaces").await;
    let group_path = format!("/api/v1/space-groups/{group}");
    let r = t.patch(&group_path, json!({"name": "Floor one"})).await;
    assert_eq!(r.status, 200, "{}", r.json());
    outbox.none("renaming a group").await;
    let r = t
        .patch(&group_path, json!({"timezone": "Europe/Paris"}))
        .await;
    let e = outbox
        .one(&r, "space.availability_changed", &in_group)
        .await;
    assert_ne!(e.subject_id, own_zone);

    // Bookings.
    let start = at(2, 10, 0);
    let end = at(2, 11, 0);
    let r = t.book(&space, start, end).await;
    let booking = id_of(&r);
    let e = outbox.one(&r, "booking.created", &booking).await;
    assert_eq!(e.workspace_id, workspace);
    assert_eq!(e.organization_id.as_deref(), Some(org.as_str()));
    let payload = |start, end, status: &str| {
        json!({
            "booking_id": booking,
            "meeting_space_id": space,
            "organization_id": org,
            "start_time": service_kit::time::format_rfc3339(start),
            "end_time": service_kit::time::format_rfc3339(end),
            "status": status,
            "organizer": {"name": "John Doe", "email": "john@example.com"},
        })
    };
    assert_eq!(e.data, payload(start, end, "confirmed"));
    // Refused: an overlap records nothing.
    assert_eq!(t.book(&space, start, end).await.status, 409);
    outbox.none("a refused booking").await;

    let booking_path = format!("/api/v1/bookings/{booking}");
    let r = t
        .patch(&booking_path, json!({"notes": "bring coffee"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    outbox.none("changing a booking's notes").await;
    let (moved_start, moved_end) = (at(2, 13, 0), at(2, 14, 30));
    let r = t
        .patch(
            &booking_path,
            json!({"start_time": crate::helpers::rfc(moved_start),
                   "end_time": crate::helpers::rfc(moved_end)}),
        )
        .await;
    let e = outbox.one(&r, "booking.updated", &booking).await;
    let mut expected = payload(moved_start, moved_end, "confirmed");
    expected["previous_start_time"] = service_kit::time::format_rfc3339(start).into();
    expected["previous_end_time"] = service_kit::time::format_rfc3339(end).into();
    assert_eq!(e.data, expected);
    let r = t
        .patch(
            &format!("{booking_path}/cancel"),
            json!({"reason": "admin"}),
        )
        .await;
    let e = outbox.one(&r, "booking.cancelled", &booking).await;
    let mut expected = payload(moved_start, moved_end, "cancelled");
    expected["reason"] = "admin".into();
    assert_eq!(e.data, expected);
    assert_eq!(
        t.patch(&format!("{booking_path}/cancel"), json!({}))
            .await
            .status,
        409
    );
    outbox.none("cancelling twice").await;

    // An anonymous booking is pending until a member confirms it.
    let public = t.space(&org, json!({"public_booking": true})).await;
    let r = t
        .server
        .send(
            t.request_as(&anonymous(), Method::POST, "/api/v1/bookings")
                .header("x-forwarded-for", "203.0.113.9")
                .json(&TestBooking::booking(&public, start, end)),
        )
        .await;
    let pending = id_of(&r);
    let e = outbox.one(&r, "booking.created", &pending).await;
    assert_eq!(e.data["status"], "pending");
    assert_eq!(e.workspace_id, workspace, "the space's workspace");
    let r = t
        .post(&format!("/api/v1/bookings/{pending}/confirm"), json!({}))
        .await;
    let e = outbox.one(&r, "booking.confirmed", &pending).await;
    assert_eq!(e.data["status"], "confirmed");
    let r = t
        .patch(&format!("/api/v1/bookings/{pending}/cancel"), json!({}))
        .await;
    let e = outbox.one(&r, "booking.cancelled", &pending).await;
    assert_eq!(e.data["reason"], "user");

    // A replayed request records nothing more.
    let keyed = |key: &str| {
        t.request_as(&t.owner, Method::POST, "/api/v1/bookings")
            .header("idempotency-key", key)
            .json(&TestBooking::booking(&space, at(3, 10, 0), at(3, 11, 0)))
    };
    let r = t.server.send(keyed("once")).await;
    let once = id_of(&r);
    outbox.one(&r, "booking.created", &once).await;
    let replay = t.server.send(keyed("once")).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    outbox.none("a replay").await;

    // Check-in announces a start the lifecycle has not announced yet; check-out
    // ends the booking.
    let open = t.space(&org, json!({"booking_increment": 5})).await;
    let soon = Utc::now().duration_trunc(Duration::minutes(5)).unwrap() + Duration::minutes(10);
    let r = t.book(&open, soon, soon + Duration::minutes(30)).await;
    let now_booked = id_of(&r);
    outbox.one(&r, "booking.created", &now_booked).await;
    let r = t
        .post(
            &format!("/api/v1/bookings/{now_booked}/check-in"),
            json!({}),
        )
        .await;
    let e = outbox.one(&r, "booking.start", &now_booked).await;
    assert_eq!(e.data["status"], "active");
    let r = t
        .post(
            &format!("/api/v1/bookings/{now_booked}/check-out"),
            json!({}),
        )
        .await;
    let e = outbox.one(&r, "booking.end", &now_booked).await;
    assert_eq!(e.data["status"], "completed");
    assert_eq!(e.data.get("late"), None::<&Value>);

    // Reads record nothing.
    for path in [
        "/api/v1/bookings".to_owned(),
        booking_path,
        space_path,
        format!("/api/v1/organizations/{org}"),
    ] {
        assert_eq!(t.get(&path).await.status, 200);
    }
    outbox.none("reads").await;

    // The relay moves them all to the event stream.
    let db = outbox.db.clone();
    crate::helpers::eventually("the relay to publish the outbox", || async {
        let left = db.run(events::outbox::unpublished_count).await.unwrap();
        (left == 0).then_some(())
    })
    .await;
    // And counts them in /metrics.
    let metrics = t.server.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let relayed: u64 = text
        .lines()
        .find(|l| {
            l.starts_with("events_relayed_total{")
                && l.contains("stream=\"events:booking-service\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no events_relayed_total in\n{text}"));
    assert!(relayed > 0, "{text}");
}
