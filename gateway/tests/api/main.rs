//! The gateway over real HTTP on loopback: routing to the real services, streaming,
//! header hygiene, and failing fast when an upstream is down or hangs.

mod api_keys;
mod authn;
mod content;
mod dialects;
mod hygiene;
mod interop;
mod members;
mod platform;
mod products;
mod rate_limits;
mod server;
mod space_keys;
mod tls;
mod upstream;
mod webhooks;

use gateway::GatewayPart;
use gateway::config::{GatewayConfig, RouteConfig};
use service_kit::cli::ServicePart;
use service_kit::config::Secret;
use std::time::{Duration, Instant};
use testkit::part::{start_part, start_part_with};
use testkit::{CacheKind, DbKind, TestCache, TestDatabase, TestServer, db_test};
use upstream::{Echo, fnv1a};

/// A number from a gateway's `/metrics`: the sum of the series of `name`
/// whose labels contain `labels`.
pub async fn metric(gw: &TestServer, name: &str, labels: &str) -> f64 {
    let text = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What `system_keys.sha256` holds for `key`: its SHA-256, in hex.
fn system_key_digest(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A gateway whose `booking` upstream is `upstream_url` and which routes `/echo` there.
async fn gateway_with(upstream_url: &str, tweak: impl FnOnce(&mut GatewayConfig)) -> TestServer {
    let mut config = GatewayConfig::defaults();
    config.http = testkit::http_config();
    config.cache = TestCache::new(CacheKind::Memory).config;
    config.upstreams.booking = upstream_url.to_owned();
    config.identity.signing_key = Secret::new(testkit::identity::private_pem());
    config.routes.push(RouteConfig::new("/echo", "booking"));
    tweak(&mut config);
    let http = config.http.clone();
    TestServer::start_with(GatewayPart::build(config).await.expect("gateway"), &http)
}

db_test!(proxies_to_each_service, proxies_to_each_service_body);
async fn proxies_to_each_service_body(kind: DbKind) {
    let cache = TestCache::new(CacheKind::Memory);
    let dbs = [
        TestDatabase::new(kind),
        TestDatabase::new(kind),
        TestDatabase::new(kind),
        TestDatabase::new(kind),
    ];
    let auth = start_part_with::<auth_service::AuthService>(Some(&dbs[0]), &cache, |c| {
        c.secret.key = Secret::new("c3BhY2Vwb3J0LWdhdGV3YXktdGVzdHMtcm9vdC1zZWNyZXQtMzItYnl0ZXM=");
        c.mail.url = Secret::new("log");
    })
    .await;
    let booking = start_part::<booking_service::BookingService>(Some(&dbs[1]), &cache).await;
    let spaces = start_part_with::<spaces_service::SpacesService>(Some(&dbs[2]), &cache, |c| {
        c.secret.key = Secret::new("c3BhY2Vwb3J0LWdhdGV3YXktdGVzdHMtc3BhY2VzLXNlY3JldC0zMi1i");
    })
    .await;
    let events = start_part_with::<events_service::EventsService>(Some(&dbs[3]), &cache, |c| {
        c.secret.key = Secret::new("c3BhY2Vwb3J0LWdhdGV3YXktdGVzdHMtZXZlbnRzLXNlY3JldC0zMi1i");
        c.mail.url = Secret::new("log");
    })
    .await;
    let mut config = GatewayConfig::defaults();
    config.http = testkit::http_config();
    config.cache = cache.config.clone();
    config.upstreams.auth = auth.base.clone();
    config.upstreams.booking = booking.base.clone();
    config.upstreams.spaces = spaces.base.clone();
    config.upstreams.events = events.base.clone();
    config.identity.signing_key = Secret::new(testkit::identity::private_pem());
    // An operator key: the spaces prefixes turn anonymous callers away at the edge.
    let system_key = format!("sys_{}", "s".repeat(40));
    config.system_keys.sha256 = system_key_digest(&system_key);
    let http = config.http.clone();
    let gw = TestServer::start_with(GatewayPart::build(config).await.unwrap(), &http);
    gw.get("/api/v1/spaces")
        .await
        .assert_error(401, "unauthorized");

    let cases = [
        ("/api/v1/auth/no-such-route", &auth, "auth-service"),
        ("/.well-known/no-such-document", &auth, "auth-service"),
        (
            "/api/v1/organizations/o/no/such/route",
            &booking,
            "booking-service",
        ),
        (
            "/api/v1/bookings/bk_1/no/such/route",
            &booking,
            "booking-service",
        ),
        ("/api/v1/spaces/s/no/such/route", &spaces, "spaces-service"),
        (
            "/api/v1/upload-configs/x/no/such/route",
            &spaces,
            "spaces-service",
        ),
        (
            "/api/v1/webhooks/wh_1/no/such/route",
            &events,
            "events-service",
        ),
        ("/v1/webhooks/no/such/route", &events, "events-service"),
    ];
    for (i, (path, service, name)) in cases.iter().enumerate() {
        let request_id = format!("gw-proxy-{i}");
        let response = gw
            .send(
                gw.client
                    .get(gw.url(path))
                    .header("x-request-id", &request_id)
                    .header("x-api-key", &system_key),
            )
            .await;
        // Paths no service serves: the 404 comes from the service behind the
        // prefix, which saw the request id the gateway forwarded.
        let body = response.assert_error(404, "not_found");
        // SpaceOS and gospace bodies repeat the id; Tuzzle's carry none.
        if response.dialect() != service_kit::Dialect::Tuzzle {
            assert_eq!(body["error"]["request_id"], request_id.as_str(), "{path}");
        }
        assert_eq!(response.header("x-request-id"), Some(request_id.as_str()));
        let metrics = service.get("/metrics").await;
        let text = String::from_utf8_lossy(&metrics.body);
        assert!(
            text.lines().any(|l| l.starts_with("http_requests_total{")
                && l.contains("route=\"unmatched\"")
                && l.contains("status=\"404\"")
                && l.contains(&format!("service=\"{name}\""))),
            "{path} must have reached {name}:\n{text}"
        );
    }
    let gw_metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    assert!(
        gw_metrics.contains("route=\"/api/v1/organizations\""),
        "{gw_metrics}"
    );
    assert!(
        gw_metrics.contains("gateway_upstream_duration_seconds"),
        "{gw_metrics}"
    );
    for server in [gw, auth, booking, spaces, events] {
        server.stop().await;
    }
}

#[tokio::test]
async fn streams_large_bodies_both_ways() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;

    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let expected = fnv1a(&body);
    let response = gw
        .send(
            gw.client
                .post(gw.url("/echo/upload?x=1&y=two"))
                .body(body.clone()),
        )
        .await;
    assert_eq!(response.status, 200);
    let seen = response.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/echo/upload");
    assert_eq!(seen["query"], "x=1&y=two");
    assert_eq!(seen["body_len"], body.len() as u64);
    assert_eq!(seen["body_fnv"], expected);

    // A chunked (unknown-length) body streams through too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = gw
        .send(
            gw.client
                .put(gw.url("/echo/stream"))
                .body(testkit::reqwest::Body::wrap_stream(
                    futures_util::stream::iter(chunks),
                )),
        )
        .await;
    assert_eq!(streamed.json()["body_len"], body.len() as u64);
    assert_eq!(streamed.json()["body_fnv"], expected);

    let size = 3 * 1024 * 1024 + 7;
    let big = gw.get(&format!("/echo/big?size={size}")).await;
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), size);
    assert_eq!(
        big.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert!(
        big.body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8)
    );

    // HEAD: the GET's Content-Length, no body; small and large alike.
    for size in [1000, size] {
        let head = gw
            .send(gw.client.head(gw.url(&format!("/echo/big?size={size}"))))
            .await;
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(size.to_string().as_str()),
            "HEAD of {size} bytes"
        );
        assert!(head.body.is_empty());
    }
    gw.stop().await;
    echo.server.stop().await;
}

