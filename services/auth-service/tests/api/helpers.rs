//! A running auth-service with its own database, cache and SMTP sink.

use auth_service::AuthService;
use auth_service::config::AuthConfig;
use identity::{AccessClaims, AccessTokenVerifier, PublicKeys};
use mail::sink::SmtpSink;
use service_kit::config::Secret;
use std::time::Duration;
use testkit::part::start_part_with;
use testkit::reqwest::Method;
use testkit::{CacheKind, DbKind, TestCache, TestDatabase, TestResponse, TestServer};

/// Settings no test should leave to the defaults: an inline root secret (the
/// default would create a key file in the working directory), mail to the log,
/// and events to an in-process stream of the test's own (never a shared Redis).
pub fn isolate(config: &mut AuthConfig) {
    let mut root = [0u8; 32];
    getrandom::fill(&mut root).unwrap();
    use base64::Engine;
    config.secret.key = Secret::new(base64::engine::general_purpose::STANDARD.encode(root));
    config.mail.url = Secret::new("log");
    config.events.stream_url = Secret::new(unique_stream_url());
}

/// An in-process event stream no other test uses.
pub fn unique_stream_url() -> String {
    format!("memory://auth-events-{}", service_kit::ids::new_id("test"))
}

pub struct TestAuth {
    pub server: TestServer,
    pub sink: SmtpSink,
    pub cache: TestCache,
    pub db: TestDatabase,
    /// What the server was started with, for [`TestAuth::replica`].
    pub config: AuthConfig,
}

impl TestAuth {
    pub async fn start(kind: DbKind) -> TestAuth {
        Self::start_with(kind, |_| {}).await
    }

    pub async fn start_with(kind: DbKind, tweak: impl FnOnce(&mut AuthConfig)) -> TestAuth {
        Self::start_on(kind, CacheKind::Memory, tweak).await
    }

    /// On a cache of `cache_kind` (Redis: a namespace and bus of the test's own).
    pub async fn start_on(
        kind: DbKind,
        cache_kind: CacheKind,
        tweak: impl FnOnce(&mut AuthConfig),
    ) -> TestAuth {
        let db = TestDatabase::new(kind);
        let cache = TestCache::new(cache_kind);
        let sink = SmtpSink::start().await;
        let sink_url = sink.url();
        let mut started = None;
        let server = start_part_with::<AuthService>(Some(&db), &cache, |config| {
            isolate(config);
            config.mail.url = Secret::new(sink_url);
            tweak(config);
            started = Some(config.clone());
        })
        .await;
        TestAuth {
            server,
            sink,
            cache,
            db,
            config: started.expect("configured"),
        }
    }

    /// Another replica of the service: the same database, cache and bus,
    /// root secret, mail and event stream; `tweak` may set it apart.
    pub async fn replica(&self, tweak: impl FnOnce(&mut AuthConfig)) -> TestServer {
        start_part_with::<AuthService>(Some(&self.db), &self.cache, |config| {
            *config = AuthConfig {
                http: config.http.clone(),
                ..self.config.clone()
            };
            tweak(config);
        })
        .await
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> TestResponse {
        self.server
            .send(self.server.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> TestResponse {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.server
            .send(
                self.server
                    .request(Method::POST, path)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body),
            )
            .await
    }

    pub async fn request_code(&self, email: &str) -> TestResponse {
        self.post_json(
            "/api/v1/auth/otp/request",
            serde_json::json!({ "email": email }),
        )
        .await
    }

    /// Requests a code and reads it from the mail the sink received.
    pub async fn code_for(&self, email: &str) -> String {
        let before = self.sink.messages().len();
        let response = self.request_code(email).await;
        assert_eq!(response.status, 200, "{:?}", response.json());
        for _ in 0..100 {
            let messages = self.sink.messages();
            if messages.len() > before {
                let body = messages.last().unwrap().body_text();
                return extract_code(&body).unwrap_or_else(|| panic!("no code in {body:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no mail for {email}");
    }

    pub async fn verify(&self, email: &str, code: &str) -> TestResponse {
        self.post_json(
            "/api/v1/auth/otp/verify",
            serde_json::json!({ "email": email, "otp": code }),
        )
        .await
    }

    /// Signs in by code; returns the `data` of the answer.
    pub async fn sign_in(&self, email: &str) -> serde_json::Value {
        let code = self.code_for(email).await;
        let response = self.verify(email, &code).await;
        assert_eq!(response.status, 200, "{:?}", response.json());
        response.json()["data"].clone()
    }

    /// A verifier built from the JWKS the service publishes.
    pub async fn verifier(&self) -> AccessTokenVerifier {
        let jwks = self.server.get("/.well-known/jwks.json").await.json();
        AccessTokenVerifier::new(
            "http://localhost:8080",
            "spaceport",
            PublicKeys::from_jwks(&jwks).unwrap(),
        )
    }

    pub async fn claims(&self, access_token: &str) -> AccessClaims {
        self.verifier()
            .await
            .verify(access_token)
            .expect("a valid access token")
    }
}

impl TestAuth {
    /// Signs `email` in and returns the identity the gateway would send for
    /// them: their user, personal workspace and owner scopes.
    pub async fn owner(&self, email: &str) -> identity::Identity {
        let session = self.sign_in(email).await;
        let claims = self.claims(session["access_token"].as_str().unwrap()).await;
        identity::Identity {
            principal_id: claims.sub.clone(),
            principal_type: identity::PrincipalType::User,
            workspace_id: claims.wrk.clone(),
            scopes: claims.scopes(),
            space_id: None,
            organization_id: None,
        }
    }

    /// A request made as `who`, through the gateway.
    pub fn request_as(
        &self,
        who: &identity::Identity,
        method: Method,
        path: &str,
    ) -> testkit::reqwest::RequestBuilder {
        self.server
            .client
            .request(method, self.server.url(path))
            .header(
                identity::HEADER,
                testkit::identity::token(who, "auth-service"),
            )
    }
}

pub fn extract_code(body: &str) -> Option<String> {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
