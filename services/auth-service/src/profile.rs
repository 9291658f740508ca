//! The caller's own profile and workspaces: `GET|PATCH /v1/auth/me`,
//! `GET|POST /v1/system/workspaces`.

use crate::AuthState;
use crate::accounts::{self, Member, MemberEvent, Role};
use crate::lists::{self, Backend, sorted};
use crate::openapi::{Envelope, ErrorEnvelope, ListEnvelope, ListParams};
use crate::schema::{memberships, users, workspaces};
use actix_web::web;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::{Identity, PrincipalType, ScopeSet};
use serde::Serialize;
use service_kit::ids::{self, prefix};
use service_kit::pagination::ListQuery;
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::StoreError;
use utoipa::ToSchema;

const MAX_NAME: usize = 100;
/// The fields `GET /v1/system/workspaces` sorts by.
pub const SORT_FIELDS: &[&str] = &["created_at", "updated_at", "name"];
/// Fields a client may see but never change.
const READ_ONLY: [&str; 6] = [
    "id",
    "user_id",
    "email",
    "created_at",
    "updated_at",
    "workspace_id",
];

/// The caller, as their access token sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `usr_…`
    id: String,
    /// The same as `id`.
    user_id: String,
    #[schema(format = Email)]
    email: String,
    name: String,
    /// The workspace the token acts in.
    #[schema(required = true)]
    workspace_id: Option<String>,
    /// The caller's role there: a built-in role, or a custom role's name.
    #[schema(required = true)]
    role: Option<String>,
    /// The token's scopes.
    #[schema(value_type = crate::openapi::Scopes)]
    scopes: ScopeSet,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

fn user_only(identity: &Identity) -> Result<&str, ApiError> {
    match identity.principal_type {
        PrincipalType::User => Ok(&identity.principal_id),
        PrincipalType::Anonymous => Err(ApiError::unauthorized("authentication required")),
        _ => Err(ApiError::forbidden("only people have a profile")),
    }
}

async fn load_me(state: &AuthState, identity: &Identity) -> Result<Me, ApiError> {
    let user_id = user_only(identity)?.to_owned();
    let workspace = identity.workspace_id.clone();
    let (user, role) = state
        .db
        .run(move |conn| {
            let user = accounts::user_by_id(conn, &user_id)?.ok_or(StoreError::NotFound)?;
            let role = match &workspace {
                Some(w) => accounts::role_in(conn, &user_id, w)?,
                None => None,
            };
            Ok::<_, StoreError>((user, role))
        })
        .await?;
    Ok(Me {
        id: user.id.clone(),
        user_id: user.id,
        email: user.email,
        name: user.name,
        workspace_id: identity.workspace_id.clone(),
        role: role.map(|g| g.role_name),
        scopes: identity.scopes.clone(),
        created_at: service_kit::time::format_rfc3339(user.created_at.and_utc()),
        updated_at: service_kit::time::format_rfc3339(user.updated_at.and_utc()),
    })
}

