//! The guard of every outbound HTTP call a client can aim (webhook receivers,
//! image URLs): server-side request forgery must not let a tenant make the
//! platform call into its own network or the cloud's metadata endpoints.
//!
//! Three checks, each at its moment:
//!
//! 1. **The URL** ([`Guard::check_url`], no I/O): absolute, at most 2048
//!    characters, `https` (or `http` too where private targets are allowed), no
//!    user name or password, and a host that is neither an internal IP
//!    address ([`address::is_internal`]: loopback, private, link-local and
//!    metadata, carrier-grade NAT, unspecified, multicast, reserved, and IPv6
//!    forms embedding those, IPv4-mapped included) nor an internal name
//!    ([`address::is_internal_name`]: `localhost`, single labels, `.local`,
//!    `.internal`, …). Odd IPv4 spellings (`2130706433`, `0x7f.1`, `0177.0.0.1`,
//!    `127.1`) are IPv4 addresses to the URL parser (WHATWG), so they are
//!    checked as the address they mean.
//! 2. **The name's addresses at registration** ([`Guard::check_target`]): a
//!    DNS look-up; a name with any internal address is refused. A name that
//!    does not resolve (yet) is accepted: the third check still applies.
//! 3. **At connect time** ([`Guard::client`]): the client resolves names
//!    through [`GuardedResolver`], which drops internal addresses and fails
//!    when none is left, so a name that changes its answer after registration
//!    (DNS rebinding) still cannot reach one. IP literals never reach a
//!    resolver: callers check the URL again before each request (1.).
//!
//! The client also follows no redirects (a 3xx is an answer, not a new
//! target), uses no proxy, verifies TLS (rustls, the platform's roots) and
//! bounds each call with timeouts. Where `allow_private` is set (a developer's
//! machine, the devstack) only the syntax checks remain.

pub mod address;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use url::{Host, Url};

/// Longest URL accepted.
pub const MAX_URL: usize = 2048;
/// How long the registration look-up may take before the name is accepted
/// unresolved.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Allow `http`, and internal addresses and names (development only).
    pub allow_private: bool,
}

impl Policy {
    /// Public `https` targets only.
    pub const STRICT: Policy = Policy {
        allow_private: false,
    };

    /// Whether a connection to `ip` is allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || !address::is_internal(ip)
    }
}

/// Why a target was refused; the message completes a sentence about the field
/// (`url: must be an absolute https URL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("must be at most {MAX_URL} characters")]
    TooLong,
    #[error("must be an absolute https URL")]
    NotHttps,
    #[error("must be an absolute http or https URL")]
    NotHttp,
    #[error("must not contain a user name or password")]
    Credentials,
    #[error(
        "must not point to localhost or a private, loopback, link-local or otherwise internal address"
    )]
    InternalHost,
    #[error("resolves to a private, loopback, link-local or otherwise internal address")]
    ResolvesInternal,
    #[error("could not be resolved")]
    Unresolved,
}

/// Resolves host names to addresses (the system's resolver in production; a
/// fixed table in tests).
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed table of names, for tests: a name it does not hold falls through
/// to the system resolver.
#[derive(Debug, Clone, Default)]
pub struct FixedLookup {
    names: HashMap<String, Vec<IpAddr>>,
}

impl FixedLookup {
    pub fn new() -> FixedLookup {
        FixedLookup::default()
    }

    /// Answers `addrs` for `name` (compared without case or a final dot).
    pub fn with(mut self, name: &str, addrs: &[IpAddr]) -> FixedLookup {
        self.names.insert(normalize(name), addrs.to_vec());
        self
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Lookup for FixedLookup {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        match self.names.get(&normalize(host)) {
            Some(addrs) => {
                let addrs = addrs.clone();
                Box::pin(async move { Ok(addrs) })
            }
            None => SystemLookup.lookup(host),
        }
    }
}

/// The policy and the resolver every check and client of one service shares.
#[derive(Clone)]
pub struct Guard {
    policy: Policy,
    lookup: Arc<dyn Lookup>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The guard with the system resolver.
    pub fn new(policy: Policy) -> Guard {
        Guard::with_lookup(policy, Arc::new(SystemLookup))
    }

