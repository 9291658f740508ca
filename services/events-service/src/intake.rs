//! The intake: each configured stream consumed as one consumer group shared
//! by every replica; each event stored once, with one delivery per matching
//! subscription, one transaction per read batch; the batch's stream entries
//! acknowledged only after that commits (the `events` crate's [`Consumer::run_batches`]
//! acknowledges when the handler returns `Ok`). An event seen again (redelivered after a crash, or
//! claimed from a dead replica) finds its row and changes nothing.

use crate::dispatch::{Dispatcher, NewDelivery, Ready, StoredEvent};
use crate::metrics::Metrics;
use crate::schema::{deliveries, events, subscriptions};
use crate::subscriptions::{ACTIVE, Family, Subscription, listens_to};
use crate::{catalog, now};
use ::events::{Consumer, Delivery, Event, EventStream};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Database, DbConnection, StoreError};

/// Longest the intake waits for the workers before it stores a batch anyway
/// (its deliveries then wait for a claim).
const ROOM_WAIT: Duration = Duration::from_secs(5);
/// How often the streams' lag is measured for the metrics.
const LAG_INTERVAL: Duration = Duration::from_secs(10);

/// What the intake of one replica needs.
pub struct Setup {
    pub db: Database,
    pub stream: EventStream,
    pub streams: Vec<String>,
    pub group: String,
    /// This replica's consumer name: unique among the group's consumers.
    pub consumer: String,
    pub dispatcher: Dispatcher,
    pub metrics: Arc<Metrics>,
}

/// Starts one consumer per stream, and the lag gauge, on the current runtime.
pub fn start(setup: Setup) {
    for name in &setup.streams {
        let consumer = Consumer::new(
            setup.stream.clone(),
            name.clone(),
            setup.group.clone(),
            setup.consumer.clone(),
        );
        let db = setup.db.clone();
        let dispatcher = setup.dispatcher.clone();
        let metrics = setup.metrics.clone();
        let stream_name = name.clone();
        let stopped = setup.dispatcher.stopped();
        tokio::spawn(async move {
            // One transaction per read batch: the events, then their
            // deliveries; the batch is acknowledged once that commits.
            let handler = move |batch: Vec<Delivery>| {
                let db = db.clone();
                let dispatcher = dispatcher.clone();
                let metrics = metrics.clone();
                let stream_name = stream_name.clone();
                async move {
                    // Read on only as fast as the workers deliver (the wait is
                    // bounded well below the stream's claim-back idle time).
                    if !dispatcher.wait_for_room(ROOM_WAIT).await {
                        tracing::debug!(
                            "the workers are busy; the batch's deliveries wait for a claim"
                        );
                    }
                    let events = batch.into_iter().map(|d| d.event).collect();
                    let handoff = Handoff::from(&dispatcher);
                    let (recorded, ready) = record_and_hand(&db, events, Some(handoff)).await?;
                    for duplicate in &recorded.events {
                        metrics.consumed(&stream_name, *duplicate);
                    }
                    // One wake for the whole batch's deliveries not handed
                    // over (the workers claim them).
                    if recorded.deliveries > ready.len() {
                        dispatcher.wake();
                    }
                    dispatcher.hand(ready);
                    Ok::<(), StoreError>(())
                }
            };
            consumer.run_batches(handler, stopped).await;
        });
    }
    tokio::spawn(measure_lag(
        setup.stream,
        setup.streams,
        setup.group,
        setup.metrics,
    ));
}

async fn measure_lag(
    stream: EventStream,
    names: Vec<String>,
    group: String,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(LAG_INTERVAL);
    loop {
        tick.tick().await;
        for name in &names {
            match stream.lag(name, &group).await {
                Ok(lag) => metrics.stream_lag(name, lag),
                Err(error) => tracing::debug!(stream = %name, %error, "stream lag unknown"),
            }
        }
    }
}

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The event was stored before: nothing was done.
    pub duplicate: bool,
    /// Deliveries created for it.
    pub deliveries: usize,
}

