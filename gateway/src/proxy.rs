//! Forwarding a request to its upstream and streaming the answer back.

use crate::Gateway;
use crate::authn;
use crate::config::RoutePolicy;
use crate::rate_limits;
use crate::routes::{Route, has_dot_segments, is_internal};
use crate::upstream_client::{RequestBody, UpstreamClient};
use actix_web::http::header::{
    CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body as _, Frame};
use service_kit::metrics::MetricsRoute;
use service_kit::request_id::RequestId;
use service_kit::{ApiError, ErrorCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::mpsc;

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

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn strips(name: &str, listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name)
}

/// The request headers sent upstream.
/// Credential headers the gateway consumes: the services see the identity
/// token instead. `Authorization` is consumed only when it carried a bearer
/// credential the gateway verified (a `Basic` header is for the service).
fn is_consumed_credential(name: &str, bearer_consumed: bool) -> bool {
    matches!(name, "x-api-key" | "x-org-api-key" | "x-workspace-key")
        || (bearer_consumed && name == "authorization")
}

fn upstream_headers(
    req: &HttpRequest,
    client: Option<std::net::IpAddr>,
    bearer_consumed: bool,
) -> reqwest::header::HeaderMap {
    let listed = connection_listed(req.headers());
    let mut out = reqwest::header::HeaderMap::with_capacity(req.headers().len() + 4);
    for (name, value) in req.headers() {
        let n = name.as_str();
        if strips(n, &listed)
            || is_reserved(n)
            || is_consumed_credential(n, bearer_consumed)
            || n == "host"
            || n == "x-request-id"
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(n.as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
    // Host and scheme come from this connection, never from client headers
    // (actix's `connection_info()` would trust a client's X-Forwarded-*).
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(value) {
            out.insert(name, value);
        }
    };
    if let Some(client) = client {
        set("x-forwarded-for", &client.to_string());
    }
    set("x-forwarded-proto", scheme);
    if let Some(host) = &host {
        set("x-forwarded-host", host);
    }
    if let Some(id) = req.extensions().get::<RequestId>() {
        set("x-request-id", &id.0);
    }
    out
}

/// Copies the upstream's response headers, minus hop-by-hop ones.
fn copy_response_headers(
    from: &reqwest::header::HeaderMap,
    to: &mut actix_web::HttpResponseBuilder,
) {
    let mut listed = Vec::new();
    for v in from.get_all("connection") {
        if let Ok(v) = v.to_str() {
            listed.extend(v.split(',').map(|t| t.trim().to_ascii_lowercase()));
        }
    }
    for (name, value) in from {
        let n = name.as_str();
        if strips(n, &listed) || n == "content-length" {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            to.append_header((name, value));
        }
    }
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

/// Streams the client's body upstream as it arrives, refusing past `limit`.
/// actix's payload is tied to its worker thread, so a local task feeds a channel
/// whose receiving end the upstream client can own.
fn stream_body(mut payload: web::Payload, limit: u64, exceeded: Arc<AtomicBool>) -> RequestBody {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    actix_web::rt::spawn(async move {
        let mut total: u64 = 0;
        while let Some(chunk) = payload.next().await {
            let item = match chunk {
                Ok(bytes) => {
                    total += bytes.len() as u64;
                    if total > limit {
                        exceeded.store(true, Ordering::Relaxed);
                        Err(std::io::Error::other("request body too large"))
                    } else {
                        Ok(bytes)
                    }
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    StreamBody::new(frames).boxed_unsync()
}

/// A small body of declared length, read whole before the request goes
/// upstream: no task and channel to feed it, as a streamed one needs.
async fn read_small_body(
    mut payload: web::Payload,
    route: &Route,
) -> Result<RequestBody, ApiError> {
    let read = async {
        // One chunk (the usual case) is sent as it came; more are joined.
        let mut whole = Bytes::new();
        let mut joined: Option<bytes::BytesMut> = None;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            })?;
            if whole.is_empty() && joined.is_none() {
                whole = chunk;
                continue;
            }
            joined
                .get_or_insert_with(|| bytes::BytesMut::from(&whole[..]))
                .extend_from_slice(&chunk);
        }
        Ok::<_, ApiError>(joined.map_or(whole, bytes::BytesMut::freeze))
    };
    let body = tokio::time::timeout(route.timeout, read)
        .await
        .map_err(|_| ApiError::bad_request("the request body did not arrive in time"))??;
    Ok(Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync())
}

/// `work`'s output, or `None` if `deadline` passes first.
async fn within<F: std::future::Future>(
    deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    work: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        output = work => Some(output),
        () = deadline => None,
    }
}

fn no_body() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
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
    fn of(req: &HttpRequest, declared: Option<u64>) -> BodyPassage {
        let chunked = req.headers().contains_key(TRANSFER_ENCODING);
        if req.method() == Method::GET
            || req.method() == Method::HEAD
            || !(chunked || declared.is_some_and(|n| n > 0))
        {
            BodyPassage::None
        } else if !chunked && declared.is_some_and(|n| n <= BUFFERED_BODY_MAX) {
            BodyPassage::Whole
        } else {
            BodyPassage::Streamed
        }
    }
}

pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
    client: web::Data<UpstreamClient>,
) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    if is_internal(path) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no route for {} {path}", req.method()),
        ));
    }
    if has_dot_segments(path) {
        return Err(ApiError::bad_request(
            "paths may not contain dot segments or encoded slashes",
        ));
    }
    let route = gateway.routes.find(path).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no route for {} {path}", req.method()),
        )
    })?;
    req.extensions_mut()
        .insert(MetricsRoute(route.prefix.clone()));

    let declared = declared_length(&req);
    if declared.is_some_and(|n| n > route.max_body_bytes) {
        return Err(body_too_large(route.max_body_bytes));
    }
    let query_key = (route.dialect == service_kit::Dialect::Tuzzle)
        .then(|| authn::QueryKey::of(req.query_string()))
        .flatten();
    let credential = authn::credential_of(&req, query_key.as_ref());
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
    let client_ip = gateway.trusted_proxies.client(&req);
    let budget = gateway
        .rate_limiter
        .spend((&admission.identity, &admission.budget), client_ip)
        .await;
    if let Some(decision) = budget.as_ref().filter(|d| !d.allowed) {
        return Err(rate_limits::exceeded(decision));
    }
    let passage = BodyPassage::of(&req, declared);
    let mut response = send(
        &req,
        (payload, passage),
        (&gateway, &client),
        route,
        &admission,
        client_ip,
        (bearer_consumed, query_key.as_ref().map(|k| k.rest.as_str())),
    )
    .await?;
    if let Some(decision) = &budget {
        rate_limits::add_headers(&mut response, decision);
    }
    Ok(response)
}

