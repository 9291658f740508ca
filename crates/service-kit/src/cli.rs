//! The command line every server binary shares:
//! `NAME [--config FILE] [serve|migrate|check-config]`.

use crate::app::AppSpec;
use crate::config::{self, Settings};
use clap::{Parser, Subcommand};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// One deployable part: the gateway or a service.
pub trait ServicePart {
    /// Binary and metrics name, e.g. `booking-service`.
    const NAME: &'static str;
    /// Environment variable prefix, e.g. `BOOKING`.
    const ENV_PREFIX: &'static str;
    type Config: Settings + Clone + Send + Sync + 'static;

    /// The built-in defaults, the first configuration layer.
    fn default_config() -> Self::Config;

    /// Applies pending database migrations and returns.
    fn migrate(config: &Self::Config) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Connects to what the part needs and describes its app.
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<AppSpec>> + Send;
}

#[derive(Debug, Parser)]
struct Cli {
    /// TOML file layered between the built-in defaults and the environment.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending database migrations, then exit (the Kubernetes Job).
    Migrate,
    /// Load and validate the configuration, then exit.
    CheckConfig,
}

/// Loads a part's configuration or explains, naming the key, why it cannot.
pub fn load_config<P: ServicePart>(file: Option<&std::path::Path>) -> Result<P::Config, String> {
    config::load::<P::Config>(P::ENV_PREFIX, file, &P::default_config())
        .map_err(|e| format!("{}: {e}", P::NAME))
}

/// The runtime a server process runs on. actix workers have runtimes of their
/// own; this one only starts servers, runs background tasks and waits.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// `main` of a server binary. Exit codes: 0 done, 1 runtime failure, 2 bad configuration.
pub fn run<P: ServicePart>() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config::<P>(cli.config.as_deref()) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log());
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the runtime: {e}", P::NAME);
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::CheckConfig => {
                println!("{}: configuration is valid", P::NAME);
                Ok(())
            }
            Command::Migrate => P::migrate(&config).await,
            Command::Serve => {
                let http = config.http().clone();
                let spec = P::build(config).await?;
                let server = crate::server::start(spec, &http, None)?;
                crate::server::serve_until_signal(vec![server]).await;
                Ok(())
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "{} failed", P::NAME);
            eprintln!("{}: {e:#}", P::NAME);
            ExitCode::FAILURE
        }
    }
}
