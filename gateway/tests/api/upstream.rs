//! An upstream that reports what it received.

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use service_kit::AppSpec;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use testkit::TestServer;

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub struct Echo {
    pub server: TestServer,
    hits: Arc<AtomicUsize>,
}

impl Echo {
    pub fn start() -> Echo {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = web::Data::from(hits.clone());
        let spec = AppSpec::new("echo", move |cfg| {
            cfg.app_data(counter.clone())
                .service(web::resource("/echo/big").get(big).head(big))
                .service(web::resource("/echo/{tail:.*}").to(echo));
        });
        Echo {
            server: TestServer::start(spec),
            hits,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn echo(
    req: HttpRequest,
    mut payload: web::Payload,
    hits: web::Data<AtomicUsize>,
) -> HttpResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    let mut len = 0u64;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.expect("body chunk");
        len += chunk.len() as u64;
        for b in chunk.iter() {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        headers.insert(name.to_string(), value.to_str().unwrap_or("").into());
    }
    HttpResponse::Ok().json(serde_json::json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers,
        "body_len": len,
        "body_fnv": if len == 0 { 0xcbf2_9ce4_8422_2325u64 } else { hash },
    }))
}

#[derive(serde::Deserialize)]
struct Size {
    size: usize,
}

async fn big(query: web::Query<Size>, hits: web::Data<AtomicUsize>) -> HttpResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    let body: Vec<u8> = (0..query.size).map(|i| (i % 251) as u8).collect();
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(body)
}

/// What verifies the gateway's identity tokens for the `booking` upstream (the
/// echo server stands behind that name in these tests).
pub fn booking_verifier() -> identity::IdentityVerifier {
    identity::IdentityVerifier::new(
        "booking-service",
        identity::PublicKeys::from_pem_bundle(&testkit::identity::public_pem()).unwrap(),
    )
}

/// The identity the gateway told the echo upstream about.
pub fn identity_seen(response: &testkit::TestResponse) -> identity::Identity {
    let token = response.json()["headers"]["x-spaceport-identity"]
        .as_str()
        .expect("an identity token reached the upstream")
        .to_owned();
    booking_verifier()
        .verify(&token)
        .expect("a valid identity token")
}
