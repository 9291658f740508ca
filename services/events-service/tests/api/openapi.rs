//! The OpenAPI document (`proto-docs/events-service.openapi.json`): committed
//! as generated, complete, and true to what the service answers (the checks are
//! `testkit::openapi`'s).
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p events-service --test api openapi`
//! rewrites the committed file.

use crate::helpers::{
    Receiver, Start, admin, eventually, new_organization, new_workspace, organization_key, reader,
};
use identity::Identity;
use serde_json::json;
use std::time::Duration;
use testkit::openapi::{Document, assert_conforms, assert_response};
use testkit::{CacheKind, DbKind};

fn document() -> Document {
    Document::new(
        events_service::openapi::document()
            .to_pretty_json()
            .expect("the document serializes"),
        "proto-docs/events-service.openapi.json",
        "events-service",
    )
}

#[test]
fn committed_document_is_current() {
    document().assert_committed_is_current();
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    document().assert_documents_exactly(events_service::ROUTES);
}

#[test]
fn every_reference_resolves() {
    document().assert_references_resolve();
}

#[test]
fn operations_are_named_tagged_and_answer_errors() {
    document().assert_operations_are_named_tagged_and_answer_errors();
}

#[test]
fn shared_schemas_follow_the_code() {
    let doc = document();
    doc.assert_envelopes_follow_the_code(
        "ListEnvelope_Vec_WebhookView",
        service_kit::envelope::Meta::Offset {
            page: 1,
            limit: 20,
            total: 0,
        },
    );
    doc.assert_paging_bounds("get", "/api/v1/webhooks");
    doc.assert_paging_bounds("get", "/api/v1/webhooks/{id}/deliveries");
    let doc = doc.json;
    let request = service_kit::pagination::ListQuery {
        page_size: Some(2),
        page: Some(2),
        ..Default::default()
    }
    .validate(&["created_at"])
    .unwrap();
    let page = service_kit::ApiResponse::ok(Vec::<u8>::new()).window(request.window(5));
    let written: serde_json::Value =
        serde_json::from_slice(&page.render(service_kit::Dialect::Gospace).unwrap()).unwrap();
    assert_conforms(&doc, "GospaceListEnvelope_Vec_GospaceWebhookView", &written);
    let (_, refused) = service_kit::ApiError::invalid_query("sort", "must be one of …")
        .render(service_kit::Dialect::Gospace);
    assert_conforms(&doc, "GospaceErrorEnvelope", &refused);
    // The event names are the catalog's.
    let names: Vec<&str> = doc["components"]["schemas"]["EventName"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(names, events_service::catalog::names());
}

#[test]
fn the_gospace_list_documents_its_paging() {
    use service_kit::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE};
    let doc = document().json;
    for (path, fields) in events_service::openapi::SORTED_LISTS {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name && p["in"] == "query")
                .map(|p| p["schema"].clone())
                .unwrap_or_else(|| panic!("{path} lacks ?{name}"))
        };
        assert_eq!(param("page_size")["maximum"], MAX_PAGE_SIZE);
        assert_eq!(param("page_size")["default"], DEFAULT_PAGE_SIZE);
        assert_eq!(param("page")["maximum"], MAX_PAGE);
        let sort = param("sort");
        assert_eq!(sort["default"], "created_at.desc");
        for value in sort["enum"].as_array().unwrap() {
            service_kit::pagination::ListQuery {
                sort: value.as_str().map(str::to_owned),
                ..Default::default()
            }
            .validate(fields)
            .unwrap();
        }
    }
}

#[test]
fn the_checker_notices_differences() {
    document().assert_checker_notices_differences();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_fit_the_document() {
    let doc = document().json;
    let receiver = Receiver::start().await;
    let app = Start::new(DbKind::Sqlite, CacheKind::Memory)
        .run(|config| config.webhooks.allow_private_targets = true)
        .await;
    let workspace = new_workspace();
    let me = admin(&workspace);
    let organization = new_organization();
    let stranger = admin(&new_workspace());
    let viewer = reader(&workspace);
    let anonymous = Identity::anonymous();

    let created = app
        .post(
            &me,
            "/api/v1/webhooks",
            json!({"organization_id": organization, "url": receiver.url, "events": ["booking.created"]}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/webhooks", &created);
    let id = created.json()["data"]["id"].as_str().unwrap().to_owned();
    for refused in [
        app.post(&me, "/api/v1/webhooks", json!({})).await,
        app.post(&viewer, "/api/v1/webhooks", json!({})).await,
        app.post(&anonymous, "/api/v1/webhooks", json!({})).await,
        app.post(
            &organization_key(&workspace, &organization),
            "/api/v1/webhooks",
            json!({"organization_id": new_organization(), "url": receiver.url, "events": ["ping"]}),
        )
        .await,
    ] {
        assert_response(&doc, "post", "/api/v1/webhooks", &refused);
    }
    for listed in [
        app.get(&me, "/api/v1/webhooks?limit=1").await,
        app.get(&me, "/api/v1/webhooks?limit=0").await,
        app.get(&anonymous, "/api/v1/webhooks").await,
    ] {
        assert_response(&doc, "get", "/api/v1/webhooks", &listed);
    }
    let one = format!("/api/v1/webhooks/{id}");
    for read in [app.get(&me, &one).await, app.get(&stranger, &one).await] {
        assert_response(&doc, "get", "/api/v1/webhooks/{id}", &read);
    }
    for changed in [
        app.patch(&me, &one, json!({"notify_email": "ops@example.com"}))
            .await,
        app.patch(&me, &one, json!({"events": ["nope"]})).await,
        app.patch(&stranger, &one, json!({})).await,
    ] {
        assert_response(&doc, "patch", "/api/v1/webhooks/{id}", &changed);
    }
    let tested = app.post(&me, &format!("{one}/test"), json!({})).await;
    assert_response(&doc, "post", "/api/v1/webhooks/{id}/test", &tested);
    let delivery = tested.json()["data"]["id"].as_str().unwrap().to_owned();
    receiver.wait_for(1, Duration::from_secs(15)).await;
    let log = eventually(Duration::from_secs(15), "the attempt logged", || async {
        let log = app.get(&me, &format!("{one}/deliveries")).await;
        (log.json()["data"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty()))
        .then_some(log)
    })
    .await;
    assert_response(&doc, "get", "/api/v1/webhooks/{id}/deliveries", &log);
    assert_response(
        &doc,
        "get",
        "/api/v1/webhooks/{id}/deliveries",
        &app.get(&me, &format!("{one}/deliveries?page=0")).await,
    );
    let retry = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry";
    for retried in [
        app.post(
            &me,
            &format!("{one}/deliveries/{delivery}/retry"),
            json!({}),
        )
        .await,
        app.post(&me, &format!("{one}/deliveries/dlv_x/retry"), json!({}))
            .await,
    ] {
        assert_response(&doc, "post", retry, &retried);
    }

    let gospace = app
        .post(
            &me,
            "/v1/webhooks/webhooks",
            json!({"endpoint": receiver.url, "events": ["member.added"]}),
        )
        .await;
    assert_response(&doc, "post", "/v1/webhooks/webhooks", &gospace);
    let gospace_id = gospace.json()["data"]["id"].as_str().unwrap().to_owned();
    for answer in [
        app.post(&me, "/v1/webhooks/webhooks", json!({"events": []}))
            .await,
        app.post(&anonymous, "/v1/webhooks/webhooks", json!({}))
            .await,
    ] {
        assert_response(&doc, "post", "/v1/webhooks/webhooks", &answer);
    }
    for listed in [
        app.get(&me, "/v1/webhooks/webhooks?page_size=1").await,
        app.get(&me, "/v1/webhooks/webhooks?sort=nope").await,
    ] {
        assert_response(&doc, "get", "/v1/webhooks/webhooks", &listed);
    }
    let path = format!("/v1/webhooks/webhooks/{gospace_id}");
    for changed in [
        app.patch(&me, &path, json!({"enabled": false})).await,
        app.patch(&me, &path, json!({"endpoint": "ftp://x"})).await,
        app.patch(&stranger, &path, json!({})).await,
    ] {
        assert_response(
            &doc,
            "patch",
            "/v1/webhooks/webhooks/{webhook_id}",
            &changed,
        );
    }
    for deleted in [app.delete(&me, &path).await, app.delete(&me, &path).await] {
        assert_response(
            &doc,
            "delete",
            "/v1/webhooks/webhooks/{webhook_id}",
            &deleted,
        );
    }
    for deleted in [app.delete(&me, &one).await, app.delete(&me, &one).await] {
        assert_response(&doc, "delete", "/api/v1/webhooks/{id}", &deleted);
    }
}
