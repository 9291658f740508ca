//! The gateway's server: hyper's HTTP/1 connections, served by one
//! single-threaded runtime per core.
//!
//! The services run on actix-web's server. The gateway does not: on its
//! proxy path actix's dispatcher, its middleware chain and the conversions
//! between its `http` 0.2 types and hyper's `http` 1 (the upstream side)
//! were about an eighth of the gateway's CPU per request. Here a request
//! arrives as hyper's, and goes upstream as the same request, headers edited
//! in place.
//!
//! - **Workers:** `http.workers` threads (one per core by default), each
//!   with its own runtime and its own upstream client (its connection pool).
//!   The first worker accepts, and hands connections out in turn.
//! - **Timeouts:** a new connection must send its first request's head within
//!   [`FIRST_REQUEST_TIMEOUT`]; after that, a connection may be idle, or
//!   take to send a head, up to [`KEEP_ALIVE`] (hyper's one header timeout
//!   bounds both), longer than the ingress keeps idle connections.
//! - **Stopping:** the listener closes; each connection finishes the request
//!   in flight and closes; what is still running after
//!   `http.shutdown_timeout_secs` is dropped.

use crate::config::ProxyConfig;
use crate::front::Front;
use crate::upstream_client::{Connector, UpstreamClient};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use service_kit::config::HttpConfig;
use service_kit::server::{FIRST_REQUEST_TIMEOUT, KEEP_ALIVE, Stopper, worker_count};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// A request head larger than this is refused (431).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Connections a worker serves at once (actix-web's default); past it, a
/// new connection is closed at once.
const MAX_CONNECTIONS_PER_WORKER: usize = 25_000;

/// `None` while serving; `Some(graceful)` once asked to stop.
type StopSignal = watch::Receiver<Option<bool>>;

/// What each worker needs to build its part.
#[derive(Clone)]
pub struct Workers {
    pub front: Arc<Front>,
    pub connector: Connector,
    pub proxy: ProxyConfig,
}

/// Serves on `listener` until the returned [`Stopper`] is called. Dropping
/// the stopper uncalled stops the server at once, as a stop that is not
/// graceful.
pub fn serve(
    workers: Workers,
    http: &HttpConfig,
    listener: std::net::TcpListener,
) -> std::io::Result<Stopper> {
    listener.set_nonblocking(true)?;
    let count = worker_count(http);
    let shutdown_timeout = Duration::from_secs(http.shutdown_timeout_secs);
    let (stop, stopping) = watch::channel(None);
    let mut handoffs = Vec::with_capacity(count);
    let mut inboxes = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, rx) = mpsc::unbounded_channel();
        handoffs.push(tx);
        inboxes.push(rx);
    }
    let mut listener = Some((listener, handoffs));
    let mut finished = Vec::with_capacity(count);
    for (i, inbox) in inboxes.into_iter().enumerate() {
        let (done, gone) = oneshot::channel::<()>();
        finished.push(gone);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The first worker accepts; its listener is registered with its
        // runtime here, so that a failure is the caller's error.
        let accept = match listener.take() {
            Some((listener, handoffs)) => {
                let _entered = runtime.enter();
                Some((tokio::net::TcpListener::from_std(listener)?, handoffs))
            }
            None => None,
        };
        let workers = workers.clone();
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name(format!("gateway-worker-{i}"))
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    if let Some((listener, handoffs)) = accept {
                        tokio::task::spawn_local(accept_loop(listener, handoffs, stopping.clone()));
                    }
                    work(inbox, stopping, workers, shutdown_timeout).await;
                });
                drop(local);
                // Blocking work still running (a DNS look-up) is not waited
                // for past the shutdown timeout.
                runtime.shutdown_timeout(shutdown_timeout);
                let _ = done.send(());
            })?;
    }
    Ok(Box::new(move |graceful| {
        Box::pin(async move {
            let _ = stop.send(Some(graceful));
            for gone in finished {
                let _ = gone.await;
            }
        })
    }))
}

/// Accepts connections and hands them to the workers in turn, until asked
/// to stop; the listener then closes.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    mut handoffs: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    mut stopping: StopSignal,
) {
    let mut next = 0usize;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(mut stream) = stream.into_std() else { continue };
                    // A worker that has ended (it panicked) is skipped.
                    loop {
                        if handoffs.is_empty() {
                            tracing::error!("no worker is left to serve connections");
                            return;
                        }
                        let at = next % handoffs.len();
                        match handoffs[at].send(stream) {
                            Ok(()) => break,
                            Err(returned) => {
                                tracing::error!(worker = at, "a gateway worker has ended");
                                handoffs.remove(at);
                                stream = returned.0;
                            }
                        }
                    }
                    next = next.wrapping_add(1);
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to
                    // be freed rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopping.changed() => return,
        }
    }
}

/// A worker: serves the connections handed to it until asked to stop, then
/// gives those in flight `shutdown_timeout` to finish when stopping
/// gracefully.
async fn work(
    mut inbox: mpsc::UnboundedReceiver<std::net::TcpStream>,
    mut stopping: StopSignal,
    workers: Workers,
    shutdown_timeout: Duration,
) {
    let client = Rc::new(UpstreamClient::new(workers.connector, &workers.proxy));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            stream = inbox.recv() => match stream {
                Some(stream) if connections.len() >= MAX_CONNECTIONS_PER_WORKER => {
                    tracing::warn!(
                        limit = MAX_CONNECTIONS_PER_WORKER,
                        "a worker's connection limit is reached; a new connection is closed"
                    );
                    drop(stream);
                }
                Some(stream) => {
                    connections.spawn_local(connection(
                        stream,
                        workers.front.clone(),
                        client.clone(),
                        stopping.clone(),
                    ));
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopping.changed() => break,
        }
    }
    let graceful = stopping.borrow().unwrap_or(false);
    if graceful {
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(shutdown_timeout, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                connections = connections.len(),
                "requests still running at the shutdown timeout are dropped"
            );
        }
    }
    connections.shutdown().await;
}

/// Serves one client connection.
async fn connection(
    stream: std::net::TcpStream,
    front: Arc<Front>,
    client: Rc<UpstreamClient>,
    mut stopping: StopSignal,
) {
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let asked = Rc::new(Cell::new(false));
    let service = {
        let asked = asked.clone();
        service_fn(move |req| {
            asked.set(true);
            let front = front.clone();
            let client = client.clone();
            async move { Ok::<_, std::convert::Infallible>(front.answer(req, peer, &client).await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(KEEP_ALIVE)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let first_request = tokio::time::sleep(FIRST_REQUEST_TIMEOUT);
    tokio::pin!(first_request);
    let mut waiting_for_first = true;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "client connection ended");
                }
                return;
            }
            () = &mut first_request, if waiting_for_first => {
                if !asked.get() {
                    tracing::debug!("no request within the first-request timeout");
                    return;
                }
                waiting_for_first = false;
            }
            _ = stopping.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.as_mut().await;
                return;
            }
        }
    }
}
