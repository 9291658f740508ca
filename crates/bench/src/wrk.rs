//! wrk, the load generator the issue's own gateway table was measured with
//! (Debian's package, installed with apt-get when missing): a second view of
//! the gateway's ratio targets. The bench's own client (reqwest) costs about
//! as much CPU per request as the gateway and shares the cores with it, which
//! pulls every ratio toward 1; wrk costs a fraction of that, so its ratios
//! are closer to what the proxies themselves cost.

use crate::external;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::time::Duration;

pub struct Wrk {
    binary: PathBuf,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkRate {
    pub requests_per_sec: f64,
    pub requests: u64,
    /// Answers other than 2xx/3xx, and socket errors.
    pub errors: u64,
}

impl Wrk {
    pub fn install() -> Result<Wrk> {
        Ok(Wrk {
            binary: external::program_or_apt("wrk", &["wrk"])?,
        })
    }

    /// `GET url` over `connections` keep-alive connections from `threads`
    /// threads for `duration`, with one `header` (`Name: value`) if given.
    pub async fn run(
        &self,
        url: &str,
        header: Option<&str>,
        (threads, connections): (usize, usize),
        duration: Duration,
    ) -> Result<WrkRate> {
        let mut command = std::process::Command::new(&self.binary);
        command
            .arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", duration.as_secs().max(1)));
        if let Some(header) = header {
            command.arg("-H").arg(header);
        }
        command.arg(url);
        // On a blocking thread: the bench's runtime keeps serving meanwhile.
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .context("waiting for wrk")?
            .context("running wrk")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}): {text}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
    }
}

/// The rate, the count and the errors of wrk's report.
fn parse(report: &str) -> Result<WrkRate> {
    let mut rate = None;
    let mut requests = None;
    let mut errors = 0;
    for line in report.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            rate = value.trim().parse::<f64>().ok();
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse::<u64>().ok();
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += value.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(value) = line.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 0`
            errors += value
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    match (rate, requests) {
        (Some(requests_per_sec), Some(requests)) => Ok(WrkRate {
            requests_per_sec,
            requests,
            errors,
        }),
        _ => bail!("no `Requests/sec:` or `N requests in` line"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_read() {
        let report = "Running 10s test @ http://127.0.0.1:8080/bench/x
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.01ms  300.00us  10.00ms   90.00%
    Req/Sec    30.00k     1.00k   33.00k    70.00%
  600123 requests in 10.00s, 80.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  60012.30
Transfer/sec:      8.00MB
";
        assert_eq!(
            parse(report).unwrap(),
            WrkRate {
                requests_per_sec: 60012.3,
                requests: 600_123,
                errors: 7
            }
        );
        let clean = "  10 requests in 1.00s, 1.00KB read\nRequests/sec:     10.00\n";
        assert_eq!(parse(clean).unwrap().errors, 0);
        assert!(parse("wrk: connection refused").is_err());
    }
}
