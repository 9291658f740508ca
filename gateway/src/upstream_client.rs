//! The client the proxy forwards over: HTTP/1 connections of hyper's own,
//! kept alive in a pool of the worker's (each of the gateway's workers has
//! its own client, and its connections are driven by tasks on its own
//! runtime), with
//! rustls and the platform's certificate verifier (reqwest's default) for
//! `https://` upstreams.
//!
//! The gateway's own calls (introspection, membership, JWKS) go through
//! reqwest. The proxy path goes below it, and below hyper-util's pooled
//! client as well: reqwest's layer cost about 4 µs of CPU per proxied
//! request, and the general-purpose pool (shared across threads, keyed by a
//! hash, a task spawned per request to notice when the connection is free
//! again) about 1.5 µs more. A worker's pool is a short list per upstream
//! origin, touched only by that worker; a connection goes back into it when
//! its answer's body has been read to the end.

use crate::config::ProxyConfig;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderValue};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls_platform_verifier::Verifier;
use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_service::Service;

/// What the proxy sends upstream: nothing, or the client's body as it arrives.
pub type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Opens connections: TCP (no Nagle, `proxy.connect_timeout_ms`), then TLS
/// for `https://` origins. Built once; each worker's client clones it.
pub type Connector = HttpsConnector<HttpConnector>;

