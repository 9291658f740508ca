//! Upload configs in Tuzzle's shape: created, listed (without `config`),
//! changed in part, deleted; the active one stays; every documented field is
//! checked; configs stored in the earlier shape migrate without loss.

use crate::helpers::{TestSpaces, fields, member, new_workspace, sorted};
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use serde_json::{Value, json};
use store::{DbConnection, StoreError};
use testkit::{DbKind, TestDatabase, db_test};

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

    // The starter config: images up to 10 MiB, signed uploads.
    let got = app
        .get(&me, &format!("/api/v1/upload-configs/{starter}"))
        .await;
    assert_eq!(got.status, 200, "{}", got.json());
    let data = got.json()["data"].clone();
    assert_eq!(data["name"], "starter");
    assert_eq!(data["is_signed"], true);
    assert_eq!(data["allow_unsigned"], false);
    assert_eq!(data["delivery_type"], "upload");
    assert_eq!(
        data["config"]["validation"],
        json!({
            "allowed_formats": "jpg,jpeg,png,gif,webp",
            "max_file_size": 10485760,
            "min_image_width": null,
            "max_image_width": null,
            "min_image_height": null,
            "max_image_height": null,
        })
    );

    let created = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({
                "space_id": space_id,
                "name": "Videos",
                "description": "Clips",
                "is_signed": true,
                "allow_unsigned": true,
                "delivery_type": "private",
                "config": {
                    "storage": {"folder": "/clips/raw/"},
                    "validation": {"max_file_size": 104857600, "allowed_formats": "MP4, .mov,mp4"},
                    "transformations": {"upload_quality": 80, "eager": [{"width": 320, "crop": "thumb"}]},
                    "metadata": {"tags": ["video", " video ", "raw"]},
                    "notifications": {"webhook_url": "https://hooks.example.com/uploads"},
                },
                "unsigned_restrictions": {
                    "allowed_referrers": ["Example.com", "*.example.com"],
                    "require_https": true,
                    "max_uploads_per_hour": 100,
                },
                "unknown": "ignored",
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let config = created.json()["data"].clone();
    let id = config["id"].as_str().unwrap().to_owned();
    assert!(service_kit::ids::is_valid("upc", &id));
    assert_eq!(config["is_active"], false);
    assert_eq!(config["description"], "Clips");
    assert_eq!(config["delivery_type"], "private");
    assert_eq!(
        config["unsigned_restrictions"],
        json!({"allowed_referrers": ["example.com", "*.example.com"], "require_https": true, "max_uploads_per_hour": 100})
    );
    assert_eq!(
        config["config"],
        json!({
            "storage": {"folder": "clips/raw", "generate_filename": true, "unique_filename": true},
            "validation": {
                "allowed_formats": "mp4,mov",
                "max_file_size": 104857600,
                "min_image_width": null,
                "max_image_width": null,
                "min_image_height": null,
                "max_image_height": null,
            },
            "transformations": {
                "upload_quality": 80,
                "upload_format": "original",
                "progressive": true,
                "strip_metadata": false,
                "eager": [{"width": 320, "height": null, "crop": "thumb"}],
            },
            "metadata": {"tags": ["video", "raw"], "auto_tagging": false},
            "notifications": {"webhook_url": "https://hooks.example.com/uploads"},
        })
    );
    let taken = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({"space_id": space_id, "name": "VIDEOS"}),
        )
        .await;
    assert_eq!(fields(&taken), ["name"]);
    assert_eq!(taken.json()["message"], "The name has already been taken.");

    // Lists leave `config` out.
    let listed = app
        .get(&me, &format!("/api/v1/upload-configs?space_id={space_id}"))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.json());
    let items = listed.json()["data"].as_array().unwrap().clone();
    let names: Vec<_> = items
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
    for item in &items {
        assert!(item.get("config").is_none(), "{item}");
        assert!(item["delivery_type"].is_string(), "{item}");
    }
    let page = app
        .get(
            &me,
            &format!("/api/v1/upload-configs?space_id={space_id}&limit=1"),
        )
        .await
        .json();
    let next = app
        .get(
            &me,
            &format!(
                "/api/v1/upload-configs?space_id={space_id}&limit=1&cursor={}",
                page["next_cursor"].as_str().unwrap()
            ),
        )
        .await
        .json();
    assert_eq!(next["data"][0]["id"], id.as_str());
    assert!(next["next_cursor"].is_null());

    // Partial updates: what is named changes, the rest stays.
    let path = format!("/api/v1/upload-configs/{id}");
    let updated = app
        .put(
            &me,
            &path,
            json!({"config": {"validation": {"max_file_size": 1024}, "metadata": {"auto_tagging": true}}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.json());
    let after = updated.json()["data"].clone();
    assert_eq!(after["name"], "Videos");
    assert_eq!(after["config"]["validation"]["max_file_size"], 1024);
    assert_eq!(after["config"]["validation"]["allowed_formats"], "mp4,mov");
    assert_eq!(after["config"]["metadata"]["auto_tagging"], true);
    assert_eq!(after["config"]["metadata"]["tags"], json!(["video", "raw"]));
    assert_eq!(after["config"]["storage"], config["config"]["storage"]);
    assert_eq!(
        after["unsigned_restrictions"],
        config["unsigned_restrictions"]
    );
    // Restrictions stay required while unsigned uploads are allowed.
    assert_eq!(
        fields(
            &app.put(&me, &path, json!({"unsigned_restrictions": null}))
                .await
        ),
        ["unsigned_restrictions"]
    );
    let closed = app
        .put(
            &me,
            &path,
            json!({"allow_unsigned": false, "unsigned_restrictions": null, "description": null,
                   "config": {"validation": {"allowed_formats": null}, "notifications": {"webhook_url": null}}}),
        )
        .await;
    assert_eq!(closed.status, 200, "{}", closed.json());
    let closed = closed.json()["data"].clone();
    assert_eq!(closed["allow_unsigned"], false);
    assert!(closed["unsigned_restrictions"].is_null());
    assert!(closed["description"].is_null());
    assert!(closed["config"]["validation"]["allowed_formats"].is_null());
    assert!(closed["config"]["notifications"]["webhook_url"].is_null());
    assert_eq!(
        fields(&app.put(&me, &path, json!({"name": "starter"})).await),
        ["name"]
    );

    // The active config cannot be deleted; once another is active it can.
    app.delete(&me, &format!("/api/v1/upload-configs/{starter}"))
        .await
        .assert_error(409, "conflict");
    let switched = app
        .put(
            &me,
            &format!("/api/v1/spaces/{space_id}"),
            json!({"active_upload_config_id": id}),
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
    assert_eq!(gone.json(), json!({"data": null}));
    app.get(&me, &format!("/api/v1/upload-configs/{starter}"))
        .await
        .assert_error(404, "not_found");

    // Another space's config cannot become this one's active config.
    let other = app.create_space(&me, "Other").await;
    let foreign = app
        .put(
            &me,
            &format!("/api/v1/spaces/{space_id}"),
            json!({"active_upload_config_id": other["active_upload_config_id"]}),
        )
        .await;
    assert_eq!(fields(&foreign), ["active_upload_config_id"]);

    // Without `space_id`, and at `/all`: every space's configs, each marked
    // by its own space.
    for list in ["/api/v1/upload-configs", "/api/v1/upload-configs/all"] {
        let all = app.get(&me, list).await.json();
        let marks: Vec<_> = all["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert!(c.get("config").is_none(), "{c}");
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
            ],
            "{list}"
        );
    }
    let stranger = member(&new_workspace());
    let none = app.get(&stranger, "/api/v1/upload-configs/all").await;
    assert_eq!(none.json()["data"], json!([]));
}

db_test!(upload_config_fields_are_validated, validation);
async fn validation(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = app.create_space(&me, "Media").await;
    let space_id = space["id"].as_str().unwrap();
    let restrictions = json!({"allowed_referrers": [], "require_https": true});
    for (extra, expected) in [
        (
            json!({"config": {"validation": {"max_file_size": 0}}}),
            sorted(["config.validation.max_file_size"]),
        ),
        (
            json!({"config": {"validation": {"max_file_size": 5368709121_u64}}}),
            sorted(["config.validation.max_file_size"]),
        ),
        (
            json!({"config": {"validation": {"max_file_size": -1}}}),
            sorted(["config.validation.max_file_size"]),
        ),
        (
            json!({"config": {"validation": {"max_file_size": 1.5}}}),
            sorted(["config.validation.max_file_size"]),
        ),
        (
            json!({"config": {"validation": {"allowed_formats": "jpg,../etc"}}}),
            sorted(["config.validation.allowed_formats"]),
        ),
        (
            json!({"config": {"validation": {"allowed_formats": ["jpg"]}}}),
            sorted(["config.validation.allowed_formats"]),
        ),
        (
            json!({"config": {"validation": {"allowed_formats": "x".repeat(17)}}}),
            sorted(["config.validation.allowed_formats"]),
        ),
        (
            json!({"config": {"validation": {"allowed_formats": "jpg,PHP"}}}),
            sorted(["config.validation.allowed_formats"]),
        ),
        (
            json!({"config": {"validation": {"min_image_width": 500, "max_image_width": 200}}}),
            sorted(["config.validation.min_image_width"]),
        ),
        (
            json!({"config": {"validation": {"max_image_height": 70000}}}),
            sorted(["config.validation.max_image_height"]),
        ),
        (
            json!({"config": {"storage": {"folder": "a/../b"}}}),
            sorted(["config.storage.folder"]),
        ),
        (
            json!({"config": {"storage": {"generate_filename": "yes"}}}),
            sorted(["config.storage.generate_filename"]),
        ),
        (
            json!({"config": {"transformations": {"upload_quality": 0}}}),
            sorted(["config.transformations.upload_quality"]),
        ),
        (
            json!({"config": {"transformations": {"upload_quality": "best"}}}),
            sorted(["config.transformations.upload_quality"]),
        ),
        (
            json!({"config": {"transformations": {"upload_format": "bmp"}}}),
            sorted(["config.transformations.upload_format"]),
        ),
        (
            json!({"config": {"transformations": {"eager": [{"width": 10, "crop": "squash"}]}}}),
            sorted(["config.transformations.eager[0].crop"]),
        ),
        (
            json!({"config": {"transformations": {"eager": [{"width": 10}, {"crop": "fill"}]}}}),
            sorted(["config.transformations.eager[1]"]),
        ),
        (
            json!({"config": {"transformations": {"eager": [{"height": 0}]}}}),
            sorted(["config.transformations.eager[0].height"]),
        ),
        (
            json!({"config": {"metadata": {"tags": ["ok", "  "]}}}),
            sorted(["config.metadata.tags[1]"]),
        ),
        (
            json!({"config": {"notifications": {"webhook_url": "http://hooks.example.com"}}}),
            sorted(["config.notifications.webhook_url"]),
        ),
        (
            json!({"config": {"notifications": {"webhook_url": "https://192.168.1.1/x"}}}),
            sorted(["config.notifications.webhook_url"]),
        ),
        (json!({"config": "all of it"}), sorted(["config"])),
        (
            json!({"delivery_type": "public"}),
            sorted(["delivery_type"]),
        ),
        (json!({"is_signed": "yes"}), sorted(["is_signed"])),
        (
            json!({"description": "d".repeat(1001)}),
            sorted(["description"]),
        ),
        (
            json!({"allow_unsigned": true}),
            sorted(["unsigned_restrictions"]),
        ),
        (
            json!({"allow_unsigned": true, "unsigned_restrictions": {}}),
            sorted([
                "unsigned_restrictions.allowed_referrers",
                "unsigned_restrictions.require_https",
            ]),
        ),
        (
            json!({"unsigned_restrictions": {"allowed_referrers": ["https://example.com"], "require_https": true}}),
            sorted(["unsigned_restrictions.allowed_referrers[0]"]),
        ),
        (
            json!({"unsigned_restrictions": {"allowed_referrers": [], "require_https": true, "max_uploads_per_hour": 1001}}),
            sorted(["unsigned_restrictions.max_uploads_per_hour"]),
        ),
        (
            json!({"config": {"validation": {"max_file_size": 0}}, "delivery_type": "x"}),
            sorted(["delivery_type"]),
        ),
        (
            json!({"config": {"validation": {"max_file_size": 0}, "storage": {"folder": ".."}}, "allow_unsigned": true}),
            sorted([
                "config.validation.max_file_size",
                "config.storage.folder",
                "unsigned_restrictions",
            ]),
        ),
    ] {
        let mut body = json!({"space_id": space_id, "name": "x"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let answer = app.post(&me, "/api/v1/upload-configs", body.clone()).await;
        assert_eq!(fields(&answer), expected, "{body}");
    }
    let open = app
        .post(
            &me,
            "/api/v1/upload-configs",
            json!({"space_id": space_id, "name": "open", "allow_unsigned": true,
                   "unsigned_restrictions": restrictions, "config": {"public": true, "validation": {"allowed_formats": ""}}}),
        )
        .await;
    assert_eq!(open.status, 201, "{}", open.json());
    assert!(open.json()["data"]["config"].get("public").is_none());
    assert!(open.json()["data"]["config"]["validation"]["allowed_formats"].is_null());
    for (body, field) in [
        (json!({"name": "x"}), "space_id"),
        (json!({"space_id": space_id}), "name"),
        (json!({"space_id": space_id, "name": ""}), "name"),
        (json!({"space_id": space_id, "name": null}), "name"),
    ] {
        let answer = app.post(&me, "/api/v1/upload-configs", body.clone()).await;
        assert_eq!(fields(&answer), [field], "{body}");
    }
    let missing = app.post(&me, "/api/v1/upload-configs", json!({})).await;
    assert_eq!(fields(&missing), ["name", "space_id"]);
    assert_eq!(
        missing.json()["errors"]["space_id"],
        json!(["The space id field is required."])
    );
    app.post(
        &me,
        "/api/v1/upload-configs",
        json!({"space_id": "spc_nope", "name": "x"}),
    )
    .await
    .assert_error(404, "not_found");
    let starter = space["active_upload_config_id"].as_str().unwrap();
    let path = format!("/api/v1/upload-configs/{starter}");
    for (body, field) in [
        (
            json!({"config": {"storage": {"unique_filename": "yes"}}}),
            "config.storage.unique_filename",
        ),
        (json!({"allow_unsigned": true}), "unsigned_restrictions"),
        (json!({"name": null}), "name"),
        (json!({"delivery_type": null, "is_signed": 3}), "is_signed"),
    ] {
        assert_eq!(
            fields(&app.put(&me, &path, body.clone()).await),
            [field],
            "{body}"
        );
    }
    app.get(&me, "/api/v1/upload-configs/upc_nope")
        .await
        .assert_error(404, "not_found");
    // Unchanged by the refusals.
    let now = app.get(&me, &path).await.json()["data"].clone();
    assert_eq!(now["allow_unsigned"], false);
    assert_eq!(now["config"]["validation"]["max_file_size"], 10485760);
}

/// A config stored the way the service wrote it before Tuzzle's shape.
fn legacy_config(id: &str, space: &str, name: &str, config: &str) -> String {
    format!(
        "INSERT INTO upload_configs (id, space_id, workspace_id, name, name_key, config, created_at, updated_at) \
         VALUES ('{id}', '{space}', '{WORKSPACE}', '{name}', '{name}', '{config}', '2025-06-01 10:00:00', '2025-06-01 10:00:00')"
    )
}

const WORKSPACE: &str = "wrk_01HQ0000000000000000000000";

db_test!(stored_configs_migrate_to_tuzzles_shape, migration);
async fn migration(kind: DbKind) {
    // A database with the first migration only, holding what that version
    // of the service wrote.
    let test_db = TestDatabase::new(kind);
    let db = store::Database::connect(&test_db.config()).await.unwrap();
    let space = "spc_01HQ0000000000000000000000";
    db.run(move |conn| {
        let statements = [
            format!(
                "INSERT INTO spaces (id, workspace_id, name, name_key, handle, enabled, access_control, security, created_at, updated_at) \
                 VALUES ('{space}', '{WORKSPACE}', 'Legacy', 'legacy', 'abc123', TRUE, '{{}}', '{{}}', '2025-06-01 10:00:00', '2025-06-01 10:00:00')"
            ),
            legacy_config(
                "upc_01HQ0000000000000000000001",
                space,
                "starter",
                r#"{"max_file_size":10485760,"allowed_formats":["jpg","jpeg","png","gif","webp"],"signed_uploads":true,"unsigned_uploads":false}"#,
            ),
            legacy_config(
                "upc_01HQ0000000000000000000002",
                space,
                "videos",
                r#"{"max_file_size":104857600,"allowed_formats":["mp4","mov"],"signed_uploads":false,"unsigned_uploads":true}"#,
            ),
            legacy_config("upc_01HQ0000000000000000000003", space, "odd", "{}"),
            format!(
                "UPDATE spaces SET active_upload_config_id = 'upc_01HQ0000000000000000000001' WHERE id = '{space}'"
            ),
            format!(
                "INSERT INTO space_api_keys (id, space_id, workspace_id, name, key_hash, prefix, created_by, created_at) \
                 VALUES ('spk_b', '{space}', '{WORKSPACE}', 'second', 'h2', 'sk_b…', 'usr_1', '2025-06-02 10:00:00'), \
                        ('spk_a', '{space}', '{WORKSPACE}', 'first', 'h1', 'sk_a…', 'usr_1', '2025-06-01 10:00:00')"
            ),
        ];
        let first = |conn: &mut DbConnection| -> Result<(), StoreError> {
            let outcome = match conn {
                DbConnection::Postgresql(pg) => pg
                    .run_next_migration((spaces_service::MIGRATIONS.postgres)())
                    .map(|_| ()),
                DbConnection::Sqlite(lite) => lite
                    .run_next_migration((spaces_service::MIGRATIONS.sqlite)())
                    .map(|_| ()),
            };
            outcome.map_err(|e| StoreError::Migration(e.to_string()))
        };
        first(conn)?;
        for statement in statements {
            diesel::sql_query(statement).execute(conn)?;
        }
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();

    // The service applies the rest as it starts, and answers in the new shape.
    let cache = testkit::TestCache::new(testkit::CacheKind::Memory);
    let storage = crate::helpers::TestStorage::new(crate::helpers::StorageKind::Filesystem).await;
    let mut used = None;
    let server = testkit::part::start_part_with::<spaces_service::SpacesService>(
        Some(&test_db),
        &cache,
        |config| {
            crate::helpers::isolate(config);
            config.storage = storage.config.clone();
            used = Some(config.clone());
        },
    )
    .await;
    let app = TestSpaces {
        server,
        cache,
        db: test_db,
        storage,
        config: used.unwrap(),
    };
    let me = member(WORKSPACE);
    let get = |id: &'static str| {
        let app = &app;
        let me = me.clone();
        async move {
            let answer = app
                .get(
                    &me,
                    &format!("/api/v1/upload-configs/upc_01HQ00000000000000000000{id}"),
                )
                .await;
            assert_eq!(answer.status, 200, "{}", answer.json());
            answer.json()["data"].clone()
        }
    };
    let starter = get("01").await;
    assert_eq!(starter["is_active"], true);
    assert_eq!(starter["is_signed"], true);
    assert_eq!(starter["allow_unsigned"], false);
    assert!(starter["unsigned_restrictions"].is_null());
    assert_eq!(starter["delivery_type"], "upload");
    assert_eq!(
        starter["config"]["validation"]["allowed_formats"],
        "jpg,jpeg,png,gif,webp"
    );
    assert_eq!(starter["config"]["validation"]["max_file_size"], 10485760);
    assert_eq!(starter["config"]["storage"]["generate_filename"], true);
    let videos = get("02").await;
    assert_eq!(videos["is_signed"], false);
    assert_eq!(videos["allow_unsigned"], true);
    // Unsigned uploads were accepted from anywhere: they still are.
    assert_eq!(
        videos["unsigned_restrictions"],
        json!({"allowed_referrers": [], "require_https": false, "max_uploads_per_hour": null})
    );
    assert_eq!(videos["config"]["validation"]["allowed_formats"], "mp4,mov");
    assert_eq!(videos["config"]["validation"]["max_file_size"], 104857600);
    // A document without the fields read as the starter values; it still does.
    let odd = get("03").await;
    assert_eq!(odd["is_signed"], true);
    assert_eq!(odd["allow_unsigned"], false);
    assert_eq!(
        odd["config"]["validation"]["allowed_formats"],
        "jpg,jpeg,png,gif,webp"
    );
    assert_eq!(odd["config"]["validation"]["max_file_size"], 10485760);
    // A migrated config takes changes like any other.
    let changed = app
        .put(
            &me,
            "/api/v1/upload-configs/upc_01HQ0000000000000000000002",
            json!({"description": "Clips"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.json());

    // Existing keys are numbered in the order they were made; new ones follow.
    let keys = app
        .get(&me, &format!("/api/v1/spaces/{space}/api-keys"))
        .await
        .json();
    let numbered: Vec<(Value, Value, Value)> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].clone(), k["id"].clone(), k["type"].clone()))
        .collect();
    assert_eq!(
        numbered,
        [
            (json!("first"), json!(1), json!("space")),
            (json!("second"), json!(2), json!("space")),
        ]
    );
    let minted = app.mint_key(&me, space, "third").await;
    assert_eq!(minted["id"], 3);
}
