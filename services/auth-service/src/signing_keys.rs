//! The keys that sign access tokens, kept in the database (private halves
//! sealed), shared by every replica, and rotated without breaking verifiers:
//!
//! 1. a new key is published in the JWKS `publish_lead` before it signs, so
//!    verifiers that cache the JWKS already have it when its first token arrives;
//! 2. it then becomes the active key (the newest key whose activation time has
//!    come);
//! 3. the key it replaced stays in the JWKS until every token it signed has
//!    expired, then is deleted.

use crate::schema::signing_keys;
use crate::secrets::Keys;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::SigningKey;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use store::{Database, DbConnection, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    pub rotate_after: Duration,
    pub publish_lead: Duration,
    /// How long a replaced key stays published: the access-token lifetime plus
    /// verifier clock skew.
    pub retire_after: Duration,
}

#[derive(Queryable, Insertable, Debug, Clone)]
#[diesel(table_name = signing_keys)]
struct StoredKey {
    kid: String,
    generation: i64,
    public_pem: String,
    sealed_private_key: String,
    created_at: NaiveDateTime,
    activate_at: NaiveDateTime,
}

struct RingState {
    active: Arc<SigningKey>,
    jwks: serde_json::Value,
    /// The published keys, parsed once per reload for verifying our own tokens.
    public_keys: identity::PublicKeys,
}

/// The current signing key and JWKS, reloaded from the database.
pub struct KeyRing {
    db: Database,
    secrets: Keys,
    policy: RotationPolicy,
    state: RwLock<Arc<RingState>>,
}

fn after(t: NaiveDateTime, d: Duration) -> NaiveDateTime {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl KeyRing {
    /// Makes sure a signing key exists and loads the ring.
    pub async fn open(
        db: Database,
        secrets: Keys,
        policy: RotationPolicy,
    ) -> anyhow::Result<Arc<KeyRing>> {
        let state = Self::rotate_and_load(&db, &secrets, policy).await?;
        Ok(Arc::new(KeyRing {
            db,
            secrets,
            policy,
            state: RwLock::new(Arc::new(state)),
        }))
    }

    /// Applies the rotation policy and reloads (every replica runs this
    /// periodically; the steps are idempotent and race-safe).
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let state = Self::rotate_and_load(&self.db, &self.secrets, self.policy).await?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        Ok(())
    }

    fn current(&self) -> Arc<RingState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn active(&self) -> Arc<SigningKey> {
        self.current().active.clone()
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.current().jwks.clone()
    }

    pub fn public_keys(&self) -> identity::PublicKeys {
        self.current().public_keys.clone()
    }

    async fn rotate_and_load(
        db: &Database,
        secrets: &Keys,
        policy: RotationPolicy,
    ) -> anyhow::Result<RingState> {
        let sealing = secrets.clone();
        let rows = db
            .run(move |conn| {
                let now = Utc::now().naive_utc();
                rotate(conn, &sealing, policy, now)?;
                retire(conn, policy, now)?;
                signing_keys::table
                    .order(signing_keys::generation.asc())
                    .load::<StoredKey>(conn)
                    .map_err(StoreError::from)
            })
            .await?;
        let now = Utc::now().naive_utc();
        let mut published = Vec::with_capacity(rows.len());
        let mut active = None;
        for row in &rows {
            let pem = secrets
                .open(&row.sealed_private_key, &row.kid)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "signing key {} cannot be opened: wrong secret.key?",
                        row.kid
                    )
                })?;
            let key = SigningKey::from_pem(&pem)?;
            published.push(key.public_jwk());
            if row.activate_at <= now {
                active = Some(Arc::new(key));
            }
        }
        let active = active.ok_or_else(|| anyhow::anyhow!("no active signing key"))?;
        let jwks = serde_json::json!({ "keys": published });
        let public_keys = identity::PublicKeys::from_jwks(&jwks)?;
        Ok(RingState {
            active,
            jwks,
            public_keys,
        })
    }
}

/// Adds the next key when there is none, or when the newest one is active and
/// old enough. The unique generation makes concurrent replicas add one key.
fn rotate(
    conn: &mut DbConnection,
    secrets: &Keys,
    policy: RotationPolicy,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let newest = signing_keys::table
        .order(signing_keys::generation.desc())
        .first::<StoredKey>(conn)
        .optional()?;
    let (generation, activate_at) = match &newest {
        // The first key signs at once: nobody has tokens to verify yet.
        None => (1, now),
        Some(k) if k.activate_at <= now && after(k.created_at, policy.rotate_after) <= now => {
            (k.generation + 1, after(now, policy.publish_lead))
        }
        Some(_) => return Ok(()),
    };
    let key = SigningKey::generate().map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let row = StoredKey {
        kid: key.kid().to_owned(),
        generation,
        public_pem: key.public_pem(),
        sealed_private_key: secrets.seal(key.private_pem().as_bytes(), key.kid()),
        created_at: now,
        activate_at,
    };
    match diesel::insert_into(signing_keys::table)
        .values(&row)
        .execute(conn)
    {
        Ok(_) => {
            tracing::info!(kid = %row.kid, generation, %activate_at, "added a signing key");
            Ok(())
        }
        // Another replica added this generation first.
        Err(e) => match StoreError::from(e) {
            StoreError::UniqueViolation { .. } => Ok(()),
            other => Err(other),
        },
    }
}

/// Deletes keys replaced long enough ago that no token they signed is still valid.
fn retire(
    conn: &mut DbConnection,
    policy: RotationPolicy,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let active_keys: Vec<(i64, NaiveDateTime)> = signing_keys::table
        .filter(signing_keys::activate_at.le(now))
        .order(signing_keys::generation.asc())
        .select((signing_keys::generation, signing_keys::activate_at))
        .load(conn)?;
    // Key n was replaced when key n+1 became active.
    for pair in active_keys.windows(2) {
        let (old_generation, _) = pair[0];
        let (_, replaced_at) = pair[1];
        if after(replaced_at, policy.retire_after) <= now {
            let deleted = diesel::delete(
                signing_keys::table.filter(signing_keys::generation.eq(old_generation)),
            )
            .execute(conn)?;
            if deleted > 0 {
                tracing::info!(generation = old_generation, "retired a signing key");
            }
        }
    }
    Ok(())
}
