//! The distributed topology end to end: two gateways, auth-service, two
//! booking-service replicas, spaces-service and events-service as separate
//! processes, each service on its own PostgreSQL database, one Redis.
//!
//! Needs the part binaries (`cargo build --bins`; a workspace test run builds
//! them), PostgreSQL at `TEST_DATABASE_URL` and Redis at `TEST_REDIS_URL`;
//! the chaos test (`chaos.rs`) runs a `redis-server` of its own instead.

mod chaos;
mod platform;

use platform::Rehearsal;
use std::time::{Duration, Instant};

/// One topology for the whole story: starting it costs seconds, and each step
/// leaves the platform as the next one needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_topology_postgres_redis() {
    let mut r = Rehearsal::start().await;
    either_gateway_serves_the_same_platform(&r).await;
    events_service_is_behind_both_gateways_and_consumes_the_run_streams(&r).await;
    rate_limits_are_shared_across_gateways(&r).await;
    a_key_revoked_at_one_gateway_is_refused_at_the_other(&r).await;
    let space = r.meeting_space().await;
    overlapping_bookings_across_replicas_admit_exactly_one(&r, &space).await;
    killing_a_booking_replica_loses_no_accepted_booking(&mut r, &space).await;
    sigterm_lets_in_flight_requests_finish(&mut r).await;
}

async fn either_gateway_serves_the_same_platform(r: &Rehearsal) {
    // Signed in through the first gateway, the token works at the second.
    let me = r
        .send(1, r.get(1, "/v1/auth/me").bearer_auth(&r.owner_token))
        .await;
    assert_eq!(me.0, 200, "{}", me.1);
    assert_eq!(me.1["data"]["email"], "owner@rehearsal.example");
    // Both booking replicas are behind each gateway, and the services answer
    // only what comes through one (a direct call gets 401).
    let direct = reqwest::get(format!("{}/v1/auth/me", r.topology.auth.base_url()))
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
}

/// events-service on its own database answers its two route families through
/// either gateway (and only through one), and reads the events the other
/// services relay to the run's streams on the shared Redis.
async fn events_service_is_behind_both_gateways_and_consumes_the_run_streams(r: &Rehearsal) {
    // SpaceOS: the owner holds webhooks:read; the workspace has none yet.
    let spaceos = r
        .send(0, r.get(0, "/api/v1/webhooks").bearer_auth(&r.owner_token))
        .await;
    assert_eq!(spaceos.0, 200, "{}", spaceos.1);
    assert_eq!(spaceos.1["success"], true, "{}", spaceos.1);
    assert_eq!(spaceos.1["data"], serde_json::json!([]), "{}", spaceos.1);
    assert_eq!(spaceos.1["meta"]["total"], 0, "{}", spaceos.1);
    // gospace, through the other gateway.
    let gospace = r
        .send(
            1,
            r.get(1, "/v1/webhooks/webhooks")
                .bearer_auth(&r.owner_token),
        )
        .await;
    assert_eq!(gospace.0, 200, "{}", gospace.1);
    assert_eq!(gospace.1["success"], true, "{}", gospace.1);
    assert_eq!(gospace.1["items"], serde_json::json!([]), "{}", gospace.1);
    // Anonymous callers are turned away at the edge, in each family's dialect;
    // a direct call to the service lacks the gateway's identity token.
    let anonymous = r.send(0, r.get(0, "/api/v1/webhooks")).await;
    assert_eq!(anonymous.0, 401, "{}", anonymous.1);
    assert_eq!(anonymous.1["success"], false, "{}", anonymous.1);
    let anonymous = r.send(1, r.get(1, "/v1/webhooks/webhooks")).await;
    assert_eq!(anonymous.0, 401, "{}", anonymous.1);
    assert_eq!(
        anonymous.1["error"]["code"], "unauthorised",
        "{}",
        anonymous.1
    );
    let direct = reqwest::get(format!(
        "{}/api/v1/webhooks",
        r.topology.events[0].base_url()
    ))
    .await
    .unwrap();
    assert_eq!(direct.status(), 401);
    // The owner's first sign-in made their workspace (`member.added`):
    // auth-service relays it to the run's stream, and events-service stores it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let consumed = r.events_consumed("events:auth-service").await;
        if consumed > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events-service consumed nothing from auth-service's stream in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rate_limits_are_shared_across_gateways(r: &Rehearsal) {
    // API keys get `KEY_LIMIT` requests a minute, whichever gateway counts them.
    let key = r.create_api_key("rate-limited").await;
    let mut remaining = Vec::new();
    let mut refused_at = None;
    for i in 0..platform::KEY_LIMIT as usize + 2 {
        let (status, headers) = r
            .send_raw(
                i % 2,
                r.get(i % 2, "/v1/system/workspaces")
                    .header("x-api-key", &key),
            )
            .await;
        if status == 429 {
            assert!(headers.get("retry-after").is_some());
            refused_at = Some(i);
            break;
        }
        assert_eq!(status, 200);
        remaining.push(
            headers["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    // One budget: the remaining count falls by one per request, alternating
    // gateways, and the request after the last allowed one is refused.
    let expected: Vec<u32> = (0..platform::KEY_LIMIT).rev().collect();
    assert_eq!(remaining, expected);
    assert_eq!(refused_at, Some(platform::KEY_LIMIT as usize));
}

async fn a_key_revoked_at_one_gateway_is_refused_at_the_other(r: &Rehearsal) {
    let (key, key_id) = r.create_api_key_with_id("revoked").await;
    // Warm the second gateway's cache.
    let (status, _) = r
        .send_raw(
            1,
            r.get(1, "/v1/system/workspaces").header("x-api-key", &key),
        )
        .await;
    assert_eq!(status, 200);
    let deleted = r
        .send(
            0,
            r.request(
                0,
                reqwest::Method::DELETE,
                &format!("/v1/auth/api-key/{key_id}"),
            )
            .bearer_auth(&r.owner_token),
        )
        .await;
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, _) = r
            .send_raw(
                1,
                r.get(1, "/v1/system/workspaces").header("x-api-key", &key),
            )
            .await;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second gateway still answers {status} a second after the delete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 100 concurrent requests for overlapping times of one meeting space, spread
/// over both gateways and so over both booking replicas: one is booked, the
/// other 99 are told which booking they conflict with.
async fn overlapping_bookings_across_replicas_admit_exactly_one(r: &Rehearsal, space: &str) {
    let before = r.booking_posts_per_replica().await;
    let start = platform::day_start(2) + chrono::Duration::hours(10);
    let requests = (0..100usize).map(|i| {
        let from = start + chrono::Duration::minutes(15 * (i % 4) as i64);
        r.book(i % 2, space, from, from + chrono::Duration::hours(1))
    });
    let answers = futures_util::future::join_all(requests).await;
    let created: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    let winner = created[0].1["data"]["id"].as_str().unwrap();
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["code"], "conflict");
        assert!(body["message"].as_str().unwrap().contains(winner), "{body}");
    }
    let after = r.booking_posts_per_replica().await;
    for (replica, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a > b, "booking replica {} served none of them", replica + 1);
    }
}

