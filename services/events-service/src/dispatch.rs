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
//! - **Sending**: the URL is checked again (the policy may have changed), the
//!   body is signed (see [`crate::signatures`]) and POSTed through the
//!   `outbound` client: no redirects, the connect-time address check, TLS
//!   verified, `webhooks.timeout_secs` for the whole exchange. At most 64 KiB
//!   of the answer is read and kept.
//! - **Recording**: only under the claim's own lease (a lease lost to a stall
//!   is not written over). A 2xx succeeds; otherwise the next delay of
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
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Database, DbConnection, StoreError};
use tokio::sync::{Notify, Semaphore};

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
/// Tries to record an attempt before leaving it to the lease.
const RECORD_TRIES: u32 = 3;

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
            created_at: at,
            updated_at: at,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
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
/// attempt.
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
}

/// A claimed batch's subscriptions and events, by id.
type BatchContext = (
    HashMap<String, Arc<Subscription>>,
    HashMap<String, Arc<StoredEvent>>,
);

impl Dispatcher {
    /// Starts the workers, the mailer and the housekeeping on the current
    /// runtime.
    pub fn start(setup: Setup) -> anyhow::Result<Dispatcher> {
        let webhooks = setup.webhooks;
        let timeout = Duration::from_secs(webhooks.timeout_secs);
        let client = setup.guard.client(&outbound::ClientOptions {
            timeout,
            connect_timeout: Duration::from_secs(10),
            user_agent: "Spaceport-Webhooks/1.0".into(),
            max_idle_per_host: webhooks.workers.min(64),
        })?;
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
            }),
        };
        tokio::spawn(dispatcher.clone().deliver());
        tokio::spawn(dispatcher.clone().mail());
        tokio::spawn(dispatcher.clone().housekeeping());
        Ok(dispatcher)
    }

    /// Wakes the workers: deliveries are due.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The workers' loop: claim as many due deliveries as there are free
    /// workers, attempt each on a task of its own, and when none is due wait
    /// for a wake-up or the poll interval.
    async fn deliver(self) {
        let workers = Arc::new(Semaphore::new(self.inner.workers));
        loop {
            let Ok(first) = workers.clone().acquire_owned().await else {
                return;
            };
            let mut permits = vec![first];
            while permits.len() < CLAIM_BATCH {
                match workers.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            let inner = &self.inner;
            match claim(&inner.db, &inner.owner, permits.len(), inner.lease).await {
                Ok(claimed) if !claimed.is_empty() => {
                    // Fewer than asked for: nothing else is due now. Wait for
                    // a wake-up (new deliveries) or the poll interval rather
                    // than claim again as each worker frees up.
                    let drained = claimed.len() < permits.len();
                    let mut permits = permits.into_iter();
                    let mut context = match self.load_batch(&claimed).await {
                        Ok(context) => Some(context),
                        Err(error) => {
                            for delivery in &claimed {
                                tracing::warn!(delivery = %delivery.id, %error,
                                    "could not load a delivery; it is tried again when its lease ends");
                            }
                            None
                        }
                    };
                    for (delivery, permit) in claimed.into_iter().zip(permits.by_ref()) {
                        let Some((subscriptions, events)) = context.as_mut() else {
                            break;
                        };
                        let found = subscriptions
                            .get(&delivery.subscription_id)
                            .cloned()
                            .zip(events.get(&delivery.event_id).cloned());
                        // Deleted meanwhile, with its deliveries.
                        let Some((subscription, event)) = found else {
                            continue;
                        };
                        let this = self.clone();
                        tokio::spawn(async move {
                            this.attempt(delivery, &subscription, &event).await;
                            drop(permit);
                        });
                    }
                    drop(permits);
                    if drained {
                        tokio::select! {
                            () = inner.wake.notified() => {}
                            () = tokio::time::sleep(inner.poll) => {}
                        }
                    }
                }
                Ok(_) => {
                    drop(permits);
                    tokio::select! {
                        () = inner.wake.notified() => {}
                        () = tokio::time::sleep(inner.poll) => {}
                    }
                }
                Err(error) => {
                    drop(permits);
                    tracing::warn!(%error, "could not claim deliveries; trying again");
                    tokio::time::sleep(inner.poll.max(Duration::from_secs(1))).await;
                }
            }
        }
    }

    /// The subscriptions and events of a claimed batch, by id: one query
    /// each. A delivery whose subscription or event is missing was deleted
    /// meanwhile, with its deliveries.
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

    /// One attempt of a claimed delivery, recorded.
    async fn attempt(&self, claimed: Claimed, subscription: &Subscription, event: &StoredEvent) {
        let started = now();
        let exchange = self.send(&claimed, subscription, event).await;
        self.record(claimed, subscription, started, exchange).await;
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
        let Some(secret) = self.open_secret(subscription) else {
            tracing::error!(webhook = %subscription.id,
                "a subscription's secret cannot be opened: was secret.key changed?");
            return Exchange::refused("the subscription's secret cannot be read".into());
        };
        let url = match self.inner.guard.check_url(&subscription.url) {
            Ok(url) => url,
            Err(refusal) => return Exchange::refused(format!("not sent: the URL {refusal}")),
        };
        let body = body_for(subscription, event);
        let timestamp = chrono::Utc::now().timestamp();
        let product_header = match subscription.family() {
            Family::SpaceOs => signatures::SPACEOS_HEADER,
            Family::Gospace => signatures::GOSPACE_HEADER,
        };
        let request = self
            .inner
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(
                product_header,
                signatures::product_signature(&secret, &body),
            )
            .header(signatures::ID_HEADER, &claimed.id)
            .header(signatures::TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                signatures::SIGNATURE_HEADER,
                signatures::standard_signature(&secret, &claimed.id, timestamp, &body),
            )
            .body(body);
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

    /// Writes the attempt and what follows from it, under the claim's lease.
    async fn record(
        &self,
        claimed: Claimed,
        subscription: &Subscription,
        started: NaiveDateTime,
        exchange: Exchange,
    ) {
        let number = claimed.attempts + 1;
        let at = now();
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
        let exhausted = outcome == AttemptOutcome::Failed && !claimed.manual;
        let status = match outcome {
            AttemptOutcome::Succeeded => SUCCEEDED,
            AttemptOutcome::Retrying => PENDING,
            AttemptOutcome::Failed => FAILED,
        };
        let error = exchange.error.clone().or_else(|| {
            exchange
                .status
                .filter(|_| !exchange.succeeded())
                .map(|s| format!("the receiver answered {s}"))
        });
        let mut tries = 0;
        let recorded = loop {
            tries += 1;
            let held = claimed.clone();
            let error = error.clone();
            let body = exchange.body.clone();
            let (status_code, truncated, duration) =
                (exchange.status, exchange.truncated, exchange.duration);
            let result = self
                .inner
                .db
                .transaction(move |conn| {
                    let updated = diesel::update(
                        deliveries::table
                            .filter(deliveries::id.eq(&held.id))
                            .filter(deliveries::lease_owner.eq(&held.lease)),
                    )
                    .set((
                        deliveries::status.eq(status),
                        deliveries::attempts.eq(number),
                        deliveries::next_attempt_at.eq(next),
                        deliveries::lease_owner.eq(None::<String>),
                        deliveries::lease_until.eq(None::<NaiveDateTime>),
                        deliveries::last_attempt_at.eq(Some(started)),
                        deliveries::last_status.eq(status_code.map(i32::from)),
                        deliveries::last_error.eq(&error),
                        deliveries::updated_at.eq(at),
                    ))
                    .execute(conn)?;
                    if updated == 0 {
                        return Ok(None);
                    }
                    diesel::insert_into(attempts::table)
                        .values((
                            attempts::delivery_id.eq(&held.id),
                            attempts::number.eq(number),
                            attempts::started_at.eq(started),
                            attempts::duration_ms
                                .eq(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
                            attempts::response_status.eq(status_code.map(i32::from)),
                            attempts::response_body.eq(&body),
                            attempts::response_truncated.eq(truncated),
                            attempts::error.eq(&error),
                            attempts::outcome.eq(outcome.as_str()),
                            attempts::next_attempt_at.eq(next),
                        ))
                        .execute(conn)?;
                    let mut turned_failing = false;
                    if exhausted {
                        turned_failing = diesel::update(
                            subscriptions::table
                                .filter(subscriptions::id.eq(&held.subscription_id))
                                .filter(subscriptions::state.eq(ACTIVE)),
                        )
                        .set((
                            subscriptions::state.eq(FAILING),
                            subscriptions::failing_since.eq(Some(at)),
                            subscriptions::notified_at.eq(None::<NaiveDateTime>),
                            subscriptions::notify_lease_until.eq(None::<NaiveDateTime>),
                            subscriptions::updated_at.eq(at),
                        ))
                        .execute(conn)?
                            == 1;
                    }
                    Ok::<_, StoreError>(Some(turned_failing))
                })
                .await;
            match result {
                Ok(recorded) => break recorded,
                Err(error) if tries < RECORD_TRIES => {
                    tracing::warn!(delivery = %claimed.id, %error, "could not record an attempt; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => {
                    tracing::error!(delivery = %claimed.id, %error,
                        "could not record an attempt; it is made again when its lease ends");
                    return;
                }
            }
        };
        self.inner
            .metrics
            .attempt(outcome.as_str(), exchange.duration.as_secs_f64());
        match recorded {
            None => tracing::warn!(delivery = %claimed.id,
                "a delivery's lease ended (or the delivery was deleted) before its attempt was recorded"),
            Some(turned_failing) => {
                tracing::debug!(delivery = %claimed.id, number, outcome = outcome.as_str(),
                    status = ?exchange.status, "attempt recorded");
                if turned_failing {
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
        Family::Gospace => (
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
