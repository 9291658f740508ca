//! The guarded client against a real server on 127.0.0.1: a name that resolves
//! there is refused at connect time (DNS rebinding), redirects are answers,
//! and with private targets allowed the same server is reached.

use outbound::{ClientOptions, FixedLookup, Guard, Policy};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every request with `response` and counts connections.
async fn server(response: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (port, connections)
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
const REDIRECT: &str = "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

fn guard(policy: Policy) -> Guard {
    Guard::with_lookup(
        policy,
        Arc::new(FixedLookup::new().with("rebound.example.com", &["127.0.0.1".parse().unwrap()])),
    )
}

fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn a_name_rebound_to_loopback_is_never_connected_to() {
    let (port, connections) = server(OK).await;
    let strict = guard(Policy::STRICT);
    let client = strict.client(&options()).unwrap();
    // It passed registration once (say it resolved publicly then); now it
    // resolves to loopback.
    let url = format!("https://rebound.example.com:{port}/hook");
    let error = client.post(&url).body("{}").send().await.unwrap_err();
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection was made"
    );
    // An http URL is refused by the client itself too.
    let plain = format!("http://rebound.example.com:{port}/hook");
    assert!(client.post(&plain).send().await.is_err());
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn with_private_targets_allowed_the_receiver_is_reached() {
    let (port, connections) = server(OK).await;
    let open = guard(Policy {
        allow_private: true,
    });
    let client = open.client(&options()).unwrap();
    let response = client
        .post(format!("http://rebound.example.com:{port}/hook"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redirects_are_answers_not_new_targets() {
    let (port, connections) = server(REDIRECT).await;
    let client = guard(Policy {
        allow_private: true,
    })
    .client(&options())
    .unwrap();
    let response = client
        .post(format!("http://127.0.0.1:{port}/hook"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
