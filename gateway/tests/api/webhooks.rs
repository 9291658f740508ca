//! Webhooks end to end, through the gateway with every service running: a
//! booking made through the gateway reaches a local receiver as
//! `booking.created`, signed as SpaceOS signs (`X-Webhook-Signature`) and as
//! Standard Webhooks does (checked by Python's stock `standardwebhooks` too),
//! and the deliveries log shows the attempt.

use crate::platform::Platform;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use testkit::TestServer;

/// What a receiver got: its headers and raw body.
#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

type Inbox = Arc<Mutex<Vec<Received>>>;

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    inbox: web::Data<Mutex<Vec<Received>>>,
) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    inbox.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
    });
    HttpResponse::NoContent().finish()
}

/// A local receiver on loopback that answers 204 and keeps what it got.
fn receiver() -> (TestServer, Inbox) {
    let inbox: Inbox = Arc::default();
    let data = web::Data::from(inbox.clone());
    let spec = service_kit::AppSpec::new("receiver", move |cfg| {
        cfg.app_data(data.clone())
            .service(web::resource("/hooks/spaceos").post(receive));
    });
    (TestServer::start(spec), inbox)
}

/// Books a space through the gateway with a SpaceOS webhook registered for
/// `booking.created`; returns the subscription's secret, the delivery the
/// receiver got, the platform and the bearer token.
async fn deliver_a_booking() -> (String, Received, Platform, String, String) {
    let platform = Platform::with_booking().await;
    let (receiver, inbox) = receiver();
    let gw = &platform.gw;
    let signed_in = platform.sign_in("door-locks@example.com").await;
    let token = signed_in["access_token"].as_str().unwrap().to_owned();
    let bearer = |method: reqwest::Method, path: &str| {
        gw.client.request(method, gw.url(path)).bearer_auth(&token)
    };
    let org = gw
        .send(
            bearer(reqwest::Method::POST, "/api/v1/organizations").json(&json!({
                "name": "Acme", "slug": "acme-hooks", "timezone": "UTC",
            })),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let space = gw
        .send(
            bearer(reqwest::Method::POST, "/api/v1/meeting-spaces").json(&json!({
                "organization_id": org, "name": "Room", "slug": "room-hooks",
            })),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The webhooks page's registration.
    let url = receiver.url("/hooks/spaceos");
    let registered = gw
        .send(
            bearer(reqwest::Method::POST, "/api/v1/webhooks").json(&json!({
                "organization_id": org,
                "url": url,
                "events": ["booking.created", "booking.cancelled"],
            })),
        )
        .await;
    let webhook = registered.json();
    assert_eq!(registered.status, 201, "{webhook}");
    assert_eq!(webhook["success"], true);
    let secret = webhook["data"]["secret"].as_str().unwrap().to_owned();
    let webhook_id = webhook["data"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{webhook}");

    let day = (Utc::now() + Duration::days(2)).date_naive();
    let booked = gw
        .send(
            bearer(reqwest::Method::POST, "/api/v1/bookings").json(&json!({
                "meeting_space_id": space,
                "start_time": format!("{day}T10:00:00Z"),
                "end_time": format!("{day}T11:00:00Z"),
                "organizer_name": "John Doe",
                "organizer_email": "john@example.com",
            })),
        )
        .await;
    assert_eq!(booked.status, 201, "{}", booked.json());
    let booking = booked.json()["data"]["id"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + std::time::Duration::from_secs(15);
    let delivery = loop {
        if let Some(first) = inbox.lock().unwrap().first().cloned() {
            break first;
        }
        assert!(Instant::now() < deadline, "no delivery within 15 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["event"], "booking.created");
    assert_eq!(body["webhook_id"], webhook_id.as_str());
    assert_eq!(body["data"]["booking_id"], booking.as_str());
    assert_eq!(body["data"]["meeting_space_id"], space.as_str());
    assert_eq!(body["data"]["organization_id"], org.as_str());
    assert_eq!(
        body["data"]["organizer"],
        json!({"name": "John Doe", "email": "john@example.com"})
    );
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    drop(receiver);
    (secret, delivery, platform, token, webhook_id)
}

#[tokio::test]
async fn a_booking_reaches_a_receiver_signed_and_logged() {
    let (secret, delivery, platform, token, webhook_id) = deliver_a_booking().await;
    // SpaceOS: lowercase hex of HMAC-SHA256(secret, raw body).
    assert!(
        events_service::signatures::verify_product(
            &secret,
            &delivery.body,
            delivery.header("x-webhook-signature")
        ),
        "{delivery:?}"
    );
    // Standard Webhooks.
    events_service::signatures::verify_standard(
        &secret,
        delivery.header("webhook-id"),
        delivery.header("webhook-timestamp"),
        &delivery.body,
        delivery.header("webhook-signature"),
        Utc::now().timestamp(),
    )
    .unwrap();
    // The deliveries log, through the gateway: the attempt is recorded once
    // events-service has read the receiver's answer, just after the receiver
    // saw the request.
    let gw = &platform.gw;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = gw
            .send(
                gw.client
                    .get(gw.url(&format!("/api/v1/webhooks/{webhook_id}/deliveries")))
                    .bearer_auth(&token),
            )
            .await
            .json();
        if log["data"][0]["status"] == "succeeded" || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(log["success"], true, "{log}");
    let deliveries = log["data"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{log}");
    assert_eq!(deliveries[0]["event"], "booking.created");
    assert_eq!(deliveries[0]["status"], "succeeded", "{log}");
    let attempt = &deliveries[0]["attempts"][0];
    assert_eq!(attempt["response_status"], 204, "{log}");
    assert_eq!(attempt["outcome"], "succeeded", "{log}");
    assert!(attempt["attempted_at"].is_string() && attempt["duration_ms"].is_u64());
}

#[tokio::test]
async fn standard_webhooks_verifies_a_delivery_python() {
    let python = std::env::var("SPACEPORT_PYTHON").unwrap_or_else(|_| {
        panic!("SPACEPORT_PYTHON is not set: run `make interop-venv` (make test leaves this test out without it)")
    });
    let (secret, delivery, _platform, _token, _webhook) = deliver_a_booking().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let headers: serde_json::Map<String, Value> = delivery
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), Value::from(v.clone())))
        .collect();
    let saved = json!({
        "headers": headers,
        "body": String::from_utf8(delivery.body.clone()).unwrap(),
    });
    std::fs::write(file.path(), saved.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../services/events-service/tests/interop/verify_webhook.py"
    );
    let run = |secret: String| {
        let (python, path) = (python.clone(), file.path().to_owned());
        std::process::Command::new(python)
            .arg(script)
            .arg(secret)
            .arg(path)
            .output()
            .expect("run python")
    };
    let verified = run(secret.clone());
    assert!(
        verified.status.success(),
        "standardwebhooks refused the delivery:\n{}\n{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let answer: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(answer["event"], "booking.created");
    // Another secret does not verify it: the check can fail.
    let other = format!("whsec_{}", "A".repeat(43));
    assert!(!run(other).status.success());
}
