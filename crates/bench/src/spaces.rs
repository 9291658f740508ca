//! The spaces-service benchmark: space-key introspections per second at the
//! service with a warm cache (the gateway's call for every request made with a
//! space key), and the latency of `GET /api/v1/spaces` for a workspace with
//! thousands of spaces, walked page by page with its cursors. A real
//! spaces-service binary on a fresh PostgreSQL database, called as the gateway
//! calls it (straight to the service, with identity tokens it signs).

use crate::cpu::{CpuSample, CpuUsage};
use crate::load::{self, Failure, Tally, Worker};
use crate::report::{self, MAX_ERROR_RATIO, millis, verdict};
use crate::service::{self, Settings};
use anyhow::{Context, Result, bail};
use identity::{Identity, IdentitySigner, PrincipalType, ScopeSet, SigningKey};
use launcher::ScratchDatabase;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const AUDIENCE: &str = "spaces-service";
const POOL_SIZE: u32 = 16;
/// Distinct keys the introspection workers present, round robin.
const KEYS: usize = 64;
/// Spaces created at once while seeding.
const SEED_CONCURRENCY: usize = 16;

pub const INTROSPECTION_TARGET_PER_SEC: f64 = 20_000.0;
pub const LIST_P99_TARGET: Duration = Duration::from_millis(10);

pub struct Options {
    /// Clients of the introspection workload.
    pub concurrency: usize,
    /// Clients of the list workload (latency is measured, so fewer).
    pub list_concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub spaces: usize,
    pub database_url: String,
    pub service_bin: PathBuf,
    pub cores: usize,
}

