//! A running spaces-service with its own database and cache, and the
//! identities the gateway would send for its callers.

use identity::{Identity, PrincipalType, ScopeSet};
use serde_json::Value;
use service_kit::config::Secret;
use service_kit::ids::{self, prefix};
use spaces_service::SpacesService;
use spaces_service::config::SpacesConfig;
use testkit::part::start_part_with;
use testkit::reqwest::Method;
use testkit::{CacheKind, DbKind, TestCache, TestDatabase, TestResponse, TestServer};

/// Settings no test should leave to the defaults: an inline root secret (the
/// default would create a key file in the working directory), and events to an
/// in-process stream of the test's own (never a shared Redis).
pub fn isolate(config: &mut SpacesConfig) {
    use base64::Engine;
    let mut root = [0u8; 32];
    getrandom::fill(&mut root).unwrap();
    config.secret.key = Secret::new(base64::engine::general_purpose::STANDARD.encode(root));
    config.events.stream_url = Secret::new(unique_stream_url());
}

/// An in-process event stream no other test uses.
pub fn unique_stream_url() -> String {
    format!("memory://spaces-events-{}", ids::new_id("test"))
}

pub struct TestSpaces {
    pub server: TestServer,
    pub cache: TestCache,
    pub db: TestDatabase,
}

impl TestSpaces {
    pub async fn start(kind: DbKind) -> TestSpaces {
        Self::start_with(kind, CacheKind::Memory, |_| {}).await
    }

    pub async fn start_with(
        kind: DbKind,
        cache: CacheKind,
        tweak: impl FnOnce(&mut SpacesConfig),
    ) -> TestSpaces {
        let db = TestDatabase::new(kind);
        let cache = TestCache::new(cache);
        let server = start_part_with::<SpacesService>(Some(&db), &cache, |config| {
            isolate(config);
            tweak(config);
        })
        .await;
        TestSpaces { server, cache, db }
    }

    /// A request made as `who`, through the gateway.
    pub fn request_as(
        &self,
        who: &Identity,
        method: Method,
        path: &str,
    ) -> testkit::reqwest::RequestBuilder {
        self.server
            .client
            .request(method, self.server.url(path))
            .header(
                identity::HEADER,
                testkit::identity::token(who, "spaces-service"),
            )
    }

    /// Sends `body` (if any) as JSON, as `who`.
    pub async fn call(
        &self,
        who: &Identity,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = self.request_as(who, method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.server.send(request).await
    }

    pub async fn get(&self, who: &Identity, path: &str) -> TestResponse {
        self.call(who, Method::GET, path, None).await
    }

    pub async fn post(&self, who: &Identity, path: &str, body: Value) -> TestResponse {
        self.call(who, Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, who: &Identity, path: &str, body: Value) -> TestResponse {
        self.call(who, Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, who: &Identity, path: &str) -> TestResponse {
        self.call(who, Method::DELETE, path, None).await
    }

    /// Creates a space; returns its `data`.
    pub async fn create_space(&self, who: &Identity, name: &str) -> Value {
        let created = self
            .post(who, "/api/v1/spaces", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(created.status, 201, "{}", created.json());
        created.json()["data"].clone()
    }

    /// Mints a space key; returns the answer's `data` (with `key`).
    pub async fn mint_key(&self, who: &Identity, space_id: &str, name: &str) -> Value {
        let created = self
            .post(
                who,
                &format!("/api/v1/spaces/{space_id}/api-keys"),
                serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.json());
        created.json()["data"].clone()
    }

    /// The identity the gateway sends for a request made with the space key
    /// `key` (the `data` of its creation), built from what introspection told
    /// it, as the gateway builds it.
    pub async fn as_key(&self, key: &Value) -> Identity {
        as_gateway_sees(&self.introspect(key["key"].as_str().unwrap()).await)
    }

    /// What the gateway learns about `key`.
    pub async fn introspect(&self, key: &str) -> Value {
        let seen = self
            .post(
                &Identity::gateway(),
                "/internal/space-keys/introspect",
                serde_json::json!({ "key": key }),
            )
            .await;
        assert_eq!(seen.status, 200, "{}", seen.json());
        seen.json()["data"].clone()
    }
}

pub fn new_workspace() -> String {
    ids::new_id(prefix::WORKSPACE)
}

/// A person of `workspace` with both spaces scopes, as the gateway describes them.
pub fn member(workspace: &str) -> Identity {
    with_scopes(PrincipalType::User, workspace, "spaces:read spaces:write")
}

/// A workspace admin: a person of `workspace` with the spaces scopes and
/// `keys:admin`.
pub fn admin(workspace: &str) -> Identity {
    with_scopes(
        PrincipalType::User,
        workspace,
        "spaces:read spaces:write keys:admin",
    )
}

pub fn with_scopes(kind: PrincipalType, workspace: &str, scopes: &str) -> Identity {
    Identity {
        principal_id: ids::new_id(prefix::USER),
        principal_type: kind,
        workspace_id: Some(workspace.to_owned()),
        scopes: ScopeSet::parse(scopes).unwrap(),
        space_id: None,
        organization_id: None,
    }
}

/// The identity the gateway sends for `Authorization: Bearer sk_…`, built
/// from what introspection told it (principal: the key's internal id; the
/// space it was minted for; what a space key may do).
pub fn as_gateway_sees(introspection: &Value) -> Identity {
    assert_eq!(introspection["active"], true, "{introspection}");
    Identity {
        principal_id: introspection["key_id"].as_str().unwrap().to_owned(),
        principal_type: PrincipalType::SpaceKey,
        workspace_id: Some(introspection["workspace_id"].as_str().unwrap().to_owned()),
        scopes: ScopeSet::parse("spaces:read spaces:write").unwrap(),
        space_id: Some(introspection["space_id"].as_str().unwrap().to_owned()),
        organization_id: None,
    }
}

/// The fields a 422 answer names (Tuzzle's `errors` map, in key order),
/// after checking its shape: every field has one or more sentences, and the
/// `message` is the one field's first sentence, or "The given data was
/// invalid." when several fields are named.
pub fn fields(response: &TestResponse) -> Vec<String> {
    let body = response.assert_error(422, "validation_failed");
    let errors = body["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no errors in {body}"));
    for (field, messages) in errors {
        let messages = messages
            .as_array()
            .unwrap_or_else(|| panic!("{field}: not a list in {body}"));
        assert!(!messages.is_empty(), "{body}");
        for message in messages {
            let message = message.as_str().unwrap_or_default();
            assert!(
                message.starts_with("The ") && message.ends_with('.'),
                "{field}: {message:?} in {body}"
            );
        }
    }
    let expected = match errors.values().next() {
        Some(first) if errors.len() == 1 => first[0].clone(),
        _ => Value::from("The given data was invalid."),
    };
    assert_eq!(body["message"], expected, "{body}");
    errors.keys().cloned().collect()
}

/// `fields` sorted, as the `errors` map orders them.
pub fn sorted<const N: usize>(fields: [&str; N]) -> Vec<String> {
    let mut fields = fields.map(str::to_owned).to_vec();
    fields.sort();
    fields
}
