//! The deliveries log and a client's own sends:
//! `GET /api/v1/webhooks/{id}/deliveries` (every attempt),
//! `POST /api/v1/webhooks/{id}/test` (a `ping`) and
//! `POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/retry`. They serve
//! every subscription of the workspace, gospace ones too.

use crate::access::Reach;
use crate::dispatch::{AttemptOutcome, DeliveryStatus, FAILED, NewDelivery, PENDING, SUCCEEDED};
use crate::openapi::{Envelope, ErrorEnvelope, ListEnvelope, PageParams};
use crate::schema::{attempts, deliveries, events};
use crate::subscriptions::{self, Subscription};
use crate::{EventsState, Fail, catalog, intake, now, rfc3339};
use actix_web::http::StatusCode;
use actix_web::web;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use identity::Identity;
use serde::Serialize;
use service_kit::ids::{self, prefix};
use service_kit::pagination::OffsetQuery;
use service_kit::{ApiError, ApiResponse, Query};
use utoipa::ToSchema;

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = deliveries)]
struct DeliveryRow {
    id: String,
    event_id: String,
    status: String,
    manual: bool,
    next_attempt_at: Option<NaiveDateTime>,
    lease_until: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = attempts)]
struct AttemptRow {
    delivery_id: String,
    number: i32,
    started_at: NaiveDateTime,
    duration_ms: i64,
    response_status: Option<i32>,
    response_body: Option<String>,
    response_truncated: bool,
    error: Option<String>,
    outcome: String,
    next_attempt_at: Option<NaiveDateTime>,
}

/// One attempt to deliver.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1 for the first attempt.
    number: i32,
    /// When it was sent.
    #[schema(format = DateTime)]
    attempted_at: String,
    /// Milliseconds until the answer (or the failure).
    duration_ms: i64,
    /// The receiver's HTTP status; null when none came.
    #[schema(required = true)]
    response_status: Option<i32>,
    /// The receiver's answer, at most 64 KiB of it (as text).
    #[schema(required = true)]
    response_body: Option<String>,
    /// More than 64 KiB came, and the rest was not read.
    response_truncated: bool,
    /// Why it failed (no connection, a timeout, a status other than 2xx…).
    #[schema(required = true)]
    error: Option<String>,
    outcome: AttemptOutcome,
    /// When the next attempt was scheduled, after this one.
    #[schema(format = DateTime, required = true)]
    next_attempt_at: Option<String>,
}

/// One event's delivery to one subscription, with every attempt, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `dlv_…`; also the `webhook-id` header of every attempt.
    id: String,
    /// `wh_…`
    webhook_id: String,
    /// `evt_…`
    event_id: String,
    /// The event's name.
    event: String,
    status: DeliveryStatus,
    /// A client's test or retry: attempted once.
    manual: bool,
    /// When the next attempt is due; null when none is.
    #[schema(format = DateTime, required = true)]
    next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    attempts: Vec<AttemptView>,
}

impl AttemptView {
    fn from(row: AttemptRow) -> AttemptView {
        AttemptView {
            number: row.number,
            attempted_at: rfc3339(row.started_at),
            duration_ms: row.duration_ms,
            response_status: row.response_status,
            response_body: row.response_body,
            response_truncated: row.response_truncated,
            error: row.error,
            outcome: AttemptOutcome::parse(&row.outcome).unwrap_or(AttemptOutcome::Failed),
            next_attempt_at: row.next_attempt_at.map(rfc3339),
        }
    }
}

fn view(
    row: DeliveryRow,
    webhook_id: &str,
    event: String,
    attempts: Vec<AttemptView>,
) -> DeliveryView {
    DeliveryView {
        status: DeliveryStatus::parse(&row.status).unwrap_or(DeliveryStatus::Pending),
        next_attempt_at: row
            .next_attempt_at
            .filter(|_| row.status == PENDING)
            .map(rfc3339),
        id: row.id,
        webhook_id: webhook_id.to_owned(),
        event_id: row.event_id,
        event,
        manual: row.manual,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        attempts,
    }
}

