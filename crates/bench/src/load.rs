//! Closed-loop load: a fixed number of workers, each sending its next request
//! as soon as the previous answer is read, for a fixed time. Every bench
//! drives its workload through [`run`]; what a request is, and what counts as
//! its success, is the worker's.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One client of a closed loop: it sends a request and reads the whole answer.
pub trait Worker: Send + 'static {
    fn request(&mut self) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Why a request did not count.
pub struct Failure {
    pub reason: String,
    /// The worker cannot go on (a refresh token chain is broken, say).
    pub fatal: bool,
}

impl Failure {
    pub fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            fatal: false,
        }
    }

    /// A failed send or a body that could not be read.
    pub fn transport(e: &reqwest::Error) -> Failure {
        Failure::new(if e.is_timeout() {
            "timeout".to_owned()
        } else if e.is_connect() {
            "connection refused".to_owned()
        } else {
            // reqwest's own message is generic: the cause says what happened.
            let mut reason = format!("transport: {e}");
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                reason.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            reason
        })
    }

    /// An answer with another status than the one expected.
    pub fn status(status: u16) -> Failure {
        Failure::new(format!("HTTP {status}"))
    }
}

/// Sends `request` and reads its whole answer, which must have the
/// `expected` status; the body, for the worker's own checks.
pub async fn answer(
    request: reqwest::RequestBuilder,
    expected: u16,
) -> Result<bytes::Bytes, Failure> {
    let response = request.send().await.map_err(|e| Failure::transport(&e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| Failure::transport(&e))?;
    if status != expected {
        return Err(Failure::status(status));
    }
    Ok(body)
}

/// A bench client's own HTTP/1.1 connection, driven on the worker's task.
///
/// It shares the cores with what it measures, so it does as little as a
/// closed-loop client can: one keep-alive connection (Nagle off), the
/// request built once and cloned, no pool, no URL parsing, and the
/// connection polled beside the request rather than on a task of its own
/// (no hand-over between tasks per request). A connection that fails or is
/// closed is replaced before the next request; the request it failed is
/// counted as failed.
pub struct Connection {
    authority: String,
    open: Option<Open>,
}

struct Open {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    connection: Pin<Box<hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
}

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Connection {
    /// A connection to `http://` `url`'s host and port (opened at the first
    /// request), and the request target every request then uses: its path
    /// and query, with the `Host` header the bench's requests send.
    pub fn to(url: &str) -> anyhow::Result<(Connection, Target)> {
        use anyhow::Context as _;
        let uri: hyper::Uri = url.parse().with_context(|| format!("the URL {url}"))?;
        if uri.scheme_str() != Some("http") {
            anyhow::bail!("the bench's client speaks plain http://, not {url}");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("the URL {url} has no host"))?
            .clone();
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".parse(), |pq| pq.as_str().parse())
            .with_context(|| format!("the URL {url}"))?;
        let host = HeaderValue::from_str(authority.as_str()).context("the URL's host")?;
        Ok((
            Connection {
                authority: authority.as_str().to_owned(),
                open: None,
            },
            Target { path, host },
        ))
    }

    /// Sends `request` and reads its whole answer, which must have the
    /// `expected` status; the body, for the worker's own checks.
    pub async fn answer(
        &mut self,
        request: Request<Full<Bytes>>,
        expected: u16,
    ) -> Result<Bytes, Failure> {
        // `exchange` holds the connection while it runs and puts it back only
        // after a whole answer: a failed or timed-out request leaves none.
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| Failure::new("timeout"))??;
        if status != expected {
            return Err(Failure::status(status));
        }
        Ok(body)
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), Failure> {
        let still_open = self
            .open
            .take()
            .and_then(|mut open| (!open.is_done()).then_some(open));
        let Open {
            mut sender,
            mut connection,
        } = match still_open {
            Some(open) => open,
            None => Open::connect(&self.authority).await?,
        };
        let (answered, connection) = {
            let mut exchange = std::pin::pin!(answer_of(&mut sender, request));
            let first = tokio::select! {
                biased;
                answer = &mut exchange => First::Answer(answer),
                ended = connection.as_mut() => First::End(ended),
            };
            match first {
                First::Answer(answer) => (answer, Some(connection)),
                // The connection can end in the same poll that delivers its
                // last answer (read, then closed as the answer asked): that
                // answer is still there to be read. With the connection
                // dropped, a request it did not answer fails at once.
                First::End(ended) => {
                    drop(connection);
                    let answer = exchange.await.map_err(|e| match ended {
                        Ok(()) => Failure::new(format!("the server closed the connection: {e}")),
                        Err(ended) => Failure::new(format!("transport: {ended}")),
                    })?;
                    (Ok(answer), None)
                }
            }
        };
        let (status, body, closing) =
            answered.map_err(|e| Failure::new(format!("transport: {e}")))?;
        // A connection that ended, or that the server closes after this
        // answer, is not used again.
        if let Some(connection) = connection.filter(|_| !closing) {
            self.open = Some(Open { sender, connection });
        }
        Ok((status, body))
    }
}

