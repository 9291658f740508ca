//! Delivery over HTTP (`GET|HEAD /cdn/{handle}/{name}`): who may read,
//! transforms decoded back, variants stored once, watermarks laid where the
//! space asks, conditional requests and ranges, and Tuzzle's CDN error shape;
//! on both stores where the bytes matter.

use crate::content_test;
use crate::helpers::{
    Multipart, Space, StorageKind, TestSpaces, configure, configured_space, jpeg, member,
    new_workspace, noise, noisy_png, png, sha256, space,
};
use crate::uploads::{has_gps, with_gps};
use identity::Identity;
use serde_json::{Value, json};
use spaces_service::delivery::Delivery;
use spaces_service::storage::StorageError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::reqwest::Method;
use testkit::{CacheKind, DbKind, TestResponse, cache_test, db_test};

/// Uploads `bytes` as `name` into `space`; the file's `data`.
async fn upload(
    app: &TestSpaces,
    who: &Identity,
    space: &Space,
    name: &str,
    bytes: &[u8],
) -> Value {
    let mime = match image::guess_format(bytes) {
        Ok(format) => format.to_mime_type(),
        Err(_) => "application/octet-stream",
    };
    let form = Multipart::new()
        .text("space", &space.handle)
        .file("file", name, mime, bytes);
    app.upload_ok(who, form).await
}

/// `/cdn/{storage_path}` of a file, with `query`.
fn cdn_path(file: &Value, query: &str) -> String {
    let path = format!("/cdn/{}", file["storage_path"].as_str().unwrap());
    match query {
        "" => path,
        q => format!("{path}?{q}"),
    }
}

