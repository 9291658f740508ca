//! Replicas share the work without sending one attempt twice: claims are
//! exclusive, a dead replica's claims are taken again after their lease, two
//! running replicas deliver each event once, and a replica that stops records
//! what it sent and gives back what it held.

use crate::helpers::{
    Receiver, Start, TestEvents, admin, booking_created, new_organization, new_workspace,
    on_all_backends, on_both_databases,
};
use chrono::Utc;
use diesel::prelude::*;
use events_service::dispatch::claim;
use events_service::schema::{deliveries, events as stored_events, subscriptions};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use store::{Database, StoreError};
use testkit::{CacheKind, DbKind, TestDatabase};

const WAIT: Duration = Duration::from_secs(20);

/// Stores `count` events of one subscription, each with a due delivery,
/// straight into the database; returns the deliveries' ids.
async fn due_deliveries(
    db: &Database,
    subscription: &str,
    workspace: &str,
    count: usize,
) -> Vec<String> {
    let subscription = subscription.to_owned();
    let workspace = workspace.to_owned();
    db.transaction(move |conn| {
        // Due a moment ago (the service keeps milliseconds; this has more).
        let now = Utc::now().naive_utc() - chrono::Duration::seconds(1);
        let mut ids = Vec::new();
        for n in 0..count {
            let event = format!("evt_{n}");
            diesel::insert_into(stored_events::table)
                .values((
                    stored_events::id.eq(&event),
                    stored_events::event_type.eq("booking.created"),
                    stored_events::occurred_at.eq(now),
                    stored_events::workspace_id.eq(Some(&workspace)),
                    stored_events::subject_id.eq("bk_1"),
                    stored_events::data.eq("{}"),
                    stored_events::producer.eq("booking-service"),
                    stored_events::received_at.eq(now),
                ))
                .execute(conn)?;
            let id = service_kit::ids::new_id(service_kit::ids::prefix::DELIVERY);
            diesel::insert_into(deliveries::table)
                .values((
                    deliveries::id.eq(&id),
                    deliveries::subscription_id.eq(&subscription),
                    deliveries::event_id.eq(&event),
                    deliveries::workspace_id.eq(&workspace),
                    deliveries::status.eq("pending"),
                    deliveries::manual.eq(n == 0),
                    deliveries::attempts.eq(0),
                    deliveries::next_attempt_at.eq(Some(now)),
                    deliveries::created_at.eq(now),
                    deliveries::updated_at.eq(now),
                ))
                .execute(conn)?;
            ids.push(id);
        }
        Ok::<_, StoreError>(ids)
    })
    .await
    .unwrap()
}

async fn subscription(db: &Database, workspace: &str) -> String {
    let id = service_kit::ids::new_id(service_kit::ids::prefix::WEBHOOK);
    let (row_id, workspace) = (id.clone(), workspace.to_owned());
    db.run(move |conn| {
        let now = Utc::now().naive_utc();
        diesel::insert_into(subscriptions::table)
            .values((
                subscriptions::id.eq(row_id),
                subscriptions::workspace_id.eq(workspace),
                subscriptions::family.eq("gospace"),
                subscriptions::url.eq("https://hooks.example.com/"),
                subscriptions::events.eq("[\"booking.created\"]"),
                subscriptions::secret_sealed.eq("sealed"),
                subscriptions::secret_hint.eq("whsec_…"),
                subscriptions::enabled.eq(true),
                subscriptions::state.eq("active"),
                subscriptions::created_by.eq("usr_1"),
                subscriptions::created_at.eq(now),
                subscriptions::updated_at.eq(now),
            ))
            .execute(conn)
            .map_err(StoreError::from)
    })
    .await
    .unwrap();
    id
}

