//! Gateway configuration (`GATEWAY__…`).

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use service_kit::Dialect;
use service_kit::config::{CacheConfig, ConfigError, HttpConfig, LogConfig, Secret, Settings};

/// The entries of an upstream's setting: a comma-separated list of base URLs.
pub fn base_urls(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|u| !u.is_empty())
}

/// Where each service answers: a base URL, or several comma-separated (one per
/// replica, taken in turn) where no load balancer stands in front of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstreams {
    pub auth: String,
    pub booking: String,
    pub spaces: String,
    pub events: String,
}

impl Upstreams {
    /// The service an upstream name stands for: the audience of its identity tokens.
    pub fn audience(name: &str) -> String {
        format!("{name}-service")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "auth" => Some(&self.auth),
            "booking" => Some(&self.booking),
            "spaces" => Some(&self.spaces),
            "events" => Some(&self.events),
            _ => None,
        }
    }
}

/// `identity.*`: the key the gateway signs `x-spaceport-identity` tokens with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayIdentityConfig {
    /// PKCS#8 PEM Ed25519 private key. Clusters set this from a Secret, the same
    /// key on every gateway replica. When empty, `signing_key_file` is used.
    pub signing_key: Secret,
    /// Created on first start when missing (one machine: `make run`); the public
    /// key is written beside it as `*.pub.pem` for the services.
    pub signing_key_file: String,
    /// Lifetime of the tokens, at most 60 s.
    pub token_lifetime_secs: u64,
}

impl Default for GatewayIdentityConfig {
    fn default() -> Self {
        GatewayIdentityConfig {
            signing_key: Secret::default(),
            signing_key_file: "./data/gateway-identity.pem".into(),
            token_lifetime_secs: 30,
        }
    }
}

/// `tokens.*`: how the gateway verifies access tokens issued by auth-service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Expected `iss` (auth-service's `tokens.issuer`).
    pub issuer: String,
    /// Expected `aud` (auth-service's `tokens.audience`).
    pub audience: String,
    /// Where the signing keys are published; empty = the auth upstream's
    /// `/.well-known/jwks.json`.
    pub jwks_url: String,
    /// A token naming an unknown key triggers a JWKS fetch at most this often.
    pub jwks_min_refetch_secs: u64,
    /// The longest access-token lifetime auth-service issues: how long a revoked
    /// session is remembered.
    pub max_access_token_ttl_secs: u64,
    /// How long an API key's introspection is reused (never past its expiry).
    pub api_key_cache_secs: u64,
    /// How long "no such key" is remembered.
    pub api_key_negative_cache_secs: u64,
    /// How long a membership look-up (`x-workspace-key` with a user token) is
    /// reused; a removal reaches the gateways on the revocation bus sooner.
    pub membership_cache_secs: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            issuer: "http://localhost:8080".into(),
            audience: "spaceport".into(),
            jwks_url: String::new(),
            jwks_min_refetch_secs: 10,
            max_access_token_ttl_secs: 3600,
            api_key_cache_secs: 60,
            api_key_negative_cache_secs: 5,
            membership_cache_secs: 60,
        }
    }
}

/// `system_keys.*`: operator keys (`x-api-key: sys_…`), which see every
/// workspace. Only SHA-256 digests are configured; the keys themselves live with
/// the operators.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemKeyConfig {
    /// Comma-separated lowercase hex SHA-256 digests of the accepted keys
    /// (`printf %s "$KEY" | sha256sum`). Empty: no system key is accepted.
    pub sha256: String,
}

