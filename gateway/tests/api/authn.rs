//! Credentials at the edge: bearer JWTs verified against the JWKS, the attack
//! suite, revocation over the bus, route policies and workspace selection.

use crate::gateway_with;
use crate::upstream::{Echo, identity_seen};
use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::config::{RouteConfig, RoutePolicy};
use identity::{AccessClaims, PrincipalType, SigningKey};
use service_kit::AppSpec;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::TestServer;

/// A JWKS endpoint for a key the test holds, counting fetches.
struct Jwks {
    server: TestServer,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    fn serve(key: &SigningKey) -> Jwks {
        let body = serde_json::json!({ "keys": [key.public_jwk()] });
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let spec = AppSpec::new("jwks", move |cfg| {
            let body = body.clone();
            let counter = counter.clone();
            cfg.service(web::resource("/.well-known/jwks.json").get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                async move { HttpResponse::Ok().json(body) }
            }));
        });
        Jwks {
            server: TestServer::start(spec),
            fetches,
        }
    }

    fn url(&self) -> String {
        self.server.url("/.well-known/jwks.json")
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "http://localhost:8080".into(),
        aud: "spaceport".into(),
        sub: "usr_01JTESTUSER0000000000000000".into(),
        client_id: "spaceport".into(),
        iat: now(),
        exp: now() + 600,
        jti: "jti-1".into(),
        ptyp: PrincipalType::User,
        wrk: Some("wrk_01JTESTWORKSPACE00000000000".into()),
        scope: "bookings:read bookings:write".into(),
        sid: Some("ses_1".into()),
    }
}

struct Stack {
    key: SigningKey,
    jwks: Jwks,
    echo: Echo,
    gw: TestServer,
}

async fn stack(tweak: impl FnOnce(&mut gateway::config::GatewayConfig)) -> Stack {
    let key = SigningKey::generate().unwrap();
    let jwks = Jwks::serve(&key);
    let echo = Echo::start();
    let url = jwks.url();
    let gw = gateway_with(&echo.server.base, |c| {
        c.tokens.jwks_url = url;
        tweak(c);
    })
    .await;
    Stack {
        key,
        jwks,
        echo,
        gw,
    }
}

impl Stack {
    async fn call(&self, authorization: &str) -> testkit::TestResponse {
        self.gw
            .send(
                self.gw
                    .client
                    .get(self.gw.url("/echo/who"))
                    .header("authorization", authorization),
            )
            .await
    }

    fn token(&self, claims: &AccessClaims) -> String {
        self.key.sign_jwt(identity::ACCESS_TOKEN_TYPE, claims)
    }
}

fn forge(header: serde_json::Value, claims: &AccessClaims, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn a_valid_token_becomes_the_identity_and_is_not_forwarded() {
    let s = stack(|_| {}).await;
    let response = s.call(&format!("Bearer {}", s.token(&claims()))).await;
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response.json()["headers"].get("authorization").is_none(),
        "the bearer token stays at the edge"
    );
    let who = identity_seen(&response);
    assert_eq!(who.principal_id, "usr_01JTESTUSER0000000000000000");
    assert_eq!(who.principal_type, PrincipalType::User);
    assert_eq!(
        who.workspace_id.as_deref(),
        Some("wrk_01JTESTWORKSPACE00000000000")
    );
    assert_eq!(who.scopes.to_string(), "bookings:read bookings:write");
}

