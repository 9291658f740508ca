//! The Tuzzle "Space Endpoints" examples, verbatim: the same paths, bodies
//! (byte for byte) and answer shapes, with the space key as the credential as
//! the gateway describes it after introspection.
//!
//! Creating spaces and minting keys needs a workspace credential here (a
//! space key reaches its own space only); those two steps run as a workspace
//! member, and the test shows the space key's 403 for them.

use crate::helpers::{TestSpaces, member, new_workspace};
use identity::{Identity, PrincipalType, ScopeSet};
use serde_json::{Value, json};
use testkit::reqwest::Method;
use testkit::{DbKind, TestResponse, db_test};

/// The identity the gateway sends for `Authorization: Bearer sk_…`, built
/// from what introspection told it.
fn as_gateway_sees(introspection: &Value) -> Identity {
    assert_eq!(introspection["active"], true, "{introspection}");
    Identity {
        principal_id: introspection["key_id"].as_str().unwrap().to_owned(),
        principal_type: PrincipalType::SpaceKey,
        workspace_id: Some(introspection["workspace_id"].as_str().unwrap().to_owned()),
        scopes: ScopeSet::parse("spaces:read spaces:write").unwrap(),
        space_id: Some(introspection["space_id"].as_str().unwrap().to_owned()),
    }
}

/// `curl -X METHOD …/api/v1PATH [-H "Content-Type: application/json" -d 'BODY']`
async fn curl(
    app: &TestSpaces,
    who: &Identity,
    method: Method,
    path: &str,
    body: Option<&'static str>,
) -> TestResponse {
    let mut request = app.request_as(who, method, &format!("/api/v1{path}"));
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body);
    }
    app.server.send(request).await
}

