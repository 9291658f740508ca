//! Prometheus metrics. Each app has its own registry, so several servers in one
//! process (the devstack, tests) keep their figures apart.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    /// The route template (`/api/v1/bookings/{id}`), never the raw path, so the
    /// number of series stays bounded.
    pub route: RouteLabel,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: RouteLabel,
}

/// A route's label: a resource's pattern, or the name a handler serving
/// many paths gives (the gateway's route prefix). Cloned without allocating,
/// as it is on every request.
#[derive(Clone, Debug)]
pub enum RouteLabel {
    Pattern(&'static str),
    Named(Arc<str>),
}

impl RouteLabel {
    pub fn as_str(&self) -> &str {
        match self {
            RouteLabel::Pattern(pattern) => pattern,
            RouteLabel::Named(name) => name,
        }
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// A label value shared, not copied, by every observation that carries it
/// (a name known at start-up, say).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedLabel(pub Arc<str>);

impl EncodeLabelValue for SharedLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// A registry with the HTTP metrics every server has; parts register their own
/// metrics in it before the app is built.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("service"),
                std::borrow::Cow::Owned(service.to_owned()),
            )]
            .into_iter(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn observe(&self, method: &'static str, route: RouteLabel, status: u16, seconds: f64) {
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A resource's path pattern, as its route label: `service_routes!` gives
/// each resource its own as app data, so the label is read after routing
/// rather than found again by `match_pattern`, which tries every pattern
/// (a regular expression each, for those with parameters) on every request.
#[derive(Debug, Clone, Copy)]
pub struct RoutePattern(pub &'static str);

pub fn method_label(method: &Method) -> &'static str {
    method_label_of(method.as_str())
}

/// The label of a method by its name: the common ones by name, any other as
/// `OTHER` (a client's made-up methods do not make new series).
pub fn method_label_of(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let spec = req.app_data::<web::Data<crate::AppSpec>>().cloned();
    // Handler errors are already responses here (actix converts them inside the
    // handler service), so they are counted with their status.
    let response = next.call(req).await?;
    if let Some(spec) = spec {
        let route = response
            .request()
            .app_data::<RoutePattern>()
            .map(|p| RouteLabel::Pattern(p.0))
            .or_else(|| {
                let pattern = response.request().match_pattern();
                pattern.map(|p| RouteLabel::Named(p.into()))
            })
            .unwrap_or(RouteLabel::Pattern("unmatched"));
        spec.metrics.observe(
            method,
            route,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}
