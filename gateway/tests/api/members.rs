//! Removing a member at auth-service reaches the gateway: the member's tokens
//! for that workspace are refused within a second.

use crate::metric;
use crate::platform::Platform;
use crate::upstream::identity_seen;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_removed_member_is_refused_within_a_second() {
    let platform = Platform::start().await;
    let gw = &platform.gw;
    let owner = platform.sign_in("owner@example.com").await;
    let owner_token = owner["access_token"].as_str().unwrap().to_owned();
    let invited = gw
        .send(
            gw.client
                .post(gw.url("/v1/auth/admin/users"))
                .bearer_auth(&owner_token)
                .json(&serde_json::json!({"email": "bob@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(invited.status, 201, "{:?}", invited.json());
    let bob_id = invited.json()["data"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let workspaces = gw
        .send(
            gw.client
                .get(gw.url("/v1/system/workspaces"))
                .bearer_auth(&owner_token),
        )
        .await;
    let workspace = workspaces.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob signs in and moves his session into the workspace.
    let bob = platform.sign_in("bob@example.com").await;
    let switched = gw
        .send(gw.client.post(gw.url("/v1/auth/token")).json(
            &serde_json::json!({"refresh_token": bob["refresh_token"], "workspace_id": workspace}),
        ))
        .await;
    assert_eq!(switched.status, 200, "{:?}", switched.json());
    let bob_token = switched.json()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A token minted in the same second as a later change would be refused (ties
    // count as before the change): keep the clock ticking past it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        gw.send(gw.client.get(gw.url("/echo/x")).bearer_auth(&bob_token))
            .await
            .status,
        200
    );

    let removed = gw
        .send(
            gw.client
                .delete(gw.url(&format!("/v1/auth/admin/users/{bob_id}")))
                .bearer_auth(&owner_token),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.json());
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let status = gw
            .send(gw.client.get(gw.url("/echo/x")).bearer_auth(&bob_token))
            .await
            .status;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} a second after the removal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // His own workspace's token is untouched.
    assert_eq!(
        gw.send(
            gw.client
                .get(gw.url("/echo/x"))
                .bearer_auth(bob["access_token"].as_str().unwrap())
        )
        .await
        .status,
        200
    );
}

/// A user's token names their own workspace; `x-workspace-key` moves a request
/// into another workspace they belong to, with their role's scopes there, and
/// stops working within a second of their removal.
#[tokio::test]
async fn x_workspace_key_selects_a_workspace_the_user_belongs_to() {
    let platform = Platform::start().await;
    let gw = &platform.gw;
    let owner = platform.sign_in("owner2@example.com").await;
    let owner_token = owner["access_token"].as_str().unwrap().to_owned();
    let workspaces = gw
        .send(
            gw.client
                .get(gw.url("/v1/system/workspaces"))
                .bearer_auth(&owner_token),
        )
        .await;
    let workspace = workspaces.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invited = gw
        .send(
            gw.client
                .post(gw.url("/v1/auth/admin/users"))
                .bearer_auth(&owner_token)
                .json(&serde_json::json!({"email": "carol@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(invited.status, 201, "{:?}", invited.json());
    let carol_id = invited.json()["data"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let carol = platform.sign_in("carol@example.com").await;
    let carol_token = carol["access_token"].as_str().unwrap().to_owned();
    let in_workspace = |id: &str| {
        gw.client
            .get(gw.url("/echo/x"))
            .bearer_auth(&carol_token)
            .header("x-workspace-key", id.to_owned())
    };

    let seen = gw.send(in_workspace(&workspace)).await;
    assert_eq!(seen.status, 200, "{:?}", seen.json());
    let who = identity_seen(&seen);
    assert_eq!(who.principal_id, carol_id);
    assert_eq!(who.workspace_id.as_deref(), Some(workspace.as_str()));
    // A viewer reads; the member scopes of her own workspace do not come along.
    assert!(who.scopes.contains(&identity::Scope::BOOKINGS_READ));
    assert!(!who.scopes.contains(&identity::Scope::BOOKINGS_WRITE));

    // The repeats are recognised in the gateway's memory: no membership
    // look-up, not even in the shared cache.
    let lookups = "gateway_cache_lookups_total";
    let memberships = metric(gw, lookups, "cache=\"membership\"").await;
    let recognised = metric(gw, lookups, "cache=\"admissions\",result=\"hit\"").await;
    for _ in 0..3 {
        let again = gw.send(in_workspace(&workspace)).await;
        assert_eq!(identity_seen(&again).workspace_id, who.workspace_id);
    }
    assert_eq!(
        metric(gw, lookups, "cache=\"membership\"").await,
        memberships
    );
    assert_eq!(
        metric(gw, lookups, "cache=\"admissions\",result=\"hit\"").await,
        recognised + 6.0,
        "each repeat recognises the token, then its workspace"
    );

    // A workspace she does not belong to.
    gw.send(in_workspace("wrk_01JNOTHERS00000000000000000"))
        .await
        .assert_error(403, "forbidden");

    let removed = gw
        .send(
            gw.client
                .delete(gw.url(&format!("/v1/auth/admin/users/{carol_id}")))
                .bearer_auth(&owner_token),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.json());
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let status = gw.send(in_workspace(&workspace)).await.status;
        if status == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} a second after the removal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
