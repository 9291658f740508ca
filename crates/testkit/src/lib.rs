//! Test support: each test gets its own database (a fresh SQLite file, or a fresh
//! PostgreSQL database created from `TEST_DATABASE_URL`), its own cache namespace
//! (in-process, or Redis at `TEST_REDIS_URL` under a unique key prefix), its own
//! object store (a temporary directory, or a fresh bucket on the S3 API server at
//! `TEST_S3_URL`), and its servers on port 0.
//!
//! Tests that need PostgreSQL, Redis or S3 panic when the variable is unset or the
//! server unreachable: they never pass without having run. `make test` leaves them
//! out (and says so) on a machine without those servers.

use diesel::{Connection, PgConnection, RunQueryDsl};
use service_kit::AppSpec;
use service_kit::config::{CacheConfig, DatabaseConfig, HttpConfig, Secret};
use service_kit::server::RunningServer;
use std::net::TcpListener;

pub use reqwest;

pub mod content;
pub mod identity;
pub mod openapi;
pub mod part;
pub mod storage;

pub use storage::{StorageKind, TestStore};

/// Generates one test per database backend: `NAME::sqlite` and `NAME::postgres`,
/// each calling `BODY(DbKind)`.
#[macro_export]
macro_rules! db_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$body($crate::DbKind::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$body($crate::DbKind::Postgres).await
            }
        }
    };
}

/// Generates one test per cache backend: `NAME::memory` and `NAME::redis`.
#[macro_export]
macro_rules! cache_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$body($crate::CacheKind::Memory).await
            }
            #[tokio::test]
            async fn redis() {
                super::$body($crate::CacheKind::Redis).await
            }
        }
    };
}

/// The checks every service passes, as tests in a module `standard`: the
/// conformance suite and the `migrate` subcommand on both backends, start-up
/// refusing a bad configuration, and the example config matching the defaults.
///
/// `service_part_tests!(BookingService, env!("CARGO_BIN_EXE_booking-service"),
/// "BOOKING", "deploy/config/booking-service.example.toml");` — an optional fifth
/// argument adjusts the configuration the conformance suite starts the part with.
#[macro_export]
macro_rules! service_part_tests {
    ($part:ty, $bin:expr, $prefix:literal, $example:literal) => {
        $crate::service_part_tests!($part, $bin, $prefix, $example, |_config| {});
    };
    ($part:ty, $bin:expr, $prefix:literal, $example:literal, $tweak:expr) => {
        mod standard {
            use super::*;

            $crate::db_test!(conformance, conformance_suite);
            async fn conformance_suite(kind: $crate::DbKind) {
                $crate::part::conformance::<$part>(kind, $tweak).await;
            }

            $crate::db_test!(migrate_subcommand_applies_migrations, migrate_subcommand);
            async fn migrate_subcommand(kind: $crate::DbKind) {
                $crate::part::assert_migrate_subcommand($bin, $prefix, kind).await;
            }

            #[test]
            fn bad_config_exits_naming_the_key() {
                $crate::part::assert_bad_config_exits($bin, $prefix);
            }

            #[test]
            fn example_config_matches_defaults() {
                $crate::part::assert_example_config_matches_defaults::<$part>($example);
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    Memory,
    Redis,
}

fn required_env(name: &str, what: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs {what}. Set it (CI does), or run `make test`, \
             which leaves these tests out when it is unset."
        ),
    }
}

fn unique_suffix() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// A database that exists for one test and is removed afterwards.
pub struct TestDatabase {
    pub kind: DbKind,
    url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<PostgresDb>,
}

struct PostgresDb {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    pub fn new(kind: DbKind) -> TestDatabase {
        match kind {
            DbKind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("test.db");
                TestDatabase {
                    kind,
                    url: format!("sqlite://{}", path.display()),
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            DbKind::Postgres => {
                let admin_url = required_env("TEST_DATABASE_URL", "PostgreSQL");
                let name = format!("spaceport_test_{}", unique_suffix());
                let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
                    panic!("cannot reach PostgreSQL at TEST_DATABASE_URL: {e}")
                });
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .expect("create test database");
                TestDatabase {
                    kind,
                    url: with_database(&admin_url, &name),
                    _dir: None,
                    postgres: Some(PostgresDb { admin_url, name }),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A config for this database with a small pool and short timeouts.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: Secret::new(self.url.clone()),
            pool_size: 4,
            connect_timeout_secs: 2,
            migrate_on_start: true,
        }
    }

    /// Takes the database away under a running service: PostgreSQL drops it
    /// (terminating connections); SQLite has its files removed.
    pub fn destroy(&self) {
        match &self.postgres {
            Some(pg) => pg.drop_database(),
            None => {
                let path = self.url.trim_start_matches("sqlite://");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
        }
    }
}

impl PostgresDb {
    fn drop_database(&self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(pg) = &self.postgres {
            pg.drop_database();
        }
    }
}

/// `postgres://u@h:p/old?x` → `postgres://u@h:p/NAME?x`, with `sslmode=disable`
/// unless the URL sets one. Tests talk to a local server; without TLS, libpq
/// leaves OpenSSL alone, whose clean-up at process exit can otherwise race
/// connection-pool threads that are still closing connections.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    let query = match query {
        Some(q) if q.contains("sslmode=") => q.to_owned(),
        Some(q) => format!("{q}&sslmode=disable"),
        None => "sslmode=disable".to_owned(),
    };
    format!("{host_part}/{name}?{query}")
}

/// A cache namespace of its own for one test.
pub struct TestCache {
    pub config: CacheConfig,
}

impl TestCache {
    pub fn new(kind: CacheKind) -> TestCache {
        let suffix = unique_suffix();
        let config = match kind {
            CacheKind::Memory => CacheConfig {
                url: Secret::new(format!("memory://test-{suffix}")),
                key_prefix: "t:".into(),
                bus_prefix: "t:".into(),
            },
            CacheKind::Redis => CacheConfig {
                url: Secret::new(required_env("TEST_REDIS_URL", "Redis")),
                key_prefix: format!("test:{suffix}:"),
                // The test's own bus: parallel tests do not hear each other.
                bus_prefix: format!("test:{suffix}:"),
            },
        };
        TestCache { config }
    }

    pub async fn connect(&self) -> cache::Cache {
        cache::Cache::connect(self.config.url.expose(), &self.config.key_prefix)
            .await
            .expect("connect test cache")
    }
}

/// An HTTP config for tests: loopback, one worker, quick shutdown.
pub fn http_config() -> HttpConfig {
    HttpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        workers: 1,
        shutdown_timeout_secs: 2,
        ..HttpConfig::on_port(0)
    }
}

