//! The services under test, each run by `launcher` as a child process the way
//! it is deployed: its own binary, configured by `<PREFIX>__…` variables only,
//! on the bench's scratch database, trusting identity tokens signed by the
//! bench's gateway key.

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use launcher::PartProcess;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Per minute: the gateway's limits in every bench. Never reached, so the
/// limiter leases and counts as in production (lease sizes follow the
/// observed rate; see the gateway's `rate_limits`) but never refuses.
pub const UNREACHED_RATE_LIMIT: u32 = 1_000_000_000;

/// What the bench decides about a service's configuration.
pub struct Settings<'a> {
    /// `auth-service` and the like: the log's name.
    pub name: &'a str,
    /// `AUTH` and the like.
    pub env_prefix: &'a str,
    pub database_url: &'a str,
    pub pool_size: u32,
    /// The gateway's public key, PEM: the service accepts identity tokens it signed.
    pub gateway_public_pem: &'a str,
    /// Whether the service takes a root secret (`<PREFIX>__SECRET__KEY`).
    pub root_secret: bool,
    /// Working directory; the service's log goes in it.
    pub dir: &'a Path,
}

/// Starts the service and waits until it is ready. Only warnings and errors
/// are logged, so the log's lines are the ones worth reporting.
pub async fn start(
    binary: &Path,
    settings: &Settings<'_>,
    extra_env: &[(String, String)],
) -> Result<PartProcess> {
    let prefix = settings.env_prefix;
    let mut env = vec![
        (
            format!("{prefix}__DATABASE__URL"),
            settings.database_url.to_owned(),
        ),
        (
            format!("{prefix}__DATABASE__POOL_SIZE"),
            settings.pool_size.to_string(),
        ),
        (format!("{prefix}__CACHE__URL"), "memory://".to_owned()),
        (
            format!("{prefix}__IDENTITY__GATEWAY_PUBLIC_KEYS"),
            settings.gateway_public_pem.to_owned(),
        ),
        (format!("{prefix}__LOG__LEVEL"), "warn".to_owned()),
    ];
    if settings.root_secret {
        let mut root_secret = [0u8; 32];
        getrandom::fill(&mut root_secret).context("reading random bytes")?;
        env.push((
            format!("{prefix}__SECRET__KEY"),
            STANDARD.encode(root_secret),
        ));
    }
    env.extend_from_slice(extra_env);
    let mut service = PartProcess::start(
        settings.name,
        binary,
        prefix,
        launcher::free_port()?,
        &env,
        settings.dir,
    )?;
    service
        .wait_ready(STARTUP_TIMEOUT)
        .await
        .with_context(|| format!("{} on its scratch database", settings.name))?;
    Ok(service)
}

/// auth-service, with its mail written to `<dir>/outbox` (returned beside it)
/// and sign-in limits lifted: sign-in is setup here, not the thing measured,
/// and the benches sign in a few dozen addresses from one IP within seconds.
pub async fn start_auth(
    binary: &Path,
    database_url: &str,
    pool_size: u32,
    gateway_public_pem: &str,
    dir: &Path,
) -> Result<(PartProcess, PathBuf)> {
    let outbox = dir.join("outbox");
    let env = [
        ("AUTH__MAIL__URL", format!("file://{}", outbox.display())),
        ("AUTH__OTP__RESEND_INTERVAL_SECS", "1".to_owned()),
        ("AUTH__OTP__HOURLY_LIMIT", "1000".to_owned()),
        ("AUTH__OTP__IP_HOURLY_LIMIT", "100000".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let service = start(
        binary,
        &Settings {
            name: "auth-service",
            env_prefix: "AUTH",
            database_url,
            pool_size,
            gateway_public_pem,
            root_secret: true,
            dir,
        },
        &env,
    )
    .await?;
    Ok((service, outbox))
}

/// Where a bench's gateway keeps its rate limits, caches and revocation bus.
pub enum GatewayCache<'a> {
    /// `memory://`: in the process.
    Memory,
    /// A Redis server, under the run's key prefix (keys and bus channels).
    Redis { url: &'a str, prefix: &'a str },
}

/// How a bench runs a gateway.
pub struct GatewaySettings<'a> {
    /// `gateway-redis` and the like: the log's name.
    pub name: &'a str,
    /// The private key it signs identity tokens with, PEM.
    pub signing_key_pem: String,
    /// `(NAME, base URL)`: `GATEWAY__UPSTREAMS__NAME`.
    pub upstreams: Vec<(&'a str, String)>,
    pub cache: GatewayCache<'a>,
    /// A TOML file layered over the defaults (`--config`), e.g. routes.
    pub config_file: Option<&'a Path>,
    pub dir: &'a Path,
}

/// Starts the gateway binary and waits until it is ready. Rate limiting is
/// on with every limit at [`UNREACHED_RATE_LIMIT`]; the lease settings keep
/// their defaults. Only warnings and errors are logged.
pub async fn start_gateway(binary: &Path, settings: &GatewaySettings<'_>) -> Result<PartProcess> {
    let limit = UNREACHED_RATE_LIMIT.to_string();
    let mut env: Vec<(String, String)> = vec![
        (
            "GATEWAY__IDENTITY__SIGNING_KEY".into(),
            settings.signing_key_pem.clone(),
        ),
        ("GATEWAY__LOG__LEVEL".into(), "warn".into()),
        ("GATEWAY__RATE_LIMITS__ENABLED".into(), "true".into()),
        (
            "GATEWAY__RATE_LIMITS__PER_TOKEN_PER_MINUTE".into(),
            limit.clone(),
        ),
        (
            "GATEWAY__RATE_LIMITS__PER_API_KEY_PER_MINUTE".into(),
            limit.clone(),
        ),
        ("GATEWAY__RATE_LIMITS__PER_IP_PER_MINUTE".into(), limit),
    ];
    for (name, url) in &settings.upstreams {
        env.push((format!("GATEWAY__UPSTREAMS__{name}"), url.clone()));
    }
    match settings.cache {
        GatewayCache::Memory => env.push(("GATEWAY__CACHE__URL".into(), "memory://".into())),
        GatewayCache::Redis { url, prefix } => env.extend([
            ("GATEWAY__CACHE__URL".into(), url.to_owned()),
            (
                "GATEWAY__CACHE__KEY_PREFIX".into(),
                format!("{prefix}:gateway:"),
            ),
            // Its own channels too: no revocation another user of the
            // server publishes reaches it.
            (
                "GATEWAY__CACHE__BUS_PREFIX".into(),
                format!("{prefix}:bus:"),
            ),
        ]),
    }
    let args: Vec<&OsStr> = match settings.config_file {
        Some(file) => vec![OsStr::new("--config"), file.as_os_str()],
        None => Vec::new(),
    };
    let mut gateway = PartProcess::start_with_args(
        settings.name,
        binary,
        "GATEWAY",
        launcher::free_port()?,
        &env,
        settings.dir,
        &args,
    )?;
    gateway
        .wait_ready(STARTUP_TIMEOUT)
        .await
        .with_context(|| format!("starting {}", settings.name))?;
    Ok(gateway)
}

/// A scratch working directory, removed when dropped.
pub fn scratch_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("spaceport-bench-")
        .tempdir()
        .context("creating a temporary directory")
}
