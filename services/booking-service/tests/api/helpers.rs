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
