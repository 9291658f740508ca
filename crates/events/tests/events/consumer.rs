//! The consumer loop: shared work, reclaiming a dead consumer's entries,
//! retrying failed handlers, stopping on shutdown; and the whole path from
//! the outbox to a handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::{Consumer, Delivery, Event, Relay};
use testkit::{CacheKind, DbKind};
use tokio::sync::watch;

use crate::support::{
    TestStream, event, on_all_backends, on_both_streams, outbox_database, record,
};

/// Who handled which event id, in order.
type Log = Arc<Mutex<Vec<(String, String)>>>;

fn consumer(t: &TestStream, name: &str) -> Consumer {
    let mut c = Consumer::new(t.stream.clone(), &t.name, "workers", name);
    c.batch = 5;
    c.block = Duration::from_millis(500);
    c.min_idle = Duration::from_millis(400);
    c.claim_interval = Duration::from_millis(100);
    c.retry_delay = Duration::from_millis(100);
    c
}

/// Runs `consumer` until the returned sender says stop, logging each delivery.
fn spawn(
    consumer: Consumer,
    log: Log,
    fail_first: Option<String>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let name = consumer.consumer_name.clone();
        let failed_once = Arc::new(Mutex::new(false));
        consumer
            .run(
                |delivery: Delivery| {
                    let log = log.clone();
                    let name = name.clone();
                    let fail_first = fail_first.clone();
                    let failed_once = failed_once.clone();
                    async move {
                        log.lock().unwrap().push((name, delivery.event.id.clone()));
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let mut failed = failed_once.lock().unwrap();
                        if fail_first.as_deref() == Some(delivery.event.id.as_str()) && !*failed {
                            *failed = true;
                            return Err("receiver is down");
                        }
                        Ok(())
                    }
                },
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )
            .await;
    });
    (stop, task)
}

async fn wait_for(log: &Log, handled: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.lock().unwrap().len() < handled {
        assert!(
            Instant::now() < deadline,
            "only {} of {handled} handled",
            log.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(consumers: Vec<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>) {
    for (stop, task) in consumers {
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("consumer stops on shutdown")
            .unwrap();
    }
}

fn handled_per_event(log: &Log) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, id) in log.lock().unwrap().iter() {
        *counts.entry(id.clone()).or_default() += 1;
    }
    counts
}

async fn sharing(kind: CacheKind) {
    const EVENTS: usize = 200;
    let t = TestStream::new(kind).await;
    let log: Log = Arc::default();
    let consumers = vec![
        spawn(consumer(&t, "c1"), log.clone(), None),
        spawn(consumer(&t, "c2"), log.clone(), None),
    ];
    // Let both create the group and block on it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    for e in &events {
        t.stream.publish(&t.name, e).await.unwrap();
    }
    wait_for(&log, EVENTS).await;
    // Give a duplicate, if any, the time to show up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop(consumers).await;

    let counts = handled_per_event(&log);
    assert_eq!(counts.len(), EVENTS);
    assert!(counts.values().all(|n| *n == 1), "each entry handled once");
    let by_c1 = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| c == "c1")
        .count();
    assert!(
        by_c1 > 0 && by_c1 < EVENTS,
        "both consumers took a share (c1: {by_c1} of {EVENTS})"
    );
    assert_eq!(t.stream.lag(&t.name, "workers").await.unwrap().pending, 0);
    t.clean_up().await;
}
on_both_streams!(two_consumers_share_the_work, sharing);

