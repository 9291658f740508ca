//! The gateway: the one public URL. It routes by path prefix to the services and
//! proxies, streaming both ways over pooled keep-alive connections.

pub mod admissions;
pub mod authn;
pub mod client_ip;
pub mod config;
pub mod front;
pub mod openapi;
pub mod proxy;
pub mod rate_limits;
pub mod routes;
pub mod server;
pub mod upstream_client;
pub mod upstreams;
pub mod workspaces;

use cache::Cache;
use config::GatewayConfig;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use routes::RouteTable;
use service_kit::AppSpec;
use service_kit::cli::ServicePart;
use service_kit::metrics::SharedLabel;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: SharedLabel,
    outcome: Outcome,
}

/// The upstream's status, or `connect` / `timeout` / `upstream` for failures.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    Status(u16),
    Failed(&'static str),
}

impl prometheus_client::encoding::EncodeLabelValue for Outcome {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        match self {
            Outcome::Status(status) => write!(encoder, "{status}"),
            Outcome::Failed(what) => encoder.write_str(what),
        }
    }
}

/// Shared state of the proxy.
pub struct Gateway {
    pub routes: RouteTable,
    pub signer: Arc<identity::IdentitySigner>,
    pub authenticator: Arc<authn::Authenticator>,
    pub rate_limiter: rate_limits::RateLimiter,
    pub trusted_proxies: client_ip::TrustedProxies,
    auth_failures: Family<FailureLabels, Counter>,
    upstream_latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
}

impl Gateway {
    fn observe_auth_failure(&self, failure: authn::Failure) {
        self.auth_failures
            .get_or_create(&FailureLabels {
                reason: failure.label(),
            })
            .inc();
    }

    fn observe_upstream(&self, upstream: &Arc<str>, outcome: Outcome, seconds: f64) {
        self.upstream_latency
            .get_or_create(&UpstreamLabels {
                upstream: SharedLabel(upstream.clone()),
                outcome,
            })
            .observe(seconds);
    }
}

pub struct GatewayPart;

impl ServicePart for GatewayPart {
    const NAME: &'static str = "gateway";
    const ENV_PREFIX: &'static str = "GATEWAY";
    type Config = GatewayConfig;

    fn default_config() -> GatewayConfig {
        GatewayConfig::defaults()
    }

    async fn migrate(_config: &GatewayConfig) -> anyhow::Result<()> {
        tracing::info!("the gateway has no database; nothing to migrate");
        Ok(())
    }

    async fn build(config: GatewayConfig) -> anyhow::Result<AppSpec> {
        let signing_key = identity::signing_key_from_config(
            config.identity.signing_key.expose(),
            &config.identity.signing_key_file,
        )?;
        let signer = Arc::new(identity::IdentitySigner::new(
            signing_key,
            Duration::from_secs(config.identity.token_lifetime_secs),
        ));
        let cache = Cache::from_config(&config.cache).await?;
        service_kit::tls::ensure_provider();
        // The gateway's own calls (introspection, membership, JWKS) share one
        // client; the proxy path has its own, per worker (below).
        let extra_roots = config.proxy.extra_roots()?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.proxy.connect_timeout_ms))
            .pool_max_idle_per_host(config.proxy.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(config.proxy.pool_idle_timeout_secs))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none());
        for root in &extra_roots {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(root)?);
        }
        let client = builder.build()?;
        let proxy = config.proxy.clone();
        let connector = upstream_client::connector(&proxy, &extra_roots)?;
        let upstream_latency: Family<UpstreamLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(service_kit::metrics::latency_histogram);
        let upstreams = upstreams::Pool::new(&config.upstreams);
        let authenticator = Arc::new(authn::Authenticator::new(
            &config,
            &upstreams,
            cache.clone(),
            client.clone(),
            signer.clone(),
        ));
        authenticator.clone().listen(cache.clone()).await?;
        let gateway_lookups = authenticator.lookups();
        let auth_failures = Family::<FailureLabels, Counter>::default();
        let routes = RouteTable::new(&config, &upstreams);
        let families = service_kit::dialect::Families::new(
            config.routes.iter().map(|r| (r.dialect, r.prefix.as_str())),
        );
        let published = bytes::Bytes::from(
            serde_json::to_vec(&openapi::merged(&routes)).expect("the document serializes"),
        );
        let rate_limiter = rate_limits::RateLimiter::new(
            cache.clone(),
            config.cache.clone(),
            config.rate_limits.clone(),
        );
        let rate_limit_metrics = rate_limiter.metrics();
        let gateway = Arc::new(Gateway {
            routes,
            signer,
            authenticator,
            rate_limiter,
            trusted_proxies: client_ip::TrustedProxies::new(&config.proxy.trusted_proxies),
            auth_failures: auth_failures.clone(),
            upstream_latency: upstream_latency.clone(),
        });
        // Served by the gateway's own hyper server (see `server`), not by
        // actix-web's: no actix routes.
        let mut spec = AppSpec::new(Self::NAME, |_| {})
            .server(Arc::new(
                move |spec: Arc<AppSpec>,
                      http: &service_kit::config::HttpConfig,
                      listener: std::net::TcpListener| {
                    let front = Arc::new(front::Front {
                        gateway: gateway.clone(),
                        spec,
                        published: published.clone(),
                    });
                    let workers = server::Workers {
                        front,
                        connector: connector.clone(),
                        proxy: proxy.clone(),
                    };
                    server::serve(workers, http, listener)
                },
            ))
            .families(families)
            .readiness(Arc::new(cache));
        spec.metrics.registry_mut().register(
            "gateway_cache_lookups",
            "Credential cache lookups (API-key introspections, JWKS), by cache and hit or miss",
            gateway_lookups,
        );
        spec.metrics.registry_mut().register(
            "gateway_auth_failures",
            "Credentials refused, by reason",
            auth_failures,
        );
        rate_limit_metrics.register(spec.metrics.registry_mut());
        spec.metrics.registry_mut().register(
            "gateway_upstream_duration_seconds",
            "Time until an upstream's response headers, by upstream and outcome",
            upstream_latency,
        );
        Ok(spec)
    }
}