impl SystemKeyConfig {
    /// The configured digests, or the position of the first malformed one.
    pub fn digests(&self) -> Result<Vec<[u8; 32]>, usize> {
        self.sha256
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .enumerate()
            .map(|(i, hex)| parse_digest(hex).ok_or(i))
            .collect()
    }
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// `rate_limits.*`: requests per minute, counted in the shared cache so every
/// gateway replica enforces one budget. Each replica spends allowances leased
/// from it (see `rate_limits` for the accuracy this buys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Per user or service-principal token.
    pub per_token_per_minute: u32,
    /// Per API key.
    pub per_api_key_per_minute: u32,
    /// Per client IP, for anonymous requests.
    pub per_ip_per_minute: u32,
    /// Gateway replicas sharing the budget. While the shared cache is
    /// unreachable each replica enforces `limit / replicas` (at least 1) alone.
    pub replicas: u32,
    /// A replica leases what it expects a key to spend here in this time, at
    /// the rate it observes (never more than 1% of the limit).
    pub lease_horizon_ms: u64,
    /// A lease not granted within this time counts as the shared cache being
    /// unreachable (local limits until it answers again).
    pub lease_timeout_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        // SpaceOS's published defaults.
        RateLimitConfig {
            enabled: true,
            per_token_per_minute: 500,
            per_api_key_per_minute: 1000,
            per_ip_per_minute: 100,
            replicas: 1,
            lease_horizon_ms: 200,
            lease_timeout_ms: 250,
        }
    }
}

/// `proxy.*`: how the gateway talks to upstreams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Time to open a connection to an upstream; past it the gateway answers 503.
    pub connect_timeout_ms: u64,
    /// Default time until the upstream's response headers; past it, 504.
    pub timeout_ms: u64,
    /// Default largest request body; larger ones get 413.
    pub max_body_bytes: u64,
    /// Idle keep-alive connections kept per upstream host, per worker (each
    /// worker has its own pool).
    pub pool_max_idle_per_host: usize,
    pub pool_idle_timeout_secs: u64,
    /// A PEM file of CA certificates trusted for `https://` upstreams besides
    /// the system's (a cluster's private CA); empty for the system's alone.
    #[serde(default)]
    pub ca_file: String,
    /// Addresses or CIDR blocks of proxies in front of the gateway (a load
    /// balancer, an ingress). Only for them is `X-Forwarded-For` believed; the
    /// client is the last address in it that is not one of them.
    // The config crate drops empty lists from the defaults layer.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout_ms: 1_000,
            timeout_ms: 30_000,
            max_body_bytes: 10 * 1024 * 1024,
            pool_max_idle_per_host: 64,
            pool_idle_timeout_secs: 90,
            ca_file: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl ProxyConfig {
    /// The certificates of `ca_file` (none when it is not set).
    pub fn extra_roots(&self) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        if self.ca_file.is_empty() {
            return Ok(Vec::new());
        }
        let invalid = |message: String| ConfigError::invalid("proxy.ca_file", message);
        let roots = CertificateDer::pem_file_iter(&self.ca_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format!("{}: {e}", self.ca_file)))?;
        if roots.is_empty() {
            return Err(invalid(format!("{} holds no certificate", self.ca_file)));
        }
        Ok(roots)
    }
}

/// One entry of the route table: requests whose path is `prefix` or starts with
/// `prefix/` go to `upstream`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub upstream: String,
    /// `public` (a credential is optional, but verified when presented) or
    /// `authenticated` (anonymous callers get 401 at the edge).
    #[serde(default, skip_serializing_if = "RoutePolicy::is_public")]
    pub policy: RoutePolicy,
    /// Overrides `proxy.timeout_ms` for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Overrides `proxy.max_body_bytes` for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Scopes a caller must hold, checked at the edge (403 without them, 401
    /// when anonymous). The services check their own scopes as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The wire dialect of the route's family (`spaceos`, `gospace`, `tuzzle`):
    /// the gateway's own answers on it (401, 403, 404, 413, 429, 5xx) speak it.
    #[serde(default)]
    pub dialect: Dialect,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutePolicy {
    #[default]
    Public,
    Authenticated,
}

impl RoutePolicy {
    fn is_public(&self) -> bool {
        *self == RoutePolicy::Public
    }
}

impl RouteConfig {
    pub fn new(prefix: &str, upstream: &str) -> Self {
        RouteConfig {
            prefix: prefix.to_owned(),
            upstream: upstream.to_owned(),
            policy: RoutePolicy::Public,
            timeout_ms: None,
            max_body_bytes: None,
            scopes: Vec::new(),
            dialect: Dialect::SpaceOs,
        }
    }
}

