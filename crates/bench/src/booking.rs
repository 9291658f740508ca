//! The booking-service benchmark, on PostgreSQL:
//!
//! - bookings created per second through the service (validation, the
//!   overlap guarantee of the exclusion constraint, the envelope), over many
//!   spaces so that no request conflicts, beside the raw rate of the same
//!   `INSERT` run by `pgbench` against the same database in the same run;
//! - the latency of one day's availability of a space with 100,000 bookings
//!   in the table.
//!
//! The service runs as its own release binary, configured by `BOOKING__…`
//! variables only, as deployed.

use crate::cpu::{CpuSample, CpuUsage};
use crate::load::{self, Failure, Tally, Worker};
use crate::report::{MAX_ERROR_RATIO, millis, verdict};
use crate::service::{self, Settings};
use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Duration as Days, Utc};
use diesel::prelude::*;
use diesel::{PgConnection, sql_query};
use identity::{Identity, IdentitySigner, PrincipalType, ScopeSet, SigningKey};
use launcher::ScratchDatabase;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const AUDIENCE: &str = "booking-service";
const POOL_SIZE: u32 = 16;
/// Bookings of the space whose availability is measured.
pub const SEEDED_BOOKINGS: u32 = 100_000;
/// Created bookings/s should be at least this share of pgbench's raw INSERT rate.
pub const RATE_TARGET: f64 = 0.50;
/// p99 of one day's availability should stay below this.
pub const AVAILABILITY_P99_TARGET: Duration = Duration::from_millis(10);

pub struct Options {
    pub concurrency: usize,
    /// Spaces the creation workload spreads its bookings over.
    pub spaces: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub database_url: String,
    pub service_bin: PathBuf,
    pub pgbench_bin: PathBuf,
    pub cores: usize,
}

pub struct PgbenchRate {
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
}

pub struct BookingReport {
    pub postgres_version: String,
    pub create: Tally,
    pub create_cpu: Option<CpuUsage>,
    pub raw: PgbenchRate,
    pub availability: Tally,
    pub bookings_in_table: i64,
    pub service_log: Vec<String>,
}

/// Calls as the gateway makes them: each with an identity token it signed.
struct Api {
    http: reqwest::Client,
    base: String,
    signer: IdentitySigner,
    caller: Identity,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let token = self.signer.token_for(&self.caller, AUDIENCE);
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(identity::HEADER, token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| Failure::transport(&e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| Failure::transport(&e))?;
        Ok((status, bytes.to_vec()))
    }

