//! The closing table: rates, latencies, ratios to the signing-only rate, and
//! whether each target is met. Targets inform; they never fail the run.

use crate::auth::{AuthReport, OidcMeasured, Options, Part, Workload};
use crate::cpu::CpuUsage;
use crate::load::Tally;
use crate::oidc_provider;
use launcher::Memory;
use std::fmt::Write;
use std::time::Duration;

/// Each direct request rate should be at least this share of the
/// signing-only rate.
pub const RATE_TARGET: f64 = 0.50;
/// Client-credentials exchanges through the gateway should reach at least
/// this multiple of node-oidc-provider's (one process per core).
pub const OIDC_PROVIDER_RATIO_TARGET: f64 = 4.0;
/// Peak RSS of the service should stay below this, in bytes (decimal MB).
pub const RSS_TARGET_BYTES: u64 = 60_000_000;
/// More failed requests than this share fails the run.
pub const MAX_ERROR_RATIO: f64 = 0.01;

impl AuthReport {
    fn workloads(&self) -> Vec<(&'static str, &Workload)> {
        let mut workloads = vec![
            ("client-credentials exchanges", &self.client_credentials),
            ("refresh rotations", &self.refresh),
            (
                "client-credentials through the gateway",
                &self.through_gateway,
            ),
        ];
        if let Ok(OidcMeasured {
            cluster, single, ..
        }) = &self.oidc
        {
            workloads.push(("node-oidc-provider, cluster", cluster));
            workloads.push(("node-oidc-provider, 1 process", single));
        }
        workloads
    }

    /// Names of the workloads with too many failed requests.
    pub fn failed_workloads(&self) -> Vec<&'static str> {
        self.workloads()
            .into_iter()
            .filter(|(_, w)| w.tally.error_ratio() > MAX_ERROR_RATIO)
            .map(|(name, _)| name)
            .collect()
    }

    pub fn render(&self, options: &Options) -> String {
        let signing = self.signing.per_second();
        let rate_cells = |tally: &Tally| {
            [
                format!("{:.1}/s", tally.rate()),
                format!(
                    "(p50 {}, p99 {})",
                    millis(tally.latency(0.50)),
                    millis(tally.latency(0.99))
                ),
            ]
        };
        let mut rows: Vec<[String; 5]> = Vec::new();
        for (name, workload) in [
            (
                "client-credentials exchanges, direct (JSON)",
                &self.client_credentials,
            ),
            ("refresh rotations, direct", &self.refresh),
        ] {
            let ratio = workload.tally.rate() / signing;
            let [rate, latency] = rate_cells(&workload.tally);
            rows.push([
                name.into(),
                rate,
                latency,
                format!("= {ratio:.2} of signing-only"),
                format!(
                    "target >= {RATE_TARGET:.2}  {}",
                    verdict(ratio >= RATE_TARGET)
                ),
            ]);
        }
        let gateway_rate = self.through_gateway.tally.rate();
        let [rate, latency] = rate_cells(&self.through_gateway.tally);
        let (ratio, target) = match &self.oidc {
            Ok(OidcMeasured { cluster, .. }) => {
                let ratio = gateway_rate / cluster.tally.rate();
                (
                    format!("= {ratio:.2} × node-oidc-provider (cluster)"),
                    oidc_target(ratio),
                )
            }
            Err(_) => (
                String::new(),
                format!("target >= {OIDC_PROVIDER_RATIO_TARGET:.2}  n/a"),
            ),
        };
        rows.push([
            "client-credentials through the gateway (OAuth form, Basic)".into(),
            rate,
            latency,
            ratio,
            target,
        ]);
        if let Ok(OidcMeasured {
            workers,
            cluster,
            single,
            ..
        }) = &self.oidc
        {
            for (label, workload) in [
                (
                    format!(
                        "node-oidc-provider {}, {workers} processes (node:cluster)",
                        oidc_provider::PACKAGE_VERSION
                    ),
                    cluster,
                ),
                (
                    format!(
                        "node-oidc-provider {}, 1 process",
                        oidc_provider::PACKAGE_VERSION
                    ),
                    single,
                ),
            ] {
                let [rate, latency] = rate_cells(&workload.tally);
                rows.push([
                    label,
                    rate,
                    latency,
                    format!(
                        "gateway path = {:.2} × this",
                        gateway_rate / workload.tally.rate()
                    ),
                    String::new(),
                ]);
            }
        }
        rows.push([
            "Ed25519 (EdDSA) signing only".into(),
            format!("{signing:.1}/s"),
            format!(
                "({} threads, {} signatures)",
                self.signing.threads, self.signing.signatures
            ),
            String::new(),
            String::new(),
        ]);
        rows.push(rss_row(
            "auth-service peak RSS (VmHWM)",
            &self.memory,
            RSS_TARGET_BYTES,
        ));

        let mut out = String::new();
        let _ = writeln!(
            out,
            "auth-service on PostgreSQL {}, gateway on Redis {}, {} clients, {} s each after a {} s warm-up, {} cores",
            self.postgres_version
                .split_whitespace()
                .next()
                .unwrap_or("?"),
            self.redis_version,
            options.concurrency,
            options.duration.as_secs(),
            options.warmup.as_secs(),
            options.cores,
        );
        out.push_str(&table(&rows));
        out.push('\n');
        out.push_str(&self.wrk_section(options));
        match &self.oidc {
            Ok(OidcMeasured {
                node_version,
                warnings,
                ..
            }) => {
                for warning in warnings {
                    let _ = writeln!(out, "node-oidc-provider said: {warning}");
                }
                let _ = writeln!(
                    out,
                    "through the gateway and to node-oidc-provider (node {node_version}): the same \
                     POST (grant_type=client_credentials, scope, the principal's id and secret in Basic), \
                     a 200 counting only with a JWT access_token; node-oidc-provider issues EdDSA JWT \
                     access tokens for one resource server, its client static in memory"
                );
            }
            Err(why) => {
                let _ = writeln!(out, "node-oidc-provider: NOT MEASURED: {why}");
            }
        }
        for (name, workload) in self.workloads() {
            out.push_str(&details(name, workload));
        }
        let _ = write!(
            out,
            "signing only: {} signatures in {:.2} s",
            self.signing.signatures,
            self.signing.elapsed.as_secs_f64()
        );
        if let Some(cpu) = self.signing_cpu.as_ref().filter(|cpu| cpu.bench > 0.0) {
            // What one core signs when the bench has it: times the cores, the
            // rate on a quiet machine.
            let _ = writeln!(
                out,
                ", {:.0} per CPU-second",
                self.signing.signatures as f64 / cpu.bench
            );
            out.push_str(&cpu_line(cpu, None, &[]));
        } else {
            out.push('\n');
        }
        let disturbed: Vec<&str> = self
            .workloads()
            .into_iter()
            .filter(|(_, workload)| workload.disturbed())
            .map(|(name, _)| name)
            .chain(
                self.signing_cpu
                    .as_ref()
                    .is_some_and(|cpu| cpu.other_processes > 0.05 * cpu.total())
                    .then_some("signing only"),
            )
            .collect();
        out.push_str(&disturbed_note(&disturbed));
        out.push_str(&log_note("auth-service", &self.service_log));
        out.push_str(&log_note("gateway", &self.gateway_log));
        out
    }
}

