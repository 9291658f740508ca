//! `space.updated`: recorded in the outbox with every change of a space (and
//! only then), naming the fields that changed, and published by the relay.

use crate::helpers::{TestSpaces, admin, fields, member, new_workspace, unique_stream_url};
use diesel::prelude::*;
use events::EventStream;
use events::outbox::outbox;
use identity::Identity;
use serde_json::{Value, json};
use service_kit::config::Secret;
use std::time::Duration;
use store::{Database, StoreError};
use testkit::reqwest::Method;
use testkit::{CacheKind, DbKind, TestDatabase, db_test};

/// An outbox row as the tests compare it: everything but its id and time.
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    event_type: String,
    workspace_id: Option<String>,
    subject_id: String,
    data: Value,
    producer: String,
    request_id: Option<String>,
}

/// The `space.updated` a change of `space` (its JSON after the change)
/// records; `request_id` is filled in where a test knows it.
fn updated(space: &Value, workspace_id: &str, changed: &[&str]) -> Recorded {
    Recorded {
        event_type: "space.updated".into(),
        workspace_id: Some(workspace_id.into()),
        subject_id: space["id"].as_str().unwrap().into(),
        data: json!({
            "space_id": space["id"],
            "name": space["name"],
            "handle": space["handle"],
            "changed": changed,
        }),
        producer: "spaces-service".into(),
        request_id: None,
    }
}

/// The service's outbox, read from its database: what was recorded since the
/// last look.
struct Outbox {
    db: Database,
    seen: i64,
}

impl Outbox {
    async fn open(test_db: &TestDatabase) -> Outbox {
        let db = Database::connect(&test_db.config()).await.unwrap();
        Outbox { db, seen: 0 }
    }

