//! The app every server builds: common middleware, extractor error handling,
//! health/readiness/metrics routes, envelope 404s, then the part's own routes.

use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// Something `/readyz` must be able to reach (the database, the cache).
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// Admits or refuses every request except health, readiness and metrics, before
/// routing (so unknown paths do not answer differently to strangers). A guard may
/// leave what it learnt in the request extensions for handlers to extract.
pub trait RequestGuard: Send + Sync {
    fn admit(&self, req: &ServiceRequest) -> Result<(), ApiError>;
}

/// Paths every prober may reach without credentials.
pub const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

type Routes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// What a part contributes to its app.
pub struct AppSpec {
    pub name: &'static str,
    pub routes: Routes,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub metrics: Metrics,
    pub json_limit: usize,
    pub guard: Option<Arc<dyn RequestGuard>>,
    /// The dialect of each route family (SpaceOS for all by default).
    pub families: crate::dialect::Families,
    /// Run, in order, once the server has stopped (after the last request):
    /// a part's background work finishing what it holds.
    pub on_stop: Vec<StopHook>,
    /// Serves the app instead of actix-web's server (see [`AppSpec::server`]).
    pub server: Option<CustomServer>,
}

/// How a started server is stopped: it stops accepting, lets in-flight
/// requests finish (up to the shutdown timeout) when asked to be graceful,
/// and resolves once it is gone. (What dropping it uncalled does is the
/// server's: actix-web's keeps serving; the gateway's stops.)
pub type Stopper = Box<dyn FnOnce(bool) -> BoxFuture<'static, ()> + Send>;

/// Serves an app on `listener` some other way than actix-web's server (the
/// gateway's proxy path); see [`AppSpec::server`]. Called on the runtime
/// that starts the server.
pub type CustomServer = Arc<
    dyn Fn(
            Arc<AppSpec>,
            &crate::config::HttpConfig,
            std::net::TcpListener,
        ) -> std::io::Result<Stopper>
        + Send
        + Sync,
>;

/// Work a part finishes when its server stops (see [`AppSpec::on_stop`]).
pub type StopHook = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

impl AppSpec {
    pub fn new(
        name: &'static str,
        routes: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static,
    ) -> Self {
        AppSpec {
            name,
            routes: Arc::new(routes),
            readiness: Vec::new(),
            metrics: Metrics::new(name),
            json_limit: 256 * 1024,
            guard: None,
            families: Default::default(),
            on_stop: Vec::new(),
            server: None,
        }
    }

    /// Serves the app with `server` rather than actix-web's: `routes`,
    /// `guard` and `json_limit` are then the custom server's
    /// business; health, readiness and metrics come from
    /// [`health_response`], [`readiness_response`] and [`metrics_response`].
    pub fn server(mut self, server: CustomServer) -> Self {
        self.server = Some(server);
        self
    }

    /// Which dialect each route family speaks (a service's `families()` from
    /// [`service_routes!`], the gateway's route table).
    pub fn families(mut self, families: crate::dialect::Families) -> Self {
        self.families = families;
        self
    }

    pub fn readiness(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.readiness.push(check);
        self
    }

    pub fn guard(mut self, guard: Arc<dyn RequestGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Runs `hook` once the server has stopped (see [`AppSpec::on_stop`]).
    pub fn on_stop(mut self, hook: StopHook) -> Self {
        self.on_stop.push(hook);
        self
    }

    pub fn json_limit(mut self, bytes: usize) -> Self {
        self.json_limit = bytes;
        self
    }
}

/// Builds the app for one worker. Middleware order, outermost first: request id,
/// the route family's dialect, error normalisation, metrics, the request guard.
pub fn build_app(
    spec: Arc<AppSpec>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let routes = spec.routes.clone();
    App::new()
        .app_data(web::Data::from(spec.clone()))
        .app_data(
            web::JsonConfig::default()
                .limit(spec.json_limit)
                .error_handler(|err, _req| json_error(err).into()),
        )
        .app_data(web::QueryConfig::default().error_handler(|err, _req| query_error(err).into()))
        .app_data(web::PathConfig::default().error_handler(|err, _req| path_error(err).into()))
        // Resources (not `App::route`) so that another method answers 405.
        .service(web::resource("/healthz").get(healthz))
        .service(web::resource("/readyz").get(readyz))
        .service(web::resource("/metrics").get(metrics))
        .configure(move |cfg| routes(cfg))
        .default_service(web::to(not_found))
        .wrap(from_fn(guard_requests))
        .wrap(from_fn(crate::metrics::middleware))
        .wrap(from_fn(normalize_errors))
        .wrap(from_fn(crate::dialect::middleware))
        .wrap(from_fn(crate::request_id::middleware))
}

/// Fallbacks for actix's own `web::Json` / `web::Query`. Handlers use
/// [`crate::Json`] and [`crate::Query`], which also name the offending field.
fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::validation(vec![crate::FieldError::new("body", e.to_string())])
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {e}"))
        }
        other => ApiError::bad_request(format!("could not read request body: {other}")),
    }
}

