//! Forwarding a request to its upstream and streaming the answer back.

use crate::Gateway;
use crate::authn;
use crate::config::RoutePolicy;
use crate::rate_limits;
use crate::routes::{Route, has_dot_segments, is_internal};
use crate::upstream_client::{PooledBody, RequestBody, UpstreamClient};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response};
use service_kit::{ApiError, ErrorCode};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Identity and forwarding headers only the gateway may set: whatever a client
/// sends under these names is dropped.
fn is_reserved(name: &str) -> bool {
    name.starts_with("x-spaceport-")
        || name.starts_with("x-principal-")
        || name.starts_with("x-forwarded-")
        || name == "x-workspace-id"
        || name == "forwarded"
        || name == "x-real-ip"
}

/// The request id's header, as the gateway gives it and passes it on.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The identity token's header.
const IDENTITY: HeaderName = HeaderName::from_static(identity::HEADER);

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn strips(name: &str, listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name)
}

/// Removes from `headers` every name `drops` picks: one pass over the names
/// (most requests drop one or two), then a removal each.
fn remove_where(headers: &mut HeaderMap, drops: impl Fn(&str) -> bool) {
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| drops(name.as_str()))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

/// Credential headers the gateway consumes: the services see the identity
/// token instead. `Authorization` is consumed only when it carried a bearer
/// credential the gateway verified (a `Basic` header is for the service).
fn is_consumed_credential(name: &str, bearer_consumed: bool) -> bool {
    matches!(name, "x-api-key" | "x-org-api-key" | "x-workspace-key")
        || (bearer_consumed && name == "authorization")
}

/// Turns the client's headers into those sent upstream, in place: what
/// describes the client's connection, what only the gateway may set and the
/// credential it consumed go; the forwarding headers and the request id come.
fn upstream_headers(
    headers: &mut HeaderMap,
    authority: Option<&hyper::http::uri::Authority>,
    (client, scheme, request_id): (Option<IpAddr>, &'static str, &HeaderValue),
    bearer_consumed: bool,
) {
    const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    // The host comes from this request, never from client headers; only
    // visible ASCII is passed on.
    let host = headers
        .remove(HOST)
        .filter(|h| h.to_str().is_ok())
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let listed = connection_listed(headers);
    remove_where(headers, |n| {
        strips(n, &listed)
            || is_reserved(n)
            || is_consumed_credential(n, bearer_consumed)
            || n == "x-request-id"
    });
    if let Some(client) = client
        && let Ok(value) = HeaderValue::from_str(&client.to_string())
    {
        headers.insert(FORWARDED_FOR, value);
    }
    headers.insert(FORWARDED_PROTO, HeaderValue::from_static(scheme));
    if let Some(host) = host {
        headers.insert(FORWARDED_HOST, host);
    }
    headers.insert(REQUEST_ID, request_id.clone());
}

/// Bodies up to this size (with a Content-Length), the client's and the
/// upstream's, are read whole rather than streamed.
const BUFFERED_BODY_MAX: u64 = 64 * 1024;

/// 502: the upstream's answer could not be read.
fn answered_badly(route: &Route) -> ApiError {
    ApiError::new(
        ErrorCode::BadGateway,
        format!("{} answered badly", route.upstream),
    )
}

/// 504: the upstream took longer than the route allows.
fn timed_out(route: &Route) -> ApiError {
    ApiError::new(
        ErrorCode::GatewayTimeout,
        format!("{} did not answer in time", route.upstream),
    )
}

fn body_too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than {limit} bytes"),
    )
}

/// What became of a streamed client body (0 while it is being read), for
/// the answer when the exchange fails: the client's fault is a 4xx, not the
/// upstream's 5xx.
#[derive(Default)]
struct BodyOutcome(AtomicU8);

impl BodyOutcome {
    const TOO_LARGE: u8 = 1;
    const BROKEN: u8 = 2;

    fn set(&self, outcome: u8) {
        self.0.store(outcome, Ordering::Relaxed);
    }

