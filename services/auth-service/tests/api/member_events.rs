//! `member.added` and `member.removed`: recorded in the outbox with the change
//! that makes them (and only then), and published by the relay.

use crate::admin::call;
use crate::helpers::{TestAuth, unique_stream_url};
use diesel::prelude::*;
use events::EventStream;
use events::outbox::outbox;
use identity::Identity;
use serde_json::{Value, json};
use service_kit::config::Secret;
use std::time::Duration;
use store::{Database, StoreError};
use testkit::reqwest::Method;
use testkit::{DbKind, TestDatabase, db_test};

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

/// The event a membership's beginning (`member.added`) or end
/// (`member.removed`) records; `request_id` is filled in where a test knows it.
fn member(
    event_type: &str,
    workspace_id: &str,
    who: &Identity,
    email: &str,
    role: &str,
) -> Recorded {
    Recorded {
        event_type: event_type.into(),
        workspace_id: Some(workspace_id.into()),
        subject_id: who.principal_id.clone(),
        data: json!({
            "workspace_id": workspace_id,
            "user_id": who.principal_id,
            "email": email,
            "role": role,
        }),
        producer: "auth-service".into(),
        request_id: None,
    }
}

fn added(workspace_id: &str, who: &Identity, email: &str, role: &str) -> Recorded {
    member("member.added", workspace_id, who, email, role)
}

