//! auth-service over HTTP on port 0, on SQLite and PostgreSQL.

use auth_service::AuthService;
use diesel::prelude::*;
use store::{Database, StoreError};
use testkit::{DbKind, TestDatabase, db_test};

db_test!(conformance, conformance_suite);
async fn conformance_suite(kind: DbKind) {
    testkit::part::conformance::<AuthService>(kind).await;
}

db_test!(migrate_subcommand_applies_migrations, migrate_subcommand);
async fn migrate_subcommand(kind: DbKind) {
    testkit::part::assert_migrate_subcommand(env!("CARGO_BIN_EXE_auth-service"), "AUTH", kind)
        .await;
}

#[test]
fn bad_config_exits_naming_the_key() {
    testkit::part::assert_bad_config_exits(env!("CARGO_BIN_EXE_auth-service"), "AUTH");
}

db_test!(schema_matches_the_migrations, schema_roundtrip);
async fn schema_roundtrip(kind: DbKind) {
    use auth_service::schema::users;
    let test_db = TestDatabase::new(kind);
    let db = Database::connect_and_migrate(&test_db.config(), &auth_service::MIGRATIONS)
        .await
        .unwrap();
    let now = chrono::Utc::now().naive_utc();
    let count: i64 = db
        .run(move |conn| {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq("usr_1"),
                    users::email.eq("a@example.com"),
                    users::created_at.eq(now),
                    users::updated_at.eq(now),
                ))
                .execute(conn)?;
            users::table
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
    testkit::part::assert_example_config_matches_defaults::<AuthService>(
        "deploy/config/auth-service.example.toml",
    );
}