    /// The client's error, if its body is why the exchange failed.
    fn error(&self, route: &Route) -> Option<ApiError> {
        match self.0.load(Ordering::Relaxed) {
            Self::TOO_LARGE => Some(body_too_large(route.max_body_bytes)),
            Self::BROKEN => Some(ApiError::bad_request(
                "the request body could not be read to its end",
            )),
            _ => None,
        }
    }
}

/// The client's body streamed upstream as it arrives, refused past `limit`
/// (a chunked body declares no length to refuse it by up front).
struct CappedBody {
    body: Incoming,
    limit: u64,
    seen: u64,
    outcome: Arc<BodyOutcome>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let frame = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => {
                // A malformed chunk, or the client went away mid-body.
                this.outcome.set(BodyOutcome::BROKEN);
                return Poll::Ready(Some(Err(std::io::Error::other(e))));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            this.seen += data.len() as u64;
            if this.seen > this.limit {
                this.outcome.set(BodyOutcome::TOO_LARGE);
                return Poll::Ready(Some(Err(std::io::Error::other("request body too large"))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A small body of declared length, read whole before the request goes
/// upstream.
async fn read_small_body(body: Incoming, route: &Route) -> Result<RequestBody, ApiError> {
    let body = tokio::time::timeout(route.timeout, body.collect())
        .await
        .map_err(|_| ApiError::bad_request("the request body did not arrive in time"))?
        .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?
        .to_bytes();
    Ok(Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync())
}

pin_project_lite::pin_project! {
    /// `work`'s output, or `None` if `deadline` passes first: `work` is
    /// polled first, then the deadline. A future of `work`'s size (an
    /// `async fn` would keep its argument and a moved copy of it).
    struct Within<'d, F> {
        #[pin]
        work: F,
        deadline: Pin<&'d mut tokio::time::Sleep>,
    }
}

impl<F: std::future::Future> std::future::Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.work.poll(cx) {
            return Poll::Ready(Some(output));
        }
        this.deadline.as_mut().poll(cx).map(|()| None)
    }
}

fn within<F: std::future::Future>(
    deadline: Pin<&mut tokio::time::Sleep>,
    work: F,
) -> Within<'_, F> {
    Within { work, deadline }
}

fn no_body() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// How the client's body goes upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyPassage {
    /// Nothing (also for GET and HEAD, whatever they declare).
    None,
    /// Read whole first: a small body of declared length.
    Whole,
    /// Streamed as it arrives: a large or chunked body.
    Streamed,
}

impl BodyPassage {
    fn of(method: &Method, body: &Incoming) -> BodyPassage {
        if *method == Method::GET || *method == Method::HEAD || body.is_end_stream() {
            BodyPassage::None
        } else if body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= BUFFERED_BODY_MAX)
        {
            BodyPassage::Whole
        } else {
            BodyPassage::Streamed
        }
    }
}

/// An answer's body: whole (the gateway's own answers, errors, an upstream's
/// small body), or an upstream's streamed as it arrives.
pub enum Reply {
    Whole(Option<Bytes>),
    Streamed {
        body: PooledBody,
        upstream: Arc<str>,
    },
}

impl Reply {
    pub fn whole(bytes: impl Into<Bytes>) -> Reply {
        Reply::Whole(Some(bytes.into()))
    }

    pub fn empty() -> Reply {
        Reply::Whole(None)
    }

    /// Whether the body is whole and empty.
    pub fn is_empty(&self) -> bool {
        matches!(self, Reply::Whole(_)) && self.is_end_stream()
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Reply::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Reply::Streamed { body, upstream } => {
                let frame = ready!(Pin::new(body).poll_frame(cx));
                if let Some(Err(e)) = &frame {
                    tracing::warn!(upstream = %upstream, error = %e, "upstream body failed mid-stream");
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::Whole(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Reply::Streamed { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Reply::Streamed { body, .. } => body.size_hint(),
        }
    }
}

/// The route a request goes to: 404 for `/internal/*` and paths no route
/// serves, 400 for paths with dot segments.
pub fn route_of<'g>(
    gateway: &'g Gateway,
    method: &Method,
    path: &str,
) -> Result<&'g Route, ApiError> {
    let no_route = || ApiError::new(ErrorCode::NotFound, format!("no route for {method} {path}"));
    if is_internal(path) {
        return Err(no_route());
    }
    if has_dot_segments(path) {
        return Err(ApiError::bad_request(
            "paths may not contain dot segments or encoded slashes",
        ));
    }
    gateway.routes.find(path).ok_or_else(no_route)
}

/// Where a request came from: the connection's peer, and the request id the
/// gateway gave it.
pub struct Arrival<'a> {
    pub peer: Option<IpAddr>,
    pub request_id: &'a HeaderValue,
}

