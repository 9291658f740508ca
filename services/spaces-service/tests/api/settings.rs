//! Access control and security settings: partial updates, resets,
//! validation; unknown fields are ignored (Tuzzle's routes are Laravel's).

use crate::helpers::{TestSpaces, fields, member, new_workspace};
use serde_json::json;
use testkit::{DbKind, db_test};

db_test!(access_control_is_changed_in_part_and_reset, access_control);
async fn access_control(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = app.create_space(&me, "Gallery").await;
    let path = format!(
        "/api/v1/spaces/{}/access-control",
        space["id"].as_str().unwrap()
    );
    let set = app
        .put(
            &me,
            &path,
            json!({"access_control": {"requires_auth": true}}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.json());
    assert_eq!(
        set.json()["data"]["access_control"],
        json!({"requires_auth": true, "public_read": true}),
        "fields not named keep their value"
    );
    let set = app
        .put(
            &me,
            &path,
            json!({"access_control": {"public_read": false}}),
        )
        .await;
    assert_eq!(
        set.json()["data"]["access_control"],
        json!({"requires_auth": true, "public_read": false})
    );
    let unchanged = app.put(&me, &path, json!({})).await;
    assert_eq!(unchanged.status, 200);
    assert_eq!(
        unchanged.json()["data"]["access_control"],
        set.json()["data"]["access_control"]
    );
    for body in [
        json!({"access_control": {"everyone": true}}),
        json!({"acl": {"public_read": true}}),
    ] {
        let ignored = app.put(&me, &path, body.clone()).await;
        assert_eq!(ignored.status, 200, "{body}: {}", ignored.json());
        assert_eq!(
            ignored.json()["data"]["access_control"],
            json!({"requires_auth": true, "public_read": false}),
            "{body}"
        );
    }
    for (body, field) in [
        (
            json!({"access_control": {"public_read": "no"}}),
            "access_control.public_read",
        ),
        (
            json!({"access_control": {"requires_auth": null, "public_read": 1}}),
            "access_control.public_read",
        ),
        (json!({"access_control": true}), "access_control"),
    ] {
        assert_eq!(
            fields(&app.put(&me, &path, body.clone()).await),
            [field],
            "{body}"
        );
    }
    let reset = app.delete(&me, &path).await;
    assert_eq!(reset.status, 200);
    assert_eq!(
        reset.json()["data"]["access_control"],
        json!({"requires_auth": false, "public_read": true})
    );
}

db_test!(security_settings_are_validated_and_reset, security);
async fn security(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let me = member(&new_workspace());
    let space = app.create_space(&me, "Marked").await;
    let path = format!("/api/v1/spaces/{}/security", space["id"].as_str().unwrap());
    let defaults = space["security"].clone();
    assert_eq!(
        defaults,
        json!({"watermark": {"enabled": false, "url": null, "position": "southeast", "opacity": 0.5}})
    );
    for position in [
        "north",
        "northeast",
        "east",
        "southeast",
        "south",
        "southwest",
        "west",
        "northwest",
        "center",
    ] {
        let set = app
            .put(
                &me,
                &path,
                json!({"security": {"watermark": {
                    "enabled": true, "url": "https://example.com/w.png", "position": position, "opacity": 1
                }}}),
            )
            .await;
        assert_eq!(set.status, 200, "{position}: {}", set.json());
        assert_eq!(
            set.json()["data"]["security"]["watermark"]["position"],
            position
        );
    }
    let partial = app
        .put(
            &me,
            &path,
            json!({"security": {"watermark": {"opacity": 0}}}),
        )
        .await;
    assert_eq!(
        partial.json()["data"]["security"],
        json!({"watermark": {"enabled": true, "url": "https://example.com/w.png", "position": "center", "opacity": 0.0}})
    );
    for (body, field) in [
        (
            json!({"security": {"watermark": {"position": "up"}}}),
            "security.watermark.position",
        ),
        (
            json!({"security": {"watermark": {"position": "North"}}}),
            "security.watermark.position",
        ),
        (
            json!({"security": {"watermark": {"opacity": 1.5}}}),
            "security.watermark.opacity",
        ),
        (
            json!({"security": {"watermark": {"opacity": -0.1}}}),
            "security.watermark.opacity",
        ),
        (
            json!({"security": {"watermark": {"opacity": "half"}}}),
            "security.watermark.opacity",
        ),
        (
            json!({"security": {"watermark": {"url": "http://example.com/w.png"}}}),
            "security.watermark.url",
        ),
        (
            json!({"security": {"watermark": {"url": "https://a:b@example.com/w.png"}}}),
            "security.watermark.url",
        ),
        (
            json!({"security": {"watermark": {"url": null}}}),
            "security.watermark.url",
        ),
        (json!({"security": {"watermark": []}}), "security.watermark"),
    ] {
        assert_eq!(
            fields(&app.put(&me, &path, body.clone()).await),
            [field],
            "{body}"
        );
    }
    // Unknown fields are ignored.
    for body in [
        json!({"security": {"watermark": {"size": 3}}}),
        json!({"security": {"cors": {}}}),
    ] {
        let ignored = app.put(&me, &path, body.clone()).await;
        assert_eq!(ignored.status, 200, "{body}: {}", ignored.json());
        assert_eq!(
            ignored.json()["data"]["security"],
            partial.json()["data"]["security"]
        );
    }
    // Unchanged by the refusals.
    let now = app
        .get(
            &me,
            &format!("/api/v1/spaces/{}", space["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        now.json()["data"]["security"],
        partial.json()["data"]["security"]
    );
    let reset = app.delete(&me, &path).await;
    assert_eq!(reset.status, 200);
    assert_eq!(reset.json()["data"]["security"], defaults);
    // Enabling needs a URL.
    let bare = app
        .put(
            &me,
            &path,
            json!({"security": {"watermark": {"enabled": true}}}),
        )
        .await;
    assert_eq!(fields(&bare), ["security.watermark.url"]);
}
