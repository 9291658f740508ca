//! Deliveries to a receiver on 127.0.0.1: bodies and signatures of both
//! families, retries on a shortened schedule, failing after the last one with
//! one mail to a real SMTP sink, a client's retry and test ping, reviving, and
//! a redelivered event delivered once.

use crate::helpers::{
    Receiver, TestEvents, admin, booking_created, eventually, new_organization, new_workspace,
    on_all_backends, on_both_databases, product_signature, verify_standard_webhook,
};
use events_service::signatures;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::{CacheKind, DbKind};

const WAIT: Duration = Duration::from_secs(15);

/// The `data` of the webhook `id` as the SpaceOS routes show it.
async fn webhook(app: &TestEvents, who: &identity::Identity, id: &str) -> Value {
    let read = app.get(who, &format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.json());
    read.json()["data"].clone()
}

on_all_backends!(events_reach_matching_receivers_signed, delivered);
async fn delivered(db: DbKind, cache: CacheKind) {
    let receiver = Receiver::start().await;
    let app = TestEvents::start_with(db, cache, |config| {
        config.webhooks.allow_private_targets = true;
    })
    .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let spaceos = app
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": format!("{}?family=spaceos", receiver.url),
                   "events": ["booking.created"]}),
        )
        .await;
    let spaceos_secret = spaceos["secret"].as_str().unwrap().to_owned();
    let gospace_secret = "a-secret-of-my-own-choosing";
    let gospace = app
        .post(
            &me,
            "/v1/webhooks/webhooks",
            json!({"endpoint": format!("{}?family=gospace", receiver.url),
                   "events": ["booking.created"], "secret": gospace_secret}),
        )
        .await;
    assert_eq!(gospace.status, 201, "{}", gospace.json());
    let gospace = gospace.json()["data"].clone();

    let event = booking_created(&workspace, &organization);
    app.publish(&app.streams.booking, &event).await;
    // Neither subscription hears another workspace, nor an event it did not
    // ask for; the SpaceOS one not another organization's (the gospace one
    // does: it is the workspace's).
    app.publish(
        &app.streams.booking,
        &booking_created(&new_workspace(), &organization),
    )
    .await;
    let mut cancelled = booking_created(&workspace, &organization);
    cancelled.event_type = "booking.cancelled".into();
    app.publish(&app.streams.booking, &cancelled).await;
    let elsewhere = booking_created(&workspace, &new_organization());
    app.publish(&app.streams.booking, &elsewhere).await;

    let received = receiver.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 3, "{received:?}");
    let to = |family: &str| {
        received
            .iter()
            .filter(|r| r.uri.ends_with(&format!("family={family}")))
            .cloned()
            .collect::<Vec<_>>()
    };
    let spaceos_received = to("spaceos");
    assert_eq!(spaceos_received.len(), 1);
    let delivery = &spaceos_received[0];

    // SpaceOS: the documented body and X-Webhook-Signature.
    assert_eq!(
        delivery.json(),
        json!({
            "event": "booking.created",
            "timestamp": service_kit::time::format_rfc3339(event.occurred_at),
            "webhook_id": spaceos["id"],
            "data": event.data,
        })
    );
    assert_eq!(delivery.header("content-type"), "application/json");
    assert_eq!(
        delivery.header("x-webhook-signature"),
        product_signature(&spaceos_secret, &delivery.body)
    );
    assert!(signatures::verify_product(
        &spaceos_secret,
        &delivery.body,
        delivery.header("x-webhook-signature")
    ));
    assert!(!delivery.headers.contains_key("x-gospace-signature"));
    // Standard Webhooks, by the specification and by the service's verifier.
    verify_standard_webhook(&spaceos_secret, delivery).unwrap();
    signatures::verify_standard(
        &spaceos_secret,
        delivery.header("webhook-id"),
        delivery.header("webhook-timestamp"),
        &delivery.body,
        delivery.header("webhook-signature"),
        chrono::Utc::now().timestamp(),
    )
    .unwrap();
    assert!(verify_standard_webhook("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", delivery).is_err());
    let delivery_id = delivery.header("webhook-id").to_owned();
    assert!(delivery_id.starts_with("dlv_"), "{delivery_id}");

    // gospace: its body, x-gospace-signature, and the client's secret's
    // bytes as the Standard Webhooks key.
    let gospace_received = to("gospace");
    assert_eq!(gospace_received.len(), 2);
    let first = gospace_received
        .iter()
        .find(|r| r.json()["payload"] == event.data)
        .expect("the organization's event");
    assert_eq!(
        first.json(),
        json!({
            "event": "booking.created",
            "workspace_id": workspace,
            "request_id": event.request_id,
            "payload": event.data,
        })
    );
    for delivery in &gospace_received {
        assert_eq!(
            delivery.header("x-gospace-signature"),
            product_signature(gospace_secret, &delivery.body)
        );
        assert!(!delivery.headers.contains_key("x-webhook-signature"));
        verify_standard_webhook(gospace_secret, delivery).unwrap();
    }

    // The deliveries log shows the attempt.
    let log = app.deliveries(&me, spaceos["id"].as_str().unwrap()).await;
    assert_eq!(log.len(), 1, "{log:?}");
    let entry = &log[0];
    assert_eq!(entry["id"], delivery_id.as_str());
    assert_eq!(entry["event_id"], event.id.as_str());
    assert_eq!(entry["event"], "booking.created");
    assert_eq!(entry["webhook_id"], spaceos["id"]);
    assert_eq!(entry["status"], "succeeded");
    assert!(entry["next_attempt_at"].is_null());
    let attempts = entry["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["number"], 1);
    assert_eq!(attempts[0]["response_status"], 200);
    assert_eq!(attempts[0]["response_body"], "answered 200");
    assert_eq!(attempts[0]["outcome"], "succeeded");
    assert!(attempts[0]["error"].is_null());
    assert!(attempts[0]["duration_ms"].as_i64().unwrap() >= 0);
    assert!(attempts[0]["attempted_at"].as_str().unwrap().ends_with('Z'));

    // A test event, in the gospace shape for a gospace webhook.
    let gospace_id = gospace["id"].as_str().unwrap();
    let ping = app
        .post(
            &me,
            &format!("/api/v1/webhooks/{gospace_id}/test"),
            json!({}),
        )
        .await;
    assert_eq!(ping.status, 202, "{}", ping.json());
    assert_eq!(ping.json()["data"]["event"], "ping");
    assert_eq!(ping.json()["data"]["status"], "pending");
    let received = receiver.wait_for(4, WAIT).await;
    let ping = received.last().unwrap();
    assert_eq!(ping.json()["event"], "ping");
    assert_eq!(ping.json()["workspace_id"], workspace.as_str());
    assert_eq!(ping.json()["payload"]["webhook_id"], gospace_id);
    verify_standard_webhook(gospace_secret, ping).unwrap();

    // What was counted: the receiver may see the last attempt before the
    // dispatcher has read its answer and counted it.
    let metrics = eventually(WAIT, "the four attempts to be counted", || async {
        let metrics = String::from_utf8(app.server.get("/metrics").await.body).unwrap();
        metrics
            .lines()
            .any(|l| {
                l.starts_with("webhook_deliveries_total{")
                    && l.contains("outcome=\"succeeded\"")
                    && l.ends_with(" 4")
            })
            .then_some(metrics)
    })
    .await;
    for family in [
        "events_consumed_total{",
        "webhook_deliveries_total{",
        "webhook_attempt_duration_seconds_bucket{",
        "webhook_subscriptions_failing{",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("webhook_deliveries_total{")
                && l.contains("outcome=\"succeeded\"")
                && l.ends_with(" 4")),
        "{metrics}"
    );
}

