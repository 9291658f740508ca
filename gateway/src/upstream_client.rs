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
use rustls_platform_verifier::ConfigVerifierExt;
use std::time::Duration;

/// What the proxy sends upstream: nothing, or the client's body as it arrives.
pub type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// A client with the `proxy.*` settings. Its pooled connections are driven by
/// tasks on the runtime that opened them, so each worker builds its own.
/// Never follows redirects: hyper has no such thing.
pub fn build(proxy: &ProxyConfig) -> Result<UpstreamClient, rustls::Error> {
    let mut http = HttpConnector::new();
    // https:// is handled by the TLS layer around this connector.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_millis(proxy.connect_timeout_ms)));
    let tls = rustls::ClientConfig::with_platform_verifier()?;
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
