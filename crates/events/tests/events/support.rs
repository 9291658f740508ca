//! What the cases share: per-test databases with the outbox table, per-test
//! streams, a TCP proxy that takes Redis away and brings it back, and test
//! generators named by what they need (cases ending in `postgres` need
//! `TEST_DATABASE_URL`, in `redis` `TEST_REDIS_URL`; both fail, never skip,
//! when it is unset).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use events::{Event, EventStream, outbox};
use serde_json::json;
use store::{Database, DbConnection, StoreError};
use testkit::{CacheKind, DbKind, TestCache, TestDatabase};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One test per database × stream backend: `sqlite`, `postgres`,
/// `sqlite_redis`, `postgres_redis`, each calling `BODY(DbKind, CacheKind)`.
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

/// One test per database backend, over the in-process stream: `sqlite`, `postgres`.
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

/// One test per stream backend: `memory`, `redis`.
macro_rules! on_both_streams {
    ($name:ident, $body:ident) => {
        mod $name {
            use testkit::CacheKind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$body(CacheKind::Memory).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$body(CacheKind::Redis).await
            }
        }
    };
}

pub(crate) use {on_all_backends, on_both_databases, on_both_streams};

/// A fresh database with the outbox table, created with the migration SQL the
/// crate hands to services.
pub async fn outbox_database(kind: DbKind) -> (TestDatabase, Database) {
    let test_db = TestDatabase::new(kind);
    let db = Database::connect(&test_db.config())
        .await
        .expect("connect test database");
    db.run(create_outbox).await.expect("outbox SQL");
    (test_db, db)
}

pub fn create_outbox(conn: &mut DbConnection) -> Result<(), StoreError> {
    match conn {
        DbConnection::Postgresql(pg) => pg.batch_execute(outbox::POSTGRES_UP)?,
        DbConnection::Sqlite(lite) => lite.batch_execute(outbox::SQLITE_UP)?,
    }
    Ok(())
}

/// A second pool on the same database, as another replica would have.
pub async fn another_replica(test_db: &TestDatabase) -> Database {
    Database::connect(&test_db.config())
        .await
        .expect("connect test database")
}

/// A stream backend of its own for one test, and a stream name no other test
/// uses (Redis is shared between parallel tests).
pub struct TestStream {
    pub url: String,
    pub stream: EventStream,
    pub name: String,
}

impl TestStream {
    pub async fn new(kind: CacheKind) -> TestStream {
        let url = TestCache::new(kind).config.url.expose().to_owned();
        let stream = EventStream::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open the test stream: {e}"));
        stream
            .ping()
            .await
            .unwrap_or_else(|e| panic!("test stream does not answer: {e}"));
        TestStream {
            url,
            stream,
            name: format!("test:{}:events", ulid::Ulid::new()),
        }
    }

    /// Another handle (its own connection) on the same backend.
    pub async fn another_handle(&self) -> EventStream {
        EventStream::connect(&self.url)
            .await
            .expect("connect stream")
    }

    /// Every event in the stream, in stream order, read through a group of
    /// its own (which starts at the beginning): waits until at least
    /// `expected` arrived, then drains whatever else is there (duplicates).
    pub async fn read_all(&self, expected: usize) -> Vec<Event> {
        let group = format!("audit-{}", ulid::Ulid::new());
        self.stream
            .ensure_group(&self.name, &group)
            .await
            .expect("audit group");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut events = Vec::new();
        loop {
            let block = if events.len() >= expected {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            };
            let batch = self
                .stream
                .read(&self.name, &group, "audit", 1000, block)
                .await
                .expect("read");
            if batch.is_empty()
                && (events.len() >= expected || tokio::time::Instant::now() > deadline)
            {
                return events;
            }
            events.extend(batch.into_iter().map(|d| d.event));
        }
    }

    /// Removes the stream and its epoch marker from Redis (nothing to do in
    /// memory): what a Redis without persistence looks like after a restart.
    pub async fn clean_up(&self) {
        if self.url.starts_with("redis") {
            let client = redis::Client::open(self.url.as_str()).expect("redis url");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let _: () = redis::cmd("DEL")
                .arg(&self.name)
                .arg(format!("{}:epoch", self.name))
                .query_async(&mut conn)
                .await
                .expect("DEL");
        }
    }
}

/// The `n`-th test event.
pub fn event(n: usize) -> Event {
    Event::new(
        "test-service",
        "booking.created",
        format!("bk_{n}"),
        json!({ "n": n, "booking_id": format!("bk_{n}") }),
        Some(format!("req_{n}")),
    )
    .with_workspace("wrk_test")
    .with_organization("org_test")
}

/// Records `events` in one transaction.
pub async fn record(db: &Database, events: Vec<Event>) {
    db.transaction(move |conn| {
        for event in &events {
            outbox::record(conn, event)?;
        }
        Ok::<_, StoreError>(())
    })
    .await
    .expect("record events");
}

pub async fn unpublished(db: &Database) -> i64 {
    db.run(outbox::unpublished_count).await.expect("count")
}

/// The ids, checking that none repeats; returns how many did.
pub fn duplicates(events: &[Event]) -> usize {
    let mut seen = std::collections::HashSet::new();
    events.iter().filter(|e| !seen.insert(e.id.clone())).count()
}

/// A TCP proxy in front of Redis that can be taken down (every connection
/// through it is cut, new ones are closed at once) and brought back, as a
/// Redis restart or a network partition would.
pub struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target_url: &str) -> Proxy {
        let target = socket_address(&authority(target_url).1);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let up = up.clone();
            let links = links.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let target = target.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Proxy {
            addr,
            up,
            links,
            accept,
        }
    }

    /// `target_url` with the proxy's address in place of the server's.
    pub fn url(&self, target_url: &str) -> String {
        let (start, host_port) = authority(target_url);
        format!(
            "{}{}{}",
            &target_url[..start],
            self.addr,
            &target_url[start + host_port.len()..]
        )
    }

    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.accept.abort();
    }
}

/// Where the URL's `host[:port]` starts, and what it is.
fn authority(url: &str) -> (usize, String) {
    let scheme_end = url.find("://").expect("scheme") + 3;
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    (scheme_end + host_start, authority[host_start..].to_owned())
}

/// `host[:port]` as something to connect to (Redis's default port when none).
fn socket_address(host_port: &str) -> String {
    if host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    }
}
