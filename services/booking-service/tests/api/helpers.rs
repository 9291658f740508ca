//! A running booking-service with its own database and cache, and builders for
//! what the tests book.

use booking_service::BookingService;
use booking_service::config::BookingConfig;
use chrono::{DateTime, Duration, Utc};
use identity::{Identity, PrincipalType, ScopeSet};
use serde_json::{Value, json};
use store::Database;
use testkit::part::start_part_with;
use testkit::reqwest::{Method, RequestBuilder};
use testkit::{CacheKind, DbKind, TestCache, TestDatabase, TestResponse, TestServer};

pub struct TestBooking {
    pub server: TestServer,
    pub db: TestDatabase,
    pub owner: Identity,
    pub cache: TestCache,
}

/// A member of `workspace` with every booking scope.
pub fn member(workspace: &str) -> Identity {
    Identity {
        principal_id: format!("usr_{}", ulid_like()),
        principal_type: PrincipalType::User,
        workspace_id: Some(workspace.to_owned()),
        scopes: ScopeSet::parse(
            "organizations:read organizations:write bookings:read bookings:write",
        )
        .unwrap(),
        space_id: None,
        organization_id: None,
    }
}

/// A member with only the given scopes.
pub fn with_scopes(workspace: &str, scopes: &str) -> Identity {
    Identity {
        scopes: ScopeSet::parse(scopes).unwrap(),
        ..member(workspace)
    }
}

pub fn anonymous() -> Identity {
    Identity::anonymous()
}

fn ulid_like() -> String {
    service_kit::ids::new_id("x")[2..].to_owned()
}

pub fn new_workspace() -> String {
    service_kit::ids::new_id("wrk")
}

/// A unique slug.
pub fn slug(stem: &str) -> String {
    format!("{stem}-{}", ulid_like().to_lowercase())
}

/// A business-hours body: 09:00 to 17:00 every day of the week.
pub fn nine_to_five() -> Value {
    let hours: Vec<_> = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .map(|d| json!({"weekday": d, "open": "09:00", "close": "17:00"}))
    .collect();
    json!({ "hours": hours })
}

/// A time `days` days from now at `hh:mm` UTC.
pub fn at(days: i64, hour: u32, minute: u32) -> DateTime<Utc> {
    (Utc::now() + Duration::days(days))
        .date_naive()
        .and_hms_opt(hour, minute, 0)
        .unwrap()
        .and_utc()
}

