//! Delivery: each replica's workers claim due deliveries, send them, and
//! record every attempt.
//!
//! - **Claiming** ([`claim`]): due deliveries (pending, `next_attempt_at` past,
//!   no live lease, of an enabled and active subscription unless a client asked
//!   for them) are taken in one transaction, soonest first: on PostgreSQL with
//!   `SELECT … FOR UPDATE SKIP LOCKED`, so concurrent replicas skip each
//!   other's rows; on SQLite under the write lock `BEGIN IMMEDIATE` takes.
//!   The claim writes a lease (`lease_owner`, a token unique to the claim, and
//!   `lease_until`, `webhooks.lease_secs` ahead), which keeps every other
//!   replica off the delivery. The lease outlives the longest attempt
//!   (`lease_secs ≥ timeout_secs + 10`), so two replicas never send one
//!   attempt; a replica that dies leaves its lease to expire, and the delivery
//!   is claimed again then.
//! - **Handing over**: the intake creates new deliveries already leased to
//!   its own replica (as many as the workers take now: twice their number,
//!   less those waiting) and hands them to the workers in memory, so the
//!   common case needs no claim query and no lease update. A handed delivery
//!   that waited so long that its lease no longer covers a whole attempt is
//!   left to the lease's end and claimed then. The intake reads the stream
//!   on only while no more deliveries wait than there are workers (for at
//!   most 5 s a batch), so a backlog stays in the stream rather than in the
//!   delivery table, where every claim would step over it.
//! - **Sending**: the URL is checked again (the policy may have changed), the
//!   body is signed (see [`crate::signatures`]) and POSTed through the
//!   `outbound` client: no redirects, the connect-time address check, TLS
//!   verified, `webhooks.timeout_secs` for the whole exchange. At most 64 KiB
//!   of the answer is read and kept.
//! - **Recording**: by one recorder per replica, in batches (whatever
//!   attempts finished while the last batch was written), one transaction
//!   and, on PostgreSQL, one `UPDATE … FROM unnest(…)` and one multi-row
//!   `INSERT` per batch; each only under its claim's own lease (a lease lost
//!   to a stall is not written over). A 2xx succeeds; otherwise the next delay of
//!   `webhooks.retry_schedule_secs` (±10% jitter) schedules a retry, and after
//!   the last one the delivery fails and its subscription turns `failing`
//!   (once: a conditional update), which wakes the mailer.
//! - **Mail**: each failing subscription with a `notify_email` is mailed once,
//!   by one replica (a lease on the subscription), and marked when the mail
//!   went out; a failed send is tried again after the lease.

use crate::config::WebhookConfig;
use crate::metrics::Metrics;
use crate::schema::{attempts, deliveries, events, subscriptions};
use crate::subscriptions::{ACTIVE, FAILING, Family, Subscription};
use crate::{now, rfc3339, secrets, signatures};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Database, DbConnection, StoreError};
use tokio::sync::{Notify, Semaphore, mpsc};

/// Most of a receiver's answer that is read and kept.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Deliveries claimed by one query at most.
const CLAIM_BATCH: usize = 64;
/// How often failing subscriptions are looked at for mail when nothing wakes
/// the mailer.
const MAIL_INTERVAL: Duration = Duration::from_secs(30);
/// How often the failing gauge is refreshed, and old rows pruned at most.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(15);
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Rows pruned per statement.
const PRUNE_BATCH: i64 = 500;
/// Opened secrets kept at most (the cache is emptied when it is full).
const SECRET_CACHE: usize = 10_000;
/// Tries to record a batch of attempts before leaving them to their leases.
const RECORD_TRIES: u32 = 3;
/// Attempts recorded by one transaction at most.
const RECORD_BATCH: usize = 256;
/// Rows per multi-row `INSERT` of attempts (10 parameters each).
const ATTEMPT_INSERT_CHUNK: usize = 500;
/// How often the intake looks whether the workers have room.
const ROOM_POLL: Duration = Duration::from_millis(2);
/// Time a handed delivery's lease keeps beyond a whole attempt: one that
/// waited longer for a worker is left to the lease's end.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// `status` of a delivery waiting for an attempt.
pub const PENDING: &str = "pending";
/// `status` of a delivery a receiver accepted.
pub const SUCCEEDED: &str = "succeeded";
/// `status` of a delivery with no attempt left.
pub const FAILED: &str = "failed";

service_kit::words! {
    /// Where a delivery stands.
    DeliveryStatus {
        /// Waiting for its next attempt.
        Pending = "pending",
        /// A receiver answered 2xx.
        Succeeded = "succeeded",
        /// Its last attempt failed and none is left (a retry may be asked for).
        Failed = "failed",
    }
}

service_kit::words! {
    /// What came of one attempt.
    AttemptOutcome {
        /// The receiver answered 2xx in time.
        Succeeded = "succeeded",
        /// It failed; the next attempt is scheduled (`next_attempt_at`).
        Retrying = "retrying",
        /// It failed, and no attempt is left.
        Failed = "failed",
    }
}

