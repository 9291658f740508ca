//! Upload configs: created, listed, changed, deleted; the active one stays.

use crate::helpers::{TestSpaces, fields, member, new_workspace};
use serde_json::json;
use testkit::{DbKind, db_test};

db_test!(upload_configs_lifecycle_and_the_active_one, lifecycle);
async fn lifecycle(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = app.create_space(&me, "Media").await;
    let space_id = space["id"].as_str().unwrap();
    let starter = space["active_upload_config_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let created = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({"space_id": space_id, "name": "Videos", "config": {
                "max_file_size": 104857600, "allowed_formats": ["MP4", ".mov", "mp4"], "unsigned_uploads": true
            }}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let config = created.json()["data"].clone();
    let id = config["id"].as_str().unwrap().to_owned();
    assert!(service_kit::ids::is_valid("upc", &id));
    assert_eq!(config["is_active"], false);
    assert_eq!(
        config["config"],
        json!({"max_file_size": 104857600, "allowed_formats": ["mp4", "mov"], "signed_uploads": true, "unsigned_uploads": true})
    );
    app.post(
        &me,
        "/api/v1/upload-configs",
        json!({"space_id": space_id, "name": "VIDEOS"}),
    )
    .await
    .assert_error(409, "conflict");

    let listed = app
        .get(&me, &format!("/api/v1/upload-configs?space_id={space_id}"))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.json());
    let names: Vec<_> = listed.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].clone(), c["is_active"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("starter"), json!(true)),
            (json!("Videos"), json!(false))
        ]
    );
    let page = app
        .get(
            &me,
            &format!("/api/v1/upload-configs?space_id={space_id}&limit=1"),
        )
        .await
        .json();
    assert_eq!(page["meta"]["has_more"], true);
    let next = app
        .get(
            &me,
            &format!(
                "/api/v1/upload-configs?space_id={space_id}&limit=1&cursor={}",
                page["meta"]["next_cursor"].as_str().unwrap()
            ),
        )
        .await
        .json();
    assert_eq!(next["data"][0]["id"], id.as_str());
    assert_eq!(next["meta"]["has_more"], false);

    let path = format!("/api/v1/upload-configs/{id}");
    let updated = app
        .put(&me, &path, json!({"config": {"signed_uploads": false}}))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.json());
    assert_eq!(updated.json()["data"]["config"]["signed_uploads"], false);
    assert_eq!(updated.json()["data"]["name"], "Videos");
    assert_eq!(updated.json()["data"]["config"]["max_file_size"], 104857600);
    app.put(&me, &path, json!({"name": "starter"}))
        .await
        .assert_error(409, "conflict");

    // The active config cannot be deleted; once another is active it can.
    app.delete(&me, &format!("/api/v1/upload-configs/{starter}"))
        .await
        .assert_error(409, "conflict");
    let switched = app
        .put(
            &me,
            &format!("/api/v1/spaces/{space_id}"),
            json!({"name": "Media", "active_upload_config_id": id}),
        )
        .await;
    assert_eq!(switched.status, 200, "{}", switched.json());
    assert_eq!(
        switched.json()["data"]["active_upload_config_id"],
        id.as_str()
    );
    assert_eq!(app.get(&me, &path).await.json()["data"]["is_active"], true);
    app.delete(&me, &path).await.assert_error(409, "conflict");
    let gone = app
        .delete(&me, &format!("/api/v1/upload-configs/{starter}"))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.json());
    app.get(&me, &format!("/api/v1/upload-configs/{starter}"))
        .await
        .assert_error(404, "not_found");

    // Another space's config cannot become this one's active config.
    let other = app.create_space(&me, "Other").await;
    let foreign = app
        .put(
            &me,
            &format!("/api/v1/spaces/{space_id}"),
            json!({"name": "Media", "active_upload_config_id": other["active_upload_config_id"]}),
        )
        .await;
    assert_eq!(fields(&foreign), ["active_upload_config_id"]);

    // Without `space_id`: every space's configs, each marked by its own space.
    let all = app.get(&me, "/api/v1/upload-configs").await.json();
    let marks: Vec<_> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["space_id"].clone(),
                c["name"].clone(),
                c["is_active"].clone(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [
            (json!(space_id), json!("Videos"), json!(true)),
            (other["id"].clone(), json!("starter"), json!(true)),
        ]
    );
}

db_test!(upload_config_fields_are_validated, validation);
async fn validation(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = app.create_space(&me, "Media").await;
    let space_id = space["id"].as_str().unwrap();
    for (config, field) in [
        (json!({"max_file_size": 0}), "config.max_file_size"),
        (
            json!({"max_file_size": 5368709121_u64}),
            "config.max_file_size",
        ),
        (json!({"max_file_size": -1}), "config.max_file_size"),
        (json!({"max_file_size": 1.5}), "config.max_file_size"),
        (json!({"allowed_formats": []}), "config.allowed_formats"),
        (
            json!({"allowed_formats": ["jpg", "../etc"]}),
            "config.allowed_formats[1]",
        ),
        (
            json!({"allowed_formats": ["x".repeat(17)]}),
            "config.allowed_formats[0]",
        ),
        (json!({"allowed_formats": "jpg"}), "config.allowed_formats"),
        (
            json!({"signed_uploads": false, "unsigned_uploads": false}),
            "config",
        ),
        (json!({"public": true}), "config.public"),
    ] {
        let answer = app
            .post(
                &me,
                "/api/v1/upload-configs",
                json!({"space_id": space_id, "name": "x", "config": config}),
            )
            .await;
        assert_eq!(fields(&answer), [field], "{config}");
    }
    for (body, field) in [
        (json!({"name": "x"}), "space_id"),
        (json!({"space_id": space_id}), "name"),
        (json!({"space_id": space_id, "name": ""}), "name"),
    ] {
        let answer = app.post(&me, "/api/v1/upload-configs", body.clone()).await;
        assert_eq!(fields(&answer), [field], "{body}");
    }
    app.post(
        &me,
        "/api/v1/upload-configs",
        json!({"space_id": "spc_nope", "name": "x"}),
    )
    .await
    .assert_error(404, "not_found");
    let starter = space["active_upload_config_id"].as_str().unwrap();
    let path = format!("/api/v1/upload-configs/{starter}");
    assert_eq!(
        fields(
            &app.put(&me, &path, json!({"config": {"unsigned_uploads": "yes"}}))
                .await
        ),
        ["config.unsigned_uploads"]
    );
    assert_eq!(
        fields(
            &app.put(&me, &path, json!({"config": {"signed_uploads": false}}))
                .await
        ),
        ["config"]
    );
    app.get(&me, "/api/v1/upload-configs/upc_nope")
        .await
        .assert_error(404, "not_found");
}
