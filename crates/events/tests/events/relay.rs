//! The relay: order, at-least-once across failures, replicas, nudges, pruning.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use events::outbox::outbox as table;
use events::{Event, EventStream, PassOutcome, RELAY_LOCK_KEY, Relay};
use store::StoreError;
use testkit::{CacheKind, DbKind};

use crate::support::{
    Proxy, TestStream, duplicates, event, on_all_backends, on_both_databases, outbox_database,
    record, unpublished,
};

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

on_all_backends!(publishes_in_order_and_marks_published, in_order);
async fn in_order(db_kind: DbKind, stream_kind: CacheKind) {
    let (_guard, db) = outbox_database(db_kind).await;
    let stream = TestStream::new(stream_kind).await;
    // Several transactions, some with several events.
    let mut recorded = Vec::new();
    for chunk in (0..250).collect::<Vec<_>>().chunks(7) {
        let events: Vec<Event> = chunk.iter().map(|n| event(*n)).collect();
        recorded.extend(events.clone());
        record(&db, events).await;
    }
    let mut relay = Relay::new(db.clone(), stream.stream.clone(), &stream.name);
    relay.batch = 100;

    let mut passes = Vec::new();
    loop {
        let outcome = relay.pass().await.expect("pass");
        passes.push(outcome.published);
        if outcome.published == 0 {
            break;
        }
    }
    assert_eq!(passes, [100, 100, 50, 0]);
    assert_eq!(unpublished(&db).await, 0);
    let marked = db
        .run(|conn| {
            table::table
                .filter(table::published_at.is_not_null())
                .count()
                .get_result::<i64>(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(marked, 250);

    let published = stream.read_all(250).await;
    // Whole events, not just ids: what the consumer gets is what was recorded.
    assert_eq!(published, recorded);
    stream.clean_up().await;
}

/// Redis goes away between the commit and the relay's pass: nothing is marked,
/// nothing is lost, and once Redis is back the rows go out in order, once.
async fn failed_publish_is_retried(db_kind: DbKind) {
    let (_guard, db) = outbox_database(db_kind).await;
    let test_stream = TestStream::new(CacheKind::Redis).await;
    let proxy = Proxy::start(&test_stream.url).await;
    let through_proxy = EventStream::connect(&proxy.url(&test_stream.url))
        .await
        .expect("connect through the proxy");
    let relay = Relay::new(db.clone(), through_proxy, &test_stream.name);

    let first: Vec<Event> = (0..5).map(event).collect();
    record(&db, first.clone()).await;
    proxy.down();
    let failed = relay.pass().await;
    assert!(
        failed.is_err(),
        "publish must fail while Redis is away: {failed:?}"
    );
    assert_eq!(unpublished(&db).await, 5);

    let second: Vec<Event> = (5..8).map(event).collect();
    record(&db, second.clone()).await;
    assert!(relay.pass().await.is_err());
    assert_eq!(unpublished(&db).await, 8);

    proxy.up();
    // The connection manager reconnects on the next command; a pass or two
    // may still fail while it does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let outcome = loop {
        match relay.pass().await {
            Ok(outcome) => break outcome,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("pass while reconnecting: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("relay did not recover: {e}"),
        }
    };
    assert_eq!(outcome.published, 8);
    assert_eq!(unpublished(&db).await, 0);

    let published = test_stream.read_all(8).await;
    assert_eq!(duplicates(&published), 0);
    assert_eq!(ids(&published), ids(&[first, second].concat()));
    test_stream.clean_up().await;
}

mod failed_publish_leaves_rows_for_a_later_pass {
    use testkit::DbKind;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_redis() {
        super::failed_publish_is_retried(DbKind::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        super::failed_publish_is_retried(DbKind::Postgres).await
    }
}

/// Two replicas relay one database while a producer keeps committing: every
/// row reaches the stream, in commit order, and (with the lock) exactly once.
async fn concurrent_relays(db_kind: DbKind, stream_kind: CacheKind) {
    const EVENTS: usize = 300;
    let (test_db, db) = outbox_database(db_kind).await;
    let stream = TestStream::new(stream_kind).await;
    let skipped = Arc::new(AtomicUsize::new(0));
    let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));

    let mut relays = Vec::new();
    for _ in 0..2 {
        let mut relay = Relay::new(
            crate::support::another_replica(&test_db).await,
            stream.another_handle().await,
            &stream.name,
        );
        relay.batch = 7;
        let skipped = skipped.clone();
        let producing = producing.clone();
        let db = db.clone();
        relays.push(tokio::spawn(async move {
            loop {
                let outcome: PassOutcome = relay.pass().await.expect("pass");
                if outcome.skipped {
                    skipped.fetch_add(1, Ordering::Relaxed);
                }
                if !producing.load(Ordering::SeqCst) && unpublished(&db).await == 0 {
                    return;
                }
                if outcome.published == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }

    let mut recorded = Vec::new();
    for n in 0..EVENTS {
        let e = event(n);
        recorded.push(e.clone());
        record(&db, vec![e]).await;
    }
    producing.store(false, Ordering::SeqCst);
    for relay in relays {
        tokio::time::timeout(Duration::from_secs(60), relay)
            .await
            .expect("relays finish")
            .expect("relay task");
    }

    let published = stream.read_all(EVENTS).await;
    let dups = duplicates(&published);
    eprintln!(
        "{db_kind:?}/{stream_kind:?}: {} entries for {EVENTS} events, {dups} duplicates, {} passes skipped on the lock",
        published.len(),
        skipped.load(Ordering::Relaxed)
    );
    assert_eq!(dups, 0, "the relay lock allows no duplicates");
    assert_eq!(
        ids(&published),
        ids(&recorded),
        "stream order is commit order"
    );
    stream.clean_up().await;
}
on_all_backends!(
    concurrent_relays_publish_each_row_once_in_order,
    concurrent_relays
);

/// A relay waiting out a long interval publishes at once when nudged.
async fn nudged(db_kind: DbKind) {
    let (_guard, db) = outbox_database(db_kind).await;
    let stream = TestStream::new(CacheKind::Memory).await;
    let mut relay = Relay::new(db.clone(), stream.stream.clone(), &stream.name);
    relay.interval = Duration::from_secs(3600);
    let nudge = relay.nudge();
    let task = relay.spawn();
    // Let the first (empty) pass run, so the relay is waiting on its interval.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let e = event(1);
    record(&db, vec![e.clone()]).await;
    nudge.nudge();
    let published = tokio::time::timeout(Duration::from_secs(5), stream.read_all(1))
        .await
        .expect("published soon after the nudge");
    assert_eq!(ids(&published), [e.id]);
    task.abort();
}
on_both_databases!(spawned_relay_wakes_on_a_nudge, nudged);

/// Published rows older than the retention go; younger ones stay.
async fn pruning(db_kind: DbKind) {
    let (_guard, db) = outbox_database(db_kind).await;
    let stream = TestStream::new(CacheKind::Memory).await;
    let mut relay = Relay::new(db.clone(), stream.stream.clone(), &stream.name);
    relay.retention = Duration::from_secs(3600);
    let events: Vec<Event> = (0..4).map(event).collect();
    record(&db, events.clone()).await;
    let first = relay.pass().await.unwrap();
    assert_eq!((first.published, first.pruned), (4, 0));

    // Two rows were published long ago.
    let old: Vec<String> = ids(&events[..2]);
    let long_ago = (Utc::now() - chrono::TimeDelta::hours(2)).naive_utc();
    db.run(move |conn| {
        diesel::update(table::table.filter(table::id.eq_any(&old)))
            .set(table::published_at.eq(long_ago))
            .execute(conn)
            .map_err(StoreError::from)
    })
    .await
    .unwrap();
    let second = relay.pass().await.unwrap();
    assert_eq!((second.published, second.pruned), (0, 2));
    let left: Vec<String> = db
        .run(|conn| {
            table::table
                .order(table::seq.asc())
                .select(table::id)
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(left, ids(&events[2..]));
}
on_both_databases!(prunes_rows_published_before_the_retention, pruning);

/// On PostgreSQL a replica that finds the relay lock taken skips its pass
/// instead of publishing beside the holder.
mod skips_while_another_replica_holds_the_lock {
    use super::*;
    use diesel::{Connection, PgConnection};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let (test_db, db) = outbox_database(DbKind::Postgres).await;
        let stream = TestStream::new(CacheKind::Memory).await;
        let relay = Relay::new(db.clone(), stream.stream.clone(), &stream.name);
        record(&db, (0..3).map(event).collect()).await;

        let url = test_db.url().to_owned();
        let mut holder = tokio::task::spawn_blocking(move || {
            let mut pg = PgConnection::establish(&url).expect("connect");
            diesel::connection::SimpleConnection::batch_execute(
                &mut pg,
                &format!("BEGIN; SELECT pg_advisory_xact_lock({RELAY_LOCK_KEY});"),
            )
            .expect("take the relay lock");
            pg
        })
        .await
        .unwrap();

        let outcome = relay.pass().await.unwrap();
        assert!(outcome.skipped, "{outcome:?}");
        assert_eq!(outcome.published, 0);
        assert_eq!(unpublished(&db).await, 3);

        let holder = tokio::task::spawn_blocking(move || {
            diesel::connection::SimpleConnection::batch_execute(&mut holder, "COMMIT").unwrap();
            holder
        })
        .await
        .unwrap();
        let outcome = relay.pass().await.unwrap();
        assert_eq!(outcome.published, 3);
        drop(holder);
    }
}

/// A Redis without persistence restarts: the stream, its groups and the epoch
/// marker are gone. The relay notices the missing marker and publishes every
/// row the outbox retains again, in order, before new ones; nothing
/// published before the loss is lost with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_lost_its_data_gets_the_retained_outbox_again_redis() {
    let (_guard, db) = outbox_database(DbKind::Sqlite).await;
    let stream = TestStream::new(CacheKind::Redis).await;
    let before: Vec<Event> = (0..30).map(event).collect();
    record(&db, before.clone()).await;
    let relay = Relay::new(db.clone(), stream.stream.clone(), &stream.name);
    let first = relay.pass().await.expect("pass");
    assert_eq!((first.published, first.republished), (30, 0));
    assert_eq!(stream.read_all(30).await, before);
    // Nothing lost, nothing to do again.
    assert_eq!(relay.pass().await.expect("pass").published, 0);

    stream.clean_up().await;
    let after: Vec<Event> = (30..35).map(event).collect();
    record(&db, after.clone()).await;
    let recovered = relay.pass().await.expect("pass");
    assert_eq!(recovered.republished, 30);
    assert_eq!(recovered.published, 35);
    let mut expected = before;
    expected.extend(after);
    assert_eq!(
        stream.read_all(35).await,
        expected,
        "the lost ones first, in order"
    );
    // The marker is back: the next pass publishes nothing again.
    let quiet = relay.pass().await.expect("pass");
    assert_eq!((quiet.published, quiet.republished), (0, 0));
    stream.clean_up().await;
}