/// The views of `rows`, with their events' names and their attempts.
fn views(
    conn: &mut store::DbConnection,
    webhook_id: &str,
    rows: Vec<DeliveryRow>,
) -> Result<Vec<DeliveryView>, Fail> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let event_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    let names: std::collections::HashMap<String, String> = events::table
        .filter(events::id.eq_any(&event_ids))
        .select((events::id, events::event_type))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    let mut by_delivery: std::collections::HashMap<String, Vec<AttemptView>> = Default::default();
    let rows_of_attempts: Vec<AttemptRow> = attempts::table
        .filter(attempts::delivery_id.eq_any(&ids))
        .order((attempts::delivery_id.asc(), attempts::number.asc()))
        .select(AttemptRow::as_select())
        .load(conn)?;
    for attempt in rows_of_attempts {
        by_delivery
            .entry(attempt.delivery_id.clone())
            .or_default()
            .push(AttemptView::from(attempt));
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let event = names.get(&row.event_id).cloned().unwrap_or_default();
            let attempts = by_delivery.remove(&row.id).unwrap_or_default();
            view(row, webhook_id, event, attempts)
        })
        .collect())
}

/// List a webhook's deliveries
///
/// Newest first, each with every attempt (when, how long, the receiver's
/// status and answer, the error, the next attempt). Needs `webhooks:read`.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "deliveries",
    params(("id" = String, Path, description = "The webhook's id (`wh_…`)."), PageParams),
    security(("bearer_token" = ["webhooks:read"]), ("api_key" = ["webhooks:read"]), ("org_api_key" = ["webhooks:read"])),
    responses(
        (status = 200, description = "A page of deliveries; `meta` is `{page, limit, total}`.", body = ListEnvelope<Vec<DeliveryView>>),
        (status = 400, description = "A bad `page` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    path: web::Path<String>,
    query: Query<OffsetQuery>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<Vec<DeliveryView>>, ApiError> {
    let reach = Reach::read(&identity)?;
    let page = query.validate()?;
    let id = path.into_inner();
    let (views, total) = state
        .db
        .run(move |conn| {
            let subscription = subscriptions::find(conn, &reach, &id, None)?;
            let total: i64 = deliveries::table
                .filter(deliveries::subscription_id.eq(&subscription.id))
                .count()
                .get_result(conn)?;
            let rows: Vec<DeliveryRow> = deliveries::table
                .filter(deliveries::subscription_id.eq(&subscription.id))
                .order((deliveries::created_at.desc(), deliveries::id.desc()))
                .limit(i64::from(page.limit))
                .offset(page.offset())
                .select(DeliveryRow::as_select())
                .load(conn)?;
            Ok::<_, Fail>((views(conn, &subscription.id, rows)?, total))
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(views).meta(page.meta(total.unsigned_abs())))
}

/// Send a test event
///
/// Delivers a `ping` event to this webhook now, whatever its state (a
/// failing or disabled webhook included): one attempt, which the deliveries
/// log shows, and which never turns the webhook `failing`. Its body is the
/// webhook's usual shape with `event: "ping"` and `data` (gospace:
/// `payload`) `{webhook_id}`. Needs `webhooks:write`.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/test",
    operation_id = "test_webhook",
    tag = "deliveries",
    params(("id" = String, Path, description = "The webhook's id (`wh_…`).")),
    security(("bearer_token" = ["webhooks:write"]), ("api_key" = ["webhooks:write"]), ("org_api_key" = ["webhooks:write"])),
    responses(
        (status = 202, description = "The ping's delivery, about to be attempted.", body = Envelope<DeliveryView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn test(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<DeliveryView>, ApiError> {
    let reach = Reach::write(&identity)?;
    let id = path.into_inner();
    let request_id = service_kit::request_id::current();
    let created = state
        .db
        .transaction(move |conn| {
            let subscription: Subscription = subscriptions::find(conn, &reach, &id, None)?;
            let mut event = ::events::Event::new(
                "events-service",
                catalog::PING,
                &subscription.id,
                serde_json::json!({ "webhook_id": subscription.id }),
                request_id,
            )
            .with_workspace(&subscription.workspace_id);
            if let Some(organization) = &subscription.organization_id {
                event = event.with_organization(organization);
            }
            intake::insert_event(conn, &event)?;
            let delivery = NewDelivery::due_now(
                &subscription.id,
                &event.id,
                &subscription.workspace_id,
                true,
            );
            diesel::insert_into(deliveries::table)
                .values(&delivery)
                .execute(conn)?;
            let row: DeliveryRow = deliveries::table
                .find(delivery.id())
                .select(DeliveryRow::as_select())
                .first(conn)?;
            Ok::<_, Fail>(view(
                row,
                &subscription.id,
                catalog::PING.into(),
                Vec::new(),
            ))
        })
        .await
        .map_err(ApiError::from)?;
    state.dispatcher.wake();
    Ok(ApiResponse::with_status(StatusCode::ACCEPTED, created).message("Test event queued"))
}

/// Retry a delivery
///
/// A delivery that succeeded or failed, or that waits for a failing or
/// disabled webhook, is attempted once more, now, whatever the webhook's
/// state; one waiting on the retry schedule of an active webhook has its next
/// attempt brought forward to now. The `webhook-id` header stays the same, so
/// receivers can tell a repeat. A delivery being attempted at this moment
/// answers 409. Needs `webhooks:write`.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
    operation_id = "retry_webhook_delivery",
    tag = "deliveries",
    params(
        ("id" = String, Path, description = "The webhook's id (`wh_…`)."),
        ("delivery_id" = String, Path, description = "The delivery's id (`dlv_…`)."),
    ),
    security(("bearer_token" = ["webhooks:write"]), ("api_key" = ["webhooks:write"]), ("org_api_key" = ["webhooks:write"])),
    responses(
        (status = 202, description = "The delivery, due now.", body = Envelope<DeliveryView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in this workspace, or no such delivery of it.", body = ErrorEnvelope),
        (status = 409, description = "The delivery is being attempted right now.", body = ErrorEnvelope),
    )
)]
pub async fn retry(
    identity: Identity,
    path: web::Path<(String, String)>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<DeliveryView>, ApiError> {
    let reach = Reach::write(&identity)?;
    let (id, delivery_id) = path.into_inner();
    let retried = state
        .db
        .transaction(move |conn| {
            let subscription = subscriptions::find(conn, &reach, &id, None)?;
            let missing = || Fail::Api(ApiError::not_found("delivery"));
            if !ids::is_valid(prefix::DELIVERY, &delivery_id) {
                return Err(missing());
            }
            let row: DeliveryRow = deliveries::table
                .filter(deliveries::id.eq(&delivery_id))
                .filter(deliveries::subscription_id.eq(&subscription.id))
                .select(DeliveryRow::as_select())
                .first(conn)
                .optional()?
                .ok_or_else(missing)?;
            let at = now();
            if row.status == PENDING && row.lease_until.is_some_and(|until| until > at) {
                return Err(Fail::Api(ApiError::conflict(
                    "the delivery is being attempted right now",
                )));
            }
            // A finished delivery gets one more attempt, and so does one that
            // waits for a failing or disabled webhook; one waiting on the
            // schedule of an active webhook keeps its schedule and is only
            // brought forward.
            let delivering = subscription.enabled && subscription.state == subscriptions::ACTIVE;
            let manual =
                row.manual || !delivering || matches!(row.status.as_str(), SUCCEEDED | FAILED);
            diesel::update(deliveries::table.find(&row.id))
                .set((
                    deliveries::status.eq(PENDING),
                    deliveries::manual.eq(manual),
                    deliveries::next_attempt_at.eq(Some(at)),
                    deliveries::updated_at.eq(at),
                ))
                .execute(conn)?;
            let row: DeliveryRow = deliveries::table
                .find(&row.id)
                .select(DeliveryRow::as_select())
                .first(conn)?;
            let mut views = views(conn, &subscription.id, vec![row])?;
            views.pop().ok_or_else(missing)
        })
        .await
        .map_err(ApiError::from)?;
    state.dispatcher.wake();
    Ok(ApiResponse::with_status(StatusCode::ACCEPTED, retried).message("Delivery queued"))
}
