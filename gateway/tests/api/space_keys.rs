//! Space keys at the edge, with the real spaces-service: the Tuzzle flows with
//! `Authorization: Bearer sk_…` through the gateway, one space only, and a
//! deleted key refused within a second.

use crate::platform::Platform;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testkit::TestResponse;

fn ok(response: &TestResponse) -> Value {
    assert!(
        (200..300).contains(&response.status),
        "{}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    response.json()
}

#[tokio::test]
async fn space_keys_reach_their_own_space_through_the_gateway() {
    let platform = Platform::start().await;
    let gw = &platform.gw;
    let owner = platform.sign_in("spaces-owner@example.com").await;
    let token = owner["access_token"].as_str().unwrap().to_owned();
    let as_owner = |method: reqwest::Method, path: &str| {
        gw.client
            .request(method, gw.url(&format!("/api/v1{path}")))
            .bearer_auth(&token)
    };
    let mut ids = Vec::new();
    for name in ["My App", "Other App"] {
        let created = ok(&gw
            .send(as_owner(reqwest::Method::POST, "/spaces").json(&json!({ "name": name })))
            .await);
        ids.push(created["data"]["id"].as_str().unwrap().to_owned());
    }
    let (space, other) = (&ids[0], &ids[1]);
    let minted = ok(&gw
        .send(
            as_owner(reqwest::Method::POST, &format!("/spaces/{space}/api-keys"))
                .json(&json!({ "name": "production" })),
        )
        .await);
    let key = minted["data"]["key"].as_str().unwrap().to_owned();
    let key_id = minted["data"]["id"].to_string();
    assert!(key.starts_with("sk_"));

    // The Tuzzle flows, the key as a bearer token, bodies byte for byte.
    let with_key = |method: reqwest::Method, path: &str, body: Option<&'static str>| {
        let request = gw
            .client
            .request(method, gw.url(&format!("/api/v1{path}")))
            .bearer_auth(&key);
        match body {
            Some(body) => request
                .header("Content-Type", "application/json")
                .body(body),
            None => request,
        }
    };
    let got = ok(&gw
        .send(with_key(
            reqwest::Method::GET,
            &format!("/spaces/{space}"),
            None,
        ))
        .await);
    assert_eq!(got["data"]["name"], "My App");
    let updated = ok(&gw
        .send(with_key(
            reqwest::Method::PUT,
            &format!("/spaces/{space}"),
            Some(r#"{ "name": "My Updated App", "description": "Updated description" }"#),
        ))
        .await);
    assert_eq!(updated["data"]["name"], "My Updated App");
    let access = ok(&gw
        .send(with_key(
            reqwest::Method::PUT,
            &format!("/spaces/{space}/access-control"),
            Some(r#"{ "access_control": { "requires_auth": true } }"#),
        ))
        .await);
    assert_eq!(access["data"]["access_control"]["requires_auth"], true);
    ok(&gw
        .send(with_key(
            reqwest::Method::DELETE,
            &format!("/spaces/{space}/access-control"),
            None,
        ))
        .await);
    let security = ok(&gw
        .send(with_key(
            reqwest::Method::PUT,
            &format!("/spaces/{space}/security"),
            Some(
                r#"{ "security": { "watermark": { "enabled": true, "url": "https://example.com/logo.png", "position": "southeast", "opacity": 0.5 } } }"#,
            ),
        ))
        .await);
    assert_eq!(
        security["data"]["security"]["watermark"]["position"],
        "southeast"
    );
    // The same key in x-api-key works too; the list holds its one space.
    let listed = ok(&gw
        .send(
            gw.client
                .get(gw.url("/api/v1/spaces"))
                .header("x-api-key", &key),
        )
        .await);
    let listed: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [space.as_str()]);
    // Another space of the same workspace does not exist for this key, and
    // the key cannot mint keys or create spaces.
    gw.send(with_key(
        reqwest::Method::GET,
        &format!("/spaces/{other}"),
        None,
    ))
    .await
    .assert_error(404, "not_found");
    gw.send(with_key(
        reqwest::Method::POST,
        "/spaces",
        Some(r#"{ "name": "Sneaky" }"#),
    ))
    .await
    .assert_error(403, "forbidden");
    // A typo in the key: refused at the edge, no look-up.
    let mut typo = key.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    gw.send(
        gw.client
            .get(gw.url(&format!("/api/v1/spaces/{space}")))
            .bearer_auth(String::from_utf8(typo).unwrap()),
    )
    .await
    .assert_error(401, "unauthorized");

    // Revoked: refused at the gateway within a second of the DELETE.
    ok(&gw
        .send(as_owner(
            reqwest::Method::DELETE,
            &format!("/spaces/{space}/api-keys/{key_id}"),
        ))
        .await);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let status = gw
            .send(with_key(
                reqwest::Method::GET,
                &format!("/spaces/{space}"),
                None,
            ))
            .await
            .status;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} a second after the delete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // DELETE /spaces?id= (the Tuzzle form).
    ok(&gw
        .send(as_owner(
            reqwest::Method::DELETE,
            &format!("/spaces?id={space}"),
        ))
        .await);
    gw.send(as_owner(reqwest::Method::GET, &format!("/spaces/{space}")))
        .await
        .assert_error(404, "not_found");
}
