//! spaces-service over HTTP on port 0, on SQLite and PostgreSQL.

use diesel::prelude::*;
use spaces_service::SpacesService;
use store::{Database, StoreError};
use testkit::{DbKind, TestDatabase, db_test};

testkit::service_part_tests!(
    SpacesService,
    env!("CARGO_BIN_EXE_spaces-service"),
    "SPACES",
    "deploy/config/spaces-service.example.toml"
);

db_test!(schema_matches_the_migrations, schema_roundtrip);
async fn schema_roundtrip(kind: DbKind) {
    use spaces_service::schema::spaces;
    let test_db = TestDatabase::new(kind);
    let db = Database::connect_and_migrate(&test_db.config(), &spaces_service::MIGRATIONS)
        .await
        .unwrap();
    let now = chrono::Utc::now().naive_utc();
    let count: i64 = db
        .run(move |conn| {
            diesel::insert_into(spaces::table)
                .values((
                    spaces::id.eq("spc_1"),
                    spaces::workspace_id.eq("wrk_1"),
                    spaces::name.eq("My App"),
                    spaces::name_key.eq("my app"),
                    spaces::handle.eq("a1b2c3"),
                    spaces::enabled.eq(true),
                    spaces::created_at.eq(now),
                    spaces::updated_at.eq(now),
                ))
                .execute(conn)?;
            spaces::table
                .count()
                .get_result(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(count, 1);
}
