//! spaces-service over HTTP on port 0, on SQLite and PostgreSQL.

use diesel::prelude::*;
use spaces_service::SpacesService;
use store::{Database, StoreError};
use testkit::{DbKind, TestDatabase, db_test};

mod access;
mod cdn;
mod content;
mod fuzz;
mod helpers;
mod openapi;
mod purge;
mod settings;
mod space_events;
mod space_keys;
mod spaces;
mod storage;
mod streaming;
mod tuzzle;
mod upload_configs;
mod uploads;

testkit::service_part_tests!(
    SpacesService,
    env!("CARGO_BIN_EXE_spaces-service"),
    "SPACES",
    "deploy/config/spaces-service.example.toml",
    helpers::isolate
);

async fn migrated(test_db: &TestDatabase) -> Database {
    Database::connect_and_migrate(&test_db.config(), &spaces_service::MIGRATIONS)
        .await
        .unwrap()
}

db_test!(schema_matches_the_migrations, schema_roundtrip);
async fn schema_roundtrip(kind: DbKind) {
    use spaces_service::schema::{space_api_keys, spaces, upload_configs};
    let test_db = TestDatabase::new(kind);
    let db = migrated(&test_db).await;
    let now = chrono::Utc::now().naive_utc();
    let counts: (i64, i64, i64) = db
        .run(move |conn| {
            diesel::insert_into(spaces::table)
                .values((
                    spaces::id.eq("spc_1"),
                    spaces::workspace_id.eq("wrk_1"),
                    spaces::name.eq("My App"),
                    spaces::name_key.eq("my app"),
                    spaces::handle.eq("a1b2c3"),
                    spaces::enabled.eq(true),
                    spaces::access_control.eq("{}"),
                    spaces::security.eq("{}"),
                    spaces::created_at.eq(now),
                    spaces::updated_at.eq(now),
                ))
                .execute(conn)?;
            diesel::insert_into(upload_configs::table)
                .values((
                    upload_configs::id.eq("upc_1"),
                    upload_configs::space_id.eq("spc_1"),
                    upload_configs::workspace_id.eq("wrk_1"),
                    upload_configs::name.eq("starter"),
                    upload_configs::name_key.eq("starter"),
                    upload_configs::config.eq("{}"),
                    upload_configs::created_at.eq(now),
                    upload_configs::updated_at.eq(now),
                ))
                .execute(conn)?;
            diesel::insert_into(space_api_keys::table)
                .values((
                    space_api_keys::id.eq("spk_1"),
                    space_api_keys::space_id.eq("spc_1"),
                    space_api_keys::workspace_id.eq("wrk_1"),
                    space_api_keys::name.eq("production"),
                    space_api_keys::key_hash.eq("h"),
                    space_api_keys::prefix.eq("sk_abcd…"),
                    space_api_keys::created_by.eq("usr_1"),
                    space_api_keys::created_at.eq(now),
                ))
                .execute(conn)?;
            Ok::<_, StoreError>((
                spaces::table.count().get_result(conn)?,
                upload_configs::table.count().get_result(conn)?,
                space_api_keys::table.count().get_result(conn)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(counts, (1, 1, 1));
}

db_test!(the_database_holds_the_invariants, database_invariants);
async fn database_invariants(kind: DbKind) {
    use spaces_service::schema::{spaces, upload_configs};
    let test_db = TestDatabase::new(kind);
    let db = migrated(&test_db).await;
    let now = chrono::Utc::now().naive_utc();
    let outcome = db
        .run(move |conn| {
            let space = |id: &str, workspace: &str, name_key: &str, handle: &str| {
                diesel::insert_into(spaces::table).values((
                    spaces::id.eq(id.to_owned()),
                    spaces::workspace_id.eq(workspace.to_owned()),
                    spaces::name.eq(name_key.to_owned()),
                    spaces::name_key.eq(name_key.to_owned()),
                    spaces::handle.eq(handle.to_owned()),
                    spaces::enabled.eq(true),
                    spaces::access_control.eq("{}"),
                    spaces::security.eq("{}"),
                    spaces::created_at.eq(now),
                    spaces::updated_at.eq(now),
                ))
            };
            space("spc_1", "wrk_1", "app", "aaaaaa").execute(conn)?;
            let same_name = space("spc_2", "wrk_1", "app", "bbbbbb").execute(conn);
            let other_workspace = space("spc_3", "wrk_2", "app", "cccccc").execute(conn);
            let same_handle = space("spc_4", "wrk_3", "other", "aaaaaa").execute(conn);
            let config = |id: &str, space_id: &str| {
                diesel::insert_into(upload_configs::table).values((
                    upload_configs::id.eq(id.to_owned()),
                    upload_configs::space_id.eq(space_id.to_owned()),
                    upload_configs::workspace_id.eq("wrk_1"),
                    upload_configs::name.eq(id.to_owned()),
                    upload_configs::name_key.eq(id.to_owned()),
                    upload_configs::config.eq("{}"),
                    upload_configs::created_at.eq(now),
                    upload_configs::updated_at.eq(now),
                ))
            };
            config("upc_1", "spc_1").execute(conn)?;
            config("upc_3", "spc_3").execute(conn)?;
            // The active config is one of the space's own...
            let foreign_active = diesel::update(spaces::table.find("spc_1"))
                .set(spaces::active_upload_config_id.eq("upc_3"))
                .execute(conn);
            diesel::update(spaces::table.find("spc_1"))
                .set(spaces::active_upload_config_id.eq("upc_1"))
                .execute(conn)?;
            // ... and cannot be deleted while active.
            let delete_active = diesel::delete(upload_configs::table.find("upc_1")).execute(conn);
            Ok::<_, StoreError>(
                [
                    same_name,
                    other_workspace,
                    same_handle,
                    foreign_active,
                    delete_active,
                ]
                .map(|r| r.map_err(StoreError::from).map(|_| ())),
            )
        })
        .await
        .unwrap();
    let [
        same_name,
        other_workspace,
        same_handle,
        foreign_active,
        delete_active,
    ] = outcome;
    assert!(
        matches!(same_name, Err(StoreError::UniqueViolation { .. })),
        "{same_name:?}"
    );
    assert!(other_workspace.is_ok(), "{other_workspace:?}");
    assert!(
        matches!(same_handle, Err(StoreError::UniqueViolation { .. })),
        "{same_handle:?}"
    );
    assert!(foreign_active.is_err(), "{foreign_active:?}");
    assert!(delete_active.is_err(), "{delete_active:?}");
}

db_test!(a_taken_handle_is_skipped, handle_collision);
async fn handle_collision(kind: DbKind) {
    use spaces_service::schema::spaces;
    let test_db = TestDatabase::new(kind);
    let db = migrated(&test_db).await;
    let now = chrono::Utc::now().naive_utc();
    let picked = db
        .run(move |conn| {
            diesel::insert_into(spaces::table)
                .values((
                    spaces::id.eq("spc_1"),
                    spaces::workspace_id.eq("wrk_1"),
                    spaces::name.eq("a"),
                    spaces::name_key.eq("a"),
                    spaces::handle.eq("aaaaaa"),
                    spaces::enabled.eq(true),
                    spaces::access_control.eq("{}"),
                    spaces::security.eq("{}"),
                    spaces::created_at.eq(now),
                    spaces::updated_at.eq(now),
                ))
                .execute(conn)?;
            let next =
                spaces_service::handles::pick_free(conn, ["aaaaaa", "bbbbbb"].map(String::from))?;
            let none = spaces_service::handles::pick_free(conn, ["aaaaaa"].map(String::from))?;
            Ok::<_, StoreError>((next, none))
        })
        .await
        .unwrap();
    assert_eq!(picked, (Some("bbbbbb".to_owned()), None));
}