/// What happened first on a connection: the answer, or its end.
enum First<A> {
    Answer(A),
    End(Result<(), hyper::Error>),
}

/// Sends `request` on `sender` and reads the whole answer: its status, its
/// body, and whether the server closes the connection after it.
async fn answer_of(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Bytes, bool), hyper::Error> {
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let closing = says_close(response.headers());
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body, closing))
}

/// Whether an answer's `Connection` header lists `close`.
fn says_close(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("close"))
}

impl Open {
    async fn connect(authority: &str) -> Result<Open, Failure> {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| Failure::new(format!("connect: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Failure::new(format!("connect: {e}")))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::new(format!("connect: {e}")))?;
        Ok(Open {
            sender,
            connection: Box::pin(connection),
        })
    }

    /// Whether the connection has ended (the server closed it after the
    /// last answer, say): polled once, without waiting.
    fn is_done(&mut self) -> bool {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        self.connection.as_mut().poll(&mut context).is_ready()
    }
}

/// Where a [`Connection`]'s requests go.
#[derive(Clone)]
pub struct Target {
    path: hyper::Uri,
    host: HeaderValue,
}

impl Target {
    /// A request to the target, with its `Host`.
    pub fn request(&self, method: Method, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.path.clone();
        request.headers_mut().insert(HOST, self.host.clone());
        request
    }
}

/// What a phase did.
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    /// Failures by reason.
    pub errors: BTreeMap<String, u64>,
    /// Workers that had to stop early, with why.
    pub stopped: Vec<String>,
    /// Latency of every successful request, microseconds, sorted.
    latencies_us: Vec<u32>,
    /// From the start until the last worker's last answer.
    pub elapsed: Duration,
}

impl Tally {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Failed requests over all requests.
    pub fn error_ratio(&self) -> f64 {
        let all = self.ok + self.failed();
        if all == 0 {
            1.0
        } else {
            self.failed() as f64 / all as f64
        }
    }

    /// Successful requests of the given latencies, over `elapsed`.
    pub fn of(latencies: Vec<Duration>, elapsed: Duration) -> Tally {
        let mut latencies_us: Vec<u32> = latencies
            .iter()
            .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
            .collect();
        latencies_us.sort_unstable();
        Tally {
            ok: latencies_us.len() as u64,
            latencies_us,
            elapsed,
            ..Tally::default()
        }
    }

