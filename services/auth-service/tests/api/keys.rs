//! Signing keys: JWKS, rotation with a publish lead, retirement, replicas.

use crate::helpers::TestAuth;
use auth_service::secrets::Keys;
use auth_service::signing_keys::{KeyRing, RotationPolicy};
use std::time::Duration;
use store::Database;
use testkit::{DbKind, TestDatabase, db_test};

fn kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

db_test!(jwks_and_discovery_are_published, discovery);
async fn discovery(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let jwks = auth.server.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    let key = &jwks.json()["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key.get("d").is_none(), "never the private part");
    let config = auth
        .server
        .get("/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(config["issuer"], "http://localhost:8080");
    assert_eq!(
        config["jwks_uri"],
        "http://localhost:8080/.well-known/jwks.json"
    );
}

async fn ring(db: &Database, policy: RotationPolicy) -> std::sync::Arc<KeyRing> {
    KeyRing::open(
        db.clone(),
        Keys::from_root(&service_kit::secrets::RootSecret::from_bytes(&[9u8; 32])),
        policy,
    )
    .await
    .unwrap()
}

db_test!(
    rotation_publishes_before_signing_and_retires_after_expiry,
    rotation
);
async fn rotation(kind: DbKind) {
    let test_db = TestDatabase::new(kind);
    let db = Database::connect_and_migrate(&test_db.config(), &auth_service::MIGRATIONS)
        .await
        .unwrap();
    let policy = RotationPolicy {
        rotate_after: Duration::from_secs(2),
        publish_lead: Duration::from_secs(1),
        retire_after: Duration::from_secs(1),
    };
    let ring = ring(&db, policy).await;
    let first = ring.active().kid().to_owned();
    assert_eq!(kids(&ring.jwks()), vec![first.clone()]);

    // Old enough: a successor is published but does not sign yet.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    ring.refresh().await.unwrap();
    let published = kids(&ring.jwks());
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(
        ring.active().kid(),
        first,
        "the new key waits for its publish lead"
    );
    let second = published.iter().find(|k| **k != first).unwrap().clone();

    // After the lead, the successor signs; the old key is still published.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ring.refresh().await.unwrap();
    assert_eq!(ring.active().kid(), second);
    assert!(kids(&ring.jwks()).contains(&first));

    // Once its tokens have expired, the old key is gone.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ring.refresh().await.unwrap();
    assert!(
        !kids(&ring.jwks()).contains(&first),
        "{:?}",
        kids(&ring.jwks())
    );
    assert!(kids(&ring.jwks()).contains(&second));

    // Another replica sees the same keys.
    let replica = KeyRing::open(
        db.clone(),
        Keys::from_root(&service_kit::secrets::RootSecret::from_bytes(&[9u8; 32])),
        policy,
    )
    .await
    .unwrap();
    assert_eq!(replica.active().kid(), second);

    // A replica with the wrong root secret cannot open the keys, and says so.
    let wrong = KeyRing::open(
        db,
        Keys::from_root(&service_kit::secrets::RootSecret::from_bytes(&[1u8; 32])),
        policy,
    )
    .await;
    assert!(wrong.is_err());
}

db_test!(replicas_starting_together_make_one_key, replicas_race);
async fn replicas_race(kind: DbKind) {
    let test_db = TestDatabase::new(kind);
    let db = Database::connect_and_migrate(&test_db.config(), &auth_service::MIGRATIONS)
        .await
        .unwrap();
    let policy = RotationPolicy {
        rotate_after: Duration::from_secs(3600),
        publish_lead: Duration::from_secs(600),
        retire_after: Duration::from_secs(3900),
    };
    let (a, b, c) = tokio::join!(ring(&db, policy), ring(&db, policy), ring(&db, policy));
    assert_eq!(a.active().kid(), b.active().kid());
    assert_eq!(b.active().kid(), c.active().kid());
    assert_eq!(kids(&a.jwks()).len(), 1);
}
