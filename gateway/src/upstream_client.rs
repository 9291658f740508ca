//! The client the proxy forwards over: hyper-util's pooled HTTP/1 client, with
//! rustls and the platform's certificate verifier (reqwest's default) for
//! `https://` upstreams. The gateway's own calls (introspection, membership,
//! JWKS) go through reqwest; the proxy path does not, because reqwest's layer
//! over this same client cost about 4 µs of CPU per proxied request
//! (`spaceport-bench gateway`, the `actix-hyper` bare proxy beside `actix`).

use crate::config::ProxyConfig;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls_platform_verifier::Verifier;
use std::sync::Arc;
use std::time::Duration;

/// What the proxy sends upstream: nothing, or the client's body as it arrives.
pub type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// A client with the `proxy.*` settings, trusting the system's CAs and
/// `extra_roots` (`proxy.ca_file`) for https upstreams. Its pooled connections
/// are driven by tasks on the runtime that opened them, so each worker builds
/// its own. Never follows redirects: hyper has no such thing.
pub fn build(
    proxy: &ProxyConfig,
    extra_roots: &[CertificateDer<'static>],
) -> Result<UpstreamClient, rustls::Error> {
    let mut http = HttpConnector::new();
    // https:// is handled by the TLS layer around this connector.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_millis(proxy.connect_timeout_ms)));
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| rustls::Error::General("no rustls crypto provider is installed".into()))?;
    let verifier = if extra_roots.is_empty() {
        Verifier::new(provider.clone())?
    } else {
        Verifier::new_with_extra_roots(extra_roots.iter().cloned(), provider.clone())?
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(proxy.pool_max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(proxy.pool_idle_timeout_secs))
        .pool_timer(TokioTimer::new())
        .build(connector))
}
