//! Rate limits: per client IP when anonymous, per token otherwise, shared by
//! gateway replicas through the cache.

use crate::upstream::Echo;
use gateway::GatewayPart;
use gateway::config::GatewayConfig;
use service_kit::cli::ServicePart;
use service_kit::config::Secret;
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