/// A new delivery.
#[derive(Insertable, Debug)]
#[diesel(table_name = deliveries)]
pub(crate) struct NewDelivery {
    id: String,
    subscription_id: String,
    event_id: String,
    workspace_id: String,
    status: String,
    manual: bool,
    attempts: i32,
    next_attempt_at: Option<NaiveDateTime>,
    lease_owner: Option<String>,
    lease_until: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl NewDelivery {
    /// A delivery of `event` to `subscription`, due now; `manual` for one a
    /// client asked for (one attempt, whatever the subscription's state).
    pub(crate) fn due_now(
        subscription: &str,
        event: &str,
        workspace: &str,
        manual: bool,
    ) -> NewDelivery {
        let at = now();
        NewDelivery {
            id: service_kit::ids::new_id(service_kit::ids::prefix::DELIVERY),
            subscription_id: subscription.to_owned(),
            event_id: event.to_owned(),
            workspace_id: workspace.to_owned(),
            status: PENDING.to_owned(),
            manual,
            attempts: 0,
            next_attempt_at: Some(at),
            lease_owner: None,
            lease_until: None,
            created_at: at,
            updated_at: at,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Leases the new delivery to the claim token `lease` until `until`: it
    /// is created already claimed, as [`claim`] would leave it.
    pub(crate) fn lease(&mut self, lease: &str, until: NaiveDateTime) {
        self.lease_owner = Some(lease.to_owned());
        self.lease_until = Some(until);
    }

    /// What the workers need to attempt it under `lease`.
    pub(crate) fn claimed(&self, lease: &str) -> Claimed {
        Claimed {
            id: self.id.clone(),
            subscription_id: self.subscription_id.clone(),
            event_id: self.event_id.clone(),
            attempts: self.attempts,
            manual: self.manual,
            lease: lease.to_owned(),
        }
    }
}

/// A delivery this replica holds, with the lease that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    pub subscription_id: String,
    pub event_id: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub manual: bool,
    /// The claim's `lease_owner` token.
    pub lease: String,
}

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = deliveries)]
struct Due {
    id: String,
    subscription_id: String,
    event_id: String,
    attempts: i32,
    manual: bool,
}

/// A name for this replica: the host (the pod's name in a cluster) and a
/// fresh ULID, so that replicas in one process differ too. It names the
/// replica's stream consumers and leases.
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| {
            !h.trim().is_empty() && h.len() <= 100 && h.chars().all(|c| c.is_ascii_graphic())
        })
        .unwrap_or_else(|| "events-service".to_owned());
    format!("{host}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// Claims up to `limit` due deliveries for `owner` for `lease`; see the module
/// documentation. Public so that tests can claim as a replica that dies.
pub async fn claim(
    db: &Database,
    owner: &str,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Claimed>, StoreError> {
    let token = format!("{owner}/{}", ulid::Ulid::new());
    let limit = i64::try_from(limit.max(1)).unwrap_or(1);
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
    db.transaction(move |conn| {
        let at = now();
        macro_rules! due {
            () => {
                deliveries::table
                    .filter(deliveries::status.eq(PENDING))
                    .filter(deliveries::next_attempt_at.le(at))
                    .filter(
                        deliveries::lease_until
                            .is_null()
                            .or(deliveries::lease_until.le(at)),
                    )
                    .filter(
                        deliveries::manual
                            .eq(true)
                            .or(deliveries::subscription_id.eq_any(
                                subscriptions::table
                                    .filter(subscriptions::enabled.eq(true))
                                    .filter(subscriptions::state.eq(ACTIVE))
                                    .select(subscriptions::id),
                            )),
                    )
                    .order(deliveries::next_attempt_at.asc())
                    .limit(limit)
                    .select(Due::as_select())
            };
        }
        let due: Vec<Due> = match conn {
            DbConnection::Postgresql(pg) => {
                // A bitmap scan of `deliveries_due_idx` visits every entry the
                // index still holds for rows that left `pending` (until vacuum
                // removes them) before sorting; a plain index scan walks it in
                // `next_attempt_at` order and stops after `limit` live rows.
                // `SET LOCAL`: for this transaction only.
                diesel::sql_query("SET LOCAL enable_bitmapscan = off").execute(pg)?;
                due!().for_update().skip_locked().load(pg)?
            }
            // The transaction holds SQLite's write lock: no other claim runs.
            DbConnection::Sqlite(lite) => due!().load(lite)?,
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
        diesel::update(deliveries::table.filter(deliveries::id.eq_any(ids)))
            .set((
                deliveries::lease_owner.eq(&token),
                deliveries::lease_until.eq(at + lease),
            ))
            .execute(conn)?;
        Ok(due
            .into_iter()
            .map(|d| Claimed {
                id: d.id,
                subscription_id: d.subscription_id,
                event_id: d.event_id,
                attempts: d.attempts,
                manual: d.manual,
                lease: token.clone(),
            })
            .collect())
    })
    .await
}

/// An event as deliveries need it.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = events)]
pub(crate) struct StoredEvent {
    pub event_type: String,
    pub occurred_at: NaiveDateTime,
    pub workspace_id: Option<String>,
    pub data: String,
    pub request_id: Option<String>,
}

impl From<&::events::Event> for StoredEvent {
    fn from(event: &::events::Event) -> Self {
        StoredEvent {
            event_type: event.event_type.clone(),
            occurred_at: event.occurred_at.naive_utc(),
            workspace_id: event.workspace_id.clone(),
            data: event.data.to_string(),
            request_id: event.request_id.clone(),
        }
    }
}

/// SpaceOS's delivery body.
#[derive(Serialize)]
struct SpaceOsBody<'a> {
    event: &'a str,
    timestamp: String,
    webhook_id: &'a str,
    data: serde_json::Value,
}

/// gospace's delivery body.
#[derive(Serialize)]
struct GospaceBody<'a> {
    event: &'a str,
    workspace_id: Option<&'a str>,
    request_id: Option<&'a str>,
    payload: serde_json::Value,
}

/// The body `subscription` receives for `event`: the same bytes on every
/// attempt. Tuzzle's is the event's name beside its data's fields.
pub(crate) fn body_for(subscription: &Subscription, event: &StoredEvent) -> Vec<u8> {
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
    let body = match subscription.family() {
        Family::SpaceOs => serde_json::to_vec(&SpaceOsBody {
            event: &event.event_type,
            timestamp: rfc3339(event.occurred_at),
            webhook_id: &subscription.id,
            data,
        }),
        Family::Gospace => serde_json::to_vec(&GospaceBody {
            event: &event.event_type,
            workspace_id: event.workspace_id.as_deref(),
            request_id: event.request_id.as_deref(),
            payload: data,
        }),
        Family::Tuzzle => {
            let mut body = serde_json::Map::new();
            body.insert("event".into(), event.event_type.clone().into());
            if let serde_json::Value::Object(fields) = data {
                body.extend(fields);
            }
            serde_json::to_vec(&body)
        }
    };
    body.unwrap_or_default()
}

/// What happened on the wire.
#[derive(Debug, Default)]
struct Exchange {
    status: Option<u16>,
    body: Option<String>,
    truncated: bool,
    error: Option<String>,
    duration: Duration,
}

impl Exchange {
    fn refused(error: String) -> Exchange {
        Exchange {
            error: Some(error),
            ..Exchange::default()
        }
    }

    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What a replica's delivery needs.
pub struct Setup {
    pub db: Database,
    pub keys: secrets::Keys,
    pub guard: outbound::Guard,
    pub mailer: mail::Mailer,
    pub metrics: Arc<Metrics>,
    pub webhooks: WebhookConfig,
    /// This replica's name; leases are tokens beginning with it.
    pub owner: String,
}

/// This replica's delivery workers, mailer and housekeeping. Cloning is cheap.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    keys: secrets::Keys,
    guard: outbound::Guard,
    client: reqwest::Client,
    mailer: mail::Mailer,
    metrics: Arc<Metrics>,
    schedule: Vec<Duration>,
    timeout: Duration,
    lease: Duration,
    workers: usize,
    poll: Duration,
    retention: Duration,
    owner: String,
    /// New or newly due deliveries.
    wake: Notify,
    /// A subscription started failing.
    failures: Notify,
    /// Opened subscription secrets: id → (sealed secret, secret).
    secrets: Mutex<HashMap<String, (String, String)>>,
    /// Deliveries the intake created leased to this replica, oldest first.
    handed: Mutex<VecDeque<Ready>>,
    /// Attempts made, to the recorder.
    finished: mpsc::Sender<Finished>,
    /// Deliveries may be due in the table (not handed over): claim.
    claim_due: AtomicBool,
    /// One permit per worker.
    permits: Arc<Semaphore>,
    /// The recorder is writing a batch.
    recording: AtomicBool,
    /// The replica is stopping: no new work is taken.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A claimed batch's subscriptions and events, by id.
type BatchContext = (
    HashMap<String, Arc<Subscription>>,
    HashMap<String, Arc<StoredEvent>>,
);

/// A delivery this replica holds, with what sending it needs.
pub(crate) struct Ready {
    pub claimed: Claimed,
    pub subscription: Arc<Subscription>,
    pub event: Arc<StoredEvent>,
    /// When its lease was taken.
    pub leased_at: Instant,
}

/// An attempt made, waiting to be recorded.
struct Finished {
    claimed: Claimed,
    subscription: Arc<Subscription>,
    started: NaiveDateTime,
    exchange: Exchange,
}

/// What an attempt leads to, as written.
#[derive(Clone)]
struct Verdict {
    delivery: String,
    lease: String,
    subscription: String,
    number: i32,
    outcome: AttemptOutcome,
    status: &'static str,
    next: Option<NaiveDateTime>,
    /// The delivery used its last attempt: its subscription turns `failing`.
    exhausted: bool,
    started: NaiveDateTime,
    duration_ms: i64,
    response_status: Option<i32>,
    response_body: Option<String>,
    truncated: bool,
    error: Option<String>,
    at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = attempts)]
struct NewAttempt<'a> {
    delivery_id: &'a str,
    number: i32,
    started_at: NaiveDateTime,
    duration_ms: i64,
    response_status: Option<i32>,
    response_body: Option<&'a str>,
    response_truncated: bool,
    error: Option<&'a str>,
    outcome: &'a str,
    next_attempt_at: Option<NaiveDateTime>,
}

