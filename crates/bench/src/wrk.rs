//! wrk, the load generator the issue's own gateway table was measured with
//! (Debian's package, installed with apt-get when missing): a second view of
//! the gateway's ratio targets. The bench's own client ([`crate::load::Connection`]
//! on one thread) costs about half the gateway's CPU per request and shares
//! the cores with it, which pulls every ratio toward 1; wrk costs less, so
//! its ratios are closer to what the proxies themselves cost.

use crate::external;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Wrk {
    binary: PathBuf,
}

/// What wrk sends.
pub enum Request<'a> {
    /// `GET`, with one header (`Name: value`) if given.
    Get { header: Option<&'a str> },
    /// What a Lua script sets (see [`post_script`]).
    Script(&'a Path),
}

/// A wrk script that posts `body` with `headers`, and counts as an error a
/// 200 whose body does not match the Lua pattern `expected` (wrk itself
/// counts other statuses): the script's `done` prints `Bad answers: N`,
/// which [`parse`] adds to the errors. Values must be printable ASCII.
pub fn post_script(headers: &[(&str, &str)], body: &str, expected: &str) -> Result<String> {
    let quoted = |s: &str| -> Result<String> {
        if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            bail!("not printable ASCII: {s:?}");
        }
        Ok(format!(
            "\"{}\"",
            s.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    };
    let mut script = format!("wrk.method = \"POST\"\nwrk.body = {}\n", quoted(body)?);
    for (name, value) in headers {
        script.push_str(&format!(
            "wrk.headers[{}] = {}\n",
            quoted(name)?,
            quoted(value)?
        ));
    }
    script.push_str(&format!(
        r#"bad = 0
function response(status, headers, body)
  if status == 200 and not string.find(body, {}) then
    bad = bad + 1
  end
end
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do
    n = n + thread:get("bad")
  end
  io.write(string.format("Bad answers: %d\n", n))
end
"#,
        quoted(expected)?
    ));
    Ok(script)
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

    /// `request` to `url` over `connections` keep-alive connections from
    /// `threads` threads for `duration`.
    pub async fn run(
        &self,
        url: &str,
        request: Request<'_>,
        (threads, connections): (usize, usize),
        duration: Duration,
    ) -> Result<WrkRate> {
        let mut command = std::process::Command::new(&self.binary);
        command
            .arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", duration.as_secs().max(1)));
        match request {
            Request::Get {
                header: Some(header),
            } => {
                command.arg("-H").arg(header);
            }
            Request::Get { header: None } => {}
            Request::Script(script) => {
                command.arg("-s").arg(script);
            }
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
        } else if let Some(value) = line.strip_prefix("Bad answers:") {
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
    fn a_post_script_quotes_what_it_sends() {
        let script = post_script(
            &[
                ("Authorization", "Basic YTpi"),
                ("X-Quote", r#"say "hi" \ bye"#),
            ],
            "grant_type=client_credentials&scope=a%3Ab",
            r#""access_token"%s*:"#,
        )
        .unwrap();
        assert!(script.contains("wrk.method = \"POST\"\n"));
        assert!(script.contains("wrk.body = \"grant_type=client_credentials&scope=a%3Ab\"\n"));
        assert!(script.contains("wrk.headers[\"Authorization\"] = \"Basic YTpi\"\n"));
        assert!(script.contains(r#"wrk.headers["X-Quote"] = "say \"hi\" \\ bye""#));
        assert!(script.contains(r#"string.find(body, "\"access_token\"%s*:")"#));
        assert!(script.contains(r#"io.write(string.format("Bad answers: %d\n", n))"#));
        assert!(post_script(&[], "line\nbreak", "x").is_err());
    }

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
Bad answers: 2
Transfer/sec:      8.00MB
";
        assert_eq!(
            parse(report).unwrap(),
            WrkRate {
                requests_per_sec: 60012.3,
                requests: 600_123,
                errors: 9
            }
        );
        let clean = "  10 requests in 1.00s, 1.00KB read\nRequests/sec:     10.00\n";
        assert_eq!(parse(clean).unwrap().errors, 0);
        assert!(parse("wrk: connection refused").is_err());
    }
}
