//! What every request to the gateway goes through: a request id, the dialect
//! its errors are written in, the request metrics; then the gateway's own
//! routes (health, readiness, metrics, the OpenAPI document and its pages) or
//! the proxy. This is what service-kit's middleware does for the services'
//! actix apps, done once here for the gateway's hyper server (see
//! [`crate::server`]).

use crate::Gateway;
use crate::proxy::{self, Arrival, REQUEST_ID, Reply};
use crate::upstream_client::UpstreamClient;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use service_kit::metrics::{RouteLabel, method_label_of};
use service_kit::{ApiError, AppSpec, ErrorCode, dialect, request_id};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The gateway's own routes, answered here rather than proxied.
const OWN_ROUTES: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs/authentication.md",
    "/docs/errors.md",
];

/// What answers the gateway's requests; shared by every worker.
pub struct Front {
    pub gateway: Arc<Gateway>,
    /// Health, readiness and metrics; the dialect of each route family.
    pub spec: Arc<AppSpec>,
    /// `GET /openapi.json`: the merged document of every public route.
    pub published: Bytes,
}

impl Front {
    /// The answer to `req`, which came from `peer`; the proxy forwards over
    /// `client`, the worker's.
    pub async fn answer(
        &self,
        req: Request<Incoming>,
        peer: Option<IpAddr>,
        client: &UpstreamClient,
    ) -> Response<Reply> {
        let started = Instant::now();
        let method = method_label_of(req.method().as_str());
        let is_head = req.method() == Method::HEAD;
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .filter(|v| v.to_str().is_ok_and(request_id::is_sane))
            .cloned()
            .unwrap_or_else(new_request_id);
        let id = request_id.to_str().unwrap_or_default();
        let span = tracing::info_span!("request", request_id = %id);
        // Kept for an error's body, which names the path (and Tuzzle's, the
        // query); cheap to clone, unlike the strings the dialect wants.
        let uri = req.uri().clone();
        let (route, outcome) = async {
            match OWN_ROUTES.iter().find(|p| **p == uri.path()) {
                Some(&own) => {
                    // Readiness's 503 names the request id.
                    let answer = request_id::scope(id.to_owned(), self.own(own, req.method()));
                    (RouteLabel::Pattern(own), answer.await)
                }
                None => match proxy::route_of(&self.gateway, req.method(), uri.path()) {
                    Ok(route) => {
                        let arrival = Arrival {
                            peer,
                            request_id: &request_id,
                        };
                        let label = RouteLabel::Named(route.prefix.clone());
                        let forwarded =
                            proxy::forward(req, route, (&*self.gateway, client), arrival).await;
                        (label, forwarded)
                    }
                    Err(e) => (RouteLabel::Pattern("unmatched"), Err(e)),
                },
            }
        }
        .instrument(span.clone())
        .await;
        let mut response = match outcome {
            Ok(response) if needs_envelope(&response, is_head) => {
                let status = response.status();
                let code = ErrorCode::for_status(actix_status(status));
                let message = status.canonical_reason().unwrap_or("error").to_lowercase();
                let error = ApiError::new(code, message).with_status(actix_status(status));
                let (head, _) = response.into_parts();
                let envelope = self.error_response(&error, &uri, id).instrument(span).await;
                with_body_of(head, envelope)
            }
            Ok(response) => response,
            Err(error) => self.error_response(&error, &uri, id).instrument(span).await,
        };
        response.headers_mut().insert(REQUEST_ID, request_id);
        self.spec.metrics.observe(
            method,
            route,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        response
    }

    /// One of [`OWN_ROUTES`]: `GET` (or `HEAD`) only.
    async fn own(&self, path: &str, method: &Method) -> Result<Response<Reply>, ApiError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed",
            ));
        }
        let text = |content_type: &'static str, body: Bytes| {
            let mut response = Response::new(Reply::whole(body));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        };
        let markdown = |text_of: &'static str| {
            text(
                "text/markdown; charset=utf-8",
                Bytes::from_static(text_of.as_bytes()),
            )
        };
        Ok(match path {
            "/healthz" => from_actix(service_kit::app::health_response()),
            "/readyz" => from_actix(service_kit::app::readiness_response(&self.spec).await),
            "/metrics" => from_actix(service_kit::app::metrics_response(&self.spec)),
            "/openapi.json" => {
                let mut response = text("application/json", self.published.clone());
                response.headers_mut().insert(
                    hyper::header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
                response
            }
            "/docs/authentication.md" => markdown(crate::openapi::AUTHENTICATION),
            _ => markdown(crate::openapi::ERRORS),
        })
    }

    /// `error` as its envelope, in the dialect of the route family `uri`
    /// belongs to, carrying the request id.
    async fn error_response(
        &self,
        error: &ApiError,
        uri: &hyper::Uri,
        request_id: &str,
    ) -> Response<Reply> {
        use actix_web::ResponseError;
        let context = dialect::Context {
            dialect: self.spec.families.for_path(uri.path()),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
        };
        let written = dialect::scope(context, async { error.error_response() });
        from_actix(request_id::scope(request_id.to_owned(), written).await)
    }
}

/// An id for a request that came without a sane one.
fn new_request_id() -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(request_id::generate()))
        .expect("a generated id is visible ASCII")
}

/// An error the upstream answered with no body: every error a client sees
/// has the envelope (as service-kit gives the framework's own).
fn needs_envelope(response: &Response<Reply>, is_head: bool) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error()) && !is_head && response.body().is_empty()
}

/// `head` (the upstream's headers) with `envelope`'s status, body and
/// content type: the status the envelope names (a dialect may write another
/// than the upstream's, SpaceOS a 400 for a 422).
fn with_body_of(
    mut head: hyper::http::response::Parts,
    envelope: Response<Reply>,
) -> Response<Reply> {
    let (envelope_head, body) = envelope.into_parts();
    head.status = envelope_head.status;
    head.headers.remove(hyper::header::CONTENT_LENGTH);
    if let Some(content_type) = envelope_head.headers.get(CONTENT_TYPE) {
        head.headers.insert(CONTENT_TYPE, content_type.clone());
    }
    Response::from_parts(head, body)
}

fn actix_status(status: StatusCode) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(status.as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY)
}

/// An answer service-kit wrote for actix-web (health, readiness, metrics,
/// error envelopes), for hyper.
fn from_actix(response: actix_web::HttpResponse) -> Response<Reply> {
    use actix_web::body::MessageBody;
    let mut out = Response::new(Reply::empty());
    *out.status_mut() = StatusCode::from_u16(response.status().as_u16())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    // Every body service-kit writes is whole.
    let body = response.into_body().try_into_bytes().unwrap_or_default();
    *out.body_mut() = Reply::whole(body);
    out
}