/// Admits a request on `route` (credential, scopes, rate limit) and forwards
/// it.
pub async fn forward(
    mut req: Request<Incoming>,
    route: &Route,
    (gateway, client): (&Gateway, &UpstreamClient),
    arrival: Arrival<'_>,
) -> Result<Response<Reply>, ApiError> {
    if req
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n > route.max_body_bytes)
    {
        return Err(body_too_large(route.max_body_bytes));
    }
    let query_key = (route.dialect == service_kit::Dialect::Tuzzle)
        .then(|| authn::QueryKey::of(req.uri().query().unwrap_or_default()))
        .flatten();
    let credential = authn::credential_of(req.headers(), query_key.as_ref());
    let bearer_consumed = credential.consumes_authorization();
    let admission = gateway
        .authenticator
        .identify(credential)
        .await
        .map_err(|failure| {
            gateway.observe_auth_failure(failure);
            authn::unauthorized(failure.message())
        })?;
    let requested = match req.headers().get("x-workspace-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("x-workspace-key must be a workspace id"))?,
        ),
    };
    let admission = gateway
        .authenticator
        .select_workspace(admission, requested)
        .await?;
    let identity = &admission.identity;
    if (route.policy == RoutePolicy::Authenticated || !route.scopes.is_empty())
        && identity.is_anonymous()
    {
        return Err(authn::unauthorized("authentication required"));
    }
    if let Some(missing) = route.scopes.iter().find(|s| !identity.scopes.contains(s)) {
        return Err(ApiError::forbidden(format!(
            "this route needs the `{}` scope",
            missing.as_str()
        )));
    }
    let client_ip = gateway.trusted_proxies.client(arrival.peer, req.headers());
    let scheme = gateway.trusted_proxies.scheme(arrival.peer, req.headers());
    let budget = gateway
        .rate_limiter
        .spend((&admission.identity, &admission.budget), client_ip)
        .await;
    if let Some(decision) = budget.as_ref().filter(|d| !d.allowed) {
        return Err(rate_limits::exceeded(decision));
    }
    let uri = upstream_uri(&req, route, query_key.as_ref().map(|k| k.rest.as_str()))?;
    let authority = req.uri().authority().cloned();
    upstream_headers(
        req.headers_mut(),
        authority.as_ref(),
        (client_ip, scheme, arrival.request_id),
        bearer_consumed,
    );
    if let Some(token) = admission.token_for(&gateway.signer, &route.audience) {
        req.headers_mut().insert(IDENTITY, token);
    }
    let mut response = send(req, uri, (gateway, client), route).await?;
    if let Some(decision) = &budget {
        rate_limits::add_headers(response.headers_mut(), decision);
    }
    Ok(response)
}

/// The request's target at the route's next replica; on Tuzzle routes,
/// without the `?api_key=` credential (`query_without_key`).
fn upstream_uri(
    req: &Request<Incoming>,
    route: &Route,
    query_without_key: Option<&str>,
) -> Result<hyper::Uri, ApiError> {
    let path = req.uri().path();
    let without_key;
    let path_and_query = match query_without_key {
        // `?api_key=` is the credential: it goes no further than here.
        Some("") => path,
        Some(rest) => {
            without_key = format!("{path}?{rest}");
            without_key.as_str()
        }
        None => req.uri().path_and_query().map_or(path, |pq| pq.as_str()),
    };
    route
        .replicas
        .uri(path_and_query)
        .ok_or_else(|| ApiError::bad_request("the request target is not a valid URI"))
}