/// The public prefixes of each service (DESIGN §1). Prefixes with no anonymous
/// operation at all are `authenticated`, so anonymous callers are turned away
/// at the edge; the others (sign-in, public organization and meeting-space
/// pages, public booking) are `public` and their services decide per
/// operation.
pub fn default_routes() -> Vec<RouteConfig> {
    use Dialect::{Gospace, SpaceOs, Tuzzle};
    use RoutePolicy::{Authenticated, Public};
    [
        ("/api/v1/auth", "auth", Public, SpaceOs),
        ("/v1/auth", "auth", Public, Gospace),
        ("/v1/auth/admin", "auth", Authenticated, Gospace),
        ("/v1/auth/api-key", "auth", Authenticated, Gospace),
        (
            "/v1/auth/service-principals",
            "auth",
            Authenticated,
            Gospace,
        ),
        ("/v1/system", "auth", Authenticated, Gospace),
        ("/.well-known", "auth", Public, SpaceOs),
        ("/api/v1/organizations", "booking", Public, SpaceOs),
        ("/api/v1/space-groups", "booking", Authenticated, SpaceOs),
        ("/api/v1/meeting-spaces", "booking", Public, SpaceOs),
        ("/api/v1/bookings", "booking", Public, SpaceOs),
        ("/api/v1/spaces", "spaces", Authenticated, Tuzzle),
        ("/api/v1/upload-configs", "spaces", Authenticated, Tuzzle),
        ("/api/v1/upload", "spaces", Public, Tuzzle),
        ("/api/v1/files", "spaces", Authenticated, Tuzzle),
        ("/api/v1/folders", "spaces", Authenticated, Tuzzle),
        ("/cdn", "spaces", Public, Tuzzle),
        ("/api/v1/webhooks", "events", Authenticated, SpaceOs),
        ("/v1/webhooks", "events", Authenticated, Gospace),
    ]
    .into_iter()
    .map(|(prefix, upstream, policy, dialect)| RouteConfig {
        policy,
        dialect,
        ..RouteConfig::new(prefix, upstream)
    })
    .map(|route| match route.prefix.as_str() {
        // Uploads stream through (spaces-service holds each to its upload
        // config's limit) and answer once the whole file is stored.
        UPLOADS => RouteConfig {
            max_body_bytes: Some(MAX_UPLOAD_BYTES),
            timeout_ms: Some(UPLOAD_TIMEOUT_MS),
            ..route
        },
        _ => route,
    })
    .collect()
}

/// The upload prefix, its largest body and its time to an answer.
const UPLOADS: &str = "/api/v1/upload";
const MAX_UPLOAD_BYTES: u64 = 5 * 1024 * 1024 * 1024;
const UPLOAD_TIMEOUT_MS: u64 = 600_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub http: HttpConfig,
    pub cache: CacheConfig,
    pub log: LogConfig,
    pub identity: GatewayIdentityConfig,
    pub tokens: TokenConfig,
    pub rate_limits: RateLimitConfig,
    pub system_keys: SystemKeyConfig,
    pub upstreams: Upstreams,
    pub proxy: ProxyConfig,
    pub routes: Vec<RouteConfig>,
}

impl GatewayConfig {
    /// Defaults for one machine: services on loopback, ports 8081–8084.
    pub fn defaults() -> Self {
        GatewayConfig {
            http: HttpConfig::on_port(8080),
            cache: CacheConfig::memory("gateway:"),
            log: LogConfig::default(),
            identity: GatewayIdentityConfig::default(),
            tokens: TokenConfig::default(),
            rate_limits: RateLimitConfig::default(),
            system_keys: SystemKeyConfig::default(),
            upstreams: Upstreams {
                auth: "http://127.0.0.1:8081".into(),
                booking: "http://127.0.0.1:8082".into(),
                spaces: "http://127.0.0.1:8083".into(),
                events: "http://127.0.0.1:8084".into(),
            },
            proxy: ProxyConfig::default(),
            routes: default_routes(),
        }
    }
}

impl Settings for GatewayConfig {
    fn http(&self) -> &HttpConfig {
        &self.http
    }
    fn http_mut(&mut self) -> &mut HttpConfig {
        &mut self.http
    }
    fn log(&self) -> &LogConfig {
        &self.log
    }
    fn cache(&self) -> Option<&CacheConfig> {
        Some(&self.cache)
    }
    fn cache_mut(&mut self) -> Option<&mut CacheConfig> {
        Some(&mut self.cache)
    }

