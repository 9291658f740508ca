//! Chaos (issue 13): a burst of bookings on two booking replicas while one of
//! two events-service replicas is SIGKILLed and Redis is restarted (empty: no
//! persistence). Every booking event must reach every subscription it matches
//! at least once; duplicates may come only from attempts the killed replica
//! had sent but not recorded; each lifecycle transition happens once across both
//! booking replicas.
//!
//! The test runs a Redis of its own (restarting the shared one would take it
//! away from the tests running beside this one) and a webhook receiver on
//! loopback. `REHEARSAL_CHAOS_BOOKINGS` changes the size of the burst (1,000);
//! `REHEARSAL_KEEP_LOGS=DIR` keeps the parts' and Redis's logs there when the
//! deliveries do not all arrive.
//!
//! Time: the topology starts in a few seconds and the burst takes a few more;
//! what the killed replica had read from the stream but not stored is claimed
//! by the other replica once it has been idle for a minute (the consumer's
//! `min_idle`), and the one-minute bookings end a minute after the next whole
//! minute. So the test takes 80 to 125 seconds, most of it waiting.

use crate::platform::{self, Rehearsal};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use http_body_util::{BodyExt, Full};
use rehearsal::RedisServer;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bookings in the burst, unless `REHEARSAL_CHAOS_BOOKINGS` says otherwise.
const BURST: usize = 1000;
/// Clients booking at once, through the gateway (which alternates between
/// the two booking replicas).
const CLIENTS: usize = 16;
/// Spaces the burst books (quarter hours, from the day after tomorrow on).
const BURST_SPACES: usize = 5;
/// Spaces with one-minute increments for the lifecycle: each gets a
/// one-minute booking at the next whole minute (announced at once, `active`
/// at its start, `completed` with `booking.end` a minute later) and one a few
/// minutes later (announced at once, not started during the test).
const LIFECYCLE_SPACES: usize = 3;
/// events-service's attempts in flight per replica: the killed one can leave
/// at most three times this many sent but unrecorded (in flight, queued for
/// its recorder, being written), which are the only duplicates.
const WORKERS: usize = 16;
/// events-service's attempt timeout: generous, so that a loaded machine does
/// not turn a received delivery into a failed attempt (and a duplicate).
const TIMEOUT_SECS: u64 = 10;
/// events-service's delivery lease (at least the timeout + 10 s): what the
/// killed replica had claimed is attempted again this long after its claim.
const LEASE_SECS: u64 = TIMEOUT_SECS + 10;
/// How long events-service's consumer leaves an entry with a consumer that
/// does not acknowledge it before another claims it (the `events` crate's
/// default, 60 s), plus its claim interval (15 s) and some slack: what the
/// killed replica had read but not stored is stored by then.
const STREAM_RECLAIM: Duration = Duration::from_secs(60 + 15 + 10);

/// SpaceOS webhooks of the first organization: `booking.created` only (`/a`),
/// and the lifecycle too (`/b`); gospace, workspace-wide, the lifecycle too
/// (`/g`); SpaceOS of another organization (`/x`), which must get nothing.
const HOOK_PATHS: [&str; 4] = ["/a", "/b", "/g", "/x"];