/// The caller's profile
#[utoipa::path(
    get,
    path = "/v1/auth/me",
    operation_id = "get_me",
    tag = "profile",
    security(("bearer_token" = [])),
    responses(
        (status = 200, description = "The profile.", body = Envelope<Me>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Not a person (an API key or a service principal).", body = ErrorEnvelope),
        (status = 404, description = "The account no longer exists.", body = ErrorEnvelope),
    )
)]
pub async fn me(
    identity: Identity,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Me>, ApiError> {
    Ok(ApiResponse::ok(load_me(&state, &identity).await?))
}

/// The fields `PATCH /v1/auth/me` accepts (its handler reads a JSON object).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // described, never built
struct MeUpdate {
    /// At most 100 characters (trimmed), no control characters; may be empty.
    #[schema(nullable = false, max_length = 100)]
    name: Option<String>,
}

/// Edit the caller's profile
///
/// Only `name` can change; sending a read-only field (`id`, `user_id`,
/// `email`, `created_at`, `updated_at`, `workspace_id`) or an unknown one
/// answers 422 naming it.
#[utoipa::path(
    patch,
    path = "/v1/auth/me",
    operation_id = "update_me",
    tag = "profile",
    request_body = MeUpdate,
    security(("bearer_token" = [])),
    responses(
        (status = 200, description = "The updated profile.", body = Envelope<Me>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Not a person (an API key or a service principal).", body = ErrorEnvelope),
        (status = 422, description = "A bad `name`, a read-only or an unknown field (one entry each in `errors`).", body = ErrorEnvelope),
    )
)]
pub async fn update_me(
    identity: Identity,
    body: Json<serde_json::Map<String, serde_json::Value>>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Me>, ApiError> {
    let user_id = user_only(&identity)?.to_owned();
    let mut errors = Vec::new();
    let mut name = None;
    for (field, value) in body.into_inner() {
        match field.as_str() {
            "name" => match value.as_str().map(str::trim) {
                Some(n) if n.chars().count() <= MAX_NAME && !n.chars().any(char::is_control) => {
                    name = Some(n.to_owned())
                }
                _ => errors.push(FieldError::new(
                    "name",
                    format!("must be text of at most {MAX_NAME} characters"),
                )),
            },
            f if READ_ONLY.contains(&f) => errors.push(FieldError::new(f, "is read-only")),
            f => errors.push(FieldError::new(f, "unknown field")),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    if let Some(name) = name {
        state
            .db
            .run(move |conn| {
                diesel::update(users::table.find(&user_id))
                    .set((
                        users::name.eq(name),
                        users::updated_at.eq(Utc::now().naive_utc()),
                    ))
                    .execute(conn)
                    .map_err(StoreError::from)
            })
            .await?;
    }
    Ok(ApiResponse::ok(load_me(&state, &identity).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceView {
    /// `wrk_…`
    id: String,
    name: String,
    /// The caller's role (a built-in name or a custom role id), for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    role: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A workspace as its list reads it: id, name, the caller's role, created and
/// updated.
type WorkspaceRow = (String, String, Option<String>, NaiveDateTime, NaiveDateTime);

fn view((id, name, role, created_at, updated_at): WorkspaceRow) -> WorkspaceView {
    WorkspaceView {
        id,
        name,
        role,
        created_at: service_kit::time::format_rfc3339(created_at.and_utc()),
        updated_at: service_kit::time::format_rfc3339(updated_at.and_utc()),
    }
}

/// The caller's workspaces
///
/// People see the workspaces they are active members of; a key or service
/// token sees its own; the operator's system key sees them all.
#[utoipa::path(
    get,
    path = "/v1/system/workspaces",
    operation_id = "list_workspaces",
    tag = "workspaces",
    params(ListParams),
    security(("bearer_token" = []), ("api_key" = []), ("org_api_key" = [])),
    responses(
        (status = 200, description = "A page of workspaces.", body = ListEnvelope<Vec<WorkspaceView>>),
        (status = 400, description = "A bad `page_size`, `page`, `cursor` or `sort`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "A key or service token without a workspace.", body = ErrorEnvelope),
    )
)]
pub async fn workspaces(
    identity: Identity,
    query: Query<ListQuery>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Vec<WorkspaceView>>, ApiError> {
    let request = query.validate(SORT_FIELDS)?;
    let (limit, offset) = lists::bounds(&request);
    let (rows, total) = match identity.principal_type {
        PrincipalType::Anonymous => return Err(ApiError::unauthorized("authentication required")),
        PrincipalType::User => {
            let user_id = identity.principal_id.clone();
            state
                .db
                .run(move |conn| {
                    let mine = || {
                        memberships::table
                            .inner_join(workspaces::table)
                            .filter(memberships::user_id.eq(user_id.clone()))
                            .filter(memberships::status.eq("active"))
                            .into_boxed::<Backend>()
                    };
                    let total: i64 = mine().count().get_result(conn)?;
                    let rows = sorted!(mine(), request.sort, workspaces::id, {
                        "created_at" => workspaces::created_at,
                        "updated_at" => workspaces::updated_at,
                        "name" => workspaces::name,
                    })
                    .select((
                        workspaces::id,
                        workspaces::name,
                        memberships::role.nullable(),
                        workspaces::created_at,
                        workspaces::updated_at,
                    ))
                    .limit(limit)
                    .offset(offset)
                    .load::<WorkspaceRow>(conn)?;
                    Ok::<_, StoreError>((rows, total))
                })
                .await?
        }
        // The operator's system key sees every workspace; keys and service
        // tokens see their own.
        principal_type => {
            let only = match principal_type {
                PrincipalType::System => None,
                _ => Some(identity.require_workspace()?.to_owned()),
            };
            state
                .db
                .run(move |conn| {
                    let visible = || {
                        let mut q = workspaces::table.into_boxed::<Backend>();
                        if let Some(id) = &only {
                            q = q.filter(workspaces::id.eq(id.clone()));
                        }
                        q
                    };
                    let total: i64 = visible().count().get_result(conn)?;
                    let rows = sorted!(visible(), request.sort, workspaces::id, {
                        "created_at" => workspaces::created_at,
                        "updated_at" => workspaces::updated_at,
                        "name" => workspaces::name,
                    })
                    .select((
                        workspaces::id,
                        workspaces::name,
                        workspaces::created_at,
                        workspaces::updated_at,
                    ))
                    .limit(limit)
                    .offset(offset)
                    .load::<(String, String, NaiveDateTime, NaiveDateTime)>(conn)?
                    .into_iter()
                    .map(|(id, name, created, updated)| (id, name, None, created, updated))
                    .collect::<Vec<_>>();
                    Ok::<_, StoreError>((rows, total))
                })
                .await?
        }
    };
    let views = rows.into_iter().map(view).collect();
    Ok(ApiResponse::ok(views).window(request.window(total.unsigned_abs())))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    /// 1 to 100 characters (trimmed), no control characters.
    name: String,
}

/// Create a workspace
///
/// A person creates a workspace and becomes its owner.
#[utoipa::path(
    post,
    path = "/v1/system/workspaces",
    operation_id = "create_workspace",
    tag = "workspaces",
    request_body = NewWorkspace,
    security(("bearer_token" = [])),
    responses(
        (status = 201, description = "Created; `role` is `owner`.", body = Envelope<WorkspaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Not a person (an API key or a service principal).", body = ErrorEnvelope),
        (status = 422, description = "A bad `name`.", body = ErrorEnvelope),
    )
)]
pub async fn create_workspace(
    identity: Identity,
    body: Json<NewWorkspace>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<WorkspaceView>, ApiError> {
    let user_id = user_only(&identity)?.to_owned();
    let name = body.into_inner().name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::validation(vec![FieldError::new(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        )]));
    }
    let id = ids::new_id(prefix::WORKSPACE);
    let now = Utc::now().naive_utc();
    let (row_id, row_name) = (id.clone(), name.clone());
    let request_id = service_kit::request_id::current();
    state
        .db
        .transaction(move |conn| {
            diesel::insert_into(workspaces::table)
                .values((
                    workspaces::id.eq(&row_id),
                    workspaces::name.eq(&row_name),
                    workspaces::created_at.eq(now),
                    workspaces::updated_at.eq(now),
                ))
                .execute(conn)?;
            diesel::insert_into(memberships::table)
                .values((
                    memberships::workspace_id.eq(&row_id),
                    memberships::user_id.eq(&user_id),
                    memberships::role.eq(Role::Owner.as_str()),
                    memberships::status.eq("active"),
                    memberships::created_at.eq(now),
                    memberships::updated_at.eq(now),
                ))
                .execute(conn)?;
            let user = accounts::user_by_id(conn, &user_id)?.ok_or(StoreError::NotFound)?;
            let owner = Member {
                workspace_id: &row_id,
                user_id: &user_id,
                email: &user.email,
                role: Role::Owner.as_str(),
            };
            accounts::record_member_event(conn, MemberEvent::Added, &owner, request_id.as_deref())
        })
        .await?;
    state.events.nudge();
    Ok(ApiResponse::created(view((
        id,
        name,
        Some("owner".into()),
        now,
        now,
    ))))
}