on_all_backends!(a_failing_receiver_is_retried_on_the_schedule, recovered);
async fn recovered(db: DbKind, cache: CacheKind) {
    let receiver = Receiver::answering(&[500, 503], 200).await;
    let app = TestEvents::start_with(db, cache, |config| {
        config.webhooks.allow_private_targets = true;
        config.webhooks.retry_schedule_secs = "1,1,1".into();
    })
    .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let hook = app
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": receiver.url, "events": ["booking.created"]}),
        )
        .await;
    app.publish(
        &app.streams.booking,
        &booking_created(&workspace, &organization),
    )
    .await;
    let received = receiver.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 3, "no attempt after a success");
    // The same delivery each time, about a second apart (±10%).
    let id = received[0].header("webhook-id");
    for pair in received.windows(2) {
        assert_eq!(pair[1].header("webhook-id"), id);
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(850) && gap < Duration::from_secs(10),
            "{gap:?}"
        );
    }
    let log = app.deliveries(&me, hook["id"].as_str().unwrap()).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "succeeded");
    let attempts = log[0]["attempts"].as_array().unwrap();
    let outcomes: Vec<(&Value, &Value)> = attempts
        .iter()
        .map(|a| (&a["response_status"], &a["outcome"]))
        .collect();
    assert_eq!(
        outcomes,
        [
            (&json!(500), &json!("retrying")),
            (&json!(503), &json!("retrying")),
            (&json!(200), &json!("succeeded")),
        ]
    );
    assert_eq!(attempts[0]["error"], "the receiver answered 500");
    assert!(attempts[0]["next_attempt_at"].is_string());
    assert!(attempts[2]["next_attempt_at"].is_null());
    assert_eq!(
        webhook(&app, &me, hook["id"].as_str().unwrap()).await["status"],
        "active"
    );
}

