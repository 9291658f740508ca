//! SpaceOS's webhooks API: `POST|GET /api/v1/webhooks`,
//! `GET|PATCH|DELETE /api/v1/webhooks/{id}`. A SpaceOS subscription belongs
//! to one organization of the workspace and receives that organization's
//! events (and the workspace-wide ones it asked for).

use crate::access::Reach;
use crate::openapi::{Envelope, ErrorEnvelope, EventName, ListEnvelope, NoData, PageParams};
use crate::subscriptions::{self, Draft, Family, New, Status, Subscription, present, required};
use crate::{EventsState, rfc3339};
use actix_web::web;
use identity::Identity;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::{OffsetQuery, Sort};
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use utoipa::{IntoParams, ToSchema};

/// A SpaceOS webhook subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// `wh_…`
    id: String,
    /// `org_…`: the organization whose events it receives.
    organization_id: String,
    /// Where events are POSTed.
    url: String,
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

/// A new SpaceOS webhook subscription, with its secret when it was generated.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewWebhookView {
    /// `wh_…`
    id: String,
    /// `org_…`
    organization_id: String,
    url: String,
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

impl From<Subscription> for WebhookView {
    fn from(s: Subscription) -> WebhookView {
        WebhookView {
            events: s.event_names(),
            status: s.status(),
            id: s.id,
            organization_id: s.organization_id.unwrap_or_default(),
            url: s.url,
            enabled: s.enabled,
            failing_since: s.failing_since.map(rfc3339),
            notify_email: s.notify_email,
            secret_hint: s.secret_hint,
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

impl NewWebhookView {
    fn of(s: Subscription, secret: Option<String>) -> NewWebhookView {
        let view = WebhookView::from(s);
        NewWebhookView {
            id: view.id,
            organization_id: view.organization_id,
            url: view.url,
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
pub struct NewWebhook {
    /// Required: the organization (`org_…`) whose events to receive.
    #[schema(value_type = String, required = true)]
    organization_id: Option<String>,
    /// Required: an `https` URL of a public host (`http` and private hosts
    /// only where the deployment allows private targets). Its name must not
    /// resolve to an internal address.
    #[schema(value_type = String, required = true)]
    url: Option<String>,
    /// Required: one or more event names.
    #[schema(value_type = Vec<EventName>, required = true)]
    events: Option<Vec<String>>,
    /// 16 to 256 printable characters; a `whsec_…` secret is base64 of 24 to
    /// 64 bytes after the prefix. Default: one is generated and shown once.
    #[schema(nullable = false)]
    secret: Option<String>,
    /// Who to mail when deliveries keep failing (Spaceport's addition).
    #[schema(nullable = false)]
    notify_email: Option<String>,
    /// Default `true`.
    #[schema(nullable = false)]
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookChanges {
    #[schema(value_type = String, nullable = false)]
    url: Option<String>,
    #[schema(value_type = Vec<EventName>, nullable = false)]
    events: Option<Vec<String>>,
    /// A new secret; deliveries are signed with it from now on.
    #[schema(nullable = false)]
    secret: Option<String>,
    /// `true` also revives a `failing` webhook.
    #[schema(nullable = false)]
    enabled: Option<bool>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    notify_email: Option<Option<String>>,
}

/// `?organization_id=&page=&limit=` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    organization_id: Option<String>,
    page: Option<u32>,
    limit: Option<u32>,
}

/// `?organization_id=` of the list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `ListQuery` reads it
pub struct OrganizationFilter {
    /// Only this organization's webhooks (`org_…`).
    organization_id: Option<String>,
}

/// Create a webhook
///
/// Events of the organization (and the workspace-wide ones asked for) are
/// POSTed to `url` as `{event, timestamp, webhook_id, data}`, signed with
/// `X-Webhook-Signature` (hex HMAC-SHA256 of the raw body with the secret) and
/// the Standard Webhooks headers. A generated secret is shown in this answer
/// only. Needs `webhooks:write`.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    request_body = NewWebhook,
    security(("bearer_token" = ["webhooks:write"]), ("api_key" = ["webhooks:write"]), ("org_api_key" = ["webhooks:write"])),
    responses(
        (status = 201, description = "The webhook, with `secret` when it was generated.", body = Envelope<NewWebhookView>),
        (status = 400, description = "Malformed JSON, or a field missing or invalid: an unknown event, a refused URL (not https, credentials, an internal host or a name resolving to one), a bad secret or address.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "An organization outside a bound key's reach.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: Json<NewWebhook>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<NewWebhookView>, ApiError> {
    let reach = Reach::write(&identity)?;
    let NewWebhook {
        organization_id,
        url,
        events,
        secret,
        notify_email,
        enabled,
    } = body.into_inner();
    let mut errors = Vec::new();
    let organization = match organization_id.as_deref().map(str::trim) {
        None | Some("") => {
            errors.push(required("organization_id"));
            None
        }
        Some(id) if !ids::is_valid(prefix::ORGANIZATION, id) => {
            errors.push(FieldError::new(
                "organization_id",
                "must be an organization id (org_…)",
            ));
            None
        }
        Some(id) => reach.organization(Some(id))?,
    };
    if url.is_none() {
        errors.push(required("url"));
    }
    if events.is_none() {
        errors.push(required("events"));
    }
    let checked = Draft {
        url,
        events,
        secret,
        notify_email: notify_email.map(Some),
    }
    .check(&state, "url", &mut errors)
    .await;
    let (Some(organization), Some(url), Some(events), true) =
        (organization, checked.url, checked.events, errors.is_empty())
    else {
        return Err(ApiError::validation(errors));
    };
    let (subscription, secret) = subscriptions::create(
        &state,
        &reach,
        New {
            family: Family::SpaceOs,
            organization_id: Some(organization),
            url,
            events,
            secret: checked.secret,
            notify_email: checked.notify_email.flatten(),
            enabled: enabled.unwrap_or(true),
            created_by: identity.principal_id.clone(),
        },
    )
    .await?;
    Ok(ApiResponse::created(NewWebhookView::of(subscription, secret)).message("Webhook created"))
}

/// List webhooks
///
/// Oldest first; `organization_id` narrows to one organization. Needs
/// `webhooks:read`.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    params(OrganizationFilter, PageParams),
    security(("bearer_token" = ["webhooks:read"]), ("api_key" = ["webhooks:read"]), ("org_api_key" = ["webhooks:read"])),
    responses(
        (status = 200, description = "A page of webhooks; `meta` is `{page, limit, total}`.", body = ListEnvelope<Vec<WebhookView>>),
        (status = 400, description = "A bad `page`, `limit` or unknown parameter.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "An organization outside a bound key's reach.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<ListQuery>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<Vec<WebhookView>>, ApiError> {
    let reach = Reach::read(&identity)?;
    let ListQuery {
        organization_id,
        page,
        limit,
    } = query.into_inner();
    let page = OffsetQuery { page, limit }.validate()?;
    let organization = reach.organization(organization_id.as_deref())?;
    let (rows, total) = subscriptions::list(
        &state,
        reach,
        Family::SpaceOs,
        organization,
        Sort {
            field: "created_at",
            descending: false,
        },
        (i64::from(page.limit), page.offset()),
    )
    .await?;
    let views = rows.into_iter().map(WebhookView::from).collect();
    Ok(ApiResponse::ok(views).meta(page.meta(total)))
}

/// Get a webhook
///
/// Needs `webhooks:read`.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id (`wh_…`).")),
    security(("bearer_token" = ["webhooks:read"]), ("api_key" = ["webhooks:read"]), ("org_api_key" = ["webhooks:read"])),
    responses(
        (status = 200, description = "The webhook.", body = Envelope<WebhookView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<WebhookView>, ApiError> {
    let reach = Reach::read(&identity)?;
    let id = path.into_inner();
    let row = state
        .db
        .run(move |conn| subscriptions::find(conn, &reach, &id, Some(Family::SpaceOs)))
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(row.into()))
}

/// Change a webhook
///
/// Changes the fields sent. `enabled: true` revives a `failing` webhook: it
/// receives events again and its waiting deliveries are attempted. Needs
/// `webhooks:write`.
#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/{id}",
    operation_id = "update_webhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id (`wh_…`).")),
    request_body = WebhookChanges,
    security(("bearer_token" = ["webhooks:write"]), ("api_key" = ["webhooks:write"]), ("org_api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "The webhook as changed.", body = Envelope<WebhookView>),
        (status = 400, description = "Malformed JSON, or an invalid or unknown field.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Identity,
    path: web::Path<String>,
    body: Json<WebhookChanges>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<WebhookView>, ApiError> {
    let reach = Reach::write(&identity)?;
    let WebhookChanges {
        url,
        events,
        secret,
        enabled,
        notify_email,
    } = body.into_inner();
    let mut errors = Vec::new();
    let checked = Draft {
        url,
        events,
        secret,
        notify_email,
    }
    .check(&state, "url", &mut errors)
    .await;
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let row = subscriptions::update(
        &state,
        reach,
        path.into_inner(),
        Some(Family::SpaceOs),
        checked,
        enabled,
    )
    .await?;
    Ok(ApiResponse::ok(row.into()).message("Webhook updated"))
}

/// Delete a webhook
///
/// With its deliveries log. Needs `webhooks:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id (`wh_…`).")),
    security(("bearer_token" = ["webhooks:write"]), ("api_key" = ["webhooks:write"]), ("org_api_key" = ["webhooks:write"])),
    responses(
        (status = 200, description = "Deleted; `data` is null.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `webhooks:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<EventsState>,
) -> Result<ApiResponse<()>, ApiError> {
    let reach = Reach::write(&identity)?;
    subscriptions::delete(&state, reach, path.into_inner(), Some(Family::SpaceOs)).await?;
    Ok(ApiResponse::ok(()).message("Webhook deleted"))
}