fn subscribers(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "booking.created" => &["/a", "/b", "/g"],
        "booking.start" | "booking.end" => &["/b", "/g"],
        _ => &[],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_survive_a_killed_replica_and_a_redis_restart_postgres_redis() {
    let clock = Clock::new();
    let burst = std::env::var("REHEARSAL_CHAOS_BOOKINGS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(BURST);
    let redis_dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(redis_dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let receiver = Receiver::start().await;
    let mut r = Rehearsal::start_with(|options| {
        options.redis_url = redis.url();
        options.gateways = 1;
        options.booking_replicas = 2;
        options.events_replicas = 2;
        let workers = WORKERS.to_string();
        let timeout = TIMEOUT_SECS.to_string();
        let lease = LEASE_SECS.to_string();
        options.extra_env.extend(
            [
                ("EVENTS__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
                ("EVENTS__WEBHOOKS__RETRY_SCHEDULE_SECS", "1,1,2,2,5"),
                ("EVENTS__WEBHOOKS__TIMEOUT_SECS", timeout.as_str()),
                ("EVENTS__WEBHOOKS__LEASE_SECS", lease.as_str()),
                ("EVENTS__WEBHOOKS__WORKERS", workers.as_str()),
                ("EVENTS__WEBHOOKS__POLL_INTERVAL_MS", "200"),
                ("BOOKING__BOOKINGS__LIFECYCLE_INTERVAL_SECS", "1"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
    })
    .await;
    clock.say(&format!(
        "up: private Redis {} (pid {:?}), gateway, 2 booking and 2 events-service replicas",
        redis.url(),
        redis.pid()
    ));
    let booking_db = r.topology.database_url("booking").unwrap().to_owned();
    let events_db = r.topology.database_url("events").unwrap().to_owned();

    // The tenant: two organizations, the burst's spaces and the lifecycle's.
    let org = create(&r, "/api/v1/organizations", organization(1)).await["id"].clone();
    let other_org = create(&r, "/api/v1/organizations", organization(2)).await["id"].clone();
    let mut lifecycle_spaces = Vec::new();
    for i in 0..LIFECYCLE_SPACES {
        lifecycle_spaces.push(space(&r, &org, &format!("chaos-minute-{i}"), 1).await);
    }
    let mut burst_spaces = Vec::new();
    for i in 0..BURST_SPACES {
        burst_spaces.push(space(&r, &org, &format!("chaos-room-{i}"), 15).await);
    }
    let mut hooks = HashMap::new();
    for (path, org, events) in [
        ("/a", &org, json!(["booking.created"])),
        (
            "/b",
            &org,
            json!(["booking.created", "booking.start", "booking.end"]),
        ),
        (
            "/x",
            &other_org,
            json!(["booking.created", "booking.start", "booking.end"]),
        ),
    ] {
        let hook = create(
            &r,
            "/api/v1/webhooks",
            json!({"organization_id": org, "url": receiver.url(path), "events": events}),
        )
        .await;
        hooks.insert(hook["id"].as_str().unwrap().to_owned(), path);
    }
    let hook = create(
        &r,
        "/v1/webhooks/webhooks",
        json!({"endpoint": receiver.url("/g"),
               "events": ["booking.created", "booking.start", "booking.end"]}),
    )
    .await;
    hooks.insert(hook["id"].as_str().unwrap().to_owned(), "/g");

    // The lifecycle's bookings first, so that their minute runs beside the
    // burst: the next whole minute with a few seconds to spare.
    let now = Utc::now();
    let mut minute = DateTime::from_timestamp(now.timestamp() / 60 * 60, 0).unwrap()
        + chrono::Duration::minutes(1);
    if minute - now < chrono::Duration::seconds(2) {
        minute += chrono::Duration::minutes(1);
    }
    let mut short = Vec::new();
    let mut soon = Vec::new();
    for (i, space) in lifecycle_spaces.iter().enumerate() {
        let made = r
            .book(0, space, minute, minute + chrono::Duration::minutes(1))
            .await;
        assert_eq!(made.0, 201, "{}", made.1);
        short.push(made.1["data"]["id"].as_str().unwrap().to_owned());
        let from = minute + chrono::Duration::minutes(5 + i as i64);
        let made = r
            .book(0, space, from, from + chrono::Duration::minutes(1))
            .await;
        assert_eq!(made.0, 201, "{}", made.1);
        soon.push(made.1["data"]["id"].as_str().unwrap().to_owned());
    }
    let lifecycle_done_by = clock.instant_of(minute + chrono::Duration::minutes(1));
    clock.say(&format!(
        "{} one-minute bookings at {minute}, {} more a few minutes later",
        short.len(),
        soon.len()
    ));

    // The burst, with the kill at a third of it and the restart at two thirds.
    let done = Arc::new(AtomicUsize::new(0));
    let burst_started = Instant::now();
    let clients = start_burst(&r, &burst_spaces, burst, done.clone());
    wait_for(&done, burst / 3, &clock).await;
    r.topology.events[1].kill().unwrap();
    let killed_at = Instant::now();
    r.topology.events[1]
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap();
    clock.say(&format!(
        "SIGKILL events-service-2 after {} bookings",
        done.load(Ordering::Relaxed)
    ));
    wait_for(&done, burst * 2 / 3, &clock).await;
    let at = done.load(Ordering::Relaxed);
    redis.restart(Duration::from_secs(1)).await.unwrap();
    clock.say(&format!(
        "Redis killed at {at} bookings, started again empty (pid {:?})",
        redis.pid()
    ));
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }
    let burst_time = burst_started.elapsed();
    let failed: Vec<_> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    assert!(failed.is_empty(), "bookings that failed: {failed:?}");
    let retried = outcomes.iter().filter(|o| o.tries > 1).count();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for outcome in &outcomes {
        for answer in &outcome.answers {
            *seen.entry(answer.clone()).or_default() += 1;
        }
    }
    clock.say(&format!(
        "burst of {burst} done in {:.1} s ({:.0}/s); {retried} needed more than one try; answers: {seen:?}",
        burst_time.as_secs_f64(),
        burst as f64 / burst_time.as_secs_f64()
    ));

    // Everything delivered: every booking event of the outbox (both replicas
    // write to one database) at every subscription it matches, the lifecycle's
    // ends included, and events-service has no delivery left to make.
    let deadline = lifecycle_done_by
        .max(killed_at + STREAM_RECLAIM)
        .max(Instant::now())
        + Duration::from_secs(20);
    let mut last_report = Instant::now();
    let (outbox, deliveries) = loop {
        let outbox: Vec<OutboxRow> = query(
            &booking_db,
            "SELECT seq, id, event_type, subject_id, (published_at IS NOT NULL)::int AS published \
             FROM outbox WHERE event_type LIKE 'booking.%' ORDER BY seq",
        )
        .await;
        let deliveries: Vec<DeliveryRow> = query(
            &events_db,
            "SELECT d.id, d.subscription_id, d.event_id, d.status, d.attempts, d.last_error, \
                    e.event_type, e.subject_id \
             FROM deliveries d JOIN events e ON e.id = d.event_id",
        )
        .await;
        let received = receiver.keys();
        let missing = missing(&outbox, &received);
        let ends = outbox
            .iter()
            .filter(|e| e.event_type == "booking.end")
            .count();
        let unsettled = deliveries
            .iter()
            .filter(|d| d.status != "succeeded")
            .count();
        if missing.is_empty() && ends >= short.len() && unsettled == 0 {
            break (outbox, deliveries);
        }
        if Instant::now() > deadline {
            if let Ok(keep) = std::env::var("REHEARSAL_KEEP_LOGS") {
                let _ = std::process::Command::new("cp")
                    .arg("-r")
                    .arg(r.dir())
                    .arg(&keep)
                    .status();
                let _ = std::process::Command::new("cp")
                    .arg("-r")
                    .arg(redis_dir.path())
                    .arg(format!("{keep}/redis"))
                    .status();
            }
            let mut warnings = String::new();
            for part in &r.topology.events {
                let lines = part.log_tail(2000);
                let warned: Vec<&String> = lines
                    .iter()
                    .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
                    .collect();
                warnings += &format!(
                    "\n{}: {} warnings; the last:\n{}",
                    part.name(),
                    warned.len(),
                    warned[warned.len().saturating_sub(3)..]
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            panic!(
                "{}{warnings}",
                diagnose(&events_db, &outbox, &missing, &deliveries, ends, &short).await
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            clock.say(&format!(
                "waiting: {} (event, subscription) pairs not received, {ends}/{} booking.end, {unsettled} deliveries not settled",
                missing.len(),
                short.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    clock.say("every event received by every subscription it matches");

    // No loss, no stray delivery.
    let receipts = receiver.receipts();
    let expected: usize = outbox
        .iter()
        .map(|e| subscribers(&e.event_type).len())
        .sum();
    let distinct: HashSet<(String, String, String)> = receipts.iter().map(Receipt::key).collect();
    assert_eq!(
        distinct.len(),
        expected,
        "received pairs beyond the expected"
    );
    assert!(
        receipts.iter().all(|r| r.path != "/x"),
        "another organization's webhook got the first one's events"
    );
    let delivered_events: HashSet<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
    for event in &outbox {
        assert_eq!(event.published, 1, "outbox row {} not published", event.id);
        if !subscribers(&event.event_type).is_empty() {
            assert!(delivered_events.contains(event.id.as_str()));
        }
    }

    // Duplicates: one delivery (one `webhook-id`) received more than once,
    // always one that was first received while the killed replica was alive
    // (it sent it and died before recording the answer; the lease ran out and
    // the other replica sent it again). Never one event under two deliveries.
    let by_delivery: HashMap<&str, &DeliveryRow> =
        deliveries.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut per_key: HashMap<(String, String, String), Vec<&Receipt>> = HashMap::new();
    for receipt in &receipts {
        per_key.entry(receipt.key()).or_default().push(receipt);
    }
    let mut duplicates = 0;
    for (key, got) in &per_key {
        let ids: HashSet<&str> = got.iter().map(|r| r.webhook_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            1,
            "{key:?} arrived under several deliveries: {ids:?}"
        );
        let delivery = by_delivery
            .get(got[0].webhook_id.as_str())
            .unwrap_or_else(|| panic!("webhook-id {} is no delivery", got[0].webhook_id));
        assert_eq!(hooks[&delivery.subscription_id], key.0);
        assert_eq!(
            (&delivery.event_type, &delivery.subject_id),
            (&key.1, &key.2)
        );
        if got.len() > 1 {
            duplicates += got.len() - 1;
            let first = got.iter().map(|r| r.at).min().unwrap();
            assert!(
                first <= killed_at + Duration::from_secs(1),
                "{key:?} was received {} times, the first {:?} after the kill: only attempts in flight at the kill may repeat",
                got.len(),
                first - killed_at
            );
        }
    }
    // Sent but not yet recorded when the replica died: at most its workers'
    // attempts in flight, as many queued for the recorder, and as many being
    // written (events-service's dispatch module).
    assert!(
        duplicates <= 3 * WORKERS,
        "{duplicates} duplicates: more than the killed replica's {WORKERS} workers could have had sent and not recorded"
    );

    // The lifecycle: each transition once, across both booking replicas.
    let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
    for event in &outbox {
        *counts
            .entry((event.event_type.as_str(), event.subject_id.as_str()))
            .or_default() += 1;
    }
    let count = |event_type: &str, booking: &str| {
        counts
            .get(&(event_type, booking))
            .copied()
            .unwrap_or_default()
    };
    let bookings: Vec<BookingRow> = query(&booking_db, "SELECT id, status FROM bookings").await;
    assert_eq!(bookings.len(), burst + short.len() + soon.len());
    for booking in &bookings {
        assert_eq!(count("booking.created", &booking.id), 1, "{}", booking.id);
        let (starts, ends, status) = if short.contains(&booking.id) {
            (1, 1, "completed")
        } else if soon.contains(&booking.id) {
            (1, 0, "confirmed")
        } else {
            (0, 0, "confirmed")
        };
        assert_eq!(
            count("booking.start", &booking.id),
            starts,
            "{}",
            booking.id
        );
        assert_eq!(count("booking.end", &booking.id), ends, "{}", booking.id);
        assert_eq!(booking.status, status, "{}", booking.id);
    }
    let kinds: HashSet<&str> = outbox.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        HashSet::from(["booking.created", "booking.start", "booking.end"]),
        "unexpected booking events"
    );

    let per_path: BTreeMap<&str, usize> = HOOK_PATHS
        .iter()
        .map(|p| (*p, receipts.iter().filter(|r| r.path == *p).count()))
        .collect();
    clock.say(&format!(
        "{} booking events ({} booking.start, {} booking.end), {expected} (event, subscription) pairs: \
         {} deliveries received ({per_path:?}), {duplicates} duplicates, 0 lost; \
         lifecycle transitions once each",
        outbox.len(),
        outbox.iter().filter(|e| e.event_type == "booking.start").count(),
        outbox.iter().filter(|e| e.event_type == "booking.end").count(),
        receipts.len(),
    ));
}

/// Seconds since the test began, for its log.
struct Clock {
    start: Instant,
    start_utc: DateTime<Utc>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            start_utc: Utc::now(),
        }
    }

    fn say(&self, what: &str) {
        println!("[{:6.1} s] {what}", self.start.elapsed().as_secs_f64());
    }

    /// The `Instant` of a wall-clock time.
    fn instant_of(&self, at: DateTime<Utc>) -> Instant {
        let offset = (at - self.start_utc).to_std().unwrap_or_default();
        self.start + offset
    }
}

async fn create(r: &Rehearsal, path: &str, body: Value) -> Value {
    let (status, answer) = r
        .send(
            0,
            r.request(0, reqwest::Method::POST, path)
                .bearer_auth(&r.owner_token)
                .json(&body),
        )
        .await;
    assert_eq!(status, 201, "POST {path}: {answer}");
    answer["data"].clone()
}

fn organization(n: usize) -> Value {
    json!({"name": format!("Chaos {n}"), "slug": format!("chaos-org-{n}"), "timezone": "UTC"})
}

/// A meeting space bookable around the clock in `increment`-minute steps.
async fn space(r: &Rehearsal, org: &Value, slug: &str, increment: u32) -> String {
    let space = create(
        r,
        "/api/v1/meeting-spaces",
        json!({
            "organization_id": org,
            "name": slug,
            "slug": slug,
            "capacity": 4,
            "booking_increment": increment,
            "min_duration": increment,
            "max_duration": 240,
        }),
    )
    .await;
    space["id"].as_str().unwrap().to_owned()
}

/// What became of one booking of the burst.
#[derive(Debug)]
#[allow(dead_code)] // `slot` is printed when a booking failed
struct Outcome {
    slot: usize,
    tries: u32,
    /// Each try's answer: a status, or the transport error's kind.
    answers: Vec<String>,
    result: Result<(), String>,
}

/// `CLIENTS` clients book `count` distinct quarter hours of `spaces` through
/// the gateway, each retrying (with its `Idempotency-Key`) what failed in
/// transit or with 5xx, as a client would; `done` counts finished bookings.
fn start_burst(
    r: &Rehearsal,
    spaces: &[String],
    count: usize,
    done: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    let next = Arc::new(AtomicUsize::new(0));
    let first_day = platform::day_start(2);
    let run = Utc::now().timestamp_millis();
    (0..CLIENTS)
        .map(|_| {
            let request = r
                .request(0, reqwest::Method::POST, "/api/v1/bookings")
                .bearer_auth(&r.owner_token);
            let (next, done, spaces) = (next.clone(), done.clone(), spaces.to_vec());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    if slot >= count {
                        return outcomes;
                    }
                    let space = &spaces[slot % spaces.len()];
                    let quarter = (slot / spaces.len()) as i64;
                    let from = first_day + chrono::Duration::minutes(15 * quarter);
                    let body = platform::booking(space, from, from + chrono::Duration::minutes(15));
                    let key = format!("chaos-{run}-{slot}");
                    outcomes.push(book_until_answered(&request, &body, &key, slot).await);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

async fn book_until_answered(
    request: &reqwest::RequestBuilder,
    body: &Value,
    key: &str,
    slot: usize,
) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut outcome = Outcome {
        slot,
        tries: 0,
        answers: Vec::new(),
        result: Err("not tried".into()),
    };
    loop {
        outcome.tries += 1;
        let sent = request
            .try_clone()
            .unwrap()
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await;
        let retry = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                outcome.answers.push(status.to_string());
                let text = response.text().await.unwrap_or_default();
                match status {
                    201 => {
                        outcome.result = Ok(());
                        return outcome;
                    }
                    429 | 500..=599 => {
                        outcome.result = Err(format!("{status}: {text}"));
                        true
                    }
                    _ => {
                        outcome.result = Err(format!("{status}: {text}"));
                        false
                    }
                }
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                outcome.answers.push(kind.into());
                outcome.result = Err(format!("{e:?}"));
                true
            }
        };
        if !retry || Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `done` reaches `count` (the burst is far from stalling).
async fn wait_for(done: &AtomicUsize, count: usize, clock: &Clock) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < count {
        if Instant::now() > deadline {
            clock.say("the burst stalled");
            panic!(
                "the burst stalled at {} bookings",
                done.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Receipt {
    at: Instant,
    /// Which subscription: each has its own path.
    path: String,
    /// The delivery (the same on every attempt of one event to one webhook).
    webhook_id: String,
    event: String,
    booking: String,
}

impl Receipt {
    /// (subscription, event type, booking): one event at one subscription.
    fn key(&self) -> (String, String, String) {
        (self.path.clone(), self.event.clone(), self.booking.clone())
    }
}

/// A webhook receiver on loopback that answers 200 to everything and keeps
/// what it got.
struct Receiver {
    addr: SocketAddr,
    receipts: Arc<Mutex<Vec<Receipt>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receipts: Arc<Mutex<Vec<Receipt>>> = Arc::default();
        let kept = receipts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let kept = kept.clone();
                        async move { receive(request, &kept).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            receipts,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn receipts(&self) -> Vec<Receipt> {
        self.receipts.lock().unwrap().clone()
    }

    fn keys(&self) -> HashSet<(String, String, String)> {
        self.receipts
            .lock()
            .unwrap()
            .iter()
            .map(Receipt::key)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    request: hyper::Request<hyper::body::Incoming>,
    kept: &Mutex<Vec<Receipt>>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_owned();
    let webhook_id = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request.into_body().collect().await?.to_bytes();
    let at = Instant::now();
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    // SpaceOS bodies carry `data`, gospace's `payload`.
    let data = match json.get("payload") {
        Some(payload) => payload,
        None => &json["data"],
    };
    let receipt = Receipt {
        at,
        path,
        webhook_id,
        event: json["event"].as_str().unwrap_or_default().to_owned(),
        booking: data["booking_id"].as_str().unwrap_or_default().to_owned(),
    };
    kept.lock().unwrap().push(receipt);
    Ok(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// (subscription, event type, booking, event id) of every outbox event not
/// received by a subscription it matches.
fn missing(
    outbox: &[OutboxRow],
    received: &HashSet<(String, String, String)>,
) -> Vec<(String, String, String, String)> {
    let mut missing = Vec::new();
    for event in outbox {
        for path in subscribers(&event.event_type) {
            let key = (
                (*path).to_owned(),
                event.event_type.clone(),
                event.subject_id.clone(),
            );
            if !received.contains(&key) {
                missing.push((key.0, key.1, key.2, event.id.clone()));
            }
        }
    }
    missing
}

/// Where the missing events were lost, for the failure message.
async fn diagnose(
    events_db: &str,
    outbox: &[OutboxRow],
    missing: &[(String, String, String, String)],
    deliveries: &[DeliveryRow],
    ends: usize,
    short: &[String],
) -> String {
    let stored: HashSet<String> = query::<IdRow>(events_db, "SELECT id FROM events")
        .await
        .into_iter()
        .map(|row| row.id)
        .collect();
    let missing_events: HashSet<&str> = missing.iter().map(|m| m.3.as_str()).collect();
    let never_stored = missing_events
        .iter()
        .filter(|id| !stored.contains(**id))
        .count();
    let unpublished = outbox.iter().filter(|e| e.published == 0).count();
    // Runs of consecutive outbox rows (by `seq`) whose events are missing.
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for event in outbox {
        if !missing_events.contains(event.id.as_str()) {
            continue;
        }
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == event.seq => *last = event.seq,
            _ => runs.push((event.seq, event.seq)),
        }
    }
    let unsettled: Vec<&DeliveryRow> = deliveries
        .iter()
        .filter(|d| d.status != "succeeded")
        .take(10)
        .collect();
    format!(
        "not everything was delivered in time:\n\
         - {} (event, subscription) pairs not received, of {} events; e.g. {:?}\n\
         - {never_stored} of those {} events are not in events-service's database at all \
           (published to the stream, per the outbox, and never stored by events-service)\n\
         - runs of outbox seq missing (of {}..={}): {runs:?}\n\
         - {unpublished} outbox rows still unpublished\n\
         - {ends}/{} booking.end recorded\n\
         - deliveries not settled (first 10): {unsettled:#?}",
        missing.len(),
        outbox.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        missing_events.len(),
        outbox.first().map_or(0, |e| e.seq),
        outbox.last().map_or(0, |e| e.seq),
        short.len(),
    )
}

/// Rows of `sql` on the database at `url`.
async fn query<T>(url: &str, sql: &'static str) -> Vec<T>
where
    T: QueryableByName<diesel::pg::Pg> + Send + 'static,
{
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        diesel::sql_query(sql).load::<T>(&mut conn).unwrap()
    })
    .await
    .unwrap()
}

#[derive(QueryableByName, Debug)]
struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    subject_id: String,
    #[diesel(sql_type = Integer)]
    published: i32,
}

#[derive(QueryableByName, Debug)]
#[allow(dead_code)] // printed when a delivery is missing
struct DeliveryRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    subscription_id: String,
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    subject_id: String,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

#[derive(QueryableByName)]
struct BookingRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    status: String,
}
