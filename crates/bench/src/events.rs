//! The events benchmark, on PostgreSQL + Redis: booking-service records
//! `booking.created` in its outbox, its relay publishes it to a Redis stream,
//! events-service consumes the stream, stores the event with its deliveries
//! and POSTs each to a receiver. In one run:
//!
//! - **raw Redis Streams**: `XADD` (batches of 100 in `MULTI`/`EXEC`, as the
//!   relay publishes) beside one consumer's `XREADGROUP COUNT 64` + `XACK` (as
//!   events-service consumes), through `events::EventStream`, entries of the
//!   size of a `booking.created` event: the rate the stream itself allows;
//! - **commit → receiver**: bookings created through booking-service at a
//!   steady rate (open loop, 1,000/s) with one SpaceOS webhook subscribed to
//!   `booking.created`; the receiver reads `data.booking_id` from each body and
//!   the bench matches it to the moment the create answered 201. Every booking
//!   must arrive at least once; duplicates are counted. Where the time goes is
//!   read afterwards from the stream entry ids (when Redis took the event) and
//!   events-service's database (when it stored the event, when it started the
//!   attempt);
//! - **sustained deliveries/s**: `booking.created` events published straight to
//!   the stream (paced above the target, so a backlog forms when events-service
//!   cannot keep up) for another organization with `--fanout` webhooks to the
//!   same receiver; deliveries received per second in a window after a warm-up,
//!   with the stream's and the delivery table's backlog at its end, which says
//!   whether intake or delivery held the rate;
//! - events-service's peak RSS (VmHWM) after that load, and CPU per delivery.
//!
//! The receiver is a hyper HTTP/1 server in the bench process on 127.0.0.1
//! answering 204 (events-service runs with `webhooks.allow_private_targets`).
//! The services run as their own release binaries on scratch databases,
//! called directly with identity tokens signed by the bench's gateway key, as
//! the gateway would. Every Redis key of a run is under a fresh prefix and
//! deleted at the end.

use crate::cpu::{CpuSample, CpuUsage};
use crate::redis_keys::{RedisKeys, redis_version};
use crate::report::{self, MAX_ERROR_RATIO, millis, verdict};
use crate::service::{self, Settings};
use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Duration as Days, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::{PgConnection, sql_query};
use events::{Event, EventStream, Lag};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use identity::{Identity, IdentitySigner, PrincipalType, ScopeSet, SigningKey};
use launcher::{Memory, ScratchDatabase};
use service_kit::ids::{self, prefix};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const POOL_SIZE: u32 = 16;
/// The producer whose stream events-service consumes here.
const PRODUCER: &str = "booking-service";
/// Create requests in flight at most; beyond, the generator falls behind its
/// schedule (and says so) rather than piling up connections.
const MAX_IN_FLIGHT: usize = 512;
/// Events per `XADD` batch, as the relay's default batch.
const PUBLISH_BATCH: usize = events::defaults::RELAY_BATCH;
/// Entries per `XREADGROUP`, as events-service's consumer.
const READ_BATCH: usize = events::defaults::CONSUMER_BATCH;
/// After the last create, how long the bench waits for missing deliveries
/// while none arrives, and at most in all.
const DRAIN_IDLE: Duration = Duration::from_secs(15);
const DRAIN_MAX: Duration = Duration::from_secs(120);
/// Once every booking arrived, how much longer duplicates are counted.
const DUPLICATE_GRACE: Duration = Duration::from_secs(1);
/// The sustained phase publishes for this long before its window opens.
const SUSTAINED_WARMUP: Duration = Duration::from_secs(2);
/// The sustained phase publishes one batch this often.
const PUBLISH_TICK: Duration = Duration::from_millis(10);

/// p99 from booking commit to the receiver should stay below this.
pub const LATENCY_P99_TARGET: Duration = Duration::from_millis(250);
/// Deliveries/s one events-service should sustain to one receiver.
pub const DELIVERY_RATE_TARGET: f64 = 5_000.0;
/// Peak RSS of events-service should stay below this, in bytes (decimal MB).
pub const RSS_TARGET_BYTES: u64 = 60_000_000;

pub struct Options {
    /// Bookings created per second in the latency phase.
    pub rate: u32,
    pub duration: Duration,
    /// Meeting spaces the created bookings spread over.
    pub spaces: usize,
    /// Webhooks (same receiver) each event of the sustained phase reaches.
    pub fanout: usize,
    /// Events/s published in the sustained phase.
    pub offered: u32,
    /// Entries of the raw Redis Streams phase.
    pub raw_entries: usize,
    pub database_url: String,
    pub redis_url: String,
    pub booking_bin: PathBuf,
    pub events_bin: PathBuf,
    /// Extra `EVENTS__…` / `BOOKING__…` variables (experiments).
    pub events_env: Vec<(String, String)>,
    pub booking_env: Vec<(String, String)>,
    pub cores: usize,
}

/// Quantiles of a sorted list of durations, nearest rank.
#[derive(Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut values: Vec<Duration>) -> Latencies {
        values.sort_unstable();
        Latencies(values)
    }

    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        Some(self.0[rank - 1])
    }
}

/// CPU seconds of one phase, by part.
pub struct PhaseCpu {
    pub usage: CpuUsage,
    pub events_service: f64,
    pub booking_service: f64,
    pub redis: f64,
}

impl PhaseCpu {
    fn between(before: &CpuSample, after: &CpuSample, events: u32, booking: u32) -> PhaseCpu {
        PhaseCpu {
            usage: before.until(after, Some(events)),
            events_service: before.pid_secs(after, events),
            booking_service: before.pid_secs(after, booking),
            redis: before.named_secs(after, "redis-server"),
        }
    }

    /// CPU time of processes that are no part of the bench (other builds
    /// and tests on the machine).
    fn outside(&self) -> f64 {
        (self.usage.other_processes - self.booking_service - self.redis).max(0.0)
    }

    /// Busy time no process is charged with: the kernel's own (loopback
    /// networking in softirq, steal) and processes that exited.
    fn kernel(&self) -> f64 {
        (self.usage.other - self.usage.other_processes).max(0.0)
    }

