//! Each product's documented examples, replayed through the gateway request
//! for request against the real services, every answer parsed with that
//! product's documented shape (DESIGN §5, `proto-docs/errors.md`).

use crate::platform::{Platform, SYSTEM_KEY};
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use testkit::TestResponse;

/// The sorted top-level keys of an answer.
fn keys(body: &Value) -> Vec<String> {
    let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort_unstable();
    keys
}

/// A SpaceOS success answer (`{status, success: true, message?, data,
/// timestamp, meta?}`) with `status`; returns it.
fn spaceos(response: &TestResponse, status: u16) -> Value {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    for key in keys(&body) {
        assert!(
            ["data", "message", "meta", "status", "success", "timestamp"].contains(&key.as_str()),
            "{key} in {body}"
        );
    }
    if let Some(meta) = body.get("meta") {
        assert_eq!(keys(meta), ["limit", "page", "total"], "{body}");
    }
    body
}

#[tokio::test]
async fn spaceos_examples_work_verbatim_through_the_gateway() {
    let platform = Platform::with_booking().await;
    let gw = &platform.gw;
    // Quickstart, step 2: a one-time code for a JWT.
    let signed_in = platform.sign_in("your-email@example.com").await;
    let token = signed_in["access_token"].as_str().unwrap().to_owned();
    let bearer = |method: reqwest::Method, path: &str| {
        gw.client.request(method, gw.url(path)).bearer_auth(&token)
    };

    // Step 3: list organizations (none yet), then one to book in.
    let listed = gw
        .send(bearer(reqwest::Method::GET, "/api/v1/organizations"))
        .await;
    let body = spaceos(&listed, 200);
    assert_eq!(body["data"], json!([]));
    assert_eq!(body["meta"], json!({"page": 1, "limit": 20, "total": 0}));
    // The rate-limit headers of the rate-limit page: a user token's budget,
    // and the Unix time it is full again.
    assert_eq!(listed.header("x-ratelimit-limit"), Some("500"));
    assert_eq!(listed.header("x-ratelimit-remaining"), Some("499"));
    let reset: i64 = listed.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!((Utc::now().timestamp()..=Utc::now().timestamp() + 61).contains(&reset));
    let org = spaceos(
        &gw.send(
            bearer(reqwest::Method::POST, "/api/v1/organizations").json(&json!({
                "name": "My Workspace",
                "slug": "my-workspace",
                "timezone": "America/New_York",
                "logo": "https://cdn.example.com/my-workspace.png",
            })),
        )
        .await,
        201,
    )["data"]
        .clone();
    let org_id = org["id"].as_str().unwrap().to_owned();
    assert_eq!(org["logo"], "https://cdn.example.com/my-workspace.png");

    // Spaces page: a space group and a meeting space, the documented bodies.
    let group = spaceos(
        &gw.send(
            bearer(reqwest::Method::POST, "/api/v1/space-groups")
                .header("Content-Type", "application/json")
                .body(format!(
                    r#"{{
"organization_id": "{org_id}",
"name": "Downtown Office - Floor 3",
"timezone": "America/New_York",
"address": "123 Main St, New York, NY 10001"
}}"#
                )),
        )
        .await,
        201,
    )["data"]
        .clone();
    let group_id = group["id"].as_str().unwrap();
    let space = spaceos(
        &gw.send(
            bearer(reqwest::Method::POST, "/api/v1/meeting-spaces")
                .header("Content-Type", "application/json")
                .body(format!(
                    r#"{{
"space_group_id": "{group_id}",
"name": "Conference Room A",
"slug": "conference-room-a",
"capacity": 8,
"description": "8-person conference room with AV equipment",
"amenities": ["projector", "whiteboard", "video_conferencing"],
"booking_increment": 30
}}"#
                )),
        )
        .await,
        201,
    )["data"]
        .clone();
    let space_id = space["id"].as_str().unwrap().to_owned();
    let spaces = spaceos(
        &gw.send(bearer(
            reqwest::Method::GET,
            &format!("/api/v1/meeting-spaces?organization_id={org_id}"),
        ))
        .await,
        200,
    );
    assert_eq!(spaces["data"][0]["id"], space_id.as_str());
    let public = gw
        .get("/api/v1/meeting-spaces/by-slug/conference-room-a")
        .await;
    assert_eq!(spaceos(&public, 200)["data"]["id"], space_id.as_str());
    let day = (Utc::now() + Duration::days(2)).date_naive();
    spaceos(
        &gw.send(bearer(
            reqwest::Method::GET,
            &format!("/api/v1/meeting-spaces/{space_id}/availability?date={day}"),
        ))
        .await,
        200,
    );

    // Bookings page: the documented body (with times to come). Anonymous
    // bookings are for spaces that allow public booking; this one is booked
    // with the token.
    let start = format!("{day}T15:00:00Z");
    let end = format!("{day}T16:00:00Z");
    let booked = gw
        .send(
            bearer(reqwest::Method::POST, "/api/v1/bookings")
                .header("Content-Type", "application/json")
                .body(format!(
                    r#"{{
"meeting_space_id": "{space_id}",
"start_time": "{start}",
"end_time": "{end}",
"organizer_name": "John Doe",
"organizer_email": "john@example.com",
"notes": "Team standup meeting"
}}"#
                )),
        )
        .await;
    let booking = spaceos(&booked, 201)["data"].clone();
    let booking_id = booking["id"].as_str().unwrap().to_owned();
    let listed = spaceos(
        &gw.send(bearer(
            reqwest::Method::GET,
            &format!("/api/v1/bookings?organization_id={org_id}&meeting_space_id={space_id}"),
        ))
        .await,
        200,
    );
    assert_eq!(listed["data"][0]["id"], booking_id.as_str());
    spaceos(
        &gw.send(bearer(
            reqwest::Method::GET,
            &format!("/api/v1/bookings/{booking_id}"),
        ))
        .await,
        200,
    );

    // The error page's validation example: 400, "Validation failed", the
    // field named.
    let past = gw
        .send(
            bearer(reqwest::Method::POST, "/api/v1/bookings").json(&json!({
                "meeting_space_id": space_id,
                "start_time": "2025-01-15T10:00:00Z",
                "end_time": "2025-01-15T11:00:00Z",
                "organizer_name": "John Doe",
                "organizer_email": "john@example.com",
            })),
        )
        .await;
    let refused = past.assert_error(400, "validation_failed");
    assert_eq!(refused["message"], "Validation failed");
    assert_eq!(refused["errors"][0]["field"], "start_time");
    assert_eq!(
        keys(&refused),
        [
            "error",
            "errors",
            "message",
            "status",
            "success",
            "timestamp"
        ]
    );
    // A double booking is a 409 conflict.
    gw.send(
        bearer(reqwest::Method::POST, "/api/v1/bookings").json(&json!({
            "meeting_space_id": space_id,
            "start_time": start,
            "end_time": end,
            "organizer_name": "Jane Doe",
            "organizer_email": "jane@example.com",
        })),
    )
    .await
    .assert_error(409, "conflict");

    // The quickstart's system key, with no workspace header: lists span the
    // workspaces, a named resource is reached in its own.
    let system = |path: &str| gw.client.get(gw.url(path)).header("x-api-key", SYSTEM_KEY);
    let all = spaceos(&gw.send(system("/api/v1/organizations")).await, 200);
    assert_eq!(all["data"][0]["id"], org_id.as_str());
    let bookings = spaceos(
        &gw.send(system(&format!(
            "/api/v1/bookings?organization_id={org_id}"
        )))
        .await,
        200,
    );
    assert_eq!(bookings["meta"]["total"], 1);
    spaceos(
        &gw.send(system(&format!("/api/v1/bookings/{booking_id}")))
            .await,
        200,
    );

    // Cancel, as the page shows it (no body).
    let cancelled = spaceos(
        &gw.send(bearer(
            reqwest::Method::PATCH,
            &format!("/api/v1/bookings/{booking_id}/cancel"),
        ))
        .await,
        200,
    );
    assert_eq!(cancelled["data"]["status"], "cancelled");

    // A page walk over more organizations than one page: each exactly once.
    let mut made = BTreeSet::from([org_id.clone()]);
    for i in 0..4 {
        let created = gw
            .send(
                bearer(reqwest::Method::POST, "/api/v1/organizations").json(&json!({
                    "name": format!("Org {i}"), "slug": format!("org-walk-{i}"), "timezone": "UTC",
                })),
            )
            .await;
        made.insert(
            spaceos(&created, 201)["data"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let body = spaceos(
            &gw.send(bearer(
                reqwest::Method::GET,
                &format!("/api/v1/organizations?page={page}&limit=2"),
            ))
            .await,
            200,
        );
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), made);
}