    /// Rows recorded since the last call, in outbox order.
    async fn take(&mut self) -> Vec<Recorded> {
        let seen = self.seen;
        type Row = (
            i64,
            String,
            Option<String>,
            String,
            String,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = self
            .db
            .run(move |conn| {
                outbox::table
                    .filter(outbox::seq.gt(seen))
                    .order(outbox::seq.asc())
                    .select((
                        outbox::seq,
                        outbox::event_type,
                        outbox::workspace_id,
                        outbox::subject_id,
                        outbox::data,
                        outbox::producer,
                        outbox::request_id,
                    ))
                    .load(conn)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap();
        if let Some(last) = rows.last() {
            self.seen = last.0;
        }
        rows.into_iter()
            .map(
                |(_, event_type, workspace_id, subject_id, data, producer, request_id)| Recorded {
                    event_type,
                    workspace_id,
                    subject_id,
                    data: serde_json::from_str(&data).unwrap(),
                    producer,
                    request_id,
                },
            )
            .collect()
    }

    /// The rows recorded since the last look are exactly `expected`. Each
    /// carries the id of the request that made it; it is compared where the
    /// expectation names one.
    async fn assert_next(&mut self, expected: &[Recorded]) {
        let actual = self.take().await;
        assert!(
            actual
                .iter()
                .all(|r| r.request_id.as_deref().is_some_and(|id| !id.is_empty())),
            "every change came from a request: {actual:#?}"
        );
        let comparable: Vec<Recorded> = actual
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let compared = expected.get(i).is_some_and(|e| e.request_id.is_some());
                Recorded {
                    request_id: a.request_id.clone().filter(|_| compared),
                    ..a.clone()
                }
            })
            .collect();
        assert_eq!(comparable, expected);
    }

    async fn ids(&self) -> Vec<String> {
        self.db
            .run(|conn| {
                outbox::table
                    .order(outbox::seq.asc())
                    .select(outbox::id)
                    .load(conn)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap()
    }
}

/// `PUT path` as `who`, answering 200 with the space's JSON.
async fn put_ok(app: &TestSpaces, who: &Identity, path: &str, body: Value) -> Value {
    let answer = app.put(who, path, body.clone()).await;
    assert_eq!(answer.status, 200, "{body}: {}", answer.json());
    answer.json()["data"].clone()
}

async fn delete_ok(app: &TestSpaces, who: &Identity, path: &str) -> Value {
    let answer = app.delete(who, path).await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    answer.json()["data"].clone()
}

db_test!(space_changes_record_their_events, space_events);
async fn space_events(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let mut outbox = Outbox::open(&app.db).await;
    let workspace = new_workspace();
    let me = member(&workspace);
    let space = app.create_space(&me, "Gallery").await;
    let other = app.create_space(&me, "Other").await;
    let id = space["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/spaces/{id}");
    // Creating a space is no update.
    outbox.assert_next(&[]).await;

    // One event per change, naming what changed, with the request's id.
    let request = app
        .request_as(&me, Method::PUT, &path)
        .header("x-request-id", "req-rename")
        .json(&json!({"name": "Photos", "description": "Holidays", "enabled": true}));
    let renamed = app.server.send(request).await;
    assert_eq!(renamed.status, 200, "{}", renamed.json());
    let mut expected = updated(
        &renamed.json()["data"],
        &workspace,
        &["name", "description"],
    );
    expected.request_id = Some("req-rename".into());
    outbox.assert_next(&[expected]).await;
    assert_eq!(renamed.json()["data"]["handle"], space["handle"]);

    // Nothing changes, nothing is recorded.
    put_ok(&app, &me, &path, json!({})).await;
    put_ok(
        &app,
        &me,
        &path,
        json!({"name": "Photos", "folder_mode": "dynamic"}),
    )
    .await;
    outbox.assert_next(&[]).await;

    let data = put_ok(
        &app,
        &me,
        &path,
        json!({
            "enabled": false,
            "folder_mode": "fixed",
            "custom_domain": "media.example.com",
            "webhook_url": "https://hooks.example.com/spaces",
        }),
    )
    .await;
    outbox
        .assert_next(&[updated(
            &data,
            &workspace,
            &["enabled", "folder_mode", "custom_domain", "webhook_url"],
        )])
        .await;
    let data = put_ok(
        &app,
        &me,
        &path,
        json!({"name": "photos", "webhook_url": null}),
    )
    .await;
    outbox
        .assert_next(&[updated(&data, &workspace, &["name", "webhook_url"])])
        .await;

    // Refused changes record nothing: validation errors found before the
    // transaction and inside it, and conflicts.
    let other_path = format!("/api/v1/spaces/{}", other["id"].as_str().unwrap());
    let other_data = put_ok(
        &app,
        &me,
        &other_path,
        json!({"custom_domain": "cdn.example.com"}),
    )
    .await;
    outbox
        .assert_next(&[updated(&other_data, &workspace, &["custom_domain"])])
        .await;
    let foreign_config = other["active_upload_config_id"].as_str().unwrap();
    for (body, field) in [
        (
            json!({"webhook_url": "ftp://hooks.example.com"}),
            "webhook_url",
        ),
        (json!({"description": "Changed", "name": "OTHER"}), "name"),
        (
            json!({"name": "Renamed", "active_upload_config_id": foreign_config}),
            "active_upload_config_id",
        ),
    ] {
        let refused = app.put(&me, &path, body.clone()).await;
        assert_eq!(fields(&refused), [field], "{body}");
    }
    app.put(
        &me,
        &path,
        json!({"name": "Renamed", "custom_domain": "CDN.example.com"}),
    )
    .await
    .assert_error(409, "conflict");
    outbox.assert_next(&[]).await;
    assert_eq!(app.get(&me, &path).await.json()["data"]["name"], "photos");

    // Another of its upload configs made active.
    let config = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({"space_id": id, "name": "Videos"}),
        )
        .await;
    assert_eq!(config.status, 201, "{}", config.json());
    let config_id = config.json()["data"]["id"].clone();
    outbox.assert_next(&[]).await;
    let data = put_ok(
        &app,
        &me,
        &path,
        json!({"active_upload_config_id": config_id}),
    )
    .await;
    outbox
        .assert_next(&[updated(&data, &workspace, &["active_upload_config_id"])])
        .await;

    // Access control: set, unchanged, reset, reset again.
    let access = format!("{path}/access-control");
    let data = put_ok(
        &app,
        &me,
        &access,
        json!({"access_control": {"public_read": false}}),
    )
    .await;
    outbox
        .assert_next(&[updated(&data, &workspace, &["access_control"])])
        .await;
    put_ok(
        &app,
        &me,
        &access,
        json!({"access_control": {"public_read": false}}),
    )
    .await;
    assert_eq!(
        fields(
            &app.put(
                &me,
                &access,
                json!({"access_control": {"public_read": "no"}})
            )
            .await
        ),
        ["access_control.public_read"]
    );
    outbox.assert_next(&[]).await;
    let data = delete_ok(&app, &me, &access).await;
    outbox
        .assert_next(&[updated(&data, &workspace, &["access_control"])])
        .await;
    delete_ok(&app, &me, &access).await;
    outbox.assert_next(&[]).await;

    // Security: refused, set, reset.
    let security = format!("{path}/security");
    for body in [
        json!({"security": {"watermark": {"opacity": 2}}}),
        json!({"security": {"watermark": {"enabled": true}}}),
    ] {
        let refused = app.put(&me, &security, body.clone()).await;
        assert_eq!(refused.status, 422, "{body}: {}", refused.json());
    }
    outbox.assert_next(&[]).await;
    let data = put_ok(
        &app,
        &me,
        &security,
        json!({"security": {"watermark": {"enabled": true, "url": "https://cdn.example.com/mark.png"}}}),
    )
    .await;
    outbox
        .assert_next(&[updated(&data, &workspace, &["security"])])
        .await;
    let data = delete_ok(&app, &me, &security).await;
    outbox
        .assert_next(&[updated(&data, &workspace, &["security"])])
        .await;

    // Keys and deletion are not changes of the space's fields.
    app.mint_key(&admin(&workspace), &id, "production").await;
    delete_ok(&app, &me, &path).await;
    outbox.assert_next(&[]).await;
}

db_test!(the_relay_publishes_space_events, relayed);
async fn relayed(kind: DbKind) {
    let url = unique_stream_url();
    let stream_url = url.clone();
    let app = TestSpaces::start_with(kind, CacheKind::Memory, move |c| {
        c.events.stream_url = Secret::new(stream_url);
    })
    .await;
    let workspace = new_workspace();
    let me = member(&workspace);
    let space = app.create_space(&me, "Gallery").await;
    let path = format!("/api/v1/spaces/{}", space["id"].as_str().unwrap());
    put_ok(&app, &me, &path, json!({"name": "Photos"})).await;
    put_ok(
        &app,
        &me,
        &format!("{path}/access-control"),
        json!({"access_control": {"requires_auth": true}}),
    )
    .await;
    let outbox = Outbox::open(&app.db).await;
    let recorded = outbox.ids().await;
    assert_eq!(recorded.len(), 2);

    // A consumer group on the service's stream gets both, in outbox order.
    let stream = EventStream::connect(&url).await.unwrap();
    let (name, group) = ("events:spaces-service", "test-consumers");
    stream.ensure_group(name, group).await.unwrap();
    let mut delivered = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while delivered.len() < recorded.len() && tokio::time::Instant::now() < deadline {
        let batch = stream
            .read(name, group, "test", 10, Duration::from_millis(200))
            .await
            .unwrap();
        let entries: Vec<String> = batch.iter().map(|d| d.entry_id.clone()).collect();
        stream.ack(name, group, &entries).await.unwrap();
        delivered.extend(batch.into_iter().map(|d| d.event));
    }
    let ids: Vec<String> = delivered.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, recorded);
    assert!(delivered.iter().all(|e| e.event_type == "space.updated"
        && e.producer == "spaces-service"
        && e.workspace_id.as_deref() == Some(workspace.as_str())
        && e.subject_id == space["id"].as_str().unwrap()));
    assert_eq!(delivered[0].data["changed"], json!(["name"]));
    assert_eq!(delivered[1].data["changed"], json!(["access_control"]));
    assert_eq!(delivered[1].data["name"], "Photos");

    // The relay marks what the stream has.
    let mut unpublished = -1;
    for _ in 0..100 {
        unpublished = outbox
            .db
            .run(events::outbox::unpublished_count)
            .await
            .unwrap();
        if unpublished == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unpublished, 0);
}

#[test]
fn the_outbox_migration_is_the_events_crates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    for (backend, up) in [
        ("postgres", events::outbox::POSTGRES_UP),
        ("sqlite", events::outbox::SQLITE_UP),
    ] {
        let read = |file: &str| {
            std::fs::read_to_string(format!("{dir}/{backend}/2026-12-05-000000_outbox/{file}"))
                .unwrap()
        };
        assert_eq!(read("up.sql"), up, "{backend}");
        assert_eq!(read("down.sql"), events::outbox::DOWN, "{backend}");
    }
}