/// A CDN request as `who` (`None`: anonymous, as the gateway forwards it),
/// with `headers`.
async fn fetch(
    app: &TestSpaces,
    who: Option<&Identity>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> TestResponse {
    let anonymous = Identity::anonymous();
    let mut request = app.request_as(who.unwrap_or(&anonymous), method, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.server.send(request).await
}

async fn get(app: &TestSpaces, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    fetch(app, None, Method::GET, path, headers).await
}

/// Asserts Tuzzle's CDN error shape with `status` and `kind`; the body.
fn cdn_error(answer: &TestResponse, status: u16, kind: &str) -> Value {
    let body = answer.json();
    assert_eq!(answer.status, status, "{body}");
    assert_eq!(body["error"]["code"], status, "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["details"].is_object(), "{body}");
    assert_eq!(
        body["request_id"].as_str(),
        answer.header("x-request-id"),
        "{body}"
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    body
}

fn decode(answer: &TestResponse, format: image::ImageFormat) -> image::DynamicImage {
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(image::guess_format(&answer.body).unwrap(), format);
    assert_eq!(
        answer.header("content-type"),
        Some(format.to_mime_type()),
        "content type"
    );
    assert_eq!(
        answer.header("content-length"),
        Some(answer.body.len().to_string().as_str())
    );
    image::load_from_memory_with_format(&answer.body, format).unwrap()
}

/// The sum of a counter's series whose line contains `label`.
async fn counter(app: &TestSpaces, name: &str, label: &str) -> u64 {
    let metrics = app.server.get("/metrics").await;
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn rendered(app: &TestSpaces) -> u64 {
    counter(app, "cdn_transforms_total", "outcome=\"rendered\"").await
}

/// Where the variant a query names is stored (no `Accept`, no watermark).
fn variant_key(
    space: &Space,
    file: &Value,
    query: &[(&str, &str)],
    source: media::Format,
) -> String {
    let name = media::Transform::parse(query.iter().copied())
        .unwrap()
        .negotiated(None, source)
        .variant_key();
    format!(
        "{}/_variants/{}/{name}",
        space.handle,
        file["id"].as_str().unwrap()
    )
}

content_test!(
    images_are_transformed_once_and_served_from_storage,
    transforms
);
async fn transforms(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Photos").await;
    let original = png(400, 300);
    let file = upload(&app, &me, &space, "photo.png", &original).await;

    // The original, as stored, with its headers.
    let plain = get(&app, &cdn_path(&file, ""), &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body, original);
    assert_eq!(plain.header("content-type"), Some("image/png"));
    assert_eq!(
        plain.header("etag"),
        Some(format!("\"{}\"", sha256(&original)).as_str())
    );
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=2592000")
    );
    assert_eq!(plain.header("accept-ranges"), Some("bytes"));
    assert_eq!(plain.header("vary"), Some("Accept"));
    assert_eq!(plain.header("x-image-width"), Some("400"));
    assert_eq!(plain.header("x-image-height"), Some("300"));
    assert_eq!(
        plain.header("x-blurhash"),
        file["storage_meta"]["blur_hash"].as_str()
    );
    assert_eq!(plain.header("x-content-type-options"), Some("nosniff"));
    assert!(plain.header("last-modified").is_some());

    // w=100: 100 pixels wide, rendered once, then served from storage.
    let before = rendered(&app).await;
    let first = get(&app, &cdn_path(&file, "w=100"), &[]).await;
    let image = decode(&first, image::ImageFormat::Png);
    assert_eq!((image.width(), image.height()), (100, 75));
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.header("accept-ranges"), Some("none"));
    assert_eq!(first.header("x-image-width"), Some("400"), "the original's");
    let key = variant_key(&space, &file, &[("w", "100")], media::Format::Png);
    let stored = app.storage.open().read_all(&key).await.unwrap();
    assert_eq!(stored, first.body, "stored beside the original");
    let second = get(&app, &cdn_path(&file, "w=100"), &[]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("etag"), first.header("etag"));
    assert_ne!(second.header("etag"), plain.header("etag"));
    assert_eq!(rendered(&app).await, before + 1, "rendered once");

    // f=webp, and WebP negotiated from Accept without f.
    let webp = get(&app, &cdn_path(&file, "f=webp&w=200"), &[]).await;
    let image = decode(&webp, image::ImageFormat::WebP);
    assert_eq!((image.width(), image.height()), (200, 150));
    let accept = [("accept", "image/avif,image/webp,image/*;q=0.8")];
    let negotiated = get(&app, &cdn_path(&file, "w=120"), &accept).await;
    let image = decode(&negotiated, image::ImageFormat::WebP);
    assert_eq!(image.width(), 120);
    assert_eq!(negotiated.header("vary"), Some("Accept"));
    let whole = get(&app, &cdn_path(&file, ""), &accept).await;
    let image = decode(&whole, image::ImageFormat::WebP);
    assert_eq!((image.width(), image.height()), (400, 300));
    // An explicit f does not depend on Accept.
    assert_eq!(webp.header("vary"), None);
    let jpeg_out = get(
        &app,
        &cdn_path(&file, "w=64&h=64&r=fill&f=jpeg&q=70"),
        &accept,
    )
    .await;
    let image = decode(&jpeg_out, image::ImageFormat::Jpeg);
    assert_eq!((image.width(), image.height()), (64, 64));

    // Conditional requests: 304 before any storage is read.
    let etag = first.header("etag").unwrap().to_owned();
    let cached = get(&app, &cdn_path(&file, "w=100"), &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    assert_eq!(
        cached.header("cache-control"),
        Some("public, max-age=2592000")
    );
    let plain_etag = plain.header("etag").unwrap();
    let cached = get(&app, &cdn_path(&file, ""), &[("if-none-match", plain_etag)]).await;
    assert_eq!(cached.status, 304);
    let stale = get(
        &app,
        &cdn_path(&file, "w=100"),
        &[("if-none-match", "\"old\"")],
    )
    .await;
    assert_eq!(stale.status, 200);
    let since = plain.header("last-modified").unwrap();
    let cached = get(&app, &cdn_path(&file, ""), &[("if-modified-since", since)]).await;
    assert_eq!(cached.status, 304);

    // HEAD: the headers of GET, no body.
    let head = fetch(&app, None, Method::HEAD, &cdn_path(&file, "w=100"), &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );
    assert_eq!(head.header("etag"), Some(etag.as_str()));

    // Concurrent first requests for one variant share one rendering.
    let before = rendered(&app).await;
    let path = cdn_path(&file, "w=77&q=60");
    let answers = futures_util::future::join_all((0..6).map(|_| get(&app, &path, &[]))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, answers[0].body);
    }
    assert_eq!(
        rendered(&app).await,
        before + 1,
        "one rendering for six requests"
    );

    // Deleting the file removes its variants, and it is gone from the CDN.
    let deleted = app
        .delete(
            &me,
            &format!("/api/v1/files/{}", file["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.json());
    assert!(matches!(
        app.storage.open().head(&key).await,
        Err(StorageError::NotFound)
    ));
    cdn_error(
        &get(&app, &cdn_path(&file, "w=100"), &[]).await,
        404,
        "NotFoundError",
    );
}

db_test!(cdn_errors_speak_tuzzles_cdn_shape, errors);
async fn errors(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Errors").await;
    let file = upload(&app, &me, &space, "photo.png", &png(40, 30)).await;

    let invalid = get(&app, &cdn_path(&file, "w=0&r=sideways&f=avif&q=500"), &[]).await;
    let body = cdn_error(&invalid, 422, "ValidationError");
    assert_eq!(body["error"]["message"], "Invalid modifiers");
    for field in ["w", "r", "f", "q"] {
        assert!(
            body["error"]["details"][field].is_string(),
            "{field}: {body}"
        );
    }
    let header: Value = serde_json::from_str(invalid.header("x-tzzl-errors").unwrap()).unwrap();
    assert_eq!(header, body["error"]["details"]);
    // Crop needs both sides; a WebP beyond 2000 pixels is refused in scale mode.
    let crop = get(&app, &cdn_path(&file, "w=10&r=crop"), &[]).await;
    assert!(cdn_error(&crop, 422, "ValidationError")["error"]["details"]["r"].is_string());
    let wide = get(&app, &cdn_path(&file, "w=3000&h=10&r=scale&f=webp"), &[]).await;
    assert!(cdn_error(&wide, 422, "ValidationError")["error"]["details"]["f"].is_string());

    let handle = &space.handle;
    cdn_error(
        &get(&app, &format!("/cdn/{handle}/no-such-file"), &[]).await,
        404,
        "NotFoundError",
    );
    cdn_error(
        &get(&app, "/cdn/zzzzzz/no-such-file", &[]).await,
        404,
        "NotFoundError",
    );
    cdn_error(
        &get(&app, "/cdn/NOT_A_HANDLE/x", &[]).await,
        404,
        "NotFoundError",
    );
    // (`%2e%2e` alone is `..` to URL parsers, which resolve it before sending.)
    for traversal in ["%2e%2e%2Fsecret", "a%2Fb", "%00", "..%5Cx", "x%0A"] {
        let answer = get(&app, &format!("/cdn/{handle}/{traversal}"), &[]).await;
        cdn_error(&answer, 400, "InvalidPathError");
    }
    // Another space's name under this handle is not found.
    let other = crate::helpers::space(&app, &me, "Other").await;
    let elsewhere = upload(&app, &me, &other, "x.png", &png(8, 8)).await;
    let name = elsewhere["name"].as_str().unwrap();
    cdn_error(
        &get(&app, &format!("/cdn/{handle}/{name}"), &[]).await,
        404,
        "NotFoundError",
    );

    // Files that are not images are served as they are, parameters ignored.
    configure(
        &app,
        &me,
        &space.config,
        json!({"config": {"validation": {"allowed_formats": null}}}),
    )
    .await;
    let text = b"plain text, no pixels".to_vec();
    let doc = upload(&app, &me, &space, "notes.txt", &text).await;
    let served = get(&app, &cdn_path(&doc, "w=100&f=webp"), &[]).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.body, text);
    assert_eq!(served.header("content-type"), doc["mime_type"].as_str());
    assert_eq!(served.header("x-image-width"), None);
    assert!(
        served
            .header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );

    // A disabled space serves nothing.
    let disabled = app
        .put(
            &me,
            &format!("/api/v1/spaces/{}", space.id),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.json());
    let refused = get(&app, &cdn_path(&file, ""), &[]).await;
    assert_eq!(
        cdn_error(&refused, 403, "AuthorizationError")["error"]["details"]["reason"],
        "space_disabled"
    );
}

content_test!(
    private_files_need_a_credential_or_a_signed_url,
    private_files
);
async fn private_files(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let workspace = new_workspace();
    let me = member(&workspace);
    let space = configured_space(&app, &me, "Private", json!({"delivery_type": "private"})).await;
    let original = png(300, 200);
    let file = upload(&app, &me, &space, "secret.png", &original).await;
    assert_eq!(file["type"], "private");
    let path = cdn_path(&file, "");

    // Anonymous: refused, in the CDN shape.
    let refused = get(&app, &path, &[]).await;
    assert_eq!(
        cdn_error(&refused, 403, "AuthorizationError")["error"]["details"]["reason"],
        "unsigned"
    );
    let head = fetch(&app, None, Method::HEAD, &path, &[]).await;
    assert_eq!(head.status, 403);
    // A credential for the space: served, privately.
    let mine = fetch(&app, Some(&me), Method::GET, &path, &[]).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body, original);
    assert_eq!(mine.header("cache-control"), Some("private, no-cache"));
    let key = app.mint_key(&me, &space.id, "cdn").await;
    let as_key = app.as_key(&key).await;
    let variant = fetch(
        &app,
        Some(&as_key),
        Method::GET,
        &cdn_path(&file, "w=30"),
        &[],
    )
    .await;
    assert_eq!(decode(&variant, image::ImageFormat::Png).width(), 30);
    // Another workspace's credential learns nothing: 404.
    let stranger = member(&new_workspace());
    cdn_error(
        &fetch(&app, Some(&stranger), Method::GET, &path, &[]).await,
        404,
        "NotFoundError",
    );
    // Another space's key neither.
    let other = crate::helpers::space(&app, &me, "Elsewhere").await.id;
    let other_key = app.mint_key(&me, &other, "other").await;
    let as_other = app.as_key(&other_key).await;
    cdn_error(
        &fetch(&app, Some(&as_other), Method::GET, &path, &[]).await,
        404,
        "NotFoundError",
    );

    // A signed URL (with its transforms) serves anyone until it expires.
    let answer = app
        .post(
            &me,
            &format!("/api/v1/files/{}/signed-url", file["id"].as_str().unwrap()),
            json!({"expires_in": 600, "transformations": {"w": 50, "f": "webp"}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let url = url::Url::parse(answer.json()["data"]["url"].as_str().unwrap()).unwrap();
    let signed = format!("{}?{}", url.path(), url.query().unwrap());
    let served = get(&app, &signed, &[]).await;
    let image = decode(&served, image::ImageFormat::WebP);
    assert_eq!(image.width(), 50);
    let max_age: u64 = served
        .header("cache-control")
        .and_then(|c| c.strip_prefix("public, max-age="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", served.header("cache-control")));
    assert!((590..=600).contains(&max_age), "{max_age}");
    // Altered: refused.
    for tampered in [
        signed.replace("w=50", "w=51"),
        signed.replace("signature=", "signature=0"),
        format!("{signed}&h=10"),
        signed.replace(
            &format!("{}/", space.handle),
            &format!("{}/x", space.handle),
        ),
    ] {
        let answer = get(&app, &tampered, &[]).await;
        if answer.status == 404 {
            continue; // the altered path names no file
        }
        assert_eq!(
            cdn_error(&answer, 403, "AuthorizationError")["error"]["details"]["reason"],
            "invalid_signature",
            "{tampered}"
        );
    }
    // Expired: refused.
    let delivery = Delivery::new(&app.config.delivery, &app.keys());
    let short = delivery.signed_url(file["storage_path"].as_str().unwrap(), &[], Some(1));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let url = url::Url::parse(&short.url).unwrap();
    let expired = get(
        &app,
        &format!("{}?{}", url.path(), url.query().unwrap()),
        &[],
    )
    .await;
    assert_eq!(
        cdn_error(&expired, 403, "AuthorizationError")["error"]["details"]["reason"],
        "expired"
    );

    // A public file in a space that requires auth: refused anonymously too.
    let public_space = crate::helpers::space(&app, &me, "Members only").await.id;
    let answer = app
        .put(
            &me,
            &format!("/api/v1/spaces/{public_space}/access-control"),
            json!({"access_control": {"requires_auth": true}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let members_only = Space::from_data(&answer.json()["data"]);
    let guarded = upload(&app, &me, &members_only, "m.png", &png(8, 8)).await;
    assert_eq!(guarded["type"], "upload");
    cdn_error(
        &get(&app, &cdn_path(&guarded, ""), &[]).await,
        403,
        "AuthorizationError",
    );
    assert_eq!(
        fetch(&app, Some(&me), Method::GET, &cdn_path(&guarded, ""), &[])
            .await
            .status,
        200
    );
}

content_test!(files_are_served_by_byte_ranges, ranges);
async fn ranges(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = configured_space(
        &app,
        &me,
        "Files",
        json!({"config": {"validation": {"allowed_formats": null}}}),
    )
    .await;
    let bytes = noise(300_000, 9);
    let file = upload(&app, &me, &space, "data.bin", &bytes).await;
    let path = cdn_path(&file, "");
    let size = bytes.len();

    let whole = get(&app, &path, &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, bytes);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        whole.header("content-length"),
        Some(size.to_string().as_str())
    );
    let etag = whole.header("etag").unwrap().to_owned();

    for (range, expected) in [
        ("bytes=10-19", 10..20),
        ("bytes=-5", size - 5..size),
        ("bytes=299990-", 299_990..size),
        ("bytes=100000-999999999", 100_000..size),
    ] {
        let part = get(&app, &path, &[("range", range)]).await;
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.body, &bytes[expected.clone()], "{range}");
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {}-{}/{size}", expected.start, expected.end - 1).as_str()),
            "{range}"
        );
        assert_eq!(
            part.header("content-length"),
            Some(expected.len().to_string().as_str())
        );
        assert_eq!(part.header("etag"), Some(etag.as_str()));
    }
    let beyond = get(&app, &path, &[("range", &format!("bytes={size}-"))]).await;
    cdn_error(&beyond, 416, "RangeNotSatisfiableError");
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    // If-Range: the part while the tag is current, else the whole file.
    let current = get(&app, &path, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!((current.status, current.body.len()), (206, 10));
    let stale = get(
        &app,
        &path,
        &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!((stale.status, stale.body.len()), (200, size));
    // Several ranges: the whole file (allowed by RFC 9110).
    let several = get(&app, &path, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!((several.status, several.body.len()), (200, size));
    let head = fetch(&app, None, Method::HEAD, &path, &[("range", "bytes=0-99")]).await;
    assert_eq!(head.status, 206);
    assert_eq!(head.header("content-length"), Some("100"));
    assert!(head.body.is_empty());
}

content_test!(
    gps_is_gone_from_delivered_images_after_strip_metadata,
    stripped
);
async fn stripped(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = configured_space(
        &app,
        &me,
        "Holidays",
        json!({"config": {"transformations": {"strip_metadata": true}}}),
    )
    .await;
    let original = with_gps(&jpeg(64, 48));
    assert!(has_gps(&original), "the fixture carries GPS");
    let file = upload(&app, &me, &space, "holiday.jpg", &original).await;
    for query in ["", "w=32", "f=png"] {
        let served = get(&app, &cdn_path(&file, query), &[]).await;
        assert_eq!(served.status, 200, "{query}");
        assert!(!has_gps(&served.body), "GPS delivered with {query:?}");
        image::load_from_memory(&served.body).unwrap();
    }
}

/// An `http` server on loopback that answers every request with `body` (a
/// watermark image) and counts the requests.
struct MarkServer {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn mark_server(body: Vec<u8>) -> MarkServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mark.png", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (body, counted) = (body.clone(), counted.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    MarkServer { url, hits }
}

/// A `width`×`height` PNG of one colour.
fn solid(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(width, height, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn near(pixel: image::Rgba<u8>, rgb: [u8; 3]) -> bool {
    pixel.0[..3]
        .iter()
        .zip(rgb)
        .all(|(a, b)| a.abs_diff(b) <= 12)
}

const BLUE: [u8; 3] = [20, 40, 220];
const RED: [u8; 3] = [230, 10, 10];

db_test!(
    the_spaces_watermark_is_laid_over_delivered_images,
    watermarks
);
async fn watermarks(kind: DbKind) {
    let app = TestSpaces::start_with(kind, CacheKind::Memory, |c| {
        c.watermarks.allow_private_targets = true;
    })
    .await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Branded").await;
    let marks = mark_server(solid(40, 40, RED)).await;
    let file = upload(&app, &me, &space, "blue.png", &solid(400, 300, BLUE)).await;
    let unmarked = get(&app, &cdn_path(&file, "f=png"), &[]).await;
    let image = decode(&unmarked, image::ImageFormat::Png).to_rgba8();
    assert!(near(*image.get_pixel(390, 290), BLUE));

    let security = |position: &str, opacity: f64| {
        json!({"security": {"watermark": {
            "enabled": true, "url": marks.url, "position": position, "opacity": opacity,
        }}})
    };
    let set = app
        .put(
            &me,
            &format!("/api/v1/spaces/{}/security", space.id),
            security("southeast", 1.0),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.json());

    // Variants and the original alike carry the mark, at its position only.
    for query in ["f=png", "", "w=200&f=png"] {
        let served = get(&app, &cdn_path(&file, query), &[]).await;
        let image = decode(&served, image::ImageFormat::Png).to_rgba8();
        let (w, h) = image.dimensions();
        assert!(
            near(*image.get_pixel(w - 12, h - 12), RED),
            "{query}: the south-east corner"
        );
        assert!(
            near(*image.get_pixel(10, 10), BLUE),
            "{query}: the north-west corner"
        );
        assert!(
            near(*image.get_pixel(w / 2, h / 2), BLUE),
            "{query}: the centre"
        );
    }
    assert_ne!(
        get(&app, &cdn_path(&file, "f=png"), &[])
            .await
            .header("etag"),
        unmarked.header("etag"),
        "a watermarked variant is another representation"
    );
    assert_eq!(
        marks.hits.load(Ordering::SeqCst),
        1,
        "fetched once, decoded once"
    );

    // Moved: new variants, the mark where it was asked.
    let moved = app
        .put(
            &me,
            &format!("/api/v1/spaces/{}/security", space.id),
            security("northwest", 1.0),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.json());
    let served = get(&app, &cdn_path(&file, "f=png"), &[]).await;
    let image = decode(&served, image::ImageFormat::Png).to_rgba8();
    assert!(near(*image.get_pixel(12, 12), RED));
    assert!(near(*image.get_pixel(388, 288), BLUE));
    assert_eq!(served.header("x-cache"), Some("MISS"));

    // Unreachable: images are not served without the mark.
    let gone = app
        .put(
            &me,
            &format!("/api/v1/spaces/{}/security", space.id),
            json!({"security": {"watermark": {"url": "http://127.0.0.1:9/none.png"}}}),
        )
        .await;
    assert_eq!(gone.status, 200, "{}", gone.json());
    let refused = get(&app, &cdn_path(&file, "w=50"), &[]).await;
    let body = cdn_error(&refused, 503, "ServiceUnavailableError");
    assert!(refused.header("retry-after").is_some(), "{body}");
    // Non-images are not affected.
    configure(
        &app,
        &me,
        &space.config,
        json!({"config": {"validation": {"allowed_formats": null}}}),
    )
    .await;
    let doc = upload(&app, &me, &space, "a.txt", b"text").await;
    assert_eq!(get(&app, &cdn_path(&doc, ""), &[]).await.status, 200);
}

db_test!(
    watermark_urls_must_be_public_https_by_default,
    watermark_urls
);
async fn watermark_urls(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Strict").await;
    for url in [
        "http://127.0.0.1:8000/mark.png",
        "https://10.0.0.1/mark.png",
    ] {
        let answer = app
            .put(
                &me,
                &format!("/api/v1/spaces/{}/security", space.id),
                json!({"security": {"watermark": {"enabled": true, "url": url}}}),
            )
            .await;
        assert_eq!(
            crate::helpers::fields(&answer),
            ["security.watermark.url"],
            "{url}"
        );
    }
}

db_test!(transforms_are_bounded_in_concurrency_and_time, bounded);
async fn bounded(kind: DbKind) {
    let app = TestSpaces::start_with(kind, CacheKind::Memory, |c| {
        c.delivery.transform_wait_ms = 0;
        c.delivery.transform_timeout_ms = 100;
    })
    .await;
    let me = member(&new_workspace());
    let space = configured_space(&app, &me, "Heavy", json!({"config": {"validation": {"allowed_formats": null, "max_file_size": 64 * 1024 * 1024}}})).await;
    // Noise does not compress: decoding it takes a while.
    let file = upload(&app, &me, &space, "noise.png", &noisy_png(2000, 2000)).await;

    // Past the time budget: 504 with Retry-After; the rendering goes on and
    // is stored for the next request.
    let slow = get(&app, &cdn_path(&file, "w=500"), &[]).await;
    cdn_error(&slow, 504, "TimeoutError");
    assert!(slow.header("retry-after").is_some());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let again = get(&app, &cdn_path(&file, "w=500"), &[]).await;
        if again.status == 200 {
            // Waited for the rendering the first request started, or read
            // from storage once it was done: either way, not rendered again.
            assert_eq!(decode(&again, image::ImageFormat::Png).width(), 500);
            break;
        }
        assert!(Instant::now() < deadline, "never stored: {}", again.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rendered(&app).await, 1);
    let stored = get(&app, &cdn_path(&file, "w=500"), &[]).await;
    assert_eq!(stored.header("x-cache"), Some("HIT"));

    // More first requests than transform slots, none waiting: the ones
    // without a slot are told to come back (503, Retry-After).
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
    let paths: Vec<String> = (0..2 * slots + 4)
        .map(|i| cdn_path(&file, &format!("w={}", 300 + i)))
        .collect();
    let answers = futures_util::future::join_all(paths.iter().map(|p| get(&app, p, &[]))).await;
    let mut busy = 0;
    for answer in &answers {
        match answer.status {
            503 => {
                let body = cdn_error(answer, 503, "ServerBusyError");
                assert_eq!(body["error"]["message"], "Server busy, try again later");
                assert_eq!(answer.header("retry-after"), Some("1"));
                busy += 1;
            }
            504 => {
                cdn_error(answer, 504, "TimeoutError");
            }
            200 => {}
            other => panic!("{other}: {}", String::from_utf8_lossy(&answer.body)),
        }
    }
    assert!(busy >= 1, "no request was turned away");
    assert!(busy < answers.len(), "every request was turned away");
    assert!(counter(&app, "cdn_transforms_total", "outcome=\"busy\"").await >= busy as u64);
}

#[tokio::test]
async fn a_stored_original_keeps_its_bytes_through_the_cdn() {
    let app = TestSpaces::start(DbKind::Sqlite).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Bytes").await;
    let original = jpeg(320, 240);
    let file = upload(&app, &me, &space, "photo.jpg", &original).await;
    let served = get(&app, &cdn_path(&file, ""), &[("accept", "image/jpeg")]).await;
    assert_eq!(served.status, 200);
    assert_eq!(sha256(&served.body), sha256(&original));
    assert_eq!(served.header("content-type"), Some("image/jpeg"));
}

#[tokio::test]
async fn cdn_answers_fit_the_document() {
    let doc = spaces_service::openapi::document().to_json().unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let app = TestSpaces::start(DbKind::Sqlite).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Documented").await;
    let file = upload(&app, &me, &space, "photo.png", &png(40, 30)).await;
    let route = "/cdn/{handle}/{name}";
    let etag = get(&app, &cdn_path(&file, ""), &[]).await;
    let etag = etag.header("etag").unwrap();
    for (query, headers) in [
        ("w=0&f=avif", vec![]),
        ("", vec![("if-none-match", etag)]),
        ("", vec![("range", "bytes=999999-")]),
    ] {
        let answer = get(&app, &cdn_path(&file, query), &headers).await;
        testkit::openapi::assert_response(&doc, "get", route, &answer);
    }
    let missing = get(&app, &format!("/cdn/{}/nothing", space.handle), &[]).await;
    testkit::openapi::assert_response(&doc, "get", route, &missing);
    let traversal = get(&app, &format!("/cdn/{}/a%2Fb", space.handle), &[]).await;
    testkit::openapi::assert_response(&doc, "get", route, &traversal);
    let head = fetch(&app, None, Method::HEAD, &cdn_path(&file, ""), &[]).await;
    testkit::openapi::assert_response(&doc, "head", route, &head);
}

cache_test!(changes_reach_every_replicas_cdn_at_once, replicas);
async fn replicas(cache: CacheKind) {
    // Two replicas on one database, store and cache bus, each remembering
    // what it looked up for an hour: only the bus can make them forget.
    let remember = |config: &mut spaces_service::config::SpacesConfig| {
        config.delivery.cache_ttl_secs = 3600;
    };
    let a = TestSpaces::start_with(DbKind::Sqlite, cache, remember).await;
    let (secret, storage) = (a.config.secret.key.clone(), a.config.storage.clone());
    let b = testkit::part::start_part_with::<spaces_service::SpacesService>(
        Some(&a.db),
        &a.cache,
        move |config| {
            crate::helpers::isolate(config);
            config.secret.key = secret;
            config.storage = storage;
            remember(config);
        },
    )
    .await;
    let me = member(&new_workspace());
    let space = space(&a, &me, "Shared").await;
    let file = upload(&a, &me, &space, "p.png", &png(16, 16)).await;
    let file_id = file["id"].as_str().unwrap();
    let path = cdn_path(&file, "w=8&f=png");
    assert_eq!(get(&a, &path, &[]).await.status, 200);
    assert_eq!(anonymous_status(&b, &path).await, 200);

    // Made private on one replica: refused on both, at once on the one that
    // made the change, as soon as the bus delivers on the other.
    let private = a
        .put(
            &me,
            &format!("/api/v1/files/{file_id}/access-control"),
            json!({"access_control": {"public_read": false}}),
        )
        .await;
    assert_eq!(private.status, 200, "{}", private.json());
    cdn_error(&get(&a, &path, &[]).await, 403, "AuthorizationError");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = anonymous_status(&b, &path).await;
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < deadline,
            "the other replica still serves it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Deleted: gone from both.
    let deleted = a.delete(&me, &format!("/api/v1/files/{file_id}")).await;
    assert_eq!(deleted.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while anonymous_status(&b, &path).await != 404 {
        assert!(
            Instant::now() < deadline,
            "the other replica still knows it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&a, &path, &[]).await.status, 404);
}

/// The status of an anonymous `GET path` at a replica without a test harness.
async fn anonymous_status(server: &testkit::TestServer, path: &str) -> u16 {
    let token = testkit::identity::token(&Identity::anonymous(), "spaces-service");
    let request = server
        .client
        .get(server.url(path))
        .header(identity::HEADER, token);
    server.send(request).await.status
}
