//! The relay: moves outbox rows to the event stream, oldest first, and marks
//! them published once the stream has them.
//!
//! # At-least-once, in order
//!
//! A pass is one database transaction: take the relay lock, read up to `batch`
//! unpublished rows in outbox order (`seq`), publish them to the stream in that
//! order (one atomic `MULTI`/`EXEC` on Redis), mark exactly those rows
//! published, prune, commit. Rows are marked only after the stream answered, so
//! nothing is lost: if the publish fails, nothing is marked and the same rows
//! go out on a later pass; if the process dies (or the commit fails) after the
//! stream took them, they are still unpublished and go out again, so a consumer
//! may see an event twice (it deduplicates by event id), never zero times.
//!
//! Replicas serialize their passes so that two of them never publish
//! interleaved batches out of order: on PostgreSQL with
//! `pg_try_advisory_xact_lock(RELAY_LOCK_KEY)` inside the transaction (a
//! replica that does not get it skips the pass; the lock goes with the commit
//! or rollback, also when the process dies), on SQLite with the write lock
//! that `Database::transaction` takes up front (a second replica waits for it).
//!
//! Outbox order is `seq`, assigned by the database at insert: an event written
//! by a transaction that saw another's committed change sorts after that
//! change's events, whatever the replicas' clocks say. Two transactions that
//! commit at the same time may become visible out of `seq` order; the later
//! visible one is published by the next pass, so the stream follows commit
//! visibility, which is the order consumers could observe anyway.
//!
//! # Publishing from the blocking closure
//!
//! `Database::transaction` runs its closure on tokio's blocking pool, and the
//! lock must be held from the read until the marks commit, across the publish.
//! The closure therefore publishes with `Handle::block_on`: it is on a blocking
//! thread (not a runtime worker), where `block_on` is allowed, and the runtime's
//! own threads keep driving the Redis connection meanwhile. The publish is
//! bounded (`PUBLISH_TIMEOUT`, and the Redis response timeout below it), so a
//! hung stream cannot hold the lock, or a SQLite writer, for long.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use diesel::RunQueryDsl;
use diesel::connection::SimpleConnection;
use store::{Database, DbConnection, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::stream::{EventStream, StreamError};
use crate::{defaults, outbox};

/// Key of the PostgreSQL advisory lock that serializes relay passes: "SPORTEVT"
/// in ASCII. Advisory locks are per database and each service has its own, so
/// one key serves every service. The migration lock (`store`) uses another key.
pub const RELAY_LOCK_KEY: i64 = 0x5350_4f52_5445_5654;

/// Upper bound on one publish while the relay holds its lock. Below SQLite's
/// `busy_timeout` (5 s, `store`): there the lock is the database's write lock,
/// and a producer waiting behind a relay stuck on an unreachable stream must
/// get it before its own wait runs out.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
/// After a pass skipped because another replica held the lock, the next try
/// comes this soon (once), so that rows committed during the other replica's
/// pass do not wait a whole interval.
const CONTENDED_RETRY: Duration = Duration::from_millis(25);
/// After a nudge, the relay waits this long before its pass, so that the
/// commits of a burst share one pass (one lock, one scan, one publish, one
/// update) instead of taking one each; a small part of the latency budget.
const NUDGE_GATHER: Duration = Duration::from_millis(5);
/// The running relay prunes at most this often: pruning is a scan of its own,
/// and published rows may wait a little past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

diesel::define_sql_function! {
    fn pg_try_advisory_xact_lock(key: diesel::sql_types::BigInt) -> diesel::sql_types::Bool;
}

/// Wakes a relay right after a commit that recorded events, so that latency is
/// not bounded by the relay's interval. Cheap to clone; nudges while the relay
/// is busy coalesce into one more pass.
#[derive(Clone, Debug, Default)]
pub struct Nudge(Arc<Notify>);

impl Nudge {
    pub fn new() -> Nudge {
        Nudge::default()
    }

    /// Call after the transaction that recorded events committed.
    pub fn nudge(&self) {
        self.0.notify_one();
    }

    async fn nudged(&self) {
        self.0.notified().await;
    }
}

/// What a replica's relay did, for `/metrics`: events relayed and failed
/// passes, by stream. Clones count into the same series.
#[derive(Clone, Default)]
pub struct RelayMetrics {
    relayed: prometheus_client::metrics::family::Family<
        StreamLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    failures: prometheus_client::metrics::family::Family<
        StreamLabel,
        prometheus_client::metrics::counter::Counter,
    >,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StreamLabel {
    stream: String,
}

impl RelayMetrics {
    /// Adds the series to a part's registry.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "events_relayed",
            "Outbox rows this replica published to the event stream",
            self.relayed.clone(),
        );
        registry.register(
            "events_relay_failures",
            "Relay passes that failed (the rows stay in the outbox and go out later)",
            self.failures.clone(),
        );
    }

    fn observe(&self, stream: &str, outcome: &Result<PassOutcome, RelayError>) {
        let label = StreamLabel {
            stream: stream.to_owned(),
        };
        match outcome {
            Ok(outcome) => {
                self.relayed
                    .get_or_create(&label)
                    .inc_by(outcome.published as u64);
            }
            Err(_) => {
                self.failures.get_or_create(&label).inc();
            }
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassOutcome {
    /// Rows published (and marked) by this pass.
    pub published: usize,
    /// Published rows older than the retention deleted by this pass.
    pub pruned: usize,
    /// Another replica held the relay lock (PostgreSQL): nothing was done.
    pub skipped: bool,
    /// Rows marked unpublished again because the stream had lost its data
    /// (see [`EventStream::claim_epoch`]).
    pub republished: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing to the event stream failed: {0}")]
    Stream(#[from] StreamError),
}

impl From<diesel::result::Error> for RelayError {
    fn from(err: diesel::result::Error) -> Self {
        RelayError::Store(err.into())
    }
}

/// Moves a service's outbox to one stream. Every replica may run one.
pub struct Relay {
    pub db: Database,
    pub stream: EventStream,
    /// The stream the rows go to, such as `events:booking-service`.
    pub stream_name: String,
    /// Rows per pass (and per atomic publish).
    pub batch: usize,
    /// Time between passes when nothing nudges the relay.
    pub interval: Duration,
    /// How long published rows stay in the outbox before they are pruned.
    pub retention: Duration,
    pub nudge: Nudge,
    pub metrics: RelayMetrics,
}

impl Relay {
    /// A relay with the default batch (100), interval (1 s) and retention (24 h).
    pub fn new(db: Database, stream: EventStream, stream_name: impl Into<String>) -> Relay {
        Relay {
            db,
            stream,
            stream_name: stream_name.into(),
            batch: defaults::RELAY_BATCH,
            interval: defaults::RELAY_INTERVAL,
            retention: defaults::RELAY_RETENTION,
            nudge: Nudge::new(),
            metrics: RelayMetrics::default(),
        }
    }

    /// A handle producers call after their commit.
    pub fn nudge(&self) -> Nudge {
        self.nudge.clone()
    }

    /// One pass: publish up to `batch` unpublished rows in outbox order, mark
    /// them, prune old published rows. A failed publish marks nothing (the
    /// rows go out on a later pass) and is returned as the error.
    pub async fn pass(&self) -> Result<PassOutcome, RelayError> {
        self.pass_pruning(true).await
    }

    /// A pass that prunes only when `prune` is set.
    async fn pass_pruning(&self, prune_too: bool) -> Result<PassOutcome, RelayError> {
        let runtime = tokio::runtime::Handle::current();
        let stream = self.stream.clone();
        let stream_name = self.stream_name.clone();
        let batch = self.batch.max(1);
        let retention = self.retention;
        // Set inside the transaction when this pass claimed the epoch marker.
        let claimed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let claimed_in = claimed.clone();
        let outcome = self
            .db
            .transaction(move |conn| {
                if !take_lock(conn)? {
                    return Ok(PassOutcome {
                        skipped: true,
                        ..PassOutcome::default()
                    });
                }
                let republished =
                    republish_if_lost(conn, &runtime, &stream, &stream_name, &claimed_in)?;
                let published = publish_oldest(conn, &runtime, &stream, &stream_name, batch)?;
                let pruned = if prune_too {
                    prune(conn, retention, batch)?
                } else {
                    0
                };
                Ok(PassOutcome {
                    published,
                    pruned,
                    republished,
                    skipped: false,
                })
            })
            .await;
        if outcome.is_err() && claimed.load(std::sync::atomic::Ordering::SeqCst) {
            // The rows marked to go out again were rolled back with the
            // transaction: give the marker back, so the next pass looks again.
            if let Err(error) = self.stream.drop_epoch(&self.stream_name).await {
                tracing::error!(stream = %self.stream_name, %error,
                    "could not give back the stream's epoch marker after a failed pass; \
                     events lost with the stream may not be published again");
            }
        }
        outcome
    }

    /// Runs passes every `interval`, or at once when nudged, until the runtime
    /// shuts down (or the handle is aborted). A full batch is followed by the
    /// next pass straight away. Failures are logged and retried.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut retried_contended = false;
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            let prune_due = last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            let outcome = self.pass_pruning(prune_due).await;
            self.metrics.observe(&self.stream_name, &outcome);
            if prune_due && outcome.as_ref().is_ok_and(|o| !o.skipped) {
                last_prune = Some(tokio::time::Instant::now());
            }
            let wait = match outcome {
                Ok(outcome) if outcome.skipped => {
                    retried_contended = !retried_contended;
                    if retried_contended {
                        CONTENDED_RETRY.min(self.interval)
                    } else {
                        self.interval
                    }
                }
                Ok(outcome) => {
                    retried_contended = false;
                    if outcome.published > 0 || outcome.pruned > 0 {
                        tracing::debug!(
                            stream = %self.stream_name,
                            published = outcome.published,
                            pruned = outcome.pruned,
                            "outbox relayed"
                        );
                    }
                    if outcome.published >= self.batch.max(1) {
                        Duration::ZERO
                    } else {
                        self.interval
                    }
                }
                Err(error) => {
                    retried_contended = false;
                    tracing::warn!(stream = %self.stream_name, %error,
                        "outbox relay pass failed; retrying");
                    self.interval
                }
            };
            if wait.is_zero() {
                // Let other tasks run between back-to-back passes.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = self.nudge.nudged() => tokio::time::sleep(NUDGE_GATHER).await,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// PostgreSQL: the relay's advisory lock, released with the transaction; false
/// when another replica holds it. SQLite: the transaction already holds the
/// write lock.
fn take_lock(conn: &mut DbConnection) -> Result<bool, RelayError> {
    match conn {
        DbConnection::Postgresql(pg) => {
            // Must be the transaction's first statement. Under a stricter
            // default isolation, the snapshot taken before the lock was granted
            // could still show rows the previous holder has just published.
            pg.batch_execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")?;
            Ok(diesel::select(pg_try_advisory_xact_lock(RELAY_LOCK_KEY)).get_result(pg)?)
        }
        DbConnection::Sqlite(_) => Ok(true),
    }
}

/// A stream server that lost its data (a Redis without persistence that
/// restarted) lost every entry no consumer had stored yet, and its consumer
/// groups' pending lists with them; rows marked published are no proof of
/// delivery any more. The stream's epoch marker tells: when it is gone, every
/// row the outbox still retains goes out again, in order, before new ones.
/// Consumers deduplicate by event id, so this costs duplicates on the stream,
/// never duplicate webhooks; what the outbox no longer retains is gone.
fn republish_if_lost(
    conn: &mut DbConnection,
    runtime: &tokio::runtime::Handle,
    stream: &EventStream,
    stream_name: &str,
    claimed: &std::sync::atomic::AtomicBool,
) -> Result<usize, RelayError> {
    // Claimed under the relay's lock, so one replica alone re-publishes; a
    // pass that then fails gives the marker back (`pass_pruning`).
    let claim = tokio::time::timeout(PUBLISH_TIMEOUT, stream.claim_epoch(stream_name));
    let lost = runtime.block_on(claim).map_err(|_| {
        StreamError::Backend(format!("epoch check timed out after {PUBLISH_TIMEOUT:?}"))
    })??;
    if !lost {
        return Ok(0);
    }
    claimed.store(true, std::sync::atomic::Ordering::SeqCst);
    let again = outbox::republish_retained(conn)?;
    if again > 0 {
        tracing::warn!(stream = %stream_name, rows = again,
            "the event stream has lost its data (a restart without persistence?): \
             publishing the retained outbox again");
    }
    Ok(again)
}

fn publish_oldest(
    conn: &mut DbConnection,
    runtime: &tokio::runtime::Handle,
    stream: &EventStream,
    stream_name: &str,
    batch: usize,
) -> Result<usize, RelayError> {
    let rows = outbox::unpublished(conn, i64::try_from(batch).unwrap_or(i64::MAX))?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.id.clone();
        match row.into_event() {
            Ok(event) => events.push(event),
            Err(error) => {
                // Only a hand-edited row can get here. Publishing past it would
                // reorder, skipping it would lose it: stop before it, loudly,
                // until someone repairs the row.
                tracing::error!(outbox_id = %id, %error,
                    "outbox row holds no valid JSON; relay stopped before it");
                break;
            }
        }
    }
    if events.is_empty() {
        return Ok(0);
    }
    let publish = tokio::time::timeout(PUBLISH_TIMEOUT, stream.publish_batch(stream_name, &events));
    runtime.block_on(publish).map_err(|_| {
        StreamError::Backend(format!("publish timed out after {PUBLISH_TIMEOUT:?}"))
    })??;
    let ids: Vec<String> = events.into_iter().map(|e| e.id).collect();
    let marked = outbox::mark_published(conn, &ids, Utc::now().naive_utc())?;
    Ok(marked)
}

/// Prunes at most ten batches' worth per pass, so the lock is never held for
/// a long delete; a backlog of old rows shrinks over a few passes.
fn prune(conn: &mut DbConnection, retention: Duration, batch: usize) -> Result<usize, RelayError> {
    let Some(cutoff) = TimeDelta::from_std(retention)
        .ok()
        .and_then(|retention| Utc::now().naive_utc().checked_sub_signed(retention))
    else {
        return Ok(0);
    };
    let limit = i64::try_from(batch.saturating_mul(10)).unwrap_or(i64::MAX);
    Ok(outbox::prune(conn, cutoff, limit)?)
}
