//! The gateway's own answers speak the dialect of the route family they are
//! made for (DESIGN §5): 401, 404, 400, 413, 429 and a dead upstream, for a
//! SpaceOS, a gospace and a Tuzzle route. And Tuzzle's `?api_key=`: it
//! authenticates, never reaches the service, a log line or a metric, and beside
//! a credential header it is refused.

use crate::gateway_with;
use crate::platform::Platform;
use crate::upstream::Echo;
use gateway::config::RouteConfig;
use serde_json::json;
use service_kit::Dialect;
use std::io::Write;
use std::sync::{Arc, Mutex};
use testkit::TestResponse;

const SYSTEM_KEY: &str = "sys_dddddddddddddddddddddddddddddddddddddddd";

/// Asserts the error answer's status, code and dialect, and that the body has
/// exactly the dialect's documented top-level fields.
fn assert_family(response: &TestResponse, dialect: Dialect, status: u16, code: &str) {
    let body = response.assert_error(status, code);
    assert_eq!(response.dialect(), dialect, "{body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    match dialect {
        Dialect::SpaceOs => {
            assert_eq!(
                keys,
                ["error", "message", "status", "success", "timestamp"],
                "{body}"
            );
            assert_eq!(
                body["error"]["request_id"],
                response.header("x-request-id").unwrap()
            );
        }
        Dialect::Gospace => {
            assert_eq!(keys, ["error", "success"], "{body}");
            assert_eq!(
                body["error"]["request_id"],
                response.header("x-request-id").unwrap()
            );
            assert!(
                body["error"]["request_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("req_"),
                "{body}"
            );
        }
        Dialect::Tuzzle => {
            assert_eq!(keys, ["message"], "{body}");
            let expected = match status {
                401 => Some("Unauthenticated."),
                403 => Some("Forbidden."),
                _ => None,
            };
            if let Some(message) = expected {
                assert_eq!(body["message"], message);
            }
        }
    }
}

#[tokio::test]
async fn the_gateways_own_answers_speak_each_familys_dialect() {
    let echo = Echo::start();
    let families = [
        ("spaceos", Dialect::SpaceOs),
        ("gospace", Dialect::Gospace),
        ("tuzzle", Dialect::Tuzzle),
    ];
    let gw = gateway_with(&echo.server.base, |c| {
        c.rate_limits.per_ip_per_minute = 2;
        c.system_keys.sha256 = crate::system_key_digest(SYSTEM_KEY);
        // Nothing listens there: the dead upstream.
        c.upstreams.spaces = "http://127.0.0.1:9".into();
        for (name, dialect) in families {
            c.routes.push(RouteConfig {
                dialect,
                max_body_bytes: Some(16),
                ..RouteConfig::new(&format!("/echo/{name}"), "booking")
            });
            c.routes.push(RouteConfig {
                dialect,
                policy: gateway::config::RoutePolicy::Authenticated,
                ..RouteConfig::new(&format!("/echo/{name}/private"), "booking")
            });
            c.routes.push(RouteConfig {
                dialect,
                ..RouteConfig::new(&format!("/dead/{name}"), "spaces")
            });
        }
    })
    .await;
    for (name, dialect) in families {
        let missing = gw.get(&format!("/echo/{name}/private/x")).await;
        assert_family(&missing, dialect, 401, "unauthorized");
        let bad_token = gw
            .send(
                gw.client
                    .get(gw.url(&format!("/echo/{name}/x")))
                    .bearer_auth("not.a.token"),
            )
            .await;
        assert_family(&bad_token, dialect, 401, "unauthorized");
        let oversize = gw
            .send(
                gw.client
                    .post(gw.url(&format!("/echo/{name}/x")))
                    .header("x-api-key", SYSTEM_KEY)
                    .body("x".repeat(17)),
            )
            .await;
        assert_family(&oversize, dialect, 413, "payload_too_large");
        let dot_segments = gw.get(&format!("/echo/{name}/a%2fb")).await;
        assert_family(&dot_segments, dialect, 400, "bad_request");
        let dead = gw
            .send(
                gw.client
                    .get(gw.url(&format!("/dead/{name}/x")))
                    .header("x-api-key", SYSTEM_KEY),
            )
            .await;
        assert!(matches!(dead.status, 502 | 503), "{}", dead.status);
        let code = if dead.status == 502 {
            "bad_gateway"
        } else {
            "service_unavailable"
        };
        assert_family(&dead, dialect, dead.status, code);
    }
    // Paths no route serves: the family they share most of their path with.
    assert_family(
        &gw.get("/v1/no-such-thing").await,
        Dialect::Gospace,
        404,
        "not_found",
    );
    assert_family(
        &gw.get("/api/v1/no-such-thing").await,
        Dialect::SpaceOs,
        404,
        "not_found",
    );

    // The anonymous budget (two a minute) is one per client address: spent,
    // every family answers 429 in its own words, with Retry-After.
    for _ in 0..2 {
        assert_eq!(gw.get("/echo/spaceos/x").await.status, 200);
    }
    for (name, dialect) in families {
        let limited = gw.get(&format!("/echo/{name}/x")).await;
        assert_family(&limited, dialect, 429, "rate_limited");
        let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
        let reset: u64 = limited
            .header("x-ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset > 1_700_000_000, "a Unix time: {reset}");
        match dialect {
            Dialect::SpaceOs => assert_eq!(
                limited.json()["message"],
                format!("Rate limit exceeded. Try again in {retry} seconds.")
            ),
            Dialect::Gospace => assert_eq!(
                limited.json()["error"]["message"],
                format!("Rate limit exceeded. Try again in {retry} seconds.")
            ),
            Dialect::Tuzzle => assert_eq!(
                limited.json()["message"],
                format!("Rate limit exceeded. Try again in {retry} seconds.")
            ),
        }
    }
}

/// Everything the process logs, for the test that reads it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn query_api_keys_authenticate_tuzzle_routes_and_go_no_further() {
    // Each test is its own process (nextest): this subscriber sees every log
    // line of the gateway and services below, at every level.
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let platform = Platform::start().await;
    let gw = &platform.gw;
    let owner = platform.sign_in("query-keys@example.com").await;
    let token = owner["access_token"].as_str().unwrap().to_owned();
    let created = gw
        .send(
            gw.client
                .post(gw.url("/api/v1/spaces"))
                .bearer_auth(&token)
                .json(&json!({"name": "Query Keys"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let space = created.json()["data"]["id"].as_str().unwrap().to_owned();
    let minted = gw
        .send(
            gw.client
                .post(gw.url(&format!("/api/v1/spaces/{space}/api-keys")))
                .bearer_auth(&token)
                .json(&json!({"name": "query"})),
        )
        .await;
    assert_eq!(minted.status, 201, "{:?}", minted.json());
    let key = minted.json()["data"]["key"].as_str().unwrap().to_owned();

    // The key in the query authenticates, on a Tuzzle route.
    let read = gw
        .get(&format!("/api/v1/spaces/{space}?api_key={key}&include=x"))
        .await;
    assert_eq!(read.status, 200, "{:?}", read.json());
    assert_eq!(read.json()["data"]["id"], space.as_str());

    // What the service behind receives: the query without the key (the echo
    // stands behind a Tuzzle route of this platform's gateway).
    let echoed = gw
        .get(&format!("/echo/tuzzle/x?a=1&api_key={key}&b=2"))
        .await;
    assert_eq!(echoed.status, 200, "{:?}", echoed.json());
    let seen = echoed.json();
    assert_eq!(seen["query"], "a=1&b=2");
    assert!(!seen.to_string().contains(&key), "{seen}");
    assert_eq!(
        crate::upstream::identity_seen(&echoed).principal_type,
        identity::PrincipalType::SpaceKey
    );
    let only_key = gw.get(&format!("/echo/tuzzle/x?api_key={key}")).await;
    assert_eq!(only_key.json()["query"], "");

    // A key in the query beside a credential header is ambiguous: 401.
    let both = gw
        .send(
            gw.client
                .get(gw.url(&format!("/api/v1/spaces/{space}?api_key={key}")))
                .bearer_auth(&key),
        )
        .await;
    assert_family(&both, Dialect::Tuzzle, 401, "unauthorized");
    let twice = gw
        .get(&format!(
            "/api/v1/spaces/{space}?api_key={key}&api_key={key}"
        ))
        .await;
    assert_family(&twice, Dialect::Tuzzle, 401, "unauthorized");
    // Not a credential on other families' routes: forwarded as it came.
    let elsewhere = gw.get(&format!("/echo/x?api_key={key}")).await;
    assert_eq!(elsewhere.json()["query"], format!("api_key={key}"));
    assert!(
        elsewhere.json()["headers"]
            .get("x-spaceport-identity")
            .is_some()
    );
    assert_eq!(
        crate::upstream::identity_seen(&elsewhere).principal_type,
        identity::PrincipalType::Anonymous
    );

    let metrics = gw.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(!text.contains(&key), "a metric names the key");
    let logged = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(!logged.is_empty(), "the log was captured");
    assert!(
        !logged.contains(&key[..20]),
        "the log names the key:\n{logged}"
    );
}
