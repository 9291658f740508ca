//! The background work of content: deleted spaces purged, abandoned
//! presigned uploads swept.
//!
//! Deleting a space records a purge (`space_purges`) in the transaction that
//! deletes the space; a task on every replica works the purges that are due
//! at start-up, after each deletion ([`Purges::wake`]) and every
//! [`INTERVAL`]: it deletes the space's files in batches (objects first,
//! then rows), then whatever is left under the space's object prefix
//! (variants, unfinished writes), then its folders, then the purge itself.
//! Every step can be repeated, so a purge interrupted by a crash resumes
//! where it stopped; replicas working the same purge at once only repeat
//! deletions. A failed pass is retried later, backing off up to an hour.
//!
//! Files still pending `uploads.presign_expires_secs` after their PUT URL
//! expired are deleted with whatever was stored for them, and files held
//! aside under `_incoming/` by an upload a crash interrupted, after a day.

use crate::now;
use crate::schema::{files, folders, space_purges};
use crate::storage::Storage;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use store::{Database, DbConnection, StoreError};
use tokio::sync::Notify;

/// How often the task looks for work when not woken.
pub const INTERVAL: Duration = Duration::from_secs(30);
/// Files deleted per batch.
const BATCH: i64 = 200;
/// Objects deleted at once.
const CONCURRENT_DELETES: usize = 8;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = space_purges)]
pub(crate) struct PurgeRow {
    pub space_id: String,
    pub workspace_id: String,
    pub handle: String,
    pub created_at: NaiveDateTime,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
}

impl PurgeRow {
    pub(crate) fn new(space_id: &str, workspace_id: &str, handle: &str) -> PurgeRow {
        let at = now();
        PurgeRow {
            space_id: space_id.to_owned(),
            workspace_id: workspace_id.to_owned(),
            handle: handle.to_owned(),
            created_at: at,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
        }
    }
}

/// Wakes the purge task.
#[derive(Clone, Default)]
pub struct Purges {
    wake: Arc<Notify>,
}

impl Purges {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the task on the current runtime; it runs once at once.
    pub fn start(db: Database, storage: Storage, pending_grace: Duration) -> Purges {
        let purges = Purges::default();
        let wake = purges.wake.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = work(&db, &storage, pending_grace).await {
                    tracing::warn!(error = %e, "content clean-up pass failed; retrying later");
                }
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(INTERVAL) => {}
                }
            }
        });
        purges
    }
}

/// One pass: every purge that is due, then expired pending files.
pub async fn work(
    db: &Database,
    storage: &Storage,
    pending_grace: Duration,
) -> Result<(), StoreError> {
    let due: Vec<PurgeRow> = db
        .run(|conn| {
            space_purges::table
                .filter(space_purges::next_attempt_at.le(now()))
                .order(space_purges::created_at.asc())
                .limit(20)
                .select(PurgeRow::as_select())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await?;
    for purge in due {
        let space_id = purge.space_id.clone();
        match purge_space(db, storage, &purge).await {
            Ok(()) => {
                tracing::info!(space = %space_id, "deleted space purged");
            }
            Err(e) => {
                tracing::warn!(space = %space_id, error = %e, "purge failed; retrying later");
                let attempts = purge.attempts + 1;
                let delay = 2i64.saturating_pow(attempts.clamp(0, 12) as u32).min(3600);
                let message = e.to_string();
                db.run(move |conn| {
                    diesel::update(space_purges::table.find(&space_id))
                        .set((
                            space_purges::attempts.eq(attempts),
                            space_purges::next_attempt_at
                                .eq(now() + chrono::Duration::seconds(delay)),
                            space_purges::last_error.eq(message),
                        ))
                        .execute(conn)
                        .map_err(StoreError::from)
                })
                .await?;
            }
        }
    }
    sweep_pending(db, storage, pending_grace).await?;
    // Files of uploads interrupted by a crash while held aside (sent before
    // their form's `space`); a request never takes a day.
    let cutoff = chrono::Utc::now() - chrono::Duration::days(1);
    if let Err(e) = storage
        .delete_prefix_older_than(crate::uploads::INCOMING, cutoff)
        .await
    {
        tracing::warn!(error = %e, "could not sweep abandoned incoming uploads");
    }
    Ok(())
}

/// Deletes `keys` from the store, a few at once.
async fn delete_objects(storage: &Storage, keys: Vec<String>) -> anyhow::Result<()> {
    let mut results = futures_util::stream::iter(keys)
        .map(|key| async move { storage.delete(&key).await })
        .buffer_unordered(CONCURRENT_DELETES);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

async fn purge_space(db: &Database, storage: &Storage, purge: &PurgeRow) -> anyhow::Result<()> {
    loop {
        let space_id = purge.space_id.clone();
        let batch: Vec<(String, String)> = db
            .run(move |conn| {
                files::table
                    .filter(files::space_id.eq(&space_id))
                    .order(files::id.asc())
                    .limit(BATCH)
                    .select((files::id, files::object_key))
                    .load(conn)
                    .map_err(StoreError::from)
            })
            .await?;
        if batch.is_empty() {
            break;
        }
        let (ids, keys): (Vec<String>, Vec<String>) = batch.into_iter().unzip();
        delete_objects(storage, keys).await?;
        db.run(move |conn| {
            diesel::delete(files::table.filter(files::id.eq_any(&ids)))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await?;
    }
    // Variants (under `{handle}/_variants`), unfinished writes, anything
    // else of the space's.
    storage.delete_prefix(&purge.handle).await?;
    let space_id = purge.space_id.clone();
    db.transaction(move |conn: &mut DbConnection| {
        // Children before parents: one statement, checked at its end.
        diesel::delete(folders::table.filter(folders::space_id.eq(&space_id))).execute(conn)?;
        diesel::delete(space_purges::table.find(&space_id)).execute(conn)?;
        Ok::<_, StoreError>(())
    })
    .await?;
    Ok(())
}

/// Deletes files whose presigned upload was never confirmed.
async fn sweep_pending(
    db: &Database,
    storage: &Storage,
    grace: Duration,
) -> Result<(), StoreError> {
    let cutoff = now() - chrono::Duration::seconds(grace.as_secs() as i64);
    let expired: Vec<(String, String)> = db
        .run(move |conn| {
            files::table
                .filter(files::status.eq("pending"))
                .filter(files::expires_at.lt(cutoff))
                .limit(BATCH)
                .select((files::id, files::object_key))
                .load(conn)
                .map_err(StoreError::from)
        })
        .await?;
    if expired.is_empty() {
        return Ok(());
    }
    let (ids, keys): (Vec<String>, Vec<String>) = expired.into_iter().unzip();
    if let Err(e) = delete_objects(storage, keys).await {
        tracing::warn!(error = %e, "could not delete abandoned presigned uploads");
        return Ok(());
    }
    db.run(move |conn| {
        diesel::delete(
            files::table
                .filter(files::id.eq_any(&ids))
                .filter(files::status.eq("pending")),
        )
        .execute(conn)
        .map_err(StoreError::from)
    })
    .await?;
    Ok(())
}