impl AuthReport {
    /// The target again, both sides under wrk, which costs less CPU per
    /// exchange than the bench's own client on the cores the servers share.
    fn wrk_section(&self, options: &Options) -> String {
        let cluster = match &self.oidc {
            Ok(oidc) => oidc.cluster_wrk.as_ref().map_err(String::as_str),
            Err(_) => Err("node-oidc-provider was not measured"),
        };
        let (gateway, cluster) = match (
            self.through_gateway_wrk.as_ref().map_err(String::as_str),
            cluster,
        ) {
            (Ok(gateway), Ok(cluster)) => (gateway, cluster),
            (Err(why), _) | (_, Err(why)) => {
                return format!("the same under wrk: NOT MEASURED: {why}\n\n");
            }
        };
        let ratio = gateway.requests_per_sec / cluster.requests_per_sec;
        let rows = vec![
            wrk_row("client-credentials through the gateway", gateway),
            wrk_row("node-oidc-provider (cluster)", cluster),
            [
                "through the gateway / node-oidc-provider".into(),
                format!("{ratio:.2}"),
                String::new(),
                String::new(),
                oidc_target(ratio),
            ],
        ];
        let mut out = format!(
            "the same target under wrk (-t{} -c{}, the same POST, {} s each, after the runs above; \
             a 200 without a JWT access_token counts as an error):\n",
            options.cores,
            options.concurrency,
            options.duration.as_secs()
        );
        out.push_str(&table(&rows));
        out.push('\n');
        out
    }
}

/// The node-oidc-provider ratio's target cell.
fn oidc_target(ratio: f64) -> String {
    format!(
        "target >= {OIDC_PROVIDER_RATIO_TARGET:.2}  {}",
        verdict(ratio >= OIDC_PROVIDER_RATIO_TARGET)
    )
}

/// A table row of one wrk run: its rate and its errors.
pub fn wrk_row(label: &str, rate: &crate::wrk::WrkRate) -> [String; 5] {
    [
        label.to_owned(),
        format!("{:.1}/s", rate.requests_per_sec),
        format!("({} errors)", rate.errors),
        String::new(),
        String::new(),
    ]
}

/// Which phases other processes disturbed, when any did.
pub fn disturbed_note(phases: &[&str]) -> String {
    if phases.is_empty() {
        return String::new();
    }
    format!(
        "note: other processes took more than 5% of the CPU during {}; \
         the figures are lower than on a quiet machine\n",
        phases.join(", ")
    )
}