/// Calls as the gateway makes them.
struct Api {
    http: reqwest::Client,
    base: String,
    signer: IdentitySigner,
    introspect_url: reqwest::Url,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        caller: &Identity,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Result<(u16, Vec<u8>)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(identity::HEADER, self.signer.token_for(caller, AUDIENCE));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    }

    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        caller: &Identity,
        body: Option<&serde_json::Value>,
        expected: u16,
    ) -> Result<serde_json::Value> {
        let (status, body) = self.call(method.clone(), path, caller, body).await?;
        if status != expected {
            bail!(
                "{method} {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// What one measured phase did, and the CPU time it cost.
pub struct Phase {
    pub tally: Tally,
    pub cpu: Option<CpuUsage>,
}

/// One request a worker repeats.
#[derive(Clone)]
enum Step {
    /// The gateway's call: the body serialized once, as the gateway sends it.
    Introspect { body: bytes::Bytes },
    /// Walks the list page by page; after the last page it starts over.
    List { cursor: Option<String> },
}

struct SpacesClient {
    api: Arc<Api>,
    caller: Identity,
    step: Step,
    /// The identity token, reused as the gateway reuses it (for a few seconds).
    token: Option<(String, Instant)>,
}

impl SpacesClient {
    fn token(&mut self) -> String {
        match &self.token {
            Some((token, at)) if at.elapsed() < Duration::from_secs(5) => token.clone(),
            _ => {
                let token = self.api.signer.token_for(&self.caller, AUDIENCE);
                self.token = Some((token.clone(), Instant::now()));
                token
            }
        }
    }

    /// The introspection the gateway makes, kept as light on the client side
    /// as the gateway keeps it: the load generator shares the two cores with
    /// the service, so its own cost is taken from the figure.
    async fn introspect(&mut self, body: bytes::Bytes) -> Result<(), Failure> {
        let token = self.token();
        let request = self
            .api
            .http
            .post(self.api.introspect_url.clone())
            .header(identity::HEADER, token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let answer = load::answer(request, 200).await?;
        const ACTIVE: &[u8] = b"\"active\":true";
        if !answer.windows(ACTIVE.len()).any(|w| w == ACTIVE) {
            return Err(Failure::new("inactive key"));
        }
        Ok(())
    }
}

impl Worker for SpacesClient {
    async fn request(&mut self) -> Result<(), Failure> {
        let (method, path) = match &self.step {
            Step::Introspect { body } => return self.introspect(body.clone()).await,
            Step::List { cursor } => (reqwest::Method::GET, list_path(cursor.as_deref())),
        };
        let body = None;
        let (status, body) = self
            .api
            .call(method, &path, &self.caller, body)
            .await
            .map_err(|e| Failure::transport(&e))?;
        if status != 200 {
            return Err(Failure::status(status));
        }
        let answer = serde_json::from_slice::<serde_json::Value>(&body).ok();
        match &mut self.step {
            Step::Introspect { .. } => {
                if !answer.is_some_and(|v| v["data"]["active"] == true) {
                    return Err(Failure::new("inactive key"));
                }
            }
            Step::List { cursor } => {
                *cursor = answer.and_then(|v| v["next_cursor"].as_str().map(str::to_owned));
            }
        }
        Ok(())
    }
}

fn list_path(cursor: Option<&str>) -> String {
    match cursor {
        Some(c) => format!("/api/v1/spaces?cursor={c}"),
        None => "/api/v1/spaces".to_owned(),
    }
}

/// Runs one worker per client for `duration`; the steps are dealt round robin.
async fn run_phase(
    api: &Arc<Api>,
    caller: &Identity,
    steps: &[Step],
    clients: usize,
    duration: Duration,
    service_pid: u32,
) -> Phase {
    let workers = (0..clients)
        .map(|i| SpacesClient {
            api: api.clone(),
            caller: caller.clone(),
            step: steps[i % steps.len()].clone(),
            token: None,
        })
        .collect();
    let before = CpuSample::take();
    let (_, tally) = load::run(workers, duration).await;
    Phase {
        tally,
        cpu: before
            .zip(CpuSample::take())
            .map(|(b, a)| b.until(&a, Some(service_pid))),
    }
}

pub struct SpacesReport {
    pub postgres_version: String,
    pub seeded: usize,
    pub seeding: Duration,
    pub introspection: Phase,
    pub list: Phase,
    pub service_log_lines: usize,
}

fn member(workspace: &str) -> Identity {
    Identity {
        principal_id: format!("usr_{}", ulid::Ulid::new()),
        principal_type: PrincipalType::User,
        workspace_id: Some(workspace.to_owned()),
        scopes: ScopeSet::parse("spaces:read spaces:write").expect("catalog scopes"),
        space_id: None,
        organization_id: None,
    }
}

pub async fn run(options: &Options) -> Result<SpacesReport> {
    let database = ScratchDatabase::create(&options.database_url, "spaceport_bench")?;
    let dir = service::scratch_dir()?;
    let gateway_key = SigningKey::generate()?;
    let mut service = service::start(
        &options.service_bin,
        &Settings {
            name: "spaces-service",
            env_prefix: "SPACES",
            database_url: database.url(),
            pool_size: POOL_SIZE,
            gateway_public_pem: &gateway_key.public_pem(),
            root_secret: true,
            dir: dir.path(),
        },
        &[],
    )
    .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let api = Arc::new(Api {
        http,
        introspect_url: reqwest::Url::parse(&format!(
            "{}/internal/space-keys/introspect",
            service.base_url()
        ))?,
        base: service.base_url(),
        signer: IdentitySigner::new(gateway_key, Duration::from_secs(60)),
    });
    let pid = service.pid();

    // Keys of one space, each introspected once: the cache is warm.
    let owner = member(&format!("wrk_{}", ulid::Ulid::new()));
    let space = api
        .expect(
            reqwest::Method::POST,
            "/api/v1/spaces",
            &owner,
            Some(&serde_json::json!({"name": "bench keys"})),
            201,
        )
        .await?;
    let space_id = space["data"]["id"].as_str().context("space id")?.to_owned();
    let gateway = Identity::gateway();
    let mut steps = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let minted = api
            .expect(
                reqwest::Method::POST,
                &format!("/api/v1/spaces/{space_id}/api-keys"),
                &owner,
                Some(&serde_json::json!({"name": format!("bench {i}")})),
                201,
            )
            .await?;
        let body = serde_json::json!({"key": minted["data"]["key"]});
        api.expect(
            reqwest::Method::POST,
            "/internal/space-keys/introspect",
            &gateway,
            Some(&body),
            200,
        )
        .await?;
        steps.push(Step::Introspect {
            body: bytes::Bytes::from(serde_json::to_vec(&body)?),
        });
    }
    run_phase(
        &api,
        &gateway,
        &steps,
        options.concurrency,
        options.warmup,
        pid,
    )
    .await;
    let introspection = run_phase(
        &api,
        &gateway,
        &steps,
        options.concurrency,
        options.duration,
        pid,
    )
    .await;
    service.ensure_running()?;

    // A workspace with many spaces, created through the API.
    let reader = member(&format!("wrk_{}", ulid::Ulid::new()));
    let seeding_started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seeders: Vec<_> = (0..SEED_CONCURRENCY)
        .map(|_| {
            let (api, reader, next, total) =
                (api.clone(), reader.clone(), next.clone(), options.spaces);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(());
                    }
                    api.expect(
                        reqwest::Method::POST,
                        "/api/v1/spaces",
                        &reader,
                        Some(&serde_json::json!({"name": format!("space {i:05}")})),
                        201,
                    )
                    .await?;
                }
            })
        })
        .collect();
    for seeder in seeders {
        seeder.await??;
    }
    let seeding = seeding_started.elapsed();
    // Start the list walkers at different depths: each first follows the
    // cursors a little way, so pages from the whole list are measured.
    let mut list_steps = Vec::new();
    let mut cursor: Option<String> = None;
    let stride = (options.spaces / 20 / options.list_concurrency.max(1)).max(1);
    for _ in 0..options.list_concurrency {
        list_steps.push(Step::List {
            cursor: cursor.clone(),
        });
        for _ in 0..stride {
            let path = list_path(cursor.as_deref());
            let page = api
                .expect(reqwest::Method::GET, &path, &reader, None, 200)
                .await?;
            cursor = page["next_cursor"].as_str().map(str::to_owned);
        }
    }
    run_phase(
        &api,
        &reader,
        &list_steps,
        options.list_concurrency,
        options.warmup,
        pid,
    )
    .await;
    let list = run_phase(
        &api,
        &reader,
        &list_steps,
        options.list_concurrency,
        options.duration,
        pid,
    )
    .await;
    service.ensure_running()?;

    Ok(SpacesReport {
        postgres_version: database.server_version().to_owned(),
        seeded: options.spaces,
        seeding,
        introspection,
        list,
        service_log_lines: service.log_lines(),
    })
}