async fn reclaiming(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    t.stream.ensure_group(&t.name, "workers").await.unwrap();
    for n in 0..3 {
        t.stream.publish(&t.name, &event(n)).await.unwrap();
    }
    // A consumer takes the entries and dies without acknowledging them.
    let held = t
        .stream
        .read(&t.name, "workers", "dead", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(held.len(), 3);
    let died = Instant::now();

    let log: Log = Arc::default();
    let live = spawn(consumer(&t, "alive"), log.clone(), None);
    wait_for(&log, 3).await;
    let waited = died.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "claimed only after min_idle: {waited:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(vec![live]).await;

    let handled: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    let held: Vec<String> = held.iter().map(|d| d.event.id.clone()).collect();
    assert_eq!(handled, held);
    assert_eq!(t.stream.lag(&t.name, "workers").await.unwrap().pending, 0);
    t.clean_up().await;
}
on_both_streams!(a_dead_consumers_entries_are_reclaimed, reclaiming);

async fn retrying(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    let events: Vec<Event> = (0..3).map(event).collect();
    let log: Log = Arc::default();
    let c = spawn(consumer(&t, "c1"), log.clone(), Some(events[1].id.clone()));
    for e in &events {
        t.stream.publish(&t.name, e).await.unwrap();
    }
    wait_for(&log, 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(vec![c]).await;

    let counts = handled_per_event(&log);
    assert_eq!(counts[&events[0].id], 1);
    assert_eq!(counts[&events[1].id], 2, "failed once, then retried");
    assert_eq!(counts[&events[2].id], 1);
    assert_eq!(t.stream.lag(&t.name, "workers").await.unwrap().pending, 0);
    t.clean_up().await;
}
on_both_streams!(a_failed_handler_is_retried_after_min_idle, retrying);

async fn stopping(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    let mut c = consumer(&t, "c1");
    c.block = Duration::from_secs(30);
    c.claim_interval = Duration::from_secs(30);
    let log: Log = Arc::default();
    let running = spawn(c, log, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    stop(vec![running]).await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    t.clean_up().await;
}
on_both_streams!(shutdown_stops_a_blocked_consumer, stopping);

/// Redis lost the stream (restarted without persistence): the consumer
/// creates its group again and goes on.
mod recreates_its_group_when_the_stream_vanished {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        let t = TestStream::new(CacheKind::Redis).await;
        let log: Log = Arc::default();
        let c = spawn(consumer(&t, "c1"), log.clone(), None);
        tokio::time::sleep(Duration::from_millis(200)).await;
        t.stream.publish(&t.name, &event(1)).await.unwrap();
        wait_for(&log, 1).await;

        t.clean_up().await;
        let after = event(2);
        t.stream.publish(&t.name, &after).await.unwrap();
        wait_for(&log, 2).await;
        stop(vec![c]).await;
        assert_eq!(log.lock().unwrap()[1].1, after.id);
        t.clean_up().await;
    }
}

/// From `record` in a producer's transaction, through a spawned relay, to a
/// consumer's handler.
async fn end_to_end(db_kind: DbKind, stream_kind: CacheKind) {
    let (_guard, db) = outbox_database(db_kind).await;
    let t = TestStream::new(stream_kind).await;
    let mut relay = Relay::new(db.clone(), t.another_handle().await, &t.name);
    relay.interval = Duration::from_secs(3600);
    let nudge = relay.nudge();
    let relay = relay.spawn();
    let log: Log = Arc::default();
    let c = spawn(consumer(&t, "c1"), log.clone(), None);

    let mut recorded = Vec::new();
    for n in 0..20 {
        let e = event(n);
        recorded.push(e.id.clone());
        record(&db, vec![e]).await;
        nudge.nudge();
    }
    wait_for(&log, 20).await;
    stop(vec![c]).await;
    relay.abort();
    let handled: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(handled, recorded);
    t.clean_up().await;
}
on_all_backends!(outbox_to_handler, end_to_end);

/// Runs `consumer` with `run_batches` until the returned sender says stop,
/// logging each batch's event ids; the first batch holding `fail_once` fails.
fn spawn_batches(
    consumer: Consumer,
    batches: Arc<Mutex<Vec<Vec<String>>>>,
    fail_once: Option<String>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let failed_once = Arc::new(Mutex::new(false));
        consumer
            .run_batches(
                |batch: Vec<Delivery>| {
                    let batches = batches.clone();
                    let fail_once = fail_once.clone();
                    let failed_once = failed_once.clone();
                    async move {
                        assert!(!batch.is_empty(), "no empty batch is handed over");
                        let ids: Vec<String> = batch.iter().map(|d| d.event.id.clone()).collect();
                        let fail = {
                            let mut failed = failed_once.lock().unwrap();
                            let fail =
                                !*failed && fail_once.as_ref().is_some_and(|id| ids.contains(id));
                            *failed |= fail;
                            fail
                        };
                        batches.lock().unwrap().push(ids);
                        if fail {
                            return Err("database is down");
                        }
                        Ok(())
                    }
                },
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )
            .await;
    });
    (stop, task)
}

async fn wait_for_batches(batches: &Arc<Mutex<Vec<Vec<String>>>>, handled: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: usize = batches.lock().unwrap().iter().map(Vec::len).sum();
        if n >= handled {
            return;
        }
        assert!(Instant::now() < deadline, "only {n} of {handled} handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn batching(kind: CacheKind) {
    const EVENTS: usize = 12;
    let t = TestStream::new(kind).await;
    t.stream.ensure_group(&t.name, "workers").await.unwrap();
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    for e in &events {
        t.stream.publish(&t.name, e).await.unwrap();
    }
    let batches: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    // batch = 5: the 12 waiting entries come as 5 + 5 + 2.
    let c = spawn_batches(consumer(&t, "c1"), batches.clone(), None);
    wait_for_batches(&batches, EVENTS).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop(vec![c]).await;

    let batches = batches.lock().unwrap().clone();
    assert!(
        batches.iter().all(|b| !b.is_empty() && b.len() <= 5),
        "{batches:?}"
    );
    assert!(batches.len() < EVENTS, "entries came together: {batches:?}");
    let handled: Vec<String> = batches.into_iter().flatten().collect();
    let published: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(handled, published, "each once, in stream order");
    assert_eq!(t.stream.lag(&t.name, "workers").await.unwrap().pending, 0);
    t.clean_up().await;
}
on_both_streams!(batches_are_handed_over_whole_and_acknowledged, batching);

async fn retrying_batches(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    t.stream.ensure_group(&t.name, "workers").await.unwrap();
    let events: Vec<Event> = (0..3).map(event).collect();
    for e in &events {
        t.stream.publish(&t.name, e).await.unwrap();
    }
    let batches: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let c = spawn_batches(
        consumer(&t, "c1"),
        batches.clone(),
        Some(events[1].id.clone()),
    );
    // The failed batch stays pending, and is claimed again after min_idle.
    wait_for_batches(&batches, 6).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(vec![c]).await;

    let batches = batches.lock().unwrap().clone();
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(batches, vec![ids.clone(), ids], "the whole batch again");
    assert_eq!(t.stream.lag(&t.name, "workers").await.unwrap().pending, 0);
    t.clean_up().await;
}
on_both_streams!(
    a_failed_batch_stays_pending_and_is_retried,
    retrying_batches
);
