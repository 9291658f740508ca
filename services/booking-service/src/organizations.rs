//! Organizations: the top of the booking hierarchy, inside the caller's
//! workspace. Reading needs `organizations:read`, changing
//! `organizations:write`; the by-slug look-up is public and shows public fields
//! only.

use crate::input::{self, MAX_NAME, Problems};
use crate::meeting_spaces::{ZoneOf, record_zone_change};
use crate::openapi::{Envelope, ErrorEnvelope, ListEnvelope, NoData, PageParams};
use crate::outbox;
use crate::schema::{meeting_spaces, organizations};
use crate::tenancy::Caller;
use crate::{BookingState, Failure, workspace_with};
use actix_web::web;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::Scope;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::OffsetQuery;
use service_kit::{ApiError, ApiResponse, Json, Query};
use store::{DbConnection, StoreError};
use utoipa::ToSchema;

/// Largest `settings` object, serialized.
const MAX_SETTINGS_BYTES: usize = 16 * 1024;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = organizations)]
pub(crate) struct OrganizationRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub timezone: String,
    pub settings: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub logo: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    /// `org_…`
    id: String,
    name: String,
    /// Globally unique, `[a-z0-9-]`.
    slug: String,
    /// IANA time zone, e.g. `Europe/London`.
    timezone: String,
    /// Free-form settings object.
    #[schema(value_type = Object)]
    settings: serde_json::Value,
    /// The organization's logo: an absolute `https://` (or `http://`) URL.
    #[schema(required = true)]
    logo: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// What anyone may read about an organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicOrganizationView {
    id: String,
    name: String,
    slug: String,
    timezone: String,
    #[schema(required = true)]
    logo: Option<String>,
}

impl From<OrganizationRow> for OrganizationView {
    fn from(r: OrganizationRow) -> Self {
        OrganizationView {
            settings: serde_json::from_str(&r.settings).unwrap_or_default(),
            id: r.id,
            name: r.name,
            slug: r.slug,
            timezone: r.timezone,
            logo: r.logo,
            created_at: input::wire_time(r.created_at),
            updated_at: input::wire_time(r.updated_at),
        }
    }
}

/// The organization `id` of `workspace`, or 404.
pub(crate) fn find(
    conn: &mut DbConnection,
    workspace: &str,
    id: &str,
) -> Result<OrganizationRow, Failure> {
    organizations::table
        .filter(organizations::id.eq(id))
        .filter(organizations::workspace_id.eq(workspace))
        .select(OrganizationRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Failure::Api(ApiError::not_found("organization")))
}

/// A unique-violation on a slug column is a taken slug, not a generic conflict.
pub(crate) fn slug_taken(e: Failure) -> ApiError {
    match e {
        Failure::Store(StoreError::UniqueViolation { .. }) => {
            ApiError::conflict("slug is already taken").with_field("slug", "is already taken")
        }
        other => other.into(),
    }
}

fn check_settings(problems: &mut Problems, settings: &serde_json::Value) -> String {
    let text = settings.to_string();
    if !settings.is_object() {
        problems.add("settings", "must be an object");
    } else if text.len() > MAX_SETTINGS_BYTES {
        problems.add(
            "settings",
            format!("must be at most {MAX_SETTINGS_BYTES} bytes"),
        );
    }
    text
}

