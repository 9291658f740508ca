//! Token revocation (RFC 7009) and introspection (RFC 7662).

use crate::helpers::TestAuth;
use identity::revocation::{self, Revocation};
use std::time::Duration;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

async fn introspect(auth: &TestAuth, id: &str, secret: &str, token: &str) -> testkit::TestResponse {
    auth.server
        .send(
            auth.server
                .request(Method::POST, "/v1/auth/introspect")
                .basic_auth(id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={token}")),
        )
        .await
}

db_test!(introspection_and_revocation, lifecycle);
async fn lifecycle(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let client = auth
        .server
        .send(
            auth.request_as(&owner, Method::POST, "/v1/auth/service-principals")
                .json(&serde_json::json!({"name": "resource-server", "scopes": "bookings:read"})),
        )
        .await
        .json()["data"]
        .clone();
    let (id, secret) = (
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    );
    let session = auth.sign_in("user@example.com").await;
    let access = session["access_token"].as_str().unwrap();
    let refresh = session["refresh_token"].as_str().unwrap();

    // Introspection needs client authentication.
    let anonymous = auth
        .post_form("/v1/auth/introspect", &[("token", access)])
        .await;
    assert_eq!(
        (anonymous.status, anonymous.json()["error"].clone()),
        (401, "invalid_client".into())
    );
    let wrong = introspect(&auth, id, "sps_wrong", access).await;
    assert_eq!(wrong.json()["error"], "invalid_client");

    let seen = introspect(&auth, id, secret, access).await.json();
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["token_type"], "Bearer");
    assert!(seen["sub"].as_str().unwrap().starts_with("usr_"));
    assert!(seen["workspace_id"].as_str().unwrap().starts_with("wrk_"));
    let seen = introspect(&auth, id, secret, refresh).await.json();
    assert_eq!(
        (seen["active"].clone(), seen["token_type"].clone()),
        (true.into(), "refresh_token".into())
    );
    for garbage in ["garbage", "rt_unknown", "eyJhbGciOiJub25lIn0.e30."] {
        assert_eq!(
            introspect(&auth, id, secret, garbage).await.json(),
            serde_json::json!({"active": false})
        );
    }

    // Revoking the access token ends its session, everywhere.
    let bus = auth.cache.connect().await;
    let mut revocations = bus.subscribe(revocation::CHANNEL).await.unwrap();
    let revoked = auth
        .post_form(
            "/v1/auth/revoke",
            &[("token", access), ("token_type_hint", "access_token")],
        )
        .await;
    assert_eq!(revoked.status, 200);
    let published = tokio::time::timeout(Duration::from_secs(2), revocations.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        Revocation::from_bytes(&published),
        Some(Revocation::Session { .. })
    ));
    assert_eq!(
        introspect(&auth, id, secret, access).await.json()["active"],
        false
    );
    assert_eq!(
        introspect(&auth, id, secret, refresh).await.json()["active"],
        false
    );
    let refreshed = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(refreshed.json()["error"], "invalid_grant");

    // Unknown tokens: 200 all the same (RFC 7009 §2.2); a missing one is a bad request.
    assert_eq!(
        auth.post_form("/v1/auth/revoke", &[("token", "rt_nothing")])
            .await
            .status,
        200
    );
    assert_eq!(
        auth.post_form("/v1/auth/revoke", &[]).await.json()["error"],
        "invalid_request"
    );
}

db_test!(
    revoking_a_refresh_token_and_service_principal_tokens,
    refresh_and_service
);
async fn refresh_and_service(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let client = auth
        .server
        .send(
            auth.request_as(&owner, Method::POST, "/v1/auth/service-principals")
                .json(&serde_json::json!({"name": "rs", "scopes": "bookings:read"})),
        )
        .await
        .json()["data"]
        .clone();
    let (id, secret) = (
        client["client_id"].as_str().unwrap().to_owned(),
        client["client_secret"].as_str().unwrap().to_owned(),
    );
    let token = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({"client_id": id, "client_secret": secret}),
        )
        .await
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = introspect(&auth, &id, &secret, &token).await.json();
    assert_eq!(
        (seen["active"].clone(), seen["sub"].clone()),
        (true.into(), id.clone().into())
    );

    let session = auth.sign_in("user@example.com").await;
    let refresh = session["refresh_token"].as_str().unwrap();
    assert_eq!(
        auth.post_json("/v1/auth/revoke", serde_json::json!({"token": refresh}))
            .await
            .status,
        200
    );
    assert_eq!(
        introspect(
            &auth,
            &id,
            &secret,
            session["access_token"].as_str().unwrap()
        )
        .await
        .json()["active"],
        false
    );

    // Another principal introspects a deleted principal's token as inactive.
    let other = auth
        .server
        .send(
            auth.request_as(&owner, Method::POST, "/v1/auth/service-principals")
                .json(&serde_json::json!({"name": "rs2", "scopes": "bookings:read"})),
        )
        .await
        .json()["data"]
        .clone();
    let deleted = auth
        .server
        .send(auth.request_as(
            &owner,
            Method::DELETE,
            &format!("/v1/auth/service-principals/{id}"),
        ))
        .await;
    assert_eq!(deleted.status, 200);
    let seen = introspect(
        &auth,
        other["client_id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
        &token,
    )
    .await;
    assert_eq!(seen.json()["active"], false);
}