fn query_error(err: QueryPayloadError) -> ApiError {
    ApiError::invalid_query("query", err.to_string())
}

fn path_error(_err: PathError) -> ApiError {
    // A path that does not parse names nothing that exists.
    ApiError::new(ErrorCode::NotFound, "resource not found")
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

async fn guard_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let guard = req
        .app_data::<web::Data<AppSpec>>()
        .and_then(|spec| spec.guard.clone());
    if let Some(guard) = guard
        && !OPEN_PATHS.contains(&req.path())
        && let Err(err) = guard.admit(&req)
    {
        return Ok(req.error_response(err).map_into_boxed_body());
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Error responses the framework makes itself (405 from a resource, 4xx from a
/// failed extractor without a handler, …) come without a body; give them the
/// envelope so every error a client sees has one shape.
async fn normalize_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status();
    let empty = matches!(
        response.response().body().size(),
        BodySize::None | BodySize::Sized(0)
    );
    if !(status.is_client_error() || status.is_server_error()) || !empty {
        return Ok(response);
    }
    let code = ErrorCode::for_status(status);
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    let (req, res) = response.into_parts();
    let mut new = ApiError::new(code, message)
        .with_status(status)
        .error_response();
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(req, new))
}

async fn healthz() -> HttpResponse {
    health_response()
}

/// `GET /healthz`'s answer.
pub fn health_response() -> HttpResponse {
    crate::ApiResponse::ok(serde_json::json!({"status": "ok"})).into_response()
}

const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

async fn readyz(spec: web::Data<AppSpec>) -> HttpResponse {
    readiness_response(&spec).await
}

/// `GET /readyz`'s answer: every readiness check of `spec`, each bounded.
pub async fn readiness_response(spec: &AppSpec) -> HttpResponse {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    for check in &spec.readiness {
        let outcome = match tokio::time::timeout(READINESS_TIMEOUT, check.check()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(e)) => {
                tracing::warn!(check = check.name(), error = %e, "readiness check failed");
                ready = false;
                "unavailable".to_owned()
            }
            Err(_) => {
                tracing::warn!(check = check.name(), "readiness check timed out");
                ready = false;
                "timeout".to_owned()
            }
        };
        checks.insert(check.name().to_owned(), outcome.into());
    }
    if ready {
        crate::ApiResponse::ok(serde_json::json!({"status": "ready", "checks": checks}))
            .into_response()
    } else {
        let mut response = ApiError::service_unavailable("not ready").error_response();
        // The check names tell an operator what is down; no connection details.
        let body = serde_json::json!({
            "status": 503,
            "success": false,
            "message": "not ready",
            "data": {"status": "not_ready", "checks": checks},
            "error": {"code": "service_unavailable", "request_id": crate::request_id::current()},
            "timestamp": crate::time::now_rfc3339(),
        });
        response = response.set_body(BoxBody::new(body.to_string()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

async fn metrics(spec: web::Data<AppSpec>) -> HttpResponse {
    metrics_response(&spec)
}

/// `GET /metrics`'s answer: `spec`'s registry in the OpenMetrics text format.
pub fn metrics_response(spec: &AppSpec) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(spec.metrics.render())
}

#[doc(hidden)]
pub use actix_web as __actix_web;

/// A service's route table, written once, each route under the dialect of its
/// family (`SpaceOs`, `Gospace`, `Tuzzle`; DESIGN §5): generates `pub const
/// ROUTES` (every `(method, path)` the service's own routes answer, which the
/// OpenAPI tests hold the document to; health, readiness and metrics come from
/// service-kit), `pub const FAMILIES` (each path's dialect), `pub fn
/// families()` for [`AppSpec::families`], and `fn register(cfg)`, which mounts
/// the routes.
///
/// ```ignore
/// service_kit::service_routes! {
///     Tuzzle {
///         "/api/v1/things" => [get => things::list, post => things::create],
///     }
/// }
/// ```
#[macro_export]
macro_rules! service_routes {
    ($($dialect:ident {
        $($path:literal => [$($method:ident => $handler:path),+ $(,)?]),* $(,)?
    })*) => {
        /// Every `(method, path)` the service's own routes answer (health, readiness
        /// and metrics come from `service_kit`).
        pub const ROUTES: &[(&str, &str)] = &[$($($((stringify!($method), $path)),+),*),*];

        /// The dialect each of the service's paths speaks.
        pub const FAMILIES: &[($crate::Dialect, &str)] =
            &[$($(($crate::Dialect::$dialect, $path)),*),*];

        /// [`FAMILIES`], for the app.
        pub fn families() -> $crate::dialect::Families {
            $crate::dialect::Families::new(FAMILIES.iter().copied())
        }

        fn register(cfg: &mut $crate::app::__actix_web::web::ServiceConfig) {
            $($(cfg.service(
                $crate::app::__actix_web::web::resource($path)
                    .app_data($crate::metrics::RoutePattern($path))
                    $(.$method($handler))+
            );)*)*
        }
    };
}
