//! The gateway benchmark: what the gateway costs in front of a trivial
//! upstream, beside nginx as the reference proxy, in one run with the same
//! load generator settings for every target:
//!
//! - nginx answering `200 ok` itself (the upstream, called directly);
//! - nginx `proxy_pass` to it over keep-alive upstream connections, no auth;
//! - `spaceport-bare-proxy actix`: actix-web and one reqwest client per
//!   worker, the parts the gateway is built from, forwarding and nothing else
//!   (the rate the gateway could reach if its own work cost nothing);
//! - `spaceport-bare-proxy actix-hyper`: the same with hyper-util's pooled
//!   client in place of reqwest (what reqwest's layer costs);
//! - `spaceport-bare-proxy hyper`: hyper's server and client, forwarding and
//!   nothing else (where a proxy path written below actix would start);
//! - the gateway with a user's JWT (verified locally against the JWKS);
//! - the gateway with a workspace API key (introspection cached);
//!
//! then the gateway with the JWT at 256 connections, and its peak RSS.
//!
//! nginx is the Debian package (installed with apt-get when missing), the
//! gateway and auth-service their own binaries; the gateway's rate limiting
//! stays on with limits no run reaches, so its bookkeeping is measured too.

use crate::api::AuthApi;
use crate::cpu::{CpuSample, CpuUsage};
use crate::load::{self, Failure, Tally, Worker};
use crate::report::{self, MAX_ERROR_RATIO, millis, verdict};
use crate::service;
use crate::setup;
use anyhow::{Context, Result, anyhow, bail};
use identity::{IdentitySigner, SigningKey};
use launcher::{Memory, PartProcess, ScratchDatabase};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::ffi::OsStr;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AUTH_POOL_SIZE: u32 = 4;
/// What every target is asked for: below the gateway's `/bench` route.
const PATH: &str = "/bench/x";
/// nginx's keep-alive connections to the upstream, per worker.
const NGINX_UPSTREAM_KEEPALIVE: u32 = 64;
/// Per minute: never reached, so the limiter counts but never refuses.
const UNREACHED_RATE_LIMIT: u32 = 1_000_000_000;

/// Gateway-with-JWT throughput should be at least this share of nginx's proxy.
pub const PROXY_RATIO_TARGET: f64 = 1.0;
/// Peak RSS of the gateway should stay below this, in bytes (decimal MB).
pub const RSS_TARGET_BYTES: u64 = 50_000_000;

pub struct Options {
    /// Connections of the four compared targets (one per client, closed loop).
    pub concurrency: usize,
    /// Connections of the gateway's memory phase.
    pub rss_concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub database_url: String,
    pub auth_bin: PathBuf,
    pub gateway_bin: PathBuf,
    /// `spaceport-bare-proxy`.
    pub bare_proxy_bin: PathBuf,
    pub cores: usize,
}

/// One measured target.
pub struct Target {
    pub name: &'static str,
    /// The proxy process of a Spaceport-built target, by the name its CPU is
    /// reported under (`None` for the nginx targets: nginx is counted anyway).
    pub proxy: Option<&'static str>,
    pub tally: Tally,
    pub warmup_errors: u64,
    pub cpu: Option<CpuUsage>,
}

pub struct GatewayReport {
    pub nginx_version: String,
    pub direct: Target,
    pub nginx: Target,
    pub bare_actix: Target,
    pub bare_actix_hyper: Target,
    pub bare_hyper: Target,
    pub jwt: Target,
    pub api_key: Target,
    pub jwt_many: Target,
    pub memory: Memory,
    /// Lines the gateway logged (level warn and above), and the last few.
    pub gateway_log: (usize, Vec<String>),
}

