//! A running events-service with its own database, cache and streams; a
//! receiver on 127.0.0.1 that records what it is sent; the identities the
//! gateway would send; and a way to publish events as a producing service.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use events::{Event, EventStream};
use events_service::config::EventsConfig;
use events_service::{EventsService, Options};
use identity::{Identity, PrincipalType, ScopeSet};
use serde_json::Value;
use service_kit::cli::ServicePart;
use service_kit::config::Secret;
use service_kit::ids::{self, prefix};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Database;
use testkit::reqwest::Method;
use testkit::{CacheKind, DbKind, TestCache, TestDatabase, TestResponse, TestServer};

/// One test per database × stream backend: `sqlite`, `postgres`,
/// `sqlite_redis`, `postgres_redis`, each calling `BODY(DbKind, CacheKind)`
/// (names ending in `postgres` need `TEST_DATABASE_URL`, in `redis`
/// `TEST_REDIS_URL`).
macro_rules! on_all_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            use testkit::{CacheKind, DbKind};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(DbKind::Sqlite, CacheKind::Memory).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(DbKind::Postgres, CacheKind::Memory).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_redis() {
                super::$body(DbKind::Sqlite, CacheKind::Redis).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                super::$body(DbKind::Postgres, CacheKind::Redis).await
            }
        }
    };
}

/// One test per database backend over the in-process stream: `sqlite`,
/// `postgres`, each calling `BODY(DbKind)`.
macro_rules! on_both_databases {
    ($name:ident, $body:ident) => {
        mod $name {
            use testkit::DbKind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(DbKind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(DbKind::Postgres).await
            }
        }
    };
}

pub(crate) use {on_all_backends, on_both_databases};

/// The streams of one test: unique names, so that tests sharing a Redis do
/// not read each other's events.
#[derive(Debug, Clone)]
pub struct Streams {
    pub booking: String,
    pub auth: String,
    pub spaces: String,
}

impl Streams {
    fn new() -> Streams {
        let suffix = ulid::Ulid::new().to_string().to_lowercase();
        Streams {
            booking: format!("events:booking-service:{suffix}"),
            auth: format!("events:auth-service:{suffix}"),
            spaces: format!("events:spaces-service:{suffix}"),
        }
    }

    fn list(&self) -> String {
        format!("{},{},{}", self.booking, self.auth, self.spaces)
    }
}

/// Settings no test should leave to the defaults: an inline root secret, mail
/// to the log, fast polling; and `streams`.
pub fn isolate(config: &mut EventsConfig) {
    use base64::Engine;
    let mut root = [0u8; 32];
    getrandom::fill(&mut root).unwrap();
    config.secret.key = Secret::new(base64::engine::general_purpose::STANDARD.encode(root));
    config.mail.url = Secret::new("log");
    config.webhooks.poll_interval_ms = 100;
    config.webhooks.timeout_secs = 5;
    config.webhooks.lease_secs = 15;
    config.events.streams = Streams::new().list();
}

/// A running events-service.
pub struct TestEvents {
    pub server: TestServer,
    pub config: EventsConfig,
    pub streams: Streams,
    pub db: Arc<TestDatabase>,
    pub cache: Arc<TestCache>,
}

/// How a test starts the service.
pub struct Start {
    db: DbKind,
    cache: CacheKind,
    options: Options,
    shared: Option<(Arc<TestDatabase>, Arc<TestCache>, EventsConfig)>,
}

impl Start {
    pub fn new(db: DbKind, cache: CacheKind) -> Start {
        Start {
            db,
            cache,
            options: Options::default(),
            shared: None,
        }
    }

    /// Resolves receivers' names through `lookup`.
    pub fn lookup(mut self, lookup: outbound::FixedLookup) -> Start {
        self.options.lookup = Arc::new(lookup);
        self
    }

    /// Another replica of `first`: the same database, cache, streams and
    /// root secret.
    pub fn replica_of(first: &TestEvents) -> Start {
        Start {
            db: first.db.kind,
            cache: CacheKind::Memory,
            options: Options::default(),
            shared: Some((first.db.clone(), first.cache.clone(), first.config.clone())),
        }
    }