#[tokio::test]
async fn strips_identity_and_hop_by_hop_headers() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;
    let response = gw
        .send(
            gw.client
                .patch(gw.url("/echo/headers"))
                .header("x-spaceport-identity", "forged")
                .header("x-spaceport-anything", "forged")
                .header("x-workspace-id", "wrk_forged")
                .header("x-principal-id", "usr_forged")
                .header("x-forwarded-for", "6.6.6.6")
                .header("x-forwarded-host", "evil.example")
                .header("forwarded", "for=6.6.6.6")
                .header("connection", "keep-alive, x-drop-me")
                .header("x-drop-me", "connection-scoped")
                .header("te", "trailers")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .header("x-request-id", "hygiene-1")
                .header("x-custom", "kept")
                .body("{}"),
        )
        .await;
    assert_eq!(response.status, 200);
    let seen = response.json();
    let headers = &seen["headers"];
    assert_eq!(seen["method"], "PATCH");
    // The client's forged identity is replaced by the gateway's own token,
    // addressed to the service behind the route.
    let token = headers["x-spaceport-identity"]
        .as_str()
        .expect("identity token sent");
    assert_ne!(token, "forged");
    let booking = upstream::booking_verifier();
    assert!(booking.verify(token).unwrap().is_anonymous());
    for forged in [
        "x-spaceport-anything",
        "x-workspace-id",
        "x-principal-id",
        "forwarded",
        "x-drop-me",
        "te",
    ] {
        assert!(
            headers.get(forged).is_none(),
            "{forged} must not reach the upstream: {headers}"
        );
    }
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], gw.addr().to_string());
    assert_eq!(headers["x-request-id"], "hygiene-1");
    assert_eq!(
        headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(headers["x-custom"], "kept");
    gw.stop().await;
    echo.server.stop().await;
}

