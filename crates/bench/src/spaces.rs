//! The spaces-service benchmark: space-key introspections per second at the
//! service with a warm cache (the gateway's call for every request made with a
//! space key), and the latency of `GET /api/v1/spaces` for a workspace with
//! thousands of spaces, walked page by page with its cursors. A real
//! spaces-service binary on a fresh PostgreSQL database, called as the gateway
//! calls it (straight to the service, with identity tokens it signs).

use crate::cpu::{CpuSample, CpuUsage};
use crate::database::BenchDatabase;
use crate::report::MAX_ERROR_RATIO;
use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use identity::{Identity, IdentitySigner, PrincipalType, ScopeSet, SigningKey};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AUDIENCE: &str = "spaces-service";
const POOL_SIZE: u32 = 16;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
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

/// A running spaces-service; killed when dropped.
struct ServiceProcess {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
}

impl ServiceProcess {
    fn start(binary: &Path, database_url: &str, gateway_pem: &str, dir: &Path) -> Result<Self> {
        if !binary.is_file() {
            bail!(
                "{} not found: build it first (cargo build --release -p spaces-service)",
                binary.display()
            );
        }
        // Absolute: the child starts in `dir`, where a relative path would not resolve.
        let binary = binary
            .canonicalize()
            .with_context(|| format!("resolving {}", binary.display()))?;
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?;
        let log_path = dir.join("spaces-service.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut root_secret = [0u8; 32];
        getrandom::fill(&mut root_secret).context("reading random bytes")?;
        let child = Command::new(&binary)
            .arg("serve")
            .current_dir(dir)
            .env("SPACES__HTTP__ADDR", addr.to_string())
            .env("SPACES__DATABASE__URL", database_url)
            .env("SPACES__DATABASE__POOL_SIZE", POOL_SIZE.to_string())
            .env("SPACES__CACHE__URL", "memory://")
            .env("SPACES__IDENTITY__GATEWAY_PUBLIC_KEYS", gateway_pem)
            .env("SPACES__SECRET__KEY", STANDARD.encode(root_secret))
            .env("SPACES__LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(ServiceProcess {
            child,
            addr,
            log_path,
        })
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("http://{}/healthz", self.addr);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "spaces-service exited during start-up ({status}):\n{}",
                    self.log_tail()
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "spaces-service did not become healthy:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("spaces-service exited ({status}):\n{}", self.log_tail()),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log_path).map_or(0, |t| t.lines().count())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls as the gateway makes them.
struct Api {
    http: reqwest::Client,
    base: String,
    signer: IdentitySigner,
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

/// What one measured phase did.
#[derive(Default)]
pub struct Phase {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
    pub elapsed: Duration,
    pub cpu: Option<CpuUsage>,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn error_ratio(&self) -> f64 {
        let all = self.ok + self.failed();
        if all == 0 {
            1.0
        } else {
            self.failed() as f64 / all as f64
        }
    }

    /// Nearest-rank quantile of successful requests' latency.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize).max(1);
        let us = self.latencies_us[rank.min(self.latencies_us.len()) - 1];
        Some(Duration::from_micros(u64::from(us)))
    }
}

/// One request a worker repeats; `next` gives the request after an answer.
#[derive(Clone)]
enum Step {
    Introspect { body: serde_json::Value },
    List { cursor: Option<String> },
}

async fn worker(api: Arc<Api>, caller: Identity, mut step: Step, deadline: Instant) -> Phase {
    let mut phase = Phase::default();
    while Instant::now() < deadline {
        let sent = Instant::now();
        let outcome = match &step {
            Step::Introspect { body } => api
                .call(
                    reqwest::Method::POST,
                    "/internal/space-keys/introspect",
                    &caller,
                    Some(body),
                )
                .await
                .map(|(status, body)| (status, body, None)),
            Step::List { cursor } => {
                let path = match cursor {
                    Some(c) => format!("/api/v1/spaces?cursor={c}"),
                    None => "/api/v1/spaces".to_owned(),
                };
                api.call(reqwest::Method::GET, &path, &caller, None)
                    .await
                    .map(|(status, body)| {
                        // Walk on; after the last page start over.
                        let next = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["meta"]["next_cursor"].as_str().map(str::to_owned));
                        (status, body, Some(next))
                    })
            }
        };
        match outcome {
            Ok((200, body, next)) => {
                let valid = match &step {
                    Step::Introspect { .. } => serde_json::from_slice::<serde_json::Value>(&body)
                        .is_ok_and(|v| v["data"]["active"] == true),
                    Step::List { .. } => true,
                };
                if valid {
                    phase.ok += 1;
                    let us = sent.elapsed().as_micros();
                    phase
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                } else {
                    *phase.errors.entry("inactive key".into()).or_default() += 1;
                }
                if let (Step::List { cursor }, Some(next)) = (&mut step, next) {
                    *cursor = next;
                }
            }
            Ok((status, _, _)) => {
                *phase.errors.entry(format!("HTTP {status}")).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                *phase.errors.entry(format!("transport: {e}")).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    phase
}

/// Runs the workers for `duration`; the steps are dealt round robin.
async fn run_phase(
    api: &Arc<Api>,
    caller: &Identity,
    steps: &[Step],
    clients: usize,
    duration: Duration,
    service_pid: u32,
) -> Phase {
    let before = CpuSample::take();
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(worker(
                api.clone(),
                caller.clone(),
                steps[i % steps.len()].clone(),
                deadline,
            ))
        })
        .collect();
    let mut total = Phase::default();
    for w in workers {
        let phase = w.await.expect("a bench worker panicked");
        total.ok += phase.ok;
        for (reason, n) in phase.errors {
            *total.errors.entry(reason).or_default() += n;
        }
        total.latencies_us.extend(phase.latencies_us);
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    total.cpu = before
        .zip(CpuSample::take())
        .map(|(b, a)| b.until(&a, Some(service_pid)));
    total
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
    }
}

pub async fn run(options: &Options) -> Result<SpacesReport> {
    let database = BenchDatabase::create(&options.database_url)?;
    let dir = tempfile::Builder::new()
        .prefix("spaceport-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let gateway_key = SigningKey::generate()?;
    let mut service = ServiceProcess::start(
        &options.service_bin,
        database.url(),
        &gateway_key.public_pem(),
        dir.path(),
    )?;
    service
        .wait_healthy()
        .await
        .with_context(|| format!("spaces-service on database {}", database.name()))?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let api = Arc::new(Api {
        http,
        base: format!("http://{}", service.addr),
        signer: IdentitySigner::new(gateway_key, Duration::from_secs(60)),
    });
    let pid = service.child.id();

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
        steps.push(Step::Introspect { body });
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
            let path = match &cursor {
                Some(c) => format!("/api/v1/spaces?cursor={c}"),
                None => "/api/v1/spaces".to_owned(),
            };
            let page = api
                .expect(reqwest::Method::GET, &path, &reader, None, 200)
                .await?;
            cursor = page["meta"]["next_cursor"].as_str().map(str::to_owned);
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
        .filter(|(_, p)| p.error_ratio() > MAX_ERROR_RATIO)
        .map(|(name, _)| name)
        .collect()
    }

    pub fn render(&self, options: &Options) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or("n/a".to_owned(), |d| {
                format!("{:.2} ms", d.as_secs_f64() * 1e3)
            })
        };
        let verdict = |met: bool| if met { "PASS" } else { "MISS" };
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
        let i = &self.introspection;
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
        let l = &self.list;
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
        for (name, phase) in [("introspection", i), ("list", l)] {
            let _ = write!(
                out,
                "{name}: {} ok, {} failed ({:.2}%) in {:.2} s",
                phase.ok,
                phase.failed(),
                phase.error_ratio() * 100.0,
                phase.elapsed.as_secs_f64()
            );
            if !phase.errors.is_empty() {
                let reasons: Vec<String> = phase
                    .errors
                    .iter()
                    .map(|(r, n)| format!("{n}× {r}"))
                    .collect();
                let _ = write!(out, " [{}]", reasons.join(", "));
            }
            out.push('\n');
            if let Some(cpu) = &phase.cpu {
                let _ = writeln!(
                    out,
                    "  cpu s of {:.1}: spaces-service {:.1} ({:.0} µs/request), postgres {:.1}, bench client {:.1}, other {:.1}, idle {:.1}{}",
                    cpu.total(),
                    cpu.service,
                    cpu.service_per(phase.ok).as_secs_f64() * 1e6,
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
