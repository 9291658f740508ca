//! Verified client credentials remembered by each replica, and dropped on
//! every replica at once when the secret is rotated or the principal deleted.

use crate::helpers::TestAuth;
use auth_service::verified_clients::{CHANNEL, ClientRevocation};
use identity::Identity;
use std::time::Duration;
use testkit::reqwest::Method;
use testkit::{CacheKind, DbKind, TestResponse, TestServer};

/// Creates a service principal as `owner`; its client id and secret.
async fn principal(auth: &TestAuth, owner: &Identity) -> (String, String) {
    let created = auth
        .server
        .send(
            auth.request_as(owner, Method::POST, "/v1/auth/service-principals")
                .json(&serde_json::json!({"name": "sync", "scopes": "bookings:read"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let data = created.json()["data"].clone();
    (
        data["client_id"].as_str().unwrap().to_owned(),
        data["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn exchange(server: &TestServer, client_id: &str, secret: &str) -> TestResponse {
    server
        .send(
            server
                .request(Method::POST, "/v1/auth/token")
                .basic_auth(client_id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials"),
        )
        .await
}

/// `(hits, misses)` of the replica's client-credentials memory, from `/metrics`.
async fn lookups(server: &TestServer) -> (u64, u64) {
    let metrics = String::from_utf8_lossy(&server.get("/metrics").await.body).into_owned();
    let count = |result: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("auth_client_credentials_lookups_total{")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    (count("hit"), count("miss"))
}

/// A request to `server` made as `who`, through the gateway.
async fn as_owner(server: &TestServer, who: &Identity, method: Method, path: &str) -> TestResponse {
    let request = server.client.request(method, server.url(path)).header(
        identity::HEADER,
        testkit::identity::token(who, "auth-service"),
    );
    server.send(request).await
}

async fn assert_refused(server: &TestServer, client_id: &str, secret: &str, what: &str) {
    let refused = exchange(server, client_id, secret).await;
    assert_eq!(
        (refused.status, refused.json()["error"].clone()),
        (401, "invalid_client".into()),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_secrets_die_at_once_on_every_replica_postgres_redis() {
    remembered_on_two_replicas(DbKind::Postgres, CacheKind::Redis).await;
}

/// The same over the in-process bus (one process, as the devstack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_secrets_die_at_once_on_every_replica_sqlite() {
    remembered_on_two_replicas(DbKind::Sqlite, CacheKind::Memory).await;
}

async fn remembered_on_two_replicas(kind: DbKind, cache: CacheKind) {
    let auth = TestAuth::start_on(kind, cache, |_| {}).await;
    let one = &auth.server;
    let two = auth.replica(|_| {}).await;
    let owner = auth.owner("owner@example.com").await;
    let (id, secret) = principal(&auth, &owner).await;

    // Each replica reads the principal once, then answers from memory.
    for (n, replica) in [one, &two].into_iter().enumerate() {
        for _ in 0..3 {
            let token = exchange(replica, &id, &secret).await;
            assert_eq!(token.status, 200, "replica {n}: {:?}", token.json());
            let claims = auth
                .claims(token.json()["access_token"].as_str().unwrap())
                .await;
            assert_eq!(
                (claims.sub, claims.wrk),
                (id.clone(), owner.workspace_id.clone())
            );
            assert_eq!(claims.scope, "bookings:read");
        }
        assert_eq!(lookups(replica).await, (2, 1), "replica {n}");
    }

    // A wrong secret is refused, and goes to the database every time, the
    // right one remembered or not.
    let wrong = format!("{}x", &secret[..secret.len() - 1]);
    for replica in [one, &two] {
        let before = lookups(replica).await;
        assert_refused(replica, &id, &wrong, "wrong secret").await;
        assert_refused(replica, &id, &wrong, "wrong secret, again").await;
        assert_eq!(lookups(replica).await, (before.0, before.1 + 2));
        assert_eq!(exchange(replica, &id, &secret).await.status, 200);
    }

    // Rotating through one replica: the old secret is refused on both at
    // once, and the new one works on both.
    let bus = auth.cache.connect().await;
    let mut published = bus.subscribe(CHANNEL).await.unwrap();
    let rotated = as_owner(
        &two,
        &owner,
        Method::POST,
        &format!("/v1/auth/service-principals/{id}/rotate-secret"),
    )
    .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.json());
    assert_refused(one, &id, &secret, "old secret, other replica").await;
    assert_refused(&two, &id, &secret, "old secret, rotating replica").await;
    let new_secret = rotated.json()["data"]["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    for replica in [one, &two] {
        assert_eq!(exchange(replica, &id, &new_secret).await.status, 200);
        assert_eq!(exchange(replica, &id, &new_secret).await.status, 200);
        assert_refused(replica, &id, &secret, "old secret after the new one").await;
    }
    let message = tokio::time::timeout(Duration::from_secs(2), published.next())
        .await
        .expect("a revocation on the bus")
        .unwrap();
    assert_eq!(
        ClientRevocation::from_bytes(&message),
        Some(ClientRevocation::ServicePrincipal { id: id.clone() })
    );

    // Deleting through the other: refused on both at once.
    let hits_before: Vec<u64> = [lookups(one).await.0, lookups(&two).await.0].into();
    let deleted = as_owner(
        one,
        &owner,
        Method::DELETE,
        &format!("/v1/auth/service-principals/{id}"),
    )
    .await;
    assert_eq!(deleted.status, 200);
    assert_refused(&two, &id, &new_secret, "deleted, other replica").await;
    assert_refused(one, &id, &new_secret, "deleted, deleting replica").await;
    assert_eq!(
        vec![lookups(one).await.0, lookups(&two).await.0],
        hits_before,
        "no answer from memory after the deletion"
    );
}

/// What a replica remembers is answered without reading the database: a
/// change nobody announced goes unnoticed until the memory expires (which is
/// why rotation and deletion announce theirs), and the pair still gets tokens
/// with the database gone. A wrong secret still goes to the database.
#[tokio::test]
async fn a_remembered_pair_reads_no_database_postgres() {
    let auth = TestAuth::start(DbKind::Postgres).await;
    let forgetful = auth.replica(|c| c.tokens.client_cache_ttl_secs = 0).await;
    let owner = auth.owner("owner@example.com").await;
    let (id, secret) = principal(&auth, &owner).await;
    assert_eq!(exchange(&auth.server, &id, &secret).await.status, 200);
    assert_eq!(exchange(&forgetful, &id, &secret).await.status, 200);

    // The stored hash changes behind the replicas' backs.
    let target = id.clone();
    let db = store::Database::connect_and_migrate(&auth.db.config(), &auth_service::MIGRATIONS)
        .await
        .unwrap();
    db.run(move |conn| {
        use auth_service::schema::service_principals;
        use diesel::prelude::*;
        diesel::update(service_principals::table.find(target))
            .set(service_principals::secret_hash.eq("0".repeat(64)))
            .execute(conn)
            .map_err(store::StoreError::from)
    })
    .await
    .unwrap();
    assert_eq!(
        exchange(&auth.server, &id, &secret).await.status,
        200,
        "remembered: the database is not read"
    );
    assert_refused(&forgetful, &id, &secret, "with 0 s, every exchange reads").await;
    assert_eq!(
        lookups(&forgetful).await,
        (0, 0),
        "nothing counted when off"
    );

    // No database at all.
    drop(db);
    auth.db.destroy();
    let token = exchange(&auth.server, &id, &secret).await;
    assert_eq!(token.status, 200, "{:?}", token.json());
    let claims = auth
        .claims(token.json()["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims.sub, id);
    let wrong = exchange(&auth.server, &id, "sps_wrong").await;
    assert_eq!(
        (wrong.status, wrong.json()["error"].clone()),
        (503, "temporarily_unavailable".into()),
        "a wrong secret is checked against the database"
    );
}