async fn send(
    req: &HttpRequest,
    (payload, passage): (web::Payload, BodyPassage),
    (gateway, upstream_client): (&Gateway, &UpstreamClient),
    route: &Route,
    admission: &authn::Admission,
    client: Option<std::net::IpAddr>,
    (bearer_consumed, query_without_key): (bool, Option<&str>),
) -> Result<HttpResponse, ApiError> {
    let without_key;
    let path_and_query = match query_without_key {
        // `?api_key=` is the credential: it goes no further than here.
        Some("") => req.path(),
        Some(rest) => {
            without_key = format!("{}?{rest}", req.path());
            without_key.as_str()
        }
        None => req
            .uri()
            .path_and_query()
            .map_or(req.path(), |pq| pq.as_str()),
    };
    let uri = route
        .replicas
        .uri(path_and_query)
        .ok_or_else(|| ApiError::bad_request("the request target is not a valid URI"))?;
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::new(ErrorCode::MethodNotAllowed, "unsupported method"))?;
    let mut headers = upstream_headers(req, client, bearer_consumed);
    if let Some(token) = admission.token_for(&gateway.signer, &route.audience) {
        headers.insert(identity::HEADER, token);
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let body = match passage {
        BodyPassage::None => no_body(),
        BodyPassage::Whole => read_small_body(payload, route).await?,
        BodyPassage::Streamed => stream_body(payload, route.max_body_bytes, exceeded.clone()),
    };
    let mut upstream = hyper::Request::new(body);
    *upstream.method_mut() = method;
    *upstream.uri_mut() = uri;
    *upstream.headers_mut() = headers;

    let started = Instant::now();
    // One timer for the route's timeout, covering the answer's head and, when
    // it is read whole, its body.
    let deadline = tokio::time::sleep(route.timeout);
    tokio::pin!(deadline);
    let outcome = within(deadline.as_mut(), upstream_client.request(upstream)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let response = match outcome {
        Some(Ok(response)) => response,
        Some(Err(_)) if exceeded.load(Ordering::Relaxed) => {
            return Err(body_too_large(route.max_body_bytes));
        }
        Some(Err(e)) => {
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

    let (head, body) = response.into_parts();
    let status = StatusCode::from_u16(head.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    copy_response_headers(&head.headers, &mut builder);
    // A HEAD answer has no body; its Content-Length is the GET's, and goes
    // through as is.
    let is_head = req.method() == Method::HEAD;
    let length = if is_head {
        head.headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    } else {
        body.size_hint().exact()
    };
    // A small body of known length is read whole, and goes out with the head
    // in one write. (Not for HEAD: its Content-Length describes the GET.)
    if let Some(len) = length
        && len <= BUFFERED_BODY_MAX
        && !is_head
    {
        let body = match within(deadline, body.collect()).await {
            Some(Ok(body)) => body.to_bytes(),
            Some(Err(e)) => {
                tracing::warn!(upstream = %route.upstream, error = %e, "upstream body failed");
                return Err(answered_badly(route));
            }
            None => return Err(timed_out(route)),
        };
        return Ok(builder.body(body));
    }
    if let Some(len) = length {
        builder.no_chunking(len);
    }
    let upstream_name = route.upstream.clone();
    let body = body.into_data_stream().map(move |chunk| {
        chunk.map_err(|e| {
            tracing::warn!(upstream = %upstream_name, error = %e, "upstream body failed mid-stream");
            actix_web::error::ErrorBadGateway("upstream body failed")
        })
    });
    Ok(builder.streaming(body))
}