pub fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl TestBooking {
    pub async fn start(kind: DbKind) -> TestBooking {
        Self::start_with(kind, |_| {}).await
    }

    pub async fn start_with(kind: DbKind, tweak: impl FnOnce(&mut BookingConfig)) -> TestBooking {
        Self::start_on(kind, CacheKind::Memory, tweak).await
    }

    pub async fn start_on(
        kind: DbKind,
        cache_kind: CacheKind,
        tweak: impl FnOnce(&mut BookingConfig),
    ) -> TestBooking {
        let db = TestDatabase::new(kind);
        let cache = TestCache::new(cache_kind);
        let server = start_part_with::<BookingService>(Some(&db), &cache, |config| {
            config.database.pool_size = 16;
            tweak(config);
        })
        .await;
        TestBooking {
            server,
            db,
            owner: member(&new_workspace()),
            cache,
        }
    }

    /// Another replica of the service on the same database and cache.
    pub async fn replica(&self, tweak: impl FnOnce(&mut BookingConfig)) -> TestServer {
        start_part_with::<BookingService>(Some(&self.db), &self.cache, |config| {
            config.database.pool_size = 16;
            tweak(config);
        })
        .await
    }

    /// A second connection to the service's database.
    pub async fn database(&self) -> Database {
        Database::connect(&self.db.config()).await.unwrap()
    }

    pub fn request_as(&self, who: &Identity, method: Method, path: &str) -> RequestBuilder {
        let mut request = self.server.client.request(method, self.server.url(path));
        request = request.header(
            identity::HEADER,
            testkit::identity::token(who, "booking-service"),
        );
        request
    }

    pub async fn call(
        &self,
        who: &Identity,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = self.request_as(who, method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.server.send(request).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.call(&self.owner, Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.call(&self.owner, Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> TestResponse {
        self.call(&self.owner, Method::PATCH, path, Some(body))
            .await
    }

    /// An organization in UTC; returns its id.
    pub async fn org(&self) -> String {
        self.org_in("UTC").await
    }

    pub async fn org_in(&self, timezone: &str) -> String {
        let r = self
            .post(
                "/api/v1/organizations",
                json!({"name": "Acme", "slug": slug("acme"), "timezone": timezone}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json());
        r.json()["data"]["id"].as_str().unwrap().to_owned()
    }

    /// A meeting space of `org` with `settings` on top of a name and slug.
    pub async fn space(&self, org: &str, settings: Value) -> String {
        let mut body = json!({"organization_id": org, "name": "Room", "slug": slug("room")});
        for (k, v) in settings.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = self.post("/api/v1/meeting-spaces", body).await;
        assert_eq!(r.status, 201, "{}", r.json());
        r.json()["data"]["id"].as_str().unwrap().to_owned()
    }

    /// A booking request body.
    pub fn booking(space: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Value {
        json!({
            "meeting_space_id": space,
            "start_time": rfc(start),
            "end_time": rfc(end),
            "organizer_name": "John Doe",
            "organizer_email": "john@example.com",
        })
    }

    /// A booking of `space` as `who`, through `server` (a replica, say).
    pub async fn book_on(
        &self,
        server: &TestServer,
        who: &Identity,
        space: &str,
        (start, end): (DateTime<Utc>, DateTime<Utc>),
    ) -> TestResponse {
        let request = server
            .client
            .request(Method::POST, server.url("/api/v1/bookings"))
            .header(
                identity::HEADER,
                testkit::identity::token(who, "booking-service"),
            )
            .json(&Self::booking(space, start, end));
        server.send(request).await
    }

    pub async fn book(
        &self,
        space: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> TestResponse {
        self.post("/api/v1/bookings", Self::booking(space, start, end))
            .await
    }
}

/// An event as the service's outbox holds it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub event_type: String,
    pub subject_id: String,
    pub workspace_id: Option<String>,
    pub organization_id: Option<String>,
    pub producer: String,
    pub request_id: Option<String>,
    pub data: Value,
}

/// An outbox row as [`recorded`] reads it.
#[derive(diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = events::outbox::outbox)]
struct OutboxRow {
    event_type: String,
    subject_id: String,
    workspace_id: Option<String>,
    organization_id: Option<String>,
    producer: String,
    request_id: Option<String>,
    data: String,
}

/// Every event in the outbox, in outbox order (published or not).
pub async fn recorded(db: &Database) -> Vec<Recorded> {
    use diesel::prelude::*;
    use events::outbox::outbox;
    let rows: Vec<OutboxRow> = db
        .run(|conn| {
            outbox::table
                .order(outbox::seq.asc())
                .select(OutboxRow::as_select())
                .load(conn)
                .map_err(store::StoreError::from)
        })
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| Recorded {
            event_type: r.event_type,
            subject_id: r.subject_id,
            workspace_id: r.workspace_id,
            organization_id: r.organization_id,
            producer: r.producer,
            request_id: r.request_id,
            data: serde_json::from_str(&r.data).unwrap(),
        })
        .collect()
}

/// The events about `subject`, in outbox order.
pub async fn recorded_about(db: &Database, subject: &str) -> Vec<Recorded> {
    let mut all = recorded(db).await;
    all.retain(|e| e.subject_id == subject);
    all
}

/// Polls `probe` until it answers, for at most 20 seconds; panics naming
/// `what` when it never does.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What a booking's times become when a test moves them in the database
/// (the API refuses times in the past).
pub struct Moved {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The check-in deadline, for bookings of spaces with check-in.
    pub deadline: Option<DateTime<Utc>>,
}

/// Moves bookings in one transaction, as if they had been made for these
/// times a day before their start (which is then their `created_at` and
/// `updated_at`). The test spaces have no buffers.
pub async fn move_bookings(db: &Database, moves: Vec<(String, Moved)>) {
    use booking_service::schema::bookings;
    use diesel::prelude::*;
    db.transaction(move |conn| {
        for (id, m) in &moves {
            let made = (m.start - Duration::days(1)).naive_utc();
            diesel::update(bookings::table.filter(bookings::id.eq(id)))
                .set((
                    bookings::start_time.eq(m.start.naive_utc()),
                    bookings::end_time.eq(m.end.naive_utc()),
                    bookings::blocked_start.eq(m.start.naive_utc()),
                    bookings::blocked_end.eq(m.end.naive_utc()),
                    bookings::check_in_deadline.eq(m.deadline.map(|d| d.naive_utc())),
                    bookings::created_at.eq(made),
                    bookings::updated_at.eq(made),
                ))
                .execute(conn)?;
        }
        Ok::<_, store::StoreError>(())
    })
    .await
    .unwrap();
}
