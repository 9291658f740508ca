//! Starting servers and stopping them gracefully.

use crate::app::{AppSpec, build_app};
pub use crate::app::{CustomServer, Stopper};
use crate::config::HttpConfig;
use actix_web::HttpServer;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// A server accepting connections.
pub struct RunningServer {
    pub name: &'static str,
    pub addr: SocketAddr,
    stopper: Stopper,
    on_stop: Vec<crate::app::StopHook>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (up to the shutdown timeout
    /// when `graceful`), waits until the server is gone, then runs the app's
    /// stop hooks.
    pub async fn stop(self, graceful: bool) {
        (self.stopper)(graceful).await;
        for hook in &self.on_stop {
            hook().await;
        }
    }
}

/// How long an idle keep-alive connection is kept open: longer than the
/// gateway keeps idle upstream connections (`proxy.pool_idle_timeout_secs`,
/// 90 s), so that a service never closes a connection the gateway is about to
/// reuse (a request written into a connection the server just closed fails
/// with a broken pipe; actix's own default is 5 s).
pub const KEEP_ALIVE: Duration = Duration::from_secs(100);

/// How long a new connection may take to send its first request's head
/// (a client that connects and says nothing holds a connection for no one).
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Worker threads for `http.workers` (0: one per core).
pub fn worker_count(http: &HttpConfig) -> usize {
    match http.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Binds `http.addr` (or uses `listener`, e.g. one bound to port 0 by a test) and
/// starts serving. Signals are not handled here: the caller decides when to stop,
/// so one process can run several servers and stop them together.
pub fn start(
    spec: AppSpec,
    http: &HttpConfig,
    listener: Option<TcpListener>,
) -> std::io::Result<RunningServer> {
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(http.addr)?,
    };
    let addr = listener.local_addr()?;
    let name = spec.name;
    let on_stop = spec.on_stop.clone();
    let custom = spec.server.clone();
    let spec = Arc::new(spec);
    let stopper = match custom {
        Some(serve) => serve(spec, http, listener)?,
        None => actix_server(spec, http, listener)?,
    };
    tracing::info!(server = name, %addr, "listening");
    Ok(RunningServer {
        name,
        addr,
        stopper,
        on_stop,
    })
}

fn actix_server(
    spec: Arc<AppSpec>,
    http: &HttpConfig,
    listener: TcpListener,
) -> std::io::Result<Stopper> {
    let name = spec.name;
    let server = HttpServer::new(move || build_app(spec.clone()))
        .workers(worker_count(http))
        .shutdown_timeout(http.shutdown_timeout_secs)
        .keep_alive(KEEP_ALIVE)
        .client_request_timeout(FIRST_REQUEST_TIMEOUT)
        .disable_signals()
        .listen(listener)?
        .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(Box::new(move |graceful| {
        Box::pin(async move {
            handle.stop(graceful).await;
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(server = name, error = %e, "server ended with an error")
                }
                Err(e) => tracing::warn!(server = name, error = %e, "server task failed"),
            }
        })
    }))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves until a signal, then stops every server gracefully, together.
pub async fn serve_until_signal(servers: Vec<RunningServer>) {
    shutdown_signal().await;
    futures_util::future::join_all(servers.into_iter().map(|s| s.stop(true))).await;
    tracing::info!("stopped");
}
