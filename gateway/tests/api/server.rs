//! The gateway's own server: stopping gracefully, connection timeouts, head
//! limits; and what a request's framing becomes upstream.

use super::upstream::Echo;
use super::{gateway_with, raw_request};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream that answers each request `late` after reading its head.
fn slow_upstream(late: Duration) -> String {
    raw_upstream(late, b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate")
}

/// An upstream that answers each request with `answer`, `late` after
/// reading its head.
fn raw_upstream(late: Duration, answer: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                std::thread::sleep(late);
                let _ = stream.write_all(answer);
            });
        }
    });
    url
}

/// Sends one `GET path` on `stream` and reads the answer's status line and
/// body (the answer is small, with a Content-Length).
async fn exchange(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(stream).await
}

#[tokio::test]
async fn stopping_lets_a_request_in_flight_finish_then_refuses_connections() {
    let upstream = slow_upstream(Duration::from_millis(600));
    let gw = gateway_with(&upstream, |_| {}).await;
    let addr = gw.addr();
    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let answer = tokio::spawn(async move { exchange(&mut in_flight, "/echo/slow").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.stop().await;
    assert_eq!(answer.await.unwrap(), (200, "late".to_owned()));
    // The idle connection was closed, and nothing accepts new ones.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_connection_must_ask_within_the_first_request_timeout_and_may_idle_after() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;
    let mut silent = TcpStream::connect(gw.addr()).await.unwrap();
    let mut asked = TcpStream::connect(gw.addr()).await.unwrap();
    assert_eq!(exchange(&mut asked, "/healthz").await.0, 200);
    tokio::time::sleep(service_kit::server::FIRST_REQUEST_TIMEOUT + Duration::from_secs(1)).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // Idle as long, after a first request, is within the keep-alive.
    assert_eq!(exchange(&mut asked, "/echo/again").await.0, 200);
    gw.stop().await;
    echo.server.stop().await;
}

#[tokio::test]
async fn a_request_head_with_too_many_fields_is_refused() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;
    let fields: String = (0..120).map(|i| format!("x-field-{i}: {i}\r\n")).collect();
    let request = format!("GET /echo/x HTTP/1.1\r\nHost: gateway.test\r\n{fields}\r\n");
    let (status, answer) = raw_request(gw.addr(), &request).await;
    assert_eq!(status, 431, "{answer}");
    assert_eq!(echo.hits(), 0);
    gw.stop().await;
    echo.server.stop().await;
}

/// Reads an answer's status and body (small, with a Content-Length).
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .expect("a content-length");
        if body.len() >= length {
            let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            return (status, body.to_owned());
        }
    }
}

#[tokio::test]
async fn the_length_sent_upstream_is_the_bodys_own() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;
    // A GET's body is not forwarded, so neither is its Content-Length: the
    // upstream would read the next request on the connection as its body.
    let (status, body) = raw_request(
        gw.addr(),
        "GET /echo/get HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(seen["headers"].get("content-length").is_none(), "{seen}");
    assert_eq!(seen["body_len"], 0);
    // The upstream connection it went over serves the next request whole.
    for _ in 0..3 {
        let after = gw.get("/echo/after").await;
        assert_eq!(after.status, 200);
        assert_eq!(after.json()["path"], "/echo/after");
    }
    // An empty POST still says so; a body's length is its own.
    let (_, body) = raw_request(
        gw.addr(),
        "POST /echo/empty HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["content-length"], "0", "{seen}");
    let posted = gw
        .send(gw.client.post(gw.url("/echo/posted")).body(vec![7u8; 300]))
        .await;
    assert_eq!(posted.json()["headers"]["content-length"], "300");
    assert_eq!(posted.json()["body_len"], 300);
    gw.stop().await;
    echo.server.stop().await;
}

#[tokio::test]
async fn a_broken_request_body_is_the_clients_error_not_the_upstreams() {
    let echo = Echo::start();
    let gw = gateway_with(&echo.server.base, |_| {}).await;
    // A chunk size that is not hexadecimal, after a first good chunk.
    let (status, body) = raw_request(
        gw.addr(),
        "POST /echo/broken HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let failures = super::metric(
        &gw,
        "gateway_upstream_duration_seconds_count",
        "outcome=\"upstream\"",
    )
    .await;
    assert_eq!(failures, 0.0);
    gw.stop().await;
    echo.server.stop().await;
}

#[tokio::test]
async fn an_upstreams_bodiless_error_gets_the_envelope_and_its_status() {
    let upstream = raw_upstream(
        Duration::ZERO,
        b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 0\r\nx-upstream: kept\r\n\r\n",
    );
    let gw = gateway_with(&upstream, |_| {}).await;
    let answer = gw.get("/echo/x").await;
    let envelope = answer.json();
    assert_eq!(envelope["success"], false, "{envelope}");
    assert_eq!(envelope["status"], u64::from(answer.status), "{envelope}");
    assert_eq!(answer.header("x-upstream"), Some("kept"));
    gw.stop().await;
}

#[tokio::test]
async fn x_forwarded_proto_is_a_trusted_proxys_word_only() {
    let echo = Echo::start();
    let trusting = gateway_with(&echo.server.base, |c| {
        c.proxy.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let distrusting = gateway_with(&echo.server.base, |_| {}).await;
    for (gw, expected) in [(&trusting, "https"), (&distrusting, "http")] {
        let seen = gw
            .send(
                gw.client
                    .get(gw.url("/echo/proto"))
                    .header("x-forwarded-proto", "https"),
            )
            .await
            .json();
        assert_eq!(seen["headers"]["x-forwarded-proto"], expected);
    }
    // From a trusted proxy, anything but https is http.
    let seen = trusting
        .send(
            trusting
                .client
                .get(trusting.url("/echo/proto"))
                .header("x-forwarded-proto", "gopher"),
        )
        .await
        .json();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    trusting.stop().await;
    distrusting.stop().await;
    echo.server.stop().await;
}