    async fn create(&self, path: &str, body: serde_json::Value) -> Result<String> {
        let (status, bytes) = self
            .send(reqwest::Method::POST, path, Some(&body))
            .await
            .map_err(|f| anyhow!(f.reason))?;
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

/// Creates bookings, each at a fresh (space, hour), so nothing conflicts and
/// every request does the full work.
struct Creator {
    api: Arc<Api>,
    spaces: Arc<Vec<String>>,
    /// Shared by every creator: the next (space, hour).
    counter: Arc<AtomicU64>,
    base: DateTime<Utc>,
}

impl Worker for Creator {
    async fn request(&mut self) -> Result<(), Failure> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let spaces = self.spaces.len() as u64;
        let space = &self.spaces[(n % spaces) as usize];
        let start = self.base + Days::hours((n / spaces) as i64);
        let body = serde_json::json!({
            "meeting_space_id": space,
            "start_time": start.to_rfc3339(),
            "end_time": (start + Days::hours(1)).to_rfc3339(),
            "organizer_name": "Bench",
            "organizer_email": "bench@example.com",
        });
        match self
            .api
            .send(reqwest::Method::POST, "/api/v1/bookings", Some(&body))
            .await?
        {
            (201, _) => Ok(()),
            (status, _) => Err(Failure::status(status)),
        }
    }
}

/// Asks for the same availability again and again.
#[derive(Clone)]
struct AvailabilityReader {
    api: Arc<Api>,
    path: String,
}

impl Worker for AvailabilityReader {
    async fn request(&mut self) -> Result<(), Failure> {
        match self
            .api
            .send(reqwest::Method::GET, &self.path, None)
            .await?
        {
            (200, _) => Ok(()),
            (status, _) => Err(Failure::status(status)),
        }
    }
}

pub async fn run(options: &Options) -> Result<BookingReport> {
    let database = ScratchDatabase::create(&options.database_url, "spaceport_bench")?;
    let dir = service::scratch_dir()?;
    let gateway_key = SigningKey::generate()?;
    let mut service = service::start(
        &options.service_bin,
        &Settings {
            name: "booking-service",
            env_prefix: "BOOKING",
            database_url: database.url(),
            pool_size: POOL_SIZE,
            gateway_public_pem: &gateway_key.public_pem(),
            root_secret: false,
            dir: dir.path(),
        },
        &[],
    )
    .await?;
    let workspace = "wrk_01BENCH0000000000000000000".to_owned();
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()?,
        base: service.base_url(),
        signer: IdentitySigner::new(gateway_key, Duration::from_secs(60)),
        caller: Identity {
            principal_id: "usr_01BENCH0000000000000000000".into(),
            principal_type: PrincipalType::User,
            workspace_id: Some(workspace.clone()),
            scopes: ScopeSet::all(),
            space_id: None,
            organization_id: None,
        },
    });

    // Setup through the API: one organization, the spaces.
    let suffix = &database.name()["spaceport_bench_".len()..];
    let org = api
        .create(
            "/api/v1/organizations",
            serde_json::json!({"name": "Bench", "slug": format!("bench-{suffix}"), "timezone": "UTC"}),
        )
        .await?;
    let mut spaces = Vec::with_capacity(options.spaces);
    for i in 0..options.spaces.max(1) {
        spaces.push(
            api.create(
                "/api/v1/meeting-spaces",
                serde_json::json!({"organization_id": org, "name": format!("Room {i}"), "slug": format!("bench-{suffix}-{i}"), "booking_increment": 60, "min_duration": 60}),
            )
            .await?,
        );
    }
    let dense = api
        .create(
            "/api/v1/meeting-spaces",
            serde_json::json!({"organization_id": org, "name": "Dense", "slug": format!("bench-{suffix}-dense"), "booking_increment": 30}),
        )
        .await?;

    // Creation through the service.
    let spaces = Arc::new(spaces);
    let counter = Arc::new(AtomicU64::new(0));
    let base = (Utc::now() + Days::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let creators = || {
        (0..options.concurrency)
            .map(|_| Creator {
                api: api.clone(),
                spaces: spaces.clone(),
                counter: counter.clone(),
                base,
            })
            .collect()
    };
    load::run(creators(), options.warmup).await;
    let before = CpuSample::take();
    let (_, create) = load::run(creators(), options.duration).await;
    let create_cpu = before
        .zip(CpuSample::take())
        .map(|(b, a)| b.until(&a, Some(service.pid())));
    service.ensure_running()?;

    // The same INSERT, straight into PostgreSQL, in the same database.
    let mut conn =
        PgConnection::establish(database.url()).context("connecting to the bench database")?;
    sql_query("CREATE SEQUENCE bench_raw_seq").execute(&mut conn)?;
    let script = dir.path().join("insert-booking.sql");
    std::fs::write(&script, raw_insert(&workspace, &org, &spaces))?;
    let raw = pgbench(options, database.url(), &script)?;

    // A space with 100,000 bookings, then one day of its availability.
    sql_query(format!(
        "INSERT INTO bookings (id, workspace_id, organization_id, meeting_space_id, start_time, end_time, \
         blocked_start, blocked_end, organizer_name, organizer_email, status, created_by, created_at, updated_at) \
         SELECT 'bk_seed_' || g, '{workspace}', '{org}', '{dense}', ts, ts + interval '1 hour', ts, ts + interval '1 hour', \
         'Seed', 'seed@example.com', 'confirmed', 'bench', now(), now() \
         FROM (SELECT g, timestamp '2030-01-01' + g * interval '90 minutes' AS ts \
               FROM generate_series(0, {}) g) s",
        SEEDED_BOOKINGS - 1
    ))
    .execute(&mut conn)
    .context("seeding bookings")?;
    // As a table that has been there a while: vacuumed and analyzed, its
    // pages written out. Otherwise autovacuum and the checkpointer take up
    // the freshly written rows in the middle of the measurement.
    sql_query("VACUUM (ANALYZE) bookings").execute(&mut conn)?;
    sql_query("CHECKPOINT").execute(&mut conn)?;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let bookings_in_table = sql_query("SELECT count(*) AS n FROM bookings")
        .get_result::<Count>(&mut conn)?
        .n;
    // A day in the middle of the seeded ones: 16 bookings on it.
    let day = (chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap_or_default()
        + Days::minutes(90 * i64::from(SEEDED_BOOKINGS / 2)))
    .to_string();
    let path = format!("/api/v1/meeting-spaces/{dense}/availability?date={day}");
    let check = api
        .send(reqwest::Method::GET, &path, None)
        .await
        .map_err(|f| anyhow!(f.reason))?;
    let slots: serde_json::Value = serde_json::from_slice(&check.1)?;
    let booked = slots["data"]["slots"]
        .as_array()
        .map_or(0, |s| s.iter().filter(|s| s["status"] == "booked").count());
    if check.0 != 200 || booked == 0 {
        bail!(
            "availability of the seeded space: HTTP {}, {booked} booked slots",
            check.0
        );
    }
    let reader = AvailabilityReader {
        api: api.clone(),
        path,
    };
    load::run(vec![reader.clone()], options.warmup).await;
    let (_, availability) = load::run(vec![reader], options.duration).await;
    service.ensure_running()?;
    let service_log = service.log_tail(5);
    drop(conn);
    drop(service);

    Ok(BookingReport {
        postgres_version: database.server_version().to_owned(),
        create,
        create_cpu,
        raw,
        availability,
        bookings_in_table,
        service_log,
    })
}

