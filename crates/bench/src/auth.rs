//! The auth-service benchmark: client-credentials exchanges and refresh-token
//! rotations against a real auth-service on PostgreSQL, beside the rate at
//! which this machine signs access tokens and nothing else; then
//! client-credentials exchanges through the gateway (on Redis, as in
//! production) beside node-oidc-provider's, with the same load generator,
//! the same request (an OAuth form with HTTP Basic, the same client id and
//! secret) and the same concurrency; then both again under wrk.

use crate::api::AuthApi;
use crate::cpu::{CpuSample, CpuUsage};
use crate::load::{self, Failure, Tally, Worker};
use crate::oidc_provider::{self, OidcProvider};
use crate::redis_keys::{RedisKeys, redis_version};
use crate::service::{self, GatewayCache, GatewaySettings};
use crate::setup::{self, ClientCredentials};
use crate::signing::{self, SigningRate};
use crate::wrk::{self, Wrk, WrkRate};
use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::Method;
use identity::{Identity, IdentitySigner, SigningKey};
use launcher::{Memory, PartProcess, ScratchDatabase};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The service's pool: one connection per client at the default concurrency.
const POOL_SIZE: u32 = 16;
const TOKEN_PATH: &str = "/v1/auth/token";
/// The service principal's scopes, asked for in every OAuth form exchange.
const SCOPE: &str = "bookings:read";

pub struct Options {
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Administrative URL of the PostgreSQL server.
    pub database_url: String,
    /// The gateway's Redis server; the run's keys get a fresh prefix and are
    /// deleted at the end.
    pub redis_url: String,
    pub service_bin: PathBuf,
    pub gateway_bin: PathBuf,
    /// Where node-oidc-provider is installed (`bench-node`).
    pub tools_dir: PathBuf,
    /// Threads of the signing-only reference, node-oidc-provider's workers.
    pub cores: usize,
}

/// One measured workload.
pub struct Workload {
    pub tally: Tally,
    /// Failed requests during the warm-up (not in `tally`).
    pub warmup_errors: u64,
    /// `service` is auth-service.
    pub cpu: Option<CpuUsage>,
    /// The other processes the bench started that served this workload (the
    /// gateway, redis-server, node-oidc-provider).
    pub parts: Vec<Part>,
}

impl Workload {
    /// CPU seconds of processes that are no part of the bench.
    pub fn outside(&self) -> Option<f64> {
        let parts: f64 = self.parts.iter().map(|p| p.secs).sum();
        self.cpu
            .as_ref()
            .map(|cpu| (cpu.other_processes - parts).max(0.0))
    }

    /// Whether processes outside the bench took more than 5% of the machine.
    pub fn disturbed(&self) -> bool {
        self.cpu
            .as_ref()
            .zip(self.outside())
            .is_some_and(|(cpu, outside)| outside > 0.05 * cpu.total())
    }
}

/// A process that served a workload beside auth-service, and its CPU time.
pub struct Part {
    /// The name it is reported under.
    pub label: &'static str,
    /// Its command name: every process so named counts.
    pub process: &'static str,
    pub secs: f64,
}

/// node-oidc-provider's workloads.
pub struct OidcMeasured {
    pub node_version: String,
    /// Processes of the cluster (one per core).
    pub workers: usize,
    pub cluster: Workload,
    pub single: Workload,
    /// The cluster under wrk, or why not.
    pub cluster_wrk: Result<WrkRate, String>,
    /// What node-oidc-provider warned about at startup.
    pub warnings: Vec<String>,
}

pub struct AuthReport {
    pub postgres_version: String,
    pub redis_version: String,
    pub client_credentials: Workload,
    pub refresh: Workload,
    pub through_gateway: Workload,
    /// The same under wrk, or why not.
    pub through_gateway_wrk: Result<WrkRate, String>,
    /// Or why it could not be measured.
    pub oidc: Result<OidcMeasured, String>,
    pub signing: SigningRate,
    pub signing_cpu: Option<CpuUsage>,
    pub memory: Memory,
    /// Lines the service logged (level warn and above), and the last few.
    pub service_log: (usize, Vec<String>),
    pub gateway_log: (usize, Vec<String>),
}

