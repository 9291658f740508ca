//! Sign-in by one-time code, and its limits.

use crate::helpers::{TestAuth, extract_code};
use identity::{PrincipalType, ScopeSet};
use std::time::Duration;
use testkit::{DbKind, db_test};

db_test!(otp_sign_in_creates_user_and_workspace, sign_in_flow);
async fn sign_in_flow(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| c.otp.resend_interval_secs = 1).await;
    let response = auth.request_code("  Ops@Example.COM ").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["data"]["expires_in"], 600);
    let mail = auth
        .sink
        .wait_for("ops@example.com", Duration::from_secs(5))
        .await
        .expect("the code is mailed to the normalized address");
    let code = extract_code(&mail.body_text()).expect("a six-digit code in the mail");

    let signed_in = auth.verify("ops@example.com", &code).await;
    assert_eq!(signed_in.status, 200, "{:?}", signed_in.json());
    let data = &signed_in.json()["data"];
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(data["expires_in"], 3600);
    assert_eq!(data["user"]["email"], "ops@example.com");
    // As gospace's refresh answer names the person.
    assert_eq!(data["user"]["user_id"], data["user"]["id"]);
    assert!(service_kit::ids::is_valid(
        "usr",
        data["user"]["user_id"].as_str().unwrap()
    ));
    let user_id = data["user"]["id"].as_str().unwrap().to_owned();
    assert!(service_kit::ids::is_valid("usr", &user_id), "{user_id}");
    assert!(data["refresh_token"].as_str().unwrap().starts_with("rt_"));

    let claims = auth.claims(data["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.ptyp, PrincipalType::User);
    assert_eq!(claims.exp - claims.iat, 3600);
    assert!(claims.sid.as_deref().is_some_and(|s| s.starts_with("ses_")));
    let workspace = claims.wrk.clone().expect("the personal workspace");
    assert!(service_kit::ids::is_valid("wrk", &workspace));
    assert_eq!(
        claims.scopes(),
        ScopeSet::all(),
        "the owner of the personal workspace"
    );

    // The second sign-in finds the same person and workspace.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = auth.sign_in("OPS@example.com").await;
    assert_eq!(again["user"]["id"], user_id.as_str());
    let claims = auth.claims(again["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.wrk.as_deref(), Some(workspace.as_str()));
}

db_test!(codes_are_single_use, single_use);
async fn single_use(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let code = auth.code_for("a@example.com").await;
    assert_eq!(auth.verify("a@example.com", &code).await.status, 200);
    auth.verify("a@example.com", &code)
        .await
        .assert_error(401, "unauthorized");
    // Another address cannot use it either.
    auth.verify("b@example.com", &code)
        .await
        .assert_error(401, "unauthorized");
}

db_test!(wrong_guesses_burn_the_code, wrong_guesses);
async fn wrong_guesses(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let code = auth.code_for("a@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        auth.verify("a@example.com", wrong)
            .await
            .assert_error(401, "unauthorized");
    }
    // Five wrong guesses: the right code no longer works.
    auth.verify("a@example.com", &code)
        .await
        .assert_error(401, "unauthorized");
}

db_test!(a_new_code_replaces_the_previous_one, new_code_replaces);
async fn new_code_replaces(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| c.otp.resend_interval_secs = 1).await;
    let first = auth.code_for("a@example.com").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = auth.code_for("a@example.com").await;
    if first != second {
        auth.verify("a@example.com", &first)
            .await
            .assert_error(401, "unauthorized");
    }
    assert_eq!(auth.verify("a@example.com", &second).await.status, 200);
}

db_test!(resend_is_throttled_per_email, resend_throttled);
async fn resend_throttled(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| {
        c.otp.resend_interval_secs = 1;
        c.otp.hourly_limit = 2;
    })
    .await;
    assert_eq!(auth.request_code("a@example.com").await.status, 200);
    let too_soon = auth.request_code("a@example.com").await;
    too_soon.assert_error(429, "rate_limited");
    assert!(too_soon.header("retry-after").is_some());
    // Another address is not affected.
    assert_eq!(auth.request_code("b@example.com").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(auth.request_code("a@example.com").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The hourly cap (2) holds even with the interval respected.
    auth.request_code("a@example.com")
        .await
        .assert_error(429, "rate_limited");
}

db_test!(failed_guesses_are_budgeted_across_codes, failure_budget);
async fn failure_budget(kind: DbKind) {
    let auth = TestAuth::start_with(kind, |c| {
        c.otp.failed_guess_budget = 3;
        c.otp.resend_interval_secs = 1;
    })
    .await;
    let first = auth.code_for("a@example.com").await;
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..3 {
        auth.verify("a@example.com", wrong)
            .await
            .assert_error(401, "unauthorized");
    }
    // A new code does not buy more guesses: even the right one is refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = auth.code_for("a@example.com").await;
    auth.verify("a@example.com", &second)
        .await
        .assert_error(429, "rate_limited");
}

// SpaceOS answers invalid input with 400 `Validation failed` and the fields.
db_test!(bad_input_is_400, bad_input);
async fn bad_input(kind: DbKind) {
    let auth = TestAuth::start(kind).await;
    let r = auth
        .request_code("not-an-email")
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(r["message"], "Validation failed");
    assert_eq!(r["errors"][0]["field"], "email");
    let r = auth
        .post_json(
            "/api/v1/auth/otp/request",
            serde_json::json!({"mail": "a@example.com"}),
        )
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(r["errors"][0]["field"], "mail");
    let r = auth
        .verify("a@example.com", "12345")
        .await
        .assert_error(400, "validation_failed");
    assert_eq!(r["errors"][0]["field"], "otp");
    auth.verify("a@example.com", "12a456")
        .await
        .assert_error(400, "validation_failed");
    // An address with a header injection attempt never reaches the mailer.
    auth.request_code("a@example.com\r\nBcc: x@evil.test")
        .await
        .assert_error(400, "validation_failed");
    assert!(auth.sink.messages().is_empty());
}