    pub async fn run(self, tweak: impl FnOnce(&mut EventsConfig)) -> TestEvents {
        let (db, cache, mut config) = match self.shared {
            Some(shared) => shared,
            None => {
                let db = Arc::new(TestDatabase::new(self.db));
                let cache = Arc::new(TestCache::new(self.cache));
                let mut config = EventsService::default_config();
                config.http = testkit::http_config();
                config.database = db.config();
                config.cache = cache.config.clone();
                config.identity.gateway_public_keys = testkit::identity::public_pem();
                isolate(&mut config);
                (db, cache, config)
            }
        };
        tweak(&mut config);
        let spec = events_service::build_with(config.clone(), self.options)
            .await
            .expect("build events-service");
        let server = TestServer::start_with(spec, &config.http);
        let names: Vec<String> = config.streams();
        let streams = Streams {
            booking: names[0].clone(),
            auth: names[1].clone(),
            spaces: names[2].clone(),
        };
        TestEvents {
            server,
            config,
            streams,
            db,
            cache,
        }
    }
}

impl TestEvents {
    pub async fn start_with(
        db: DbKind,
        cache: CacheKind,
        tweak: impl FnOnce(&mut EventsConfig),
    ) -> TestEvents {
        Start::new(db, cache).run(tweak).await
    }

    /// Sends `body` (if any) as JSON, as `who`, through the gateway.
    pub async fn call(
        &self,
        who: &Identity,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = self
            .server
            .client
            .request(method, self.server.url(path))
            .header(
                identity::HEADER,
                testkit::identity::token(who, EventsService::NAME),
            );
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.server.send(request).await
    }

    pub async fn get(&self, who: &Identity, path: &str) -> TestResponse {
        self.call(who, Method::GET, path, None).await
    }