/// List organizations
///
/// Oldest first. Needs `organizations:read`.
#[utoipa::path(
    get, path = "/api/v1/organizations", operation_id = "list_organizations", tag = "organizations",
    params(PageParams),
    security(("bearer_token" = ["organizations:read"]), ("api_key" = ["organizations:read"])),
    responses(
        (status = 200, description = "A page of organizations; `meta` is `{page, limit, total}`.", body = ListEnvelope<Vec<OrganizationView>>),
        (status = 400, description = "A bad `page` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read`, or no workspace selected.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Caller,
    query: Query<OffsetQuery>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<Vec<OrganizationView>>, ApiError> {
    let workspace = identity.list_workspace(&Scope::ORGANIZATIONS_READ)?;
    let only = identity.list_organization(None)?;
    let page = query.validate()?;
    let (rows, total) = state
        .db
        .run(move |conn| {
            let filtered = || {
                let mut q = organizations::table.into_boxed();
                if let Some(w) = &workspace {
                    q = q.filter(organizations::workspace_id.eq(w.clone()));
                }
                if let Some(id) = &only {
                    q = q.filter(organizations::id.eq(id.clone()));
                }
                q
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let rows = filtered()
                .order((organizations::created_at.asc(), organizations::id.asc()))
                .select(OrganizationRow::as_select())
                .limit(i64::from(page.limit))
                .offset(page.offset())
                .load(conn)?;
            Ok::<_, StoreError>((rows, total))
        })
        .await?;
    let views = rows.into_iter().map(OrganizationView::from).collect();
    Ok(ApiResponse::ok(views).meta(page.meta(total as u64)))
}

/// Get an organization
#[utoipa::path(
    get, path = "/api/v1/organizations/{id}", operation_id = "get_organization", tag = "organizations",
    params(("id" = String, Path, description = "`org_…`")),
    security(("bearer_token" = ["organizations:read"]), ("api_key" = ["organizations:read"])),
    responses(
        (status = 200, description = "The organization.", body = Envelope<OrganizationView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read`.", body = ErrorEnvelope),
        (status = 404, description = "No such organization in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Caller,
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<OrganizationView>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_READ)?;
    let id = path.into_inner();
    input::known_id(prefix::ORGANIZATION, &id, "organization")?;
    let row = state
        .db
        .run(move |conn| find(conn, &workspace, &id))
        .await?;
    Ok(ApiResponse::ok(row.into()))
}

/// Find an organization by its slug (public)
///
/// No credential needed; answers the public fields only.
#[utoipa::path(
    get, path = "/api/v1/organizations/by-slug/{slug}", operation_id = "get_organization_by_slug", tag = "organizations",
    params(("slug" = String, Path, description = "The organization's slug.")),
    security(()),
    responses(
        (status = 200, description = "The organization's public fields.", body = Envelope<PublicOrganizationView>),
        (status = 404, description = "No organization has this slug.", body = ErrorEnvelope),
    )
)]
pub async fn by_slug(
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<PublicOrganizationView>, ApiError> {
    let slug = path.into_inner();
    if !input::plausible_slug(&slug) {
        return Err(ApiError::not_found("organization"));
    }
    let row = state
        .db
        .run(move |conn| {
            organizations::table
                .filter(organizations::slug.eq(&slug))
                .select(OrganizationRow::as_select())
                .first(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(ApiResponse::ok(PublicOrganizationView {
        id: row.id,
        name: row.name,
        slug: row.slug,
        timezone: row.timezone,
        logo: row.logo,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganization {
    name: String,
    /// Globally unique, 1–64 of `a-z`, `0-9`, `-`.
    slug: String,
    /// IANA time zone.
    timezone: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    settings: Option<serde_json::Value>,
    /// An absolute `https://` (or `http://`) URL, at most 2048 characters.
    #[serde(default)]
    logo: Option<String>,
}

/// Create an organization
///
/// Needs `organizations:write`. Honours `Idempotency-Key`.
#[utoipa::path(
    post, path = "/api/v1/organizations", operation_id = "create_organization", tag = "organizations",
    params(crate::openapi::IdempotencyHeader),
    request_body = NewOrganization,
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 201, description = "The new organization.", body = Envelope<OrganizationView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 409, description = "The slug is taken.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, or an `Idempotency-Key` reused with another body.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    req: actix_web::HttpRequest,
    identity: Caller,
    body: Json<NewOrganization>,
    state: web::Data<BookingState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    if identity.organization_id.is_some() {
        return Err(ApiError::forbidden(
            "a key bound to an organization cannot create organizations",
        ));
    }
    let body = body.into_inner();
    let key = crate::idempotency::Claim::from_request(&req, &workspace, &body)?;
    let mut problems = Problems::new();
    let name = problems.name("name", &body.name, MAX_NAME);
    problems.slug("slug", &body.slug);
    problems.timezone("timezone", &body.timezone);
    let settings = check_settings(
        &mut problems,
        body.settings.as_ref().unwrap_or(&serde_json::json!({})),
    );
    if let Some(logo) = &body.logo {
        check_logo(&mut problems, logo);
    }
    problems.finish()?;
    crate::idempotency::respond_single_write(&state.db, key, move |conn| {
        let now = Utc::now().naive_utc();
        let id = ids::new_id(prefix::ORGANIZATION);
        diesel::insert_into(organizations::table)
            .values((
                organizations::id.eq(&id),
                organizations::workspace_id.eq(&workspace),
                organizations::name.eq(&name),
                organizations::slug.eq(&body.slug),
                organizations::timezone.eq(&body.timezone),
                organizations::settings.eq(&settings),
                organizations::logo.eq(&body.logo),
                organizations::created_at.eq(now),
                organizations::updated_at.eq(now),
            ))
            .execute(conn)?;
        Ok(ApiResponse::created(OrganizationView::from(find(
            conn, &workspace, &id,
        )?)))
    })
    .await
    .map_err(slug_taken)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationChange {
    name: Option<String>,
    timezone: Option<String>,
    /// Replaces the settings object.
    #[schema(value_type = Option<Object>)]
    settings: Option<serde_json::Value>,
    /// A new logo URL; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    logo: Option<Option<String>>,
}

/// A field that was sent, `null` or not (an absent one stays `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn check_logo(problems: &mut Problems, logo: &str) {
    let scheme_ok = logo.starts_with("https://") || logo.starts_with("http://");
    let host_ok = logo
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
    if !scheme_ok
        || !host_ok
        || logo.len() > 2048
        || logo.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        problems.add(
            "logo",
            "must be an absolute http(s) URL of at most 2048 characters",
        );
    }
}

/// Change an organization
///
/// An absent field stays as it is. Needs `organizations:write`.
#[utoipa::path(
    patch, path = "/api/v1/organizations/{id}", operation_id = "update_organization", tag = "organizations",
    params(("id" = String, Path, description = "`org_…`")),
    request_body = OrganizationChange,
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 200, description = "The organization as changed.", body = Envelope<OrganizationView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such organization in this workspace.", body = ErrorEnvelope),
        (status = 422, description = "A bad field.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Caller,
    path: web::Path<String>,
    body: Json<OrganizationChange>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<OrganizationView>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let id = path.into_inner();
    input::known_id(prefix::ORGANIZATION, &id, "organization")?;
    let change = body.into_inner();
    let mut problems = Problems::new();
    let name = change
        .name
        .as_deref()
        .map(|n| problems.name("name", n, MAX_NAME));
    if let Some(tz) = &change.timezone {
        problems.timezone("timezone", tz);
    }
    let settings = change
        .settings
        .as_ref()
        .map(|s| check_settings(&mut problems, s));
    if let Some(Some(logo)) = &change.logo {
        check_logo(&mut problems, logo);
    }
    problems.finish()?;
    let request_id = service_kit::request_id::current();
    let row = state
        .db
        .transaction(move |conn| {
            let current = find(conn, &workspace, &id)?;
            let zone_before = current.timezone.clone();
            diesel::update(organizations::table.filter(organizations::id.eq(&id)))
                .set((
                    organizations::name.eq(name.unwrap_or(current.name)),
                    organizations::timezone.eq(change.timezone.unwrap_or(current.timezone)),
                    organizations::settings.eq(settings.unwrap_or(current.settings)),
                    organizations::logo.eq(change.logo.unwrap_or(current.logo)),
                    organizations::updated_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn)?;
            // Its spaces may keep its time zone: a new version of each.
            diesel::update(meeting_spaces::table.filter(meeting_spaces::organization_id.eq(&id)))
                .set(meeting_spaces::version.eq(meeting_spaces::version + 1))
                .execute(conn)?;
            let row = find(conn, &workspace, &id)?;
            let event = outbox::organization_updated(&workspace, &row, request_id.clone());
            outbox::record(conn, &event)?;
            if row.timezone != zone_before {
                record_zone_change(conn, &workspace, ZoneOf::Organization(&id), request_id)?;
            }
            Ok::<_, Failure>(row)
        })
        .await?;
    state.nudge.nudge();
    Ok(ApiResponse::ok(row.into()))
}

/// Delete an organization
///
/// With its space groups, meeting spaces and bookings. Needs
/// `organizations:write`.
#[utoipa::path(
    delete, path = "/api/v1/organizations/{id}", operation_id = "delete_organization", tag = "organizations",
    params(("id" = String, Path, description = "`org_…`")),
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 200, description = "Deleted.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such organization in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Caller,
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let id = path.into_inner();
    input::known_id(prefix::ORGANIZATION, &id, "organization")?;
    let deleted = state
        .db
        .transaction(move |conn| {
            diesel::delete(
                organizations::table
                    .filter(organizations::id.eq(&id))
                    .filter(organizations::workspace_id.eq(&workspace)),
            )
            .execute(conn)
            .map_err(StoreError::from)
        })
        .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("organization"));
    }
    Ok(ApiResponse::ok(()).message("deleted"))
}