pub async fn run(options: &Options) -> Result<AuthReport> {
    let redis_version = redis_version(&options.redis_url).await?;
    // Installed before anything runs, so a download never overlaps a phase.
    let oidc_installed = oidc_provider::install(&options.tools_dir);
    let wrk = Wrk::install().map_err(|e| format!("{e:#}"));
    // Dropped in reverse order: the service stops before its directory and
    // database go, the gateway before its Redis keys.
    let keys = RedisKeys::fresh(&options.redis_url)?;
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
    let mut gateway = service::start_gateway(
        &options.gateway_bin,
        &GatewaySettings {
            name: "gateway",
            signing_key_pem: gateway_key.private_pem(),
            upstreams: vec![("AUTH", service.base_url())],
            cache: GatewayCache::Redis {
                url: &options.redis_url,
                prefix: keys.prefix(),
            },
            // The default routes: `/v1/auth/token` is public.
            config_file: None,
            dir: dir.path(),
        },
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
    let client_credentials = measure(&mut service, jobs, options, &[]).await?;

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
    let refresh = measure(&mut service, jobs, options, &[]).await?;

    let form = OAuthForm::new(&principal)?;
    let gateway_url = format!("{}{TOKEN_PATH}", gateway.base_url());
    let through_gateway = measure(
        &mut service,
        form.clients(&gateway_url, options)?,
        options,
        &[("gateway", "gateway"), ("redis-server", "redis-server")],
    )
    .await?;
    // After the figures above, so wrk's requests are in none of them.
    let wrk = match wrk {
        Ok(wrk) => form
            .wrk_script(dir.path())
            .map(|script| (wrk, script))
            .map_err(|e| format!("{e:#}")),
        Err(why) => Err(why),
    };
    let under_wrk = |url: String| {
        let wrk = &wrk;
        async move {
            let (wrk, script) = wrk.as_ref().map_err(Clone::clone)?;
            wrk.run(
                &url,
                wrk::Request::Script(script),
                (options.cores, options.concurrency),
                options.duration,
            )
            .await
            .map_err(|e| format!("{e:#}"))
        }
    };
    let through_gateway_wrk = under_wrk(gateway_url).await;
    gateway.ensure_running()?;
    let memory = service.memory()?;

    let oidc = match oidc_installed {
        Ok(installed) => match measure_oidc_provider(
            &installed,
            &principal,
            &form,
            &mut service,
            options,
            dir.path(),
            &under_wrk,
        )
        .await
        {
            Ok((cluster, cluster_wrk, single, warnings)) => Ok(OidcMeasured {
                node_version: installed.node_version,
                workers: options.cores,
                cluster,
                single,
                cluster_wrk,
                warnings,
            }),
            Err(e) => Err(format!("{e:#}")),
        },
        Err(e) => Err(format!("{e:#}")),
    };

    let service_log = (service.log_lines(), service.log_tail(5));
    let gateway_log = (gateway.log_lines(), gateway.log_tail(5));
    // The reference runs with the service and the gateway stopped.
    drop(gateway);
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
        redis_version,
        client_credentials,
        refresh,
        through_gateway,
        through_gateway_wrk,
        oidc,
        signing,
        signing_cpu,
        memory,
        service_log,
        gateway_log,
    })
}

