//! `spaceport-bare-proxy actix|actix-hyper|hyper LISTEN UPSTREAM`: proxies
//! that do nothing but forward, for `spaceport-bench gateway`.
//!
//! - `actix`: the gateway's stack with nothing of the gateway in it. actix-web
//!   in front, one reqwest client per worker behind, as many workers as the
//!   gateway runs. Its rate is what the gateway could reach if all of its own
//!   work cost nothing.
//! - `actix-hyper`: the same with hyper-util's pooled client (plain HTTP) in
//!   place of reqwest, which the gateway's proxy path could use instead.
//! - `hyper`: hyper's HTTP/1 server and hyper-util's pooled client, one
//!   single-threaded runtime, listener (SO_REUSEPORT) and client per core, so
//!   a request never changes threads: the fastest shape of a Rust proxy tried
//!   here (one multi-threaded runtime with a shared client was slower), and
//!   what a proxy path written below actix would start from.
//!
//! Both forward every request to `UPSTREAM` (a base URL such as
//! `http://127.0.0.1:8080`) with mimalloc as the allocator, and do no
//! credential check, rate limit, identity token, metrics, request id or header
//! hygiene beyond dropping hop-by-hop headers. The actix modes read response
//! bodies whole (the gateway streams large ones), `actix` reads request bodies
//! whole and `actix-hyper` sends none; for the bench's bodiless GET and 2-byte
//! answer that makes no difference.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer, web};
// Dropped both ways: the gateway's own list (it also drops headers named in
// `Connection`; the bench sends none).
use gateway::proxy::HOP_BY_HOP;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;

/// The client's headers to send upstream: all but hop-by-hop ones and Host,
/// which comes from the upstream's URL, as with nginx's default.
fn upstream_headers(req: &HttpRequest) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::with_capacity(req.headers().len());
    for (name, value) in req.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) || name == "host" {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// The status and headers of the upstream's answer, minus hop-by-hop ones and
/// Content-Length (actix sets it from the body).
fn answer_head(status: u16, headers: &reqwest::header::HeaderMap) -> HttpResponseBuilder {
    let mut out =
        HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in headers {
        if HOP_BY_HOP.contains(&name.as_str()) || name == "content-length" {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append_header((name, value));
        }
    }
    out
}

struct Upstream {
    client: reqwest::Client,
    base: String,
}

async fn forward(
    req: HttpRequest,
    body: web::Bytes,
    upstream: web::Data<Upstream>,
) -> HttpResponse {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", upstream.base);
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return HttpResponse::MethodNotAllowed().finish();
    };
    let Ok(answer) = upstream
        .client
        .request(method, url)
        .headers(upstream_headers(&req))
        .body(body)
        .send()
        .await
    else {
        return HttpResponse::BadGateway().finish();
    };
    let mut out = answer_head(answer.status().as_u16(), answer.headers());
    match answer.bytes().await {
        Ok(bytes) => out.body(bytes),
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, listen, base] = args.as_slice() else {
        eprintln!(
            "usage: spaceport-bare-proxy actix|actix-hyper|hyper LISTEN_ADDR UPSTREAM_BASE_URL"
        );
        return ExitCode::from(2);
    };
    let base = base.trim_end_matches('/').to_owned();
    // reqwest is built without a rustls provider in this workspace.
    service_kit::tls::ensure_provider();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let served = match mode.as_str() {
        "actix" => serve_actix(listen, base, workers),
        "hyper" => serve_hyper(listen, base, workers),
        "actix-hyper" => serve_actix_hyper(listen, base, workers),
        other => {
            eprintln!("spaceport-bare-proxy: unknown mode {other} (actix, actix-hyper or hyper)");
            return ExitCode::from(2);
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spaceport-bare-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve_actix(listen: &str, base: String, workers: usize) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            // Per worker, as in the gateway.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .expect("a plain HTTP client builds");
            App::new()
                .app_data(web::Data::new(Upstream {
                    client,
                    base: base.clone(),
                }))
                .default_service(web::to(forward))
        })
        .workers(workers)
        .bind(listen)?
        .run()
        .await
    })
}

mod bare_hyper {
    use bytes::Bytes;
    use http_body_util::{Either, Empty};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode, Uri};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::sync::Arc;

    type Upstream = Client<HttpConnector, Incoming>;
    type Answer = Response<Either<Incoming, Empty<Bytes>>>;

    async fn forward(
        client: Upstream,
        base: Arc<str>,
        mut req: Request<Incoming>,
    ) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = format!("{base}{path}").parse::<Uri>()?;
        // Host comes from the upstream's URL, as with nginx's default.
        for name in super::HOP_BY_HOP.iter().chain(&["host"]) {
            req.headers_mut().remove(*name);
        }
        let Ok(mut answer) = client.request(req).await else {
            let mut bad_gateway = Response::new(Either::Right(Empty::new()));
            *bad_gateway.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(bad_gateway);
        };
        for name in super::HOP_BY_HOP {
            answer.headers_mut().remove(name);
        }
        Ok(answer.map(Either::Left))
    }

    /// One thread's server: its own runtime, listener and client, so a request
    /// never leaves the thread that accepted its connection.
    pub async fn serve(listener: std::net::TcpListener, base: Arc<str>) -> std::io::Result<()> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Upstream = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    eprintln!("spaceport-bare-proxy: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| forward(client.clone(), base.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// One listener per thread on the same address (SO_REUSEPORT: the kernel
/// spreads connections over them), all listening before any request comes.
fn reuseport_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn serve_hyper(listen: &str, base: String, workers: usize) -> std::io::Result<()> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listeners = (0..workers)
        .map(|_| reuseport_listener(addr))
        .collect::<std::io::Result<Vec<_>>>()?;
    let base: std::sync::Arc<str> = base.into();
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let base = base.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(bare_hyper::serve(listener, base))
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| std::io::Error::other("a server thread panicked"))??;
    }
    Ok(())
}

/// actix-web in front, hyper-util's client behind (one per worker).
mod actix_hyper {
    use actix_web::{HttpRequest, HttpResponse, web};
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    pub struct Upstream {
        pub client: Client<HttpConnector, Empty<bytes::Bytes>>,
        pub base: String,
    }

    pub fn client() -> Client<HttpConnector, Empty<bytes::Bytes>> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector)
    }

    pub async fn forward(req: HttpRequest, upstream: web::Data<Upstream>) -> HttpResponse {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let Ok(uri) = format!("{}{path}", upstream.base).parse::<hyper::Uri>() else {
            return HttpResponse::BadRequest().finish();
        };
        let Ok(method) = hyper::Method::from_bytes(req.method().as_str().as_bytes()) else {
            return HttpResponse::MethodNotAllowed().finish();
        };
        let mut request = hyper::Request::new(Empty::new());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = super::upstream_headers(&req);
        let Ok(answer) = upstream.client.request(request).await else {
            return HttpResponse::BadGateway().finish();
        };
        let (parts, body) = answer.into_parts();
        let mut response = super::answer_head(parts.status.as_u16(), &parts.headers);
        match body.collect().await {
            Ok(body) => response.body(body.to_bytes()),
            Err(_) => HttpResponse::BadGateway().finish(),
        }
    }
}

fn serve_actix_hyper(listen: &str, base: String, workers: usize) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(actix_hyper::Upstream {
                    client: actix_hyper::client(),
                    base: base.clone(),
                }))
                .default_service(web::to(actix_hyper::forward))
        })
        .workers(workers)
        .bind(listen)?
        .run()
        .await
    })
}