#[derive(Insertable, Debug)]
#[diesel(table_name = events)]
struct EventRow {
    id: String,
    event_type: String,
    occurred_at: NaiveDateTime,
    workspace_id: Option<String>,
    organization_id: Option<String>,
    subject_id: String,
    data: String,
    producer: String,
    request_id: Option<String>,
    received_at: NaiveDateTime,
}

/// Rows per multi-row `INSERT` of events (10 parameters each).
const EVENT_INSERT_CHUNK: usize = 500;

/// Stores each of `events` unless it is stored already (or earlier in the
/// list); returns, in order, whether each was new. On PostgreSQL one
/// statement per chunk (`ON CONFLICT DO NOTHING RETURNING id`); on SQLite one
/// per event.
fn insert_events(conn: &mut DbConnection, events: &[Event]) -> Result<Vec<bool>, StoreError> {
    let DbConnection::Postgresql(pg) = conn else {
        return events
            .iter()
            .map(|event| insert_event(conn, event))
            .collect();
    };
    let mut inserted = std::collections::HashSet::new();
    for chunk in events.chunks(EVENT_INSERT_CHUNK) {
        let rows: Vec<EventRow> = chunk.iter().map(EventRow::from).collect();
        let ids: Vec<String> = diesel::insert_into(events::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .returning(events::id)
            .get_results(pg)?;
        inserted.extend(ids);
    }
    // An id inserted once is new at its first place in the list only.
    Ok(events
        .iter()
        .map(|event| inserted.remove(&event.id))
        .collect())
}

impl From<&Event> for EventRow {
    fn from(event: &Event) -> Self {
        EventRow {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            occurred_at: event.occurred_at.naive_utc(),
            workspace_id: event.workspace_id.clone(),
            organization_id: event.organization_id.clone(),
            subject_id: event.subject_id.clone(),
            data: event.data.to_string(),
            producer: event.producer.clone(),
            request_id: event.request_id.clone(),
            received_at: now(),
        }
    }
}

/// Stores `event` unless it is stored already; returns whether it was new.
pub(crate) fn insert_event(conn: &mut DbConnection, event: &Event) -> Result<bool, StoreError> {
    let row = EventRow::from(event);
    let insert = diesel::insert_into(events::table)
        .values(&row)
        .on_conflict_do_nothing();
    // ON CONFLICT is each backend's own (the multi-backend has none).
    let inserted = match conn {
        DbConnection::Postgresql(pg) => insert.execute(pg)?,
        DbConnection::Sqlite(lite) => insert.execute(lite)?,
    };
    Ok(inserted == 1)
}

/// Stores `event` once and creates a delivery, due now, for every
/// subscription it matches, in one transaction: [`record_batch`] of one.
pub async fn record(db: &Database, event: Event) -> Result<Recorded, StoreError> {
    let batch = record_batch(db, vec![event]).await?;
    Ok(Recorded {
        duplicate: batch.events.first().copied().unwrap_or(true),
        deliveries: batch.deliveries,
    })
}

/// What recording a batch of events did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchRecorded {
    /// For each event of the batch, in order: whether it was stored before
    /// (or earlier in the same batch), so that nothing was done for it.
    pub events: Vec<bool>,
    /// Deliveries created for the whole batch.
    pub deliveries: usize,
}

/// Rows per multi-row `INSERT` of deliveries (10 parameters each: well under
/// either backend's limit).
const DELIVERY_INSERT_CHUNK: usize = 500;

