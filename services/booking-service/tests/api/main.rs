//! booking-service over HTTP on port 0, on SQLite and PostgreSQL.

use booking_service::BookingService;
use diesel::prelude::*;
use store::{Database, StoreError};
use testkit::{DbKind, TestDatabase, db_test};

mod availability;
mod bookings;
mod concurrency;
mod helpers;
mod lifecycle;
mod openapi;
mod organizations;
mod outbox;
mod spaces;
mod tenancy;

testkit::service_part_tests!(
    BookingService,
    env!("CARGO_BIN_EXE_booking-service"),
    "BOOKING",
    "deploy/config/booking-service.example.toml"
);

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
