//! `Idempotency-Key` on POST: the first answer to a key is stored with a hash of
//! the request and replayed for 24 hours; the same key with another request
//! answers 422.
//!
//! The key is claimed in the same transaction that does the work, so the stored
//! answer and the created resource commit (or vanish) together. Two requests
//! with one key at once cannot both do the work: on PostgreSQL the second
//! insert of the key waits on the first transaction's row and then sees it; on
//! SQLite the transaction holds the write lock.

use crate::Failure;
use crate::schema::idempotency_keys;
use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;
use service_kit::{ApiError, ApiResponse, FieldError};
use sha2::{Digest, Sha256};
use store::{Database, DbConnection, StoreError};

pub const HEADER: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 255;

/// How long an answer is replayed.
pub fn retention() -> Duration {
    Duration::hours(24)
}

/// A key presented with a request, and what identifies the request.
#[derive(Debug, Clone)]
pub struct Claim {
    scope: String,
    key: String,
    hash: String,
}

impl Claim {
    /// The request's key, if it sent one. `scope` is the caller's workspace (or
    /// `anonymous:<address>`), so callers never see each other's answers.
    pub fn from_request(
        req: &HttpRequest,
        scope: &str,
        body: &impl Serialize,
    ) -> Result<Option<Claim>, ApiError> {
        let Some(raw) = req.headers().get(HEADER) else {
            return Ok(None);
        };
        let key = raw
            .to_str()
            .ok()
            .filter(|k| {
                !k.is_empty()
                    && k.len() <= MAX_KEY_LEN
                    && k.bytes().all(|b| (0x21..0x7f).contains(&b))
            })
            .ok_or_else(|| {
                ApiError::validation(vec![FieldError::new(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
                )])
            })?;
        let mut hasher = Sha256::new();
        hasher.update(req.method().as_str());
        hasher.update(b" ");
        hasher.update(req.path());
        hasher.update(b"\n");
        hasher.update(serde_json::to_vec(body).map_err(ApiError::internal)?);
        let hash = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Some(Claim {
            scope: scope.to_owned(),
            key: key.to_owned(),
            hash,
        }))
    }
}

/// An answer as stored and replayed.
struct Stored {
    status: u16,
    body: String,
    replayed: bool,
}

/// Claims the key (if any), runs `work` and stores its answer, all in one
/// transaction; or replays the answer stored for the key.
pub async fn respond<T, F>(
    db: &Database,
    claim: Option<Claim>,
    work: F,
) -> Result<actix_web::HttpResponse, Failure>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<ApiResponse<T>, Failure> + Send + 'static,
{
    in_transaction(db, claim, work).await
}

/// [`respond`] for `work` that writes with one statement at most: without a
/// key, PostgreSQL then needs no transaction around it (the statement is
/// atomic and the constraints hold), which saves the round trips of `BEGIN`
/// and `COMMIT`. SQLite keeps the write lock for the read-check-write
/// sequences of the handlers.
pub async fn respond_single_write<T, F>(
    db: &Database,
    claim: Option<Claim>,
    work: F,
) -> Result<actix_web::HttpResponse, Failure>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<ApiResponse<T>, Failure> + Send + 'static,
{
    if claim.is_none() && db.backend() == store::Backend::Postgres {
        return Ok(db.run(work).await?.into_response());
    }
    in_transaction(db, claim, work).await
}

async fn in_transaction<T, F>(
    db: &Database,
    claim: Option<Claim>,
    work: F,
) -> Result<actix_web::HttpResponse, Failure>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<ApiResponse<T>, Failure> + Send + 'static,
{
    let stored = db
        .transaction(move |conn| {
            if let Some(claim) = &claim
                && let Some(replay) = take(conn, claim)?
            {
                return Ok(replay);
            }
            let answer = work(conn)?;
            let status = answer.status().as_u16();
            let body = answer.to_json().to_string();
            if let Some(claim) = &claim {
                diesel::update(
                    idempotency_keys::table
                        .filter(idempotency_keys::scope.eq(&claim.scope))
                        .filter(idempotency_keys::key.eq(&claim.key)),
                )
                .set((
                    idempotency_keys::status_code.eq(i32::from(status)),
                    idempotency_keys::response.eq(&body),
                ))
                .execute(conn)?;
            }
            Ok::<_, Failure>(Stored {
                status,
                body,
                replayed: false,
            })
        })
        .await?;
    let mut response = actix_web::HttpResponse::build(
        StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
    );
    response.content_type("application/json");
    if stored.replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    Ok(response.body(stored.body))
}

/// Inserts the key (inside a savepoint, so a duplicate leaves the transaction
/// usable); when it exists already, the stored answer or a 422.
fn take(conn: &mut DbConnection, claim: &Claim) -> Result<Option<Stored>, Failure> {
    let now = Utc::now();
    // An expired key is forgotten; the request then runs afresh.
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::scope.eq(&claim.scope))
            .filter(idempotency_keys::key.eq(&claim.key))
            .filter(idempotency_keys::created_at.lt((now - retention()).naive_utc())),
    )
    .execute(conn)?;
    let inserted = conn.transaction(|c| {
        diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::scope.eq(&claim.scope),
                idempotency_keys::key.eq(&claim.key),
                idempotency_keys::request_hash.eq(&claim.hash),
                idempotency_keys::status_code.eq(0),
                idempotency_keys::response.eq(""),
                idempotency_keys::created_at.eq(now.naive_utc()),
            ))
            .execute(c)
    });
    match inserted.map_err(StoreError::from) {
        Ok(_) => Ok(None),
        Err(StoreError::UniqueViolation { .. }) => {
            let (hash, status, body): (String, i32, String) = idempotency_keys::table
                .filter(idempotency_keys::scope.eq(&claim.scope))
                .filter(idempotency_keys::key.eq(&claim.key))
                .select((
                    idempotency_keys::request_hash,
                    idempotency_keys::status_code,
                    idempotency_keys::response,
                ))
                .first(conn)?;
            if hash != claim.hash {
                return Err(Failure::Api(ApiError::validation(vec![FieldError::new(
                    "Idempotency-Key",
                    "was used with a different request",
                )])));
            }
            Ok(Some(Stored {
                status: u16::try_from(status).unwrap_or(200),
                body,
                replayed: true,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops keys older than the retention period; returns how many.
pub async fn forget_expired(db: &Database, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let cutoff = (now - retention()).naive_utc();
    db.run(move |conn| {
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(cutoff)))
            .execute(conn)
            .map_err(StoreError::from)
    })
    .await
}