    pub async fn post(&self, who: &Identity, path: &str, body: Value) -> TestResponse {
        self.call(who, Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, who: &Identity, path: &str, body: Value) -> TestResponse {
        self.call(who, Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, who: &Identity, path: &str) -> TestResponse {
        self.call(who, Method::DELETE, path, None).await
    }

    /// Creates a SpaceOS webhook; returns the answer's `data`.
    pub async fn create_webhook(&self, who: &Identity, body: Value) -> Value {
        let created = self.post(who, "/api/v1/webhooks", body).await;
        assert_eq!(created.status, 201, "{}", created.json());
        created.json()["data"].clone()
    }

    /// The deliveries log of a webhook (first page).
    pub async fn deliveries(&self, who: &Identity, webhook: &str) -> Vec<Value> {
        let log = self
            .get(
                who,
                &format!("/api/v1/webhooks/{webhook}/deliveries?limit=100"),
            )
            .await;
        assert_eq!(log.status, 200, "{}", log.json());
        log.json()["data"].as_array().unwrap().clone()
    }

    /// Publishes `event` as its producer would, to `stream`.
    pub async fn publish(&self, stream: &str, event: &Event) {
        let producer = EventStream::connect(self.config.stream_url())
            .await
            .expect("connect the stream");
        producer.publish(stream, event).await.expect("publish");
    }

    /// Another connection pool on the service's database.
    pub async fn database(&self) -> Database {
        Database::connect(&self.db.config()).await.unwrap()
    }
}

pub fn new_workspace() -> String {
    ids::new_id(prefix::WORKSPACE)
}

pub fn new_organization() -> String {
    ids::new_id(prefix::ORGANIZATION)
}

pub fn with_scopes(workspace: &str, scopes: &str) -> Identity {
    Identity {
        principal_id: ids::new_id(prefix::USER),
        principal_type: PrincipalType::User,
        workspace_id: Some(workspace.to_owned()),
        scopes: ScopeSet::parse(scopes).unwrap(),
        space_id: None,
        organization_id: None,
    }
}

/// A workspace admin: both webhook scopes.
pub fn admin(workspace: &str) -> Identity {
    with_scopes(workspace, "webhooks:read webhooks:write")
}

/// A member or viewer: `webhooks:read` only.
pub fn reader(workspace: &str) -> Identity {
    with_scopes(workspace, "webhooks:read bookings:read")
}

/// A workspace API key bound to one organization.
pub fn organization_key(workspace: &str, organization: &str) -> Identity {
    Identity {
        principal_type: PrincipalType::ApiKey,
        organization_id: Some(organization.to_owned()),
        ..admin(workspace)
    }
}

/// A `booking.created` of `organization` in `workspace`, as booking-service
/// records it.
pub fn booking_created(workspace: &str, organization: &str) -> Event {
    let booking = ids::new_id(prefix::BOOKING);
    Event::new(
        "booking-service",
        "booking.created",
        &booking,
        serde_json::json!({
            "booking_id": booking,
            "meeting_space_id": ids::new_id(prefix::MEETING_SPACE),
            "organization_id": organization,
            "start_time": "2030-01-15T10:00:00.000Z",
            "end_time": "2030-01-15T11:00:00.000Z",
            "status": "confirmed",
            "organizer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        }),
        Some(ids::new_id("req")),
    )
    .with_workspace(workspace)
    .with_organization(organization)
}

/// Polls `check` until it answers `Some`, for up to `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path and query.
    pub uri: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Script {
    /// Statuses to answer, in order; then `otherwise`.
    next: VecDeque<u16>,
    otherwise: u16,
    /// The body of every answer; `answered <status>` when `None`.
    body: Option<String>,
    /// How long each answer waits.
    delay: Duration,
    received: Vec<Received>,
}

/// A webhook receiver on 127.0.0.1: records every request and answers the
/// statuses it is told to.
pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// A receiver that answers 200.
    pub async fn start() -> Receiver {
        Receiver::answering(&[], 200).await
    }

    /// Answers `first` in order, then `otherwise`.
    pub async fn answering(first: &[u16], otherwise: u16) -> Receiver {
        let script = Arc::new(Mutex::new(Script {
            next: first.iter().copied().collect(),
            otherwise,
            body: None,
            delay: Duration::ZERO,
            received: Vec::new(),
        }));
        let shared = web::Data::from(script.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the receiver");
        let addr = server.addrs()[0];
        tokio::spawn(server.run());
        Receiver {
            url: format!("http://{addr}/hooks"),
            script,
        }
    }

    /// Answers with `body` from now on.
    pub fn answer_with(&self, body: String) {
        self.script.lock().unwrap().body = Some(body);
    }

    /// Answers only after `delay` from now on (the request is recorded at once).
    pub fn delay(&self, delay: Duration) {
        self.script.lock().unwrap().delay = delay;
    }

    /// Answers `status` from now on.
    pub fn answer(&self, status: u16) {
        let mut script = self.script.lock().unwrap();
        script.next.clear();
        script.otherwise = status;
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Waits until at least `count` requests came; returns them all.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        eventually(limit, &format!("{count} deliveries"), || async {
            let received = self.received();
            (received.len() >= count).then_some(received)
        })
        .await
    }
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    script: web::Data<Mutex<Script>>,
) -> HttpResponse {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let (status, body, delay) = {
        let mut script = script.lock().unwrap();
        script.received.push(Received {
            uri: request.uri().to_string(),
            headers,
            body: body.to_vec(),
            at: Instant::now(),
        });
        let status = script.next.pop_front().unwrap_or(script.otherwise);
        let body = script
            .body
            .clone()
            .unwrap_or_else(|| format!("answered {status}"));
        (status, body, script.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("location", "http://127.0.0.1:1/elsewhere"))
        .body(body)
}

/// Checks a delivery as a receiver following the Standard Webhooks
/// specification would, written from the specification rather than with
/// events-service's code: the key is the base64 after `whsec_` (the bytes of
/// any other secret), the signed content `{webhook-id}.{webhook-timestamp}.{body}`,
/// the header a space-separated list of `v1,<base64 HMAC-SHA256>`, and the
/// timestamp within five minutes.
pub fn verify_standard_webhook(secret: &str, received: &Received) -> Result<(), String> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{Hmac, Mac};
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => STANDARD.decode(encoded).map_err(|e| e.to_string())?,
        None => secret.as_bytes().to_vec(),
    };
    let id = received.header("webhook-id");
    let timestamp = received.header("webhook-timestamp");
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| "a bad timestamp".to_owned())?;
    if (chrono::Utc::now().timestamp() - seconds).abs() > 300 {
        return Err(format!("a stale timestamp {seconds}"));
    }
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&received.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    received
        .header("webhook-signature")
        .split(' ')
        .any(|candidate| candidate == expected)
        .then_some(())
        .ok_or_else(|| format!("no signature matches {expected}"))
}

/// The product signature as SpaceOS and gospace receivers compute it:
/// lowercase hex of HMAC-SHA256 with the secret's bytes, over the raw body.
pub fn product_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