    /// The `q` quantile (0–1) of successful requests' latency, nearest rank.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize).max(1);
        let us = self.latencies_us[rank.min(self.latencies_us.len()) - 1];
        Some(Duration::from_micros(u64::from(us)))
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        for (reason, n) in other.errors {
            *self.errors.entry(reason).or_default() += n;
        }
        self.stopped.extend(other.stopped);
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Runs every worker on its own task for `duration`; returns the workers
/// (one may hold state the next phase continues from) and what they did
/// together. The latency of each successful request is recorded.
pub async fn run<W: Worker>(workers: Vec<W>, duration: Duration) -> (Vec<W>, Tally) {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| tokio::spawn(work(worker, deadline)))
        .collect();
    let mut workers = Vec::with_capacity(tasks.len());
    let mut total = Tally::default();
    for task in tasks {
        let (worker, tally) = task.await.expect("a bench worker panicked");
        workers.push(worker);
        total.merge(tally);
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    (workers, total)
}

async fn work<W: Worker>(mut worker: W, deadline: Instant) -> (W, Tally) {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let sent = Instant::now();
        match worker.request().await {
            Ok(()) => {
                tally.ok += 1;
                let us = sent.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Err(failure) => {
                *tally.errors.entry(failure.reason.clone()).or_default() += 1;
                if failure.fatal {
                    tally.stopped.push(failure.reason);
                    break;
                }
                // Keep a failing service from being hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (worker, tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback HTTP/1.1 server: each answer is `status` with the body
    /// `ok`, and every `per_connection`th answer on a connection says
    /// `Connection: close` and closes it. Counts the connections it accepted.
    async fn server(status: u16, per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/bench/x", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    for answered in 1.. {
                        // A GET without a body: its head ends the request.
                        while !head.ends_with(b"\r\n\r\n") {
                            let mut byte = [0u8; 1];
                            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        assert!(head.starts_with(b"GET /bench/x HTTP/1.1\r\n"));
                        head.clear();
                        let close = answered % per_connection == 0;
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 2\r\n{}\r\nok",
                            if close { "connection: close\r\n" } else { "" }
                        );
                        stream.write_all(answer.as_bytes()).await.unwrap();
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_without_a_failure() {
        let (url, accepted) = server(200, 2).await;
        let (mut connection, target) = Connection::to(&url).unwrap();
        for _ in 0..5 {
            let body = connection
                .answer(target.request(Method::GET, Bytes::new()), 200)
                .await
                .map_err(|f| f.reason)
                .unwrap();
            assert_eq!(&body[..], b"ok");
        }
        // Two answers per connection: five requests took three connections.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn another_status_is_a_failure_and_the_connection_stays() {
        let (url, accepted) = server(503, 100).await;
        let (mut connection, target) = Connection::to(&url).unwrap();
        for _ in 0..3 {
            let failure = connection
                .answer(target.request(Method::GET, Bytes::new()), 200)
                .await
                .unwrap_err();
            assert_eq!(failure.reason, "HTTP 503");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_server_that_is_gone_is_a_failure_not_a_hang() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let (mut connection, target) = Connection::to(&url).unwrap();
        let failure = connection
            .answer(target.request(Method::GET, Bytes::new()), 200)
            .await
            .unwrap_err();
        assert!(
            failure.reason.starts_with("connect: "),
            "{}",
            failure.reason
        );
        assert!(Connection::to("https://127.0.0.1/").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let tally = Tally {
            ok: 100,
            latencies_us: (1..=100).collect(),
            elapsed: Duration::from_secs(2),
            ..Tally::default()
        };
        assert_eq!(tally.latency(0.5), Some(Duration::from_micros(50)));
        assert_eq!(tally.latency(0.99), Some(Duration::from_micros(99)));
        assert_eq!(tally.latency(1.0), Some(Duration::from_micros(100)));
        assert_eq!(tally.rate(), 50.0);
        assert_eq!(Tally::default().latency(0.5), None);
    }

    #[test]
    fn error_ratio_counts_every_failure() {
        let mut tally = Tally {
            ok: 99,
            ..Tally::default()
        };
        tally.errors.insert("HTTP 503".into(), 1);
        assert!((tally.error_ratio() - 0.01).abs() < 1e-9);
    }
}
