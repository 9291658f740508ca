//! The intake on the database alone: which subscriptions an event matches,
//! and an event stored once however often it arrives.

use crate::helpers::{booking_created, new_organization, new_workspace, on_both_databases};
use diesel::prelude::*;
use events::Event;
use events_service::intake::{BatchRecorded, Recorded, record, record_batch};
use events_service::schema::{deliveries, events as stored_events, subscriptions};
use store::{Database, StoreError};
use testkit::{DbKind, TestDatabase};

/// Inserts a subscription as the API would store it; returns its id.
async fn subscribe(
    db: &Database,
    workspace: &str,
    family: &str,
    organization: Option<&str>,
    events: &[&str],
    (enabled, state): (bool, &str),
) -> String {
    let id = service_kit::ids::new_id(service_kit::ids::prefix::WEBHOOK);
    let row = (
        subscriptions::id.eq(id.clone()),
        subscriptions::workspace_id.eq(workspace.to_owned()),
        subscriptions::family.eq(family.to_owned()),
        subscriptions::organization_id.eq(organization.map(str::to_owned)),
        subscriptions::url.eq("https://hooks.example.com/"),
        subscriptions::events.eq(serde_json::to_string(events).unwrap()),
        subscriptions::secret_sealed.eq("sealed"),
        subscriptions::secret_hint.eq("whsec_…"),
        subscriptions::enabled.eq(enabled),
        subscriptions::state.eq(state.to_owned()),
        subscriptions::created_by.eq("usr_1"),
        subscriptions::created_at.eq(chrono::Utc::now().naive_utc()),
        subscriptions::updated_at.eq(chrono::Utc::now().naive_utc()),
    );
    db.run(move |conn| {
        diesel::insert_into(subscriptions::table)
            .values(row)
            .execute(conn)
            .map_err(StoreError::from)
    })
    .await
    .unwrap();
    id
}

async fn deliveries_of(db: &Database, event: &str) -> Vec<String> {
    let event = event.to_owned();
    let mut found: Vec<String> = db
        .run(move |conn| {
            deliveries::table
                .filter(deliveries::event_id.eq(event))
                .select(deliveries::subscription_id)
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    found.sort();
    found
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

on_both_databases!(
    events_match_by_workspace_organization_type_and_state,
    matching
);
async fn matching(kind: DbKind) {
    let test_db = TestDatabase::new(kind);
    let db = Database::connect_and_migrate(&test_db.config(), &events_service::MIGRATIONS)
        .await
        .unwrap();
    let workspace = new_workspace();
    let organization = new_organization();
    let active = (true, "active");
    let created = ["booking.created", "member.added"];
    let mine = subscribe(
        &db,
        &workspace,
        "spaceos",
        Some(&organization),
        &created,
        active,
    )
    .await;
    let other_org = new_organization();
    let theirs = subscribe(
        &db,
        &workspace,
        "spaceos",
        Some(&other_org),
        &created,
        active,
    )
    .await;
    let workspace_wide = subscribe(&db, &workspace, "gospace", None, &created, active).await;
    subscribe(
        &db,
        &workspace,
        "spaceos",
        Some(&organization),
        &["booking.end"],
        active,
    )
    .await;
    subscribe(
        &db,
        &workspace,
        "spaceos",
        Some(&organization),
        &created,
        (false, "active"),
    )
    .await;
    subscribe(
        &db,
        &workspace,
        "gospace",
        None,
        &created,
        (true, "failing"),
    )
    .await;
    subscribe(&db, &new_workspace(), "gospace", None, &created, active).await;

    let event = booking_created(&workspace, &organization);
    let first = record(&db, event.clone()).await.unwrap();
    assert_eq!(
        first,
        Recorded {
            duplicate: false,
            deliveries: 2
        }
    );
    assert_eq!(
        deliveries_of(&db, &event.id).await,
        sorted(vec![mine.clone(), workspace_wide.clone()])
    );
    // Seen again: nothing changes.
    let again = record(&db, event.clone()).await.unwrap();
    assert_eq!(
        again,
        Recorded {
            duplicate: true,
            deliveries: 0
        }
    );
    assert_eq!(deliveries_of(&db, &event.id).await.len(), 2);
    let id = event.id.clone();
    let stored: i64 = db
        .run(move |conn| {
            stored_events::table
                .filter(stored_events::id.eq(id))
                .count()
                .get_result(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(stored, 1);

    // An event of the whole workspace reaches every organization's webhooks.
    let member = Event::new(
        "auth-service",
        "member.added",
        "usr_1",
        serde_json::json!({"user_id": "usr_1", "role": "member"}),
        None,
    )
    .with_workspace(&workspace);
    record(&db, member.clone()).await.unwrap();
    assert_eq!(
        deliveries_of(&db, &member.id).await,
        sorted(vec![mine, theirs, workspace_wide])
    );

    // Pings are the test route's; events without a workspace reach nobody.
    let mut ping = booking_created(&workspace, &organization);
    ping.event_type = "ping".into();
    assert_eq!(record(&db, ping).await.unwrap().deliveries, 0);
    let mut orphan = booking_created(&workspace, &organization);
    orphan.workspace_id = None;
    assert_eq!(record(&db, orphan).await.unwrap().deliveries, 0);
}

on_both_databases!(a_batch_is_recorded_in_one_go_and_once, batching);
async fn batching(kind: DbKind) {
    let test_db = TestDatabase::new(kind);
    let db = Database::connect_and_migrate(&test_db.config(), &events_service::MIGRATIONS)
        .await
        .unwrap();
    let active = (true, "active");
    let created = ["booking.created"];
    let (one, two) = (new_workspace(), new_workspace());
    let organization = new_organization();
    let of_one = subscribe(&db, &one, "gospace", None, &created, active).await;
    let also_of_one = subscribe(&db, &one, "gospace", None, &created, active).await;
    let of_two = subscribe(&db, &two, "gospace", None, &created, active).await;

    let seen = booking_created(&one, &organization);
    record(&db, seen.clone()).await.unwrap();
    let a = booking_created(&one, &organization);
    let b = booking_created(&two, &organization);
    let mut ping = booking_created(&two, &organization);
    ping.event_type = "ping".into();
    // Already stored, new, new, new twice in the batch, a ping.
    let batch = vec![seen.clone(), a.clone(), b.clone(), b.clone(), ping];
    let recorded = record_batch(&db, batch).await.unwrap();
    assert_eq!(
        recorded,
        BatchRecorded {
            events: vec![true, false, false, true, false],
            deliveries: 3,
        }
    );
    assert_eq!(
        deliveries_of(&db, &a.id).await,
        sorted(vec![of_one.clone(), also_of_one.clone()])
    );
    assert_eq!(deliveries_of(&db, &b.id).await, vec![of_two]);
    assert_eq!(deliveries_of(&db, &seen.id).await.len(), 2, "unchanged");

    // The whole batch again (redelivered before its ack): nothing changes.
    let again = record_batch(&db, vec![a.clone(), b.clone()]).await.unwrap();
    assert_eq!(
        again,
        BatchRecorded {
            events: vec![true, true],
            deliveries: 0,
        }
    );
    assert_eq!(deliveries_of(&db, &a.id).await.len(), 2);
    assert_eq!(
        record_batch(&db, Vec::new()).await.unwrap(),
        BatchRecorded::default()
    );
}