    /// Other processes, or processes that came and went (a build's
    /// compilers), took a noticeable share of the machine.
    fn disturbed(&self) -> bool {
        self.outside() + self.kernel() > 0.05 * self.usage.total()
    }
}

/// The raw stream phase.
pub struct RawStreams {
    pub entries: usize,
    pub payload_bytes: usize,
    /// First `XADD` to last `XACK`.
    pub elapsed: Duration,
    /// First to last `XADD`.
    pub publish_elapsed: Duration,
    pub cpu: Option<PhaseCpu>,
}

impl RawStreams {
    pub fn rate(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn publish_rate(&self) -> f64 {
        self.entries as f64 / self.publish_elapsed.as_secs_f64().max(1e-9)
    }
}

/// Medians and p99s of the four legs, in milliseconds (wall clocks of one
/// machine, millisecond precision).
pub struct Legs {
    pub matched: usize,
    /// occurred_at (in the booking's transaction) → the stream entry's time.
    pub relay: Latencies,
    /// Stream entry → events-service stored the event.
    pub intake: Latencies,
    /// Stored → the first attempt started.
    pub claim: Latencies,
    /// Attempt started → the receiver had the body.
    pub send: Latencies,
}

/// The commit → receiver phase.
pub struct LatencyPhase {
    pub requested: u64,
    pub created: u64,
    pub errors: BTreeMap<String, u64>,
    /// First request to last 201.
    pub create_elapsed: Duration,
    /// How far behind its schedule the generator fell at most.
    pub max_lag: Duration,
    pub create_latency: Latencies,
    /// Per booking, first delivery − its 201.
    pub latency: Latencies,
    pub delivered: usize,
    pub deliveries: usize,
    pub duplicates: usize,
    /// Deliveries of bookings the bench does not know (a create that failed
    /// on the client's side after its commit).
    pub unknown: usize,
    /// Deliveries that arrived before the bench saw the 201 (counted as 0).
    pub before_answer: usize,
    /// Last create → last first delivery.
    pub drain: Duration,
    pub legs: Option<Legs>,
    pub cpu: Option<PhaseCpu>,
    /// events-service's database from the first create to the drain's end.
    pub db: Option<DbStats>,
}

impl LatencyPhase {
    pub fn create_rate(&self) -> f64 {
        self.created as f64 / self.create_elapsed.as_secs_f64().max(1e-9)
    }

    pub fn missing(&self) -> u64 {
        self.created.saturating_sub(self.delivered as u64)
    }

    fn error_ratio(&self) -> f64 {
        let failed: u64 = self.errors.values().sum();
        failed as f64 / (self.created + failed).max(1) as f64
    }
}

/// The sustained phase.
pub struct SustainedPhase {
    pub fanout: usize,
    pub offered: u32,
    pub window: Duration,
    /// Deliveries received in the window.
    pub in_window: usize,
    pub published: u64,
    pub delivered_total: usize,
    /// The stream's group at the end of the window.
    pub lag: Option<Lag>,
    /// Deliveries stored and not yet sent at the end of the window.
    pub pending_deliveries: Option<i64>,
    pub cpu: Option<PhaseCpu>,
    /// events-service's database in the window.
    pub db: Option<DbStats>,
}

/// Counters of events-service's database (`pg_stat_database`, and the
/// `deliveries` table's scans). PostgreSQL flushes them about once a second
/// per backend: approximate over a short window.
#[derive(QueryableByName, Clone, Copy, Default)]
pub struct DbStats {
    #[diesel(sql_type = BigInt)]
    pub commits: i64,
    #[diesel(sql_type = BigInt)]
    pub inserted: i64,
    #[diesel(sql_type = BigInt)]
    pub updated: i64,
    /// Sequential scans of `deliveries`.
    #[diesel(sql_type = BigInt)]
    pub deliveries_seq_scans: i64,
    /// Rows (sequential scans) and index entries (index and bitmap scans)
    /// of `deliveries` read.
    #[diesel(sql_type = BigInt)]
    pub deliveries_read: i64,
}

impl DbStats {
    fn take(conn: &mut PgConnection) -> Option<DbStats> {
        sql_query(
            "SELECT d.xact_commit AS commits, d.tup_inserted AS inserted, d.tup_updated AS updated, \
             coalesce(t.seq_scan, 0) AS deliveries_seq_scans, \
             (coalesce(t.seq_tup_read, 0) + coalesce((SELECT sum(idx_tup_read) FROM pg_stat_user_indexes \
               WHERE relname = 'deliveries'), 0))::bigint AS deliveries_read \
             FROM pg_stat_database d LEFT JOIN pg_stat_user_tables t ON t.relname = 'deliveries' \
             WHERE d.datname = current_database()",
        )
        .get_result(conn)
        .ok()
    }

    fn until(self, later: DbStats) -> DbStats {
        DbStats {
            commits: later.commits - self.commits,
            inserted: later.inserted - self.inserted,
            updated: later.updated - self.updated,
            deliveries_seq_scans: later.deliveries_seq_scans - self.deliveries_seq_scans,
            deliveries_read: later.deliveries_read - self.deliveries_read,
        }
    }

    /// One line: per delivery, and the table scans.
    fn line(&self, phase: &str, deliveries: usize) -> String {
        let per = |n: i64| n as f64 / deliveries.max(1) as f64;
        format!(
            "  events-service's database ({phase}; pg_stat, approximate): per delivery {:.2} commits, {:.2} rows inserted, {:.2} updated, \
             {:.0} rows or index entries of `deliveries` read ({} sequential scans of it)\n",
            per(self.commits),
            per(self.inserted),
            per(self.updated),
            per(self.deliveries_read),
            self.deliveries_seq_scans,
        )
    }
}

impl SustainedPhase {
    pub fn rate(&self) -> f64 {
        self.in_window as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The rate reached the offered one: the figure is a floor.
    fn capped(&self) -> bool {
        self.rate() >= 0.97 * f64::from(self.offered) * self.fanout as f64
    }
}

pub struct EventsReport {
    pub postgres_version: String,
    pub redis_version: String,
    pub raw: RawStreams,
    pub latency: LatencyPhase,
    pub sustained: SustainedPhase,
    pub memory: Memory,
    /// pgbench's rate of the intake's transaction: (1 client, 8 clients).
    pub intake_reference: Option<(f64, f64)>,
    pub booking_log: (usize, Vec<String>),
    pub events_log: (usize, Vec<String>),
}

/// Calls a service as the gateway makes them: with an identity token.
struct ServiceApi {
    http: reqwest::Client,
    base: String,
    audience: &'static str,
    signer: Arc<IdentitySigner>,
    caller: Identity,
}

impl ServiceApi {
    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<(u16, Vec<u8>)> {
        let token = self.signer.token_for(&self.caller, self.audience);
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(identity::HEADER, token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path} to {}", self.audience))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((status, bytes.to_vec()))
    }

