//! Deleting a space deletes its files, folders and objects in the
//! background, and a purge that was interrupted resumes.

use crate::content_test;
use crate::helpers::{Multipart, StorageKind, TestSpaces, member, new_workspace, png, space};
use bytes::Bytes;
use diesel::prelude::*;
use spaces_service::schema::{files, folders, space_purges, spaces};
use spaces_service::storage::StorageError;
use std::time::Duration;
use store::{Database, StoreError};
use testkit::DbKind;

/// Rows left of the space: (files, folders, purges).
async fn left(db: &Database, space_id: &str) -> (i64, i64, i64) {
    let space_id = space_id.to_owned();
    db.run(move |conn| {
        Ok::<_, StoreError>((
            files::table
                .filter(files::space_id.eq(&space_id))
                .count()
                .get_result(conn)?,
            folders::table
                .filter(folders::space_id.eq(&space_id))
                .count()
                .get_result(conn)?,
            space_purges::table
                .filter(space_purges::space_id.eq(&space_id))
                .count()
                .get_result(conn)?,
        ))
    })
    .await
    .unwrap()
}

/// Waits (up to 20 s) until nothing is left of the space.
async fn purged(db: &Database, space_id: &str) {
    for _ in 0..200 {
        if left(db, space_id).await == (0, 0, 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not purged: {:?} left", left(db, space_id).await);
}

/// Fills a space: two files (one in a folder) and a variant. Returns the
/// object keys.
async fn fill(app: &TestSpaces, who: &identity::Identity, handle: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for folder in ["", "albums/2024/"] {
        let form = Multipart::new()
            .text("space", handle)
            .text("folder_path", folder)
            .file("file", "a.png", "image/png", &png(6, 6));
        let answer = app.upload(Some(who), "/api/v1/upload", form).await;
        assert_eq!(answer.status, 201, "{}", answer.json());
        let data = answer.json()["data"].clone();
        keys.push(data["object_key"].as_str().unwrap().to_owned());
        let variant = format!("{handle}/_variants/{}/w100", data["id"].as_str().unwrap());
        app.storage
            .open()
            .put(&variant, Bytes::from_static(b"variant"))
            .await
            .unwrap();
        keys.push(variant);
    }
    keys
}

async fn gone(app: &TestSpaces, keys: &[String]) {
    let storage = app.storage.open();
    for key in keys {
        assert!(
            matches!(storage.head(key).await, Err(StorageError::NotFound)),
            "{key} is still stored"
        );
    }
}

content_test!(deleting_a_space_purges_its_content, space_purge);
async fn space_purge(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Doomed").await;
    let keep = crate::helpers::space(&app, &me, "Kept").await;
    let keys = fill(&app, &me, &space.handle).await;
    let kept = fill(&app, &me, &keep.handle).await;
    let db = Database::connect(&app.db.config()).await.unwrap();
    assert_eq!(left(&db, &space.id).await, (2, 2, 0));

    let deleted = app
        .delete(&me, &format!("/api/v1/spaces/{}", space.id))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.json());
    purged(&db, &space.id).await;
    gone(&app, &keys).await;
    // The other space keeps everything.
    assert_eq!(left(&db, &keep.id).await, (2, 2, 0));
    for key in &kept {
        assert!(app.storage.open().head(key).await.is_ok(), "{key}");
    }
}

content_test!(an_interrupted_purge_resumes, purge_resumes);
async fn purge_resumes(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Interrupted").await;
    let keys = fill(&app, &me, &space.handle).await;
    let db = Database::connect(&app.db.config()).await.unwrap();
    // A deletion that committed, then a crash part-way through its purge:
    // the space and one object gone, the rest still there.
    let (space_id, handle) = (space.id.clone(), space.handle.clone());
    db.transaction(move |conn| {
        diesel::update(spaces::table.find(&space_id))
            .set(spaces::active_upload_config_id.eq(None::<String>))
            .execute(conn)?;
        diesel::delete(
            spaces_service::schema::upload_configs::table
                .filter(spaces_service::schema::upload_configs::space_id.eq(&space_id)),
        )
        .execute(conn)?;
        diesel::delete(spaces::table.find(&space_id)).execute(conn)?;
        let now = chrono::Utc::now().naive_utc();
        diesel::insert_into(space_purges::table)
            .values((
                space_purges::space_id.eq(&space_id),
                space_purges::workspace_id.eq("wrk_x"),
                space_purges::handle.eq(&handle),
                space_purges::created_at.eq(now),
                space_purges::next_attempt_at.eq(now),
            ))
            .execute(conn)?;
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();
    app.storage.open().delete(&keys[0]).await.unwrap();
    // The space's files answer 404 at once; its handle stays taken.
    let listed = app
        .get(&me, &format!("/api/v1/files?space_id={}", space.id))
        .await;
    assert_eq!(listed.status, 404);

    // A replica starting up works the purge.
    let cache = testkit::TestCache::new(testkit::CacheKind::Memory);
    let restarted = testkit::part::start_part_with::<spaces_service::SpacesService>(
        Some(&app.db),
        &cache,
        |config| {
            crate::helpers::isolate(config);
            config.storage = app.storage.config.clone();
        },
    )
    .await;
    purged(&db, &space.id).await;
    gone(&app, &keys).await;
    // And a pass with nothing to do is a pass that succeeds.
    spaces_service::purge::work(&db, &app.storage.open(), Duration::from_secs(3600))
        .await
        .unwrap();
    restarted.stop().await;
}