impl<'a> From<&'a Verdict> for NewAttempt<'a> {
    fn from(v: &'a Verdict) -> Self {
        NewAttempt {
            delivery_id: &v.delivery,
            number: v.number,
            started_at: v.started,
            duration_ms: v.duration_ms,
            response_status: v.response_status,
            response_body: v.response_body.as_deref(),
            response_truncated: v.truncated,
            error: v.error.as_deref(),
            outcome: v.outcome.as_str(),
            next_attempt_at: v.next,
        }
    }
}

#[derive(QueryableByName)]
struct UpdatedId {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

impl Dispatcher {
    /// Starts the workers, the recorder, the mailer and the housekeeping on
    /// the current runtime.
    pub fn start(setup: Setup) -> anyhow::Result<Dispatcher> {
        let webhooks = setup.webhooks;
        let timeout = Duration::from_secs(webhooks.timeout_secs);
        let client = setup.guard.client(&outbound::ClientOptions {
            timeout,
            connect_timeout: Duration::from_secs(10),
            user_agent: "Spaceport-Webhooks/1.0".into(),
            max_idle_per_host: webhooks.workers.min(64),
        })?;
        // Attempts waiting to be recorded: as many as there are workers, at
        // most; beyond, workers wait. So a replica that dies leaves at most
        // three times its workers sent but unrecorded (in flight, queued,
        // being written), each sent again when its lease ends.
        let (finished, recorder) = mpsc::channel(webhooks.workers.max(1));
        let dispatcher = Dispatcher {
            inner: Arc::new(Inner {
                db: setup.db,
                keys: setup.keys,
                guard: setup.guard,
                client,
                mailer: setup.mailer,
                metrics: setup.metrics,
                schedule: webhooks.retry_schedule(),
                timeout,
                lease: Duration::from_secs(webhooks.lease_secs),
                workers: webhooks.workers,
                poll: Duration::from_millis(webhooks.poll_interval_ms),
                retention: Duration::from_secs(webhooks.retention_days * 24 * 3600),
                owner: setup.owner,
                wake: Notify::new(),
                failures: Notify::new(),
                secrets: Mutex::new(HashMap::new()),
                handed: Mutex::new(VecDeque::new()),
                finished,
                claim_due: AtomicBool::new(true),
                permits: Arc::new(Semaphore::new(webhooks.workers)),
                recording: AtomicBool::new(false),
                stopping: tokio::sync::watch::Sender::new(false),
            }),
        };
        tokio::spawn(dispatcher.clone().deliver());
        tokio::spawn(dispatcher.clone().record(recorder));
        tokio::spawn(dispatcher.clone().mail());
        tokio::spawn(dispatcher.clone().housekeeping());
        Ok(dispatcher)
    }