/// Stores each event of `events` once and creates a delivery, due now, for
/// every subscription it matches, all in one transaction: either every event
/// of the batch is stored with its deliveries, or none is. The deliveries are
/// left for any replica's workers to claim.
///
/// A subscription matches when it is enabled and active, of the event's
/// workspace, lists the event's type, and, for a SpaceOS subscription, is of
/// the event's organization (an event without one concerns the whole
/// workspace and matches every SpaceOS subscription of it). `ping` events
/// match nothing here: they are made for one subscription by its test route.
/// An event stored before (or twice in the batch) changes nothing.
pub async fn record_batch(db: &Database, events: Vec<Event>) -> Result<BatchRecorded, StoreError> {
    Ok(record_and_hand(db, events, None).await?.0)
}

/// Deliveries the intake creates already leased to its own replica's
/// workers, as many as they take by hand now: they are attempted at once,
/// without a claim query and its update. A replica that dies leaves their
/// leases to expire, and any replica claims them then, as any claim.
pub(crate) struct Handoff {
    lease: String,
    until: NaiveDateTime,
    leased_at: Instant,
    room: usize,
}

impl From<&Dispatcher> for Handoff {
    fn from(dispatcher: &Dispatcher) -> Self {
        let leased_at = Instant::now();
        let (lease, until) = dispatcher.new_lease();
        Handoff {
            lease,
            until,
            leased_at,
            room: dispatcher.room(),
        }
    }
}

/// [`record_batch`], creating up to `handoff.room` of the deliveries leased
/// to this replica and returning them ready for its workers.
pub(crate) async fn record_and_hand(
    db: &Database,
    events: Vec<Event>,
    handoff: Option<Handoff>,
) -> Result<(BatchRecorded, Vec<Ready>), StoreError> {
    if events.is_empty() {
        return Ok((BatchRecorded::default(), Vec::new()));
    }
    let mut events = events;
    let targets: HashMap<String, Vec<String>> = events
        .iter_mut()
        .filter_map(|event| Some((event.id.clone(), take_targets(event)?)))
        .collect();
    db.transaction(move |conn| {
        let stored = insert_events(conn, &events)?;
        let duplicates: Vec<bool> = stored.iter().map(|new| !new).collect();
        let fresh: Vec<&Event> = events
            .iter()
            .zip(&stored)
            .filter(|(event, new)| {
                **new && event.event_type != catalog::PING && event.workspace_id.is_some()
            })
            .map(|(event, _)| event)
            .collect();
        let mut workspaces: Vec<&str> = fresh
            .iter()
            .filter_map(|e| e.workspace_id.as_deref())
            .collect();
        workspaces.sort_unstable();
        workspaces.dedup();
        if workspaces.is_empty() {
            let recorded = BatchRecorded {
                events: duplicates,
                deliveries: 0,
            };
            return Ok((recorded, Vec::new()));
        }
        for event in &fresh {
            if let (Some(urls), Some(workspace)) =
                (targets.get(&event.id), event.workspace_id.as_deref())
            {
                for url in urls {
                    add_space_webhook(conn, workspace, url)?;
                }
            }
        }
        let candidates: Vec<Arc<Subscription>> = subscriptions::table
            .filter(subscriptions::workspace_id.eq_any(&workspaces))
            .filter(subscriptions::enabled.eq(true))
            .filter(subscriptions::state.eq(ACTIVE))
            .order(subscriptions::id.asc())
            .select(Subscription::as_select())
            .load(conn)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut rows: Vec<NewDelivery> = Vec::new();
        let mut ready = Vec::new();
        for event in &fresh {
            let Some(workspace) = event.workspace_id.as_deref() else {
                continue;
            };
            let mut stored: Option<Arc<StoredEvent>> = None;
            for subscription in &candidates {
                if subscription.workspace_id != workspace {
                    continue;
                }
                let matches = match subscription.family() {
                    Family::Gospace => listens_to(&subscription.events, &event.event_type),
                    Family::SpaceOs => {
                        (event.organization_id.is_none()
                            || subscription.organization_id == event.organization_id)
                            && listens_to(&subscription.events, &event.event_type)
                    }
                    Family::Tuzzle => targets
                        .get(&event.id)
                        .is_some_and(|urls| urls.contains(&subscription.url)),
                };
                if !matches {
                    continue;
                }
                let mut row = NewDelivery::due_now(&subscription.id, &event.id, workspace, false);
                if let Some(handoff) = handoff.as_ref().filter(|h| ready.len() < h.room) {
                    row.lease(&handoff.lease, handoff.until);
                    let event = stored
                        .get_or_insert_with(|| Arc::new(StoredEvent::from(*event)))
                        .clone();
                    ready.push(Ready {
                        claimed: row.claimed(&handoff.lease),
                        subscription: subscription.clone(),
                        event,
                        leased_at: handoff.leased_at,
                    });
                }
                rows.push(row);
            }
        }
        for chunk in rows.chunks(DELIVERY_INSERT_CHUNK) {
            let insert = diesel::insert_into(deliveries::table).values(chunk);
            match conn {
                DbConnection::Postgresql(pg) => insert.execute(pg)?,
                DbConnection::Sqlite(lite) => insert.execute(lite)?,
            };
        }
        let recorded = BatchRecorded {
            events: duplicates,
            deliveries: rows.len(),
        };
        Ok((recorded, ready))
    })
    .await
}