/// Clients keep booking free slots through the first gateway while one booking
/// replica is killed (SIGKILL). Requests that reach the dead replica answer
/// 502/503 at once; every booking that was answered 201 is there afterwards.
async fn killing_a_booking_replica_loses_no_accepted_booking(r: &mut Rehearsal, space: &str) {
    let answers = r
        .book_slots_during(space, Duration::from_millis(400), |r| {
            r.topology.booking[0].kill().unwrap()
        })
        .await;
    let accepted: Vec<&str> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body["data"]["id"].as_str().unwrap())
        .collect();
    let failed = answers.iter().filter(|(status, _)| *status != 201).count();
    assert!(
        accepted.len() > 10,
        "too few bookings before and after: {answers:?}"
    );
    assert!(failed > 0, "no request reached the killed replica");
    for (status, body) in &answers {
        assert!(
            matches!(status, 201 | 502 | 503),
            "unexpected answer {status}: {body}"
        );
    }
    for id in accepted {
        // The gateway still sends every other request to the dead replica (no
        // balancer stands in front of them here): a 503 is retried, as a
        // client would.
        let mut answer = (503, serde_json::Value::Null);
        for _ in 0..4 {
            answer = r
                .send(
                    0,
                    r.get(0, &format!("/api/v1/bookings/{id}"))
                        .bearer_auth(&r.owner_token),
                )
                .await;
            if answer.0 != 503 {
                break;
            }
        }
        assert_eq!(answer.0, 200, "accepted booking {id} is gone: {}", answer.1);
    }
}

/// SIGTERM to a gateway under load: every request sent before the signal gets
/// its whole answer; afterwards it refuses new work, and it exits cleanly.
async fn sigterm_lets_in_flight_requests_finish(r: &mut Rehearsal) {
    let (signalled, outcomes) = r
        .load_during(1, Duration::from_millis(300), |r| {
            r.topology.gateways[1].terminate().unwrap();
        })
        .await;
    let status = r.topology.gateways[1]
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(status.success(), "gateway-2 exited with {status}");
    let answered = outcomes.iter().filter(|(_, o)| o.is_ok()).count();
    assert!(answered > 0, "no request was served before the SIGTERM");
    for (started, outcome) in &outcomes {
        match outcome {
            Ok(status) => assert_eq!(*status, 200),
            // Sent (well) before the signal: it was in flight, and must
            // have been answered in full.
            Err(e) if *started + Duration::from_millis(20) < signalled => {
                panic!("a request in flight at the SIGTERM failed: {e:?}")
            }
            // Sent around or after the signal: refused, or its idle
            // keep-alive connection closed under it before it was read,
            // which HTTP clients retry (RFC 9112 §9.3.1).
            Err(_) => {}
        }
    }
    // The other gateway carries on.
    let me = r
        .send(0, r.get(0, "/v1/auth/me").bearer_auth(&r.owner_token))
        .await;
    assert_eq!(me.0, 200);
}
