//! auth-service over HTTP on port 0, on SQLite and PostgreSQL, with mail
//! delivered over SMTP to a sink the tests read.

use auth_service::AuthService;
use diesel::prelude::*;
use store::{Database, StoreError};
use testkit::{DbKind, TestDatabase, db_test};

mod admin;
mod api_keys;
mod helpers;
mod keys;
mod magic_links;
mod member_events;
mod openapi;
mod otp;
mod principals;
mod profile;
mod social;
mod token_management;
mod tokens;
mod verified_clients;

testkit::service_part_tests!(
    AuthService,
    env!("CARGO_BIN_EXE_auth-service"),
    "AUTH",
    "deploy/config/auth-service.example.toml",
    helpers::isolate
);

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