/// The connector with the `proxy.*` settings, trusting the system's CAs and
/// `extra_roots` (`proxy.ca_file`) for https upstreams.
pub fn connector(
    proxy: &ProxyConfig,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Connector, rustls::Error> {
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
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Why an upstream request failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be opened (refused, unreachable, TLS refused).
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The exchange failed on an open connection.
    Exchange(hyper::Error),
    /// The request's URI names no origin.
    NoOrigin,
}

impl UpstreamError {
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "could not connect: {e}"),
            UpstreamError::Exchange(e) => write!(f, "{e}"),
            UpstreamError::NoOrigin => f.write_str("the request names no upstream origin"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// A worker's client: its pool, and the connector it opens connections with.
/// Neither `Send` nor `Sync`: it lives and is used on one worker thread.
pub struct UpstreamClient {
    connector: Connector,
    pool: Rc<Pool>,
}

struct Origin {
    scheme: Scheme,
    authority: Authority,
}

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

struct Pool {
    /// Idle connections per origin, the most recently used last. A gateway
    /// has a handful of upstream origins: a list beats a hash.
    idle: RefCell<Vec<(Origin, Vec<Idle>)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// The most recently used idle connection to `origin` that is still open
    /// and not past the idle timeout.
    fn take(&self, scheme: &Scheme, authority: &Authority) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.borrow_mut();
        let (_, list) = idle
            .iter_mut()
            .find(|(o, _)| o.authority == *authority && o.scheme == *scheme)?;
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request to `origin`, unless the pool holds
    /// enough for it already.
    fn put(&self, scheme: &Scheme, authority: &Authority, sender: SendRequest<RequestBody>) {
        if sender.is_closed() || self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let at = match idle
            .iter()
            .position(|(o, _)| o.authority == *authority && o.scheme == *scheme)
        {
            Some(at) => at,
            None => {
                let origin = Origin {
                    scheme: scheme.clone(),
                    authority: authority.clone(),
                };
                idle.push((origin, Vec::new()));
                idle.len() - 1
            }
        };
        let list = &mut idle[at].1;
        if list.len() >= self.max_idle {
            // The oldest goes: it is the likeliest to have been closed.
            list.remove(0);
        }
        list.push(Idle {
            sender,
            since: Instant::now(),
        });
    }
}

impl UpstreamClient {
    /// A worker's client over `connector`, with the `proxy.*` pool settings.
    pub fn new(connector: Connector, proxy: &ProxyConfig) -> UpstreamClient {
        UpstreamClient {
            connector,
            pool: Rc::new(Pool {
                idle: RefCell::new(Vec::new()),
                max_idle: proxy.pool_max_idle_per_host,
                idle_timeout: Duration::from_secs(proxy.pool_idle_timeout_secs),
            }),
        }
    }

    /// Sends `req` (its URI absolute: the upstream's origin and the target)
    /// over an idle connection to that origin, or a new one. A request that
    /// a pooled connection closed before taking is sent again, on another.
    pub async fn request(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let uri = req.uri().clone();
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(UpstreamError::NoOrigin);
        };
        if !req.headers().contains_key(HOST) {
            let host =
                HeaderValue::from_str(authority.as_str()).map_err(|_| UpstreamError::NoOrigin)?;
            req.headers_mut().insert(HOST, host);
        }
        // HTTP/1 sends the target in origin form.
        let mut target = hyper::http::uri::Parts::default();
        target.path_and_query = uri.path_and_query().cloned();
        *req.uri_mut() = Uri::from_parts(target).map_err(|_| UpstreamError::NoOrigin)?;
        loop {
            let (mut sender, pooled) = match self.pool.take(scheme, authority) {
                Some(sender) => (sender, true),
                // Boxed: opening a connection is the cold path, and its
                // future (connector, TLS, handshake) is several times the
                // size of the rest, which every request's future would
                // otherwise carry and copy.
                None => (Box::pin(self.connect(&uri)).await?, false),
            };
            if let Err(e) = sender.ready().await {
                if pooled {
                    continue;
                }
                return Err(UpstreamError::Exchange(e));
            }
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        scheme: scheme.clone(),
                        authority: authority.clone(),
                        pool: self.pool.clone(),
                    };
                    return Ok(response.map(|body| PooledBody::new(body, lease)));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the connection had closed meanwhile.
                    Some(unsent) if pooled => req = unsent,
                    _ => return Err(UpstreamError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// A new connection to `uri`'s origin, driven by a task on this worker.
    async fn connect(&self, uri: &Uri) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(UpstreamError::Connect)?;
        let io = connector
            .call(uri.clone())
            .await
            .map_err(UpstreamError::Connect)?;
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(UpstreamError::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// A connection lent to one exchange, back to the pool when its answer's
/// body has been read to the end (dropped with it otherwise: hyper then
/// closes the connection).
struct Lease {
    sender: SendRequest<RequestBody>,
    scheme: Scheme,
    authority: Authority,
    pool: Rc<Pool>,
}

impl Lease {
    fn give_back(self) {
        self.pool.put(&self.scheme, &self.authority, self.sender);
    }
}

/// An upstream answer's body; its end returns the connection to the pool.
pub struct PooledBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    fn new(body: Incoming, lease: Lease) -> PooledBody {
        if body.is_end_stream() {
            // Nothing to read (HEAD, 204, 304, an empty body).
            lease.give_back();
            return PooledBody { body, lease: None };
        }
        PooledBody {
            body,
            lease: Some(lease),
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        let read_to_the_end = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                this.lease = None;
                false
            }
            Poll::Pending => false,
        };
        if read_to_the_end && let Some(lease) = this.lease.take() {
            lease.give_back();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An upstream on loopback answering `hello` to everything, counting the
    /// connections it accepted; with `close_after`, it drops each connection
    /// that long after its first answer, without saying so.
    async fn upstream(close_after: Option<Duration>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"hello"),
                        )))
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    match close_after {
                        None => drop(connection.await),
                        Some(after) => drop(tokio::time::timeout(after, connection).await),
                    }
                });
            }
        });
        (format!("http://{addr}"), accepted)
    }

    fn client(max_idle: usize) -> UpstreamClient {
        service_kit::tls::ensure_provider();
        let proxy = ProxyConfig {
            pool_max_idle_per_host: max_idle,
            ..ProxyConfig::default()
        };
        UpstreamClient::new(connector(&proxy, &[]).unwrap(), &proxy)
    }

    fn get(base: &str) -> Request<RequestBody> {
        let mut req = Request::new(
            Empty::new()
                .map_err(|never: std::convert::Infallible| match never {})
                .boxed_unsync(),
        );
        *req.uri_mut() = format!("{base}/x?y=1").parse().unwrap();
        req
    }

    async fn read(client: &UpstreamClient, base: &str) -> Bytes {
        let response = client.request(get(base)).await.unwrap();
        assert_eq!(response.status(), 200);
        body(response).await
    }

    async fn body(response: Response<PooledBody>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_whose_answer_was_read_is_used_again() {
        let (base, accepted) = upstream(None).await;
        let client = client(8);
        for _ in 0..5 {
            assert_eq!(read(&client, &base).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_exchanges_open_connections_and_the_pool_keeps_at_most_its_limit() {
        let (base, accepted) = upstream(None).await;
        let client = client(2);
        let responses = futures_util::future::join_all((0..4).map(|_| client.request(get(&base))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        for response in responses {
            assert_eq!(body(response).await, "hello");
        }
        let idle = |client: &UpstreamClient| client.pool.idle.borrow()[0].1.len();
        assert_eq!(idle(&client), 2);
        // The two kept serve what follows; no third is opened.
        futures_util::future::join_all((0..2).map(|_| read(&client, &base))).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_dropped_is_not_used_again() {
        let (base, accepted) = upstream(Some(Duration::from_millis(50))).await;
        let client = client(8);
        assert_eq!(read(&client, &base).await, "hello");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(read(&client, &base).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unread_answer_keeps_its_connection_out_of_the_pool() {
        let (base, accepted) = upstream(None).await;
        let client = client(8);
        let unread = client.request(get(&base)).await.unwrap();
        drop(unread);
        assert_eq!(read(&client, &base).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let Err(error) = client(8).request(get(&base)).await else {
            panic!("an answer from nothing");
        };
        assert!(error.is_connect(), "{error}");
    }
}
