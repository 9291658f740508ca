//! The auth-service benchmark: client-credentials exchanges and refresh-token
//! rotations against a real auth-service on PostgreSQL, beside the rate at
//! which this machine signs access tokens and nothing else.

use crate::api::AuthApi;
use crate::cpu::{CpuSample, CpuUsage};
use crate::database::BenchDatabase;
use crate::load::{self, Job, Tally};
use crate::service::{Memory, ServiceProcess, Settings};
use crate::setup;
use crate::signing::{self, SigningRate};
use anyhow::{Context, Result};
use identity::{IdentitySigner, SigningKey};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The service's pool: one connection per client at the default concurrency.
const POOL_SIZE: u32 = 16;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Options {
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Administrative URL of the PostgreSQL server.
    pub database_url: String,
    pub service_bin: PathBuf,
    /// Threads of the signing-only reference.
    pub cores: usize,
}

/// One measured workload.
pub struct Workload {
    pub tally: Tally,
    /// Failed requests during the warm-up (not in `tally`).
    pub warmup_errors: u64,
    pub cpu: Option<CpuUsage>,
}

pub struct AuthReport {
    pub postgres_version: String,
    pub client_credentials: Workload,
    pub refresh: Workload,
    pub signing: SigningRate,
    pub signing_cpu: Option<CpuUsage>,
    pub memory: Memory,
    /// Lines the service logged (level warn and above), and the last few.
    pub service_log: (usize, Vec<String>),
}

pub async fn run(options: &Options) -> Result<AuthReport> {
    // Dropped in reverse order: the service stops before its directory and
    // database go.
    let database = BenchDatabase::create(&options.database_url)?;
    let dir = tempfile::Builder::new()
        .prefix("spaceport-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let gateway_key = SigningKey::generate()?;
    let mut service = ServiceProcess::start(
        &options.service_bin,
        &Settings {
            database_url: database.url(),
            pool_size: POOL_SIZE,
            gateway_public_pem: &gateway_key.public_pem(),
            dir: dir.path(),
        },
    )?;
    service
        .wait_healthy(STARTUP_TIMEOUT)
        .await
        .with_context(|| format!("auth-service on database {}", database.name()))?;
    let api = Arc::new(AuthApi::new(
        service.addr(),
        IdentitySigner::new(gateway_key, Duration::from_secs(60)),
    )?);
    let outbox = service.mail_dir().to_owned();

    let owner = setup::sign_in(&api, &outbox, "bench-owner@example.com").await?;
    let principal = setup::create_service_principal(&api, &owner, "bench").await?;
    let body = serde_json::json!({
        "client_id": principal.client_id,
        "client_secret": principal.client_secret,
    });
    let jobs = (0..options.concurrency)
        .map(|_| Job::ClientCredentials { body: body.clone() })
        .collect();
    let client_credentials = measure(&api, &mut service, jobs, options).await?;

    let mut jobs = Vec::with_capacity(options.concurrency);
    for i in 0..options.concurrency {
        let session = setup::sign_in(&api, &outbox, &format!("bench-{i}@example.com")).await?;
        jobs.push(Job::Refresh {
            refresh_token: session.refresh_token,
        });
    }
    let refresh = measure(&api, &mut service, jobs, options).await?;

    let memory = service.memory()?;
    let service_log = (service.log_lines(), service.log_tail(5));
    // The reference runs with the service stopped.
    drop(service);

    let key = SigningKey::generate()?;
    let (cores, duration) = (options.cores, options.duration);
    let before = CpuSample::take();
    let signing =
        tokio::task::spawn_blocking(move || signing::measure(&key, &owner.claims, cores, duration))
            .await?;
    let signing_cpu = before
        .zip(CpuSample::take())
        .map(|(b, a)| b.until(&a, None));

    Ok(AuthReport {
        postgres_version: database.server_version().to_owned(),
        client_credentials,
        refresh,
        signing,
        signing_cpu,
        memory,
        service_log,
    })
}

/// A warm-up, then the measured run, with the CPU time it cost.
async fn measure(
    api: &Arc<AuthApi>,
    service: &mut ServiceProcess,
    jobs: Vec<Job>,
    options: &Options,
) -> Result<Workload> {
    let (jobs, warmup) = load::run(api, jobs, options.warmup).await;
    let before = CpuSample::take();
    let (_, tally) = load::run(api, jobs, options.duration).await;
    let after = CpuSample::take();
    service.ensure_running()?;
    Ok(Workload {
        tally,
        warmup_errors: warmup.failed(),
        cpu: before
            .zip(after)
            .map(|(b, a)| b.until(&a, Some(service.pid()))),
    })
}
