//! The whole platform in one process, for a laptop: the gateway and the four
//! services on their default ports (8080–8084), SQLite under `./data/`, one
//! in-process cache shared by all (so revocations published by a service reach
//! the gateway), and the in-process event stream (`memory://`) that the
//! services' relays publish to and events-service consumes.
//!
//! Each part reads the same environment variables as its own binary
//! (`AUTH__…`, `BOOKING__…`, `SPACES__…`, `EVENTS__…`, `GATEWAY__…`), so any
//! part can be pointed at PostgreSQL or Redis without changing the others.
//!
//! Two defaults differ from the binaries': events-service starts with
//! `webhooks.allow_private_targets = true`, so that webhook receivers on this
//! machine (`http://127.0.0.1:…`) work out of the box, and spaces-service with
//! `watermarks.allow_private_targets = true`, so that a watermark image served
//! on this machine does too. They are built-in defaults of the devstack only,
//! so `EVENTS__WEBHOOKS__ALLOW_PRIVATE_TARGETS=false` (and
//! `SPACES__WATERMARKS__ALLOW_PRIVATE_TARGETS=false`) turn the checks back on.

use service_kit::cli::{ServicePart, load_config};
use service_kit::config::Settings;
use service_kit::server::{RunningServer, serve_until_signal, start};
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

async fn launch<P: ServicePart>(servers: &mut Vec<RunningServer>) -> anyhow::Result<()> {
    launch_with::<P>(servers, P::default_config()).await
}

/// As [`launch`], with `defaults` in place of the part's built-in defaults as
/// the first configuration layer (the environment still overrides them).
async fn launch_with<P: ServicePart>(
    servers: &mut Vec<RunningServer>,
    defaults: P::Config,
) -> anyhow::Result<()> {
    let config = service_kit::config::load::<P::Config>(P::ENV_PREFIX, None, &defaults)
        .map_err(|e| anyhow::anyhow!("{}: {e}", P::NAME))?;
    let http = config.http().clone();
    let spec = P::build(config)
        .await
        .map_err(|e| e.context(format!("{} failed to start", P::NAME)))?;
    servers.push(
        start(spec, &http, None)
            .map_err(|e| anyhow::anyhow!("{}: cannot listen on {}: {e}", P::NAME, http.addr))?,
    );
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let mut servers = Vec::new();
    let started = async {
        // The gateway first: on one machine it creates the identity key pair whose
        // public half the services load.
        launch::<gateway::GatewayPart>(&mut servers).await?;
        launch::<auth_service::AuthService>(&mut servers).await?;
        launch::<booking_service::BookingService>(&mut servers).await?;
        launch_with::<spaces_service::SpacesService>(&mut servers, spaces_defaults()).await?;
        launch_with::<events_service::EventsService>(&mut servers, events_defaults()).await
    }
    .await;
    if let Err(e) = started {
        for server in servers {
            server.stop(false).await;
        }
        return Err(e);
    }
    let gateway = servers.first().map(|s| s.addr).expect("gateway started");
    println!("Spaceport is up: gateway at http://{gateway}  (Ctrl-C to stop)");
    for server in &servers {
        println!("  {:<16} {}", server.name, server.url());
    }
    serve_until_signal(servers).await;
    Ok(())
}

/// events-service's defaults in the devstack: receivers on this machine are
/// allowed (`http://`, loopback and private addresses), as a developer's local
/// webhook receiver needs. Production keeps the built-in `false`.
fn events_defaults() -> events_service::config::EventsConfig {
    let mut defaults = events_service::config::EventsConfig::defaults();
    defaults.webhooks.allow_private_targets = true;
    defaults
}

/// spaces-service's defaults in the devstack: watermark images on this machine
/// are allowed. Production keeps the built-in `false`.
fn spaces_defaults() -> spaces_service::config::SpacesConfig {
    let mut defaults = spaces_service::config::SpacesConfig::defaults();
    defaults.watermarks.allow_private_targets = true;
    defaults
}

fn main() -> ExitCode {
    let log = match load_config::<gateway::GatewayPart>(None) {
        Ok(config) => config.log().clone(),
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    service_kit::telemetry::init(&log);
    let runtime = match service_kit::cli::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("devstack: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devstack: {e:#}");
            ExitCode::FAILURE
        }
    }
}