/// Receivers an event names besides the subscriptions it matches, at most.
const MAX_TARGETS: usize = 4;

/// Takes the receivers an event names for itself (`data.webhook_urls`: a
/// content space's and its upload config's `webhook_url`, on `file.uploaded`)
/// out of its data, so that no subscriber sees them; `None` when it names
/// none or has no workspace.
fn take_targets(event: &mut Event) -> Option<Vec<String>> {
    let listed = event.data.as_object_mut()?.remove(WEBHOOK_URLS)?;
    event.workspace_id.as_ref()?;
    let mut urls: Vec<String> = listed
        .as_array()?
        .iter()
        .filter_map(|url| url.as_str())
        .filter(|url| !url.is_empty() && url.len() <= MAX_URL)
        .map(str::to_owned)
        .collect();
    urls.sort_unstable();
    urls.dedup();
    urls.truncate(MAX_TARGETS);
    (!urls.is_empty()).then_some(urls)
}

/// The field of an event's data naming its own receivers.
const WEBHOOK_URLS: &str = "webhook_urls";
/// Longest receiver URL taken from an event.
const MAX_URL: usize = 2048;

/// The subscription standing for a content space's `webhook_url` in
/// `workspace`: one per workspace and URL, its id derived from both, so that
/// every replica makes the same one once; deliveries to it are logged,
/// retried and leased as any other.
fn add_space_webhook(
    conn: &mut DbConnection,
    workspace: &str,
    url: &str,
) -> Result<(), StoreError> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{workspace}\n{url}").as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    let id = format!(
        "{}_{}",
        service_kit::ids::prefix::WEBHOOK,
        ulid::Ulid::from(u128::from_be_bytes(first))
    );
    let at = now();
    let row = (
        subscriptions::id.eq(id),
        subscriptions::workspace_id.eq(workspace),
        subscriptions::family.eq(Family::Tuzzle.as_str()),
        subscriptions::url.eq(url),
        subscriptions::events.eq("[]"),
        subscriptions::secret_sealed.eq(""),
        subscriptions::secret_hint.eq(""),
        subscriptions::enabled.eq(true),
        subscriptions::state.eq(ACTIVE),
        subscriptions::created_by.eq("spaces-service"),
        subscriptions::created_at.eq(at),
        subscriptions::updated_at.eq(at),
    );
    let insert = diesel::insert_into(subscriptions::table)
        .values(row)
        .on_conflict_do_nothing();
    match conn {
        DbConnection::Postgresql(pg) => insert.execute(pg)?,
        DbConnection::Sqlite(lite) => insert.execute(lite)?,
    };
    Ok(())
}
