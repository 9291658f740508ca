//! The store on both backends: migrations, queries through the multi-connection,
//! transactions, error mapping, readiness.

use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use service_kit::{ApiError, ErrorCode};
use store::{Backend, Database, Migrations, StoreError};
use testkit::{DbKind, TestDatabase, db_test};

const PG: EmbeddedMigrations = embed_migrations!("tests/migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("tests/migrations/sqlite");
static MIGRATIONS: Migrations = Migrations {
    postgres: || PG,
    sqlite: || SQLITE,
};

diesel::table! {
    items (id) {
        id -> Text,
        name -> Text,
        created_at -> Timestamp,
    }
}

#[derive(Queryable, Insertable, Debug, PartialEq)]
#[diesel(table_name = items)]
struct Item {
    id: String,
    name: String,
    created_at: chrono::NaiveDateTime,
}

fn item(name: &str) -> Item {
    Item {
        id: service_kit::ids::new_id("itm"),
        name: name.into(),
        // Stored without sub-microsecond precision on either backend.
        created_at: chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
            .unwrap()
            .naive_utc(),
    }
}

async fn item_count(db: &Database) -> i64 {
    db.run(|conn| {
        items::table
            .count()
            .get_result(conn)
            .map_err(StoreError::from)
    })
    .await
    .unwrap()
}

async fn database(kind: DbKind) -> (TestDatabase, Database) {
    let test_db = TestDatabase::new(kind);
    let db = Database::connect(&test_db.config()).await.expect("connect");
    (test_db, db)
}

db_test!(
    migrations_apply_once_and_are_idempotent,
    migrations_apply_once
);
async fn migrations_apply_once(kind: DbKind) {
    let (_guard, db) = database(kind).await;
    assert_eq!(
        db.backend(),
        match kind {
            DbKind::Sqlite => Backend::Sqlite,
            DbKind::Postgres => Backend::Postgres,
        }
    );
    assert!(
        db.ping().await.is_err(),
        "an unmigrated database is not ready"
    );
    let applied = db.migrate(&MIGRATIONS).await.expect("first migration");
    assert_eq!(applied.len(), 1);
    let again = db.migrate(&MIGRATIONS).await.expect("second migration");
    assert!(again.is_empty(), "second run must apply nothing: {again:?}");
    db.ping().await.expect("migrated database is ready");
}

db_test!(concurrent_migrations_are_serialized, concurrent_migrations);
async fn concurrent_migrations(kind: DbKind) {
    let (guard, first) = database(kind).await;
    let second = Database::connect(&guard.config()).await.unwrap();
    let (a, b) = tokio::join!(first.migrate(&MIGRATIONS), second.migrate(&MIGRATIONS));
    let total = a.expect("first replica").len() + b.expect("second replica").len();
    assert_eq!(total, 1, "exactly one replica applies the migration");
}

db_test!(queries_run_through_the_multi_connection, queries_roundtrip);
async fn queries_roundtrip(kind: DbKind) {
    let (_guard, db) = database(kind).await;
    db.migrate(&MIGRATIONS).await.unwrap();
    let created = item("alpha");
    let expected = Item {
        id: created.id.clone(),
        name: created.name.clone(),
        created_at: created.created_at,
    };
    let id = expected.id.clone();
    let stored = db
        .run(move |conn| {
            diesel::insert_into(items::table)
                .values(&created)
                .execute(conn)?;
            items::table
                .find(&id)
                .first::<Item>(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(stored, expected);

    // A unique violation maps to 409 conflict.
    let duplicate = item("alpha");
    let err = db
        .run(move |conn| {
            diesel::insert_into(items::table)
                .values(&duplicate)
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UniqueViolation { .. }), "{err:?}");
    let api: ApiError = err.into();
    assert_eq!(api.code, ErrorCode::Conflict);

    // A missing row maps to 404.
    let err = db
        .run(|conn| {
            items::table
                .find("itm_missing")
                .first::<Item>(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap_err();
    assert_eq!(ApiError::from(err).code, ErrorCode::NotFound);
}

db_test!(transactions_roll_back_on_error, transactions_roll_back);
async fn transactions_roll_back(kind: DbKind) {
    let (_guard, db) = database(kind).await;
    db.migrate(&MIGRATIONS).await.unwrap();
    let first = item("one");
    let second = item("one"); // same name: fails inside the transaction
    let result = db
        .transaction(move |conn| {
            diesel::insert_into(items::table)
                .values(&first)
                .execute(conn)?;
            diesel::insert_into(items::table)
                .values(&second)
                .execute(conn)?;
            Ok::<_, StoreError>(())
        })
        .await;
    assert!(result.is_err());
    let count = item_count(&db).await;
    assert_eq!(count, 0, "the first insert must be rolled back");

    // Nested transactions become savepoints and commit with the outer one.
    let (a, b) = (item("a"), item("b"));
    db.transaction(move |conn| {
        diesel::insert_into(items::table).values(&a).execute(conn)?;
        conn.transaction(|conn| diesel::insert_into(items::table).values(&b).execute(conn))?;
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();
    let count = item_count(&db).await;
    assert_eq!(count, 2);
}

db_test!(readiness_fails_when_the_database_is_gone, readiness_fails);
async fn readiness_fails(kind: DbKind) {
    let (guard, db) = database(kind).await;
    db.migrate(&MIGRATIONS).await.unwrap();
    db.ping().await.expect("ready before");
    guard.destroy();
    assert!(
        db.ping().await.is_err(),
        "must not be ready once the database is gone"
    );
}

#[test]
fn backend_is_chosen_by_scheme() {
    assert_eq!(
        Backend::parse("postgres://u@h/db").unwrap().0,
        Backend::Postgres
    );
    assert_eq!(
        Backend::parse("postgresql://u@h/db").unwrap().0,
        Backend::Postgres
    );
    assert_eq!(
        Backend::parse("sqlite://./data/a.db").unwrap(),
        (Backend::Sqlite, "./data/a.db".into())
    );
    assert_eq!(Backend::parse("data/a.db").unwrap().0, Backend::Sqlite);
    for bad in ["mysql://h/db", "sqlite://", "sqlite://:memory:"] {
        assert!(Backend::parse(bad).is_err(), "{bad}");
    }
}