/// node-oidc-provider knowing the service principal's id and secret as its
/// one client: first one process per core (node:cluster), then also under
/// wrk (`under_wrk`), then one process; and what it warned about.
async fn measure_oidc_provider<W: std::future::Future<Output = Result<WrkRate, String>>>(
    installed: &oidc_provider::Installed,
    principal: &ClientCredentials,
    form: &OAuthForm,
    service: &mut PartProcess,
    options: &Options,
    dir: &std::path::Path,
    under_wrk: impl Fn(String) -> W,
) -> Result<(Workload, Result<WrkRate, String>, Workload, Vec<String>)> {
    let client = oidc_provider::Client {
        id: &principal.client_id,
        secret: &principal.client_secret,
        scope: SCOPE,
    };
    let parts = [("node-oidc-provider", oidc_provider::PROCESS_NAME)];
    let mut workloads = Vec::with_capacity(2);
    let mut warnings = Vec::new();
    let mut cluster_wrk = Err("not measured".to_owned());
    for (run, workers) in [options.cores, 1].into_iter().enumerate() {
        let mut provider = OidcProvider::start(installed, &client, workers, dir).await?;
        let clients = form.clients(&provider.token_url(), options)?;
        workloads.push(measure(service, clients, options, &parts).await?);
        // The target is against the cluster, the first run.
        if run == 0 {
            cluster_wrk = under_wrk(provider.token_url()).await;
        }
        provider.ensure_running()?;
        for warning in provider.warnings() {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    let single = workloads.pop().context("the single process was measured")?;
    let cluster = workloads.pop().context("the cluster was measured")?;
    Ok((cluster, cluster_wrk, single, warnings))
}

/// A warm-up, then the measured run, with the CPU time it cost: auth-service
/// (and PostgreSQL, the client) in `cpu`, and each of `parts` (report label,
/// process name) beside it.
async fn measure<W: Worker>(
    service: &mut PartProcess,
    jobs: Vec<W>,
    options: &Options,
    parts: &[(&'static str, &'static str)],
) -> Result<Workload> {
    let (jobs, warmup) = load::run(jobs, options.warmup).await;
    let before = CpuSample::take();
    let (_, tally) = load::run(jobs, options.duration).await;
    let after = CpuSample::take();
    service.ensure_running()?;
    let parts = match (&before, &after) {
        (Some(b), Some(a)) => parts
            .iter()
            .map(|&(label, process)| Part {
                label,
                process,
                secs: b.named_secs(a, process),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Workload {
        tally,
        warmup_errors: warmup.failed(),
        cpu: before
            .zip(after)
            .map(|(b, a)| b.until(&a, Some(service.pid()))),
        parts,
    })
}

/// The standard OAuth request (RFC 6749 §4.4): a form with `grant_type` and
/// `scope`, the client in HTTP Basic, the same bytes to every server.
struct OAuthForm {
    authorization: HeaderValue,
    body: Bytes,
}

impl OAuthForm {
    fn new(client: &ClientCredentials) -> Result<OAuthForm> {
        // Each part form-urlencoded first (RFC 6749 §2.3.1).
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!(
            "{}:{}",
            encode(&client.client_id),
            encode(&client.client_secret)
        );
        Ok(OAuthForm {
            authorization: HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)))
                .context("the Basic credentials")?,
            body: form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("scope", SCOPE)
                .finish()
                .into(),
        })
    }

    /// The same request as a wrk script, written into `dir`: a 200 without
    /// a JWT `access_token` is an error, as for the bench's own client.
    fn wrk_script(&self, dir: &std::path::Path) -> Result<PathBuf> {
        let authorization = self
            .authorization
            .to_str()
            .context("the Basic credentials are ASCII")?;
        let body = std::str::from_utf8(&self.body).context("the form is ASCII")?;
        let script = wrk::post_script(
            &[
                ("Authorization", authorization),
                ("Content-Type", FORM_CONTENT_TYPE),
            ],
            body,
            // `"access_token":"<JWT>"`: three dot-separated parts.
            r#""access_token"%s*:%s*"[%w_-]+%.[%w_-]+%.[%w_-]+""#,
        )?;
        let path = dir.join("token-request.lua");
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// One client per connection, posting to `url`: the same client as the
    /// gateway bench's.
    fn clients(&self, url: &str, options: &Options) -> Result<Vec<FormClient>> {
        (0..options.concurrency)
            .map(|_| {
                let (connection, target) = load::Connection::to(url)?;
                Ok(FormClient {
                    connection,
                    target,
                    authorization: self.authorization.clone(),
                    body: self.body.clone(),
                })
            })
            .collect()
    }
}

/// Posts the OAuth form; a 200 counts only with an access token in it.
struct FormClient {
    connection: load::Connection,
    target: load::Target,
    authorization: HeaderValue,
    body: Bytes,
}

impl Worker for FormClient {
    async fn request(&mut self) -> Result<(), Failure> {
        let mut request = self.target.request(Method::POST, self.body.clone());
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, self.authorization.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
        let body = self.connection.answer(request, 200).await?;
        if has_jwt_access_token(&body) {
            Ok(())
        } else {
            Err(Failure::new("200 without a JWT access_token"))
        }
    }
}

/// The OAuth form's content type, for both the bench's client and wrk.
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Whether a token answer holds `"access_token":"<JWT>"` (three parts).
/// Cheap: the answer is the request's result, not what is measured.
fn has_jwt_access_token(body: &[u8]) -> bool {
    body.split(|b| *b == b'"')
        .skip_while(|part| *part != b"access_token")
        .nth(2)
        .is_some_and(|jwt| !jwt.is_empty() && jwt.iter().filter(|b| **b == b'.').count() == 2)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // RFC 6749 §2.3.1: id and secret each form-urlencoded, then Basic.
        let form = OAuthForm::new(&ClientCredentials {
            client_id: "spn_1".into(),
            client_secret: "a:b c+/".into(),
        })
        .unwrap();
        let encoded = form
            .authorization
            .to_str()
            .unwrap()
            .strip_prefix("Basic ")
            .unwrap();
        let pair = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(pair, "spn_1:a%3Ab+c%2B%2F");
        assert_eq!(
            &form.body[..],
            b"grant_type=client_credentials&scope=bookings%3Aread"
        );
    }

    #[test]
    fn only_a_jwt_access_token_counts() {
        assert!(has_jwt_access_token(
            br#"{"access_token":"eyJh.eyJz.c2ln","expires_in":3600,"token_type":"Bearer"}"#
        ));
        assert!(!has_jwt_access_token(
            br#"{"access_token":"opaque","token_type":"Bearer"}"#
        ));
        assert!(!has_jwt_access_token(br#"{"error":"invalid_client"}"#));
        assert!(!has_jwt_access_token(
            br#"{"token_type":"Bearer","access_token":""}"#
        ));
    }
}
