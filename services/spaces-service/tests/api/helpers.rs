//! A running spaces-service with its own database and cache, and the
//! identities the gateway would send for its callers.

use identity::{Identity, PrincipalType, ScopeSet};
use serde_json::Value;
use service_kit::config::Secret;
use service_kit::ids::{self, prefix};
use spaces_service::SpacesService;
use spaces_service::config::{SpacesConfig, StorageConfig};
use spaces_service::storage::Storage;
use testkit::part::start_part_with;
use testkit::reqwest::Method;
use testkit::{CacheKind, DbKind, TestCache, TestDatabase, TestResponse, TestServer};

pub use testkit::StorageKind;

/// Settings no test should leave to the defaults: an inline root secret (the
/// default would create a key file in the working directory), and events to an
/// in-process stream of the test's own (never a shared Redis).
pub fn isolate(config: &mut SpacesConfig) {
    use base64::Engine;
    let mut root = [0u8; 32];
    getrandom::fill(&mut root).unwrap();
    config.secret.key = Secret::new(base64::engine::general_purpose::STANDARD.encode(root));
    config.events.stream_url = Secret::new(unique_stream_url());
    // Never the working directory's ./data/objects.
    config.storage.url = format!(
        "file://{}",
        std::env::temp_dir()
            .join(format!("spaces-objects-{}", ids::new_id("test")))
            .display()
    );
}

/// An in-process event stream no other test uses.
pub fn unique_stream_url() -> String {
    format!("memory://spaces-events-{}", ids::new_id("test"))
}

pub struct TestSpaces {
    pub server: TestServer,
    pub cache: TestCache,
    pub db: TestDatabase,
    pub storage: TestStorage,
    /// The configuration the service runs with.
    pub config: SpacesConfig,
}

/// An object store that exists for one test ([`testkit::TestStore`]), as
/// spaces-service's `storage.*` names it.
pub struct TestStorage {
    pub config: StorageConfig,
    _store: testkit::TestStore,
}

impl TestStorage {
    /// A temporary directory, or a new bucket; panics (the test fails) when
    /// `TEST_S3_URL` is unset or the server unreachable.
    pub async fn new(kind: StorageKind) -> TestStorage {
        let store = testkit::TestStore::new(kind).await;
        let mut config = SpacesConfig::defaults().storage;
        config.url = store.url.clone();
        if kind == StorageKind::S3 {
            config.endpoint = store.endpoint.clone();
            config.path_style = true;
            config.access_key_id = Secret::new(store.access_key_id.clone());
            config.secret_access_key = Secret::new(store.secret_access_key.clone());
        }
        TestStorage {
            config,
            _store: store,
        }
    }

    /// The store, as the service sees it.
    pub fn open(&self) -> Storage {
        Storage::from_config(&self.config).unwrap()
    }
}

