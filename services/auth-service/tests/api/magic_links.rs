//! Magic links (`POST /v1/auth/login`, `POST /v1/auth/verify`).

use crate::helpers::{TestAuth, extract_code};
use std::time::Duration;
use testkit::{DbKind, db_test};

fn link_in(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.contains("token=ml_"))
        .expect("a link in the mail")
        .to_owned()
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

db_test!(magic_links_sign_in_once, sign_in_by_link);
async fn sign_in_by_link(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| {
        c.magic_links.allowed_redirect_uris = vec!["https://app.example.com/auth/".into()];
    })
    .await;
    let sent = auth
        .post_json(
            "/v1/auth/login",
            serde_json::json!({"email": "link@example.com", "redirect_uri": "https://app.example.com/auth/done?x=1"}),
        )
        .await;
    assert_eq!(sent.status, 200, "{:?}", sent.json());
    let mail = auth
        .sink
        .wait_for("link@example.com", Duration::from_secs(5))
        .await
        .unwrap();
    let body = mail.body_text();
    let link = link_in(&body);
    assert!(
        link.starts_with("https://app.example.com/auth/done?x=1&token=ml_"),
        "{link}"
    );
    let code = extract_code(&body).expect("the code is in the same mail");

    let signed_in = auth
        .post_json(
            "/v1/auth/verify",
            serde_json::json!({"token": token_of(&link)}),
        )
        .await;
    assert_eq!(signed_in.status, 200, "{:?}", signed_in.json());
    let data = signed_in.json()["data"].clone();
    assert_eq!(data["user"]["email"], "link@example.com");
    // As gospace's refresh answer names the person.
    assert_eq!(data["user"]["user_id"], data["user"]["id"]);
    assert!(service_kit::ids::is_valid(
        "usr",
        data["user"]["user_id"].as_str().unwrap()
    ));
    auth.claims(data["access_token"].as_str().unwrap()).await;

    // One challenge, one use: neither the link nor the code works again.
    auth.post_json(
        "/v1/auth/verify",
        serde_json::json!({"token": token_of(&link)}),
    )
    .await
    .assert_error(401, "unauthorized");
    auth.post_json(
        "/v1/auth/verify",
        serde_json::json!({"email": "link@example.com", "code": code}),
    )
    .await
    .assert_error(401, "unauthorized");
}

db_test!(the_code_of_a_link_mail_works_too, code_from_link_mail);
async fn code_from_link_mail(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    assert_eq!(
        auth.post_json(
            "/v1/auth/login",
            serde_json::json!({"email": "c@example.com"})
        )
        .await
        .status,
        200
    );
    let mail = auth
        .sink
        .wait_for("c@example.com", Duration::from_secs(5))
        .await
        .unwrap();
    let body = mail.body_text();
    assert!(
        link_in(&body).starts_with("http://localhost:8080/auth/magic-link?token=ml_"),
        "default page"
    );
    let code = extract_code(&body).unwrap();
    let signed_in = auth
        .post_json(
            "/v1/auth/verify",
            serde_json::json!({"email": "c@example.com", "code": code}),
        )
        .await;
    assert_eq!(signed_in.status, 200);
    // The link of a consumed challenge is dead.
    auth.post_json(
        "/v1/auth/verify",
        serde_json::json!({"token": token_of(&link_in(&body))}),
    )
    .await
    .assert_error(401, "unauthorized");
}

db_test!(magic_link_input_is_checked, bad_input);
async fn bad_input(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| {
        c.magic_links.allowed_redirect_uris = vec!["https://app.example.com/auth/".into()];
    })
    .await;
    for evil in [
        "https://evil.example/auth/",
        "https://app.example.com.evil.example/auth/",
        "https://app.example.com/elsewhere",
        "javascript:alert(1)",
    ] {
        let r = auth
            .post_json(
                "/v1/auth/login",
                serde_json::json!({"email": "a@example.com", "redirect_uri": evil}),
            )
            .await
            .assert_error(422, "validation_failed");
        assert_eq!(r["error"]["details"][0]["path"], "redirect_uri", "{evil}");
    }
    assert!(
        auth.sink.messages().is_empty(),
        "nothing is mailed for a refused redirect"
    );
    for body in [
        serde_json::json!({}),
        serde_json::json!({"token": "ml_x", "email": "a@example.com", "code": "123456"}),
        serde_json::json!({"email": "a@example.com"}),
    ] {
        auth.post_json("/v1/auth/verify", body)
            .await
            .assert_error(422, "validation_failed");
    }
    for token in [
        "ml_forged",
        "not-a-token",
        &format!("ml_{}", "A".repeat(200)),
    ] {
        auth.post_json("/v1/auth/verify", serde_json::json!({"token": token}))
            .await
            .assert_error(401, "unauthorized");
    }
}
