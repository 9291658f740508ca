//! The production topology, rehearsed with processes on one machine: every
//! service (auth, booking, spaces, events) its own process on its own
//! PostgreSQL database, one Redis shared by all (cache, rate limits, the
//! revocation bus, the event stream), several gateway replicas and several
//! booking-service (and events-service) replicas, configured only through the
//! environment variables a cluster would set.
//!
//! With no load balancer in front of the replicas, the gateways are given all
//! of their addresses (`GATEWAY__UPSTREAMS__BOOKING=a,b`, likewise for events)
//! and take them in turn.
//!
//! Each run keeps to its own keys on the shared Redis: cache keys and bus
//! channels under `rh<run>:`, and so are the event streams (each producer's
//! `events.stream` is `rh<run>:events:<service>`, and events-service consumes
//! exactly those), so that runs side by side never take each other's events.
//!
//! [`RedisServer`] runs a Redis of one's own (a test that restarts it must not
//! take the shared one down under other tests).

mod redis;

pub use redis::RedisServer;

use anyhow::{Context, Result};
use base64::Engine;
use launcher::{PartProcess, ScratchDatabase};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to start, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// A PostgreSQL URL allowed to create databases; each service gets a new one.
    pub postgres_url: String,
    /// The Redis every part shares.
    pub redis_url: String,
    /// Where the part binaries are (gateway and the four services).
    pub bin_dir: PathBuf,
    /// Where logs and the mail outbox go.
    pub dir: PathBuf,
    pub gateways: usize,
    pub booking_replicas: usize,
    /// events-service replicas: one consumer group, one database.
    pub events_replicas: usize,
    /// Fixed ports: gateways on `base`, `base + 10`, …; auth `base + 1`,
    /// booking `base + 2`, `base + 12`, …; spaces `base + 3`; events
    /// `base + 4`, `base + 14`, …. `None`: free ports.
    pub base_port: Option<u16>,
    /// More environment variables for every part (each reads its own prefix).
    pub extra_env: Vec<(String, String)>,
}

/// The running parts. Dropping it kills them and drops their databases.
pub struct Topology {
    pub gateways: Vec<PartProcess>,
    pub auth: PartProcess,
    pub booking: Vec<PartProcess>,
    pub spaces: PartProcess,
    pub events: Vec<PartProcess>,
    /// auth-service's outbox: one `.eml` per mail (sign-in codes).
    pub outbox: PathBuf,
    // Declared last: dropped after the processes that use them.
    databases: Vec<ScratchDatabase>,
}

/// The services with a database of their own, in the order they are created.
const DATABASES: [&str; 4] = ["auth", "booking", "spaces", "events"];

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).context("reading random bytes")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn random_base64() -> Result<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).context("reading random bytes")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