/// A workspace API key bound to one organization at creation (gospace's key
/// API, SpaceOS's `x-org-api-key`): through the gateway it reaches that
/// organization only.
#[tokio::test]
async fn organization_bound_keys_reach_their_organization_only() {
    let platform = Platform::with_booking().await;
    let gw = &platform.gw;
    let signed_in = platform.sign_in("org-keys@example.com").await;
    let token = signed_in["access_token"].as_str().unwrap().to_owned();
    let bearer = |method: reqwest::Method, path: &str| {
        gw.client.request(method, gw.url(path)).bearer_auth(&token)
    };
    let mut orgs = Vec::new();
    for slug in ["bound-org", "other-org"] {
        let created = gw
            .send(
                bearer(reqwest::Method::POST, "/api/v1/organizations").json(&json!({
                    "name": slug, "slug": slug, "timezone": "UTC",
                })),
            )
            .await;
        orgs.push(
            spaceos(&created, 201)["data"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let minted = gw
        .send(
            bearer(reqwest::Method::POST, "/v1/auth/api-key").json(&json!({
                "name": "front desk", "organization_id": orgs[0],
            })),
        )
        .await;
    assert_eq!(minted.status, 201, "{:?}", minted.json());
    let key = minted.json()["data"]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for header in ["x-org-api-key", "x-api-key"] {
        let with_key = |path: &str| gw.client.get(gw.url(path)).header(header, &key);
        let own = gw
            .send(with_key(&format!("/api/v1/organizations/{}", orgs[0])))
            .await;
        assert_eq!(spaceos(&own, 200)["data"]["id"], orgs[0].as_str());
        gw.send(with_key(&format!("/api/v1/organizations/{}", orgs[1])))
            .await
            .assert_error(404, "not_found");
        let listed = spaceos(&gw.send(with_key("/api/v1/organizations")).await, 200);
        assert_eq!(listed["meta"]["total"], 1, "{listed}");
        assert_eq!(listed["data"][0]["id"], orgs[0].as_str());
    }
}

/// A gospace success answer: `{success: true, data}`; returns `data`.
fn gospace(response: &TestResponse, status: u16) -> Value {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    assert_eq!(keys(&body), ["data", "success"], "{body}");
    assert_eq!(body["success"], true);
    body["data"].clone()
}

/// A gospace list: `{success, items, next_cursor, prev_cursor, pagination:
/// {total_results}}`; returns it.
fn gospace_list(response: &TestResponse) -> Value {
    let body = response.json();
    assert_eq!(response.status, 200, "{body}");
    assert_eq!(
        keys(&body),
        [
            "items",
            "next_cursor",
            "pagination",
            "prev_cursor",
            "success"
        ],
        "{body}"
    );
    assert!(body["items"].is_array());
    assert!(body["pagination"]["total_results"].is_u64(), "{body}");
    body
}

/// A gospace error: `{success: false, error: {code, message, details,
/// request_id}}` with gospace's `code`.
fn gospace_error(response: &TestResponse, status: u16, code: &str) -> Value {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    assert_eq!(keys(&body), ["error", "success"], "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(
        keys(&body["error"]),
        ["code", "details", "message", "request_id"],
        "{body}"
    );
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(
        body["error"]["request_id"],
        response.header("x-request-id").unwrap()
    );
    body["error"].clone()
}

#[tokio::test]
async fn gospace_examples_work_verbatim_through_the_gateway() {
    let platform = Platform::with_booking().await;
    let gw = &platform.gw;
    let signed_in = platform.sign_in("ops@example.com").await;
    let refresh_token = signed_in["refresh_token"].as_str().unwrap();

    // Interactive sessions: the JSON refresh, answered in the envelope.
    let refreshed = gw
        .send(
            gw.client
                .post(gw.url("/v1/auth/token"))
                .header("Content-Type", "application/json")
                .body(format!(r#"{{ "refresh_token": "{refresh_token}" }}"#)),
        )
        .await;
    let session = gospace(&refreshed, 200);
    assert_eq!(session["user"]["email"], "ops@example.com");
    assert!(
        session["user"]["user_id"]
            .as_str()
            .unwrap()
            .starts_with("usr_")
    );
    let token = session["access_token"].as_str().unwrap().to_owned();
    let bearer = |method: reqwest::Method, path: &str| {
        gw.client.request(method, gw.url(path)).bearer_auth(&token)
    };

    // The first documented call.
    let workspaces = gospace_list(
        &gw.send(bearer(reqwest::Method::GET, "/v1/system/workspaces"))
            .await,
    );
    assert_eq!(workspaces["pagination"]["total_results"], 1);
    let workspace_id = workspaces["items"][0]["id"].as_str().unwrap().to_owned();

    // API keys: created with a bearer token and no body, then used.
    let created = gospace(
        &gw.send(
            bearer(reqwest::Method::POST, "/v1/auth/api-key")
                .header("Content-Type", "application/json"),
        )
        .await,
        201,
    );
    let api_key = created["api_key"].as_str().unwrap().to_owned();
    assert!(api_key.starts_with("key_"), "{created}");
    let with_key = gospace_list(
        &gw.send(
            gw.client
                .get(gw.url("/v1/system/workspaces"))
                .header("x-api-key", &api_key),
        )
        .await,
    );
    assert_eq!(with_key["items"][0]["id"], workspace_id.as_str());

    // Service principals: the documented exchange, word for word.
    let principal = gospace(
        &gw.send(
            bearer(reqwest::Method::POST, "/v1/auth/service-principals").json(&json!({
                "name": "agents", "scopes": "workspace:read data:read agents:run",
            })),
        )
        .await,
        201,
    );
    let client_id = principal["client_id"].as_str().unwrap();
    let client_secret = principal["client_secret"].as_str().unwrap();
    let exchanged = gw
        .send(
            gw.client
                .post(gw.url("/v1/auth/token"))
                .header("Content-Type", "application/json")
                .body(format!(
                    r#"{{
  "client_id": "{client_id}",
  "client_secret": "{client_secret}",
  "workspace_id": "{workspace_id}",
  "scope": "workspace:read data:read agents:run"
}}"#
                )),
        )
        .await;
    let answer = exchanged.json();
    assert_eq!(exchanged.status, 200, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 3600);
    assert_eq!(answer["scope"], "agents:run data:read workspace:read");
    let service_token = answer["access_token"].as_str().unwrap();
    let as_service = gospace_list(
        &gw.send(
            gw.client
                .get(gw.url("/v1/system/workspaces"))
                .bearer_auth(service_token),
        )
        .await,
    );
    assert_eq!(as_service["items"][0]["id"], workspace_id.as_str());

    // A cursor walk over more keys than a page: each exactly once.
    let mut made = BTreeSet::new();
    for i in 0..4 {
        gospace(
            &gw.send(
                bearer(reqwest::Method::POST, "/v1/auth/api-key")
                    .json(&json!({"name": format!("key {i}")})),
            )
            .await,
            201,
        );
    }
    let mut seen = Vec::new();
    let mut path = "/v1/auth/api-key?page_size=2".to_owned();
    loop {
        let page = gospace_list(&gw.send(bearer(reqwest::Method::GET, &path)).await);
        assert_eq!(page["pagination"]["total_results"], 5);
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
            made.insert(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/auth/api-key?page_size=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(made.len(), 5, "every key once: {seen:?}");

    // Errors, as gospace clients branch on them.
    gospace_error(
        &gw.send(
            gw.client
                .get(gw.url("/v1/system/workspaces"))
                .bearer_auth("not-a-token"),
        )
        .await,
        401,
        "unauthorised",
    );
    gospace_error(&gw.get("/v1/auth/api-key").await, 401, "unauthorised");
    gospace_error(
        &gw.send(bearer(
            reqwest::Method::DELETE,
            "/v1/auth/api-key/apk_01J0X0M7KNG7KQZ4XQY4J6V6P4",
        ))
        .await,
        404,
        "resource_not_found",
    );
    let invalid = gospace_error(
        &gw.send(bearer(
            reqwest::Method::GET,
            "/v1/auth/api-key?page_size=501",
        ))
        .await,
        400,
        "validation_failed",
    );
    assert_eq!(invalid["details"][0]["path"], "page_size");
    let sorted = gospace_error(
        &gw.send(bearer(
            reqwest::Method::GET,
            "/v1/system/workspaces?sort=colour.asc",
        ))
        .await,
        400,
        "validation_failed",
    );
    assert_eq!(sorted["details"][0]["path"], "sort");
    gospace_error(
        &gw.send(bearer(reqwest::Method::GET, "/v1/no-such-service"))
            .await,
        404,
        "resource_not_found",
    );
}

/// A Tuzzle success answer: `{data}`; returns `data`.
fn tuzzle(response: &TestResponse, status: u16) -> Value {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    assert_eq!(keys(&body), ["data"], "{body}");
    body["data"].clone()
}

/// A Tuzzle list (Laravel's cursor paginator); returns it.
fn tuzzle_list(response: &TestResponse) -> Value {
    let body = response.json();
    assert_eq!(response.status, 200, "{body}");
    assert_eq!(
        keys(&body),
        [
            "data",
            "next_cursor",
            "next_page_url",
            "path",
            "per_page",
            "prev_cursor",
            "prev_page_url"
        ],
        "{body}"
    );
    body
}

/// A Tuzzle error: `{message, errors?}`; returns it.
fn tuzzle_error(response: &TestResponse, status: u16, message: &str) -> Value {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    assert_eq!(body["message"], message, "{body}");
    for key in keys(&body) {
        assert!(["errors", "message"].contains(&key.as_str()), "{body}");
    }
    body
}

#[tokio::test]
async fn tuzzle_examples_work_verbatim_through_the_gateway() {
    let platform = Platform::with_booking().await;
    let gw = &platform.gw;
    let owner = platform.sign_in("tuzzle-owner@example.com").await;
    let token = owner["access_token"].as_str().unwrap().to_owned();
    // The reference's `sk_` key: an account key, minted by a workspace admin
    // under a first space.
    let first = tuzzle(
        &gw.send(
            gw.client
                .post(gw.url("/api/v1/spaces"))
                .bearer_auth(&token)
                .json(&json!({"name": "Bootstrap"})),
        )
        .await,
        201,
    );
    let bootstrap = first["id"].as_str().unwrap().to_owned();
    let minted = tuzzle(
        &gw.send(
            gw.client
                .post(gw.url(&format!("/api/v1/spaces/{bootstrap}/api-keys")))
                .bearer_auth(&token)
                .json(&json!({"name": "production", "type": "account"})),
        )
        .await,
        201,
    );
    assert!(minted["id"].is_u64(), "{minted}");
    assert!(minted.get("last_used_at").is_some(), "{minted}");
    let sk = minted["key"].as_str().unwrap().to_owned();
    let curl = |method: reqwest::Method, path: &str, body: Option<String>| {
        let request = gw
            .client
            .request(method, gw.url(&format!("/api/v1{path}")))
            .header("Authorization", format!("Bearer {sk}"));
        match body {
            Some(body) => request
                .header("Content-Type", "application/json")
                .body(body),
            None => request,
        }
    };

    // Space endpoints.
    let created = tuzzle(
        &gw.send(curl(
            reqwest::Method::POST,
            "/spaces",
            Some(r#"{ "name": "My App", "description": "Production assets" }"#.into()),
        ))
        .await,
        201,
    );
    let space = created["id"].as_str().unwrap().to_owned();
    let duplicate = gw
        .send(curl(
            reqwest::Method::POST,
            "/spaces",
            Some(r#"{ "name": "My App" }"#.into()),
        ))
        .await;
    let refused = tuzzle_error(&duplicate, 422, "The name has already been taken.");
    assert_eq!(
        refused["errors"],
        json!({"name": ["The name has already been taken."]})
    );
    let missing = gw
        .send(curl(reqwest::Method::POST, "/spaces", Some("{}".into())))
        .await;
    tuzzle_error(&missing, 422, "The name field is required.");
    // The webhooks guide: a partial PUT.
    let hooked = tuzzle(
        &gw.send(curl(
            reqwest::Method::PUT,
            &format!("/spaces/{space}"),
            Some(r#"{ "webhook_url": "https://example.com/webhooks/tuzzle" }"#.into()),
        ))
        .await,
        200,
    );
    assert_eq!(hooked["webhook_url"], "https://example.com/webhooks/tuzzle");
    assert_eq!(hooked["name"], "My App");
    // The key in the query, as the authentication page allows.
    let by_query = gw
        .get(&format!("/api/v1/spaces/{space}?api_key={sk}"))
        .await;
    assert_eq!(tuzzle(&by_query, 200)["id"], space.as_str());

    // Upload configs: the guide's example, then the list without `config`.
    let config = tuzzle(
        &gw.send(curl(
            reqwest::Method::POST,
            "/upload-configs",
            Some(format!(
                r#"{{
    "name": "product-images",
    "description": "Config for product catalog images",
    "space_id": "{space}",
    "delivery_type": "upload",
    "config": {{
      "validation": {{
        "allowed_formats": "jpg,png,webp",
        "max_file_size": 10485760
      }},
      "transformations": {{
        "upload_quality": "auto",
        "upload_format": "original"
      }}
    }}
  }}"#
            )),
        ))
        .await,
        201,
    );
    assert_eq!(
        config["config"]["validation"]["allowed_formats"],
        "jpg,png,webp"
    );
    let all = tuzzle_list(
        &gw.send(curl(reqwest::Method::GET, "/upload-configs/all", None))
            .await,
    );
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("config").is_none()),
        "{all}"
    );

    // `while (res.next_cursor)`: every space exactly once.
    for i in 0..3 {
        tuzzle(
            &gw.send(curl(
                reqwest::Method::POST,
                "/spaces",
                Some(format!(r#"{{ "name": "Walk {i}" }}"#)),
            ))
            .await,
            201,
        );
    }
    let mut seen = Vec::new();
    let mut path = "/spaces?limit=2".to_owned();
    loop {
        let page = tuzzle_list(&gw.send(curl(reqwest::Method::GET, &path, None)).await);
        assert_eq!(page["per_page"], 2);
        assert_eq!(page["path"], "/api/v1/spaces");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/spaces?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 5);

    // The SDK's delete, the id in the body.
    tuzzle(
        &gw.send(curl(
            reqwest::Method::DELETE,
            "/spaces",
            Some(format!(r#"{{ "id": "{space}" }}"#)),
        ))
        .await,
        200,
    );
    gw.send(curl(
        reqwest::Method::GET,
        &format!("/spaces/{space}"),
        None,
    ))
    .await
    .assert_error(404, "not_found");

    // The errors page: 401 and 403 in Laravel's words.
    let unknown = gw
        .send(
            gw.client
                .get(gw.url("/api/v1/spaces"))
                .bearer_auth(format!("sk_{}", "x".repeat(40))),
        )
        .await;
    tuzzle_error(&unknown, 401, "Unauthenticated.");
    tuzzle_error(&gw.get("/api/v1/spaces").await, 401, "Unauthenticated.");
    let space_key = tuzzle(
        &gw.send(curl(
            reqwest::Method::POST,
            &format!("/spaces/{bootstrap}/api-keys"),
            Some(r#"{ "name": "one space" }"#.into()),
        ))
        .await,
        201,
    );
    assert_eq!(space_key["type"], "space");
    let forbidden = gw
        .send(
            gw.client
                .post(gw.url("/api/v1/spaces"))
                .bearer_auth(space_key["key"].as_str().unwrap())
                .json(&json!({"name": "Not mine to make"})),
        )
        .await;
    tuzzle_error(&forbidden, 403, "Forbidden.");
}
