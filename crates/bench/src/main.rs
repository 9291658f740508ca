//! `spaceport-bench`: throughput benchmarks of the services (`make bench`).
//!
//! `spaceport-bench auth` starts the release auth-service binary on a fresh
//! PostgreSQL database and measures, in one run, client-credentials exchanges/s
//! and refresh rotations/s beside the signing-only rate of the service's token
//! algorithm, and the service's peak RSS. Figures and ratios are reported, with
//! the targets marked PASS or MISS; only a failing workload (more than
//! 1% failed requests) makes the command fail.
//!
//! `spaceport-bench spaces` does the same for spaces-service: space-key
//! introspections/s with a warm cache, and `GET /api/v1/spaces` latency for a
//! workspace with 10,000 spaces.
//!
//! `spaceport-bench booking` measures booking-service: bookings created/s
//! with the overlap check beside pgbench's rate of the same INSERT, and one
//! day's availability of a space with 100,000 bookings.
//!
//! `spaceport-bench gateway` measures the gateway in front of a trivial
//! upstream (nginx answering `200 ok`) beside nginx's own `proxy_pass` as the
//! reference proxy, with the same load generator settings for each target:
//! requests/s and p50/p99 latency direct to the upstream, through nginx,
//! through two bare proxies that only forward (`spaceport-bare-proxy`:
//! actix-web + reqwest, the gateway's stack, and hyper alone), through the gateway with
//! a JWT and with an API key (warm cache); then the
//! gateway's peak RSS at 256 connections. nginx is installed with apt-get when
//! missing; auth-service runs for the JWKS, the user and the API key.
//!
//! Each service runs as its own binary (started by the `launcher` crate) on a
//! scratch database; every workload is a closed loop (`load`).

mod api;
mod auth;
mod booking;
mod cpu;
mod gateway;
mod load;
mod report;
mod service;
mod setup;
mod signing;
mod spaces;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Parser)]
#[command(
    name = "spaceport-bench",
    about = "Throughput benchmarks of the Spaceport services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// auth-service on PostgreSQL: client-credentials exchanges, refresh
    /// rotations, the signing-only reference, peak RSS
    Auth(AuthArgs),
    /// spaces-service on PostgreSQL: space-key introspections/s with a warm
    /// cache, `GET /api/v1/spaces` latency for a workspace with many spaces
    Spaces(SpacesArgs),
    /// booking-service on PostgreSQL: bookings created/s beside pgbench's raw
    /// INSERT rate, one day's availability of a space with 100,000 bookings
    Booking(BookingArgs),
    /// The gateway in front of a trivial upstream beside nginx's proxy_pass:
    /// requests/s and latency with a JWT and an API key, peak RSS
    Gateway(GatewayArgs),
}

#[derive(Args)]
struct GatewayArgs {
    /// Connections of each compared target (one per client, closed loop)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Connections of the gateway's memory phase
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    rss_concurrency: u16,
    /// Measured seconds of each target
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// PostgreSQL server on which the bench creates (and drops) auth-service's
    /// database [default: $BENCH_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres]
    #[arg(long)]
    database_url: Option<String>,
    /// The auth-service binary [default: auth-service next to this binary]
    #[arg(long)]
    auth_bin: Option<PathBuf>,
    /// The gateway binary [default: gateway next to this binary]
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
}

#[derive(Args)]
struct BookingArgs {
    /// Concurrent clients of the creation workload (and of pgbench)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Meeting spaces the created bookings spread over
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    spaces: u16,
    /// Measured seconds of each workload
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// PostgreSQL server on which the bench creates (and drops) its database
    /// [default: $BENCH_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres]
    #[arg(long)]
    database_url: Option<String>,
    /// The booking-service binary [default: booking-service next to this binary]
    #[arg(long)]
    service_bin: Option<PathBuf>,
    /// The pgbench binary
    #[arg(long, default_value = "pgbench")]
    pgbench_bin: PathBuf,
}

#[derive(Args)]
struct SpacesArgs {
    /// Concurrent clients of the introspection workload (closed loop)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Concurrent clients of the list workload, whose latency is measured
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    list_concurrency: u16,
    /// Measured seconds of each workload
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Spaces in the listed workspace, created through the API first
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    spaces: u64,
    /// PostgreSQL server on which the bench creates (and drops) its database
    /// [default: $BENCH_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres]
    #[arg(long)]
    database_url: Option<String>,
    /// The spaces-service binary [default: spaces-service next to this binary]
    #[arg(long)]
    service_bin: Option<PathBuf>,
}