    pub fn with_lookup(policy: Policy, lookup: Arc<dyn Lookup>) -> Guard {
        Guard { policy, lookup }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The URL checks (no I/O): what it parses to, or why it is refused.
    pub fn check_url(&self, raw: &str) -> Result<Url, Refusal> {
        check_url(raw, self.policy)
    }

    /// [`Guard::check_url`], then a DNS look-up of its host name: any internal
    /// address refuses it. A name that does not resolve within
    /// [`LOOKUP_TIMEOUT`] is accepted; the connect-time check still holds.
    pub async fn check_target(&self, raw: &str) -> Result<Url, Refusal> {
        let url = self.check_url(raw)?;
        if self.policy.allow_private {
            return Ok(url);
        }
        if let Some(Host::Domain(name)) = url.host() {
            let lookup = self.lookup.lookup(name);
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => {
                    if addrs.iter().any(|ip| !self.policy.permits(*ip)) {
                        return Err(Refusal::ResolvesInternal);
                    }
                }
                Ok(Err(error)) => {
                    tracing::debug!(host = name, %error, "target does not resolve (yet)");
                }
                Err(_) => tracing::debug!(host = name, "target look-up timed out"),
            }
        }
        Ok(url)
    }

    /// A client that enforces the policy at connect time: names resolve
    /// through [`GuardedResolver`], redirects are not followed, no proxy is
    /// used, TLS is verified, and `timeout` bounds each whole call (connecting,
    /// the request and reading the response).
    pub fn client(&self, options: &ClientOptions) -> Result<reqwest::Client, reqwest::Error> {
        service_kit::tls::ensure_provider();
        reqwest::Client::builder()
            .dns_resolver(Arc::new(self.resolver()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!self.policy.allow_private)
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout.min(options.timeout))
            .user_agent(options.user_agent.clone())
            .pool_max_idle_per_host(options.max_idle_per_host)
            .build()
    }

    /// The connect-time resolver of [`Guard::client`].
    pub fn resolver(&self) -> GuardedResolver {
        GuardedResolver {
            policy: self.policy,
            lookup: self.lookup.clone(),
        }
    }
}

/// How a guarded client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The whole call: connect, send, receive.
    pub timeout: Duration,
    /// Connecting alone (capped by `timeout`).
    pub connect_timeout: Duration,
    pub user_agent: String,
    /// Idle keep-alive connections kept per host.
    pub max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: "Spaceport".into(),
            max_idle_per_host: 8,
        }
    }
}

