//! The Upload API end to end over HTTP, on the filesystem store (SQLite and
//! PostgreSQL) and on S3: direct uploads of one and several files, signed,
//! unsigned and presigned ones; each stores exactly the bytes sent, records
//! its row and `file.uploaded`; and the refusals.

use crate::content_test;
use crate::helpers::{
    Multipart, StorageKind, TestSpaces, configure, configured_space, created, jpeg, member, mp4,
    new_workspace, noisy_png, png, sha256, space,
};
use diesel::prelude::*;
use events::outbox::outbox;
use identity::Identity;
use serde_json::{Value, json};
use store::StoreError;
use testkit::reqwest::Method;
use testkit::{DbKind, TestResponse};

/// The path and query of a URL the service made (which starts with
/// `uploads.public_url`, the gateway's address).
pub fn path_of(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Asserts a refusal: its status and Tuzzle's message.
pub fn refused(answer: &TestResponse, status: u16, message: &str) {
    let body = answer.json();
    assert_eq!(answer.status, status, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

/// The bytes stored for the file `data` (its `object_key`), hashed.
async fn stored_hash(app: &TestSpaces, data: &Value) -> String {
    let key = data["object_key"].as_str().unwrap();
    app.storage.open().digest(key).await.unwrap().sha256
}

/// `file.uploaded` events recorded, oldest first: their data.
async fn uploaded_events(app: &TestSpaces) -> Vec<Value> {
    let db = store::Database::connect(&app.db.config()).await.unwrap();
    db.run(|conn| {
        outbox::table
            .filter(outbox::event_type.eq("file.uploaded"))
            .order(outbox::seq.asc())
            .select(outbox::data)
            .load::<String>(conn)
            .map_err(StoreError::from)
    })
    .await
    .unwrap()
    .into_iter()
    .map(|d| serde_json::from_str(&d).unwrap())
    .collect()
}

content_test!(a_direct_upload_stores_the_bytes_sent, direct_upload);
async fn direct_upload(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Photos").await;
    let answer = app
        .put(
            &me,
            &format!("/api/v1/spaces/{}", space.id),
            json!({"webhook_url": "https://hooks.example.com/uploads"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    configure(
        &app,
        &me,
        &space.config,
        json!({"config": {"notifications": {"webhook_url": "https://hooks.example.com/uploads"}}}),
    )
    .await;
    let bytes = png(40, 30);
    // As Tuzzle's example sends it: the file first, then the space.
    let form = Multipart::new()
        .file("file", "photo.png", "image/png", &bytes)
        .text("space", &space.handle);
    let data = app.upload_ok(&me, form).await;
    let id = data["id"].as_str().unwrap();
    assert!(id.starts_with("fil_"), "{data}");
    let name = data["name"].as_str().unwrap();
    assert_eq!(name, format!("image-{}", &id[4..]));
    assert_eq!(data["original_name"], "photo.png");
    assert_eq!(data["mime_type"], "image/png");
    assert_eq!(data["size"], bytes.len());
    assert_eq!(data["storage_path"], format!("{}/{name}", space.handle));
    assert_eq!(data["object_key"], format!("{}/{id}", space.handle));
    assert_eq!(data["type"], "upload");
    assert_eq!(data["resource_type"], "image");
    assert_eq!(data["status"], "active");
    assert_eq!(data["extension"], "png");
    assert_eq!(data["storage_meta"]["width"], 40);
    assert_eq!(data["storage_meta"]["height"], 30);
    assert!(
        data["storage_meta"]["blur_hash"]
            .as_str()
            .is_some_and(|h| h.len() >= 6),
        "{data}"
    );
    assert_eq!(
        data["url"],
        format!("http://127.0.0.1:8080/cdn/{}/{name}", space.handle)
    );
    assert_eq!(data["hash"], sha256(&bytes));
    assert_eq!(stored_hash(&app, &data).await, sha256(&bytes));

    let got = app.get(&me, &format!("/api/v1/files/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["data"], data);

    // Recorded with the row: one event, the two webhook URLs given once.
    let events = uploaded_events(&app).await;
    assert_eq!(
        events,
        [json!({
            "file": {
                "id": id,
                "name": name,
                "original_name": "photo.png",
                "mime_type": "image/png",
                "size": bytes.len(),
                "storage_path": data["storage_path"],
                "type": "upload",
                "resource_type": "image",
                "space_id": space.id,
            },
            "webhook_urls": ["https://hooks.example.com/uploads"],
        })]
    );
}

content_test!(several_files_upload_together, several_files);
async fn several_files(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Documents").await;
    // A config that takes anything safe, keeps names and makes them unique.
    configure(
        &app,
        &me,
        &space.config,
        json!({"config": {"validation": {"allowed_formats": null},
                          "storage": {"generate_filename": false, "unique_filename": true}}}),
    )
    .await;
    let (a, b) = (png(8, 8), b"id,name\n1,Ada\n".to_vec());
    let form = Multipart::new()
        .text("space", &space.handle)
        .text("folder_path", "reports/2024/")
        .file("files[]", "chart.png", "image/png", &a)
        .file("files[]", "people.csv", "text/csv", &b);
    let answer = app.upload(Some(&me), "/api/v1/upload", form).await;
    let data = created(&answer);
    let files = data.as_array().expect("files[] answers a list");
    assert_eq!(files.len(), 2);
    for (file, bytes, name, mime, kind) in [
        (&files[0], &a, "chart.png", "image/png", "image"),
        (&files[1], &b, "people.csv", "text/csv", "text"),
    ] {
        assert_eq!(file["name"], name);
        assert_eq!(file["original_name"], name);
        assert_eq!(file["mime_type"], mime);
        assert_eq!(file["resource_type"], kind);
        assert_eq!(file["folder_path"], "reports/2024/");
        assert_eq!(file["hash"], sha256(bytes));
        assert_eq!(stored_hash(&app, file).await, sha256(bytes));
    }
    assert_ne!(files[0]["id"], files[1]["id"]);
    assert_eq!(files[0]["folder_id"], files[1]["folder_id"]);
    assert_eq!(uploaded_events(&app).await.len(), 2);

    // The same name again: made unique.
    let again =
        Multipart::new()
            .text("space", &space.handle)
            .file("file", "people.csv", "text/csv", &b);
    let data = app.upload_ok(&me, again).await;
    assert_eq!(data["name"], "people-2.csv");
    assert_eq!(data["original_name"], "people.csv");
    assert!(data["folder_path"].is_null());
}

content_test!(signed_upload_urls_work_until_they_expire, signed_uploads);
async fn signed_uploads(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Signed").await;
    // `starter` is a signed config.
    let answer = app
        .post(
            &me,
            "/api/v1/upload/generate-signed-url",
            json!({"upload_config_id": space.config, "expiration_minutes": 30,
                   "filename": "avatar.jpg", "content_type": "image/jpeg"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let signed = answer.json()["data"].clone();
    let url = signed["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:8080/api/v1/upload/signed?"),
        "{url}"
    );
    let expires = signed["expires"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 29 * 60..=now + 30 * 60).contains(&expires),
        "{signed}"
    );
    let path = path_of(url);
    let bytes = jpeg(16, 16);
    let form = || {
        Multipart::new()
            .file("file", "IMG_0001.JPG", "image/jpeg", &bytes)
            .text("upload_config_id", &space.config)
            .text("space_id", &space.id)
    };
    // No credential: the signature authorises.
    let data = created(&app.upload(None, &path, form()).await);
    assert_eq!(data["original_name"], "avatar.jpg");
    assert_eq!(data["mime_type"], "image/jpeg");
    assert_eq!(stored_hash(&app, &data).await, sha256(&bytes));

    // Altered: another expiry, an added parameter, another config.
    for tampered in [
        path.replace(
            &format!("expires={expires}"),
            &format!("expires={}", expires + 60),
        ),
        format!("{path}&folder_path=x"),
        path.replace("filename=avatar.jpg", "filename=other.jpg"),
    ] {
        let answer = app.upload(None, &tampered, form()).await;
        refused(&answer, 403, "Forbidden.");
    }
    // Expired: signed with the service's key an hour ago.
    let keys = app.keys();
    let query = spaces_service::signed_urls::sign(
        keys.upload_url_key(),
        "/api/v1/upload/signed",
        &[
            ("upload_config_id".into(), space.config.clone()),
            ("space_id".into(), space.id.clone()),
        ],
        now - 3600,
    );
    let expired = app
        .upload(None, &format!("/api/v1/upload/signed?{query}"), form())
        .await;
    refused(&expired, 403, "Forbidden.");
    // The same, unexpired, works: only the expiry was wrong.
    let query = spaces_service::signed_urls::sign(
        keys.upload_url_key(),
        "/api/v1/upload/signed",
        &[
            ("upload_config_id".into(), space.config.clone()),
            ("space_id".into(), space.id.clone()),
        ],
        now + 60,
    );
    created(
        &app.upload(None, &format!("/api/v1/upload/signed?{query}"), form())
            .await,
    );
    // The URL's content type is enforced: a PNG is refused.
    let png_form = Multipart::new().file("file", "a.png", "image/png", &png(4, 4));
    refused(
        &app.upload(None, &path, png_form).await,
        422,
        "File type not allowed.",
    );
    // A config that is not signed cannot make signed URLs.
    configure(&app, &me, &space.config, json!({"is_signed": false})).await;
    let answer = app
        .post(
            &me,
            "/api/v1/upload/generate-signed-url",
            json!({"upload_config_id": space.config}),
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.json());
    refused(&app.upload(None, &path, form()).await, 403, "Forbidden.");
}

content_test!(unsigned_uploads_follow_their_restrictions, unsigned_uploads);
async fn unsigned_uploads(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Public").await;
    let made = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({"space_id": space.id, "name": "user-avatars", "allow_unsigned": true,
                   "config": {"validation": {"allowed_formats": "jpg,png"}},
                   "unsigned_restrictions": {"allowed_referrers": ["example.com", "*.example.com"],
                                             "require_https": true, "max_uploads_per_hour": 2}}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.json());
    let path = format!("/api/v1/upload/unsigned/{}/user-avatars", space.handle);
    let bytes = png(10, 10);
    let form = || Multipart::new().file("file", "me.png", "image/png", &bytes);
    let https = ("x-forwarded-proto", "https");
    let send = |referer: &'static str, proto: (&'static str, &'static str)| {
        let app = &app;
        let path = path.clone();
        let form = form();
        async move {
            let mut headers = vec![proto];
            if !referer.is_empty() {
                headers.push(("referer", referer));
            }
            app.upload_with(None, &path, form, &headers).await
        }
    };
    // Referrers not allowed, none at all, plain http: refused, uncounted.
    for (referer, proto) in [
        ("https://evil.example.org/form", https),
        ("https://example.com.evil.org/", https),
        ("", https),
        (
            "https://app.example.com/form",
            ("x-forwarded-proto", "http"),
        ),
    ] {
        refused(&send(referer, proto).await, 403, "Forbidden.");
    }
    let first = created(&send("https://app.example.com/form", https).await);
    assert_eq!(stored_hash(&app, &first).await, sha256(&bytes));
    created(&send("https://example.com/", https).await);
    // The third of the hour is one too many.
    let third = send("https://example.com/", https).await;
    assert_eq!(third.status, 429, "{}", third.json());
    assert!(
        third
            .header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s > 0)
    );
    // Configs without allow_unsigned take none; unknown configs are 404.
    let starter = format!("/api/v1/upload/unsigned/{}/starter", space.handle);
    let answer = app
        .upload_with(
            None,
            &starter,
            form(),
            &[("referer", "https://example.com/"), https],
        )
        .await;
    refused(&answer, 403, "Forbidden.");
    let missing = format!("/api/v1/upload/unsigned/{}/nope", space.handle);
    assert_eq!(app.upload(None, &missing, form()).await.status, 404);
}

content_test!(
    presigned_uploads_are_confirmed_against_the_stored_object,
    presigned
);
async fn presigned(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = configured_space(&app, &me, "Videos", json!({"config": {"validation": {"allowed_formats": "mp4,mov", "max_file_size": 1_000_000}}})).await;
    let bytes = mp4(200_000);
    let answer = app
        .post(
            &me,
            "/api/v1/upload/presign",
            json!({"space": space.handle, "filename": "large-video.mp4", "content_type": "video/mp4",
                   "size": bytes.len(), "ref": "clip-1"}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    let presigned = answer.json();
    let keys: std::collections::BTreeSet<&str> = presigned
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["expires_in", "file_id", "object_key", "upload_url"].into()
    );
    assert_eq!(presigned["expires_in"], 3600);
    let file_id = presigned["file_id"].as_str().unwrap().to_owned();
    assert_eq!(
        presigned["object_key"],
        format!("{}/{file_id}", space.handle)
    );
    let pending = app.get(&me, &format!("/api/v1/files/{file_id}")).await;
    assert_eq!(pending.json()["data"]["status"], "pending");
    assert!(pending.json()["data"]["hash"].is_null());
    let confirm = format!("/api/v1/upload/confirm/{file_id}");
    // Nothing stored yet.
    assert_eq!(app.post(&me, &confirm, json!({})).await.status, 422);

    let upload_url = presigned["upload_url"].as_str().unwrap();
    let put = |body: Vec<u8>| {
        let app = &app;
        let upload_url = upload_url.to_owned();
        async move {
            let request = match storage {
                // spaces-service's own signed PUT route, through the gateway.
                StorageKind::Filesystem => {
                    assert!(
                        upload_url.starts_with("http://127.0.0.1:8080/api/v1/upload/objects/"),
                        "{upload_url}"
                    );
                    app.request_as(&Identity::anonymous(), Method::PUT, &path_of(&upload_url))
                }
                // The store's own presigned URL.
                StorageKind::S3 => app.server.client.put(&upload_url),
            };
            app.server
                .send(request.header("content-type", "video/mp4").body(body))
                .await
        }
    };
    // A size other than announced is refused on confirmation (and removed).
    let short = put(bytes[..1000].to_vec()).await;
    assert_eq!(
        short.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&short.body)
    );
    let answer = app.post(&me, &confirm, json!({})).await;
    assert_eq!(answer.status, 422, "{}", answer.json());
    if storage == StorageKind::Filesystem {
        // More than announced is refused as it streams.
        let mut long = bytes.clone();
        long.extend_from_slice(b"more");
        refused(&put(long).await, 413, "File too large.");
        // An altered URL is refused.
        let altered = app
            .request_as(
                &Identity::anonymous(),
                Method::PUT,
                &path_of(upload_url).replace("expires=", "expires=1"),
            )
            .body(bytes.clone());
        assert_eq!(app.server.send(altered).await.status, 403);
    }
    let stored = put(bytes.clone()).await;
    assert_eq!(stored.status, 200);
    let answer = app.post(&me, &confirm, json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let data = answer.json()["data"].clone();
    assert_eq!(data["status"], "active");
    assert_eq!(data["mime_type"], "video/mp4");
    assert_eq!(data["resource_type"], "video");
    assert_eq!(data["ref"], "clip-1");
    assert_eq!(data["hash"], sha256(&bytes));
    assert_eq!(stored_hash(&app, &data).await, sha256(&bytes));
    assert_eq!(uploaded_events(&app).await.len(), 1);
    // Confirmed once.
    assert_eq!(app.post(&me, &confirm, json!({})).await.status, 409);
    let by_ref = app
        .get(
            &me,
            &format!("/api/v1/files/by-ref?space_id={}&ref=clip-1", space.id),
        )
        .await;
    assert_eq!(by_ref.json()["data"]["id"], file_id.as_str());

    // Announced too large, or of a format the config refuses.
    let answer = app
        .post(
            &me,
            "/api/v1/upload/presign",
            json!({"space": space.handle, "filename": "big.mp4", "content_type": "video/mp4", "size": 2_000_000}),
        )
        .await;
    refused(&answer, 413, "File too large.");
    let answer = app
        .post(
            &me,
            "/api/v1/upload/presign",
            json!({"space": space.handle, "filename": "notes.txt", "content_type": "text/plain", "size": 10}),
        )
        .await;
    refused(&answer, 422, "File type not allowed.");
}

/// What must be refused, and how: `(form, status, message)`.
async fn refusal(app: &TestSpaces, who: &Identity, form: Multipart, status: u16, message: &str) {
    let answer = app.upload(Some(who), "/api/v1/upload", form).await;
    refused(&answer, status, message);
}

/// The answer to `form` uploaded as `who`, which must have `status`.
async fn answered(app: &TestSpaces, who: &Identity, form: Multipart, status: u16) -> TestResponse {
    let answer = app.upload(Some(who), "/api/v1/upload", form).await;
    assert_eq!(answer.status, status, "{}", answer.json());
    answer
}

content_test!(refused_uploads_store_nothing, refusals);
async fn refusals(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = configured_space(
        &app,
        &me,
        "Strict",
        json!({"config": {"validation": {"max_file_size": 4096, "allowed_formats": "jpg,png",
                                         "min_image_width": 4, "max_image_width": 2000}}}),
    )
    .await;
    let h = space.handle.as_str();
    let form = || Multipart::new().text("space", h);
    // Far past the limit: refused as it streams; the client, still sending,
    // reads the answer.
    let mut huge = noisy_png(64, 64);
    huge.resize(8 << 20, 0);
    for (form, status, message) in [
        // Over the config's size, while it streams.
        (
            form().file("file", "big.png", "image/png", &noisy_png(64, 64)),
            413,
            "File too large.",
        ),
        (
            form().file("file", "huge.png", "image/png", &huge),
            413,
            "File too large.",
        ),
        // A PNG named .jpg is judged by its content.
        (
            form().file("file", "photo.jpg", "image/jpeg", &png(8, 8)),
            422,
            "File type not allowed.",
        ),
        // A format the config does not take.
        (
            form().file("file", "notes.csv", "text/csv", b"a,b\n"),
            422,
            "File type not allowed.",
        ),
        // A double extension that a server would execute.
        (
            form().file("file", "shell.php.jpg", "image/jpeg", &jpeg(8, 8)),
            422,
            "Security validation failed.",
        ),
    ] {
        refusal(&app, &me, form, status, message).await;
    }
    // Traversal in a name, in a folder path.
    answered(
        &app,
        &me,
        form().file("file", "../../etc/passwd.png", "image/png", &png(8, 8)),
        400,
    )
    .await;
    answered(
        &app,
        &me,
        form().text("folder_path", "photos/../../../etc").file(
            "file",
            "a.png",
            "image/png",
            &png(8, 8),
        ),
        400,
    )
    .await;
    // Dimension bounds.
    let answer = answered(
        &app,
        &me,
        form().file("file", "tiny.png", "image/png", &png(2, 2)),
        422,
    )
    .await;
    assert_eq!(
        answer.json()["errors"]["file"][0],
        "The file has invalid image dimensions."
    );
    // A decompression bomb: a small file whose header claims 100000² pixels.
    answered(
        &app,
        &me,
        form().file("file", "bomb.png", "image/png", &bomb_png()),
        422,
    )
    .await;
    // No file, no space.
    refusal(&app, &me, form(), 422, "The file field is required.").await;
    refusal(
        &app,
        &me,
        Multipart::new().file("file", "a.png", "image/png", &png(8, 8)),
        422,
        "The space field is required.",
    )
    .await;
    // Another workspace's space is not there.
    let stranger = member(&new_workspace());
    answered(
        &app,
        &stranger,
        form().file("file", "a.png", "image/png", &png(8, 8)),
        404,
    )
    .await;
    // Not multipart.
    let answer = app
        .call(
            &me,
            Method::POST,
            "/api/v1/upload",
            Some(json!({"space": h})),
        )
        .await;
    assert_eq!(answer.status, 415, "{}", answer.json());

    // Nothing of any of it was kept.
    let listed = app
        .get(&me, &format!("/api/v1/files?space_id={}", space.id))
        .await;
    assert_eq!(listed.json()["data"], json!([]));
    assert_eq!(
        app.storage
            .open()
            .delete_prefix(&space.handle)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        app.storage.open().delete_prefix("_incoming").await.unwrap(),
        0
    );
    // And a good file still goes through.
    let ok = app
        .upload(
            Some(&me),
            "/api/v1/upload",
            form().file("file", "fine.png", "image/png", &png(8, 8)),
        )
        .await;
    created(&ok);
}

/// A PNG whose header announces 100000×100000 pixels, in a few hundred bytes.
fn bomb_png() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
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

content_test!(strip_metadata_removes_exif_and_gps, strip_metadata);
async fn strip_metadata(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = configured_space(
        &app,
        &me,
        "Private photos",
        json!({"config": {"transformations": {"strip_metadata": true}}}),
    )
    .await;
    let original = with_gps(&jpeg(64, 48));
    assert!(has_gps(&original), "the fixture carries GPS");
    let form = Multipart::new().text("space", &space.handle).file(
        "file",
        "holiday.jpg",
        "image/jpeg",
        &original,
    );
    let data = app.upload_ok(&me, form).await;
    let stored = app
        .storage
        .open()
        .read_all(data["object_key"].as_str().unwrap())
        .await
        .unwrap();
    assert!(!has_gps(&stored), "GPS survived strip_metadata");
    assert!(stored.len() < original.len());
    assert_eq!(data["size"], stored.len());
    assert_eq!(data["hash"], sha256(&stored));
    assert_eq!(data["storage_meta"]["width"], 64);
    let decoded = image::load_from_memory(&stored).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (64, 48));
}

/// `jpeg` with an Exif segment holding a GPS position.
pub fn with_gps(jpeg: &[u8]) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    // IFD0: one entry, the GPS IFD pointer (at 26).
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x8825u16.to_le_bytes());
    tiff.extend_from_slice(&4u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&26u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD: latitude ref and latitude (three rationals at 56).
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&2u32.to_le_bytes());
    tiff.extend_from_slice(b"N\0\0\0");
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&5u16.to_le_bytes());
    tiff.extend_from_slice(&3u32.to_le_bytes());
    tiff.extend_from_slice(&56u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    for (n, d) in [(48u32, 1u32), (51, 1), (2904, 100)] {
        tiff.extend_from_slice(&n.to_le_bytes());
        tiff.extend_from_slice(&d.to_le_bytes());
    }
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

pub fn has_gps(file: &[u8]) -> bool {
    exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(file))
        .is_ok_and(|exif| exif.fields().any(|f| f.tag == exif::Tag::GPSLatitude))
}

content_test!(another_workspaces_files_are_not_found, cross_workspace);
async fn cross_workspace(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let stranger = member(&new_workspace());
    let space = space(&app, &me, "Mine").await;
    let form = Multipart::new().text("space", &space.handle).file(
        "file",
        "a.png",
        "image/png",
        &png(8, 8),
    );
    let data = app.upload_ok(&me, form).await;
    let id = data["id"].as_str().unwrap();
    let file = format!("/api/v1/files/{id}");
    for answer in [
        app.get(&stranger, &file).await,
        app.delete(&stranger, &file).await,
        app.put(
            &stranger,
            "/api/v1/files",
            json!({"id": id, "original_name": "x"}),
        )
        .await,
        app.post(&stranger, &format!("{file}/signed-url"), json!({}))
            .await,
        app.put(
            &stranger,
            &format!("{file}/access-control"),
            json!({"access_control": {"public_read": false}}),
        )
        .await,
        app.delete(&stranger, &format!("{file}/access-control"))
            .await,
        app.post(
            &stranger,
            &format!("/api/v1/upload/confirm/{id}"),
            json!({}),
        )
        .await,
        app.get(&stranger, &format!("/api/v1/files?space_id={}", space.id))
            .await,
    ] {
        assert_eq!(answer.status, 404, "{}", answer.json());
    }
    let urls = app
        .post(&stranger, "/api/v1/files/urls", json!({"file_ids": [id]}))
        .await;
    assert_eq!(urls.status, 200);
    assert_eq!(urls.json()["data"], json!([]));
    // Untouched.
    let mine = app.get(&me, &file).await;
    assert_eq!(mine.json()["data"]["original_name"], "a.png");
    assert!(
        app.storage
            .open()
            .head(data["object_key"].as_str().unwrap())
            .await
            .is_ok()
    );
}

content_test!(
    a_file_sent_before_its_space_is_checked_once_known,
    file_first
);
async fn file_first(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = configured_space(&app, &me, "Late fields", json!({"config": {"validation": {"allowed_formats": null, "max_file_size": 8 * 1024 * 1024}}})).await;
    // Larger than a storage part: streamed aside, then moved into place.
    let bytes = crate::helpers::noise(6 * 1024 * 1024 + 7, 9);
    let form = Multipart::new()
        .file("file", "archive.bin", "application/octet-stream", &bytes)
        .text("space", &space.handle);
    let data = app.upload_ok(&me, form).await;
    assert_eq!(data["size"], bytes.len());
    assert_eq!(data["hash"], sha256(&bytes));
    assert_eq!(stored_hash(&app, &data).await, sha256(&bytes));
    // The config's limit, applied once the space is known.
    configure(
        &app,
        &me,
        &space.config,
        json!({"config": {"validation": {"max_file_size": 1024 * 1024}}}),
    )
    .await;
    let form = Multipart::new()
        .file("file", "archive.bin", "application/octet-stream", &bytes)
        .text("space", &space.handle);
    refused(
        &app.upload(Some(&me), "/api/v1/upload", form).await,
        413,
        "File too large.",
    );
    // Fields after the files may not change where they went.
    let form = Multipart::new()
        .text("space", &space.handle)
        .file("file", "a.bin", "application/octet-stream", b"abc")
        .text("upload_config", "starter");
    let answer = app.upload(Some(&me), "/api/v1/upload", form).await;
    assert_eq!(crate::helpers::fields(&answer), ["upload_config"]);
    // Nothing is left aside.
    let storage = app.storage.open();
    assert_eq!(storage.delete_prefix("_incoming").await.unwrap(), 0);
    let listed = app
        .get(&me, &format!("/api/v1/files?space_id={}", space.id))
        .await;
    assert_eq!(listed.json()["data"].as_array().unwrap().len(), 1);
}