/// Generates one test per database and store a content flow runs on:
/// `NAME::sqlite` and `NAME::postgres` (filesystem store), `NAME::s3`
/// (SQLite, S3 store), each calling `BODY(DbKind, StorageKind)`.
#[macro_export]
macro_rules! content_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$body(
                    testkit::DbKind::Sqlite,
                    $crate::helpers::StorageKind::Filesystem,
                )
                .await
            }
            #[tokio::test]
            async fn postgres() {
                super::$body(
                    testkit::DbKind::Postgres,
                    $crate::helpers::StorageKind::Filesystem,
                )
                .await
            }
            #[tokio::test]
            async fn s3() {
                super::$body(testkit::DbKind::Sqlite, $crate::helpers::StorageKind::S3).await
            }
        }
    };
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
        Self::start_full(kind, cache, StorageKind::Filesystem, tweak).await
    }

    /// A service on `kind` and the store `storage`.
    pub async fn with_storage(kind: DbKind, storage: StorageKind) -> TestSpaces {
        Self::start_full(kind, CacheKind::Memory, storage, |_| {}).await
    }

    pub async fn start_full(
        kind: DbKind,
        cache: CacheKind,
        storage: StorageKind,
        tweak: impl FnOnce(&mut SpacesConfig),
    ) -> TestSpaces {
        let db = TestDatabase::new(kind);
        let cache = TestCache::new(cache);
        let storage = TestStorage::new(storage).await;
        let mut used = None;
        let server = start_part_with::<SpacesService>(Some(&db), &cache, |config| {
            isolate(config);
            config.storage = storage.config.clone();
            tweak(config);
            used = Some(config.clone());
        })
        .await;
        TestSpaces {
            server,
            cache,
            db,
            storage,
            config: used.unwrap(),
        }
    }

    /// The service's keys (from its root secret).
    pub fn keys(&self) -> spaces_service::secrets::Keys {
        spaces_service::secrets::Keys::load(self.config.secret.key.expose(), "").unwrap()
    }

    /// Sends a multipart `form` as `who` (`None`: without a credential, as
    /// the gateway forwards public routes) to `path` (with its query).
    pub async fn upload(
        &self,
        who: Option<&Identity>,
        path: &str,
        form: Multipart,
    ) -> TestResponse {
        self.upload_with(who, path, form, &[]).await
    }

    pub async fn upload_with(
        &self,
        who: Option<&Identity>,
        path: &str,
        form: Multipart,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let anonymous = Identity::anonymous();
        let (content_type, body) = form.finish();
        let mut request = self
            .request_as(who.unwrap_or(&anonymous), Method::POST, path)
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.server.send(request).await
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

    /// Uploads `form` to `/api/v1/upload` as `who`; the stored file's
    /// `data` (a 201 is asserted).
    pub async fn upload_ok(&self, who: &Identity, form: Multipart) -> Value {
        created(&self.upload(Some(who), "/api/v1/upload", form).await)
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

/// `data` of a 201.
pub fn created(answer: &TestResponse) -> Value {
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["data"].clone()
}

/// A space, created by `who`, with its handle and active config.
pub struct Space {
    pub id: String,
    pub handle: String,
    pub config: String,
}

impl Space {
    /// The space of a space's `data`.
    pub fn from_data(data: &Value) -> Space {
        Space {
            id: data["id"].as_str().unwrap().into(),
            handle: data["handle"].as_str().unwrap().into(),
            config: data["active_upload_config_id"].as_str().unwrap().into(),
        }
    }
}

pub async fn space(app: &TestSpaces, who: &Identity, name: &str) -> Space {
    Space::from_data(&app.create_space(who, name).await)
}

/// Changes the space's config `id` (a PUT on it).
pub async fn configure(app: &TestSpaces, who: &Identity, id: &str, body: Value) {
    let answer = app
        .put(who, &format!("/api/v1/upload-configs/{id}"), body)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
}

/// A space created by `who` whose active config `body` changes.
pub async fn configured_space(app: &TestSpaces, who: &Identity, name: &str, body: Value) -> Space {
    let space = space(app, who, name).await;
    configure(app, who, &space.config, body).await;
    space
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

/// A `multipart/form-data` body, built in memory.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Default for Multipart {
    fn default() -> Self {
        Multipart::new()
    }
}

impl Multipart {
    pub fn new() -> Multipart {
        Multipart {
            boundary: format!("----spaceport{}", ids::new_id("b")),
            body: Vec::new(),
        }
    }

    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    pub fn text(mut self, name: &str, value: &str) -> Multipart {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    /// The part headers of a file, up to its bytes.
    pub fn file_head(boundary: &str, name: &str, filename: &str, content_type: &str) -> String {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
    }

    pub fn file(
        mut self,
        name: &str,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Multipart {
        self.body.extend_from_slice(
            Multipart::file_head(&self.boundary, name, filename, content_type).as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// `(content type, body)`.
    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

/// SHA-256 in lowercase hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    spaces_service::storage::hex(&sha2::Sha256::digest(bytes))
}

/// A `width`×`height` PNG with some detail.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 13 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A `width`×`height` PNG of noise (which does not compress: about 3
/// bytes a pixel).
pub fn noisy_png(width: u32, height: u32) -> Vec<u8> {
    let pixels = noise((width * height * 3) as usize, 11);
    let image = image::RgbImage::from_raw(width, height, pixels).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A `width`×`height` JPEG.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Bytes an MP4 sniffer recognises, then `len` bytes of noise.
pub fn mp4(len: usize) -> Vec<u8> {
    let mut bytes = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    bytes.extend(noise(len, 7));
    bytes
}

pub use testkit::content::noise;