/// How many lines a part logged at warn or above, and the last ones.
pub fn log_note(part: &str, (lines, tail): &(usize, Vec<String>)) -> String {
    let mut out = String::new();
    if *lines > 0 {
        let _ = writeln!(
            out,
            "{part} logged {lines} line(s) at warn or above; the last ones:"
        );
        for line in tail {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// `name: N ok, M failed (x%) in s [reasons]`, without a line end.
pub fn tally_summary(name: &str, tally: &Tally) -> String {
    let mut out = format!(
        "{name}: {} ok, {} failed ({:.2}%) in {:.2} s",
        tally.ok,
        tally.failed(),
        tally.error_ratio() * 100.0,
        tally.elapsed.as_secs_f64()
    );
    if !tally.errors.is_empty() {
        let reasons: Vec<String> = tally
            .errors
            .iter()
            .map(|(reason, n)| format!("{n}× {reason}"))
            .collect();
        let _ = write!(out, " [{}]", reasons.join(", "));
    }
    out
}

/// Requests and failures, then where the CPU time went.
fn details(name: &str, workload: &Workload) -> String {
    let tally = &workload.tally;
    let mut out = tally_summary(name, tally);
    if !tally.stopped.is_empty() {
        let _ = write!(out, "; {} worker(s) stopped early", tally.stopped.len());
    }
    if workload.warmup_errors > 0 {
        let _ = write!(out, "; {} failed during warm-up", workload.warmup_errors);
    }
    out.push('\n');
    if let Some(cpu) = &workload.cpu {
        out.push_str(&cpu_line(cpu, Some(tally.ok), &workload.parts));
    }
    out
}

/// Where the CPU time of a phase went, per request when it served requests:
/// auth-service, PostgreSQL, the bench's other `parts`, the client, other
/// processes (by name), the kernel's own time (loopback networking, mostly),
/// idle.
fn cpu_line(cpu: &CpuUsage, requests: Option<u64>, parts: &[Part]) -> String {
    let mut out = format!("  cpu s of {:.1}:", cpu.total());
    match requests {
        Some(n) => {
            let per = |secs: f64| micros(Duration::from_secs_f64(secs / n.max(1) as f64));
            let _ = write!(
                out,
                " auth-service {:.1} ({}/request), postgres {:.1} ({}/request),",
                cpu.service,
                micros(cpu.service_per(n)),
                cpu.postgres,
                micros(cpu.postgres_per(n)),
            );
            for part in parts {
                let _ = write!(
                    out,
                    " {} {:.1} ({}/request),",
                    part.label,
                    part.secs,
                    per(part.secs)
                );
            }
            let _ = write!(out, " bench client {:.1},", cpu.bench);
        }
        None => {
            let _ = write!(
                out,
                " bench {:.1}, postgres {:.1},",
                cpu.bench, cpu.postgres
            );
        }
    }
    let in_parts: f64 = parts.iter().map(|p| p.secs).sum();
    let _ = write!(
        out,
        " other processes {:.1}",
        (cpu.other_processes - in_parts).max(0.0)
    );
    let named: Vec<String> = cpu
        .top_others
        .iter()
        .filter(|(name, _)| !parts.iter().any(|p| p.process == name))
        .map(|(name, secs)| format!("{name} {secs:.1}"))
        .collect();
    if !named.is_empty() {
        let _ = write!(out, " (of which {})", named.join(", "));
    }
    let _ = writeln!(
        out,
        ", kernel and exited processes {:.1}, idle {:.1}",
        (cpu.other - cpu.other_processes).max(0.0),
        cpu.idle
    );
    out
}

/// Peak RSS (and the current), against a target in bytes (decimal MB).
pub fn rss_row(label: &str, memory: &Memory, target_bytes: u64) -> [String; 5] {
    [
        label.into(),
        format!("{:.1} MB", mb(memory.peak_kb)),
        format!(
            "({} kB; VmRSS {:.1} MB)",
            memory.peak_kb,
            mb(memory.current_kb)
        ),
        String::new(),
        format!(
            "target < {} MB  {}",
            target_bytes / 1_000_000,
            verdict(memory.peak_kb * 1024 < target_bytes)
        ),
    ]
}

/// Columns three spaces apart, the rate right-aligned; trailing blanks trimmed.
pub fn table(rows: &[[String; 5]]) -> String {
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 1 {
                let _ = write!(line, "{cell:>w$}   ", w = widths[c]);
            } else {
                let _ = write!(line, "{cell:<w$}   ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn verdict(met: bool) -> &'static str {
    if met { "PASS" } else { "MISS" }
}

pub fn millis(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.2} ms", d.as_secs_f64() * 1000.0),
        None => "n/a".into(),
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// kB (KiB, as /proc counts) to decimal megabytes.
pub fn mb(kb: u64) -> f64 {
    (kb * 1024) as f64 / 1_000_000.0
}
