//! `https://` upstreams: verified against the system's CAs and `proxy.ca_file`.

use crate::gateway_with;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// An https server for `localhost` whose certificate a private CA signed;
/// it answers every request with `tls ok`. Returns its base URL and the CA's
/// PEM.
async fn private_https_upstream() -> (String, String) {
    service_kit::tls::ensure_provider();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::from_static(b"tls ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://localhost:{port}"), ca.pem())
}

#[tokio::test]
async fn https_upstreams_are_verified_against_proxy_ca_file() {
    let (base, ca_pem) = private_https_upstream().await;

    // The private CA trusted: proxied over TLS.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let trusting = gateway_with(&base, |c| {
        c.proxy.ca_file = ca_file.to_string_lossy().into_owned();
    })
    .await;
    let answer = trusting.get("/echo/anything").await;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert_eq!((answer.status, text.as_str()), (200, "tls ok"));
    trusting.stop().await;

    // The system's CAs alone: the certificate is refused, and the upstream is
    // unavailable (503), never reached in clear.
    let system_only = gateway_with(&base, |_| {}).await;
    system_only
        .get("/echo/anything")
        .await
        .assert_error(503, "service_unavailable");
    system_only.stop().await;
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let mut config = gateway::config::GatewayConfig::defaults();
    for (path, expected) in [
        (empty.to_string_lossy().into_owned(), "holds no certificate"),
        (
            dir.path()
                .join("missing.pem")
                .to_string_lossy()
                .into_owned(),
            "missing.pem",
        ),
    ] {
        config.proxy.ca_file = path;
        let error = config.proxy.extra_roots().unwrap_err().to_string();
        assert!(error.contains("proxy.ca_file"), "{error}");
        assert!(error.contains(expected), "{error}");
    }
}
