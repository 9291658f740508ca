//! Sign-in with Google and GitHub against an in-process fake provider (the one
//! thing that cannot run here), which checks the client, the redirect URI and
//! the PKCE verifier like a real one.

use crate::helpers::TestAuth;
use actix_web::{HttpRequest, HttpResponse, web};
use auth_service::config::ProviderConfig;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use service_kit::AppSpec;
use service_kit::config::Secret;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use testkit::reqwest::Method;
use testkit::{DbKind, TestServer, db_test};

#[derive(Clone)]
struct Approval {
    challenge: String,
    redirect_uri: String,
    email: String,
    verified: bool,
}

type Approvals = Arc<Mutex<HashMap<String, Approval>>>;

struct FakeProvider {
    server: TestServer,
    approvals: Approvals,
}

async fn token(
    form: web::Form<HashMap<String, String>>,
    approvals: web::Data<Mutex<HashMap<String, Approval>>>,
) -> HttpResponse {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let approval = approvals.lock().unwrap().remove(&get("code"));
    let ok = approval.as_ref().is_some_and(|a| {
        get("client_id") == "fake-client"
            && get("client_secret") == "fake-secret"
            && get("grant_type") == "authorization_code"
            && get("redirect_uri") == a.redirect_uri
            && URL_SAFE_NO_PAD.encode(Sha256::digest(get("code_verifier").as_bytes()))
                == a.challenge
    });
    match (ok, approval) {
        (true, Some(a)) => {
            let token = format!(
                "at-{}",
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&(a.email, a.verified)).unwrap())
            );
            HttpResponse::Ok()
                .json(serde_json::json!({"access_token": token, "token_type": "bearer"}))
        }
        _ => HttpResponse::BadRequest().json(serde_json::json!({"error": "invalid_grant"})),
    }
}

fn holder(req: &HttpRequest) -> Option<(String, bool)> {
    let token = req
        .headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer at-")?
        .to_owned();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token).ok()?).ok()
}

async fn userinfo(req: HttpRequest) -> HttpResponse {
    match holder(&req) {
        Some((email, verified)) => HttpResponse::Ok()
            .json(serde_json::json!({"sub": "1", "email": email, "email_verified": verified})),
        None => HttpResponse::Unauthorized().finish(),
    }
}

async fn github_emails(req: HttpRequest) -> HttpResponse {
    match holder(&req) {
        Some((email, verified)) => HttpResponse::Ok().json(serde_json::json!([
            {"email": "old@example.com", "primary": false, "verified": false},
            {"email": email, "primary": true, "verified": verified},
        ])),
        None => HttpResponse::Unauthorized().finish(),
    }
}

impl FakeProvider {
    fn start() -> FakeProvider {
        let approvals: Approvals = Arc::new(Mutex::new(HashMap::new()));
        let data = web::Data::from(approvals.clone());
        let server = TestServer::start(AppSpec::new("fake-provider", move |cfg| {
            cfg.app_data(data.clone())
                .service(web::resource("/token").post(token))
                .service(web::resource("/userinfo").get(userinfo))
                .service(web::resource("/user/emails").get(github_emails));
        }));
        FakeProvider { server, approvals }
    }

    fn config(&self, userinfo: &str) -> ProviderConfig {
        ProviderConfig {
            client_id: "fake-client".into(),
            client_secret: Secret::new("fake-secret"),
            authorize_url: "https://provider.example/authorize".into(),
            token_url: self.server.url("/token"),
            userinfo_url: self.server.url(userinfo),
            scope: "openid email".into(),
        }
    }

    /// The person approves: the provider will honour `code` for the challenge
    /// and redirect URI of this authorization request.
    fn approve(&self, authorize: &url::Url, code: &str, email: &str, verified: bool) -> String {
        let params: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
        self.approvals.lock().unwrap().insert(
            code.to_owned(),
            Approval {
                challenge: params["code_challenge"].clone(),
                redirect_uri: params["redirect_uri"].clone(),
                email: email.to_owned(),
                verified,
            },
        );
        params["state"].clone()
    }
}