    /// Wakes the workers: deliveries are due.
    pub fn wake(&self) {
        self.inner.claim_due.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }

    /// This replica's claim token for deliveries the intake creates already
    /// leased to it, and the lease's end.
    pub(crate) fn new_lease(&self) -> (String, NaiveDateTime) {
        let lease = chrono::Duration::from_std(self.inner.lease).unwrap_or_default();
        (
            format!("{}/{}", self.inner.owner, ulid::Ulid::new()),
            now() + lease,
        )
    }

    /// How many more deliveries the workers take by hand now: twice the
    /// workers, less those already waiting.
    pub(crate) fn room(&self) -> usize {
        if self.is_stopping() {
            return 0;
        }
        let waiting = self.handed().len();
        (self.inner.workers * 2).saturating_sub(waiting)
    }

    /// Gives the workers deliveries leased to this replica as they were
    /// created, so that they are attempted without a claim.
    pub(crate) fn hand(&self, ready: Vec<Ready>) {
        if ready.is_empty() {
            return;
        }
        self.handed().extend(ready);
        // In memory: no claim needed for them.
        self.inner.wake.notify_one();
    }

    /// Waits (at most `limit`) until no more deliveries wait for a worker
    /// than there are workers, so that the intake reads on only as fast as
    /// the workers deliver: a backlog stays in the stream, where it is cheap,
    /// rather than in the delivery table, where every claim must step over
    /// it. `false` when the wait ran out.
    pub(crate) async fn wait_for_room(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.handed().len() <= self.inner.workers || self.is_stopping() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(ROOM_POLL).await;
        }
    }

    fn is_stopping(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    /// Resolves once the replica is stopping ([`Dispatcher::drain`]): the
    /// intake stops reading the stream then.
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.inner.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    }

