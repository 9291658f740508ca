//! Files and folders over HTTP: folders nest (paths, `has_children`,
//! renames that carry their subtree), are deleted only when empty, and pass
//! their access control down to their files; files are listed, looked up by
//! reference, renamed, moved, signed and deleted with their bytes; and the
//! CDN's look-up (`spaces_service::delivery`) sees what the API set.

use crate::helpers::{
    Multipart, StorageKind, TestSpaces, configure, member, new_workspace, png, space,
};
use crate::uploads::refused;
use serde_json::{Value, json};
use spaces_service::delivery::{self, Delivery};
use spaces_service::signed_urls::{Refusal, param};
use spaces_service::storage::StorageError;
use testkit::{DbKind, db_test};

async fn folder(app: &TestSpaces, who: &identity::Identity, body: Value) -> Value {
    let answer = app.post(who, "/api/v1/folders", body).await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    answer.json()["data"].clone()
}

async fn get_data(app: &TestSpaces, who: &identity::Identity, path: &str) -> Value {
    let answer = app.get(who, path).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.json());
    answer.json()["data"].clone()
}

db_test!(folders_nest_and_are_deleted_only_when_empty, folders_nest);
async fn folders_nest(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Albums").await;
    let photos = folder(&app, &me, json!({"name": "photos", "space_id": space.id})).await;
    assert_eq!(photos["path"], "photos/");
    assert!(photos["parent_id"].is_null());
    assert_eq!(photos["has_children"], false);
    assert_eq!(photos["access_control"]["source"], "space");
    assert_eq!(
        photos["access_control"]["inherited_from"],
        space.id.as_str()
    );
    assert_eq!(photos["security"]["watermark"]["enabled"], false);
    let photos_id = photos["id"].as_str().unwrap().to_owned();
    let vacation = folder(
        &app,
        &me,
        json!({"name": "vacation", "space_id": space.id, "parent_id": photos_id}),
    )
    .await;
    assert_eq!(vacation["path"], "photos/vacation/");
    assert_eq!(vacation["parent_id"], photos_id.as_str());
    let vacation_id = vacation["id"].as_str().unwrap().to_owned();
    let deeper = folder(
        &app,
        &me,
        json!({"name": "2024", "space_id": space.id, "parent_id": vacation_id}),
    )
    .await;
    assert_eq!(deeper["path"], "photos/vacation/2024/");
    let photos = get_data(&app, &me, &format!("/api/v1/folders/{photos_id}")).await;
    assert_eq!(photos["has_children"], true);

    // Names are unique within their parent; one segment each.
    let taken = app
        .post(
            &me,
            "/api/v1/folders",
            json!({"name": "photos", "space_id": space.id}),
        )
        .await;
    assert_eq!(crate::helpers::fields(&taken), ["name"]);
    for bad in ["a/b", "..", "", "x\u{0}"] {
        let answer = app
            .post(
                &me,
                "/api/v1/folders",
                json!({"name": bad, "space_id": space.id}),
            )
            .await;
        assert_eq!(answer.status, 422, "{bad:?}: {}", answer.json());
    }
    // A parent of another space is refused.
    let other = crate::helpers::space(&app, &me, "Other").await.id;
    let answer = app
        .post(
            &me,
            "/api/v1/folders",
            json!({"name": "x", "space_id": other, "parent_id": photos_id}),
        )
        .await;
    assert_eq!(crate::helpers::fields(&answer), ["parent_id"]);

    // Renaming carries the subtree; moving under itself is refused.
    let renamed = app
        .put(
            &me,
            &format!("/api/v1/folders/{photos_id}"),
            json!({"name": "pictures"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.json());
    assert_eq!(renamed.json()["data"]["path"], "pictures/");
    let deeper = get_data(
        &app,
        &me,
        &format!("/api/v1/folders/{}", deeper["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(deeper["path"], "pictures/vacation/2024/");
    let cycle = app
        .put(
            &me,
            &format!("/api/v1/folders/{photos_id}"),
            json!({"parent_id": vacation_id}),
        )
        .await;
    assert_eq!(crate::helpers::fields(&cycle), ["parent_id"]);
    // Moving vacation to the root.
    let moved = app
        .put(
            &me,
            &format!("/api/v1/folders/{vacation_id}"),
            json!({"parent_id": null}),
        )
        .await;
    assert_eq!(moved.json()["data"]["path"], "vacation/");
    assert_eq!(
        get_data(
            &app,
            &me,
            &format!("/api/v1/folders/{}", deeper["id"].as_str().unwrap())
        )
        .await["path"],
        "vacation/2024/"
    );

    // Listed oldest first, a page at a time.
    let page = app
        .get(
            &me,
            &format!("/api/v1/folders?space_id={}&limit=2", space.id),
        )
        .await;
    let body = page.json();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][0]["id"], photos_id.as_str());
    let next = body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(
            &me,
            &format!(
                "/api/v1/folders?space_id={}&limit=2&cursor={next}",
                space.id
            ),
        )
        .await;
    assert_eq!(rest.json()["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.get(&me, "/api/v1/folders").await.status, 422);

    // Deleted only when empty.
    let vacation_path = format!("/api/v1/folders/{vacation_id}");
    assert_eq!(app.delete(&me, &vacation_path).await.status, 409);
    let deeper_path = format!("/api/v1/folders/{}", deeper["id"].as_str().unwrap());
    let form = Multipart::new()
        .text("space", &space.handle)
        .text("folder_id", deeper["id"].as_str().unwrap())
        .file("file", "a.png", "image/png", &png(4, 4));
    let file = app.upload(Some(&me), "/api/v1/upload", form).await;
    assert_eq!(file.status, 201, "{}", file.json());
    assert_eq!(file.json()["data"]["folder_path"], "vacation/2024/");
    refused(
        &app.delete(&me, &deeper_path).await,
        409,
        "the folder is not empty: delete or move its files and folders first",
    );
    let file_id = file.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&me, &format!("/api/v1/files/{file_id}"))
            .await
            .status,
        200
    );
    assert_eq!(app.delete(&me, &deeper_path).await.status, 200);
    assert_eq!(app.delete(&me, &vacation_path).await.status, 200);
    assert_eq!(app.get(&me, &vacation_path).await.status, 404);
    // Another workspace sees none of it.
    let stranger = member(&new_workspace());
    for path in [
        format!("/api/v1/folders/{photos_id}"),
        format!("/api/v1/folders?space_id={}", space.id),
    ] {
        assert_eq!(app.get(&stranger, &path).await.status, 404, "{path}");
    }
    assert_eq!(
        app.delete(&stranger, &format!("/api/v1/folders/{photos_id}"))
            .await
            .status,
        404
    );
}

/// Uploads `bytes` named `name` into `space` (fields first); the file's JSON.
async fn upload(
    app: &TestSpaces,
    who: &identity::Identity,
    handle: &str,
    extra: &[(&str, &str)],
    name: &str,
) -> Value {
    let mut form = Multipart::new().text("space", handle);
    for (field, value) in extra {
        form = form.text(field, value);
    }
    app.upload_ok(who, form.file("file", name, "image/png", &png(12, 10)))
        .await
}

crate::content_test!(files_are_listed_renamed_moved_and_deleted, files_api);
async fn files_api(kind: DbKind, storage: StorageKind) {
    let app = TestSpaces::with_storage(kind, storage).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Library").await;
    let a = upload(&app, &me, &space.handle, &[("ref", "cover")], "a.png").await;
    let b = upload(&app, &me, &space.handle, &[], "b.png").await;
    let a_id = a["id"].as_str().unwrap().to_owned();

    // Listed oldest first, a page at a time; `space_id` is required.
    let page = app
        .get(&me, &format!("/api/v1/files?space_id={}&limit=1", space.id))
        .await
        .json();
    assert_eq!(page["data"][0]["id"], a["id"]);
    assert_eq!(page["path"], "/api/v1/files");
    assert_eq!(page["per_page"], 1);
    let next = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(
            &me,
            &format!("/api/v1/files?space_id={}&limit=1&cursor={next}", space.id),
        )
        .await
        .json();
    assert_eq!(rest["data"][0]["id"], b["id"]);
    assert!(rest["next_cursor"].is_null());
    refused(
        &app.get(&me, "/api/v1/files").await,
        422,
        "The space id field is required.",
    );

    // By reference.
    let found = get_data(
        &app,
        &me,
        &format!("/api/v1/files/by-ref?space_id={}&ref=cover", space.id),
    )
    .await;
    assert_eq!(found["id"], a["id"]);
    assert_eq!(
        app.get(
            &me,
            &format!("/api/v1/files/by-ref?space_id={}&ref=nope", space.id)
        )
        .await
        .status,
        404
    );
    // A reference is unique within the space.
    let taken = Multipart::new()
        .text("space", &space.handle)
        .text("ref", "cover")
        .file("file", "c.png", "image/png", &png(4, 4));
    let answer = app.upload(Some(&me), "/api/v1/upload", taken).await;
    assert_eq!(crate::helpers::fields(&answer), ["ref"]);

    // Renamed: its address follows, its bytes stay where they are.
    let renamed = app
        .put(
            &me,
            "/api/v1/files",
            json!({"id": a_id, "name": "cover.png", "original_name": "Cover.png", "ref": "front"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.json());
    let renamed = renamed.json()["data"].clone();
    assert_eq!(renamed["name"], "cover.png");
    assert_eq!(
        renamed["storage_path"],
        format!("{}/cover.png", space.handle)
    );
    assert_eq!(
        renamed["url"],
        format!("http://127.0.0.1:8080/cdn/{}/cover.png", space.handle)
    );
    assert_eq!(renamed["object_key"], a["object_key"]);
    assert_eq!(renamed["original_name"], "Cover.png");
    assert_eq!(renamed["ref"], "front");
    // What describes the bytes cannot be changed; names are unique.
    for (body, field) in [
        (json!({"id": a_id, "size": 1}), "size"),
        (json!({"id": a_id, "storage_path": "x/y"}), "storage_path"),
        (json!({"id": a_id, "space": "zzzzzz"}), "space"),
        (json!({"id": a_id, "name": b["name"]}), "name"),
        (json!({"id": a_id, "mime_type": "not a type"}), "mime_type"),
    ] {
        let answer = app.put(&me, "/api/v1/files", body.clone()).await;
        assert_eq!(crate::helpers::fields(&answer), [field], "{body}");
    }
    let answer = app
        .put(
            &me,
            "/api/v1/files",
            json!({"id": a_id, "name": "../x.png"}),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.json());
    // Moved into a folder made from its path (the space is dynamic), and out.
    let moved = app
        .put(
            &me,
            "/api/v1/files",
            json!({"id": a_id, "folder_path": "covers/2024/"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.json());
    assert_eq!(moved.json()["data"]["folder_path"], "covers/2024/");
    let back = app
        .put(&me, "/api/v1/files", json!({"id": a_id, "folder_id": null}))
        .await;
    assert!(back.json()["data"]["folder_path"].is_null());
    // A fixed space takes only folders that exist.
    let fixed = app
        .put(
            &me,
            &format!("/api/v1/spaces/{}", space.id),
            json!({"folder_mode": "fixed"}),
        )
        .await;
    assert_eq!(fixed.status, 200);
    let answer = app
        .put(
            &me,
            "/api/v1/files",
            json!({"id": a_id, "folder_path": "elsewhere/"}),
        )
        .await;
    assert_eq!(crate::helpers::fields(&answer), ["folder_path"]);

    // Deleted with its bytes.
    let key = a["object_key"].as_str().unwrap();
    assert!(app.storage.open().head(key).await.is_ok());
    assert_eq!(
        app.delete(&me, &format!("/api/v1/files/{a_id}"))
            .await
            .status,
        200
    );
    assert!(matches!(
        app.storage.open().head(key).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        app.get(&me, &format!("/api/v1/files/{a_id}")).await.status,
        404
    );
    assert_eq!(
        app.delete(&me, &format!("/api/v1/files/{a_id}"))
            .await
            .status,
        404
    );
}

db_test!(
    access_control_cascades_and_signed_urls_verify,
    access_and_signing
);
async fn access_and_signing(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = space(&app, &me, "Secrets").await;
    let private = folder(&app, &me, json!({"name": "private", "space_id": space.id})).await;
    let private_id = private["id"].as_str().unwrap().to_owned();
    let inner = folder(
        &app,
        &me,
        json!({"name": "inner", "space_id": space.id, "parent_id": private_id}),
    )
    .await;
    let file = upload(
        &app,
        &me,
        &space.handle,
        &[("folder_path", "private/inner/")],
        "doc.png",
    )
    .await;
    assert_eq!(file["folder_id"], inner["id"]);
    let file_id = file["id"].as_str().unwrap().to_owned();
    let storage_path = file["storage_path"].as_str().unwrap().to_owned();
    let db = store::Database::connect(&app.db.config()).await.unwrap();
    let find = |path: String| {
        let db = db.clone();
        async move {
            db.run(move |conn| delivery::find(conn, &path))
                .await
                .unwrap()
                .expect("the CDN finds the file")
        }
    };
    assert!(find(storage_path.clone()).await.is_public());

    // The folder's setting reaches the file through the folder between.
    let set = app
        .put(
            &me,
            &format!("/api/v1/folders/{private_id}/access-control"),
            json!({"access_control": {"requires_auth": true}}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.json());
    assert_eq!(set.json()["data"]["access_control"]["source"], "direct");
    let inner_now = get_data(
        &app,
        &me,
        &format!("/api/v1/folders/{}", inner["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(inner_now["access_control"]["source"], "folder");
    assert_eq!(
        inner_now["access_control"]["inherited_from"],
        private_id.as_str()
    );
    let seen = get_data(&app, &me, &format!("/api/v1/files/{file_id}")).await;
    assert_eq!(
        seen["access_control"],
        json!({"requires_auth": true, "public_read": true, "source": "folder", "inherited_from": private_id})
    );
    let deliverable = find(storage_path.clone()).await;
    assert!(!deliverable.is_public());
    assert!(!deliverable.cacheable());
    assert_eq!(
        deliverable.object_key(),
        file["object_key"].as_str().unwrap()
    );
    assert_eq!(
        deliverable.variant_key("w100"),
        format!("{}/_variants/{file_id}/w100", space.handle)
    );
    // The file's own setting wins; resetting it inherits again.
    let own = app
        .put(
            &me,
            &format!("/api/v1/files/{file_id}/access-control"),
            json!({"access_control": {"requires_auth": false}}),
        )
        .await;
    assert_eq!(
        own.json()["data"]["access_control"],
        json!({"requires_auth": false, "public_read": true, "source": "direct", "inherited_from": null})
    );
    assert!(find(storage_path.clone()).await.is_public());
    let reset = app
        .delete(&me, &format!("/api/v1/files/{file_id}/access-control"))
        .await;
    assert_eq!(reset.json()["data"]["access_control"]["source"], "folder");
    let reset = app
        .delete(&me, &format!("/api/v1/folders/{private_id}/access-control"))
        .await;
    assert_eq!(reset.json()["data"]["access_control"]["source"], "space");
    assert!(find(storage_path.clone()).await.is_public());
    // A private config's files are never public.
    configure(
        &app,
        &me,
        &space.config,
        json!({"delivery_type": "private"}),
    )
    .await;
    let secret = upload(&app, &me, &space.handle, &[], "secret.png").await;
    assert_eq!(secret["type"], "private");
    let secret_path = secret["storage_path"].as_str().unwrap().to_owned();
    assert!(!find(secret_path.clone()).await.is_public());

    // Signed URLs: verified by the key the CDN holds, transformations
    // covered, expiry bounded.
    let delivery = Delivery::new(&app.config.delivery, &app.keys());
    let answer = app
        .post(
            &me,
            &format!(
                "/api/v1/files/{}/signed-url",
                secret["id"].as_str().unwrap()
            ),
            json!({"expires_in": 120, "transformations": {"w": 400, "f": "webp"}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
    let signed = answer.json()["data"].clone();
    let url = signed["url"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 110..=now + 120).contains(&signed["expires"].as_i64().unwrap()));
    let (path, query) = url.split_once('?').unwrap();
    let request_path = path.strip_prefix("http://127.0.0.1:8080").unwrap();
    let named = delivery::storage_path_of(request_path, "/cdn").unwrap();
    assert_eq!(named, secret_path);
    let params = delivery.verify(&named, query).unwrap();
    assert_eq!(param(&params, "w"), Some("400"));
    assert_eq!(param(&params, "f"), Some("webp"));
    assert_eq!(
        delivery.verify(&named, &query.replace("w=400", "w=800")),
        Err(Refusal::Invalid)
    );
    assert_eq!(delivery.verify(&storage_path, query), Err(Refusal::Invalid));
    // Without a body: the default hour.
    let plain = app
        .call(
            &me,
            testkit::reqwest::Method::POST,
            &format!("/api/v1/files/{file_id}/signed-url"),
            None,
        )
        .await;
    assert_eq!(plain.status, 200, "{}", plain.json());
    let expires = plain.json()["data"]["expires"].as_i64().unwrap();
    assert!((now + 3590..=now + 3600).contains(&expires));
    for bad in [
        json!({"transformations": {"w": 0}}),
        json!({"transformations": {"x": 1}}),
        json!({"expires_in": 0}),
        json!({"expires_in": 99_999_999}),
    ] {
        let answer = app
            .post(
                &me,
                &format!("/api/v1/files/{file_id}/signed-url"),
                bad.clone(),
            )
            .await;
        assert_eq!(answer.status, 422, "{bad}: {}", answer.json());
    }
    // URLs in bulk: public ones plain, private ones signed.
    let urls = app
        .post(
            &me,
            "/api/v1/files/urls",
            json!({"file_ids": [file_id, secret["id"], "fil_01HQ0000000000000000000000"]}),
        )
        .await;
    assert_eq!(urls.status, 200, "{}", urls.json());
    let urls = urls.json()["data"].clone();
    assert_eq!(urls.as_array().unwrap().len(), 2);
    assert_eq!(urls[0]["signed"], false);
    assert_eq!(urls[0]["url"], file["url"]);
    assert_eq!(urls[1]["signed"], true);
    let (_, query) = urls[1]["url"].as_str().unwrap().split_once('?').unwrap();
    assert!(delivery.verify(&secret_path, query).is_ok());
    assert_eq!(
        app.post(&me, "/api/v1/files/urls", json!({"file_ids": []}))
            .await
            .status,
        422
    );
}