    /// POSTs, expects 201, returns `data.id`.
    async fn create(&self, path: &str, body: serde_json::Value) -> Result<String> {
        let (status, bytes) = self.post(path, &body).await?;
        if status != 201 {
            bail!(
                "POST {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let answer: serde_json::Value = serde_json::from_slice(&bytes)?;
        answer["data"]["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("POST {path}: no data.id"))
    }
}

/// What the receiver got: one webhook delivery.
struct Received {
    booking_id: String,
    webhook_id: String,
    at: Instant,
    wall_ms: i64,
}

#[derive(Default)]
struct ReceiverLog {
    entries: Mutex<Vec<Received>>,
    /// Bodies without `webhook_id` or `data.booking_id`.
    unreadable: AtomicU64,
}

impl ReceiverLog {
    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Applies `f` to the entries from `from` on; returns the new length.
    fn scan(&self, from: usize, mut f: impl FnMut(&Received)) -> usize {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in entries.iter().skip(from) {
            f(entry);
        }
        entries.len()
    }
}

/// A local webhook receiver: hyper's HTTP/1 server on 127.0.0.1, answering
/// every POST 204 after reading its body. Stopped when dropped.
struct Receiver {
    addr: SocketAddr,
    log: Arc<ReceiverLog>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the receiver")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(ReceiverLog::default());
        let shared = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let log = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| receive(log.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Receiver { addr, log, task })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    log: Arc<ReceiverLog>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let at = Instant::now();
    let wall_ms = Utc::now().timestamp_millis();
    let parsed = body
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let fields = parsed.as_ref().and_then(|v| {
        Some((
            v["data"]["booking_id"].as_str()?.to_owned(),
            v["webhook_id"].as_str()?.to_owned(),
        ))
    });
    match fields {
        Some((booking_id, webhook_id)) => log
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Received {
                booking_id,
                webhook_id,
                at,
                wall_ms,
            }),
        None => {
            log.unreadable.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// A `booking.created` event as booking-service writes it, for `org`.
fn booking_created(workspace: &str, org: &str, space: &str, n: u64) -> Event {
    let booking = ids::new_id(prefix::BOOKING);
    let start = DateTime::from_timestamp(1_900_000_000 + 3_600 * n as i64, 0).unwrap_or_default();
    let data = serde_json::json!({
        "booking_id": booking,
        "meeting_space_id": space,
        "organization_id": org,
        "start_time": service_kit::time::format_rfc3339(start),
        "end_time": service_kit::time::format_rfc3339(start + Days::hours(1)),
        "status": "confirmed",
        "organizer": {"name": "Bench", "email": "bench@example.com"},
    });
    Event::new(PRODUCER, "booking.created", &booking, data, None)
        .with_workspace(workspace)
        .with_organization(org)
}

pub async fn run(options: &Options) -> Result<EventsReport> {
    let redis_version = redis_version(&options.redis_url).await?;
    // Declared before the services, so dropped (the keys deleted) after them.
    let keys = RedisKeys::fresh(&options.redis_url)?;
    let run_prefix = keys.prefix().to_owned();
    let stream_name = format!("{run_prefix}:events:{PRODUCER}");
    let group = format!("{run_prefix}:events-service");
    let raw_stream = format!("{run_prefix}:raw");
    // Declared before the services, so dropped after them.
    let booking_db = ScratchDatabase::create(&options.database_url, "spaceport_bench")?;
    let events_db = ScratchDatabase::create(&options.database_url, "spaceport_bench_events")?;
    let dir = service::scratch_dir()?;
    let receiver = Receiver::start().await?;
    let gateway_key = SigningKey::generate()?;
    let public_pem = gateway_key.public_pem();

    let mut booking_env = vec![
        (
            "BOOKING__EVENTS__STREAM_URL".to_owned(),
            options.redis_url.clone(),
        ),
        ("BOOKING__EVENTS__STREAM".to_owned(), stream_name.clone()),
    ];
    booking_env.extend(options.booking_env.iter().cloned());
    let mut booking = service::start(
        &options.booking_bin,
        &Settings {
            name: "booking-service",
            env_prefix: "BOOKING",
            database_url: booking_db.url(),
            pool_size: POOL_SIZE,
            gateway_public_pem: &public_pem,
            root_secret: false,
            dir: dir.path(),
        },
        &booking_env,
    )
    .await?;
    let mut events_env = vec![
        (
            "EVENTS__EVENTS__STREAM_URL".to_owned(),
            options.redis_url.clone(),
        ),
        ("EVENTS__EVENTS__STREAMS".to_owned(), stream_name.clone()),
        ("EVENTS__EVENTS__GROUP".to_owned(), group.clone()),
        (
            "EVENTS__WEBHOOKS__ALLOW_PRIVATE_TARGETS".to_owned(),
            "true".to_owned(),
        ),
        (
            "EVENTS__MAIL__URL".to_owned(),
            format!("file://{}", dir.path().join("outbox").display()),
        ),
    ];
    events_env.extend(options.events_env.iter().cloned());
    let mut events_service = service::start(
        &options.events_bin,
        &Settings {
            name: "events-service",
            env_prefix: "EVENTS",
            database_url: events_db.url(),
            pool_size: POOL_SIZE,
            gateway_public_pem: &public_pem,
            root_secret: true,
            dir: dir.path(),
        },
        &events_env,
    )
    .await?;

    let workspace = "wrk_01BENCH0000000000000000000".to_owned();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let signer = Arc::new(IdentitySigner::new(gateway_key, Duration::from_secs(60)));
    let caller = Identity {
        principal_id: "usr_01BENCH0000000000000000000".into(),
        principal_type: PrincipalType::User,
        workspace_id: Some(workspace.clone()),
        scopes: ScopeSet::all(),
        space_id: None,
        organization_id: None,
    };
    let booking_api = Arc::new(ServiceApi {
        http: http.clone(),
        base: booking.base_url(),
        audience: "booking-service",
        signer: signer.clone(),
        caller: caller.clone(),
    });
    let events_api = ServiceApi {
        http: http.clone(),
        base: events_service.base_url(),
        audience: "events-service",
        signer,
        caller,
    };

    // Setup through the APIs: an organization, its spaces, one webhook.
    let suffix = &booking_db.name()["spaceport_bench_".len()..];
    let org = booking_api
        .create(
            "/api/v1/organizations",
            serde_json::json!({"name": "Bench", "slug": format!("bench-{suffix}"), "timezone": "UTC"}),
        )
        .await?;
    let mut spaces = Vec::with_capacity(options.spaces);
    for i in 0..options.spaces.max(1) {
        spaces.push(
            booking_api
                .create(
                    "/api/v1/meeting-spaces",
                    serde_json::json!({"organization_id": org, "name": format!("Room {i}"), "slug": format!("bench-{suffix}-{i}"), "booking_increment": 60, "min_duration": 60}),
                )
                .await?,
        );
    }
    let webhook = events_api
        .create(
            "/api/v1/webhooks",
            serde_json::json!({"organization_id": org, "url": receiver.url(), "events": ["booking.created"]}),
        )
        .await?;
    let (events_pid, booking_pid) = (events_service.pid(), booking.pid());

    // 1. The stream alone.
    let template = booking_created(&workspace, &org, &spaces[0], 0);
    let raw = raw_streams(
        &options.redis_url,
        &raw_stream,
        &format!("{run_prefix}:raw-group"),
        options.raw_entries,
        &workspace,
        &org,
        &spaces[0],
        (events_pid, booking_pid),
    )
    .await?;
    let payload_bytes = serde_json::to_string(&template)?.len();
    let raw = RawStreams {
        payload_bytes,
        ..raw
    };

    // 2. Booking commit → receiver.
    let mut latency = latency_phase(
        options,
        booking_api.clone(),
        Arc::new(spaces.clone()),
        &receiver,
        &webhook,
        events_db.url(),
        (events_pid, booking_pid),
    )
    .await?;
    booking.ensure_running()?;
    events_service.ensure_running()?;
    latency.legs = legs(
        &options.redis_url,
        &stream_name,
        &format!("{run_prefix}:probe"),
        events_db.url(),
        &webhook,
        &latency_marks(&receiver, &webhook),
    )
    .await
    .map_err(|e| eprintln!("spaceport-bench: the latency breakdown is left out: {e:#}"))
    .ok();
    receiver.log.take();

    // 3. Sustained deliveries, straight from the stream.
    let org2 = ids::new_id(prefix::ORGANIZATION);
    let mut fan = HashSet::new();
    for _ in 0..options.fanout.max(1) {
        fan.insert(
            events_api
                .create(
                    "/api/v1/webhooks",
                    serde_json::json!({"organization_id": org2, "url": receiver.url(), "events": ["booking.created"]}),
                )
                .await?,
        );
    }
    let sustained = sustained_phase(
        options,
        &stream_name,
        &group,
        events_db.url(),
        &receiver,
        &fan,
        (&workspace, &org2, &spaces[0]),
        (events_pid, booking_pid),
    )
    .await?;
    events_service.ensure_running()?;
    booking.ensure_running()?;
    let memory = events_service.memory()?;
    let booking_log = (booking.log_lines(), booking.log_tail(5));
    let events_log = (events_service.log_lines(), events_service.log_tail(5));

    // 4. The intake's transaction alone, sequential as the intake runs it and
    // with 8 clients, by pgbench in events-service's database once the
    // service is gone (it would still be working off the backlog).
    events_service.kill()?;
    let _ = events_service.wait_exit(Duration::from_secs(10)).await;
    let intake_reference = intake_reference(
        events_db.url(),
        dir.path(),
        &workspace,
        &org2,
        fan.iter().next().map_or("", String::as_str),
        options.duration,
    )
    .map_err(|e| eprintln!("spaceport-bench: the intake reference is left out: {e:#}"))
    .ok();
    let unreadable = receiver.log.unreadable.load(Ordering::Relaxed);
    if unreadable > 0 {
        eprintln!(
            "spaceport-bench: the receiver got {unreadable} bodies without webhook_id or data.booking_id"
        );
    }

    Ok(EventsReport {
        postgres_version: booking_db.server_version().to_owned(),
        redis_version,
        raw,
        latency,
        sustained,
        memory,
        intake_reference,
        booking_log,
        events_log,
    })
}

/// XADD in batches (one publisher) beside XREADGROUP + XACK (one consumer),
/// at once, on a stream of its own.
#[allow(clippy::too_many_arguments)]
async fn raw_streams(
    redis_url: &str,
    stream_name: &str,
    group: &str,
    entries: usize,
    workspace: &str,
    org: &str,
    space: &str,
    (events_pid, booking_pid): (u32, u32),
) -> Result<RawStreams> {
    let stream = EventStream::connect(redis_url)
        .await?
        .with_max_len((entries as u64).saturating_mul(2).max(1_000));
    stream.ensure_group(stream_name, group).await?;
    let before = CpuSample::take();
    let start = Instant::now();
    let publisher = {
        let stream = stream.clone();
        let (name, workspace, org, space) = (
            stream_name.to_owned(),
            workspace.to_owned(),
            org.to_owned(),
            space.to_owned(),
        );
        tokio::spawn(async move {
            let mut sent = 0usize;
            while sent < entries {
                let n = PUBLISH_BATCH.min(entries - sent);
                let batch: Vec<Event> = (0..n)
                    .map(|i| booking_created(&workspace, &org, &space, (sent + i) as u64))
                    .collect();
                stream.publish_batch(&name, &batch).await?;
                sent += n;
            }
            Ok::<Instant, events::StreamError>(Instant::now())
        })
    };
    let mut received = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while received < entries {
        if Instant::now() > deadline {
            bail!("raw stream phase: {received} of {entries} entries read within 120 s");
        }
        let batch = stream
            .read(
                stream_name,
                group,
                "bench",
                READ_BATCH,
                Duration::from_millis(100),
            )
            .await?;
        let ids: Vec<String> = batch.into_iter().map(|d| d.entry_id).collect();
        stream.ack(stream_name, group, &ids).await?;
        received += ids.len();
    }
    let elapsed = start.elapsed();
    let published_at = publisher.await.context("the publisher task")??;
    let cpu = before
        .zip(CpuSample::take())
        .map(|(b, a)| PhaseCpu::between(&b, &a, events_pid, booking_pid));
    Ok(RawStreams {
        entries,
        payload_bytes: 0,
        elapsed,
        publish_elapsed: published_at.duration_since(start),
        cpu,
    })
}

/// A create that answered 201.
struct Created {
    id: String,
    answered: Instant,
}

/// Creates bookings at `options.rate` per second for `options.duration`
/// (open loop), then waits for their deliveries.
async fn latency_phase(
    options: &Options,
    api: Arc<ServiceApi>,
    spaces: Arc<Vec<String>>,
    receiver: &Receiver,
    webhook: &str,
    events_db_url: &str,
    (events_pid, booking_pid): (u32, u32),
) -> Result<LatencyPhase> {
    let rate = f64::from(options.rate.max(1));
    let total = (rate * options.duration.as_secs_f64()).round() as u64;
    // Two days ahead: nothing of the lifecycle (booking.start, 15 minutes
    // before) happens to these bookings while the bench runs.
    let base = (Utc::now() + Days::days(2))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    receiver.log.take();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut stats_conn = PgConnection::establish(events_db_url).ok();
    let db_before = stats_conn.as_mut().and_then(DbStats::take);
    let before = CpuSample::take();
    let start = Instant::now();
    let mut max_lag = Duration::ZERO;
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow!("the in-flight limit closed"))?;
        max_lag = max_lag.max(Instant::now().saturating_duration_since(due));
        let api = api.clone();
        let spaces = spaces.clone();
        tasks.spawn(async move {
            let result = create_booking(&api, &spaces, base, n).await;
            drop(permit);
            result
        });
    }
    let mut created = Vec::with_capacity(total as usize);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut create_latency = Vec::with_capacity(total as usize);
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a create task panicked")? {
            Ok((c, sent)) => {
                create_latency.push(c.answered.saturating_duration_since(sent));
                created.push(c);
            }
            Err(reason) => *errors.entry(reason).or_default() += 1,
        }
    }
    let last_answer = created
        .iter()
        .map(|c| c.answered)
        .max()
        .unwrap_or_else(Instant::now);
    let create_elapsed = last_answer.saturating_duration_since(start);

    // Wait until every created booking arrived, or nothing more comes.
    let expected: HashMap<&str, &Created> = created.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut first: HashMap<String, Instant> = HashMap::with_capacity(created.len());
    let (mut seen, mut deliveries, mut unknown) = (0usize, 0usize, 0usize);
    let mut last_progress = Instant::now();
    let drain_start = Instant::now();
    let mut complete_at: Option<Instant> = None;
    loop {
        let len = receiver.log.scan(seen, |r| {
            if r.webhook_id != webhook {
                return;
            }
            deliveries += 1;
            if expected.contains_key(r.booking_id.as_str()) {
                first.entry(r.booking_id.clone()).or_insert(r.at);
            } else {
                unknown += 1;
            }
        });
        if len > seen {
            last_progress = Instant::now();
            seen = len;
        }
        if complete_at.is_none() && first.len() >= expected.len() {
            complete_at = Some(Instant::now());
        }
        if complete_at.is_some_and(|at| at.elapsed() >= DUPLICATE_GRACE)
            || last_progress.elapsed() >= DRAIN_IDLE
            || drain_start.elapsed() >= DRAIN_MAX
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = before
        .zip(CpuSample::take())
        .map(|(b, a)| PhaseCpu::between(&b, &a, events_pid, booking_pid));
    let db = db_before
        .zip(stats_conn.as_mut().and_then(DbStats::take))
        .map(|(b, a)| b.until(a));
    let mut before_answer = 0;
    let latencies: Vec<Duration> = first
        .iter()
        .filter_map(|(id, at)| {
            let created = expected.get(id.as_str())?;
            if *at < created.answered {
                before_answer += 1;
            }
            Some(at.saturating_duration_since(created.answered))
        })
        .collect();
    let last_first = first.values().max().copied().unwrap_or(last_answer);
    Ok(LatencyPhase {
        requested: total,
        created: created.len() as u64,
        errors,
        create_elapsed,
        max_lag,
        create_latency: Latencies::new(create_latency),
        latency: Latencies::new(latencies),
        delivered: first.len(),
        deliveries,
        duplicates: deliveries - unknown - first.len(),
        unknown,
        before_answer,
        drain: last_first.saturating_duration_since(last_answer),
        legs: None,
        cpu,
        db,
    })
}

/// One create at the `n`-th fresh (space, hour): no conflict, the full work.
async fn create_booking(
    api: &ServiceApi,
    spaces: &[String],
    base: DateTime<Utc>,
    n: u64,
) -> Result<(Created, Instant), String> {
    let count = spaces.len() as u64;
    let space = &spaces[(n % count) as usize];
    let start = base + Days::hours((n / count) as i64);
    let body = serde_json::json!({
        "meeting_space_id": space,
        "start_time": start.to_rfc3339(),
        "end_time": (start + Days::hours(1)).to_rfc3339(),
        "organizer_name": "Bench",
        "organizer_email": "bench@example.com",
    });
    let token = api.signer.token_for(&api.caller, api.audience);
    let sent = Instant::now();
    let response = api
        .http
        .post(format!("{}/api/v1/bookings", api.base))
        .header(identity::HEADER, token)
        .json(&body)
        .send()
        .await
        .map_err(|e| crate::load::Failure::transport(&e).reason)?;
    let answered = Instant::now();
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| crate::load::Failure::transport(&e).reason)?;
    if status != 201 {
        return Err(format!("HTTP {status}"));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| "201 without JSON".to_owned())?;
    let id = answer["data"]["id"]
        .as_str()
        .ok_or_else(|| "201 without data.id".to_owned())?
        .to_owned();
    Ok((Created { id, answered }, sent))
}

/// Booking id → its first receipt (wall clock, ms), for the breakdown.
fn latency_marks(receiver: &Receiver, webhook: &str) -> HashMap<String, i64> {
    let mut marks = HashMap::new();
    receiver.log.scan(0, |r| {
        if r.webhook_id == webhook {
            marks.entry(r.booking_id.clone()).or_insert(r.wall_ms);
        }
    });
    marks
}

#[derive(QueryableByName)]
struct DeliveredRow {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    booking_id: String,
    #[diesel(sql_type = BigInt)]
    occurred_ms: i64,
    #[diesel(sql_type = BigInt)]
    received_ms: i64,
    #[diesel(sql_type = BigInt)]
    started_ms: i64,
}

/// Where the time went, per booking: the stream entry ids (read again with a
/// group of the bench's own) say when Redis took each event; events-service's
/// tables when it stored the event and started its first attempt.
async fn legs(
    redis_url: &str,
    stream_name: &str,
    probe_group: &str,
    events_db_url: &str,
    webhook: &str,
    receipts: &HashMap<String, i64>,
) -> Result<Legs> {
    let stream = EventStream::connect(redis_url).await?;
    stream.ensure_group(stream_name, probe_group).await?;
    let mut xadd_ms: HashMap<String, i64> = HashMap::new();
    loop {
        let batch = stream
            .read(stream_name, probe_group, "probe", 1_000, Duration::ZERO)
            .await?;
        if batch.is_empty() {
            break;
        }
        for delivery in batch {
            let ms = delivery
                .entry_id
                .split('-')
                .next()
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            xadd_ms.insert(delivery.event.id, ms);
        }
    }
    let mut conn = PgConnection::establish(events_db_url)
        .context("connecting to events-service's database")?;
    let rows: Vec<DeliveredRow> = sql_query(format!(
        "SELECT e.id AS event_id, (e.data::json ->> 'booking_id') AS booking_id, \
         (extract(epoch FROM e.occurred_at) * 1000)::bigint AS occurred_ms, \
         (extract(epoch FROM e.received_at) * 1000)::bigint AS received_ms, \
         (extract(epoch FROM a.started_at) * 1000)::bigint AS started_ms \
         FROM events e JOIN deliveries d ON d.event_id = e.id \
         JOIN attempts a ON a.delivery_id = d.id AND a.number = 1 \
         WHERE d.subscription_id = '{}'",
        webhook.replace('\'', "")
    ))
    .load(&mut conn)
    .context("reading events-service's deliveries")?;
    let ms = |d: i64| Duration::from_millis(u64::try_from(d).unwrap_or(0));
    let (mut relay, mut intake, mut claim, mut send) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut matched = 0;
    for row in &rows {
        let (Some(xadd), Some(receipt)) =
            (xadd_ms.get(&row.event_id), receipts.get(&row.booking_id))
        else {
            continue;
        };
        matched += 1;
        relay.push(ms(xadd - row.occurred_ms));
        intake.push(ms(row.received_ms - xadd));
        claim.push(ms(row.started_ms - row.received_ms));
        send.push(ms(receipt - row.started_ms));
    }
    Ok(Legs {
        matched,
        relay: Latencies::new(relay),
        intake: Latencies::new(intake),
        claim: Latencies::new(claim),
        send: Latencies::new(send),
    })
}

/// Publishes `booking.created` events of `org` to the stream at
/// `options.offered` per second; counts the deliveries to `webhooks` in a
/// window of `options.duration` after a warm-up.
#[allow(clippy::too_many_arguments)]
async fn sustained_phase(
    options: &Options,
    stream_name: &str,
    group: &str,
    events_db_url: &str,
    receiver: &Receiver,
    webhooks: &HashSet<String>,
    (workspace, org, space): (&str, &str, &str),
    (events_pid, booking_pid): (u32, u32),
) -> Result<SustainedPhase> {
    let stream = EventStream::connect(&options.redis_url)
        .await?
        .with_max_len(10_000_000);
    let offered = options.offered.max(1);
    let per_tick = (f64::from(offered) * PUBLISH_TICK.as_secs_f64()).ceil() as usize;
    let window = options.duration;
    let start = Instant::now();
    let window_start = start + SUSTAINED_WARMUP;
    let window_end = window_start + window;
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (stream, name) = (stream.clone(), stream_name.to_owned());
        let (workspace, org, space) = (workspace.to_owned(), org.to_owned(), space.to_owned());
        let published = published.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = 0u32;
            loop {
                let due = start + PUBLISH_TICK * tick;
                if due >= window_end {
                    return Ok::<(), events::StreamError>(());
                }
                tokio::time::sleep_until(due.into()).await;
                let batch: Vec<Event> = (0..per_tick)
                    .map(|i| booking_created(&workspace, &org, &space, n + i as u64))
                    .collect();
                for chunk in batch.chunks(PUBLISH_BATCH) {
                    stream.publish_batch(&name, chunk).await?;
                }
                n += per_tick as u64;
                published.store(n, Ordering::Relaxed);
                tick += 1;
            }
        })
    };
    let mut stats_conn = PgConnection::establish(events_db_url).ok();
    tokio::time::sleep_until(window_start.into()).await;
    let db_before = stats_conn.as_mut().and_then(DbStats::take);
    let before = CpuSample::take();
    let opened = Instant::now();
    tokio::time::sleep_until(window_end.into()).await;
    let after = CpuSample::take();
    let closed = Instant::now();
    let db = db_before
        .zip(stats_conn.as_mut().and_then(DbStats::take))
        .map(|(b, a)| b.until(a));
    let lag = stream.lag(stream_name, group).await.ok();
    let pending_deliveries = pending_deliveries(events_db_url).ok();
    publisher.abort();
    let _ = publisher.await;
    let (mut in_window, mut delivered_total) = (0, 0);
    receiver.log.scan(0, |r| {
        if webhooks.contains(&r.webhook_id) {
            delivered_total += 1;
            if r.at >= opened && r.at < closed {
                in_window += 1;
            }
        }
    });
    Ok(SustainedPhase {
        fanout: webhooks.len(),
        offered,
        window: closed.duration_since(opened),
        in_window,
        published: published.load(Ordering::Relaxed),
        delivered_total,
        lag,
        pending_deliveries,
        db,
        cpu: before
            .zip(after)
            .map(|(b, a)| PhaseCpu::between(&b, &a, events_pid, booking_pid)),
    })
}

