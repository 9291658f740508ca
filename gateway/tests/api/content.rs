//! Content through the gateway, with the real auth-service and spaces-service:
//! a Tuzzle `sk_` key uploads into a space (one file, or several), the CDN
//! route serves the files anonymously from a public space (transformed,
//! conditional, by ranges) and refuses private ones, and a 200 MB file streams
//! up and back down through the gateway while the process's memory stays
//! flat. The Upload API's other flows (a signed URL, unsigned uploads within
//! their restrictions, presign + PUT + confirm) run as a client runs them:
//! every request to the gateway, the URLs spaces-service signs pointing at it
//! (and, on S3, the PUT to the store's own presigned URL).
//!
//! Each test runs on both object stores (`NAME::filesystem`, `NAME::s3`: a
//! fresh bucket on the S3 API server at `TEST_S3_URL`), and the bytes stored
//! are read back from the store itself.
//!
//! Every part runs in this test's process, so `/proc/self/status` measures
//! them all (nextest gives each test a process of its own); on S3 that is the
//! S3 client's side of the stream, not moto's.

use crate::gateway_with;
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use service_kit::config::Secret;
use sha2::{Digest, Sha256};
use spaces_service::config::StorageConfig;
use spaces_service::storage::Storage;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::content::{noise, rss};
use testkit::{
    CacheKind, DbKind, StorageKind, TestCache, TestDatabase, TestResponse, TestServer, TestStore,
    storage_test,
};

/// The gateway in front of auth-service and spaces-service (its objects in a
/// store of the test's own), an SMTP sink for sign-in codes.
struct Stack {
    gw: TestServer,
    sink: mail::sink::SmtpSink,
    store: TestStore,
    /// The store as spaces-service sees it, to read objects back.
    objects: Storage,
    _auth: TestServer,
    _spaces: TestServer,
    _dbs: [TestDatabase; 2],
}

impl Stack {
    async fn start(kind: StorageKind) -> Stack {
        let sink = mail::sink::SmtpSink::start().await;
        let cache = TestCache::new(CacheKind::Memory);
        let dbs = [
            TestDatabase::new(DbKind::Sqlite),
            TestDatabase::new(DbKind::Sqlite),
        ];
        let store = TestStore::new(kind).await;
        let storage = storage_config(&store);
        let objects = Storage::from_config(&storage).expect("object store");
        let sink_url = sink.url();
        let auth = testkit::part::start_part_with::<auth_service::AuthService>(
            Some(&dbs[0]),
            &cache,
            |c| {
                c.secret.key =
                    Secret::new(base64::engine::general_purpose::STANDARD.encode([15u8; 32]));
                c.mail.url = Secret::new(sink_url);
            },
        )
        .await;
        // spaces-service signs upload URLs for the gateway's address
        // (`uploads.public_url`), and the gateway needs spaces-service's: the
        // spaces port is bound first (connections wait in its backlog) and
        // served once the gateway's address is known.
        let spaces_listener = testkit::bind();
        let spaces_base = format!("http://{}", spaces_listener.local_addr().unwrap());
        let (auth_base, spaces_upstream, cache_config) =
            (auth.base.clone(), spaces_base.clone(), cache.config.clone());
        let gw = gateway_with(&spaces_base, |c| {
            c.upstreams.auth = auth_base;
            c.upstreams.spaces = spaces_upstream;
            c.cache = cache_config;
        })
        .await;
        let public_url = gw.base.clone();
        let spaces = testkit::part::start_part_on::<spaces_service::SpacesService>(
            spaces_listener,
            Some(&dbs[1]),
            &cache,
            |c| {
                c.secret.key =
                    Secret::new(base64::engine::general_purpose::STANDARD.encode([16u8; 32]));
                c.events.stream_url = Secret::new(format!(
                    "memory://{}",
                    service_kit::ids::new_id("gateway-content")
                ));
                c.storage = storage;
                c.uploads.public_url = public_url;
            },
        )
        .await;
        Stack {
            gw,
            sink,
            store,
            objects,
            _auth: auth,
            _spaces: spaces,
            _dbs: dbs,
        }
    }