fn ok(response: &TestResponse) -> Value {
    assert!(
        (200..300).contains(&response.status),
        "{}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let body = response.json();
    assert_eq!(body["success"], true);
    body
}

db_test!(the_tuzzle_examples_work_verbatim, tuzzle_flows);
async fn tuzzle_flows(kind: DbKind) {
    let app = TestSpaces::start(kind).await;
    let workspace = new_workspace();
    let owner = member(&workspace);

    // POST /spaces
    let created = ok(&curl(
        &app,
        &owner,
        Method::POST,
        "/spaces",
        Some(r#"{ "name": "My App" }"#),
    )
    .await);
    let space_id = created["data"]["id"].as_str().unwrap().to_owned();

    // POST /spaces/:id/api-keys
    let minted = ok(&curl(
        &app,
        &owner,
        Method::POST,
        &format!("/spaces/{space_id}/api-keys"),
        Some(r#"{ "name": "production" }"#),
    )
    .await);
    let key = &minted["data"];
    assert_eq!(key["name"], "production");
    assert!(key["key"].as_str().unwrap().starts_with("sk_"));
    assert_eq!(key["type"], "space");
    assert_eq!(key["space_id"], space_id.as_str());
    assert_eq!(key["is_active"], true);
    assert!(key["id"].is_string());
    let sk = as_gateway_sees(&app.introspect(key["key"].as_str().unwrap()).await);

    // GET /spaces: cursor-paginated.
    let listed = ok(&curl(&app, &sk, Method::GET, "/spaces", None).await);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["id"], space_id.as_str());
    assert_eq!(listed["meta"]["has_more"], false);
    assert!(listed["meta"]["next_cursor"].is_null());
    assert!(listed["meta"]["limit"].is_number());

    // GET /spaces/:id
    let got = ok(&curl(&app, &sk, Method::GET, &format!("/spaces/{space_id}"), None).await);
    let data = &got["data"];
    assert_eq!(data["id"], space_id.as_str());
    assert_eq!(data["name"], "My App");
    let handle = data["handle"].as_str().unwrap();
    assert!(
        handle.len() == 6
            && handle
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_eq!(data["enabled"], true);
    assert_eq!(data["folder_mode"], "dynamic");
    assert_eq!(data["custom_domain"], Value::Null);
    assert_eq!(data["webhook_url"], Value::Null);
    assert!(data["access_control"].is_object());
    assert!(data["security"].is_object());
    assert!(data["active_upload_config_id"].is_string());

    // PUT /spaces/:id
    let updated = ok(&curl(
        &app,
        &sk,
        Method::PUT,
        &format!("/spaces/{space_id}"),
        Some(r#"{ "name": "Updated Name" }"#),
    )
    .await);
    assert_eq!(updated["data"]["name"], "Updated Name");

    // PUT and DELETE /spaces/:id/access-control
    let controlled = ok(&curl(
        &app,
        &sk,
        Method::PUT,
        &format!("/spaces/{space_id}/access-control"),
        Some(
            r#"{
    "access_control": {
      "requires_auth": true,
      "public_read": false
    }
  }"#,
        ),
    )
    .await);
    assert_eq!(
        controlled["data"]["access_control"],
        json!({"requires_auth": true, "public_read": false})
    );
    let reset = ok(&curl(
        &app,
        &sk,
        Method::DELETE,
        &format!("/spaces/{space_id}/access-control"),
        None,
    )
    .await);
    assert_eq!(
        reset["data"]["access_control"],
        json!({"requires_auth": false, "public_read": true})
    );

    // PUT and DELETE /spaces/:id/security
    let secured = ok(&curl(
        &app,
        &sk,
        Method::PUT,
        &format!("/spaces/{space_id}/security"),
        Some(
            r#"{
    "security": {
      "watermark": {
        "enabled": true,
        "url": "https://example.com/watermark.png",
        "position": "southeast",
        "opacity": 0.5
      }
    }
  }"#,
        ),
    )
    .await);
    assert_eq!(
        secured["data"]["security"],
        json!({"watermark": {"enabled": true, "url": "https://example.com/watermark.png", "position": "southeast", "opacity": 0.5}})
    );
    let reset = ok(&curl(
        &app,
        &sk,
        Method::DELETE,
        &format!("/spaces/{space_id}/security"),
        None,
    )
    .await);
    assert_eq!(reset["data"]["security"]["watermark"]["enabled"], false);

    // GET /spaces/:id/api-keys, DELETE /spaces/:id/api-keys/:keyId
    let second = app.mint_key(&owner, &space_id, "staging").await;
    let keys = ok(&curl(
        &app,
        &sk,
        Method::GET,
        &format!("/spaces/{space_id}/api-keys"),
        None,
    )
    .await);
    let names: Vec<_> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    assert_eq!(names, [json!("production"), json!("staging")]);
    let second_id = second["id"].as_str().unwrap();
    ok(&curl(
        &app,
        &sk,
        Method::DELETE,
        &format!("/spaces/{space_id}/api-keys/{second_id}"),
        None,
    )
    .await);
    assert_eq!(
        app.introspect(second["key"].as_str().unwrap()).await["active"],
        false
    );

    // What a space key may not do.
    curl(
        &app,
        &sk,
        Method::POST,
        "/spaces",
        Some(r#"{ "name": "My App" }"#),
    )
    .await
    .assert_error(403, "forbidden");
    curl(
        &app,
        &sk,
        Method::POST,
        &format!("/spaces/{space_id}/api-keys"),
        Some(r#"{ "name": "production" }"#),
    )
    .await
    .assert_error(403, "forbidden");

    // DELETE /spaces?id=SPACE_ID
    ok(&curl(
        &app,
        &sk,
        Method::DELETE,
        &format!("/spaces?id={space_id}"),
        None,
    )
    .await);
    assert_eq!(
        app.introspect(key["key"].as_str().unwrap()).await,
        json!({"active": false})
    );
    curl(
        &app,
        &owner,
        Method::GET,
        &format!("/spaces/{space_id}"),
        None,
    )
    .await
    .assert_error(404, "not_found");
}