/// A loopback port chosen by the OS, bound now and served later: a server
/// whose address another part must know before it starts (connections
/// made meanwhile wait in the backlog).
pub fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind port 0")
}

/// A server on a loopback port chosen by the OS.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    /// Sent with every request made through [`TestServer::request`] and `get`.
    pub default_headers: reqwest::header::HeaderMap,
    server: Option<RunningServer>,
}

impl TestServer {
    pub fn start(spec: AppSpec) -> TestServer {
        Self::start_with(spec, &http_config())
    }

    pub fn start_with(spec: AppSpec, http: &HttpConfig) -> TestServer {
        Self::start_on(spec, http, bind())
    }

    /// Serves on `listener`, bound earlier (see [`bind`]).
    pub fn start_on(spec: AppSpec, http: &HttpConfig, listener: TcpListener) -> TestServer {
        let server = service_kit::server::start(spec, http, Some(listener)).expect("start server");
        TestServer {
            base: server.url(),
            client: client(),
            default_headers: reqwest::header::HeaderMap::new(),
            server: Some(server),
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("running").addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends every later request as `identity`, as the gateway would.
    pub fn with_identity(mut self, identity: &::identity::Identity, audience: &str) -> Self {
        self.default_headers.insert(
            ::identity::HEADER,
            reqwest::header::HeaderValue::from_str(&crate::identity::token(identity, audience))
                .expect("token"),
        );
        self
    }

    /// A request with the default headers.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .headers(self.default_headers.clone())
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        TestResponse::from(request.send().await.expect("request")).await
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop(true).await;
        }
    }
}

pub fn client() -> reqwest::Client {
    service_kit::tls::ensure_provider();
    // Tests assert what a server answers, redirects included: never follow them.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A response read to the end.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub async fn from(response: reqwest::Response) -> TestResponse {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body").to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {} body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an error answer with the given status and catalog code, in
    /// whichever dialect the route speaks (told from the body's shape); returns
    /// the body. SpaceOS writes the code as is; gospace writes its own word for
    /// it ([`service_kit::ErrorCode::gospace`]); Tuzzle writes no code, so only
    /// the status and the message are checked there.
    pub fn assert_error(&self, status: u16, code: &str) -> serde_json::Value {
        let body = self.json();
        assert_eq!(self.status, status, "status; body: {body}");
        match self.dialect() {
            service_kit::Dialect::SpaceOs => {
                assert_eq!(body["status"], status, "envelope status; body: {body}");
                assert_eq!(body["success"], false, "{body}");
                assert_eq!(body["error"]["code"], code, "{body}");
                assert!(body["message"].is_string(), "{body}");
                assert!(body["timestamp"].is_string(), "{body}");
                if body["errors"].is_array() && code == "validation_failed" {
                    assert_eq!(body["message"], "Validation failed", "{body}");
                }
            }
            service_kit::Dialect::Gospace => {
                let catalog = service_kit::ErrorCode::ALL
                    .into_iter()
                    .find(|c| c.as_str() == code)
                    .unwrap_or_else(|| panic!("{code} is not in the catalog"));
                assert_eq!(body["success"], false, "{body}");
                assert_eq!(body["error"]["code"], catalog.gospace(), "{body}");
                assert!(body["error"]["message"].is_string(), "{body}");
                assert!(body["error"]["details"].is_array(), "{body}");
            }
            service_kit::Dialect::Tuzzle => {
                assert!(body["message"].is_string(), "{body}");
                assert!(body.get("success").is_none(), "{body}");
            }
        }
        body
    }

    /// The dialect an error body is written in, told from its shape.
    pub fn dialect(&self) -> service_kit::Dialect {
        let body = self.json();
        if body.get("status").is_some() && body.get("timestamp").is_some() {
            service_kit::Dialect::SpaceOs
        } else if body.get("success").is_some() {
            service_kit::Dialect::Gospace
        } else {
            service_kit::Dialect::Tuzzle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn swaps_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=require", "x"),
            "postgres://u@h/x?sslmode=require"
        );
        assert_eq!(
            with_database("postgres://u@h:5432?connect_timeout=5", "x"),
            "postgres://u@h:5432/x?connect_timeout=5&sslmode=disable"
        );
    }
}