/// Clients of the parallel intake reference.
const REFERENCE_CLIENTS: usize = 8;

/// The transaction the intake makes for one event with one matching
/// subscription (insert the event unless known, load the workspace's
/// subscriptions, insert the delivery), by pgbench: transactions/s with one
/// client (the intake's shape: one consumer, one event at a time) and with
/// [`REFERENCE_CLIENTS`]. The deliveries are written `succeeded`, so nothing
/// would send them.
fn intake_reference(
    url: &str,
    dir: &std::path::Path,
    workspace: &str,
    org: &str,
    webhook: &str,
    duration: Duration,
) -> Result<(f64, f64)> {
    let data = serde_json::to_string(&booking_created(workspace, org, "ms_bench", 0).data)?;
    let script = dir.join("intake.sql");
    std::fs::write(
        &script,
        format!(
            "\\set n random(1, 1000000000000)\n\
             BEGIN;\n\
             INSERT INTO events (id, event_type, occurred_at, workspace_id, organization_id, subject_id, data, producer, request_id, received_at) \
             VALUES ('evt_pgb_' || :n, 'booking.created', now(), '{workspace}', '{org}', 'bk_pgb_' || :n, '{data}', 'booking-service', NULL, now()) ON CONFLICT DO NOTHING;\n\
             SELECT id, family, organization_id, events FROM subscriptions WHERE workspace_id = '{workspace}' AND enabled = true AND state = 'active';\n\
             INSERT INTO deliveries (id, subscription_id, event_id, workspace_id, status, manual, attempts, next_attempt_at, created_at, updated_at) \
             VALUES ('dlv_pgb_' || :n, '{webhook}', 'evt_pgb_' || :n, '{workspace}', 'succeeded', false, 0, NULL, now(), now());\n\
             COMMIT;\n"
        ),
    )?;
    let secs = (duration.as_secs() / 2).max(1);
    let one = pgbench_tps(url, &script, 1, secs)?;
    let many = pgbench_tps(url, &script, REFERENCE_CLIENTS, secs)?;
    Ok((one, many))
}

