//! Receivers that would reach the platform's own network are refused at
//! registration unless private targets are allowed: internal addresses in any
//! spelling, internal names, and names that resolve to internal addresses.

use crate::helpers::{Start, admin, new_organization, new_workspace, on_both_databases};
use serde_json::json;
use testkit::{CacheKind, DbKind};

/// Names that resolve to internal addresses, as `127.0.0.1.nip.io` does.
fn rebinding_names() -> outbound::FixedLookup {
    outbound::FixedLookup::new()
        .with("127.0.0.1.nip.io", &["127.0.0.1".parse().unwrap()])
        .with(
            "metadata.example.com",
            &["169.254.169.254".parse().unwrap()],
        )
        .with(
            "half.example.com",
            &[
                "93.184.216.34".parse().unwrap(),
                "10.0.0.7".parse().unwrap(),
            ],
        )
        .with("hooks.example.com", &["93.184.216.34".parse().unwrap()])
}

on_both_databases!(internal_receivers_are_refused_at_registration, refused);
async fn refused(kind: DbKind) {
    let app = Start::new(kind, CacheKind::Memory)
        .lookup(rebinding_names())
        .run(|_| {})
        .await;
    let me = admin(&new_workspace());
    let organization = new_organization();
    for url in [
        // The four.
        "http://127.0.0.1",
        "http://169.254.169.254",
        "http://10.0.0.1",
        "https://localhost/hooks",
        "https://127.0.0.1.nip.io/hooks",
        // And their relatives.
        "https://127.0.0.1/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://192.168.0.10/",
        "https://100.64.1.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fd00:ec2::254]/",
        "https://2130706433/",
        "https://0x7f.0.0.1/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://metadata.google.internal/",
        "https://metadata.example.com/",
        "https://half.example.com/",
        "https://user:password@hooks.example.com/",
        "http://hooks.example.com/",
    ] {
        let answer = app
            .post(
                &me,
                "/api/v1/webhooks",
                json!({"organization_id": organization, "url": url, "events": ["ping"]}),
            )
            .await;
        let body = answer.assert_error(400, "validation_failed");
        assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
        let gospace = app
            .post(
                &me,
                "/v1/webhooks/webhooks",
                json!({"endpoint": url, "events": ["ping"]}),
            )
            .await;
        let body = gospace.assert_error(422, "validation_failed");
        assert_eq!(
            body["error"]["details"][0]["path"], "endpoint",
            "{url}: {body}"
        );
    }
    let message = app
        .post(
            &me,
            "/api/v1/webhooks",
            json!({"organization_id": organization, "url": "https://127.0.0.1.nip.io/", "events": ["ping"]}),
        )
        .await
        .json();
    assert!(
        message["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("resolves to"),
        "{message}"
    );
    // A change is checked like a create.
    let hook = app
        .create_webhook(
            &me,
            json!({"organization_id": organization, "url": "https://hooks.example.com/", "events": ["ping"]}),
        )
        .await;
    let path = format!("/api/v1/webhooks/{}", hook["id"].as_str().unwrap());
    app.patch(&me, &path, json!({"url": "http://169.254.169.254/"}))
        .await
        .assert_error(400, "validation_failed");
}

on_both_databases!(private_receivers_are_allowed_when_configured, allowed);
async fn allowed(kind: DbKind) {
    let app = Start::new(kind, CacheKind::Memory)
        .lookup(rebinding_names())
        .run(|config| config.webhooks.allow_private_targets = true)
        .await;
    let me = admin(&new_workspace());
    for url in [
        "http://127.0.0.1:9/hooks",
        "http://10.0.0.1/",
        "http://localhost:8080/",
        "https://127.0.0.1.nip.io/",
    ] {
        let answer = app
            .post(
                &me,
                "/api/v1/webhooks",
                json!({"organization_id": new_organization(), "url": url, "events": ["ping"]}),
            )
            .await;
        assert_eq!(answer.status, 201, "{url}: {}", answer.json());
    }
    // Still a URL, still without credentials.
    for url in ["ftp://127.0.0.1/", "http://u:p@127.0.0.1/"] {
        app.post(
            &me,
            "/api/v1/webhooks",
            json!({"organization_id": new_organization(), "url": url, "events": ["ping"]}),
        )
        .await
        .assert_error(400, "validation_failed");
    }
}