async fn authorize(auth: &TestAuth, provider: &str) -> url::Url {
    let response = auth
        .server
        .send(
            auth.server
                .request(Method::GET, &format!("/v1/auth/login/{provider}")),
        )
        .await;
    assert_eq!(
        response.status,
        302,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    url::Url::parse(response.header("location").unwrap()).unwrap()
}

async fn callback(auth: &TestAuth, provider: &str, query: &str) -> testkit::TestResponse {
    auth.server
        .send(auth.server.request(
            Method::GET,
            &format!("/v1/auth/callback/{provider}?{query}"),
        ))
        .await
}

db_test!(google_sign_in_with_pkce, google);
async fn google(kind: DbKind) {
    let fake = FakeProvider::start();
    let config = fake.config("/userinfo");
    let auth = TestAuth::start_with(kind, move |c| c.social.google = config).await;
    let location = authorize(&auth, "google").await;
    assert_eq!(location.host_str(), Some("provider.example"));
    let params: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], "fake-client");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(
        params["redirect_uri"],
        "http://localhost:8080/v1/auth/callback/google"
    );
    assert_eq!(params["code_challenge"].len(), 43);

    let state = fake.approve(&location, "code-1", "Person@Example.com", true);
    let signed_in = callback(&auth, "google", &format!("code=code-1&state={state}")).await;
    assert_eq!(signed_in.status, 200, "{:?}", signed_in.json());
    let data = signed_in.json()["data"].clone();
    assert_eq!(data["user"]["email"], "person@example.com");
    // As gospace's refresh answer names the person.
    assert_eq!(data["user"]["user_id"], data["user"]["id"]);
    assert!(service_kit::ids::is_valid(
        "usr",
        data["user"]["user_id"].as_str().unwrap()
    ));
    auth.claims(data["access_token"].as_str().unwrap()).await;

    // The state is single use.
    callback(&auth, "google", &format!("code=code-1&state={state}"))
        .await
        .assert_error(400, "validation_failed");
    callback(&auth, "google", "code=x&state=st_forged")
        .await
        .assert_error(400, "validation_failed");
    callback(&auth, "google", "code=x")
        .await
        .assert_error(400, "validation_failed");
    // The provider refusing, or a code bound to another challenge, is a failed sign-in.
    let location = authorize(&auth, "google").await;
    let state = fake.approve(&location, "code-2", "p@example.com", true);
    fake.approvals
        .lock()
        .unwrap()
        .get_mut("code-2")
        .unwrap()
        .challenge = "tampered".into();
    callback(&auth, "google", &format!("code=code-2&state={state}"))
        .await
        .assert_error(401, "unauthorized");
    let location = authorize(&auth, "google").await;
    let params: HashMap<String, String> = location.query_pairs().into_owned().collect();
    callback(
        &auth,
        "google",
        &format!("error=access_denied&state={}", params["state"]),
    )
    .await
    .assert_error(401, "unauthorized");
}

db_test!(unverified_emails_are_refused, unverified);
async fn unverified(kind: DbKind) {
    let fake = FakeProvider::start();
    let config = fake.config("/userinfo");
    let auth = TestAuth::start_with(kind, move |c| c.social.google = config).await;
    let location = authorize(&auth, "google").await;
    let state = fake.approve(&location, "code-u", "someone@example.com", false);
    callback(&auth, "google", &format!("code=code-u&state={state}"))
        .await
        .assert_error(403, "forbidden");
}

db_test!(github_uses_the_primary_verified_email, github);
async fn github(kind: DbKind) {
    let fake = FakeProvider::start();
    let config = fake.config("/user/emails");
    let auth = TestAuth::start_with(kind, move |c| c.social.github = config).await;
    // Google is not configured here: its route does not exist.
    auth.server
        .send(auth.server.request(Method::GET, "/v1/auth/login/google"))
        .await
        .assert_error(404, "not_found");
    auth.server
        .send(auth.server.request(Method::GET, "/v1/auth/login/myspace"))
        .await
        .assert_error(404, "not_found");
    let location = authorize(&auth, "github").await;
    let state = fake.approve(&location, "gh-1", "dev@example.com", true);
    // A state issued for GitHub is no good at Google's callback.
    let signed_in = callback(&auth, "github", &format!("code=gh-1&state={state}")).await;
    assert_eq!(signed_in.status, 200, "{:?}", signed_in.json());
    assert_eq!(signed_in.json()["data"]["user"]["email"], "dev@example.com");
}