fn removed(workspace_id: &str, who: &Identity, email: &str, role: &str) -> Recorded {
    member("member.removed", workspace_id, who, email, role)
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

fn with_request_id(mut recorded: Recorded, id: &str) -> Recorded {
    recorded.request_id = Some(id.into());
    recorded
}

/// A request as `who` with a request id the test chooses.
async fn traced(
    auth: &TestAuth,
    who: &Identity,
    method: Method,
    path: &str,
    body: Option<Value>,
    request_id: &str,
) -> testkit::TestResponse {
    let mut request = auth
        .request_as(who, method, path)
        .header("x-request-id", request_id);
    if let Some(body) = body {
        request = request.json(&body);
    }
    auth.server.send(request).await
}

db_test!(membership_changes_record_their_events, membership_events);
async fn membership_events(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| c.otp.resend_interval_secs = 1).await;
    let mut outbox = Outbox::open(&auth.db).await;

    // A first sign-in makes the account and its personal workspace, owned.
    let owner = auth.owner("owner@example.com").await;
    let workspace = owner.workspace_id.clone().unwrap();
    outbox
        .assert_next(&[added(&workspace, &owner, "owner@example.com", "owner")])
        .await;
    // Signing in again changes no membership.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    auth.sign_in("owner@example.com").await;
    outbox.assert_next(&[]).await;

    // Someone with an account is added: one event, with the request's id.
    let carol = auth.owner("carol@example.com").await;
    let carol_home = carol.workspace_id.clone().unwrap();
    outbox
        .assert_next(&[added(&carol_home, &carol, "carol@example.com", "owner")])
        .await;
    let invited = traced(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(json!({"email": "Carol@Example.com", "role": "member"})),
        "req-add-carol",
    )
    .await;
    assert_eq!(invited.status, 201, "{:?}", invited.json());
    outbox
        .assert_next(&[with_request_id(
            added(&workspace, &carol, "carol@example.com", "member"),
            "req-add-carol",
        )])
        .await;

    // Someone new is added: their account's personal workspace comes first.
    let invited = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(json!({"email": "bob@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(invited.status, 201, "{:?}", invited.json());
    let bob = Identity {
        principal_id: invited.json()["data"]["user_id"].as_str().unwrap().into(),
        ..owner.clone()
    };
    let recorded = outbox.take().await;
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    let bob_home = recorded[0].workspace_id.clone().unwrap();
    assert_ne!(bob_home, workspace);
    assert_eq!(
        recorded[0],
        Recorded {
            request_id: recorded[0].request_id.clone(),
            ..added(&bob_home, &bob, "bob@example.com", "owner")
        }
    );
    assert_eq!(recorded[1].request_id, recorded[0].request_id);
    assert_eq!(
        recorded[1],
        Recorded {
            request_id: recorded[1].request_id.clone(),
            ..added(&workspace, &bob, "bob@example.com", "viewer")
        }
    );

    // Refused changes record nothing: a second addition (409), an unknown
    // role (422), the last owner's removal or deactivation (409).
    call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(json!({"email": "bob@example.com", "role": "member"})),
    )
    .await
    .assert_error(409, "conflict");
    call(
        &auth,
        &owner,
        Method::POST,
        "/v1/auth/admin/users",
        Some(json!({"email": "dave@example.com", "role": "superuser"})),
    )
    .await
    .assert_error(422, "validation_failed");
    let me = format!("/v1/auth/admin/users/{}", owner.principal_id);
    call(&auth, &owner, Method::DELETE, &me, None)
        .await
        .assert_error(409, "conflict");
    call(
        &auth,
        &owner,
        Method::PATCH,
        &me,
        Some(json!({"status": "deactivated"})),
    )
    .await
    .assert_error(409, "conflict");
    outbox.assert_next(&[]).await;

    // A new role alone is no arrival or departure.
    let bob_path = format!("/v1/auth/admin/users/{}", bob.principal_id);
    let patch = |body: Value| call(&auth, &owner, Method::PATCH, &bob_path, Some(body));
    assert_eq!(patch(json!({"role": "member"})).await.status, 200);
    outbox.assert_next(&[]).await;

    // Deactivated, a member has left; active again, they are back.
    assert_eq!(patch(json!({"status": "deactivated"})).await.status, 200);
    outbox
        .assert_next(&[removed(&workspace, &bob, "bob@example.com", "member")])
        .await;
    assert_eq!(patch(json!({"status": "deactivated"})).await.status, 200);
    outbox.assert_next(&[]).await;
    let back = patch(json!({"status": "active", "role": "admin"})).await;
    assert_eq!(back.status, 200, "{:?}", back.json());
    outbox
        .assert_next(&[added(&workspace, &bob, "bob@example.com", "admin")])
        .await;

    // Removed while active: one event; removed after a deactivation: none
    // (they left when deactivated).
    let removal = traced(
        &auth,
        &owner,
        Method::DELETE,
        &bob_path,
        None,
        "req-remove-bob",
    )
    .await;
    assert_eq!(removal.status, 200, "{:?}", removal.json());
    outbox
        .assert_next(&[with_request_id(
            removed(&workspace, &bob, "bob@example.com", "admin"),
            "req-remove-bob",
        )])
        .await;
    let carol_path = format!("/v1/auth/admin/users/{}", carol.principal_id);
    let deactivated = call(
        &auth,
        &owner,
        Method::PATCH,
        &carol_path,
        Some(json!({"status": "deactivated"})),
    )
    .await;
    assert_eq!(deactivated.status, 200);
    outbox
        .assert_next(&[removed(&workspace, &carol, "carol@example.com", "member")])
        .await;
    assert_eq!(
        call(&auth, &owner, Method::DELETE, &carol_path, None)
            .await
            .status,
        200
    );
    outbox.assert_next(&[]).await;

    // Creating a workspace makes its creator its owner; a bad name, nothing.
    call(
        &auth,
        &owner,
        Method::POST,
        "/v1/system/workspaces",
        Some(json!({"name": "  "})),
    )
    .await
    .assert_error(422, "validation_failed");
    outbox.assert_next(&[]).await;
    let team = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/system/workspaces",
        Some(json!({"name": "Team"})),
    )
    .await;
    assert_eq!(team.status, 201, "{:?}", team.json());
    let team_id = team.json()["data"]["id"].as_str().unwrap().to_owned();
    outbox
        .assert_next(&[added(&team_id, &owner, "owner@example.com", "owner")])
        .await;
}

db_test!(the_relay_publishes_member_events, relayed);
async fn relayed(kind: DbKind) {
    let url = unique_stream_url();
    let stream_url = url.clone();
    let auth = TestAuth::start_with(kind, move |c| {
        c.events.stream_url = Secret::new(stream_url);
    })
    .await;
    let owner = auth.owner("owner@example.com").await;
    let team = call(
        &auth,
        &owner,
        Method::POST,
        "/v1/system/workspaces",
        Some(json!({"name": "Team"})),
    )
    .await;
    assert_eq!(team.status, 201);
    let outbox = Outbox::open(&auth.db).await;
    let recorded = outbox.ids().await;
    assert_eq!(recorded.len(), 2);

    // A consumer group on the service's stream gets both, in outbox order.
    let stream = EventStream::connect(&url).await.unwrap();
    let (name, group) = ("events:auth-service", "test-consumers");
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
    assert!(
        delivered
            .iter()
            .all(|e| e.event_type == "member.added" && e.producer == "auth-service")
    );
    assert_eq!(
        delivered[1].workspace_id.as_deref(),
        team.json()["data"]["id"].as_str()
    );
    assert_eq!(delivered[1].subject_id, owner.principal_id);
    assert_eq!(delivered[1].data["email"], "owner@example.com");

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