/// The INSERT the service makes for a new booking, for pgbench: a fresh
/// (space, hour) from a sequence, so no transaction conflicts, with the
/// exclusion constraint and indexes doing their work as for the service.
fn raw_insert(workspace: &str, org: &str, spaces: &[String]) -> String {
    let list = spaces
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let n = spaces.len();
    format!(
        "WITH n AS (SELECT nextval('bench_raw_seq') AS v) \
         INSERT INTO bookings (id, workspace_id, organization_id, meeting_space_id, start_time, end_time, \
         blocked_start, blocked_end, organizer_name, organizer_email, notes, status, check_in_deadline, \
         created_by, created_at, updated_at) \
         SELECT 'bk_raw_' || v, '{workspace}', '{org}', (ARRAY[{list}])[1 + v % {n}], \
         timestamp '2040-01-01' + (v / {n}) * interval '1 hour', \
         timestamp '2040-01-01' + (v / {n} + 1) * interval '1 hour', \
         timestamp '2040-01-01' + (v / {n}) * interval '1 hour', \
         timestamp '2040-01-01' + (v / {n} + 1) * interval '1 hour', \
         'Bench', 'bench@example.com', NULL, 'confirmed', NULL, 'usr_bench', now(), now() FROM n;\n"
    )
}

fn pgbench(options: &Options, url: &str, script: &Path) -> Result<PgbenchRate> {
    let threads = options.concurrency.min(options.cores).max(1);
    let output = Command::new(&options.pgbench_bin)
        .args(["-n", "-M", "prepared"])
        .arg("-c")
        .arg(options.concurrency.to_string())
        .arg("-j")
        .arg(threads.to_string())
        .arg("-T")
        .arg(options.duration.as_secs().max(1).to_string())
        .arg("-f")
        .arg(script)
        .arg(url)
        .output()
        .with_context(|| format!("running {}", options.pgbench_bin.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let number_after = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.split('/').next())
            .and_then(|n| n.parse().ok())
    };
    let tps =
        number_after("tps = ").with_context(|| format!("no tps in pgbench's output:\n{text}"))?;
    let transactions =
        number_after("number of transactions actually processed: ").unwrap_or(0.0) as u64;
    let failed = number_after("number of failed transactions: ").unwrap_or(0.0) as u64;
    Ok(PgbenchRate {
        tps,
        transactions,
        failed,
    })
}