fn pgbench_tps(url: &str, script: &std::path::Path, clients: usize, secs: u64) -> Result<f64> {
    let output = std::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-c"])
        .arg(clients.to_string())
        .arg("-j")
        .arg(clients.min(2).to_string())
        .arg("-T")
        .arg(secs.to_string())
        .arg("-f")
        .arg(script)
        .arg(url)
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    text.lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{text}"))
}

fn pending_deliveries(url: &str) -> Result<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = PgConnection::establish(url)?;
    Ok(
        sql_query("SELECT count(*) AS n FROM deliveries WHERE status = 'pending'")
            .get_result::<Count>(&mut conn)?
            .n,
    )
}

impl EventsReport {
    pub fn failed_workloads(&self) -> Vec<&'static str> {
        if self.latency.error_ratio() > MAX_ERROR_RATIO {
            vec!["booking creation"]
        } else {
            Vec::new()
        }
    }

    pub fn render(&self, options: &Options) -> String {
        let l = &self.latency;
        let s = &self.sustained;
        let raw_rate = self.raw.rate();
        let p99 = l.latency.quantile(0.99);
        let sustained_ratio = s.rate() / raw_rate.max(1e-9);
        let rows = vec![
            [
                format!(
                    "booking commit → receiver, {}/s offered for {} s",
                    options.rate,
                    options.duration.as_secs()
                ),
                format!("{:.1}/s", l.create_rate()),
                format!(
                    "(p50 {}, p99 {}, max {})",
                    millis(l.latency.quantile(0.5)),
                    millis(p99),
                    millis(l.latency.quantile(1.0)),
                ),
                String::new(),
                format!(
                    "target p99 < {} ms  {}",
                    LATENCY_P99_TARGET.as_millis(),
                    verdict(p99.is_some_and(|p| p < LATENCY_P99_TARGET) && l.missing() == 0)
                ),
            ],
            [
                format!(
                    "sustained deliveries, {} webhook(s) per event, one receiver",
                    s.fanout
                ),
                format!("{:.1}/s", s.rate()),
                format!(
                    "({:.0} events/s; {} events/s offered{})",
                    s.rate() / s.fanout.max(1) as f64,
                    s.offered,
                    if s.capped() { ", reached: a floor" } else { "" }
                ),
                format!("= {sustained_ratio:.3} of raw Streams"),
                format!(
                    "target >= {DELIVERY_RATE_TARGET:.0}/s  {}",
                    verdict(s.rate() >= DELIVERY_RATE_TARGET)
                ),
            ],
            [
                "raw Redis Streams: XADD + XREADGROUP + XACK".into(),
                format!("{raw_rate:.1}/s"),
                format!(
                    "({} entries of {} B; the XADD side done at {:.0}/s)",
                    self.raw.entries,
                    self.raw.payload_bytes,
                    self.raw.publish_rate()
                ),
                String::new(),
                String::new(),
            ],
            match self.intake_reference {
                Some((one, many)) => [
                    "intake's transaction alone (pgbench, 1 client)".into(),
                    format!("{one:.1}/s"),
                    format!("({REFERENCE_CLIENTS} clients: {many:.1}/s)"),
                    format!(
                        "sustained events/s = {:.2} of it",
                        s.rate() / s.fanout.max(1) as f64 / one.max(1e-9)
                    ),
                    String::new(),
                ],
                None => [
                    "intake's transaction alone (pgbench)".into(),
                    "n/a".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            },
            report::rss_row(
                "events-service peak RSS (VmHWM)",
                &self.memory,
                RSS_TARGET_BYTES,
            ),
        ];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "events-service on PostgreSQL {} + Redis {}, booking-service → stream → events-service → local receiver (hyper, 204), {} cores",
            self.postgres_version
                .split_whitespace()
                .next()
                .unwrap_or("?"),
            self.redis_version,
            options.cores,
        );
        out.push_str(&report::table(&rows));
        out.push('\n');

        // The latency phase.
        let failed: u64 = l.errors.values().sum();
        let _ = write!(
            out,
            "bookings: {} of {} created ({failed} failed) in {:.2} s, create p50 {}, p99 {}; the generator fell at most {} behind its schedule",
            l.created,
            l.requested,
            l.create_elapsed.as_secs_f64(),
            millis(l.create_latency.quantile(0.5)),
            millis(l.create_latency.quantile(0.99)),
            millis(Some(l.max_lag)),
        );
        for (reason, n) in &l.errors {
            let _ = write!(out, " [{n}× {reason}]");
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "deliveries: {} of {} bookings delivered at least once ({} missing: {}), {} deliveries, {} duplicate(s), {} of unknown bookings; the last arrived {} after the last 201",
            l.delivered,
            l.created,
            l.missing(),
            verdict(l.missing() == 0),
            l.deliveries,
            l.duplicates,
            l.unknown,
            millis(Some(l.drain)),
        );
        if l.before_answer > 0 {
            let _ = writeln!(
                out,
                "  {} deliveries arrived before the bench had read their 201 (counted as 0 ms)",
                l.before_answer
            );
        }
        if let Some(legs) = &l.legs {
            let q = |t: &Latencies| {
                format!("{} / {}", millis(t.quantile(0.5)), millis(t.quantile(0.99)))
            };
            let _ = writeln!(
                out,
                "where the time goes (p50 / p99 of {} bookings, ms clocks): commit → XADD (relay) {}; XADD → stored (XREADGROUP + intake) {}; stored → attempt started (claim) {}; attempt → receiver (HTTP) {}",
                legs.matched,
                q(&legs.relay),
                q(&legs.intake),
                q(&legs.claim),
                q(&legs.send),
            );
        }
        if let Some(db) = &l.db {
            out.push_str(&db.line("commit → receiver", l.deliveries));
        }
        if let Some(cpu) = &l.cpu {
            out.push_str(&cpu_line(
                "commit → receiver",
                cpu,
                Some(l.deliveries as u64),
                Some(l.created),
            ));
        }

        // The sustained phase.
        let _ = write!(
            out,
            "sustained: {} deliveries in the {:.2} s window ({} received in all); {} events published",
            s.in_window,
            s.window.as_secs_f64(),
            s.delivered_total,
            s.published,
        );
        match &s.lag {
            Some(lag) => {
                let _ = write!(
                    out,
                    "; at the window's end the stream group had {} pending, {} unread",
                    lag.pending,
                    lag.undelivered
                        .map_or_else(|| "?".to_owned(), |n| n.to_string())
                );
            }
            None => out.push_str("; stream lag unknown"),
        }
        if let Some(n) = s.pending_deliveries {
            let _ = write!(out, ", events-service had {n} deliveries waiting");
        }
        out.push('\n');
        if let Some(db) = &s.db {
            out.push_str(&db.line("sustained window", s.in_window));
        }
        if let Some(cpu) = &s.cpu {
            out.push_str(&cpu_line("sustained", cpu, Some(s.in_window as u64), None));
        }
        if let Some(cpu) = &self.raw.cpu {
            out.push_str(&cpu_line("raw Streams", cpu, None, None));
        }
        let disturbed: Vec<&str> = [
            ("raw Streams", self.raw.cpu.as_ref()),
            ("commit → receiver", l.cpu.as_ref()),
            ("sustained", s.cpu.as_ref()),
        ]
        .into_iter()
        .filter(|(_, cpu)| cpu.is_some_and(PhaseCpu::disturbed))
        .map(|(name, _)| name)
        .collect();
        out.push_str(&report::disturbed_note(&disturbed));
        if !options.events_env.is_empty() || !options.booking_env.is_empty() {
            let set: Vec<String> = options
                .events_env
                .iter()
                .chain(&options.booking_env)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "note: run with {}", set.join(" "));
        }
        let _ = writeln!(
            out,
            "note: the receiver, the load generator and the publisher run in the bench process and share the {} cores with the services, PostgreSQL and Redis",
            options.cores
        );
        out.push_str(&report::log_note("booking-service", &self.booking_log));
        out.push_str(&report::log_note("events-service", &self.events_log));
        out
    }
}