impl SpacesReport {
    /// Names of the workloads with too many failed requests.
    pub fn failed_workloads(&self) -> Vec<&'static str> {
        [
            ("space-key introspection", &self.introspection),
            ("GET /api/v1/spaces", &self.list),
        ]
        .into_iter()
        .filter(|(_, p)| p.tally.error_ratio() > MAX_ERROR_RATIO)
        .map(|(name, _)| name)
        .collect()
    }

    pub fn render(&self, options: &Options) -> String {
        let ms = millis;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "spaces-service on PostgreSQL {}, {} s each after a {} s warm-up, {} cores",
            self.postgres_version
                .split_whitespace()
                .next()
                .unwrap_or("?"),
            options.duration.as_secs(),
            options.warmup.as_secs(),
            options.cores,
        );
        let i = &self.introspection.tally;
        let _ = writeln!(
            out,
            "space-key introspection (warm cache, {} clients, {KEYS} keys)   {:>10.1}/s   (p50 {}, p99 {})   target >= {:.0}/s  {}",
            options.concurrency,
            i.rate(),
            ms(i.latency(0.5)),
            ms(i.latency(0.99)),
            INTROSPECTION_TARGET_PER_SEC,
            verdict(i.rate() >= INTROSPECTION_TARGET_PER_SEC),
        );
        let l = &self.list.tally;
        let p99 = l.latency(0.99);
        let _ = writeln!(
            out,
            "GET /api/v1/spaces ({} spaces, 20 a page, cursor walk, {} clients)   {:>10.1}/s   (p50 {}, p99 {})   target p99 < {} ms  {}",
            self.seeded,
            options.list_concurrency,
            l.rate(),
            ms(l.latency(0.5)),
            ms(p99),
            LIST_P99_TARGET.as_millis(),
            verdict(p99.is_some_and(|p| p < LIST_P99_TARGET)),
        );
        let _ = writeln!(
            out,
            "seeding: {} spaces (each with its starter upload config) created through the API in {:.1} s",
            self.seeded,
            self.seeding.as_secs_f64()
        );
        for (name, phase) in [("introspection", &self.introspection), ("list", &self.list)] {
            let tally = &phase.tally;
            out.push_str(&report::tally_summary(name, tally));
            out.push('\n');
            if let Some(cpu) = &phase.cpu {
                let _ = writeln!(
                    out,
                    "  cpu s of {:.1}: spaces-service {:.1} ({:.0} µs/request), postgres {:.1}, bench client {:.1}, other {:.1}, idle {:.1}{}",
                    cpu.total(),
                    cpu.service,
                    cpu.service_per(tally.ok).as_secs_f64() * 1e6,
                    cpu.postgres,
                    cpu.bench,
                    cpu.other,
                    cpu.idle,
                    if cpu.disturbed() {
                        " (other processes took more than 5%: figures are low)"
                    } else {
                        ""
                    },
                );
            }
        }
        if self.service_log_lines > 0 {
            let _ = writeln!(
                out,
                "spaces-service logged {} line(s) at warn or above",
                self.service_log_lines
            );
        }
        out
    }
}
