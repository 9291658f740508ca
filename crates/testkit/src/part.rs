//! Checks every part (the gateway and each service) must pass, written once.

use crate::{CacheKind, DbKind, TestCache, TestDatabase, TestServer, http_config};
use service_kit::cli::ServicePart;
use service_kit::config::Settings;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Builds the part against a test database and cache and serves it on port 0.
pub async fn start_part<P: ServicePart>(
    db: Option<&TestDatabase>,
    cache: &TestCache,
) -> TestServer {
    start_part_with::<P>(db, cache, |_| {}).await
}

/// As [`start_part`], with the part's configuration adjusted first.
pub async fn start_part_with<P: ServicePart>(
    db: Option<&TestDatabase>,
    cache: &TestCache,
    tweak: impl FnOnce(&mut P::Config),
) -> TestServer {
    start_part_on::<P>(crate::bind(), db, cache, tweak).await
}

/// As [`start_part_with`], served on `listener`, bound earlier: for a part
/// whose address is configured into another before it starts.
pub async fn start_part_on<P: ServicePart>(
    listener: std::net::TcpListener,
    db: Option<&TestDatabase>,
    cache: &TestCache,
    tweak: impl FnOnce(&mut P::Config),
) -> TestServer {
    let mut config = P::default_config();
    *config.http_mut() = http_config();
    if let (Some(slot), Some(db)) = (config.database_mut(), db) {
        *slot = db.config();
    }
    if let Some(slot) = config.cache_mut() {
        *slot = cache.config.clone();
    }
    if let Some(slot) = config.identity_mut() {
        slot.gateway_public_keys = crate::identity::public_pem();
    }
    tweak(&mut config);
    let http = config.http().clone();
    let spec = P::build(config).await.expect("build part");
    TestServer::start_on(spec, &http, listener)
        .with_identity(&::identity::Identity::anonymous(), P::NAME)
}

/// Health, readiness, request ids, envelope 404/405, metrics — and readiness
/// failing once the database is gone.
pub async fn conformance<P: ServicePart>(kind: DbKind, tweak: impl FnOnce(&mut P::Config)) {
    let db = TestDatabase::new(kind);
    let cache = TestCache::new(CacheKind::Memory);
    let server = start_part_with::<P>(Some(&db), &cache, tweak).await;

    let health = server.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["data"]["status"], "ok");
    assert_eq!(health.json()["success"], true);
    assert!(
        health
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );

    // A sane incoming request id is reused; an unsafe one is replaced.
    let get = |path: &str| server.request(reqwest::Method::GET, path);
    let reused = server
        .send(get("/healthz").header("x-request-id", "trace-abc.123"))
        .await;
    assert_eq!(reused.header("x-request-id"), Some("trace-abc.123"));
    let replaced = server
        .send(get("/healthz").header("x-request-id", "bad id;drop"))
        .await;
    assert_ne!(replaced.header("x-request-id"), Some("bad id;drop"));

    let ready = server.get("/readyz").await;
    assert_eq!(ready.status, 200, "{:?}", ready.json());
    assert_eq!(ready.json()["data"]["checks"]["database"], "ok");
    assert_eq!(ready.json()["data"]["checks"]["cache"], "ok");

    let missing = server
        .send(get("/no/such/route").header("x-request-id", "req-404"))
        .await;
    let body = missing.assert_error(404, "not_found");
    assert_eq!(
        body["error"]["request_id"], "req-404",
        "error bodies carry the request id"
    );

    let wrong_method = server
        .send(server.request(reqwest::Method::DELETE, "/healthz"))
        .await;
    wrong_method.assert_error(405, "method_not_allowed");

    // Around the gateway: no token, a token for another service, a forged one.
    let bare = server
        .send(server.client.get(server.url("/no/such/route")))
        .await;
    bare.assert_error(401, "unauthorized");
    let elsewhere =
        crate::identity::token(&::identity::Identity::anonymous(), "some-other-service");
    let misaddressed = server
        .send(
            server
                .client
                .get(server.url("/no/such/route"))
                .header(::identity::HEADER, elsewhere),
        )
        .await;
    misaddressed.assert_error(401, "unauthorized");
    let stranger = ::identity::IdentitySigner::new(
        ::identity::SigningKey::generate().expect("key"),
        Duration::from_secs(30),
    );
    let forged_token = stranger.token_for(&::identity::Identity::gateway(), P::NAME);
    let forged = server
        .send(
            server
                .client
                .get(server.url("/internal/anything"))
                .header(::identity::HEADER, forged_token),
        )
        .await;
    forged.assert_error(401, "unauthorized");
    let spoofed = server
        .send(
            server
                .client
                .get(server.url("/internal/anything"))
                .header(::identity::HEADER, "anonymous"),
        )
        .await;
    spoofed.assert_error(401, "unauthorized");

    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    let healthz_line = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("route=\"/healthz\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no /healthz counter in metrics:\n{text}"));
    assert!(
        healthz_line.contains(&format!("service=\"{}\"", P::NAME)),
        "{healthz_line}"
    );
    assert!(
        healthz_line.ends_with(" 3"),
        "three /healthz requests counted: {healthz_line}"
    );
    assert!(
        text.contains("route=\"unmatched\""),
        "unknown paths are counted under one label, not by raw path"
    );

    db.destroy();
    let not_ready = server.get("/readyz").await;
    let body = not_ready.assert_error(503, "service_unavailable");
    assert_ne!(body["data"]["checks"]["database"], "ok");
    // Liveness does not depend on the database.
    assert_eq!(server.get("/healthz").await.status, 200);
    server.stop().await;
}