#[tokio::test]
async fn the_jwt_attack_suite_answers_401() {
    let s = stack(|_| {}).await;
    let good = s.token(&claims());
    let stranger = SigningKey::generate().unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": s.key.kid()});
    let mut tampered = claims();
    tampered.scope = "workspace:admin users:admin keys:admin".into();
    let public_x = s.key.public_jwk()["x"].as_str().unwrap().to_owned();
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(s.key.kid().to_owned());
        jsonwebtoken::encode(
            &h,
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()),
        )
        .unwrap()
    };
    let with = |f: &dyn Fn(&mut AccessClaims)| {
        let mut c = claims();
        f(&mut c);
        s.token(&c)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            forge(
                serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": s.key.kid()}),
                &claims(),
                b"",
            ),
        ),
        ("HS256 keyed with the public key", hs256),
        (
            "expired",
            with(&|c| {
                c.iat = now() - 7200;
                c.exp = now() - 3600;
            }),
        ),
        ("not yet valid", {
            let mut value = serde_json::to_value(claims()).unwrap();
            value["nbf"] = (now() + 3600).into();
            s.key.sign_jwt(identity::ACCESS_TOKEN_TYPE, &value)
        }),
        (
            "wrong issuer",
            with(&|c| c.iss = "https://evil.example".into()),
        ),
        ("wrong audience", with(&|c| c.aud = "another-api".into())),
        (
            "unknown kid",
            stranger.sign_jwt(identity::ACCESS_TOKEN_TYPE, &claims()),
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(serde_json::to_string(&tampered).unwrap()),
                parts[2]
            ),
        ),
        (
            "signature of another token",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                s.token(&tampered).split('.').nth(2).unwrap()
            ),
        ),
        ("truncated", good[..good.len() - 10].to_owned()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        (
            "oversized",
            format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2]),
        ),
        ("garbage", "not-a-token".into()),
        ("empty signature", forge(header.clone(), &claims(), b"")),
        (
            "identity token replayed",
            testkit::identity::token(&identity::Identity::gateway(), "booking-service"),
        ),
        ("wrong typ", s.key.sign_jwt("JWT", &claims())),
    ];
    for (name, token) in cases {
        let response = s.call(&format!("Bearer {token}")).await;
        let body = response.assert_error(401, "unauthorized");
        assert!(
            response.header("www-authenticate").is_some(),
            "{name}: {body}"
        );
    }
    assert_eq!(s.echo.hits(), 0, "no refused request reaches the upstream");
    let metrics = String::from_utf8_lossy(&s.gw.get("/metrics").await.body).into_owned();
    for reason in ["invalid", "malformed", "unknown_key"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("gateway_auth_failures_total{")
                    && l.contains(&format!("reason=\"{reason}\""))),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn unknown_keys_refetch_the_jwks_at_most_once_per_interval() {
    let s = stack(|_| {}).await;
    assert_eq!(
        s.call(&format!("Bearer {}", s.token(&claims())))
            .await
            .status,
        200
    );
    let after_first = s.jwks.fetches.load(Ordering::SeqCst);
    assert_eq!(after_first, 1);
    for _ in 0..20 {
        let stranger = SigningKey::generate().unwrap();
        let token = stranger.sign_jwt(identity::ACCESS_TOKEN_TYPE, &claims());
        s.call(&format!("Bearer {token}"))
            .await
            .assert_error(401, "unauthorized");
    }
    assert!(
        s.jwks.fetches.load(Ordering::SeqCst) <= after_first + 1,
        "made-up key ids must not make the gateway hammer the JWKS: {} fetches",
        s.jwks.fetches.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn route_policy_and_workspace_selection() {
    let s = stack(|c| {
        c.routes.push(RouteConfig {
            policy: RoutePolicy::Authenticated,
            ..RouteConfig::new("/echo/private", "booking")
        });
    })
    .await;
    let token = s.token(&claims());
    s.gw.get("/echo/private/x")
        .await
        .assert_error(401, "unauthorized");
    let ok =
        s.gw.send(
            s.gw.client
                .get(s.gw.url("/echo/private/x"))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(ok.status, 200);
    // Public routes serve anonymous callers.
    assert!(identity_seen(&s.gw.get("/echo/open").await).is_anonymous());

    // A service principal's token is bound to its workspace.
    let service_token = s.token(&AccessClaims {
        ptyp: PrincipalType::Service,
        sid: None,
        ..claims()
    });
    let select = |workspace: &'static str| {
        s.gw.client
            .get(s.gw.url("/echo/x"))
            .bearer_auth(&service_token)
            .header("x-workspace-key", workspace)
    };
    s.gw.send(select("wrk_01JOTHERWORKSPACE0000000000"))
        .await
        .assert_error(403, "forbidden");
    let same = s.gw.send(select("wrk_01JTESTWORKSPACE00000000000")).await;
    assert_eq!(same.status, 200);
    assert!(same.json()["headers"].get("x-workspace-key").is_none());
    // Anonymous callers cannot pick a workspace.
    s.gw.send(
        s.gw.client
            .get(s.gw.url("/echo/x"))
            .header("x-workspace-key", "wrk_x"),
    )
    .await
    .assert_error(401, "unauthorized");
    // Nor name something that is not a workspace id.
    s.gw.send(select("spc_x"))
        .await
        .assert_error(400, "bad_request");
}

#[tokio::test]
async fn malformed_keys_and_space_keys_are_refused_and_basic_passes_through() {
    let s = stack(|_| {}).await;
    s.gw.send(
        s.gw.client
            .get(s.gw.url("/echo/x"))
            .header("x-api-key", "key_abc.UK.WRK.secret"),
    )
    .await
    .assert_error(401, "unauthorized");
    s.gw.send(
        s.gw.client
            .get(s.gw.url("/echo/x"))
            .bearer_auth("sk_abcdef"),
    )
    .await
    .assert_error(401, "unauthorized");
    // A bearer token that is not text is a bad credential, not none.
    s.gw.send(s.gw.client.get(s.gw.url("/echo/x")).header(
        "authorization",
        reqwest::header::HeaderValue::from_bytes(b"Bearer \xffabc").unwrap(),
    ))
    .await
    .assert_error(401, "unauthorized");
    // `Basic` is for the service (the OAuth token endpoint): untouched.
    let basic =
        s.gw.send(
            s.gw.client
                .get(s.gw.url("/echo/x"))
                .basic_auth("spn_1", Some("secret")),
        )
        .await;
    assert_eq!(basic.status, 200);
    assert!(
        basic.json()["headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Basic ")
    );
    assert!(identity_seen(&basic).is_anonymous());
}

/// The whole path with the real auth-service: sign in by code through the
/// gateway, call a service with the token, sign out, and the token is refused
/// within a second.
#[tokio::test]
async fn sign_in_through_the_gateway_then_revoke() {
    let platform = crate::platform::Platform::start().await;
    let data = platform.sign_in("e2e@example.com").await;
    let access = data["access_token"].as_str().unwrap().to_owned();
    let gw = &platform.gw;

    let call = || gw.client.get(gw.url("/echo/me")).bearer_auth(&access);
    let seen = gw.send(call()).await;
    assert_eq!(
        seen.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&seen.body)
    );
    let who = identity_seen(&seen);
    assert_eq!(who.principal_id, data["user"]["id"].as_str().unwrap());
    assert!(who.workspace_id.is_some());
    assert!(who.scopes.contains(&identity::Scope::BOOKINGS_WRITE));

    let out = gw
        .send(
            gw.client
                .post(gw.url("/v1/auth/logout"))
                .json(&serde_json::json!({"refresh_token": data["refresh_token"]})),
        )
        .await;
    assert_eq!(out.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let status = gw.send(call()).await.status;
        if status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status} a second after sign-out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn system_keys_see_every_workspace_and_only_their_digest_is_configured() {
    let key = format!("sys_{}", "k3y".repeat(12));
    let other = format!("sys_{}", "0".repeat(40));
    let hex = crate::system_key_digest;
    let digests = format!("{},{}", hex(&other), hex(&key));
    let s = stack(move |c| c.system_keys.sha256 = digests).await;
    let with_key = |key: &str| {
        s.gw.client
            .get(s.gw.url("/echo/x"))
            .header("x-api-key", key.to_owned())
    };

    let seen = s.gw.send(with_key(&key)).await;
    assert_eq!(seen.status, 200, "{:?}", seen.json());
    let who = identity_seen(&seen);
    assert_eq!(who.principal_type, PrincipalType::System);
    assert_eq!(who.workspace_id, None);
    assert!(who.scopes.contains(&identity::Scope::KEYS_ADMIN));
    assert!(seen.json()["headers"].get("x-api-key").is_none());

    let picked =
        s.gw.send(with_key(&key).header("x-workspace-key", "wrk_01JANYWORKSPACE"))
            .await;
    assert_eq!(picked.status, 200);
    assert_eq!(
        identity_seen(&picked).workspace_id.as_deref(),
        Some("wrk_01JANYWORKSPACE")
    );
    // The second configured digest works as well; unknown, short or odd keys do not.
    assert_eq!(s.gw.send(with_key(&other)).await.status, 200);
    for bad in [
        format!("sys_{}", "x".repeat(40)),
        "sys_short".to_owned(),
        format!("sys_{}!", "k3y".repeat(12)),
    ] {
        s.gw.send(with_key(&bad))
            .await
            .assert_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn routes_can_require_scopes_at_the_edge() {
    let s = stack(|c| {
        c.routes.push(RouteConfig {
            scopes: vec!["spaces:write".into()],
            ..RouteConfig::new("/echo/scoped", "booking")
        });
    })
    .await;
    let call = |token: Option<String>| {
        let request = s.gw.client.get(s.gw.url("/echo/scoped/x"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    s.gw.send(call(None))
        .await
        .assert_error(401, "unauthorized");
    let refused = s.gw.send(call(Some(s.token(&claims())))).await;
    refused.assert_error(403, "forbidden");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("spaces:write")
    );
    let allowed = s.token(&AccessClaims {
        scope: "spaces:read spaces:write".into(),
        ..claims()
    });
    assert_eq!(s.gw.send(call(Some(allowed))).await.status, 200);
}

#[tokio::test]
async fn config_refuses_unknown_route_scopes_bad_digests_and_bad_replicas() {
    use service_kit::config::Settings;
    let mut config = gateway::config::GatewayConfig::defaults();
    config.routes[0].scopes = vec!["spaces:destroy".into()];
    let error = config.validate_extra().unwrap_err().to_string();
    assert!(error.contains("routes[0].scopes"), "{error}");
    let mut config = gateway::config::GatewayConfig::defaults();
    config.system_keys.sha256 = format!("{},abc", "a".repeat(64));
    let error = config.validate_extra().unwrap_err().to_string();
    assert!(error.contains("system_keys.sha256"), "{error}");
    assert!(error.contains("entry 2"), "{error}");
    let mut config = gateway::config::GatewayConfig::defaults();
    config.upstreams.booking = "http://127.0.0.1:1, ftp://x".into();
    let error = config.validate_extra().unwrap_err().to_string();
    assert!(error.contains("upstreams.booking"), "{error}");
    config.upstreams.booking = " , ".into();
    let error = config.validate_extra().unwrap_err().to_string();
    assert!(error.contains("upstreams.booking"), "{error}");
}