/// Where a phase's CPU went, and per delivery (and per booking) where it
/// served them.
fn cpu_line(phase: &str, cpu: &PhaseCpu, deliveries: Option<u64>, bookings: Option<u64>) -> String {
    let u = &cpu.usage;
    let per = |secs: f64, n: u64| format!("{:.0} µs", secs / n.max(1) as f64 * 1e6);
    let mut out = format!("  cpu s of {:.1} ({phase}):", u.total());
    match deliveries {
        Some(n) => {
            let _ = write!(
                out,
                " events-service {:.1} ({}/delivery), postgres {:.1} ({}/delivery), redis {:.1} ({}/delivery),",
                cpu.events_service,
                per(cpu.events_service, n),
                u.postgres,
                per(u.postgres, n),
                cpu.redis,
                per(cpu.redis, n),
            );
        }
        None => {
            let _ = write!(
                out,
                " events-service {:.1}, postgres {:.1}, redis {:.1},",
                cpu.events_service, u.postgres, cpu.redis
            );
        }
    }
    match bookings {
        Some(n) => {
            let _ = write!(
                out,
                " booking-service {:.1} ({}/booking),",
                cpu.booking_service,
                per(cpu.booking_service, n)
            );
        }
        None => {
            let _ = write!(out, " booking-service {:.1},", cpu.booking_service);
        }
    }
    let _ = write!(
        out,
        " bench (receiver, load, publisher) {:.1}, other processes {:.1}",
        u.bench,
        cpu.outside()
    );
    let named: Vec<String> = u
        .top_others
        .iter()
        .filter(|(name, _)| name != "redis-server" && name != "booking-service")
        .map(|(name, secs)| format!("{name} {secs:.1}"))
        .collect();
    if !named.is_empty() {
        let _ = write!(out, " (of which {})", named.join(", "));
    }
    let _ = writeln!(
        out,
        ", kernel and exited processes {:.1}, idle {:.1}",
        cpu.kernel(),
        u.idle
    );
    out
}
