//! The stream API with Redis Streams semantics, on both backends.

use std::time::{Duration, Instant};

use events::{EventStream, Lag, StreamError};
use testkit::CacheKind;

use crate::support::{TestStream, event, on_both_streams};

async fn groups(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    let (s, name) = (&t.stream, t.name.as_str());
    s.ensure_group(name, "g").await.unwrap();
    s.ensure_group(name, "g")
        .await
        .expect("an existing group is fine");

    let published: Vec<_> = (0..3).map(event).collect();
    let mut entry_ids = Vec::new();
    for e in &published {
        entry_ids.push(s.publish(name, e).await.unwrap());
    }
    assert!(entry_ids.windows(2).all(|w| w[0] != w[1]));

    let first = s.read(name, "g", "c1", 2, Duration::ZERO).await.unwrap();
    let second = s.read(name, "g", "c2", 10, Duration::ZERO).await.unwrap();
    let none = s.read(name, "g", "c1", 10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 1);
    assert!(none.is_empty());
    let handed: Vec<_> = first.iter().chain(&second).collect();
    assert_eq!(
        handed
            .iter()
            .map(|d| d.entry_id.clone())
            .collect::<Vec<_>>(),
        entry_ids
    );
    assert_eq!(
        handed.iter().map(|d| d.event.clone()).collect::<Vec<_>>(),
        published
    );
    assert_eq!(
        s.lag(name, "g").await.unwrap(),
        Lag {
            pending: 3,
            undelivered: Some(0)
        }
    );

    // Another group sees everything, independently.
    s.ensure_group(name, "other").await.unwrap();
    let other = s
        .read(name, "other", "c", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(other.len(), 3);

    let acked = s
        .ack(name, "g", &[entry_ids[0].clone(), entry_ids[1].clone()])
        .await
        .unwrap();
    assert_eq!(acked, 2);
    assert_eq!(s.ack(name, "g", &[entry_ids[0].clone()]).await.unwrap(), 0);
    assert_eq!(s.lag(name, "g").await.unwrap().pending, 1);

    s.publish(name, &event(4)).await.unwrap();
    assert_eq!(
        s.lag(name, "g").await.unwrap(),
        Lag {
            pending: 1,
            undelivered: Some(1)
        }
    );
    t.clean_up().await;
}
on_both_streams!(groups_hand_out_each_entry_once, groups);

async fn blocking(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    t.stream.ensure_group(&t.name, "g").await.unwrap();

    let started = Instant::now();
    let empty = t
        .stream
        .read(&t.name, "g", "c", 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(empty.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));

    let reader = {
        let stream = t.stream.clone();
        let name = t.name.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = stream
                .read(&name, "g", "c", 10, Duration::from_secs(10))
                .await
                .unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Publishing on the same handle is not held up by the blocked read.
    let published_at = Instant::now();
    let e = event(1);
    tokio::time::timeout(Duration::from_secs(1), t.stream.publish(&t.name, &e))
        .await
        .expect("publish beside a blocked read")
        .unwrap();
    assert!(published_at.elapsed() < Duration::from_millis(500));
    let (got, waited) = reader.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, e);
    assert!(
        waited < Duration::from_secs(5),
        "woken by the publish: {waited:?}"
    );
    t.clean_up().await;
}
on_both_streams!(blocking_read_wakes_on_publish, blocking);

async fn claims(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    let (s, name) = (&t.stream, t.name.as_str());
    s.ensure_group(name, "g").await.unwrap();
    for n in 0..3 {
        s.publish(name, &event(n)).await.unwrap();
    }
    let held = s.read(name, "g", "dead", 2, Duration::ZERO).await.unwrap();
    assert_eq!(held.len(), 2);

    let min_idle = Duration::from_millis(300);
    let early = s
        .claim_stale(name, "g", "alive", min_idle, 10)
        .await
        .unwrap();
    assert!(early.is_empty(), "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = s
        .claim_stale(name, "g", "alive", min_idle, 10)
        .await
        .unwrap();
    assert_eq!(claimed, held, "the same entries, now the live consumer's");
    // Claiming resets the idle time: nobody else takes them straight away.
    let again = s
        .claim_stale(name, "g", "third", min_idle, 10)
        .await
        .unwrap();
    assert!(again.is_empty());

    let ids: Vec<String> = claimed.iter().map(|d| d.entry_id.clone()).collect();
    assert_eq!(s.ack(name, "g", &ids).await.unwrap(), 2);
    assert_eq!(s.lag(name, "g").await.unwrap().pending, 0);
    // The entry nobody read is still there for a plain read.
    let rest = s.read(name, "g", "dead", 10, Duration::ZERO).await.unwrap();
    assert_eq!(rest.len(), 1);
    t.clean_up().await;
}
on_both_streams!(claim_stale_takes_over_after_min_idle, claims);

/// The names of the group's consumers, as Redis lists them.
async fn consumer_names(url: &str, name: &str, group: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let reply: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(name)
        .arg(group)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut names: Vec<String> = reply
        .iter()
        .map(|info| redis::from_redis_value(info["name"].clone()).unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_consumers_holding_nothing_leave_the_group() {
    let t = TestStream::new(CacheKind::Redis).await;
    let (s, name) = (&t.stream, t.name.as_str());
    s.ensure_group(name, "g").await.unwrap();
    for n in 0..3 {
        s.publish(name, &event(n)).await.unwrap();
    }
    // "gone" handled its entry; "holding" still holds one; "me" is the caller
    // (also idle, holding nothing).
    let handled = s.read(name, "g", "gone", 1, Duration::ZERO).await.unwrap();
    let ids: Vec<String> = handled.iter().map(|d| d.entry_id.clone()).collect();
    s.ack(name, "g", &ids).await.unwrap();
    let held = s
        .read(name, "g", "holding", 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    let mine = s.read(name, "g", "me", 1, Duration::ZERO).await.unwrap();
    let ids: Vec<String> = mine.iter().map(|d| d.entry_id.clone()).collect();
    s.ack(name, "g", &ids).await.unwrap();
    let idle = Duration::from_millis(200);
    assert_eq!(
        s.forget_idle_consumers(name, "g", "me", idle)
            .await
            .unwrap(),
        0,
        "nobody idle long enough yet"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.forget_idle_consumers(name, "g", "me", idle)
            .await
            .unwrap(),
        1
    );
    assert_eq!(consumer_names(&t.url, name, "g").await, ["holding", "me"]);
    // What "holding" held is still pending, and claimable.
    let claimed = s.claim_stale(name, "g", "me", idle, 10).await.unwrap();
    assert_eq!(claimed, held);
    // The in-process stream keeps no consumers: nothing to remove.
    let memory = TestStream::new(CacheKind::Memory).await;
    let m = &memory.stream;
    m.ensure_group(&memory.name, "g").await.unwrap();
    assert_eq!(
        m.forget_idle_consumers(&memory.name, "g", "me", Duration::ZERO)
            .await
            .unwrap(),
        0
    );
    memory.clean_up().await;
    t.clean_up().await;
}

async fn missing_group(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    let err = t
        .stream
        .read(&t.name, "nope", "c", 1, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::NoGroup(_)), "{err:?}");
    t.stream.publish(&t.name, &event(1)).await.unwrap();
    let err = t
        .stream
        .read(&t.name, "nope", "c", 1, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::NoGroup(_)), "{err:?}");
    let err = t.stream.lag(&t.name, "nope").await.unwrap_err();
    assert!(matches!(err, StreamError::NoGroup(_)), "{err:?}");
    t.clean_up().await;
}
on_both_streams!(reading_without_a_group_is_no_group, missing_group);

async fn trimming(kind: CacheKind) {
    let t = TestStream::new(kind).await;
    let stream = t.stream.clone().with_max_len(10);
    stream.ensure_group(&t.name, "g").await.unwrap();
    let events: Vec<_> = (0..1000).map(event).collect();
    for chunk in events.chunks(100) {
        stream.publish_batch(&t.name, chunk).await.unwrap();
    }
    let kept = stream
        .read(&t.name, "g", "c", 10_000, Duration::ZERO)
        .await
        .unwrap();
    // Redis trims whole nodes (`~`), so it may keep somewhat more than 10.
    assert!(kept.len() >= 10 && kept.len() < 1000, "{}", kept.len());
    assert_eq!(kept.last().unwrap().event, events[999]);
    t.clean_up().await;
}
on_both_streams!(publishing_trims_to_about_max_len, trimming);

/// A malformed entry (written by something else) is acknowledged and skipped.
mod malformed_entries_are_skipped {
    use super::*;

    #[tokio::test]
    async fn redis() {
        let t = TestStream::new(CacheKind::Redis).await;
        t.stream.ensure_group(&t.name, "g").await.unwrap();
        let client = redis::Client::open(t.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&t.name)
            .arg("*")
            .arg("event")
            .arg("not json")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(&t.name)
            .arg("*")
            .arg("other")
            .arg("{}")
            .query_async(&mut conn)
            .await
            .unwrap();
        let e = event(1);
        t.stream.publish(&t.name, &e).await.unwrap();
        let got = t
            .stream
            .read(&t.name, "g", "c", 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, e);
        assert_eq!(t.stream.lag(&t.name, "g").await.unwrap().pending, 1);
        t.clean_up().await;
    }
}

#[tokio::test]
async fn memory_streams_are_shared_by_name() {
    let name = format!("test:{}:events", ulid::Ulid::new());
    let store = format!("memory://shared-{}", ulid::Ulid::new());
    let a = EventStream::connect(&store).await.unwrap();
    let b = EventStream::connect(&store).await.unwrap();
    let elsewhere = EventStream::connect(&format!("memory://other-{}", ulid::Ulid::new()))
        .await
        .unwrap();
    a.publish(&name, &event(1)).await.unwrap();
    b.ensure_group(&name, "g").await.unwrap();
    assert_eq!(
        b.read(&name, "g", "c", 10, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        1
    );
    elsewhere.ensure_group(&name, "g").await.unwrap();
    assert!(
        elsewhere
            .read(&name, "g", "c", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(a.backend_name(), "memory");
}

#[tokio::test]
async fn bad_urls_never_show_the_password() {
    let err = EventStream::connect("kafka://user:hunter2@broker:9092")
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::InvalidUrl(_)), "{err:?}");
    let err = EventStream::connect("user:hunter2@nowhere")
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::InvalidUrl(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));

    // Port 1 on loopback refuses connections at once.
    let err = EventStream::connect("redis://user:hunter2@127.0.0.1:1/0")
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "password leaked: {text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
}
