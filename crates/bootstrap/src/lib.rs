//! What every service does at start-up, in one place: connect its database
//! (migrating it), its cache and the gateway-identity verifier from its
//! configuration, and assemble its app with readiness checks and the guard that
//! refuses requests not sent through the gateway.

use actix_web::web;
use anyhow::Context;
use cache::Cache;
use service_kit::AppSpec;
use service_kit::config::Settings;
use std::sync::Arc;
use store::{Database, Migrations};

/// A service's connections to what backs it.
#[derive(Clone)]
pub struct Backing {
    pub db: Database,
    pub cache: Cache,
    verifier: identity::IdentityVerifier,
    /// What this replica's outbox relay counts, once started.
    relay: Option<events::RelayMetrics>,
}

impl Backing {
    /// Connects everything `name` needs. Fails, naming the setting, when the
    /// identity keys are missing or the database or cache is unreachable.
    pub async fn connect(
        name: &str,
        config: &impl Settings,
        migrations: &'static Migrations,
    ) -> anyhow::Result<Backing> {
        let missing = |section: &str| format!("{name} has no `{section}` settings");
        let identity_config = config.identity().with_context(|| missing("identity"))?;
        let verifier = identity::verifier_from_config(name, identity_config)?;
        let database = config.database().with_context(|| missing("database"))?;
        let db = Database::connect_and_migrate(database, migrations).await?;
        let cache = Cache::from_config(config.cache().with_context(|| missing("cache"))?).await?;
        Ok(Backing {
            db,
            cache,
            verifier,
            relay: None,
        })
    }

    /// Starts the relay of a service that produces events (`events.*` of its
    /// configuration; the stream defaults to the cache's URL); its series join
    /// the app's `/metrics`. The nudge wakes it after a commit that recorded
    /// events.
    pub async fn start_relay(
        &mut self,
        producer: &str,
        config: &impl Settings,
        outbox: &events::config::OutboxConfig,
    ) -> anyhow::Result<events::Nudge> {
        let cache_url = config
            .cache()
            .map_or("", |cache| cache.url.expose())
            .to_owned();
        let (nudge, metrics) =
            events::config::start_relay(&self.db, &cache_url, outbox, producer).await?;
        self.relay = Some(metrics);
        Ok(nudge)
    }

    /// The service's app: its routes behind the identity guard, with the database
    /// and the cache in `/readyz`.
    pub fn app_spec(
        &self,
        name: &'static str,
        config: &impl Settings,
        routes: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static,
    ) -> AppSpec {
        let mut spec = AppSpec::new(name, routes)
            .readiness(Arc::new(self.db.clone()))
            .readiness(Arc::new(self.cache.clone()))
            .guard(Arc::new(self.verifier.clone()))
            .json_limit(config.http().json_limit_bytes);
        if let Some(relay) = &self.relay {
            relay.register(spec.metrics.registry_mut());
        }
        spec
    }
}

/// The `migrate` subcommand of a service.
pub async fn migrate(
    config: &impl Settings,
    migrations: &'static Migrations,
) -> anyhow::Result<()> {
    let database = config
        .database()
        .context("this part has no database settings")?;
    store::migrate(database, migrations).await?;
    Ok(())
}