async fn send(
    req: Request<Incoming>,
    uri: hyper::Uri,
    (gateway, upstream_client): (&Gateway, &UpstreamClient),
    route: &Route,
) -> Result<Response<Reply>, ApiError> {
    let (mut parts, body) = req.into_parts();
    let is_head = parts.method == Method::HEAD;
    let body_outcome = Arc::new(BodyOutcome::default());
    let passage = BodyPassage::of(&parts.method, &body);
    // The length sent is the body's own: hyper's client writes it from the
    // body (chunked when unknown). A client's Content-Length on a GET whose
    // body is not forwarded would have the upstream read the next request
    // on the connection as this one's body.
    let declared = parts.headers.remove(CONTENT_LENGTH).is_some();
    if passage == BodyPassage::None
        && declared
        && !matches!(parts.method, Method::GET | Method::HEAD)
    {
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let body = match passage {
        BodyPassage::None => no_body(),
        BodyPassage::Whole => read_small_body(body, route).await?,
        BodyPassage::Streamed => CappedBody {
            body,
            limit: route.max_body_bytes,
            seen: 0,
            outcome: body_outcome.clone(),
        }
        .boxed_unsync(),
    };
    parts.uri = uri;
    // What the client's connection negotiated is not the upstream's.
    parts.version = hyper::Version::HTTP_11;
    parts.extensions = Default::default();
    let upstream = Request::from_parts(parts, body);

    let started = Instant::now();
    // One timer for the route's timeout, covering the answer's head and, when
    // it is read whole, its body.
    let deadline = tokio::time::sleep(route.timeout);
    tokio::pin!(deadline);
    let outcome = within(deadline.as_mut(), upstream_client.request(upstream)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let response = match outcome {
        Some(Ok(response)) => response,
        Some(Err(e)) => {
            // The client's body is why it failed: the client's error, not
            // counted against the upstream.
            if let Some(error) = body_outcome.error(route) {
                return Err(error);
            }
            let (error, label) = if e.is_connect() {
                (
                    ApiError::service_unavailable(format!("{} is unavailable", route.upstream))
                        .with_retry_after(1),
                    "connect",
                )
            } else {
                (answered_badly(route), "upstream")
            };
            tracing::warn!(upstream = %route.upstream, error = %e, "upstream request failed");
            gateway.observe_upstream(&route.upstream, crate::Outcome::Failed(label), elapsed);
            return Err(error);
        }
        None => {
            tracing::warn!(upstream = %route.upstream, timeout_ms = route.timeout.as_millis() as u64, "upstream timed out");
            gateway.observe_upstream(&route.upstream, crate::Outcome::Failed("timeout"), elapsed);
            return Err(timed_out(route));
        }
    };
    let status = crate::Outcome::Status(response.status().as_u16());
    gateway.observe_upstream(&route.upstream, status, elapsed);

    let (mut head, body) = response.into_parts();
    let listed = connection_listed(&head.headers);
    // A HEAD answer has no body; its Content-Length is the GET's, and goes
    // through as is. Otherwise the length is the body's own.
    remove_where(&mut head.headers, |n| {
        strips(n, &listed) || (n == "content-length" && !is_head)
    });
    head.extensions = Default::default();
    // The client's answer is in the client's HTTP version, not the
    // upstream's (an HTTP/1.0 upstream would make it close-delimited).
    head.version = hyper::Version::HTTP_11;
    if is_head {
        return Ok(Response::from_parts(head, Reply::empty()));
    }
    // A small body of known length is read whole, under the same timer, and
    // goes out with the head in one write.
    if body
        .size_hint()
        .exact()
        .is_some_and(|len| len <= BUFFERED_BODY_MAX)
    {
        let body = match within(deadline, body.collect()).await {
            Some(Ok(body)) => body.to_bytes(),
            Some(Err(e)) => {
                tracing::warn!(upstream = %route.upstream, error = %e, "upstream body failed");
                return Err(answered_badly(route));
            }
            None => return Err(timed_out(route)),
        };
        return Ok(Response::from_parts(head, Reply::whole(body)));
    }
    let body = Reply::Streamed {
        body,
        upstream: route.upstream.clone(),
    };
    Ok(Response::from_parts(head, body))
}
