//! The outbox table: the migration SQL, and `record` inside the caller's transaction.

use chrono::Utc;
use diesel::prelude::*;
use events::outbox::{self, outbox as table};
use store::{DbConnection, StoreError};
use testkit::DbKind;

use crate::support::{event, on_both_databases, outbox_database, unpublished};

on_both_databases!(
    records_with_the_change_or_not_at_all,
    records_with_the_change
);
async fn records_with_the_change(kind: DbKind) {
    let (_guard, db) = outbox_database(kind).await;
    let recorded = event(1).with_occurred_at(Utc::now());
    let kept = recorded.clone();
    db.transaction(move |conn| outbox::record(conn, &kept))
        .await
        .expect("record");

    // A transaction that fails takes its event with it.
    let failed = db
        .transaction(|conn| {
            outbox::record(conn, &event(2))?;
            Err::<(), _>(StoreError::Config("the change failed".into()))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(unpublished(&db).await, 1);

    let row = db
        .run(|conn| {
            table::table
                .select((
                    table::id,
                    table::event_type,
                    table::occurred_at,
                    table::workspace_id,
                    table::organization_id,
                    table::subject_id,
                    table::data,
                    table::producer,
                    table::request_id,
                    table::published_at,
                ))
                .first::<(
                    String,
                    String,
                    chrono::NaiveDateTime,
                    Option<String>,
                    Option<String>,
                    String,
                    String,
                    String,
                    Option<String>,
                    Option<chrono::NaiveDateTime>,
                )>(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(row.0, recorded.id);
    assert_eq!(row.1, "booking.created");
    assert_eq!(row.2.and_utc(), recorded.occurred_at);
    assert_eq!(row.3.as_deref(), Some("wrk_test"));
    assert_eq!(row.4.as_deref(), Some("org_test"));
    assert_eq!(row.5, "bk_1");
    let data: serde_json::Value = serde_json::from_str(&row.6).unwrap();
    assert_eq!(data, recorded.data);
    assert_eq!(row.7, "test-service");
    assert_eq!(row.8.as_deref(), Some("req_1"));
    assert_eq!(row.9, None);
}

on_both_databases!(seq_follows_insertion_order, seq_follows_insertion);
async fn seq_follows_insertion(kind: DbKind) {
    let (_guard, db) = outbox_database(kind).await;
    // Ids are random within a millisecond; the outbox order must not be.
    let events: Vec<_> = (0..50).map(crate::support::event).collect();
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    crate::support::record(&db, events).await;
    let in_seq_order: Vec<String> = db
        .run(|conn| {
            table::table
                .order(table::seq.asc())
                .select(table::id)
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(in_seq_order, ids);
}

on_both_databases!(migration_reverts_and_reapplies, down_then_up);
async fn down_then_up(kind: DbKind) {
    let (_guard, db) = outbox_database(kind).await;
    db.run(|conn| {
        match conn {
            DbConnection::Postgresql(pg) => {
                diesel::connection::SimpleConnection::batch_execute(pg, outbox::DOWN)?
            }
            DbConnection::Sqlite(lite) => {
                diesel::connection::SimpleConnection::batch_execute(lite, outbox::DOWN)?
            }
        }
        crate::support::create_outbox(conn)
    })
    .await
    .expect("down, then up again");
    assert_eq!(unpublished(&db).await, 0);
}

/// The relay's scan and pruning use the partial indexes rather than a table scan.
#[tokio::test]
async fn sqlite_plans_use_the_indexes() {
    let (_guard, db) = outbox_database(DbKind::Sqlite).await;
    let plans = db
        .run(|conn| {
            #[derive(QueryableByName)]
            struct Plan {
                #[diesel(sql_type = diesel::sql_types::Text)]
                detail: String,
            }
            let plan = |conn: &mut DbConnection, sql: &str| {
                diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                    .load::<Plan>(conn)
                    .map(|rows| {
                        rows.into_iter()
                            .map(|r| r.detail)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
            };
            Ok::<_, StoreError>((
                plan(
                    conn,
                    "SELECT id FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT 100",
                )?,
                plan(
                    conn,
                    "SELECT id FROM outbox WHERE published_at < '2025-01-01 00:00:00' LIMIT 1000",
                )?,
            ))
        })
        .await
        .unwrap();
    assert!(plans.0.contains("outbox_unpublished_idx"), "{}", plans.0);
    assert!(!plans.0.contains("TEMP B-TREE"), "sorts: {}", plans.0);
    assert!(plans.1.contains("outbox_published_idx"), "{}", plans.1);
}
