//! Closed-loop load: a fixed number of workers, each sending its next request
//! as soon as the previous answer is read, for a fixed time.

use crate::api::AuthApi;
use identity::Identity;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN_PATH: &str = "/v1/auth/token";

/// What one worker repeats.
pub enum Job {
    /// Exchanges a service principal's id and secret for an access token.
    ClientCredentials { body: serde_json::Value },
    /// Rotates its own session's refresh token: each answer holds the next one.
    Refresh { refresh_token: String },
}

/// Why a request did not count.
struct Failure {
    reason: String,
    /// The worker cannot go on (its refresh token chain is broken).
    fatal: bool,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            fatal: false,
        }
    }
}

impl Job {
    async fn once(&mut self, api: &AuthApi, caller: &Identity) -> Result<(), Failure> {
        match self {
            Job::ClientCredentials { body } => {
                let reply = api
                    .post(TOKEN_PATH, caller, body)
                    .await
                    .map_err(|e| Failure::new(transport_error(&e)))?;
                if reply.status != 200 {
                    return Err(Failure::new(format!("HTTP {}", reply.status)));
                }
                Ok(())
            }
            Job::Refresh { refresh_token } => {
                let body = serde_json::json!({ "refresh_token": refresh_token });
                let reply = api
                    .post(TOKEN_PATH, caller, &body)
                    .await
                    .map_err(|e| Failure::new(transport_error(&e)))?;
                // A 4xx means the token is spent or revoked: no retry can help.
                // A 5xx left it unused (the rotation's transaction rolled back).
                if reply.status != 200 {
                    return Err(Failure {
                        reason: format!("HTTP {}", reply.status),
                        fatal: (400..500).contains(&reply.status),
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

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        format!("transport: {e}")
    }
}

/// What a phase did.
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    /// Failures by reason.
    pub errors: BTreeMap<String, u64>,
    /// Workers that had to stop early, with why.
    pub stopped: Vec<String>,
    /// Latency of every successful request, microseconds, sorted.
    latencies_us: Vec<u32>,
    /// From the start until the last worker's last answer.
    pub elapsed: Duration,
}

impl Tally {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Failed requests over all requests.
    pub fn error_ratio(&self) -> f64 {
        let all = self.ok + self.failed();
        if all == 0 {
            1.0
        } else {
            self.failed() as f64 / all as f64
        }
    }

    /// The `q` quantile (0–1) of successful requests' latency, nearest rank.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize).max(1);
        let us = self.latencies_us[rank.min(self.latencies_us.len()) - 1];
        Some(Duration::from_micros(u64::from(us)))
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        for (reason, n) in other.errors {
            *self.errors.entry(reason).or_default() += n;
        }
        self.stopped.extend(other.stopped);
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Runs one task per job for `duration`; returns the jobs (a refresh job holds
/// its latest token) and what they did together.
pub async fn run(api: &Arc<AuthApi>, jobs: Vec<Job>, duration: Duration) -> (Vec<Job>, Tally) {
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = jobs
        .into_iter()
        .map(|job| tokio::spawn(work(api.clone(), job, deadline)))
        .collect();
    let mut jobs = Vec::with_capacity(workers.len());
    let mut total = Tally::default();
    for worker in workers {
        let (job, tally) = worker.await.expect("a bench worker panicked");
        jobs.push(job);
        total.merge(tally);
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    (jobs, total)
}

async fn work(api: Arc<AuthApi>, mut job: Job, deadline: Instant) -> (Job, Tally) {
    let caller = Identity::anonymous();
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let sent = Instant::now();
        match job.once(&api, &caller).await {
            Ok(()) => {
                tally.ok += 1;
                let us = sent.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(failure) => {
                *tally.errors.entry(failure.reason.clone()).or_default() += 1;
                if failure.fatal {
                    tally.stopped.push(failure.reason);
                    break;
                }
                // Keep a failing service from being hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (job, tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let tally = Tally {
            ok: 100,
            latencies_us: (1..=100).collect(),
            elapsed: Duration::from_secs(2),
            ..Tally::default()
        };
        assert_eq!(tally.latency(0.5), Some(Duration::from_micros(50)));
        assert_eq!(tally.latency(0.99), Some(Duration::from_micros(99)));
        assert_eq!(tally.latency(1.0), Some(Duration::from_micros(100)));
        assert_eq!(tally.rate(), 50.0);
        assert_eq!(Tally::default().latency(0.5), None);
    }

    #[test]
    fn error_ratio_counts_every_failure() {
        let mut tally = Tally {
            ok: 99,
            ..Tally::default()
        };
        tally.errors.insert("HTTP 503".into(), 1);
        assert!((tally.error_ratio() - 0.01).abs() < 1e-9);
    }
}