on_all_backends!(
    after_the_last_retry_the_webhook_fails_and_one_mail_goes_out,
    failing
);
async fn failing(db: DbKind, cache: CacheKind) {
    let sink = mail::sink::SmtpSink::start().await;
    let receiver = Receiver::answering(&[], 500).await;
    let app = TestEvents::start_with(db, cache, |config| {
        config.webhooks.allow_private_targets = true;
        config.webhooks.retry_schedule_secs = "1,1".into();
        config.mail.url = service_kit::config::Secret::new(sink.url());
    })
    .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let hook = app
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": receiver.url,
                   "events": ["booking.created", "booking.cancelled"],
                   "notify_email": "admin@example.com"}),
        )
        .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    app.publish(
        &app.streams.booking,
        &booking_created(&workspace, &organization),
    )
    .await;
    receiver.wait_for(3, WAIT).await;
    let failing = eventually(WAIT, "the webhook to fail", || async {
        let hook = webhook(&app, &me, &id).await;
        (hook["status"] == "failing").then_some(hook)
    })
    .await;
    assert!(failing["failing_since"].is_string());
    let log = app.deliveries(&me, &id).await;
    assert_eq!(log[0]["status"], "failed");
    let outcomes: Vec<&str> = log[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retrying", "retrying", "failed"]);
    let delivery_id = log[0]["id"].as_str().unwrap().to_owned();

    // One mail, to the webhook's notify_email, over SMTP.
    let mail = sink
        .wait_for("admin@example.com", WAIT)
        .await
        .expect("a mail about the failing webhook");
    assert!(
        mail.subject().unwrap().contains(&id),
        "{:?}",
        mail.subject()
    );
    let text = mail.body_text();
    assert!(text.contains(&receiver.url), "{text}");
    assert!(text.contains("\"enabled\": true"), "{text}");
    assert!(text.contains("the receiver answered 500"), "{text}");

    // While failing: new events are not delivered to it, nobody is mailed again.
    let mut cancelled = booking_created(&workspace, &organization);
    cancelled.event_type = "booking.cancelled".into();
    app.publish(&app.streams.booking, &cancelled).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(app.deliveries(&me, &id).await.len(), 1);
    assert_eq!(sink.messages().len(), 1, "exactly one mail");
    let metrics = String::from_utf8(app.server.get("/metrics").await.body).unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("webhook_deliveries_total{")
            && l.contains("outcome=\"failed\"")),
        "{metrics}"
    );

    // A test ping still goes to a failing webhook (and leaves it failing).
    receiver.answer(200);
    let ping = app
        .post(&me, &format!("/api/v1/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(ping.status, 202, "{}", ping.json());
    let received = receiver.wait_for(4, WAIT).await;
    assert_eq!(received[3].json()["event"], "ping");
    assert_eq!(received[3].json()["webhook_id"], id.as_str());
    assert_eq!(received[3].json()["data"]["webhook_id"], id.as_str());

    // A client's retry of the failed delivery: once more, same webhook-id.
    let retried = app
        .post(
            &me,
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(retried.status, 202, "{}", retried.json());
    assert_eq!(retried.json()["data"]["status"], "pending");
    assert_eq!(
        retried.json()["data"]["attempts"].as_array().unwrap().len(),
        3
    );
    let received = receiver.wait_for(5, WAIT).await;
    assert_eq!(received[4].header("webhook-id"), delivery_id);
    let retried = eventually(WAIT, "the retry to be recorded", || async {
        let log = app.deliveries(&me, &id).await;
        log.into_iter()
            .find(|d| d["id"] == delivery_id.as_str() && d["status"] == "succeeded")
    })
    .await;
    assert_eq!(retried["attempts"].as_array().unwrap().len(), 4);
    assert_eq!(webhook(&app, &me, &id).await["status"], "failing");
    app.post(
        &me,
        &format!("/api/v1/webhooks/{id}/deliveries/dlv_01JAAAAAAAAAAAAAAAAAAAAAAA/retry"),
        json!({}),
    )
    .await
    .assert_error(404, "not_found");

    // `enabled: true` revives it: new events are delivered again.
    let revived = app
        .patch(
            &me,
            &format!("/api/v1/webhooks/{id}"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(revived.json()["data"]["status"], "active");
    assert!(revived.json()["data"]["failing_since"].is_null());
    app.publish(
        &app.streams.booking,
        &booking_created(&workspace, &organization),
    )
    .await;
    receiver.wait_for(6, WAIT).await;
    assert_eq!(sink.messages().len(), 1);
}

on_all_backends!(a_redelivered_event_is_delivered_once, deduplicated);
async fn deduplicated(db: DbKind, cache: CacheKind) {
    let receiver = Receiver::start().await;
    let app = TestEvents::start_with(db, cache, |config| {
        config.webhooks.allow_private_targets = true;
    })
    .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let hook = app
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": receiver.url, "events": ["booking.created"]}),
        )
        .await;
    let event = booking_created(&workspace, &organization);
    // The relay published it twice (a crash between XADD and marking the row).
    app.publish(&app.streams.booking, &event).await;
    app.publish(&app.streams.booking, &event).await;
    receiver.wait_for(1, WAIT).await;
    let metrics = eventually(WAIT, "both copies consumed", || async {
        let text = String::from_utf8(app.server.get("/metrics").await.body).unwrap();
        text.lines()
            .any(|l| l.starts_with("events_consumed_total{") && l.contains("outcome=\"duplicate\""))
            .then_some(text)
    })
    .await;
    assert!(metrics.contains("outcome=\"stored\""), "{metrics}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        app.deliveries(&me, hook["id"].as_str().unwrap())
            .await
            .len(),
        1
    );
}

on_both_databases!(redirects_fail_and_long_answers_are_kept_truncated, bounded);
async fn bounded(db: DbKind) {
    let receiver = Receiver::answering(&[302], 200).await;
    receiver.answer_with("x".repeat(100 * 1024));
    let app = TestEvents::start_with(db, CacheKind::Memory, |config| {
        config.webhooks.allow_private_targets = true;
        config.webhooks.retry_schedule_secs = "1".into();
    })
    .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let hook = app
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": receiver.url, "events": ["booking.created"]}),
        )
        .await;
    app.publish(
        &app.streams.booking,
        &booking_created(&workspace, &organization),
    )
    .await;
    // The redirect is an answer: its target (port 1) is never asked.
    receiver.wait_for(2, WAIT).await;
    let log = eventually(WAIT, "the second attempt logged", || async {
        let log = app.deliveries(&me, hook["id"].as_str().unwrap()).await;
        (log[0]["status"] == "succeeded").then_some(log)
    })
    .await;
    let attempts = log[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["response_status"], 302);
    assert_eq!(attempts[0]["outcome"], "retrying");
    assert_eq!(attempts[0]["error"], "the receiver answered 302");
    assert_eq!(attempts[1]["response_status"], 200);
    assert_eq!(attempts[1]["response_truncated"], true);
    assert_eq!(
        attempts[1]["response_body"].as_str().unwrap().len(),
        events_service::dispatch::MAX_RESPONSE_BODY
    );
}

on_all_backends!(
    file_uploads_reach_the_space_webhooks_they_name,
    space_webhooks
);
async fn space_webhooks(db: DbKind, cache: CacheKind) {
    let receiver = Receiver::start().await;
    let app = TestEvents::start_with(db, cache, |config| {
        config.webhooks.allow_private_targets = true;
    })
    .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    // A gospace subscriber to file.uploaded hears it too, without the
    // receivers the event named for itself.
    let gospace = app
        .post(
            &me,
            "/v1/webhooks/webhooks",
            json!({"endpoint": format!("{}?family=gospace", receiver.url),
                   "events": ["file.uploaded"], "secret": "a-secret-of-my-own-choosing"}),
        )
        .await;
    assert_eq!(gospace.status, 201, "{}", gospace.json());
    let file = json!({
        "id": "01JH00000000000000000000AA", "name": "image-01JH", "original_name": "photo.jpg",
        "mime_type": "image/jpeg", "size": 245000, "storage_path": "abc123/image-01JH.jpg",
        "type": "upload", "resource_type": "image", "space_id": "01JH00000000000000000000BB",
    });
    let space_url = format!("{}?to=space", receiver.url);
    let config_url = format!("{}?to=config", receiver.url);
    let uploaded = |file: &Value| {
        ::events::Event::new(
            "spaces-service",
            "file.uploaded",
            file["id"].as_str().unwrap(),
            json!({"file": file, "webhook_urls": [space_url, config_url, space_url]}),
            None,
        )
        .with_workspace(&workspace)
    };
    app.publish(&app.streams.spaces, &uploaded(&file)).await;
    // Another workspace's upload naming the same URL is its own delivery,
    // and does not reach this workspace's gospace subscriber.
    let mut elsewhere = uploaded(&file);
    elsewhere.workspace_id = Some(new_workspace());
    app.publish(&app.streams.spaces, &elsewhere).await;

    let received = receiver.wait_for(5, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 5, "{received:?}");
    let to = |suffix: &str| {
        received
            .iter()
            .filter(|r| r.uri.ends_with(suffix))
            .collect::<Vec<_>>()
    };
    // Tuzzle's body, once per named URL and workspace; no product signature.
    for suffix in ["to=space", "to=config"] {
        let deliveries = to(suffix);
        assert_eq!(deliveries.len(), 2, "{suffix}: {received:?}");
        for delivery in deliveries {
            assert_eq!(
                delivery.json(),
                json!({"event": "file.uploaded", "file": file})
            );
            assert!(delivery.header("webhook-id").starts_with("dlv_"));
            assert!(!delivery.headers.contains_key("x-webhook-signature"));
            assert!(!delivery.headers.contains_key("webhook-signature"));
        }
    }
    let gospace_received = to("family=gospace");
    assert_eq!(gospace_received.len(), 1);
    assert_eq!(
        gospace_received[0].json()["payload"],
        json!({"file": file}),
        "the event's own receivers are not shown to subscribers"
    );
    // The space webhooks are no subscriptions a client sees.
    let listed = app.get(&me, "/v1/webhooks/webhooks").await;
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);
}
