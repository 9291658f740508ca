//! The auth-service benchmark: client-credentials exchanges and refresh-token
//! rotations against a real auth-service on PostgreSQL, beside the rate at
//! which this machine signs access tokens and nothing else.

use crate::api::AuthApi;
use crate::cpu::{CpuSample, CpuUsage};
use crate::load::{self, Failure, Tally, Worker};
use crate::service;
use crate::setup;
use crate::signing::{self, SigningRate};
use anyhow::Result;
use identity::{Identity, IdentitySigner, SigningKey};
use launcher::{Memory, PartProcess, ScratchDatabase};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The service's pool: one connection per client at the default concurrency.
const POOL_SIZE: u32 = 16;
const TOKEN_PATH: &str = "/v1/auth/token";

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
    let database = ScratchDatabase::create(&options.database_url, "spaceport_bench")?;
    let dir = service::scratch_dir()?;
    let gateway_key = SigningKey::generate()?;
    let (mut service, outbox) = service::start_auth(
        &options.service_bin,
        database.url(),
        POOL_SIZE,
        &gateway_key.public_pem(),
        dir.path(),
    )
    .await?;
    let api = Arc::new(AuthApi::new(
        service.addr(),
        IdentitySigner::new(gateway_key, Duration::from_secs(60)),
    )?);

    let owner = setup::sign_in(&api, &outbox, "bench-owner@example.com").await?;
    let principal = setup::create_service_principal(&api, &owner, "bench").await?;
    let body = serde_json::json!({
        "client_id": principal.client_id,
        "client_secret": principal.client_secret,
    });
    let jobs = (0..options.concurrency)
        .map(|_| TokenClient::new(&api, Job::ClientCredentials { body: body.clone() }))
        .collect();
    let client_credentials = measure(&mut service, jobs, options).await?;

    let mut jobs = Vec::with_capacity(options.concurrency);
    for i in 0..options.concurrency {
        let session = setup::sign_in(&api, &outbox, &format!("bench-{i}@example.com")).await?;
        jobs.push(TokenClient::new(
            &api,
            Job::Refresh {
                refresh_token: session.refresh_token,
            },
        ));
    }
    let refresh = measure(&mut service, jobs, options).await?;

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
    service: &mut PartProcess,
    jobs: Vec<TokenClient>,
    options: &Options,
) -> Result<Workload> {
    let (jobs, warmup) = load::run(jobs, options.warmup).await;
    let before = CpuSample::take();
    let (_, tally) = load::run(jobs, options.duration).await;
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

/// What one client repeats.
enum Job {
    /// Exchanges a service principal's id and secret for an access token.
    ClientCredentials { body: serde_json::Value },
    /// Rotates its own session's refresh token: each answer holds the next one.
    Refresh { refresh_token: String },
}

/// A client of the token endpoint, anonymous as the gateway sends it.
struct TokenClient {
    api: Arc<AuthApi>,
    caller: Identity,
    job: Job,
}

impl TokenClient {
    fn new(api: &Arc<AuthApi>, job: Job) -> TokenClient {
        TokenClient {
            api: api.clone(),
            caller: Identity::anonymous(),
            job,
        }
    }
}

impl Worker for TokenClient {
    async fn request(&mut self) -> Result<(), Failure> {
        match &mut self.job {
            Job::ClientCredentials { body } => {
                let reply = self
                    .api
                    .post(TOKEN_PATH, &self.caller, body)
                    .await
                    .map_err(|e| Failure::transport(&e))?;
                if reply.status != 200 {
                    return Err(Failure::status(reply.status));
                }
                Ok(())
            }
            Job::Refresh { refresh_token } => {
                let body = serde_json::json!({ "refresh_token": refresh_token });
                let reply = self
                    .api
                    .post(TOKEN_PATH, &self.caller, &body)
                    .await
                    .map_err(|e| Failure::transport(&e))?;
                // A 4xx means the token is spent or revoked: no retry can help.
                // A 5xx left it unused (the rotation's transaction rolled back).
                if reply.status != 200 {
                    return Err(Failure {
                        fatal: (400..500).contains(&reply.status),
                        ..Failure::status(reply.status)
                    });
                }
                let next = reply
                    .json()
                    .ok()
                    .and_then(|answer| answer["data"]["refresh_token"].as_str().map(str::to_owned))
                    .ok_or_else(|| Failure {
                        reason: "200 without data.refresh_token".into(),
                        fatal: true,
                    })?;
                *refresh_token = next;
                Ok(())
            }
        }
    }
}