/// The URL checks of [`Guard::check_url`].
pub fn check_url(raw: &str, policy: Policy) -> Result<Url, Refusal> {
    let scheme_refusal = if policy.allow_private {
        Refusal::NotHttp
    } else {
        Refusal::NotHttps
    };
    let raw = raw.trim();
    if raw.len() > MAX_URL {
        return Err(Refusal::TooLong);
    }
    let url = Url::parse(raw).map_err(|_| scheme_refusal.clone())?;
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => policy.allow_private,
        _ => false,
    };
    if !scheme_ok || url.host().is_none() {
        return Err(scheme_refusal);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    if !policy.allow_private {
        let internal = match url.host() {
            Some(Host::Domain(name)) => address::is_internal_name(name),
            Some(Host::Ipv4(ip)) => address::is_internal(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => address::is_internal(IpAddr::V6(ip)),
            None => true,
        };
        if internal {
            return Err(Refusal::InternalHost);
        }
    }
    Ok(url)
}

/// A resolver for `reqwest` that never hands out an address the policy
/// forbids: internal names fail without a look-up, internal addresses are
/// dropped from the answer, and an answer left empty fails the connection.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Policy,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    /// The addresses of `host` a connection may use.
    pub async fn resolve_host(&self, host: &str) -> Result<Vec<SocketAddr>, Refusal> {
        if !self.policy.allow_private && address::is_internal_name(host) {
            return Err(Refusal::InternalHost);
        }
        let addrs = self
            .lookup
            .lookup(host)
            .await
            .map_err(|_| Refusal::Unresolved)?;
        let permitted: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|ip| self.policy.permits(*ip))
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        if permitted.is_empty() {
            tracing::warn!(
                host,
                "refused to connect: the name resolves to internal addresses only"
            );
            return Err(Refusal::ResolvesInternal);
        }
        Ok(permitted)
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolver.resolve_host(&host).await.map_err(|refusal| {
                Box::new(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host} {refusal}"),
                )) as Box<dyn std::error::Error + Send + Sync>
            })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy::STRICT;
    const OPEN: Policy = Policy {
        allow_private: true,
    };

    #[test]
    fn urls() {
        assert_eq!(
            check_url(" https://hooks.example.com/in?x=1 ", STRICT)
                .unwrap()
                .as_str(),
            "https://hooks.example.com/in?x=1"
        );
        assert!(check_url("https://93.184.216.34/hook", STRICT).is_ok());
        assert!(check_url("https://[2606:4700:4700::1111]/hook", STRICT).is_ok());
        for (bad, refusal) in [
            ("http://hooks.example.com/in", Refusal::NotHttps),
            ("ftp://hooks.example.com/in", Refusal::NotHttps),
            ("not a url", Refusal::NotHttps),
            ("/relative", Refusal::NotHttps),
            ("https://", Refusal::NotHttps),
            ("https:///x", Refusal::InternalHost),
            ("https://user:pw@hooks.example.com/", Refusal::Credentials),
            ("https://user@hooks.example.com/", Refusal::Credentials),
            ("https://localhost/x", Refusal::InternalHost),
            ("https://LOCALHOST./x", Refusal::InternalHost),
            ("https://api.localhost/x", Refusal::InternalHost),
            ("https://metadata.google.internal/", Refusal::InternalHost),
            ("https://intranet/", Refusal::InternalHost),
            ("https://127.0.0.1/x", Refusal::InternalHost),
            ("https://10.1.2.3/x", Refusal::InternalHost),
            ("https://172.16.0.1/x", Refusal::InternalHost),
            ("https://192.168.1.1/x", Refusal::InternalHost),
            ("https://169.254.169.254/latest", Refusal::InternalHost),
            ("https://0.0.0.0/", Refusal::InternalHost),
            ("https://100.64.0.1/", Refusal::InternalHost),
            ("https://[::1]/", Refusal::InternalHost),
            ("https://[::]/", Refusal::InternalHost),
            ("https://[fd00::1]/", Refusal::InternalHost),
            ("https://[fe80::1]/", Refusal::InternalHost),
            ("https://[::ffff:127.0.0.1]/", Refusal::InternalHost),
            ("https://[::ffff:a9fe:a9fe]/", Refusal::InternalHost),
            ("https://[64:ff9b::7f00:1]/", Refusal::InternalHost),
            // Odd IPv4 spellings are the addresses they spell.
            ("https://2130706433/", Refusal::InternalHost),
            ("https://0x7f.1/", Refusal::InternalHost),
            ("https://0177.0.0.1/", Refusal::InternalHost),
            ("https://127.1/", Refusal::InternalHost),
            ("https://0x7f000001/", Refusal::InternalHost),
            ("https://127.0.0.1./", Refusal::InternalHost),
            ("https://0251.0376.0251.0376/", Refusal::InternalHost),
        ] {
            assert_eq!(check_url(bad, STRICT), Err(refusal), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert_eq!(check_url(&long, STRICT), Err(Refusal::TooLong));
    }

    #[test]
    fn private_targets_when_allowed() {
        for ok in [
            "http://127.0.0.1:8080/hook",
            "https://localhost/x",
            "http://10.0.0.1/",
        ] {
            assert!(check_url(ok, OPEN).is_ok(), "{ok}");
        }
        assert_eq!(check_url("ftp://127.0.0.1/", OPEN), Err(Refusal::NotHttp));
        assert_eq!(
            check_url("http://u:p@127.0.0.1/", OPEN),
            Err(Refusal::Credentials)
        );
    }

    fn lookup() -> Arc<dyn Lookup> {
        Arc::new(
            FixedLookup::new()
                .with("127.0.0.1.nip.io", &["127.0.0.1".parse().unwrap()])
                .with("rebind.example.com", &["169.254.169.254".parse().unwrap()])
                .with(
                    "mixed.example.com",
                    &[
                        "93.184.216.34".parse().unwrap(),
                        "10.0.0.1".parse().unwrap(),
                    ],
                )
                .with("public.example.com", &["93.184.216.34".parse().unwrap()]),
        )
    }

    #[tokio::test]
    async fn registration_looks_names_up() {
        let guard = Guard::with_lookup(STRICT, lookup());
        for bad in [
            "https://127.0.0.1.nip.io/",
            "https://rebind.example.com/",
            "https://mixed.example.com/",
        ] {
            assert_eq!(
                guard.check_target(bad).await,
                Err(Refusal::ResolvesInternal),
                "{bad}"
            );
        }
        assert!(
            guard
                .check_target("https://public.example.com/")
                .await
                .is_ok()
        );
        // Names that do not resolve are left to the connect-time check.
        assert!(
            guard
                .check_target("https://does-not-resolve.invalid/")
                .await
                .is_ok()
        );
        let open = Guard::with_lookup(OPEN, lookup());
        assert!(open.check_target("http://127.0.0.1.nip.io/").await.is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_internal_addresses() {
        let resolver = Guard::with_lookup(STRICT, lookup()).resolver();
        assert_eq!(
            resolver.resolve_host("rebind.example.com").await,
            Err(Refusal::ResolvesInternal)
        );
        assert_eq!(
            resolver.resolve_host("localhost").await,
            Err(Refusal::InternalHost)
        );
        assert_eq!(
            resolver.resolve_host("mixed.example.com").await.unwrap(),
            vec!["93.184.216.34:0".parse::<SocketAddr>().unwrap()]
        );
        let open = Guard::with_lookup(OPEN, lookup()).resolver();
        assert_eq!(
            open.resolve_host("rebind.example.com").await.unwrap().len(),
            1
        );
    }
}