#[tokio::test]
async fn internal_unknown_and_dot_segment_paths_never_reach_an_upstream() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;
    gw.get("/internal/keys/introspect")
        .await
        .assert_error(404, "not_found");
    gw.get("/internal").await.assert_error(404, "not_found");
    gw.get("/nowhere").await.assert_error(404, "not_found");
    gw.get("/echoes").await.assert_error(404, "not_found");
    // HTTP clients normalise dot segments themselves; send them raw.
    for raw in [
        "/echo/%2e%2e/internal/x",
        "/echo/../internal/x",
        "/echo/./x",
        "/echo/a%2Fb",
    ] {
        assert_eq!(raw_get(gw.addr(), raw).await, 400, "{raw}");
    }
    assert_eq!(echo.hits(), 0, "none of these may reach the upstream");
    gw.stop().await;
    echo.server.stop().await;
}

/// Sends `GET path` as written, without any client-side normalisation; returns the status.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n");
    raw_request(addr, &request).await.0
}

/// Sends `request` as written on a new connection, reads until the gateway
/// closes it, and returns the answer's status (0 if none came) and what
/// followed its head.
pub async fn raw_request(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |c| {
        c.routes.last_mut().unwrap().max_body_bytes = Some(1024)
    })
    .await;
    let declared = gw
        .send(gw.client.post(gw.url("/echo/x")).body(vec![1u8; 2048]))
        .await;
    declared.assert_error(413, "payload_too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![2u8; 512])).collect();
    let streamed = gw
        .send(
            gw.client
                .post(gw.url("/echo/x"))
                .body(testkit::reqwest::Body::wrap_stream(
                    futures_util::stream::iter(chunks),
                )),
        )
        .await;
    assert_eq!(
        streamed.status,
        413,
        "{:?}",
        String::from_utf8_lossy(&streamed.body)
    );
    let fits = gw
        .send(gw.client.post(gw.url("/echo/x")).body(vec![1u8; 1024]))
        .await;
    assert_eq!(fits.json()["body_len"], 1024);
    gw.stop().await;
    echo.server.stop().await;
}

#[tokio::test]
async fn an_upstream_that_is_down_answers_503_quickly() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gw = gateway_with(&url, |_| {}).await;
    let started = Instant::now();
    let response = gw.get("/echo/x").await;
    response.assert_error(503, "service_unavailable");
    assert!(response.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_that_hangs_answers_504_at_the_route_timeout() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let gw = gateway_with(&url, |c| {
        c.routes.last_mut().unwrap().timeout_ms = Some(300)
    })
    .await;
    let started = Instant::now();
    gw.get("/echo/x").await.assert_error(504, "gateway_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn gateway_health_readiness_and_metrics() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;
    assert_eq!(gw.get("/healthz").await.status, 200);
    let ready = gw.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["data"]["checks"]["cache"], "ok");
    gw.get("/echo/one").await;
    let text = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/echo\"")),
        "{text}"
    );
    gw.stop().await;
    echo.server.stop().await;
}

#[test]
fn bad_config_exits_naming_the_key() {
    let bin = env!("CARGO_BIN_EXE_gateway");
    testkit::part::assert_bad_config_exits(bin, "GATEWAY");
    let (code, output) = testkit::part::run_binary(
        bin,
        &[],
        &[("GATEWAY__UPSTREAMS__AUTH".into(), "ftp://auth".into())],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("upstreams.auth"), "{output}");
}

#[test]
fn example_config_matches_defaults() {
    testkit::part::assert_example_config_matches_defaults::<GatewayPart>(
        "deploy/config/gateway.example.toml",
    );
}

/// Several replicas behind one upstream name take turns; a dead one answers
/// 503 promptly for the requests that reach it, and the live one keeps serving.
#[tokio::test]
async fn replicas_of_an_upstream_take_turns() {
    let first = Echo::start();
    let second = Echo::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let list = format!("{}, {}", first.server.base, second.server.base);
    let gw = gateway_with(&list, |_| {}).await;
    for _ in 0..6 {
        assert_eq!(gw.get("/echo/x").await.status, 200);
    }
    assert_eq!((first.hits(), second.hits()), (3, 3));

    let list = format!("{},{dead_url}", first.server.base);
    let gw = gateway_with(&list, |_| {}).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        statuses.push(gw.get("/echo/x").await.status);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 503, 503]);
}

/// The published API: one document for every public route, and the pages on
/// authentication and errors, served by the gateway itself.
#[tokio::test]
async fn publishes_the_merged_openapi_document() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;
    let doc = gw.get("/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/otp/verify",
        "/v1/auth/token",
        "/api/v1/bookings",
        "/api/v1/meeting-spaces/{id}/availability",
        "/api/v1/spaces/{id}/api-keys",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert!(paths.keys().all(|p| !p.starts_with("/internal")));
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("x-workspace-key")
    );
    assert_eq!(echo.hits(), 0, "served by the gateway, not proxied");
    let page = gw.get("/docs/authentication.md").await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("## Rate limits"));
    let errors = gw.get("/docs/errors.md").await;
    assert!(String::from_utf8_lossy(&errors.body).contains("validation_failed"));
}