pub async fn run(options: &Options) -> Result<GatewayReport> {
    let nginx_bin = nginx_binary()?;
    let dir = service::scratch_dir()?;
    let nginx = Nginx::start(&nginx_bin, dir.path()).await?;

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
    std::fs::write(&config, gateway_config()).context("writing the gateway's config")?;
    let env = [
        ("GATEWAY__IDENTITY__SIGNING_KEY", gateway_key.private_pem()),
        ("GATEWAY__UPSTREAMS__AUTH", auth.base_url()),
        // The `/bench` route's upstream: nginx's trivial server.
        (
            "GATEWAY__UPSTREAMS__BOOKING",
            format!("http://{}", nginx.upstream),
        ),
        ("GATEWAY__CACHE__URL", "memory://".to_owned()),
        ("GATEWAY__LOG__LEVEL", "warn".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let mut gateway = PartProcess::start_with_args(
        "gateway",
        &options.gateway_bin,
        "GATEWAY",
        launcher::free_port()?,
        &env,
        dir.path(),
        &[OsStr::new("--config"), config.as_os_str()],
    )?;
    gateway.wait_ready(service::STARTUP_TIMEOUT).await?;

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
    let jwt = Some((AUTHORIZATION, bearer));
    let key = Some((HeaderName::from_static("x-api-key"), api_key));
    let gw = (Some("gateway"), gateway.pid());
    // nginx's own targets: the idle gateway's CPU is still counted apart.
    let idle_gw = (None, gateway.pid());
    let c = options.concurrency;
    let direct = measure(
        "nginx static, direct",
        &direct_url,
        None,
        c,
        options,
        idle_gw,
    )
    .await?;
    let nginx_proxy = measure("nginx proxy_pass", &nginx_url, None, c, options, idle_gw).await?;
    let mut bare = Vec::new();
    for (mode, name) in [
        ("actix", "bare actix-web + reqwest proxy"),
        ("actix-hyper", "bare actix-web + hyper client proxy"),
        ("hyper", "bare hyper proxy"),
    ] {
        let proxy =
            BareProxy::start(&options.bare_proxy_bin, mode, nginx.upstream, dir.path()).await?;
        let url = format!("{}{PATH}", proxy.base_url);
        bare.push(
            measure(
                name,
                &url,
                None,
                c,
                options,
                (Some("bare proxy"), proxy.pid),
            )
            .await?,
        );
    }
    let [bare_actix, bare_actix_hyper, bare_hyper] =
        <[Target; 3]>::try_from(bare).map_err(|_| anyhow!("three bare proxies were measured"))?;
    let jwt_target = measure("gateway, JWT", &gateway_url, jwt.clone(), c, options, gw).await?;
    let key_target = measure("gateway, API key", &gateway_url, key, c, options, gw).await?;
    gateway.ensure_running()?;
    let many = options.rss_concurrency;
    let jwt_many = measure(
        "gateway, JWT (memory phase)",
        &gateway_url,
        jwt,
        many,
        options,
        gw,
    )
    .await?;
    gateway.ensure_running()?;
    let memory = gateway.memory()?;

    Ok(GatewayReport {
        nginx_version: nginx.version.clone(),
        direct,
        nginx: nginx_proxy,
        bare_actix,
        bare_actix_hyper,
        bare_hyper,
        jwt: jwt_target,
        api_key: key_target,
        jwt_many,
        memory,
        gateway_log: (gateway.log_lines(), gateway.log_tail(5)),
    })
}

/// The gateway's file layer: the `/bench` route to the trivial upstream, the
/// API-key route for setup, and rate limits on but out of reach. The rest of
/// the defaults stay.
fn gateway_config() -> String {
    format!(
        "[rate_limits]\n\
         enabled = true\n\
         per_token_per_minute = {UNREACHED_RATE_LIMIT}\n\
         per_api_key_per_minute = {UNREACHED_RATE_LIMIT}\n\
         per_ip_per_minute = {UNREACHED_RATE_LIMIT}\n\
         \n\
         [[routes]]\n\
         prefix = \"/bench\"\n\
         upstream = \"booking\"\n\
         \n\
         [[routes]]\n\
         prefix = \"/v1/auth/api-key\"\n\
         upstream = \"auth\"\n\
         policy = \"authenticated\"\n"
    )
}

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
    http: reqwest::Client,
    /// Parsed once: the client's own cost is kept low, since it shares the
    /// cores with what it measures.
    url: reqwest::Url,
    header: Option<(HeaderName, HeaderValue)>,
}

impl Worker for Getter {
    async fn request(&mut self) -> Result<(), Failure> {
        let mut request = self.http.get(self.url.clone());
        if let Some((name, value)) = &self.header {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| Failure::transport(&e))?;
        let status = response.status().as_u16();
        response.bytes().await.map_err(|e| Failure::transport(&e))?;
        if status != 200 {
            return Err(Failure::status(status));
        }
        Ok(())
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
    (proxy, proxy_pid): (Option<&'static str>, u32),
) -> Result<Target> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    let header = match header {
        Some((name, value)) => Some((
            name,
            HeaderValue::from_str(&value).context("a credential header")?,
        )),
        None => None,
    };
    let url = reqwest::Url::parse(url).with_context(|| format!("the URL {url}"))?;
    let workers = (0..connections)
        .map(|_| Getter {
            http: http.clone(),
            url: url.clone(),
            header: header.clone(),
        })
        .collect();
    let (workers, warmup) = load::run(workers, options.warmup).await;
    let before = CpuSample::take();
    let (_, tally) = load::run(workers, options.duration).await;
    let cpu = before
        .zip(CpuSample::take())
        .map(|(b, a)| b.until(&a, Some(proxy_pid)));
    Ok(Target {
        name,
        proxy,
        tally,
        warmup_errors: warmup.failed(),
        cpu,
    })
}

/// `spaceport-bare-proxy` in front of the trivial upstream; stopped on drop.
struct BareProxy {
    child: Child,
    pid: u32,
    base_url: String,
}

impl BareProxy {
    async fn start(
        binary: &Path,
        mode: &str,
        upstream: SocketAddr,
        dir: &Path,
    ) -> Result<BareProxy> {
        let listen = launcher::free_port()?.to_string();
        let log = dir.join(format!("bare-proxy-{mode}.log"));
        // In its own process group, like the parts: Ctrl-C reaches the bench,
        // which stops it on drop.
        let child = launcher::spawn_logged(
            Command::new(binary)
                .arg(mode)
                .arg(&listen)
                .arg(format!("http://{upstream}"))
                .envs(service_kit::ALLOCATOR_ENV),
            &log,
        )?;
        let pid = child.id();
        let mut proxy = BareProxy {
            child,
            pid,
            base_url: format!("http://{listen}"),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}{PATH}", proxy.base_url);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = proxy.child.try_wait()? {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("{} exited ({status}):\n{output}", binary.display());
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(proxy);
            }
            if Instant::now() > deadline {
                bail!("{} did not answer on {url} within 10 s", binary.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for BareProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on PATH (or in /usr/sbin), installed from the Debian archive when
/// missing.
fn nginx_binary() -> Result<PathBuf> {
    let find = || {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("nginx"))
            .find(|path| path.is_file())
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    eprintln!("spaceport-bench: nginx not found; installing it with apt-get");
    for package in ["nginx-light", "nginx"] {
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if installed.success()
            && let Some(path) = find()
        {
            return Ok(path);
        }
    }
    bail!("nginx is not installed and apt-get could not install it (apt-get install nginx-light)")
}

/// nginx in the foreground with two servers: the trivial upstream and the
/// reference proxy in front of it. Stopped when dropped.
struct Nginx {
    child: Child,
    upstream: SocketAddr,
    proxy: SocketAddr,
    version: String,
}

impl Nginx {
    async fn start(binary: &Path, dir: &Path) -> Result<Nginx> {
        let version = Command::new(binary)
            .arg("-v")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stderr)
                    .trim()
                    .trim_start_matches("nginx version: ")
                    .to_owned()
            })
            .unwrap_or_default();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs"))
            .with_context(|| format!("creating {}", prefix.display()))?;
        let (upstream, proxy) = (launcher::free_port()?, launcher::free_port()?);
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(&prefix, upstream, proxy))
            .with_context(|| format!("writing {}", conf.display()))?;
        // In its own process group (see `launcher::spawn_logged`), which
        // also lets the workers be stopped with the master.
        let child = launcher::spawn_logged(
            Command::new(binary)
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(prefix.join("logs/error.log"))
                .args(["-g", "daemon off;"]),
            &prefix.join("logs/stderr.log"),
        )?;
        let mut nginx = Nginx {
            child,
            upstream,
            proxy,
            version,
        };
        let http = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        for addr in [upstream, proxy] {
            loop {
                if let Some(status) = nginx.child.try_wait()? {
                    let errors =
                        std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
                    bail!("nginx exited ({status}):\n{errors}");
                }
                if let Ok(r) = http.get(format!("http://{addr}{PATH}")).send().await
                    && r.status().is_success()
                {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("nginx did not answer on {addr} within 10 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops the workers too; the group is killed
        // in case the master could not.
        let group = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Two workers (the machine's cores); no access log; everything it writes
/// below `prefix`. Keep-alive requests are not capped, as the gateway's are
/// not.
fn nginx_conf(prefix: &Path, upstream: SocketAddr, proxy: SocketAddr) -> String {
    let prefix = prefix.display();
    format!(
        "worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    upstream trivial {{
        server {upstream};
        keepalive {NGINX_UPSTREAM_KEEPALIVE};
        keepalive_requests 100000000;
    }}
    server {{
        listen {upstream};
        location / {{
            default_type text/plain;
            return 200 \"ok\";
        }}
    }}
    server {{
        listen {proxy};
        location / {{
            proxy_pass http://trivial;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    )
}

impl GatewayReport {
    fn targets(&self) -> [&Target; 8] {
        [
            &self.direct,
            &self.nginx,
            &self.bare_actix,
            &self.bare_actix_hyper,
            &self.bare_hyper,
            &self.jwt,
            &self.api_key,
            &self.jwt_many,
        ]
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
        let latency = |t: &Tally| {
            format!(
                "(p50 {}, p99 {})",
                millis(t.latency(0.50)),
                millis(t.latency(0.99))
            )
        };
        let row = |t: &Target, label: String, ratio: String, target: String| {
            [
                label,
                format!("{:.1}/s", t.tally.rate()),
                latency(&t.tally),
                ratio,
                target,
            ]
        };
        let jwt_ratio = self.jwt.tally.rate() / nginx_rate;
        let mut rows = vec![
            row(
                &self.direct,
                "nginx `return 200`, direct (the upstream)".into(),
                String::new(),
                String::new(),
            ),
            row(
                &self.nginx,
                "nginx proxy_pass, upstream keep-alive, no auth".into(),
                format!("= {:.2} of direct", nginx_rate / self.direct.tally.rate()),
                String::new(),
            ),
            row(
                &self.bare_actix,
                "actix-web + reqwest, forwarding only".into(),
                format!(
                    "= {:.2} of nginx proxy",
                    self.bare_actix.tally.rate() / nginx_rate
                ),
                String::new(),
            ),
            row(
                &self.bare_actix_hyper,
                "actix-web + hyper client, forwarding only".into(),
                format!(
                    "= {:.2} of nginx proxy",
                    self.bare_actix_hyper.tally.rate() / nginx_rate
                ),
                String::new(),
            ),
            row(
                &self.bare_hyper,
                "hyper server + client, forwarding only".into(),
                format!(
                    "= {:.2} of nginx proxy",
                    self.bare_hyper.tally.rate() / nginx_rate
                ),
                String::new(),
            ),
            row(
                &self.jwt,
                "gateway, JWT".into(),
                format!("= {jwt_ratio:.2} of nginx proxy"),
                format!(
                    "target >= {PROXY_RATIO_TARGET:.2}  {}",
                    verdict(jwt_ratio >= PROXY_RATIO_TARGET)
                ),
            ),
            row(
                &self.api_key,
                "gateway, API key (warm cache)".into(),
                format!(
                    "= {:.2} of nginx proxy",
                    self.api_key.tally.rate() / nginx_rate
                ),
                String::new(),
            ),
            row(
                &self.jwt_many,
                format!("gateway, JWT, {} connections", options.rss_concurrency),
                String::new(),
                String::new(),
            ),
        ];
        rows.push(report::rss_row(
            "gateway peak RSS (VmHWM)",
            &self.memory,
            RSS_TARGET_BYTES,
        ));

        let mut out = String::new();
        let _ = writeln!(
            out,
            "gateway vs nginx {} on GET {PATH}, {} connections, {} s each after a {} s warm-up, {} cores",
            self.nginx_version,
            options.concurrency,
            options.duration.as_secs(),
            options.warmup.as_secs(),
            options.cores,
        );
        out.push_str(&report::table(&rows));
        out.push('\n');
        let _ = writeln!(
            out,
            "gateway rate limiting on, limits at {UNREACHED_RATE_LIMIT}/min so none triggers: its counting is in the figures"
        );
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
                    .is_some_and(|cpu| outside(cpu) > 0.05 * cpu.total())
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
        out.push_str(&report::log_note("gateway", &self.gateway_log));
        out
    }
}

/// nginx's CPU seconds: it is the upstream of every target.
fn nginx_secs(cpu: &CpuUsage) -> f64 {
    cpu.top_others
        .iter()
        .filter(|(name, _)| name == "nginx")
        .fold(0.0, |sum, (_, secs)| sum + secs)
}

/// CPU seconds of the named processes that are no part of the bench (the
/// busiest few: a lower bound).
fn outside(cpu: &CpuUsage) -> f64 {
    cpu.top_others
        .iter()
        .filter(|(name, _)| name != "nginx")
        .fold(0.0, |sum, (_, secs)| sum + secs)
}

/// Where a target's CPU time went: the proxy Spaceport built (the gateway or a
/// bare proxy), nginx (the upstream, and in its own target the reference
/// proxy too), the bench's client, other processes by name, and the busy time
/// no process is charged with: mostly the kernel's loopback networking
/// (softirq), which grows with the request rate.
fn cpu_line(target: &Target, cpu: &CpuUsage) -> String {
    let nginx = nginx_secs(cpu);
    let per_request = |secs: f64| 1e6 * secs / (target.tally.ok.max(1) as f64);
    let proxy = match target.proxy {
        Some(name) => format!(
            "{name} {:.1} ({:.1} µs/request)",
            cpu.service,
            per_request(cpu.service)
        ),
        None => format!("gateway (idle) {:.1}", cpu.service),
    };
    let named: Vec<String> = cpu
        .top_others
        .iter()
        .filter(|(name, _)| name != "nginx")
        .map(|(name, secs)| format!("{name} {secs:.1}"))
        .collect();
    let busy = (cpu.total() - cpu.idle).max(1e-9);
    let mut out = format!(
        "  cpu s of {:.1}: {proxy}, nginx {nginx:.1} ({:.1} µs/request), bench client {:.1} ({:.0}% of the busy time), other processes {:.1}",
        cpu.total(),
        per_request(nginx),
        cpu.bench,
        100.0 * cpu.bench / busy,
        outside(cpu),
    );
    if !named.is_empty() {
        let _ = write!(out, " (of which {})", named.join(", "));
    }
    let _ = writeln!(
        out,
        ", kernel and exited processes {:.1}, idle {:.1}",
        (cpu.other - nginx - outside(cpu)).max(0.0),
        cpu.idle
    );
    out
}