impl BookingReport {
    pub fn failed_workloads(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        if self.create.error_ratio() > MAX_ERROR_RATIO {
            failed.push("booking creation");
        }
        if self.availability.error_ratio() > MAX_ERROR_RATIO {
            failed.push("availability");
        }
        if self.raw.failed > 0 {
            failed.push("pgbench INSERT");
        }
        failed
    }

    pub fn render(&self, options: &Options) -> String {
        let ms = millis;
        let ratio = self.create.rate() / self.raw.tps.max(1e-9);
        let p99 = self.availability.latency(0.99);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "booking-service on PostgreSQL {}, {} clients over {} spaces, {} s each after a {} s warm-up, {} cores",
            self.postgres_version
                .split_whitespace()
                .next()
                .unwrap_or("?"),
            options.concurrency,
            options.spaces,
            options.duration.as_secs(),
            options.warmup.as_secs(),
            options.cores,
        );
        let _ = writeln!(
            out,
            "bookings created (service)   {:>9.1}/s   (p50 {}, p99 {})   = {ratio:.2} of raw INSERT   target >= {RATE_TARGET:.2}  {}",
            self.create.rate(),
            ms(self.create.latency(0.5)),
            ms(self.create.latency(0.99)),
            verdict(ratio >= RATE_TARGET),
        );
        let _ = writeln!(
            out,
            "same INSERT via pgbench      {:>9.1}/s   ({} clients, {} transactions, {} failed)",
            self.raw.tps, options.concurrency, self.raw.transactions, self.raw.failed,
        );
        let _ = writeln!(
            out,
            "availability, 1 day          p50 {}, p99 {}   (1 client, {} requests, {:.0}/s; {} bookings in the table, {SEEDED_BOOKINGS} on the space)   target p99 < {} ms  {}",
            ms(self.availability.latency(0.5)),
            ms(p99),
            self.availability.ok,
            self.availability.rate(),
            self.bookings_in_table,
            AVAILABILITY_P99_TARGET.as_millis(),
            verdict(p99.is_some_and(|p| p < AVAILABILITY_P99_TARGET)),
        );
        for (name, tally) in [
            ("booking creation", &self.create),
            ("availability", &self.availability),
        ] {
            let _ = write!(out, "{name}: {} ok, {} failed", tally.ok, tally.failed());
            for (reason, n) in &tally.errors {
                let _ = write!(out, " [{n}× {reason}]");
            }
            out.push('\n');
        }
        if let Some(cpu) = &self.create_cpu {
            let per = |secs: f64| secs / self.create.ok.max(1) as f64 * 1e6;
            let _ = writeln!(
                out,
                "  cpu s while creating: booking-service {:.1} ({:.0} µs/booking), postgres {:.1} ({:.0} µs/booking), bench client {:.1}, other {:.1}{}, idle {:.1}",
                cpu.service,
                per(cpu.service),
                cpu.postgres,
                per(cpu.postgres),
                cpu.bench,
                cpu.other,
                named(cpu),
                cpu.idle,
            );
        }
        if self.create_cpu.as_ref().is_some_and(CpuUsage::disturbed) {
            let _ = writeln!(
                out,
                "note: other processes took more than 5% of the CPU; the figures are lower than on a quiet machine"
            );
        }
        if !self.service_log.is_empty() {
            let _ = writeln!(
                out,
                "booking-service logged at warn or above; the last lines:"
            );
            for line in &self.service_log {
                let _ = writeln!(out, "  {line}");
            }
        }
        out
    }
}

/// `(of which pgbench 1.2, cargo 0.3)`, when other processes are named.
fn named(cpu: &CpuUsage) -> String {
    if cpu.top_others.is_empty() {
        return String::new();
    }
    let names: Vec<String> = cpu
        .top_others
        .iter()
        .map(|(name, secs)| format!("{name} {secs:.1}"))
        .collect();
    format!(" (of which {})", names.join(", "))
}