    /// Stops taking work and finishes what this replica holds, within
    /// `limit`: the intake stops reading (its last batch's deliveries are left
    /// unleased, for any replica), the workers finish their attempts, the
    /// recorder writes them, and deliveries handed over but not attempted
    /// are given back (their leases cleared), so that another replica claims
    /// them at once rather than when the leases end. What is still unwritten
    /// at `limit` is left to the leases.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        self.inner.stopping.send_replace(true);
        self.inner.wake.notify_one();
        let workers = u32::try_from(self.inner.workers).unwrap_or(u32::MAX);
        let idle =
            tokio::time::timeout_at(deadline, self.inner.permits.acquire_many(workers)).await;
        let flushed = tokio::time::timeout_at(deadline, async {
            while self.inner.finished.capacity() < self.inner.finished.max_capacity()
                || self.inner.recording.load(Ordering::Acquire)
            {
                tokio::time::sleep(ROOM_POLL).await;
            }
        })
        .await;
        let handed: Vec<Ready> = self.handed().drain(..).collect();
        let given_back = handed.len();
        if !handed.is_empty() {
            let held: Vec<(String, String)> = handed
                .into_iter()
                .map(|r| (r.claimed.id, r.claimed.lease))
                .collect();
            let released = self
                .inner
                .db
                .run(move |conn| {
                    let mut released = 0;
                    for (id, lease) in &held {
                        released += diesel::update(
                            deliveries::table
                                .filter(deliveries::id.eq(id))
                                .filter(deliveries::lease_owner.eq(lease)),
                        )
                        .set((
                            deliveries::lease_owner.eq(None::<String>),
                            deliveries::lease_until.eq(None::<NaiveDateTime>),
                        ))
                        .execute(conn)?;
                    }
                    Ok::<_, StoreError>(released)
                })
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, "could not give back the deliveries handed over; they are claimed when their leases end");
            }
        }
        tracing::info!(
            workers_idle = idle.is_ok(),
            attempts_recorded = flushed.is_ok(),
            given_back,
            "delivery stopped"
        );
    }

    fn handed(&self) -> std::sync::MutexGuard<'_, VecDeque<Ready>> {
        self.inner.handed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `n` handed deliveries whose lease leaves time for a whole
    /// attempt; those that waited longer are left to their lease's end, when
    /// any replica claims them again (so no two replicas send one attempt).
    fn take_handed(&self, n: usize) -> Vec<Ready> {
        let usable = self
            .inner
            .lease
            .saturating_sub(self.inner.timeout + LEASE_MARGIN);
        let mut handed = self.handed();
        let mut ready = Vec::with_capacity(n.min(handed.len()));
        while ready.len() < n {
            let Some(next) = handed.pop_front() else {
                break;
            };
            if next.leased_at.elapsed() <= usable {
                ready.push(next);
            } else {
                tracing::debug!(delivery = %next.claimed.id,
                    "a handed delivery waited past its lease's margin; it is claimed again when the lease ends");
            }
        }
        ready
    }

    /// The workers' loop: take as many deliveries as there are free workers
    /// (those the intake handed over first, else claimed ones) and attempt
    /// each on a task of its own; when none is due, wait for a wake-up or the
    /// poll interval.
    async fn deliver(self) {
        let workers = self.inner.permits.clone();
        let mut last_claim = Instant::now();
        loop {
            let Ok(first) = workers.clone().acquire_owned().await else {
                return;
            };
            if self.is_stopping() {
                return;
            }
            let mut permits = vec![first];
            while permits.len() < CLAIM_BATCH {
                match workers.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            let inner = &self.inner;
            let mut ready = self.take_handed(permits.len());
            // Fewer than asked for: nothing else is due now. Wait for a
            // wake-up (new deliveries) or the poll interval rather than claim
            // again as each worker frees up.
            let mut drained = false;
            if ready.is_empty() {
                // The table is asked only when something may be due there:
                // after a wake-up for it, a full claim, or the poll interval
                // (retries come due by the clock). Deliveries handed over
                // need no claim.
                let due = inner.claim_due.swap(false, Ordering::AcqRel)
                    || last_claim.elapsed() >= inner.poll;
                if !due {
                    drop(permits);
                    tokio::select! {
                        () = inner.wake.notified() => {}
                        () = tokio::time::sleep(inner.poll.saturating_sub(last_claim.elapsed())) => {}
                    }
                    continue;
                }
                last_claim = Instant::now();
                match claim(&inner.db, &inner.owner, permits.len(), inner.lease).await {
                    Ok(claimed) => {
                        drained = claimed.len() < permits.len();
                        if !drained {
                            inner.claim_due.store(true, Ordering::Release);
                        }
                        ready = self.prepare(claimed).await;
                    }
                    Err(error) => {
                        drop(permits);
                        tracing::warn!(%error, "could not claim deliveries; trying again");
                        tokio::time::sleep(inner.poll.max(Duration::from_secs(1))).await;
                        continue;
                    }
                }
            }
            for (delivery, permit) in ready.into_iter().zip(permits) {
                let this = self.clone();
                tokio::spawn(async move {
                    this.attempt(delivery).await;
                    drop(permit);
                });
            }
            if drained {
                tokio::select! {
                    () = inner.wake.notified() => {}
                    () = tokio::time::sleep(inner.poll) => {}
                }
            }
        }
    }

    /// Claimed deliveries with their subscriptions and events. A delivery
    /// whose subscription or event is missing was deleted meanwhile, with its
    /// deliveries; one that cannot be loaded is tried again when its lease
    /// ends.
    async fn prepare(&self, claimed: Vec<Claimed>) -> Vec<Ready> {
        if claimed.is_empty() {
            return Vec::new();
        }
        let leased_at = Instant::now();
        let (subscriptions, events) = match self.load_batch(&claimed).await {
            Ok(context) => context,
            Err(error) => {
                for delivery in &claimed {
                    tracing::warn!(delivery = %delivery.id, %error,
                        "could not load a delivery; it is tried again when its lease ends");
                }
                return Vec::new();
            }
        };
        claimed
            .into_iter()
            .filter_map(|claimed| {
                let subscription = subscriptions.get(&claimed.subscription_id)?.clone();
                let event = events.get(&claimed.event_id)?.clone();
                Some(Ready {
                    claimed,
                    subscription,
                    event,
                    leased_at,
                })
            })
            .collect()
    }

    /// The subscriptions and events of a claimed batch, by id: one query
    /// each.
    async fn load_batch(&self, claimed: &[Claimed]) -> Result<BatchContext, StoreError> {
        let mut subscription_ids: Vec<String> =
            claimed.iter().map(|c| c.subscription_id.clone()).collect();
        subscription_ids.sort_unstable();
        subscription_ids.dedup();
        let mut event_ids: Vec<String> = claimed.iter().map(|c| c.event_id.clone()).collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        self.inner
            .db
            .run(move |conn| {
                let subscriptions: Vec<Subscription> = subscriptions::table
                    .filter(subscriptions::id.eq_any(&subscription_ids))
                    .select(Subscription::as_select())
                    .load(conn)?;
                let events: Vec<(String, StoredEvent)> = events::table
                    .filter(events::id.eq_any(&event_ids))
                    .select((events::id, StoredEvent::as_select()))
                    .load(conn)?;
                Ok::<_, StoreError>((
                    subscriptions
                        .into_iter()
                        .map(|s| (s.id.clone(), Arc::new(s)))
                        .collect(),
                    events
                        .into_iter()
                        .map(|(id, e)| (id, Arc::new(e)))
                        .collect(),
                ))
            })
            .await
    }

    /// One attempt of a delivery this replica holds, handed to the recorder.
    /// The worker is free once the recorder took it (its queue is bounded, so
    /// workers wait when recording falls behind).
    async fn attempt(&self, ready: Ready) {
        let started = now();
        let exchange = self
            .send(&ready.claimed, &ready.subscription, &ready.event)
            .await;
        let finished = Finished {
            claimed: ready.claimed,
            subscription: ready.subscription,
            started,
            exchange,
        };
        if self.inner.finished.send(finished).await.is_err() {
            tracing::error!(
                "the attempt recorder stopped; the attempt is made again when its lease ends"
            );
        }
    }

    /// A subscription's opened secret, from the cache while its sealed secret
    /// is unchanged (a changed secret is sealed afresh, so never used stale).
    fn open_secret(&self, subscription: &Subscription) -> Option<String> {
        {
            let cache = self.inner.secrets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((sealed, secret)) = cache.get(&subscription.id)
                && *sealed == subscription.secret_sealed
            {
                return Some(secret.clone());
            }
        }
        let secret = self
            .inner
            .keys
            .open(&subscription.secret_sealed, &subscription.id)?;
        let mut cache = self.inner.secrets.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= SECRET_CACHE && !cache.contains_key(&subscription.id) {
            cache.clear();
        }
        cache.insert(
            subscription.id.clone(),
            (subscription.secret_sealed.clone(), secret.clone()),
        );
        Some(secret)
    }

    async fn send(
        &self,
        claimed: &Claimed,
        subscription: &Subscription,
        event: &StoredEvent,
    ) -> Exchange {
        let url = match self.inner.guard.check_url(&subscription.url) {
            Ok(url) => url,
            Err(refusal) => return Exchange::refused(format!("not sent: the URL {refusal}")),
        };
        let body = body_for(subscription, event);
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .inner
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(signatures::ID_HEADER, &claimed.id)
            .header(signatures::TIMESTAMP_HEADER, timestamp.to_string());
        let product_header = match subscription.family() {
            Family::SpaceOs => Some(signatures::SPACEOS_HEADER),
            Family::Gospace => Some(signatures::GOSPACE_HEADER),
            Family::Tuzzle => None,
        };
        if let Some(product_header) = product_header {
            let Some(secret) = self.open_secret(subscription) else {
                tracing::error!(webhook = %subscription.id,
                    "a subscription's secret cannot be opened: was secret.key changed?");
                return Exchange::refused("the subscription's secret cannot be read".into());
            };
            request = request
                .header(
                    product_header,
                    signatures::product_signature(&secret, &body),
                )
                .header(
                    signatures::SIGNATURE_HEADER,
                    signatures::standard_signature(&secret, &claimed.id, timestamp, &body),
                );
        }
        let request = request.body(body);
        let started = Instant::now();
        let mut exchange = match request.send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let (body, truncated, error) = read_bounded(&mut response).await;
                Exchange {
                    status: Some(status),
                    body: Some(stored_text(&body)),
                    truncated,
                    error: error.map(|e| format!("reading the answer: {e}")),
                    ..Exchange::default()
                }
            }
            Err(error) => Exchange::refused(describe(&error, self.inner.timeout)),
        };
        exchange.duration = started.elapsed();
        exchange
    }

    /// The recorder: writes attempts in batches, whatever finished while the
    /// last batch was written (up to [`RECORD_BATCH`]), one transaction each.
    async fn record(self, mut queue: mpsc::Receiver<Finished>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while queue.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            let finished: Vec<Finished> = std::mem::take(&mut batch);
            self.inner.recording.store(true, Ordering::Release);
            self.write(finished).await;
            self.inner.recording.store(false, Ordering::Release);
        }
    }

    /// What `finished` leads to, as of `at`.
    fn verdict(&self, finished: &Finished, at: NaiveDateTime) -> Verdict {
        let claimed = &finished.claimed;
        let exchange = &finished.exchange;
        let (outcome, next) = if exchange.succeeded() {
            (AttemptOutcome::Succeeded, None)
        } else if claimed.manual {
            (AttemptOutcome::Failed, None)
        } else {
            match usize::try_from(claimed.attempts)
                .ok()
                .and_then(|done| self.inner.schedule.get(done))
            {
                Some(delay) => (AttemptOutcome::Retrying, Some(at + jittered(*delay))),
                None => (AttemptOutcome::Failed, None),
            }
        };
        let error = exchange.error.clone().or_else(|| {
            exchange
                .status
                .filter(|_| !exchange.succeeded())
                .map(|s| format!("the receiver answered {s}"))
        });
        Verdict {
            delivery: claimed.id.clone(),
            lease: claimed.lease.clone(),
            subscription: claimed.subscription_id.clone(),
            number: claimed.attempts + 1,
            outcome,
            status: match outcome {
                AttemptOutcome::Succeeded => SUCCEEDED,
                AttemptOutcome::Retrying => PENDING,
                AttemptOutcome::Failed => FAILED,
            },
            next,
            exhausted: outcome == AttemptOutcome::Failed
                && !claimed.manual
                && finished.subscription.family() != Family::Tuzzle,
            started: finished.started,
            duration_ms: i64::try_from(exchange.duration.as_millis()).unwrap_or(i64::MAX),
            response_status: exchange.status.map(i32::from),
            response_body: exchange.body.clone(),
            truncated: exchange.truncated,
            error,
            at,
        }
    }

    /// Writes a batch of attempts and what follows from them, each under its
    /// claim's lease (an attempt whose lease ended is not written over).
    async fn write(&self, finished: Vec<Finished>) {
        let at = now();
        let verdicts: Arc<Vec<Verdict>> =
            Arc::new(finished.iter().map(|f| self.verdict(f, at)).collect());
        let mut tries = 0;
        let written = loop {
            tries += 1;
            let batch = verdicts.clone();
            let result = self
                .inner
                .db
                .transaction(move |conn| write_attempts(conn, &batch))
                .await;
            match result {
                Ok(written) => break written,
                Err(error) if tries < RECORD_TRIES => {
                    tracing::warn!(attempts = verdicts.len(), %error,
                        "could not record attempts; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => {
                    tracing::error!(attempts = verdicts.len(), %error,
                        "could not record attempts; they are made again when their leases end");
                    return;
                }
            }
        };
        for ((verdict, finished), written) in verdicts.iter().zip(&finished).zip(written) {
            let exchange = &finished.exchange;
            self.inner
                .metrics
                .attempt(verdict.outcome.as_str(), exchange.duration.as_secs_f64());
            let Some(turned_failing) = written else {
                tracing::warn!(delivery = %verdict.delivery,
                    "a delivery's lease ended (or the delivery was deleted) before its attempt was recorded");
                continue;
            };
            tracing::debug!(delivery = %verdict.delivery, number = verdict.number,
                outcome = verdict.outcome.as_str(), status = ?exchange.status, "attempt recorded");
            if turned_failing {
                let subscription = &finished.subscription;
                tracing::warn!(webhook = %subscription.id, url = %subscription.url,
                    "a delivery exhausted its retries: the subscription is failing");
                if subscription.notify_email.is_some() {
                    self.inner.failures.notify_one();
                } else {
                    tracing::warn!(webhook = %subscription.id,
                        "the failing subscription has no notify_email: nobody is mailed");
                }
            }
        }
    }

    /// Mails the admins of subscriptions that started failing, once each.
    async fn mail(self) {
        loop {
            if let Err(error) = self.mail_failing().await {
                tracing::warn!(%error, "could not look for failing subscriptions to mail about");
            }
            tokio::select! {
                () = self.inner.failures.notified() => {}
                () = tokio::time::sleep(MAIL_INTERVAL) => {}
            }
        }
    }

    async fn mail_failing(&self) -> Result<(), StoreError> {
        let at = now();
        let due: Vec<Subscription> = self
            .inner
            .db
            .run(move |conn| {
                subscriptions::table
                    .filter(subscriptions::state.eq(FAILING))
                    .filter(subscriptions::notified_at.is_null())
                    .filter(subscriptions::notify_email.is_not_null())
                    .filter(
                        subscriptions::notify_lease_until
                            .is_null()
                            .or(subscriptions::notify_lease_until.le(at)),
                    )
                    .select(Subscription::as_select())
                    .limit(20)
                    .load(conn)
                    .map_err(StoreError::from)
            })
            .await?;
        for subscription in due {
            let id = subscription.id.clone();
            let until = at + chrono::Duration::from_std(self.inner.lease).unwrap_or_default();
            let (claimed, last) = self
                .inner
                .db
                .run(move |conn| {
                    let claimed = diesel::update(
                        subscriptions::table
                            .filter(subscriptions::id.eq(&id))
                            .filter(subscriptions::state.eq(FAILING))
                            .filter(subscriptions::notified_at.is_null())
                            .filter(
                                subscriptions::notify_lease_until
                                    .is_null()
                                    .or(subscriptions::notify_lease_until.le(at)),
                            ),
                    )
                    .set(subscriptions::notify_lease_until.eq(Some(until)))
                    .execute(conn)?
                        == 1;
                    let last: Option<Option<String>> = deliveries::table
                        .filter(deliveries::subscription_id.eq(&id))
                        .filter(deliveries::status.eq(FAILED))
                        .order(deliveries::updated_at.desc())
                        .select(deliveries::last_error)
                        .first(conn)
                        .optional()?;
                    Ok::<_, StoreError>((claimed, last.flatten()))
                })
                .await?;
            if !claimed {
                continue;
            }
            let Some(to) = subscription.notify_email.clone() else {
                continue;
            };
            match self
                .inner
                .mailer
                .send(failing_mail(&subscription, &to, last.as_deref()))
                .await
            {
                Ok(()) => {
                    let id = subscription.id.clone();
                    self.inner
                        .db
                        .run(move |conn| {
                            diesel::update(subscriptions::table.find(&id))
                                .set((
                                    subscriptions::notified_at.eq(Some(now())),
                                    subscriptions::notify_lease_until.eq(None::<NaiveDateTime>),
                                ))
                                .execute(conn)
                                .map_err(StoreError::from)
                        })
                        .await?;
                    tracing::info!(webhook = %subscription.id, "mailed that the subscription is failing");
                }
                Err(error) => tracing::warn!(webhook = %subscription.id, %error,
                    "could not mail that the subscription is failing; trying again later"),
            }
        }
        Ok(())
    }

    /// Keeps the failing gauge current and prunes rows past retention.
    async fn housekeeping(self) {
        let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        let mut pruned: Option<Instant> = None;
        loop {
            tick.tick().await;
            let counted = self
                .inner
                .db
                .run(|conn| {
                    subscriptions::table
                        .filter(subscriptions::state.eq(FAILING))
                        .count()
                        .get_result::<i64>(conn)
                        .map_err(StoreError::from)
                })
                .await;
            if let Ok(failing) = counted {
                self.inner.metrics.failing(failing);
            }
            if pruned.is_none_or(|at| at.elapsed() >= PRUNE_INTERVAL) {
                pruned = Some(Instant::now());
                let before =
                    now() - chrono::Duration::from_std(self.inner.retention).unwrap_or_default();
                match prune(&self.inner.db, before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "pruned events past retention"),
                    Err(error) => tracing::warn!(%error, "could not prune old events"),
                }
            }
        }
    }
}

