//! booking-service over HTTP on port 0, on SQLite and PostgreSQL.

use booking_service::BookingService;
use diesel::prelude::*;
use store::{Database, StoreError};
use testkit::{DbKind, TestDatabase, db_test};

db_test!(conformance, conformance_suite);
async fn conformance_suite(kind: DbKind) {
    testkit::part::conformance::<BookingService>(kind).await;
}

db_test!(migrate_subcommand_applies_migrations, migrate_subcommand);
async fn migrate_subcommand(kind: DbKind) {
    testkit::part::assert_migrate_subcommand(
        env!("CARGO_BIN_EXE_booking-service"),
        "BOOKING",
        kind,
    )
    .await;
}

#[test]
fn bad_config_exits_naming_the_key() {
    testkit::part::assert_bad_config_exits(env!("CARGO_BIN_EXE_booking-service"), "BOOKING");
}

db_test!(schema_matches_the_migrations, schema_roundtrip);
async fn schema_roundtrip(kind: DbKind) {
    use booking_service::schema::organizations;
    let test_db = TestDatabase::new(kind);
    let db = Database::connect_and_migrate(&test_db.config(), &booking_service::MIGRATIONS)
        .await
        .unwrap();
    let now = chrono::Utc::now().naive_utc();
    let count: i64 = db
        .run(move |conn| {
            diesel::insert_into(organizations::table)
                .values((
                    organizations::id.eq("org_1"),
                    organizations::workspace_id.eq("wrk_1"),
                    organizations::name.eq("Acme"),
                    organizations::slug.eq("acme"),
                    organizations::timezone.eq("Europe/London"),
                    organizations::created_at.eq(now),
                    organizations::updated_at.eq(now),
                ))
                .execute(conn)?;
            organizations::table
                .count()
                .get_result(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn example_config_matches_defaults() {
    testkit::part::assert_example_config_matches_defaults::<BookingService>(
        "deploy/config/booking-service.example.toml",
    );
}