fn addr(base: Option<u16>, offset: u16) -> Result<SocketAddr> {
    match base {
        Some(base) => Ok(SocketAddr::from(([127, 0, 0, 1], base + offset))),
        None => launcher::free_port(),
    }
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

impl Topology {
    pub async fn start(options: &Options) -> Result<Topology> {
        let run = random_hex(4)?;
        let gateway_key = identity::SigningKey::generate()?;
        let public_pem = gateway_key.public_pem();
        let outbox = options.dir.join("outbox");
        std::fs::create_dir_all(&outbox)
            .with_context(|| format!("creating {}", outbox.display()))?;
        let bin = |name: &str| options.bin_dir.join(name);
        let db = |part: &str| {
            ScratchDatabase::create(&options.postgres_url, &format!("rehearsal_{part}"))
        };
        let databases = DATABASES.map(db).into_iter().collect::<Result<Vec<_>>>()?;
        // The run's event streams, one per producing service.
        let stream = |service: &str| format!("rh{run}:events:{service}");

        // What every service shares: Redis under its own key prefix and the run's
        // bus, the gateway's public key, its database.
        let service_env = |prefix: &str, part: &str, database: &ScratchDatabase| {
            let mut vars = env(&[
                ("__CACHE__URL", options.redis_url.clone()),
                ("__CACHE__KEY_PREFIX", format!("rh{run}:{part}:")),
                ("__CACHE__BUS_PREFIX", format!("rh{run}:")),
                ("__DATABASE__URL", database.url().to_owned()),
                ("__IDENTITY__GATEWAY_PUBLIC_KEYS", public_pem.clone()),
                ("__LOG__FORMAT", "json".to_owned()),
            ]);
            for (k, _) in &mut vars {
                *k = format!("{prefix}{k}");
            }
            vars.extend(options.extra_env.iter().cloned());
            vars
        };
        let dir = &options.dir;
        let mut auth_env = service_env("AUTH", "auth", &databases[0]);
        auth_env.extend(env(&[
            ("AUTH__SECRET__KEY", random_base64()?),
            ("AUTH__MAIL__URL", format!("file://{}", outbox.display())),
            ("AUTH__EVENTS__STREAM", stream("auth-service")),
        ]));
        let mut auth = PartProcess::start(
            "auth-service",
            &bin("auth-service"),
            "AUTH",
            addr(options.base_port, 1)?,
            &auth_env,
            dir,
        )?;
        let mut spaces_env = service_env("SPACES", "spaces", &databases[2]);
        spaces_env.extend(env(&[
            ("SPACES__SECRET__KEY", random_base64()?),
            ("SPACES__EVENTS__STREAM", stream("spaces-service")),
        ]));
        let mut spaces = PartProcess::start(
            "spaces-service",
            &bin("spaces-service"),
            "SPACES",
            addr(options.base_port, 3)?,
            &spaces_env,
            dir,
        )?;
        let mut booking_env = service_env("BOOKING", "booking", &databases[1]);
        booking_env.push(("BOOKING__EVENTS__STREAM".into(), stream("booking-service")));
        let mut booking = Vec::new();
        for i in 0..options.booking_replicas {
            booking.push(PartProcess::start(
                &format!("booking-service-{}", i + 1),
                &bin("booking-service"),
                "BOOKING",
                addr(options.base_port, 2 + 10 * i as u16)?,
                &booking_env,
                dir,
            )?);
        }
        // events-service consumes the three streams on the shared Redis (its
        // `events.stream_url` is empty: the cache's) and mails failing webhooks
        // into the same outbox directory as auth-service.
        let mut events_env = service_env("EVENTS", "events", &databases[3]);
        events_env.extend(env(&[
            ("EVENTS__SECRET__KEY", random_base64()?),
            ("EVENTS__MAIL__URL", format!("file://{}", outbox.display())),
            (
                "EVENTS__EVENTS__STREAMS",
                ["booking-service", "auth-service", "spaces-service"]
                    .map(stream)
                    .join(","),
            ),
        ]));
        let mut events = Vec::new();
        for i in 0..options.events_replicas.max(1) {
            // The first keeps the name it had when there was only one.
            let name = match i {
                0 => "events-service".to_owned(),
                _ => format!("events-service-{}", i + 1),
            };
            events.push(PartProcess::start(
                &name,
                &bin("events-service"),
                "EVENTS",
                addr(options.base_port, 4 + 10 * i as u16)?,
                &events_env,
                dir,
            )?);
        }
        let timeout = Duration::from_secs(60);
        auth.wait_ready(timeout).await?;
        spaces.wait_ready(timeout).await?;
        for replica in &mut booking {
            replica.wait_ready(timeout).await?;
        }
        for replica in &mut events {
            replica.wait_ready(timeout).await?;
        }

        let urls = |parts: &[PartProcess]| {
            parts
                .iter()
                .map(PartProcess::base_url)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut gateway_env = env(&[
            ("GATEWAY__CACHE__URL", options.redis_url.clone()),
            ("GATEWAY__CACHE__KEY_PREFIX", format!("rh{run}:gateway:")),
            ("GATEWAY__CACHE__BUS_PREFIX", format!("rh{run}:")),
            ("GATEWAY__IDENTITY__SIGNING_KEY", gateway_key.private_pem()),
            ("GATEWAY__UPSTREAMS__AUTH", auth.base_url()),
            ("GATEWAY__UPSTREAMS__BOOKING", urls(&booking)),
            ("GATEWAY__UPSTREAMS__SPACES", spaces.base_url()),
            ("GATEWAY__UPSTREAMS__EVENTS", urls(&events)),
            ("GATEWAY__LOG__FORMAT", "json".to_owned()),
        ]);
        gateway_env.extend(options.extra_env.iter().cloned());
        let mut gateways = Vec::new();
        for i in 0..options.gateways {
            gateways.push(PartProcess::start(
                &format!("gateway-{}", i + 1),
                &bin("gateway"),
                "GATEWAY",
                addr(options.base_port, 10 * i as u16)?,
                &gateway_env,
                dir,
            )?);
        }
        for gateway in &mut gateways {
            gateway.wait_ready(timeout).await?;
        }
        Ok(Topology {
            gateways,
            auth,
            booking,
            spaces,
            events,
            outbox,
            databases,
        })
    }

    /// Every part, for listings and checks.
    pub fn parts(&self) -> impl Iterator<Item = &PartProcess> {
        self.gateways
            .iter()
            .chain([&self.auth])
            .chain(self.booking.iter())
            .chain([&self.spaces])
            .chain(self.events.iter())
    }

    pub fn outbox(&self) -> &Path {
        &self.outbox
    }

    /// The database URL of `service` (`auth`, `booking`, `spaces` or
    /// `events`), for checks made beside the API.
    pub fn database_url(&self, service: &str) -> Option<&str> {
        DATABASES
            .iter()
            .position(|name| *name == service)
            .map(|i| self.databases[i].url())
    }
}
