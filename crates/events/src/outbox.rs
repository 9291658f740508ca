//! The transactional outbox: events written in the same transaction as the
//! change they describe, so there is no event without its change and no change
//! without its event. The relay ([`crate::Relay`]) moves them to the stream.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use store::{DbConnection, StoreError};

use crate::Event;

/// The table each producing service creates (see the crate docs for the SQL).
pub mod schema {
    diesel::table! {
        /// One row per event. `seq` is the outbox order (the relay publishes
        /// in it); `published_at` stays NULL until the stream has the event.
        outbox (id) {
            seq -> BigInt,
            id -> Text,
            event_type -> Text,
            occurred_at -> Timestamp,
            workspace_id -> Nullable<Text>,
            organization_id -> Nullable<Text>,
            subject_id -> Text,
            data -> Text,
            producer -> Text,
            request_id -> Nullable<Text>,
            published_at -> Nullable<Timestamp>,
        }
    }
}

pub use schema::outbox;

/// `up.sql` of the outbox migration on PostgreSQL.
pub const POSTGRES_UP: &str = include_str!("../sql/postgres_up.sql");
/// `up.sql` of the outbox migration on SQLite.
pub const SQLITE_UP: &str = include_str!("../sql/sqlite_up.sql");
/// `down.sql` of the outbox migration, on both backends.
pub const DOWN: &str = include_str!("../sql/down.sql");

/// What `record` writes; `seq` and `published_at` come from the database.
#[derive(Insertable)]
#[diesel(table_name = outbox)]
struct NewRow<'a> {
    id: &'a str,
    event_type: &'a str,
    occurred_at: NaiveDateTime,
    workspace_id: Option<&'a str>,
    organization_id: Option<&'a str>,
    subject_id: &'a str,
    data: String,
    producer: &'a str,
    request_id: Option<&'a str>,
}

/// An unpublished row as the relay reads it.
#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = outbox)]
pub(crate) struct Row {
    pub(crate) id: String,
    event_type: String,
    occurred_at: NaiveDateTime,
    workspace_id: Option<String>,
    organization_id: Option<String>,
    subject_id: String,
    data: String,
    producer: String,
    request_id: Option<String>,
}

impl Row {
    /// The event the row holds. Fails only when `data` is not JSON, which
    /// `record` never writes.
    pub(crate) fn into_event(self) -> Result<Event, serde_json::Error> {
        Ok(Event {
            data: serde_json::from_str(&self.data)?,
            id: self.id,
            event_type: self.event_type,
            occurred_at: self.occurred_at.and_utc(),
            workspace_id: self.workspace_id,
            organization_id: self.organization_id,
            subject_id: self.subject_id,
            producer: self.producer,
            request_id: self.request_id,
        })
    }
}

/// Writes `event` to the outbox. Call it inside the transaction that makes the
/// change (`Database::transaction`), so that both commit or neither does; after
/// the commit, [`crate::Nudge::nudge`] wakes the relay.
pub fn record(conn: &mut DbConnection, event: &Event) -> Result<(), StoreError> {
    let row = NewRow {
        id: &event.id,
        event_type: &event.event_type,
        occurred_at: crate::event::to_millis(event.occurred_at).naive_utc(),
        workspace_id: event.workspace_id.as_deref(),
        organization_id: event.organization_id.as_deref(),
        subject_id: &event.subject_id,
        data: event.data.to_string(),
        producer: &event.producer,
        request_id: event.request_id.as_deref(),
    };
    diesel::insert_into(outbox::table)
        .values(&row)
        .execute(conn)
        .map(drop)
        .map_err(StoreError::from)
}

/// Rows the relay has not published yet; for metrics and tests.
pub fn unpublished_count(conn: &mut DbConnection) -> Result<i64, StoreError> {
    outbox::table
        .filter(outbox::published_at.is_null())
        .count()
        .get_result(conn)
        .map_err(StoreError::from)
}

/// Up to `limit` unpublished rows, in outbox order.
pub(crate) fn unpublished(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Row>> {
    outbox::table
        .filter(outbox::published_at.is_null())
        .order(outbox::seq.asc())
        .limit(limit)
        .select(Row::as_select())
        .load(conn)
}

pub(crate) fn mark_published(
    conn: &mut DbConnection,
    ids: &[String],
    at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::published_at.eq(at))
        .execute(conn)
}

/// Marks every retained published row unpublished again, so that the relay
/// publishes them once more (the stream lost them); returns how many.
pub(crate) fn republish_retained(conn: &mut DbConnection) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::published_at.is_not_null()))
        .set(outbox::published_at.eq(None::<NaiveDateTime>))
        .execute(conn)
}

/// Deletes up to `limit` rows published before `cutoff`; bounded so that one
/// pass never holds the relay's lock for a long delete.
pub(crate) fn prune(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<usize> {
    let oldest: Vec<String> = outbox::table
        .select(outbox::id)
        .filter(outbox::published_at.lt(cutoff))
        .limit(limit)
        .load(conn)?;
    if oldest.is_empty() {
        return Ok(0);
    }
    diesel::delete(outbox::table.filter(outbox::id.eq_any(&oldest))).execute(conn)
}