#[derive(Args)]
struct AuthArgs {
    /// Concurrent clients (closed loop: each sends its next request when the
    /// previous answer has arrived)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Measured seconds of each workload and of the signing-only reference
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// PostgreSQL server on which the bench creates (and drops) its database
    /// [default: $BENCH_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres]
    #[arg(long)]
    database_url: Option<String>,
    /// The auth-service binary [default: auth-service next to this binary]
    #[arg(long)]
    service_bin: Option<PathBuf>,
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Auth(args) => bench_auth(args),
        Command::Spaces(args) => bench_spaces(args),
        Command::Booking(args) => bench_booking(args),
        Command::Gateway(args) => bench_gateway(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spaceport-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench_auth(args: AuthArgs) -> Result<ExitCode> {
    let options = auth::Options {
        concurrency: usize::from(args.concurrency),
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(1),
        database_url: database_url(args.database_url),
        service_bin: part_binary(args.service_bin, "auth-service")?,
        cores: cores(),
    };
    execute(
        auth::run(&options),
        |r| r.render(&options),
        auth::AuthReport::failed_workloads,
    )
}

fn bench_spaces(args: SpacesArgs) -> Result<ExitCode> {
    let options = spaces::Options {
        concurrency: usize::from(args.concurrency),
        list_concurrency: usize::from(args.list_concurrency),
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(1),
        spaces: usize::try_from(args.spaces).context("--spaces")?,
        database_url: database_url(args.database_url),
        service_bin: part_binary(args.service_bin, "spaces-service")?,
        cores: cores(),
    };
    execute(
        spaces::run(&options),
        |r| r.render(&options),
        spaces::SpacesReport::failed_workloads,
    )
}

fn bench_booking(args: BookingArgs) -> Result<ExitCode> {
    let options = booking::Options {
        concurrency: usize::from(args.concurrency),
        spaces: usize::from(args.spaces),
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(1),
        database_url: database_url(args.database_url),
        service_bin: part_binary(args.service_bin, "booking-service")?,
        pgbench_bin: args.pgbench_bin,
        cores: cores(),
    };
    execute(
        booking::run(&options),
        |r| r.render(&options),
        booking::BookingReport::failed_workloads,
    )
}

fn bench_gateway(args: GatewayArgs) -> Result<ExitCode> {
    let options = gateway::Options {
        concurrency: usize::from(args.concurrency),
        rss_concurrency: usize::from(args.rss_concurrency),
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(1),
        database_url: database_url(args.database_url),
        auth_bin: part_binary(args.auth_bin, "auth-service")?,
        gateway_bin: part_binary(args.gateway_bin, "gateway")?,
        bare_proxy_bin: part_binary(None, "spaceport-bare-proxy")?,
        cores: cores(),
    };
    execute(
        gateway::run(&options),
        |r| r.render(&options),
        gateway::GatewayReport::failed_workloads,
    )
}

/// Runs a bench, prints its report, and fails when a workload had more than
/// [`report::MAX_ERROR_RATIO`] failed requests. Targets inform; they never
/// fail the run.
fn execute<R>(
    bench: impl Future<Output = Result<R>>,
    render: impl FnOnce(&R) -> String,
    failed_workloads: impl FnOnce(&R) -> Vec<&'static str>,
) -> Result<ExitCode> {
    // reqwest is built without a rustls provider in this workspace.
    service_kit::tls::ensure_provider();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(async {
        // On Ctrl-C the run is dropped, and with it the services and database.
        tokio::select! {
            report = bench => report,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    })?;
    print!("{}", render(&report));
    let failed = failed_workloads(&report);
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "spaceport-bench: more than {:.0}% of requests failed: {}",
            report::MAX_ERROR_RATIO * 100.0,
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// `--database-url`, else `$BENCH_DATABASE_URL`, else the local server.
fn database_url(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("BENCH_DATABASE_URL").ok())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// The flag's path, else `name` next to this binary.
fn part_binary(flag: Option<PathBuf>, name: &str) -> Result<PathBuf> {
    match flag {
        Some(path) => Ok(path),
        None => Ok(std::env::current_exe()
            .context("locating this binary")?
            .with_file_name(name)),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
