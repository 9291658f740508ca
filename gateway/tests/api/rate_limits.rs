//! Rate limits: per client IP when anonymous, per token otherwise, shared by
//! gateway replicas through the cache, each spending allowances leased from it.

use crate::metric;
use crate::platform::Platform;
use crate::upstream::Echo;
use cache::{Cache, Quota};
use gateway::GatewayPart;
use gateway::config::{GatewayConfig, RateLimitConfig};
use gateway::rate_limits::{IDLE_RETURN, max_lease};
use service_kit::cli::ServicePart;
use service_kit::config::{CacheConfig, Secret};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use testkit::{CacheKind, TestCache, TestServer};

async fn gateway(
    echo: &Echo,
    cache: &TestCache,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> TestServer {
    let mut config = GatewayConfig::defaults();
    config.http = testkit::http_config();
    config.cache = cache.config.clone();
    config.upstreams.booking = echo.server.base.clone();
    config.identity.signing_key = Secret::new(testkit::identity::private_pem());
    config
        .routes
        .push(gateway::config::RouteConfig::new("/echo", "booking"));
    tweak(&mut config);
    let http = config.http.clone();
    TestServer::start_with(GatewayPart::build(config).await.unwrap(), &http)
}

#[tokio::test]
async fn anonymous_callers_are_limited_per_ip() {
    let echo = Echo::start();
    let gw = gateway(&echo, &TestCache::new(CacheKind::Memory), |c| {
        c.rate_limits.per_ip_per_minute = 3
    })
    .await;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    for remaining in ["2", "1", "0"] {
        let before = now();
        let ok = gw.get("/echo/x").await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(ok.header("x-ratelimit-remaining"), Some(remaining));
        // The Unix time (seconds) when the budget is full again: within the
        // minute the budget spans.
        let reset: u64 = ok.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((before..=now() + 61).contains(&reset), "{reset}");
    }
    let limited = gw.get("/echo/x").await;
    limited.assert_error(429, "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=20).contains(&retry),
        "one unit refills in 20 s: {retry}"
    );
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        echo.hits(),
        3,
        "the limited request never reached the upstream"
    );
    // A client cannot buy a new budget by claiming another address.
    gw.send(
        gw.client
            .get(gw.url("/echo/x"))
            .header("x-forwarded-for", "198.51.100.7"),
    )
    .await
    .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn tokens_have_their_own_budget() {
    let echo = Echo::start();
    let key = identity::SigningKey::generate().unwrap();
    let jwks = serde_json::json!({"keys": [key.public_jwk()]});
    let jwks_server = TestServer::start(service_kit::AppSpec::new("jwks", move |cfg| {
        let body = jwks.clone();
        cfg.service(actix_web::web::resource("/jwks").get(move || {
            let body = body.clone();
            async move { actix_web::HttpResponse::Ok().json(body) }
        }));
    }));
    let jwks_url = jwks_server.url("/jwks");
    let gw = gateway(&echo, &TestCache::new(CacheKind::Memory), |c| {
        c.rate_limits.per_token_per_minute = 2;
        c.rate_limits.per_ip_per_minute = 50;
        c.tokens.jwks_url = jwks_url;
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = key.sign_jwt(
        identity::ACCESS_TOKEN_TYPE,
        &identity::AccessClaims {
            iss: "http://localhost:8080".into(),
            aud: "spaceport".into(),
            sub: "usr_01JRATELIMITED0000000000000".into(),
            client_id: "spaceport".into(),
            iat: now,
            exp: now + 600,
            jti: "j".into(),
            ptyp: identity::PrincipalType::User,
            wrk: None,
            scope: String::new(),
            sid: None,
        },
    );
    let with_token = || gw.send(gw.client.get(gw.url("/echo/x")).bearer_auth(&token));
    assert_eq!(with_token().await.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(with_token().await.status, 200);
    with_token().await.assert_error(429, "rate_limited");
    // The same machine, anonymous, spends another budget.
    assert_eq!(gw.get("/echo/x").await.status, 200);
}

#[tokio::test]
async fn limits_can_be_turned_off() {
    let echo = Echo::start();
    let gw = gateway(&echo, &TestCache::new(CacheKind::Memory), |c| {
        c.rate_limits.enabled = false;
        c.rate_limits.per_ip_per_minute = 1;
    })
    .await;
    for _ in 0..3 {
        let ok = gw.get("/echo/x").await;
        assert_eq!(ok.status, 200);
        assert!(ok.header("x-ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn two_gateways_share_one_budget_redis() {
    let echo = Echo::start();
    let shared = TestCache::new(CacheKind::Redis);
    let first = gateway(&echo, &shared, |c| c.rate_limits.per_ip_per_minute = 4).await;
    let second = gateway(&echo, &shared, |c| c.rate_limits.per_ip_per_minute = 4).await;
    for gw in [&first, &second, &first, &second] {
        assert_eq!(gw.get("/echo/x").await.status, 200);
    }
    first.get("/echo/x").await.assert_error(429, "rate_limited");
    second
        .get("/echo/x")
        .await
        .assert_error(429, "rate_limited");
    assert_eq!(echo.hits(), 4);
}

const HELD: &str = "gateway_rate_limit_held_units";
const LEASES: &str = "gateway_rate_limit_leases_total";
const LOCAL: &str = "gateway_rate_limit_local";

/// A workspace API key made by a signed-in user: `(key, its id)`.
async fn api_key(platform: &Platform) -> (String, String) {
    let session = platform.sign_in("leases@example.com").await;
    let gw = &platform.gw;
    let created = gw
        .send(
            gw.client
                .post(gw.url("/v1/auth/api-key"))
                .bearer_auth(session["access_token"].as_str().unwrap())
                .json(&serde_json::json!({"name": "load", "scopes": "bookings:read"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let data = &created.json()["data"];
    (
        data["api_key"].as_str().unwrap().to_owned(),
        data["id"].as_str().unwrap().to_owned(),
    )
}

/// Two gateway replicas on one Redis, driven at once well past an API key's
/// limit (1000/min): the requests they let through stay within the
/// documented bound (the limit, plus what refilled meanwhile, plus one
/// maximal lease per replica), and short of it by at most the units they hold
/// unspent; and they asked Redis far less often than once per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_hold_an_api_keys_budget_within_the_bound_redis() {
    let platform = Platform::start_on(CacheKind::Redis).await;
    let (key, _) = api_key(&platform).await;
    // A loaded test machine must not turn a slow lease into local limits.
    let replica = |c: &mut GatewayConfig| {
        c.rate_limits.replicas = 2;
        c.rate_limits.lease_timeout_ms = 5_000;
    };
    let replicas = [
        platform.another_gateway(replica).await,
        platform.another_gateway(replica).await,
    ];
    let limit = RateLimitConfig::default().per_api_key_per_minute;
    let total = limit + limit / 2;
    let sent = AtomicU32::new(0);
    let started = Instant::now();
    let client = testkit::client();
    let clients = (0..16).map(|_| async {
        // [(200s, 429s, highest Remaining seen)] per replica.
        let mut seen = [(0u32, 0u32, 0u32); 2];
        loop {
            let i = sent.fetch_add(1, Ordering::SeqCst);
            if i >= total {
                return seen;
            }
            let which = (i % 2) as usize;
            let response = client
                .get(replicas[which].url("/echo/load"))
                .header("x-api-key", &key)
                .send()
                .await
                .expect("request");
            let remaining: u32 = response.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let tally = &mut seen[which];
            tally.2 = tally.2.max(remaining);
            match response.status().as_u16() {
                200 => tally.0 += 1,
                429 => tally.1 += 1,
                other => panic!("unexpected status {other}"),
            }
            response.bytes().await.expect("body");
        }
    });
    let tallies = futures_util::future::join_all(clients).await;
    let elapsed = started.elapsed();
    let per_replica: Vec<(u32, u32, u32)> = (0..2)
        .map(|r| {
            tallies.iter().fold((0, 0, 0), |(ok, no, most), t| {
                (ok + t[r].0, no + t[r].1, most.max(t[r].2))
            })
        })
        .collect();
    let ok: u32 = per_replica.iter().map(|t| t.0).sum();
    let held = metric(&replicas[0], HELD, "").await + metric(&replicas[1], HELD, "").await;
    let leases = metric(&replicas[0], LEASES, "").await + metric(&replicas[1], LEASES, "").await;
    let report = format!(
        "{ok} of {total} let through in {elapsed:?} (per replica: {per_replica:?}), \
         {held} units held, {leases} leases"
    );
    eprintln!("{report}");
    // GCRA refills one unit every 60 s / limit.
    let refilled = (elapsed.as_secs_f64() * f64::from(limit) / 60.0).ceil() as u32 + 1;
    let bound = limit + refilled + 2 * max_lease(limit);
    assert!(ok <= bound, "above the bound {bound}: {report}");
    assert!(
        f64::from(ok) + held >= f64::from(limit),
        "short of the limit by more than the units held: {report}"
    );
    for (r, &(ok, refused, most)) in per_replica.iter().enumerate() {
        assert!(
            ok > 0 && refused > 0,
            "replica {r} both served and refused: {report}"
        );
        assert!(most <= limit, "Remaining above the limit: {report}");
    }
    assert_eq!(
        platform.echo.hits() as u32,
        ok,
        "refused requests never reach the upstream"
    );
    assert!(
        leases * 4.0 <= f64::from(total),
        "Redis asked far less than once per request: {report}"
    );
    for gw in &replicas {
        assert_eq!(metric(gw, LEASES, "unreachable").await, 0.0, "{report}");
    }
}

/// A replica that stops gives what it holds back to the shared budget at
/// once, not after the idle return and not by refill: the key's arrival time
/// in Redis moves back by as many units, and its remaining count goes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_gives_its_lease_back_redis() {
    let echo = Echo::start();
    let shared = TestCache::new(CacheKind::Redis);
    let limit = 1000;
    let gw = gateway(&echo, &shared, |c| {
        c.rate_limits.per_ip_per_minute = limit;
        c.rate_limits.lease_timeout_ms = 5_000;
    })
    .await;
    let cache = shared.connect().await;
    let (key, quota) = (
        "rl:ip:127.0.0.1",
        Quota::new(limit, Duration::from_secs(60)),
    );
    let tat = async || -> Option<f64> {
        let bytes = cache.get(key).await.unwrap()?;
        Some(String::from_utf8(bytes).unwrap().parse().unwrap())
    };
    // Others have spent half the budget: its arrival time is 30 s ahead, far
    // from expiring while the test looks at it.
    assert_eq!(
        cache.lease(key, quota, limit / 2).await.unwrap().granted,
        limit / 2
    );
    // Bursts until the replica holds some of the budget (it leases ahead for
    // a busy key).
    let client = testkit::client();
    let url = gw.url("/echo/x");
    let mut held = 0.0;
    let mut last_request = Instant::now();
    for _ in 0..20 {
        let burst = (0..8).map(|_| async {
            let response = client.get(&url).send().await.expect("request");
            assert_eq!(response.status(), 200);
            response.bytes().await.expect("body");
        });
        futures_util::future::join_all(burst).await;
        last_request = Instant::now();
        held = metric(&gw, HELD, "").await;
        if held >= 2.0 {
            break;
        }
    }
    assert!(held >= 1.0, "the replica holds units after bursts: {held}");
    let before = tat().await.expect("the key's arrival time");
    let remaining_before = cache.lease(key, quota, 0).await.unwrap().remaining;
    // Idle keep-alive connections would hold a graceful stop up.
    drop(client);
    gw.stop().await;
    let interval = 60.0 / f64::from(limit);
    let given_back = loop {
        // Moved back by the units held; refills never move it.
        if tat().await.expect("the key's arrival time") <= before - (held - 0.5) * interval {
            break last_request.elapsed();
        }
        assert!(
            last_request.elapsed() < IDLE_RETURN,
            "{held} units not given back on stopping"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let remaining = cache.lease(key, quota, 0).await.unwrap().remaining;
    eprintln!("{held} units given back {given_back:?} after the last request");
    assert!(
        f64::from(remaining) >= f64::from(remaining_before) + held,
        "remaining {remaining_before} -> {remaining} after {held} given back ({given_back:?})"
    );
}

/// `redis-server` of the test's own on a free port, so that it can be
/// stopped and started again without touching the machine's Redis.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = PrivateRedis {
            port,
            dir: tempfile::tempdir().expect("a directory"),
            child: None,
        };
        redis.start_again().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: every connection drops at once, and the data with it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again, empty) on its port and waits until it answers.
    async fn start_again(&mut self) {
        let child = std::process::Command::new(
            std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into()),
        )
        .current_dir(self.dir.path())
        .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (install Redis, or set REDIS_SERVER)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(cache) = Cache::connect(&self.url(), "probe:").await
                && cache.ping().await.is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Redis gone: the replica limits each key on its own at its share of the
/// limit (20/min over 4 replicas: 5), and says so on `/metrics`; Redis back:
/// the shared budget again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_replica_limits_at_its_share_until_it_is_back_redis() {
    let mut redis = PrivateRedis::start().await;
    let echo = Echo::start();
    let cache_config = CacheConfig {
        url: Secret::new(redis.url()),
        key_prefix: "gw:".into(),
        bus_prefix: "gw:".into(),
    };
    let config = cache_config.clone();
    let gw = gateway(&echo, &TestCache::new(CacheKind::Memory), |c| {
        c.cache = config;
        c.rate_limits.per_ip_per_minute = 20;
        c.rate_limits.replicas = 4;
    })
    .await;
    let seen = |r: &testkit::TestResponse| {
        (
            r.status,
            r.header("x-ratelimit-limit").unwrap().to_owned(),
            r.header("x-ratelimit-remaining").unwrap().to_owned(),
        )
    };
    for remaining in ["19", "18"] {
        let shared = seen(&gw.get("/echo/x").await);
        assert_eq!(shared, (200, "20".into(), remaining.into()));
    }

    redis.kill();
    let mut answers = Vec::new();
    for _ in 0..7 {
        answers.push(seen(&gw.get("/echo/x").await));
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429], "{answers:?}");
    assert!(answers.iter().all(|a| a.1 == "5"), "{answers:?}");
    assert_eq!(metric(&gw, LOCAL, "").await, 1.0);
    assert!(metric(&gw, LEASES, "unreachable").await >= 1.0);

    redis.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let back = loop {
        let answer = seen(&gw.get("/echo/x").await);
        if answer.1 == "20" {
            break answer;
        }
        assert!(Instant::now() < deadline, "still local: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A fresh Redis: the unit its probe leased, spent by this request.
    assert_eq!(back, (200, "20".into(), "19".into()));
    assert_eq!(metric(&gw, LOCAL, "").await, 0.0);
    let shared = Cache::from_config(&cache_config).await.unwrap();
    let budget = shared
        .lease(
            "rl:ip:127.0.0.1",
            Quota::new(20, Duration::from_secs(60)),
            0,
        )
        .await
        .unwrap();
    assert_eq!(budget.remaining, 19, "the shared budget is spent again");
    gw.stop().await;
}
