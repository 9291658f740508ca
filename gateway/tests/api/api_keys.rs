//! Workspace API keys at the edge: created with a token, used as `x-api-key`,
//! `x-org-api-key` or a bearer, introspected once and cached, revoked within a
//! second.

use crate::platform::Platform;
use crate::upstream::identity_seen;
use identity::PrincipalType;
use std::time::{Duration, Instant};

/// How many introspections auth-service has answered.
async fn introspections(platform: &Platform) -> u64 {
    let text = String::from_utf8_lossy(&platform.auth.get("/metrics").await.body).into_owned();
    text.lines()
        .filter(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("route=\"/internal/api-keys/introspect\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn workspace_keys_work_at_the_edge_and_die_within_a_second() {
    keys_at_the_edge(Platform::start().await).await;
}

/// The same, with the revocation travelling over Redis pub/sub.
#[tokio::test]
async fn workspace_keys_die_within_a_second_over_redis() {
    keys_at_the_edge(Platform::start_on(testkit::CacheKind::Redis).await).await;
}

async fn keys_at_the_edge(platform: Platform) {
    let gw = &platform.gw;
    let session = platform.sign_in("keys@example.com").await;
    let access = session["access_token"].as_str().unwrap();
    let created = gw
        .send(
            gw.client
                .post(gw.url("/v1/auth/api-key"))
                .bearer_auth(access)
                .json(&serde_json::json!({"name": "ci", "scopes": "bookings:read"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let data = created.json()["data"].clone();
    let key = data["api_key"].as_str().unwrap().to_owned();

    let with_header = |name: &'static str| gw.client.get(gw.url("/echo/k")).header(name, &key);
    let before = introspections(&platform).await;
    let first = gw.send(with_header("x-api-key")).await;
    assert_eq!(
        first.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&first.body)
    );
    let who = identity_seen(&first);
    assert_eq!(who.principal_type, PrincipalType::ApiKey);
    assert_eq!(who.principal_id, data["id"].as_str().unwrap());
    assert_eq!(who.workspace_id.as_deref(), data["workspace_id"].as_str());
    assert_eq!(who.scopes.to_string(), "bookings:read");
    assert!(
        first.json()["headers"].get("x-api-key").is_none(),
        "the key stays at the edge"
    );
    // The SpaceOS header and the bearer form, served from the cache.
    assert_eq!(gw.send(with_header("x-org-api-key")).await.status, 200);
    assert_eq!(
        gw.send(gw.client.get(gw.url("/echo/k")).bearer_auth(&key))
            .await
            .status,
        200
    );
    assert_eq!(
        introspections(&platform).await - before,
        1,
        "one introspection, then the cache"
    );
    let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    let count = |cache: &str, result: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("gateway_cache_lookups_total{")
                    && l.contains(&format!("cache=\"{cache}\""))
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    // The first use is introspected (and kept in the shared cache); the
    // repeats are recognised in the gateway's memory, without the cache.
    let introspection = "api_key_introspection";
    assert_eq!(
        (count(introspection, "miss"), count(introspection, "hit")),
        (1, 0),
        "{metrics}"
    );
    assert_eq!(count("admissions", "hit"), 2, "{metrics}");

    // A malformed or mistyped key is refused without a look-up.
    let mut typo = key.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    gw.send(gw.client.get(gw.url("/echo/k")).header("x-api-key", &typo))
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(
        introspections(&platform).await - before,
        1,
        "no look-up for a bad checksum"
    );
    // Two credentials at once are refused.
    gw.send(with_header("x-api-key").bearer_auth(access))
        .await
        .assert_error(401, "unauthorized");

    // Revocation reaches the gateway (and beats its cache) within a second.
    let deleted = gw
        .send(
            gw.client
                .delete(gw.url(&format!(
                    "/v1/auth/api-key/{}",
                    data["id"].as_str().unwrap()
                )))
                .bearer_auth(access),
        )
        .await;
    assert_eq!(deleted.status, 200);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let status = gw.send(with_header("x-api-key")).await.status;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} a second after the DELETE"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
