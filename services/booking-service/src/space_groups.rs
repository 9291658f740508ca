//! Space groups: a building or floor of an organization, with its own time zone
//! and address. Same scopes as organizations.

use crate::input::{self, MAX_ADDRESS, MAX_NAME, Problems};
use crate::meeting_spaces::{ZoneOf, record_zone_change};
use crate::openapi::{Envelope, ErrorEnvelope, ListEnvelope, NoData};
use crate::schema::{meeting_spaces, space_groups};
use crate::tenancy::Caller;
use crate::{BookingState, Failure, organizations, workspace_with};
use actix_web::web;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::Scope;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::OffsetQuery;
use service_kit::{ApiError, ApiResponse, Json, Query};
use store::{DbConnection, StoreError};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = space_groups)]
pub(crate) struct GroupRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub timezone: Option<String>,
    pub address: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceGroupView {
    /// `sg_…`
    id: String,
    /// `org_…`
    organization_id: String,
    name: String,
    /// IANA time zone; `null` means the organization's.
    timezone: Option<String>,
    address: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<GroupRow> for SpaceGroupView {
    fn from(r: GroupRow) -> Self {
        SpaceGroupView {
            id: r.id,
            organization_id: r.organization_id,
            name: r.name,
            timezone: r.timezone,
            address: r.address,
            created_at: input::wire_time(r.created_at),
            updated_at: input::wire_time(r.updated_at),
        }
    }
}

pub(crate) fn find(
    conn: &mut DbConnection,
    workspace: &str,
    id: &str,
) -> Result<GroupRow, Failure> {
    space_groups::table
        .filter(space_groups::id.eq(id))
        .filter(space_groups::workspace_id.eq(workspace))
        .select(GroupRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Failure::Api(ApiError::not_found("space group")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupFilter {
    /// Only this organization's groups (`org_…`).
    organization_id: Option<String>,
    #[param(minimum = 1, maximum = 100000, default = 1)]
    page: Option<u32>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
}

/// List space groups
///
/// Oldest first. Needs `organizations:read`.
#[utoipa::path(
    get, path = "/api/v1/space-groups", operation_id = "list_space_groups", tag = "space-groups",
    params(GroupFilter),
    security(("bearer_token" = ["organizations:read"]), ("api_key" = ["organizations:read"])),
    responses(
        (status = 200, description = "A page of space groups.", body = ListEnvelope<Vec<SpaceGroupView>>),
        (status = 400, description = "A bad query parameter.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read`.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Caller,
    query: Query<GroupFilter>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<Vec<SpaceGroupView>>, ApiError> {
    let workspace = identity.list_workspace(&Scope::ORGANIZATIONS_READ)?;
    let mut filter = query.into_inner();
    filter.organization_id = identity.list_organization(filter.organization_id.as_deref())?;
    let page = OffsetQuery {
        page: filter.page,
        limit: filter.limit,
    }
    .validate()?;
    input::query_text("organization_id", filter.organization_id.as_deref())?;
    let (rows, total) = state
        .db
        .run(move |conn| {
            let filtered = || {
                let mut q = space_groups::table.into_boxed();
                if let Some(w) = &workspace {
                    q = q.filter(space_groups::workspace_id.eq(w.clone()));
                }
                if let Some(org) = &filter.organization_id {
                    q = q.filter(space_groups::organization_id.eq(org.clone()));
                }
                q
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let rows = filtered()
                .order((space_groups::created_at.asc(), space_groups::id.asc()))
                .select(GroupRow::as_select())
                .limit(i64::from(page.limit))
                .offset(page.offset())
                .load(conn)?;
            Ok::<_, StoreError>((rows, total))
        })
        .await?;
    let views = rows.into_iter().map(SpaceGroupView::from).collect();
    Ok(ApiResponse::ok(views).meta(page.meta(total as u64)))
}

/// Get a space group
#[utoipa::path(
    get, path = "/api/v1/space-groups/{id}", operation_id = "get_space_group", tag = "space-groups",
    params(("id" = String, Path, description = "`sg_…`")),
    security(("bearer_token" = ["organizations:read"]), ("api_key" = ["organizations:read"])),
    responses(
        (status = 200, description = "The space group.", body = Envelope<SpaceGroupView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:read`.", body = ErrorEnvelope),
        (status = 404, description = "No such group in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Caller,
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<SpaceGroupView>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_READ)?;
    let id = path.into_inner();
    input::known_id(prefix::SPACE_GROUP, &id, "space group")?;
    let row = state
        .db
        .run(move |conn| find(conn, &workspace, &id))
        .await?;
    Ok(ApiResponse::ok(row.into()))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSpaceGroup {
    /// `org_…`
    organization_id: String,
    name: String,
    /// IANA time zone; absent: the organization's.
    timezone: Option<String>,
    address: Option<String>,
}

/// Create a space group
///
/// Needs `organizations:write`. Honours `Idempotency-Key`.
#[utoipa::path(
    post, path = "/api/v1/space-groups", operation_id = "create_space_group", tag = "space-groups",
    params(crate::openapi::IdempotencyHeader),
    request_body = NewSpaceGroup,
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 201, description = "The new group.", body = Envelope<SpaceGroupView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such organization in this workspace.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, or an `Idempotency-Key` reused with another body.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    req: actix_web::HttpRequest,
    identity: Caller,
    body: Json<NewSpaceGroup>,
    state: web::Data<BookingState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let workspace = identity
        .workspace_for(
            &state,
            &Scope::ORGANIZATIONS_WRITE,
            ("organization_id", Some(&body.organization_id)),
        )
        .await?;
    let body = body.into_inner();
    let key = crate::idempotency::Claim::from_request(&req, &workspace, &body)?;
    let mut problems = Problems::new();
    let name = problems.name("name", &body.name, MAX_NAME);
    if let Some(tz) = &body.timezone {
        problems.timezone("timezone", tz);
    }
    if let Some(a) = &body.address {
        problems.text("address", a, MAX_ADDRESS);
    }
    problems.finish()?;
    input::known_id(prefix::ORGANIZATION, &body.organization_id, "organization")?;
    Ok(
        crate::idempotency::respond_single_write(&state.db, key, move |conn| {
            organizations::find(conn, &workspace, &body.organization_id)?;
            let now = Utc::now().naive_utc();
            let id = ids::new_id(prefix::SPACE_GROUP);
            diesel::insert_into(space_groups::table)
                .values((
                    space_groups::id.eq(&id),
                    space_groups::workspace_id.eq(&workspace),
                    space_groups::organization_id.eq(&body.organization_id),
                    space_groups::name.eq(&name),
                    space_groups::timezone.eq(&body.timezone),
                    space_groups::address.eq(&body.address),
                    space_groups::created_at.eq(now),
                    space_groups::updated_at.eq(now),
                ))
                .execute(conn)?;
            Ok(ApiResponse::created(SpaceGroupView::from(find(
                conn, &workspace, &id,
            )?)))
        })
        .await?,
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpaceGroupChange {
    name: Option<String>,
    /// IANA time zone.
    timezone: Option<String>,
    address: Option<String>,
}

/// Change a space group
#[utoipa::path(
    patch, path = "/api/v1/space-groups/{id}", operation_id = "update_space_group", tag = "space-groups",
    params(("id" = String, Path, description = "`sg_…`")),
    request_body = SpaceGroupChange,
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 200, description = "The group as changed.", body = Envelope<SpaceGroupView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such group in this workspace.", body = ErrorEnvelope),
        (status = 422, description = "A bad field.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Caller,
    path: web::Path<String>,
    body: Json<SpaceGroupChange>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<SpaceGroupView>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let id = path.into_inner();
    input::known_id(prefix::SPACE_GROUP, &id, "space group")?;
    let change = body.into_inner();
    let mut problems = Problems::new();
    let name = change
        .name
        .as_deref()
        .map(|n| problems.name("name", n, MAX_NAME));
    if let Some(tz) = &change.timezone {
        problems.timezone("timezone", tz);
    }
    if let Some(a) = &change.address {
        problems.text("address", a, MAX_ADDRESS);
    }
    problems.finish()?;
    let request_id = service_kit::request_id::current();
    let row = state
        .db
        .transaction(move |conn| {
            let current = find(conn, &workspace, &id)?;
            let zone_before = current.timezone.clone();
            diesel::update(space_groups::table.filter(space_groups::id.eq(&id)))
                .set((
                    space_groups::name.eq(name.unwrap_or(current.name)),
                    space_groups::timezone.eq(change.timezone.or(current.timezone)),
                    space_groups::address.eq(change.address.or(current.address)),
                    space_groups::updated_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn)?;
            // Its spaces may keep its time zone: a new version of each.
            diesel::update(meeting_spaces::table.filter(meeting_spaces::space_group_id.eq(&id)))
                .set(meeting_spaces::version.eq(meeting_spaces::version + 1))
                .execute(conn)?;
            let row = find(conn, &workspace, &id)?;
            if row.timezone != zone_before {
                record_zone_change(conn, &workspace, ZoneOf::Group(&id), request_id)?;
            }
            Ok::<_, Failure>(row)
        })
        .await?;
    state.nudge.nudge();
    Ok(ApiResponse::ok(row.into()))
}

/// Delete a space group
///
/// With its meeting spaces and their bookings.
#[utoipa::path(
    delete, path = "/api/v1/space-groups/{id}", operation_id = "delete_space_group", tag = "space-groups",
    params(("id" = String, Path, description = "`sg_…`")),
    security(("bearer_token" = ["organizations:write"]), ("api_key" = ["organizations:write"])),
    responses(
        (status = 200, description = "Deleted.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `organizations:write`.", body = ErrorEnvelope),
        (status = 404, description = "No such group in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Caller,
    path: web::Path<String>,
    state: web::Data<BookingState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace = workspace_with(&identity, &Scope::ORGANIZATIONS_WRITE)?;
    let id = path.into_inner();
    input::known_id(prefix::SPACE_GROUP, &id, "space group")?;
    let deleted = state
        .db
        .transaction(move |conn| {
            diesel::delete(
                space_groups::table
                    .filter(space_groups::id.eq(&id))
                    .filter(space_groups::workspace_id.eq(&workspace)),
            )
            .execute(conn)
            .map_err(StoreError::from)
        })
        .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("space group"));
    }
    Ok(ApiResponse::ok(()).message("deleted"))
}