/// Runs a binary, killing it if it has not exited within `limit`.
pub fn run_binary(
    bin: &str,
    args: &[&str],
    env: &[(String, String)],
    limit: Duration,
) -> (Option<i32>, String) {
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let output = child.wait_with_output().expect("output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            return (status.code(), text);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "did not exit in time".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bad configuration value stops the binary at once, with exit code 2 and a
/// message naming the key.
pub fn assert_bad_config_exits(bin: &str, prefix: &str) {
    let cases = [
        ("HTTP__ADDR", "not-an-address", "http.addr"),
        ("HTTP__WORKERS", "many", "http.workers"),
        ("LOG__FORMAT", "xml", "log.format"),
        ("CACHE__URL", "memcached://x", "cache.url"),
    ];
    for (var, value, key) in cases {
        let env = [(format!("{prefix}__{var}"), value.to_owned())];
        let (code, output) = run_binary(bin, &[], &env, Duration::from_secs(20));
        assert_eq!(
            code,
            Some(2),
            "{prefix}__{var}={value} must exit 2; output: {output}"
        );
        assert!(
            output.contains(key),
            "the message must name `{key}`: {output}"
        );
    }
}

/// `migrate` applies the migrations to an empty database and exits 0, twice.
pub async fn assert_migrate_subcommand(bin: &str, prefix: &str, kind: DbKind) {
    let db = TestDatabase::new(kind);
    let env = [(format!("{prefix}__DATABASE__URL"), db.url().to_owned())];
    for round in 0..2 {
        let (code, output) = run_binary(bin, &["migrate"], &env, Duration::from_secs(60));
        assert_eq!(code, Some(0), "migrate round {round}: {output}");
    }
    let store = store_ping(&db).await;
    assert!(store.is_ok(), "the migrated database answers: {store:?}");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn store_ping(db: &TestDatabase) -> Result<(), String> {
    use diesel::{Connection, RunQueryDsl};
    let url = db.url().trim_start_matches("sqlite://").to_owned();
    let kind = db.kind;
    tokio::task::spawn_blocking(move || {
        let query = diesel::sql_query("SELECT COUNT(*) AS n FROM __diesel_schema_migrations");
        let count = match kind {
            DbKind::Sqlite => diesel::SqliteConnection::establish(&url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| query.get_result::<Count>(&mut c).map_err(|e| e.to_string())),
            DbKind::Postgres => diesel::PgConnection::establish(&url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| query.get_result::<Count>(&mut c).map_err(|e| e.to_string())),
        }?;
        if count.n == 0 {
            Err("no migrations recorded".into())
        } else {
            Ok(())
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The example config file shipped in `deploy/config/` loads and matches the
/// part's built-in defaults, so the documentation cannot drift from the code.
pub fn assert_example_config_matches_defaults<P: ServicePart>(file: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(file);
    let loaded = service_kit::config::load_from::<P::Config>(
        P::ENV_PREFIX,
        Some(&path),
        Vec::<(String, String)>::new(),
        &P::default_config(),
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"));
    let as_json = |c: &P::Config| serde_json::to_value(c).expect("config serializes");
    assert_eq!(
        as_json(&loaded),
        as_json(&P::default_config()),
        "{file} must show the built-in defaults"
    );
}
