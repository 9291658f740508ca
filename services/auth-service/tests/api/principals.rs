//! Service principals and the client-credentials grant.

use crate::helpers::TestAuth;
use identity::revocation::{self, Revocation};
use identity::{PrincipalType, Scope, ScopeSet};
use std::time::Duration;
use testkit::reqwest::Method;
use testkit::{DbKind, db_test};

async fn create(
    auth: &TestAuth,
    who: &identity::Identity,
    name: &str,
    scopes: &str,
) -> testkit::TestResponse {
    auth.server
        .send(
            auth.request_as(who, Method::POST, "/v1/auth/service-principals")
                .json(&serde_json::json!({ "name": name, "scopes": scopes })),
        )
        .await
}

db_test!(client_credentials_round_trip, round_trip);
async fn round_trip(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let created = create(
        &auth,
        &owner,
        "billing-sync",
        "bookings:read bookings:write",
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let data = created.json()["data"].clone();
    let client_id = data["client_id"].as_str().unwrap().to_owned();
    let secret = data["client_secret"].as_str().unwrap().to_owned();
    assert!(service_kit::ids::is_valid("spn", &client_id));
    assert!(secret.starts_with("sps_") && secret.len() > 40);
    assert_eq!(
        data["workspace_id"],
        owner.workspace_id.clone().unwrap().as_str()
    );

    // The gospace JSON exchange.
    let token = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({
                "client_id": client_id,
                "client_secret": secret,
                "workspace_id": owner.workspace_id,
                "scope": "bookings:read",
            }),
        )
        .await;
    assert_eq!(token.status, 200, "{:?}", token.json());
    let body = token.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "bookings:read");
    assert!(
        body.get("refresh_token").is_none(),
        "client credentials get no refresh token"
    );
    let claims = auth.claims(body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.sub, client_id);
    assert_eq!(claims.ptyp, PrincipalType::Service);
    assert_eq!(claims.wrk, owner.workspace_id);
    assert_eq!(claims.scopes(), ScopeSet::parse("bookings:read").unwrap());

    // RFC 6749 form with HTTP Basic; no scope = every scope of the client.
    let basic = auth
        .server
        .send(
            auth.server
                .request(Method::POST, "/v1/auth/token")
                .basic_auth(&client_id, Some(&secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials"),
        )
        .await;
    assert_eq!(basic.status, 200, "{:?}", basic.json());
    assert_eq!(basic.json()["scope"], "bookings:read bookings:write");
    // Credentials in the form body work too.
    let posted = auth
        .post_form(
            "/v1/auth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(posted.status, 200);

    // The list shows the principal, never its secret.
    let listed = auth
        .server
        .send(auth.request_as(&owner, Method::GET, "/v1/auth/service-principals"))
        .await;
    assert_eq!(listed.status, 200);
    let body = listed.json();
    assert_eq!(body["pagination"]["total_results"], 1);
    assert_eq!(body["items"][0]["client_id"], client_id.as_str());
    assert!(body["items"][0].get("client_secret").is_none());
    assert!(!String::from_utf8_lossy(&listed.body).contains(&secret));
}

db_test!(client_credentials_errors, errors);
async fn errors(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let data = create(&auth, &owner, "sync", "bookings:read").await.json()["data"].clone();
    let id = data["client_id"].as_str().unwrap().to_owned();
    let secret = data["client_secret"].as_str().unwrap().to_owned();
    let exchange = |body: serde_json::Value| auth.post_json("/v1/auth/token", body);

    let wrong = exchange(serde_json::json!({"client_id": id, "client_secret": "sps_wrong"})).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "invalid_client");
    assert!(wrong.header("www-authenticate").is_some());
    let unknown = exchange(serde_json::json!({"client_id": "spn_01JUNKNOWN000000000000000000", "client_secret": secret})).await;
    assert_eq!(
        unknown.json()["error"],
        "invalid_client",
        "unknown and wrong look the same"
    );
    let beyond = exchange(
        serde_json::json!({"client_id": id, "client_secret": secret, "scope": "bookings:write"}),
    )
    .await;
    assert_eq!(
        (beyond.status, beyond.json()["error"].clone()),
        (400, "invalid_scope".into())
    );
    let made_up = exchange(
        serde_json::json!({"client_id": id, "client_secret": secret, "scope": "data:read"}),
    )
    .await;
    assert_eq!(made_up.json()["error"], "invalid_scope");
    let elsewhere = exchange(
        serde_json::json!({"client_id": id, "client_secret": secret, "workspace_id": "wrk_other"}),
    )
    .await;
    assert_eq!(elsewhere.json()["error"], "invalid_request");
    let both = auth
        .server
        .send(
            auth.server
                .request(Method::POST, "/v1/auth/token")
                .basic_auth(&id, Some(&secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=client_credentials&client_id={id}&client_secret={secret}"
                )),
        )
        .await;
    assert_eq!(both.json()["error"], "invalid_request");
    let no_auth = auth
        .post_form("/v1/auth/token", &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(no_auth.json()["error"], "invalid_client");
}

db_test!(
    principals_are_managed_by_key_admins_of_their_workspace,
    management
);
async fn management(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let other = auth.owner("other@example.com").await;

    // Who may create, and what.
    let mut member = owner.clone();
    member.scopes = ScopeSet::parse("bookings:read bookings:write").unwrap();
    create(&auth, &member, "x", "bookings:read")
        .await
        .assert_error(403, "forbidden");
    create(
        &auth,
        &identity::Identity::anonymous(),
        "x",
        "bookings:read",
    )
    .await
    .assert_error(401, "unauthorized");
    let mut limited_admin = owner.clone();
    limited_admin.scopes = [Scope::KEYS_ADMIN, Scope::BOOKINGS_READ]
        .into_iter()
        .collect();
    let beyond = create(&auth, &limited_admin, "x", "bookings:write")
        .await
        .assert_error(422, "validation_failed");
    assert_eq!(beyond["error"]["details"][0]["path"], "scopes");
    let bad = create(&auth, &owner, "  ", "")
        .await
        .assert_error(422, "validation_failed");
    assert_eq!(bad["error"]["details"].as_array().unwrap().len(), 2);
    create(&auth, &owner, "sync", "no:such")
        .await
        .assert_error(422, "validation_failed");

    let data = create(&auth, &owner, "sync", "bookings:read").await.json()["data"].clone();
    create(&auth, &owner, "sync", "bookings:read")
        .await
        .assert_error(409, "conflict");
    let id = data["client_id"].as_str().unwrap().to_owned();
    let old_secret = data["client_secret"].as_str().unwrap().to_owned();

    // Another workspace sees nothing and touches nothing.
    let theirs = auth
        .server
        .send(auth.request_as(&other, Method::GET, "/v1/auth/service-principals"))
        .await;
    assert_eq!(theirs.json()["pagination"]["total_results"], 0);
    let path = format!("/v1/auth/service-principals/{id}");
    auth.server
        .send(auth.request_as(&other, Method::DELETE, &path))
        .await
        .assert_error(404, "not_found");
    auth.server
        .send(auth.request_as(&other, Method::POST, &format!("{path}/rotate-secret")))
        .await
        .assert_error(404, "not_found");
    auth.server
        .send(auth.request_as(
            &owner,
            Method::DELETE,
            "/v1/auth/service-principals/not-an-id",
        ))
        .await
        .assert_error(404, "not_found");

    // Rotation: the new secret works, the old one no longer does.
    let rotated = auth
        .server
        .send(auth.request_as(&owner, Method::POST, &format!("{path}/rotate-secret")))
        .await;
    assert_eq!(rotated.status, 200);
    let new_secret = rotated.json()["data"]["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let exchange = |secret: &str| {
        auth.post_json(
            "/v1/auth/token",
            serde_json::json!({"client_id": id, "client_secret": secret}),
        )
    };
    assert_eq!(
        exchange(&old_secret).await.json()["error"],
        "invalid_client"
    );
    assert_eq!(exchange(&new_secret).await.status, 200);

    // Deletion: no more tokens, and its live ones are revoked at the gateways.
    let bus = auth.cache.connect().await;
    let mut revocations = bus.subscribe(revocation::CHANNEL).await.unwrap();
    let deleted = auth
        .server
        .send(auth.request_as(&owner, Method::DELETE, &path))
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(
        exchange(&new_secret).await.json()["error"],
        "invalid_client"
    );
    let published = tokio::time::timeout(Duration::from_secs(2), revocations.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Revocation::from_bytes(&published),
        Some(Revocation::Session { id })
    );
}

db_test!(
    the_documented_service_principal_exchange_works_verbatim,
    documented_exchange
);
async fn documented_exchange(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let owner = auth.owner("owner@example.com").await;
    let created = create(
        &auth,
        &owner,
        "agent runner",
        "workspace:read data:read agents:run",
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let data = created.json()["data"].clone();
    // api-reference/authentication, request for request.
    let token = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({
                "client_id": data["client_id"],
                "client_secret": data["client_secret"],
                "workspace_id": owner.workspace_id,
                "scope": "workspace:read data:read agents:run"
            }),
        )
        .await;
    assert_eq!(token.status, 200, "{:?}", token.json());
    let body = token.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let claims = auth.claims(body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        claims.scopes(),
        ScopeSet::parse("workspace:read data:read agents:run").unwrap()
    );
    assert!(claims.scopes().contains(&Scope::AGENTS_RUN));
}

db_test!(extra_scopes_come_from_the_configuration, extra_scopes);
async fn extra_scopes(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| {
        c.scopes.extra = vec!["reports:read".into(), "reports:export".into()];
    })
    .await;
    let read = Scope::parse("reports:read").unwrap();
    let export = Scope::parse("reports:export").unwrap();
    // Owners hold them (and the access token carries them).
    let owner = auth.owner("owner@example.com").await;
    assert!(owner.scopes.contains(&read) && owner.scopes.contains(&export));
    assert!(owner.scopes.contains(&Scope::DATA_WRITE));
    let discovery = auth
        .server
        .get("/.well-known/openid-configuration")
        .await
        .json();
    let supported = discovery["scopes_supported"].as_array().unwrap();
    assert!(supported.contains(&serde_json::json!("reports:export")));
    assert!(supported.contains(&serde_json::json!("agents:run")));

    // Principals may be given them, and exchange them.
    let created = create(&auth, &owner, "reports", "reports:export agents:run").await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let data = created.json()["data"].clone();
    let token = auth
        .post_json(
            "/v1/auth/token",
            serde_json::json!({
                "client_id": data["client_id"],
                "client_secret": data["client_secret"],
                "scope": "reports:export",
            }),
        )
        .await;
    assert_eq!(token.status, 200, "{:?}", token.json());
    let claims = auth
        .claims(token.json()["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims.scopes(), [export.clone()].into_iter().collect());
    // Still nothing outside the deployment's catalog.
    create(&auth, &owner, "other", "billing:read")
        .await
        .assert_error(422, "validation_failed");

    // Admins hold them all; members and viewers the readable ones.
    for (role, holds_export) in [("admin", true), ("member", false), ("viewer", false)] {
        let email = format!("{role}@example.com");
        let invited = auth
            .server
            .send(
                auth.request_as(&owner, Method::POST, "/v1/auth/admin/users")
                    .json(&serde_json::json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(invited.status, 201, "{:?}", invited.json());
        let looked_up = auth
            .server
            .send(
                auth.request_as(
                    &identity::Identity::gateway(),
                    Method::POST,
                    "/internal/memberships/lookup",
                )
                .json(&serde_json::json!({
                    "user_id": invited.json()["data"]["user_id"],
                    "workspace_id": owner.workspace_id,
                })),
            )
            .await
            .json();
        let scopes: ScopeSet = serde_json::from_value(looked_up["data"]["scopes"].clone()).unwrap();
        assert!(scopes.contains(&read), "{role}");
        assert_eq!(scopes.contains(&export), holds_export, "{role}");
    }
}
