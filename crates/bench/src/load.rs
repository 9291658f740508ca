//! Closed-loop load: a fixed number of workers, each sending its next request
//! as soon as the previous answer is read, for a fixed time. Every bench
//! drives its workload through [`run`]; what a request is, and what counts as
//! its success, is the worker's.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// One client of a closed loop: it sends a request and reads the whole answer.
pub trait Worker: Send + 'static {
    fn request(&mut self) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Why a request did not count.
pub struct Failure {
    pub reason: String,
    /// The worker cannot go on (a refresh token chain is broken, say).
    pub fatal: bool,
}

impl Failure {
    pub fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            fatal: false,
        }
    }

    /// A failed send or a body that could not be read.
    pub fn transport(e: &reqwest::Error) -> Failure {
        Failure::new(if e.is_timeout() {
            "timeout".to_owned()
        } else if e.is_connect() {
            "connection refused".to_owned()
        } else {
            // reqwest's own message is generic: the cause says what happened.
            let mut reason = format!("transport: {e}");
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                reason.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            reason
        })
    }

    /// An answer with another status than the one expected.
    pub fn status(status: u16) -> Failure {
        Failure::new(format!("HTTP {status}"))
    }
}

/// Sends `request` and reads its whole answer, which must have the
/// `expected` status; the body, for the worker's own checks.
pub async fn answer(
    request: reqwest::RequestBuilder,
    expected: u16,
) -> Result<bytes::Bytes, Failure> {
    let response = request.send().await.map_err(|e| Failure::transport(&e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| Failure::transport(&e))?;
    if status != expected {
        return Err(Failure::status(status));
    }
    Ok(body)
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
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
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

    /// Successful requests of the given latencies, over `elapsed`.
    pub fn of(latencies: Vec<Duration>, elapsed: Duration) -> Tally {
        let mut latencies_us: Vec<u32> = latencies
            .iter()
            .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
            .collect();
        latencies_us.sort_unstable();
        Tally {
            ok: latencies_us.len() as u64,
            latencies_us,
            elapsed,
            ..Tally::default()
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

/// Runs every worker on its own task for `duration`; returns the workers
/// (one may hold state the next phase continues from) and what they did
/// together. The latency of each successful request is recorded.
pub async fn run<W: Worker>(workers: Vec<W>, duration: Duration) -> (Vec<W>, Tally) {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| tokio::spawn(work(worker, deadline)))
        .collect();
    let mut workers = Vec::with_capacity(tasks.len());
    let mut total = Tally::default();
    for task in tasks {
        let (worker, tally) = task.await.expect("a bench worker panicked");
        workers.push(worker);
        total.merge(tally);
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    (workers, total)
}

async fn work<W: Worker>(mut worker: W, deadline: Instant) -> (W, Tally) {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let sent = Instant::now();
        match worker.request().await {
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
    (worker, tally)
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