/// Deletes events received before `before`, with their deliveries and
/// Moves each delivery of `batch` still held under its lease on, on
/// PostgreSQL in one statement for the whole batch; returns the ids moved.
fn update_held(
    conn: &mut DbConnection,
    batch: &[Verdict],
) -> Result<std::collections::HashSet<String>, StoreError> {
    match conn {
        DbConnection::Postgresql(pg) => {
            use diesel::sql_types::{Array, Integer, Nullable, Text, Timestamp};
            // By key, whatever the planner believes of the table's size (one
            // that grew fast since it was analyzed looks small, and joining
            // `unnest` to it by hash means scanning all of it). `SET LOCAL`:
            // for this transaction only.
            diesel::sql_query("SET LOCAL enable_seqscan = off").execute(pg)?;
            diesel::sql_query("SET LOCAL enable_hashjoin = off").execute(pg)?;
            let rows: Vec<UpdatedId> = diesel::sql_query(
                "UPDATE deliveries AS d SET status = u.status, attempts = u.number, \
                 next_attempt_at = u.next_attempt_at, lease_owner = NULL, lease_until = NULL, \
                 last_attempt_at = u.started_at, last_status = u.last_status, \
                 last_error = u.last_error, updated_at = $9 \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::timestamp[], \
                 $6::timestamp[], $7::int4[], $8::text[]) \
                 AS u(id, lease, status, number, next_attempt_at, started_at, last_status, last_error) \
                 WHERE d.id = u.id AND d.lease_owner = u.lease \
                 RETURNING d.id",
            )
            .bind::<Array<Text>, _>(batch.iter().map(|v| v.delivery.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(batch.iter().map(|v| v.lease.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(batch.iter().map(|v| v.status).collect::<Vec<_>>())
            .bind::<Array<Integer>, _>(batch.iter().map(|v| v.number).collect::<Vec<_>>())
            .bind::<Array<Nullable<Timestamp>>, _>(batch.iter().map(|v| v.next).collect::<Vec<_>>())
            .bind::<Array<Timestamp>, _>(batch.iter().map(|v| v.started).collect::<Vec<_>>())
            .bind::<Array<Nullable<Integer>>, _>(
                batch.iter().map(|v| v.response_status).collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                batch.iter().map(|v| v.error.as_deref()).collect::<Vec<_>>(),
            )
            .bind::<Timestamp, _>(batch.first().map_or_else(now, |v| v.at))
            .load(pg)?;
            Ok(rows.into_iter().map(|r| r.id).collect())
        }
        DbConnection::Sqlite(_) => {
            let mut held = std::collections::HashSet::new();
            for v in batch {
                let updated = diesel::update(
                    deliveries::table
                        .filter(deliveries::id.eq(&v.delivery))
                        .filter(deliveries::lease_owner.eq(&v.lease)),
                )
                .set((
                    deliveries::status.eq(v.status),
                    deliveries::attempts.eq(v.number),
                    deliveries::next_attempt_at.eq(v.next),
                    deliveries::lease_owner.eq(None::<String>),
                    deliveries::lease_until.eq(None::<NaiveDateTime>),
                    deliveries::last_attempt_at.eq(Some(v.started)),
                    deliveries::last_status.eq(v.response_status),
                    deliveries::last_error.eq(&v.error),
                    deliveries::updated_at.eq(v.at),
                ))
                .execute(conn)?;
                if updated == 1 {
                    held.insert(v.delivery.clone());
                }
            }
            Ok(held)
        }
    }
}

/// Records a batch of attempts in the caller's transaction: each delivery
/// still held under its lease moves on and gets its attempt row; a delivery
/// that used its last attempt turns its subscription `failing` (once: a
/// conditional update). For each attempt, in order: `None` when its lease was
/// lost (nothing written), else whether it turned its subscription failing.
fn write_attempts(
    conn: &mut DbConnection,
    batch: &[Verdict],
) -> Result<Vec<Option<bool>>, StoreError> {
    let held = update_held(conn, batch)?;
    let rows: Vec<NewAttempt<'_>> = batch
        .iter()
        .filter(|v| held.contains(&v.delivery))
        .map(NewAttempt::from)
        .collect();
    for chunk in rows.chunks(ATTEMPT_INSERT_CHUNK) {
        let insert = diesel::insert_into(attempts::table).values(chunk);
        match conn {
            DbConnection::Postgresql(pg) => insert.execute(pg)?,
            DbConnection::Sqlite(lite) => insert.execute(lite)?,
        };
    }
    let mut written = Vec::with_capacity(batch.len());
    for v in batch {
        if !held.contains(&v.delivery) {
            written.push(None);
            continue;
        }
        let turned_failing = v.exhausted
            && diesel::update(
                subscriptions::table
                    .filter(subscriptions::id.eq(&v.subscription))
                    .filter(subscriptions::state.eq(ACTIVE)),
            )
            .set((
                subscriptions::state.eq(FAILING),
                subscriptions::failing_since.eq(Some(v.at)),
                subscriptions::notified_at.eq(None::<NaiveDateTime>),
                subscriptions::notify_lease_until.eq(None::<NaiveDateTime>),
                subscriptions::updated_at.eq(v.at),
            ))
            .execute(conn)?
                == 1;
        written.push(Some(turned_failing));
    }
    Ok(written)
}

/// attempts; returns how many events went.
pub async fn prune(db: &Database, before: NaiveDateTime) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let deleted = db
            .run(move |conn| {
                let old: Vec<String> = events::table
                    .filter(events::received_at.lt(before))
                    .select(events::id)
                    .limit(PRUNE_BATCH)
                    .load(conn)?;
                diesel::delete(events::table.filter(events::id.eq_any(&old)))
                    .execute(conn)
                    .map_err(StoreError::from)
            })
            .await?;
        total += deleted;
        if (deleted as i64) < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

/// `delay` ±10%.
fn jittered(delay: Duration) -> chrono::Duration {
    let mut bytes = [0u8; 4];
    let unit = match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    let scaled = delay.mul_f64(0.9 + 0.2 * unit);
    chrono::Duration::from_std(scaled).unwrap_or(chrono::Duration::seconds(60))
}

/// Reads at most [`MAX_RESPONSE_BODY`] bytes of the answer: the bytes, whether
/// more were left unread, and a read error.
async fn read_bounded(response: &mut reqwest::Response) -> (Vec<u8>, bool, Option<String>) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return (body, true, None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return (body, false, None),
            Err(error) => return (body, false, Some(error.to_string())),
        }
    }
}

/// A receiver's answer as text a database keeps: invalid UTF-8 and NUL
/// (which PostgreSQL's text refuses) become U+FFFD.
fn stored_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

/// A failed request, said plainly: the cause chain without the noise.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs());
    }
    let mut text = if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// The mail telling a subscription's admin that it is failing.
fn failing_mail(subscription: &Subscription, to: &str, last_error: Option<&str>) -> mail::Message {
    let (revive, log) = match subscription.family() {
        Family::SpaceOs => (
            format!(
                "PATCH /api/v1/webhooks/{} with {{\"enabled\": true}}",
                subscription.id
            ),
            format!("GET /api/v1/webhooks/{}/deliveries", subscription.id),
        ),
        Family::Gospace | Family::Tuzzle => (
            format!(
                "PATCH /v1/webhooks/webhooks/{} with {{\"enabled\": true}}",
                subscription.id
            ),
            format!("GET /api/v1/webhooks/{}/deliveries", subscription.id),
        ),
    };
    let mut text = format!(
        "Deliveries to a webhook of your workspace keep failing, and Spaceport has \
         stopped sending events to it.\n\n\
         Webhook: {id}\nURL: {url}\nWorkspace: {workspace}\n",
        id = subscription.id,
        url = subscription.url,
        workspace = subscription.workspace_id,
    );
    if let Some(organization) = &subscription.organization_id {
        text.push_str(&format!("Organization: {organization}\n"));
    }
    if let Some(error) = last_error {
        text.push_str(&format!("Last error: {error}\n"));
    }
    text.push_str(&format!(
        "\nEvents that happen while it is failing are not delivered to it. Once the \
         receiver works again, revive it: {revive}. Its deliveries log ({log}) shows \
         every attempt, and a failed delivery can be sent again with \
         POST /api/v1/webhooks/{id}/deliveries/{{delivery_id}}/retry.\n\n\
         You receive this mail because this address is the webhook's notify_email.\n",
        id = subscription.id
    ));
    mail::Message {
        to: to.to_owned(),
        subject: format!("Webhook {} is failing", subscription.id),
        text,
        html: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..200 {
            let ms = jittered(Duration::from_secs(60)).num_milliseconds();
            assert!((54_000..=66_000).contains(&ms), "{ms}");
        }
    }

    #[test]
    fn stored_text_is_text() {
        assert_eq!(stored_text(b"ok\0\xff"), "ok\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn replica_names_differ() {
        assert_ne!(replica_name(), replica_name());
    }
}