on_both_databases!(concurrent_claims_never_share_a_delivery, exclusive_claims);
async fn exclusive_claims(kind: DbKind) {
    let test_db = TestDatabase::new(kind);
    let first = Database::connect_and_migrate(&test_db.config(), &events_service::MIGRATIONS)
        .await
        .unwrap();
    let second = Database::connect(&test_db.config()).await.unwrap();
    let workspace = new_workspace();
    let hook = subscription(&first, &workspace).await;
    let all: BTreeSet<String> = due_deliveries(&first, &hook, &workspace, 150)
        .await
        .into_iter()
        .collect();
    let claimer = |db: Database, owner: &'static str| async move {
        let mut mine = Vec::new();
        loop {
            let batch = claim(&db, owner, 7, Duration::from_secs(60)).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            assert!(batch.iter().all(|c| c.lease.starts_with(owner)));
            mine.extend(batch.into_iter().map(|c| c.id));
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claimer(first.clone(), "replica-a")),
        tokio::spawn(claimer(second.clone(), "replica-b")),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let a_set: BTreeSet<String> = a.iter().cloned().collect();
    let b_set: BTreeSet<String> = b.iter().cloned().collect();
    assert_eq!(
        a_set.len() + b_set.len(),
        a.len() + b.len(),
        "claimed twice by one replica"
    );
    assert!(
        a_set.is_disjoint(&b_set),
        "a delivery claimed by both replicas"
    );
    assert_eq!(a_set.union(&b_set).cloned().collect::<BTreeSet<_>>(), all);
    // Held: nobody else gets them while the leases last.
    assert!(
        claim(&first, "replica-c", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );

    // A disabled subscription's deliveries wait, but one a client asked for
    // (manual) is attempted.
    let other = subscription(&first, &workspace).await;
    let ids = due_deliveries_after(&first, &other, &workspace).await;
    let id = other.clone();
    first
        .run(move |conn| {
            diesel::update(subscriptions::table.find(id))
                .set(subscriptions::enabled.eq(false))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    let claimed = claim(&first, "replica-d", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, ids[0]);
    assert!(claimed[0].manual);
}

/// Two more deliveries (the first manual) for `subscription`, of new events.
async fn due_deliveries_after(db: &Database, subscription: &str, workspace: &str) -> Vec<String> {
    let subscription = subscription.to_owned();
    let workspace = workspace.to_owned();
    db.transaction(move |conn| {
        // Due a moment ago (the service keeps milliseconds; this has more).
        let now = Utc::now().naive_utc() - chrono::Duration::seconds(1);
        let mut ids = Vec::new();
        for n in 0..2 {
            let event = format!("evt_later_{n}");
            diesel::insert_into(stored_events::table)
                .values((
                    stored_events::id.eq(&event),
                    stored_events::event_type.eq("booking.created"),
                    stored_events::occurred_at.eq(now),
                    stored_events::subject_id.eq("bk_1"),
                    stored_events::data.eq("{}"),
                    stored_events::producer.eq("booking-service"),
                    stored_events::received_at.eq(now),
                ))
                .execute(conn)?;
            let id = service_kit::ids::new_id(service_kit::ids::prefix::DELIVERY);
            diesel::insert_into(deliveries::table)
                .values((
                    deliveries::id.eq(&id),
                    deliveries::subscription_id.eq(&subscription),
                    deliveries::event_id.eq(&event),
                    deliveries::workspace_id.eq(&workspace),
                    deliveries::status.eq("pending"),
                    deliveries::manual.eq(n == 0),
                    deliveries::attempts.eq(0),
                    deliveries::next_attempt_at.eq(Some(now)),
                    deliveries::created_at.eq(now),
                    deliveries::updated_at.eq(now),
                ))
                .execute(conn)?;
            ids.push(id);
        }
        Ok::<_, StoreError>(ids)
    })
    .await
    .unwrap()
}

on_both_databases!(
    a_dead_replicas_claims_are_retried_after_the_lease,
    dead_replica
);
async fn dead_replica(kind: DbKind) {
    let receiver = Receiver::start().await;
    let app = TestEvents::start_with(kind, CacheKind::Memory, |config| {
        config.webhooks.allow_private_targets = true;
    })
    .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let hook = app
        .create_webhook(
            &me,
            json!({"organization_id": new_organization(), "url": receiver.url, "events": ["booking.created"]}),
        )
        .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    // A replica claimed a delivery, then died: its lease runs two more seconds.
    let db = app.database().await;
    let lease = Duration::from_secs(2);
    let (id, ws) = (hook_id.clone(), workspace.clone());
    let claimed_at = Instant::now();
    let delivery = db
        .transaction(move |conn| {
            let now = Utc::now().naive_utc();
            diesel::insert_into(stored_events::table)
                .values((
                    stored_events::id.eq("evt_01JAAAAAAAAAAAAAAAAAAAAAAA"),
                    stored_events::event_type.eq("booking.created"),
                    stored_events::occurred_at.eq(now),
                    stored_events::workspace_id.eq(Some(&ws)),
                    stored_events::subject_id.eq("bk_1"),
                    stored_events::data.eq("{\"booking_id\":\"bk_1\"}"),
                    stored_events::producer.eq("booking-service"),
                    stored_events::received_at.eq(now),
                ))
                .execute(conn)?;
            let delivery = service_kit::ids::new_id(service_kit::ids::prefix::DELIVERY);
            diesel::insert_into(deliveries::table)
                .values((
                    deliveries::id.eq(&delivery),
                    deliveries::subscription_id.eq(&id),
                    deliveries::event_id.eq("evt_01JAAAAAAAAAAAAAAAAAAAAAAA"),
                    deliveries::workspace_id.eq(&ws),
                    deliveries::status.eq("pending"),
                    deliveries::manual.eq(false),
                    deliveries::attempts.eq(0),
                    deliveries::next_attempt_at.eq(Some(now)),
                    deliveries::lease_owner.eq(Some("dead-replica/01J")),
                    deliveries::lease_until
                        .eq(Some(now + chrono::Duration::from_std(lease).unwrap())),
                    deliveries::created_at.eq(now),
                    deliveries::updated_at.eq(now),
                ))
                .execute(conn)?;
            Ok::<_, StoreError>(delivery)
        })
        .await
        .unwrap();
    let received = receiver.wait_for(1, WAIT).await;
    assert!(
        received[0].at.duration_since(claimed_at) >= lease - Duration::from_millis(100),
        "delivered while the dead replica's lease still held"
    );
    assert_eq!(received[0].header("webhook-id"), delivery);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    let log = app.deliveries(&me, &hook_id).await;
    assert_eq!(log[0]["status"], "succeeded");
    assert_eq!(log[0]["attempts"].as_array().unwrap().len(), 1);
}

on_all_backends!(two_replicas_never_send_one_attempt_twice, two_replicas);
async fn two_replicas(db: DbKind, cache: CacheKind) {
    let receiver = Receiver::start().await;
    let first = Start::new(db, cache)
        .run(|config| {
            config.webhooks.allow_private_targets = true;
            config.webhooks.workers = 4;
        })
        .await;
    let second = Start::replica_of(&first).run(|_| {}).await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let hook = first
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": receiver.url, "events": ["booking.created"]}),
        )
        .await;
    const EVENTS: usize = 60;
    for n in 0..EVENTS {
        let replica = if n % 2 == 0 { &first } else { &second };
        replica
            .publish(
                &replica.streams.booking,
                &booking_created(&workspace, &organization),
            )
            .await;
    }
    receiver.wait_for(EVENTS, WAIT).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for request in receiver.received() {
        *sent
            .entry(request.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(sent.len(), EVENTS);
    assert!(
        sent.values().all(|n| *n == 1),
        "an attempt was sent twice: {sent:?}"
    );
    let log = second.deliveries(&me, hook["id"].as_str().unwrap()).await;
    assert_eq!(log.len(), EVENTS);
    assert!(
        log.iter()
            .all(|d| d["status"] == "succeeded" && d["attempts"].as_array().unwrap().len() == 1)
    );
    // Both replicas consumed: the group shared the streams between them.
    let consumed = |text: &str| -> usize {
        text.lines()
            .filter(|l| l.starts_with("events_consumed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
            .sum()
    };
    let a = consumed(&String::from_utf8(first.server.get("/metrics").await.body).unwrap());
    let b = consumed(&String::from_utf8(second.server.get("/metrics").await.body).unwrap());
    assert_eq!(a + b, EVENTS, "each event consumed once ({a} + {b})");
}

on_both_databases!(
    a_stopping_replica_records_its_attempts_and_gives_back_the_rest,
    stopping
);
async fn stopping(kind: DbKind) {
    let receiver = Receiver::start().await;
    // Slow answers: attempts are in flight when the replica stops.
    receiver.delay(Duration::from_millis(400));
    let first = Start::new(kind, CacheKind::Memory)
        .run(|config| {
            config.webhooks.allow_private_targets = true;
            config.webhooks.workers = 2;
            // Far longer than the test: only a give-back frees what it held.
            config.webhooks.lease_secs = 600;
            config.webhooks.timeout_secs = 30;
        })
        .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let hook = first
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": receiver.url, "events": ["booking.created"]}),
        )
        .await;
    let hook = hook["id"].as_str().unwrap().to_owned();
    const EVENTS: usize = 8;
    for _ in 0..EVENTS {
        first
            .publish(
                &first.streams.booking,
                &booking_created(&workspace, &organization),
            )
            .await;
    }
    // Two attempts in flight (two workers), the rest handed over and waiting.
    receiver.wait_for(2, WAIT).await;
    let second_start = Start::replica_of(&first);
    let db = first.database().await;
    first.server.stop().await;

    // What the stopped replica sent is recorded, under its lease: each of its
    // attempts is in the log, and it holds no lease any more.
    let sent: BTreeSet<String> = receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    let rows: Vec<(String, String, i32, Option<String>)> = db
        .run(|conn| {
            deliveries::table
                .select((
                    deliveries::id,
                    deliveries::status,
                    deliveries::attempts,
                    deliveries::lease_owner,
                ))
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), EVENTS, "{rows:?}");
    for (id, status, attempts, lease) in &rows {
        assert_eq!(lease, &None, "{id} still leased after the stop: {rows:?}");
        if sent.contains(id) {
            assert_eq!((status.as_str(), *attempts), ("succeeded", 1), "{id}");
        } else {
            assert_eq!((status.as_str(), *attempts), ("pending", 0), "{id}");
        }
    }
    assert!(sent.len() < EVENTS, "the test needs deliveries left over");

    // Another replica takes the rest at once, not when leases end.
    receiver.delay(Duration::ZERO);
    let second = second_start.run(|_| {}).await;
    let started = Instant::now();
    receiver.wait_for(EVENTS, WAIT).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the rest waited for leases"
    );
    let log = second.deliveries(&me, &hook).await;
    assert_eq!(log.len(), EVENTS);
    assert!(log.iter().all(|d| d["status"] == "succeeded"));
    let mut per_delivery: BTreeMap<String, usize> = BTreeMap::new();
    for r in receiver.received() {
        *per_delivery
            .entry(r.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    assert!(per_delivery.values().all(|n| *n == 1), "{per_delivery:?}");
}
