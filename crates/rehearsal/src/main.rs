//! `spaceport-rehearsal` (`make run-distributed`): the distributed topology as
//! processes, until Ctrl-C.

use anyhow::Result;
use clap::Parser;
use rehearsal::{Options, Topology};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "spaceport-rehearsal",
    about = "Each service (auth, booking, spaces, events) its own process and PostgreSQL database, a shared Redis, several gateways and booking replicas"
)]
struct Cli {
    /// PostgreSQL URL allowed to create databases (one per service, dropped at exit)
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Where the part binaries are [default: beside this binary]
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Logs and the mail outbox
    #[arg(long, default_value = "./data/rehearsal")]
    dir: PathBuf,
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    #[arg(long, default_value_t = 2)]
    booking_replicas: usize,
    #[arg(long, default_value_t = 1)]
    events_replicas: usize,
    /// Gateways on PORT, PORT+10, …; auth PORT+1; booking PORT+2, PORT+12, …; spaces PORT+3; events PORT+4, PORT+14, …
    #[arg(long, default_value_t = 8080)]
    base_port: u16,
}

async fn run(cli: Cli) -> Result<()> {
    let bin_dir = match cli.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    std::fs::create_dir_all(&cli.dir)?;
    let options = Options {
        postgres_url: cli.postgres_url,
        redis_url: cli.redis_url,
        bin_dir,
        dir: std::fs::canonicalize(&cli.dir)?,
        gateways: cli.gateways,
        booking_replicas: cli.booking_replicas,
        events_replicas: cli.events_replicas,
        base_port: Some(cli.base_port),
        extra_env: Vec::new(),
    };
    let topology = Topology::start(&options).await?;
    println!("Spaceport (distributed rehearsal) is up. Ctrl-C stops it and drops its databases.");
    for part in topology.parts() {
        println!(
            "  {:<18} {}  (pid {})",
            part.name(),
            part.base_url(),
            part.pid()
        );
    }
    println!("  logs and mail: {}", options.dir.display());
    tokio::signal::ctrl_c().await?;
    for part in topology.parts() {
        let _ = part.terminate();
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("spaceport-rehearsal: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spaceport-rehearsal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
