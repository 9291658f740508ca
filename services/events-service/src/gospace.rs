//! gospace's webhooks API: `GET|POST /v1/webhooks/webhooks`,
//! `PATCH|DELETE /v1/webhooks/webhooks/{webhook_id}`. A gospace subscription
//! receives its workspace's events, as `{event, workspace_id, request_id,
//! payload}` signed with `x-gospace-signature`.

use crate::access::Reach;
use crate::openapi::{Envelope, ErrorEnvelope, EventName, ListEnvelope, ListParams, NoData};
use crate::subscriptions::{self, Draft, Family, New, Status, Subscription, present, required};
use crate::{EventsState, rfc3339};
use actix_web::web;
use identity::{Identity, Scope};
use serde::{Deserialize, Serialize};
use service_kit::pagination::ListQuery;
use service_kit::{ApiError, ApiResponse, Json, Query};
use utoipa::ToSchema;

/// The fields the list sorts by (`?sort=FIELD.asc|desc`).
pub const SORT_FIELDS: &[&str] = &["created_at", "updated_at"];

/// A gospace webhook subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct GospaceWebhookView {
    /// `wh_…`
    id: String,
    /// Where events are POSTed.
    endpoint: String,
    #[schema(value_type = Vec<EventName>)]
    events: Vec<String>,
    enabled: bool,
    status: Status,
    /// When its deliveries started failing; null unless `failing`.
    #[schema(format = DateTime, required = true)]
    failing_since: Option<String>,
    /// Who is mailed when it starts failing; null: nobody.
    #[schema(required = true)]
    notify_email: Option<String>,
    /// The secret's first characters, to recognise it by.
    secret_hint: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A new gospace webhook subscription, with its secret when it was generated.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewGospaceWebhookView {
    /// `wh_…`
    id: String,
    endpoint: String,
    #[schema(value_type = Vec<EventName>)]
    events: Vec<String>,
    enabled: bool,
    status: Status,
    #[schema(format = DateTime, required = true)]
    failing_since: Option<String>,
    #[schema(required = true)]
    notify_email: Option<String>,
    secret_hint: String,
    /// The generated secret (`whsec_…`): shown in this answer only. Null when
    /// the request chose its own.
    #[schema(required = true)]
    secret: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<Subscription> for GospaceWebhookView {
    fn from(s: Subscription) -> GospaceWebhookView {
        GospaceWebhookView {
            events: s.event_names(),
            status: s.status(),
            id: s.id,
            endpoint: s.url,
            enabled: s.enabled,
            failing_since: s.failing_since.map(rfc3339),
            notify_email: s.notify_email,
            secret_hint: s.secret_hint,
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

impl NewGospaceWebhookView {
    fn of(s: Subscription, secret: Option<String>) -> NewGospaceWebhookView {
        let view = GospaceWebhookView::from(s);
        NewGospaceWebhookView {
            id: view.id,
            endpoint: view.endpoint,
            events: view.events,
            enabled: view.enabled,
            status: view.status,
            failing_since: view.failing_since,
            notify_email: view.notify_email,
            secret_hint: view.secret_hint,
            secret,
            created_at: view.created_at,
            updated_at: view.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGospaceWebhook {
    /// Required: an `https` URL of a public host (`http` and private hosts
    /// only where the deployment allows private targets).
    #[schema(value_type = String, required = true)]
    endpoint: Option<String>,
    /// 16 to 256 printable characters; default: one is generated
    /// (`whsec_…`) and shown once.
    #[schema(nullable = false)]
    secret: Option<String>,
    /// Required: one or more event names.
    #[schema(value_type = Vec<EventName>, required = true)]
    events: Option<Vec<String>>,
    /// Who to mail when deliveries keep failing (Spaceport's addition).
    #[schema(nullable = false)]
    notify_email: Option<String>,
    /// Default `true`.
    #[schema(nullable = false)]
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GospaceWebhookChanges {
    #[schema(value_type = String, nullable = false)]
    endpoint: Option<String>,
    #[schema(nullable = false)]
    secret: Option<String>,
    #[schema(value_type = Vec<EventName>, nullable = false)]
    events: Option<Vec<String>>,
    /// `true` also revives a `failing` webhook.
    #[schema(nullable = false)]
    enabled: Option<bool>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    notify_email: Option<Option<String>>,
}

/// List webhooks
///
/// The workspace's gospace webhooks. Needs `webhooks:read`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/webhooks",
    operation_id = "gospace_list_webhooks",
    tag = "gospace-webhooks",
    params(ListParams),
    security(("bearer_token" = ["webhooks:read"]), ("api_key" = ["webhooks:read"])),
    responses(
        (status = 200, description = "A page of webhooks.", body = ListEnvelope<Vec<GospaceWebhookView>>),
        (status = 400, description = "A bad `page_size`, `page`, `cursor` or `sort`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:read`, no workspace selected, or a key bound to an organization.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<ListQuery>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<Vec<GospaceWebhookView>>, ApiError> {
    let reach = Reach::workspace_wide(&identity, &Scope::WEBHOOKS_READ)?;
    let request = query.validate(SORT_FIELDS)?;
    let bounds = (
        i64::from(request.limit),
        i64::try_from(request.offset).unwrap_or(i64::MAX),
    );
    let (rows, total) =
        subscriptions::list(&state, reach, Family::Gospace, None, request.sort, bounds).await?;
    let views = rows.into_iter().map(GospaceWebhookView::from).collect();
    Ok(ApiResponse::ok(views).window(request.window(total)))
}

/// Create a webhook
///
/// The workspace's events are POSTed to `endpoint` as `{event, workspace_id,
/// request_id, payload}`, signed with `x-gospace-signature` (hex HMAC-SHA256
/// of the raw body with the secret) and the Standard Webhooks headers. A
/// generated secret is shown in this answer only. Needs `webhooks:write`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/webhooks",
    operation_id = "gospace_create_webhook",
    tag = "gospace-webhooks",
    request_body = NewGospaceWebhook,
    security(("bearer_token" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 201, description = "The webhook, with `secret` when it was generated.", body = Envelope<NewGospaceWebhookView>),
        (status = 400, description = "Malformed JSON.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:write`, no workspace selected, or a key bound to an organization.", body = ErrorEnvelope),
        (status = 422, description = "A field missing or invalid: an unknown event, a refused endpoint (not https, credentials, an internal host or a name resolving to one), a bad secret or address.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: Json<NewGospaceWebhook>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<NewGospaceWebhookView>, ApiError> {
    let reach = Reach::workspace_wide(&identity, &Scope::WEBHOOKS_WRITE)?;
    let NewGospaceWebhook {
        endpoint,
        secret,
        events,
        notify_email,
        enabled,
    } = body.into_inner();
    let mut errors = Vec::new();
    if endpoint.is_none() {
        errors.push(required("endpoint"));
    }
    if events.is_none() {
        errors.push(required("events"));
    }
    let checked = Draft {
        url: endpoint,
        events,
        secret,
        notify_email: notify_email.map(Some),
    }
    .check(&state, "endpoint", &mut errors)
    .await;
    let (Some(url), Some(events), true) = (checked.url, checked.events, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let (subscription, secret) = subscriptions::create(
        &state,
        &reach,
        New {
            family: Family::Gospace,
            organization_id: None,
            url,
            events,
            secret: checked.secret,
            notify_email: checked.notify_email.flatten(),
            enabled: enabled.unwrap_or(true),
            created_by: identity.principal_id.clone(),
        },
    )
    .await?;
    Ok(ApiResponse::created(NewGospaceWebhookView::of(
        subscription,
        secret,
    )))
}

/// Change a webhook
///
/// Changes the fields sent. `enabled: true` revives a `failing` webhook.
/// Needs `webhooks:write`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/webhooks/{webhook_id}",
    operation_id = "gospace_update_webhook",
    tag = "gospace-webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id (`wh_…`).")),
    request_body = GospaceWebhookChanges,
    security(("bearer_token" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "The webhook as changed.", body = Envelope<GospaceWebhookView>),
        (status = 400, description = "Malformed JSON.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:write`, no workspace selected, or a key bound to an organization.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in this workspace.", body = ErrorEnvelope),
        (status = 422, description = "An invalid or unknown field.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Identity,
    path: web::Path<String>,
    body: Json<GospaceWebhookChanges>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<GospaceWebhookView>, ApiError> {
    let reach = Reach::workspace_wide(&identity, &Scope::WEBHOOKS_WRITE)?;
    let GospaceWebhookChanges {
        endpoint,
        secret,
        events,
        enabled,
        notify_email,
    } = body.into_inner();
    let mut errors = Vec::new();
    let checked = Draft {
        url: endpoint,
        events,
        secret,
        notify_email,
    }
    .check(&state, "endpoint", &mut errors)
    .await;
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let row = subscriptions::update(
        &state,
        reach,
        path.into_inner(),
        Some(Family::Gospace),
        checked,
        enabled,
    )
    .await?;
    Ok(ApiResponse::ok(row.into()))
}

/// Delete a webhook
///
/// With its deliveries log. Needs `webhooks:write`.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/webhooks/{webhook_id}",
    operation_id = "gospace_delete_webhook",
    tag = "gospace-webhooks",
    params(("webhook_id" = String, Path, description = "The webhook's id (`wh_…`).")),
    security(("bearer_token" = ["webhooks:write"]), ("api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "Deleted; `data` is null.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:write`, no workspace selected, or a key bound to an organization.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<()>, ApiError> {
    let reach = Reach::workspace_wide(&identity, &Scope::WEBHOOKS_WRITE)?;
    subscriptions::delete(&state, reach, path.into_inner(), Some(Family::Gospace)).await?;
    Ok(ApiResponse::ok(()))
}