    fn validate_extra(&self) -> Result<(), ConfigError> {
        for (name, list) in [
            ("upstreams.auth", &self.upstreams.auth),
            ("upstreams.booking", &self.upstreams.booking),
            ("upstreams.spaces", &self.upstreams.spaces),
            ("upstreams.events", &self.upstreams.events),
        ] {
            if base_urls(list).next().is_none() {
                return Err(ConfigError::invalid(name, "needs at least one base URL"));
            }
            for url in base_urls(list) {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| ConfigError::invalid(name, e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(ConfigError::invalid(
                        name,
                        "must be an http:// or https:// URL",
                    ));
                }
                if parsed.path() != "/" || parsed.query().is_some() {
                    return Err(ConfigError::invalid(
                        name,
                        "must be a base URL without path or query",
                    ));
                }
            }
        }
        if !(2..=60).contains(&self.identity.token_lifetime_secs) {
            return Err(ConfigError::invalid(
                "identity.token_lifetime_secs",
                "must be between 2 and 60",
            ));
        }
        if self.tokens.issuer.trim().is_empty() || self.tokens.audience.trim().is_empty() {
            return Err(ConfigError::invalid(
                "tokens.issuer",
                "issuer and audience must be set",
            ));
        }
        if !self.tokens.jwks_url.is_empty() {
            reqwest::Url::parse(&self.tokens.jwks_url)
                .map_err(|e| ConfigError::invalid("tokens.jwks_url", e.to_string()))?;
        }
        self.proxy.extra_roots()?;
        for (i, entry) in self.proxy.trusted_proxies.iter().enumerate() {
            crate::client_ip::parse_net(entry).ok_or_else(|| {
                ConfigError::invalid(
                    &format!("proxy.trusted_proxies[{i}]"),
                    "must be an IP address or CIDR block",
                )
            })?;
        }
        if let Err(i) = self.system_keys.digests() {
            return Err(ConfigError::invalid(
                "system_keys.sha256",
                format!("entry {} is not a 64-character hex SHA-256 digest", i + 1),
            ));
        }
        let r = &self.rate_limits;
        if r.per_token_per_minute == 0 || r.per_api_key_per_minute == 0 || r.per_ip_per_minute == 0
        {
            return Err(ConfigError::invalid(
                "rate_limits",
                "limits must be at least 1 (set rate_limits.enabled = false to turn them off)",
            ));
        }
        if r.replicas == 0 {
            return Err(ConfigError::invalid(
                "rate_limits.replicas",
                "must be at least 1",
            ));
        }
        if !(1..=10_000).contains(&r.lease_horizon_ms) {
            return Err(ConfigError::invalid(
                "rate_limits.lease_horizon_ms",
                "must be between 1 and 10000",
            ));
        }
        if !(1..=10_000).contains(&r.lease_timeout_ms) {
            return Err(ConfigError::invalid(
                "rate_limits.lease_timeout_ms",
                "must be between 1 and 10000",
            ));
        }
        if self.proxy.connect_timeout_ms == 0 || self.proxy.timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "proxy.timeout_ms",
                "timeouts must be greater than 0",
            ));
        }
        if self.routes.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "at least one route is needed",
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let prefix = route.prefix.trim_end_matches('/');
            if !route.prefix.starts_with('/') || prefix.is_empty() {
                return Err(ConfigError::invalid(
                    &format!("{key}.prefix"),
                    "must start with / and name a path",
                ));
            }
            if prefix == "/internal" || prefix.starts_with("/internal/") {
                return Err(ConfigError::invalid(
                    &format!("{key}.prefix"),
                    "/internal is for the gateway's own calls and is never proxied",
                ));
            }
            for scope in &route.scopes {
                if identity::Scope::builtin(scope).is_none() {
                    return Err(ConfigError::invalid(
                        &format!("{key}.scopes"),
                        format!("unknown scope `{scope}`"),
                    ));
                }
            }
            if self.upstreams.get(&route.upstream).is_none() {
                return Err(ConfigError::invalid(
                    &format!("{key}.upstream"),
                    format!(
                        "unknown upstream `{}` (expected auth, booking, spaces or events)",
                        route.upstream
                    ),
                ));
            }
        }
        Ok(())
    }
}