    /// Signs in by one-time code; the access token.
    async fn sign_in(&self, email: &str) -> String {
        let gw = &self.gw;
        let requested = gw
            .send(
                gw.client
                    .post(gw.url("/api/v1/auth/otp/request"))
                    .json(&json!({ "email": email })),
            )
            .await;
        assert_eq!(requested.status, 200, "{:?}", requested.json());
        let mail = self
            .sink
            .wait_for(email, Duration::from_secs(5))
            .await
            .expect("code mailed");
        let code = mail
            .body_text()
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == 6)
            .expect("a six-digit code")
            .to_owned();
        let signed_in = gw
            .send(
                gw.client
                    .post(gw.url("/api/v1/auth/otp/verify"))
                    .json(&json!({ "email": email, "otp": code })),
            )
            .await;
        assert_eq!(signed_in.status, 200, "{:?}", signed_in.json());
        signed_in.json()["data"]["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `method path` with `credential` as a bearer token and a JSON body.
    async fn call(
        &self,
        credential: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let gw = &self.gw;
        let mut request = gw
            .client
            .request(method, gw.url(path))
            .bearer_auth(credential);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = gw.send(request).await;
        assert!(
            (200..300).contains(&answer.status),
            "{path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()["data"].clone()
    }

    /// A space, its handle and active upload config, and a space key for it.
    async fn space(&self, token: &str, name: &str) -> (Value, String) {
        let space = self
            .call(
                token,
                reqwest::Method::POST,
                "/api/v1/spaces",
                Some(json!({ "name": name })),
            )
            .await;
        let id = space["id"].as_str().unwrap();
        let key = self
            .call(
                token,
                reqwest::Method::POST,
                &format!("/api/v1/spaces/{id}/api-keys"),
                Some(json!({ "name": "uploads" })),
            )
            .await;
        let key = key["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("sk_"));
        (space, key)
    }

    /// Uploads `bytes` as `filename` into the space `handle` with the key.
    async fn upload(&self, key: &str, handle: &str, filename: &str, bytes: &[u8]) -> Value {
        self.upload_form(key, form(Some(handle), filename, bytes))
            .await
    }

    /// `POST /api/v1/upload` of `form` (its content type and body) with the
    /// key; the answer's `data` (a 201 is asserted).
    async fn upload_form(&self, key: &str, (content_type, body): (String, Vec<u8>)) -> Value {
        let gw = &self.gw;
        let answer = gw
            .send(
                gw.client
                    .post(gw.url("/api/v1/upload"))
                    .bearer_auth(key)
                    .header("content-type", content_type)
                    .body(body),
            )
            .await;
        assert_eq!(
            answer.status,
            201,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()["data"].clone()
    }

    /// An anonymous multipart `POST` of `bytes` as `filename` to `url`, a full
    /// URL as the platform hands it out, with `headers`.
    async fn post_file(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        filename: &str,
        bytes: &[u8],
    ) -> TestResponse {
        let (content_type, body) = form(None, filename, bytes);
        let mut request = self
            .gw
            .client
            .post(url)
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.gw.send(request).await
    }

    /// `GET /api/v1/files/{id}` with `credential`: the file's record.
    async fn file(&self, credential: &str, id: &str) -> Value {
        self.call(
            credential,
            reqwest::Method::GET,
            &format!("/api/v1/files/{id}"),
            None,
        )
        .await
    }

    /// An anonymous CDN request for `file`, with `query` and `headers`.
    async fn cdn(&self, file: &Value, query: &str, headers: &[(&str, &str)]) -> TestResponse {
        let gw = &self.gw;
        let path = format!("/cdn/{}?{query}", file["storage_path"].as_str().unwrap());
        let mut request = gw.client.get(gw.url(&path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        gw.send(request).await
    }
}

/// spaces-service's `storage.*` for `store`: S3 addressed path-style, with
/// the credentials the server takes.
fn storage_config(store: &TestStore) -> StorageConfig {
    let mut config = spaces_service::config::SpacesConfig::defaults().storage;
    config.url = store.url.clone();
    if store.kind == StorageKind::S3 {
        config.endpoint = store.endpoint.clone();
        config.path_style = true;
        config.access_key_id = Secret::new(store.access_key_id.clone());
        config.secret_access_key = Secret::new(store.secret_access_key.clone());
    }
    config
}

/// A multipart body holding `bytes` as `filename`, after the `space` field
/// when one is given; its content type and bytes.
fn form(space: Option<&str>, filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    form_of(space, "file", &[(filename, bytes)])
}

/// A multipart body holding each of `files` (name, bytes) in a field
/// `field`, after the `space` field when one is given.
fn form_of(space: Option<&str>, field: &str, files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----gateway-content-test";
    let mut body = space.map_or_else(Vec::new, |handle| fields(boundary, handle).into_bytes());
    for (filename, bytes) in files {
        body.extend_from_slice(file_head(boundary, field, filename).as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The form fields before the file: the space.
fn fields(boundary: &str, handle: &str) -> String {
    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"space\"\r\n\r\n{handle}\r\n")
}

fn file_head(boundary: &str, field: &str, filename: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
}

/// A `width`×`height` RGB PNG, written by hand (stored blocks, no
/// compression): this crate does not depend on an image library.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // no filter
        for x in 0..width {
            raw.extend_from_slice(&[(x * 5) as u8, (y * 3) as u8, 128]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in &raw {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(*b"IHDR", ihdr), (*b"IDAT", zlib), (*b"IEND", Vec::new())] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(&data);
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The width and height a PNG's header states.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

storage_test!(
    uploads_with_a_space_key_are_delivered_by_the_cdn,
    cdn_delivery
);
async fn cdn_delivery(storage: StorageKind) {
    let stack = Stack::start(storage).await;
    let token = stack.sign_in("content@example.com").await;
    let (space, key) = stack.space(&token, "Public media").await;
    let handle = space["handle"].as_str().unwrap();
    let original = png(320, 200);
    let file = stack.upload(&key, handle, "cover.png", &original).await;
    assert_eq!(file["mime_type"], "image/png");
    assert_stored(&stack, &key, &file, &original).await;

    // Anonymous, through the gateway: the original, then a variant.
    let plain = stack.cdn(&file, "", &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body, original);
    assert_eq!(plain.header("content-type"), Some("image/png"));
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=2592000")
    );
    assert_eq!(plain.header("x-image-width"), Some("320"));
    let small = stack.cdn(&file, "w=100&f=png", &[]).await;
    assert_eq!(small.status, 200);
    assert_eq!(png_size(&small.body), (100, 63));
    assert_eq!(small.header("x-cache"), Some("MISS"));
    let again = stack.cdn(&file, "w=100&f=png", &[]).await;
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(again.body, small.body);
    let webp = stack.cdn(&file, "w=80", &[("accept", "image/webp")]).await;
    assert_eq!(webp.header("content-type"), Some("image/webp"));
    assert_eq!(&webp.body[8..12], b"WEBP");
    // Conditional and partial requests pass through.
    let etag = small.header("etag").unwrap();
    let cached = stack
        .cdn(&file, "w=100&f=png", &[("if-none-match", etag)])
        .await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    let part = stack.cdn(&file, "", &[("range", "bytes=0-7")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, b"\x89PNG\r\n\x1a\n");
    // Tuzzle's CDN error shape, from spaces-service through the gateway.
    let invalid = stack.cdn(&file, "w=0", &[]).await;
    let body = invalid.json();
    assert_eq!(invalid.status, 422, "{body}");
    assert_eq!(body["error"]["message"], "Invalid modifiers");
    assert_eq!(body["error"]["type"], "ValidationError");
    assert!(body["error"]["details"]["w"].is_string());
    assert_eq!(body["request_id"].as_str(), invalid.header("x-request-id"));

    // A private file: refused anonymously, served to the key (also as
    // Tuzzle's `?api_key=`, which the gateway takes as the credential).
    let config = space["active_upload_config_id"].as_str().unwrap();
    stack
        .call(
            &token,
            reqwest::Method::PUT,
            &format!("/api/v1/upload-configs/{config}"),
            Some(json!({ "delivery_type": "private" })),
        )
        .await;
    let secret = stack.upload(&key, handle, "secret.png", &original).await;
    let refused = stack.cdn(&secret, "", &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"]["type"], "AuthorizationError");
    let gw = &stack.gw;
    let path = format!("/cdn/{}", secret["storage_path"].as_str().unwrap());
    let with_key = gw
        .send(gw.client.get(gw.url(&path)).bearer_auth(&key))
        .await;
    assert_eq!(with_key.status, 200);
    assert_eq!(with_key.body, original);
    assert_eq!(with_key.header("cache-control"), Some("private, no-cache"));
    let in_query = gw.get(&format!("{path}?api_key={key}&w=50&f=png")).await;
    assert_eq!(in_query.status, 200);
    assert_eq!(png_size(&in_query.body).0, 50);
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `url` with the first digit of its `signature` changed.
fn tampered(url: &str) -> String {
    let at = url.find("signature=").expect("a signed URL") + "signature=".len();
    let other = if url.as_bytes()[at] == b'0' { '1' } else { '0' };
    format!("{}{other}{}", &url[..at], &url[at + 1..])
}

/// Asserts Tuzzle's refusal, as the gateway passes it on: status and message.
fn assert_refused(answer: &TestResponse, status: u16, message: &str) {
    let body = answer.json();
    assert_eq!(answer.status, status, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

/// The stored file, read back three ways: its record's `hash`, its object
/// read from the store itself, and the bytes the CDN serves anonymously.
async fn assert_stored(stack: &Stack, key: &str, file: &Value, sent: &[u8]) {
    let record = stack.file(key, file["id"].as_str().unwrap()).await;
    assert_eq!(record["status"], "active", "{record}");
    assert_eq!(record["hash"], sha256(sent), "{record}");
    let object = stack
        .objects
        .read_all(record["object_key"].as_str().unwrap())
        .await
        .unwrap_or_else(|e| panic!("{record} in {}: {e}", stack.store.url));
    assert_eq!(sha256(&object), sha256(sent), "in {}", stack.store.url);
    let delivered = stack.cdn(&record, "", &[]).await;
    assert_eq!(delivered.status, 200);
    assert_eq!(sha256(&delivered.body), sha256(sent));
}

storage_test!(several_files_upload_in_one_request, several_files);
async fn several_files(storage: StorageKind) {
    let stack = Stack::start(storage).await;
    let token = stack.sign_in("several@example.com").await;
    let (space, key) = stack.space(&token, "Several files").await;
    let handle = space["handle"].as_str().unwrap();
    let sent: [(&str, &[u8]); 3] = [
        ("chart.png", &png(30, 20)),
        ("banner.png", &png(120, 16)),
        ("icon.png", &png(8, 8)),
    ];
    let uploaded = stack
        .upload_form(&key, form_of(Some(handle), "files[]", &sent))
        .await;
    let files = uploaded.as_array().expect("files[] answers a list");
    assert_eq!(files.len(), sent.len(), "{uploaded}");
    for (file, (name, bytes)) in files.iter().zip(sent) {
        assert_eq!(file["original_name"], name, "{file}");
        assert_stored(&stack, &key, file, bytes).await;
    }
}

storage_test!(
    signed_upload_urls_take_uploads_through_the_gateway_without_a_credential,
    signed_uploads
);
async fn signed_uploads(storage: StorageKind) {
    let stack = Stack::start(storage).await;
    let token = stack.sign_in("signed@example.com").await;
    let (space, key) = stack.space(&token, "Signed uploads").await;
    // `starter`, a new space's active config, is signed.
    let config = space["active_upload_config_id"].as_str().unwrap();
    let signed = stack
        .call(
            &key,
            reqwest::Method::POST,
            "/api/v1/upload/generate-signed-url",
            Some(json!({"upload_config_id": config, "expiration_minutes": 10,
                        "filename": "avatar.png", "content_type": "image/png"})),
        )
        .await;
    assert_eq!(signed["space_id"], space["id"]);
    let url = signed["url"].as_str().unwrap();
    assert!(
        url.starts_with(&stack.gw.url("/api/v1/upload/signed?")),
        "signed for the gateway's address: {url}"
    );

    let bytes = png(48, 32);
    // An altered signature authorises nothing.
    let forged = stack
        .post_file(&tampered(url), &[], "IMG_0001.png", &bytes)
        .await;
    assert_refused(&forged, 403, "Forbidden.");
    // The URL as made, with no credential: the signature authorises.
    let answer = stack.post_file(url, &[], "IMG_0001.png", &bytes).await;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let file = answer.json()["data"].clone();
    assert_eq!(file["original_name"], "avatar.png");
    assert_eq!(file["mime_type"], "image/png");
    assert_stored(&stack, &key, &file, &bytes).await;
}

storage_test!(
    unsigned_uploads_through_the_gateway_follow_their_restrictions,
    unsigned_uploads
);
async fn unsigned_uploads(storage: StorageKind) {
    let stack = Stack::start(storage).await;
    let token = stack.sign_in("unsigned@example.com").await;
    let (space, key) = stack.space(&token, "Unsigned uploads").await;
    stack
        .call(
            &token,
            reqwest::Method::POST,
            "/api/v1/upload-configs",
            Some(
                json!({"space_id": space["id"], "name": "user-avatars", "allow_unsigned": true,
                        "unsigned_restrictions": {"allowed_referrers": ["example.com"],
                                                  "require_https": false,
                                                  "max_uploads_per_hour": 2}}),
            ),
        )
        .await;
    let handle = space["handle"].as_str().unwrap();
    let url = stack
        .gw
        .url(&format!("/api/v1/upload/unsigned/{handle}/user-avatars"));
    let bytes = png(20, 10);
    let upload = |referer: &'static str| {
        let (stack, url, bytes) = (&stack, &url, &bytes);
        async move {
            let headers: &[(&str, &str)] = if referer.is_empty() {
                &[]
            } else {
                &[("referer", referer)]
            };
            stack.post_file(url, headers, "me.png", bytes).await
        }
    };

    // Other referrers, or none: refused, and not counted.
    for referer in [
        "https://evil.example.org/form",
        "https://example.com.evil.org/",
        "",
    ] {
        assert_refused(&upload(referer).await, 403, "Forbidden.");
    }
    let first = upload("https://example.com/signup").await;
    assert_eq!(first.status, 201, "{}", first.json());
    assert_stored(&stack, &key, &first.json()["data"], &bytes).await;
    let second = upload("https://example.com/profile").await;
    assert_eq!(second.status, 201, "{}", second.json());
    // The third of the hour is one too many.
    let third = upload("https://example.com/profile").await;
    assert_eq!(third.status, 429, "{}", third.json());
    assert!(
        third
            .header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s > 0),
        "{:?}",
        third.headers
    );
}

storage_test!(
    presigned_uploads_are_put_and_confirmed_through_the_gateway,
    presigned_uploads
);
async fn presigned_uploads(storage: StorageKind) {
    let stack = Stack::start(storage).await;
    let token = stack.sign_in("presigned@example.com").await;
    let (space, key) = stack.space(&token, "Presigned uploads").await;
    let bytes = png(64, 40);
    let gw = &stack.gw;
    let answer = gw
        .send(
            gw.client
                .post(gw.url("/api/v1/upload/presign"))
                .bearer_auth(&key)
                .json(&json!({"space": space["handle"], "filename": "banner.png",
                              "content_type": "image/png", "size": bytes.len()})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    // Bare, as Tuzzle answers it.
    let presigned = answer.json();
    let file_id = presigned["file_id"].as_str().unwrap();
    let upload_url = presigned["upload_url"].as_str().unwrap();
    match storage {
        StorageKind::Filesystem => assert!(
            upload_url.starts_with(&gw.url(&format!("/api/v1/upload/objects/{file_id}?"))),
            "spaces-service's own, signed for the gateway's address: {upload_url}"
        ),
        // The bytes go to the store, not through the gateway.
        StorageKind::S3 => assert!(
            upload_url.starts_with(&format!("{}/", stack.store.endpoint))
                && upload_url.contains("X-Amz-Signature="),
            "the store's own presigned URL: {upload_url}"
        ),
    }
    assert_eq!(stack.file(&key, file_id).await["status"], "pending");

    let put = |url: String| {
        gw.send(
            gw.client
                .put(url)
                .header("content-type", "image/png")
                .body(bytes.clone()),
        )
    };
    // An altered signature stores nothing. S3 checks its own signatures
    // (moto checks none).
    if storage == StorageKind::Filesystem {
        assert_eq!(put(tampered(upload_url)).await.status, 403);
    }
    // No credential: the signature authorises.
    let stored = put(upload_url.to_owned()).await;
    assert_eq!(
        stored.status,
        200,
        "{}",
        String::from_utf8_lossy(&stored.body)
    );
    let confirmed = stack
        .call(
            &key,
            reqwest::Method::POST,
            &format!("/api/v1/upload/confirm/{file_id}"),
            None,
        )
        .await;
    assert_eq!(confirmed["id"], file_id);
    assert_eq!(confirmed["status"], "active");
    assert_eq!(confirmed["hash"], sha256(&bytes));
    assert_stored(&stack, &key, &confirmed, &bytes).await;
}

const SIZE: usize = 200 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const MAX_GROWTH: u64 = 30 * 1024 * 1024;

storage_test!(
    a_200_mb_file_streams_up_and_down_through_the_gateway_in_flat_memory,
    large_file,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn large_file(storage: StorageKind) {
    let stack = Stack::start(storage).await;
    let token = stack.sign_in("large@example.com").await;
    let (space, key) = stack.space(&token, "Large files").await;
    let handle = space["handle"].as_str().unwrap().to_owned();
    let config = space["active_upload_config_id"].as_str().unwrap();
    stack
        .call(
            &token,
            reqwest::Method::PUT,
            &format!("/api/v1/upload-configs/{config}"),
            Some(json!({"config": {"validation": {
                "allowed_formats": null, "max_file_size": 300 * 1024 * 1024,
            }}})),
        )
        .await;
    // Both paths warmed up once.
    let warm = stack
        .upload(&key, &handle, "warm.bin", &noise(6 * 1024 * 1024, 4))
        .await;
    assert_eq!(stack.cdn(&warm, "", &[]).await.status, 200);

    let baseline = rss();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // Up: the body made as it is sent, hashed on the way.
    let boundary = "----gateway-content-large";
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let mut seed = 0u64;
    let chunks = {
        let hasher = hasher.clone();
        futures_util::stream::iter((0..SIZE / CHUNK).map(move |_| {
            seed += 1;
            let chunk = noise(CHUNK, seed);
            hasher.lock().unwrap().update(&chunk);
            Ok::<_, std::io::Error>(Bytes::from(chunk))
        }))
    };
    let body = futures_util::stream::iter([
        Ok(Bytes::from(fields(boundary, &handle))),
        Ok(Bytes::from(file_head(boundary, "file", "big.bin"))),
    ])
    .chain(chunks)
    .chain(futures_util::stream::iter([Ok(Bytes::from(format!(
        "\r\n--{boundary}--\r\n"
    )))]));
    let gw = &stack.gw;
    let answer = gw
        .send(
            gw.client
                .post(gw.url("/api/v1/upload"))
                .bearer_auth(&key)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .timeout(Duration::from_secs(600))
                .body(reqwest::Body::wrap_stream(body)),
        )
        .await;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let sent = hex(&hasher.lock().unwrap().clone().finalize());
    let file = answer.json()["data"].clone();
    assert_eq!(file["size"], SIZE);
    assert_eq!(file["hash"], sent);

    // Down: anonymously from the CDN, hashed as it arrives.
    let path = format!("/cdn/{}", file["storage_path"].as_str().unwrap());
    let response = gw
        .client
        .get(gw.url(&path))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        SIZE.to_string()
    );
    let mut received = Sha256::new();
    let mut length = 0usize;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        length += chunk.len();
        received.update(&chunk);
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(length, SIZE);
    assert_eq!(hex(&received.finalize()), sent);

    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "RSS: baseline {} MiB, peak {} MiB, growth {} MiB",
        baseline >> 20,
        peak.load(Ordering::Relaxed) >> 20,
        growth >> 20
    );
    assert!(
        growth < MAX_GROWTH,
        "200 MB up and down grew RSS by {} MiB (limit 30 MB)",
        growth >> 20
    );
    // moto keeps objects until it stops, and every S3 test shares it.
    stack.objects.delete_prefix(&handle).await.unwrap();
}
