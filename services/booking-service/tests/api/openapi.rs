//! The OpenAPI document (`proto-docs/booking-service.openapi.json`): committed
//! as generated, complete, and true to what the service answers (the checks are
//! `testkit::openapi`'s).
//!
//! `SPACEPORT_UPDATE_OPENAPI=1 cargo test -p booking-service --test api openapi`
//! (`make openapi`) rewrites the committed file.

use crate::helpers::TestBooking;
use std::collections::BTreeSet;
use testkit::DbKind;
use testkit::openapi::{Document, assert_response, operations};
use testkit::reqwest::Method;

fn document() -> Document {
    Document::new(
        booking_service::openapi::document()
            .to_pretty_json()
            .expect("the document serializes"),
        "proto-docs/booking-service.openapi.json",
        "booking-service",
    )
}

#[test]
fn committed_document_is_current() {
    document().assert_committed_is_current();
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    document().assert_documents_exactly(booking_service::ROUTES);
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
        "ListEnvelope_Vec_OrganizationView",
        service_kit::envelope::Meta::Offset {
            page: 1,
            limit: 20,
            total: 0,
        },
    );
    doc.assert_paging_bounds("get", "/api/v1/organizations");
}

#[test]
fn the_checker_notices_differences() {
    document().assert_checker_notices_differences();
}

/// Real answers of the main endpoints conform to the document.
#[tokio::test]
async fn answers_match_the_document() {
    let doc = document().json;
    let t = TestBooking::start(DbKind::Sqlite).await;
    let org = t
        .post(
            "/api/v1/organizations",
            serde_json::json!({"name": "Docs", "slug": crate::helpers::slug("docs"), "timezone": "UTC"}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/organizations", &org);
    let org_id = org.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_response(
        &doc,
        "get",
        "/api/v1/organizations",
        &t.get("/api/v1/organizations").await,
    );
    let slug = org.json()["data"]["slug"].as_str().unwrap().to_owned();
    let public = t
        .get(&format!("/api/v1/organizations/by-slug/{slug}"))
        .await;
    assert_response(&doc, "get", "/api/v1/organizations/by-slug/{slug}", &public);
    let group = t
        .post(
            "/api/v1/space-groups",
            serde_json::json!({"organization_id": org_id, "name": "HQ"}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/space-groups", &group);
    let space = t
        .post(
            "/api/v1/meeting-spaces",
            serde_json::json!({"organization_id": org_id, "name": "Room", "slug": crate::helpers::slug("room"), "amenities": ["tv"]}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/meeting-spaces", &space);
    let space_id = space.json()["data"]["id"].as_str().unwrap().to_owned();
    let space_slug = space.json()["data"]["slug"].as_str().unwrap().to_owned();
    let public = t
        .get(&format!("/api/v1/meeting-spaces/by-slug/{space_slug}"))
        .await;
    assert_response(
        &doc,
        "get",
        "/api/v1/meeting-spaces/by-slug/{slug}",
        &public,
    );
    assert_response(
        &doc,
        "get",
        "/api/v1/meeting-spaces",
        &t.get("/api/v1/meeting-spaces").await,
    );
    let hours = t
        .server
        .send(
            t.request_as(&t.owner, Method::PUT, &format!("/api/v1/meeting-spaces/{space_id}/business-hours"))
                .json(&serde_json::json!({"hours": [{"weekday": "monday", "open": "09:00", "close": "24:00"}]})),
        )
        .await;
    assert_response(
        &doc,
        "put",
        "/api/v1/meeting-spaces/{id}/business-hours",
        &hours,
    );
    let ua = t
        .post(
            &format!("/api/v1/meeting-spaces/{space_id}/unavailability"),
            serde_json::json!({"start_time": "2040-01-01T00:00:00Z", "end_time": "2040-01-02T00:00:00Z"}),
        )
        .await;
    assert_response(
        &doc,
        "post",
        "/api/v1/meeting-spaces/{id}/unavailability",
        &ua,
    );
    t.server
        .send(
            t.request_as(
                &t.owner,
                Method::PUT,
                &format!("/api/v1/meeting-spaces/{space_id}/business-hours"),
            )
            .json(&serde_json::json!({"hours": []})),
        )
        .await;
    let start = crate::helpers::at(2, 10, 0);
    let booking = t
        .book(&space_id, start, start + chrono::Duration::hours(1))
        .await;
    assert_response(&doc, "post", "/api/v1/bookings", &booking);
    let clash = t
        .book(&space_id, start, start + chrono::Duration::hours(1))
        .await;
    assert_response(&doc, "post", "/api/v1/bookings", &clash);
    let invalid = t
        .post(
            "/api/v1/bookings",
            serde_json::json!({"meeting_space_id": space_id}),
        )
        .await;
    assert_response(&doc, "post", "/api/v1/bookings", &invalid);
    assert_response(
        &doc,
        "get",
        "/api/v1/bookings",
        &t.get("/api/v1/bookings").await,
    );
    let id = booking.json()["data"]["id"].as_str().unwrap().to_owned();
    let cancelled = t
        .patch(
            &format!("/api/v1/bookings/{id}/cancel"),
            serde_json::json!({"reason": "admin"}),
        )
        .await;
    assert_response(&doc, "patch", "/api/v1/bookings/{id}/cancel", &cancelled);
    let again = t
        .patch(
            &format!("/api/v1/bookings/{id}/cancel"),
            serde_json::json!({}),
        )
        .await;
    assert_response(&doc, "patch", "/api/v1/bookings/{id}/cancel", &again);
    let availability = t
        .get(&format!(
            "/api/v1/meeting-spaces/{space_id}/availability?date={}",
            start.date_naive()
        ))
        .await;
    assert_response(
        &doc,
        "get",
        "/api/v1/meeting-spaces/{id}/availability",
        &availability,
    );
}

/// The operations documented as needing no credential are exactly the ones the
/// gateway is told to route as public.
#[test]
fn public_operations_are_the_public_routes() {
    let doc = document().json;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .filter(|(_, _, operation)| {
            operation["security"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|req| req.as_object().is_some_and(|o| o.is_empty()))
            })
        })
        .map(|(method, path, _)| (method, path))
        .collect();
    let public: BTreeSet<(String, String)> = booking_service::PUBLIC_ROUTES
        .iter()
        .map(|(method, path)| (method.to_ascii_lowercase(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, public);
}
