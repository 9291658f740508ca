//! Administration of a workspace: its members (`/v1/auth/admin/users`) and its
//! custom roles (`/v1/auth/admin/roles`).
//!
//! Rules: reading needs `users:read`, changing needs `users:admin`; a role can
//! only be granted by someone holding all its scopes, and `owner` only by an
//! owner; the last active owner can be neither demoted, deactivated nor removed;
//! built-in roles cannot be changed. Membership changes are published so that
//! gateways stop honouring the member's earlier tokens at once.

use crate::AuthState;
use crate::accounts::{self, Granted, Role, normalize_email};
use crate::schema::{memberships, roles, users};
use actix_web::web;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::revocation::Revocation;
use identity::{Identity, PrincipalType, Scope, ScopeSet};
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::OffsetQuery;
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::{DbConnection, StoreError};

const MAX_NAME: usize = 100;

fn reader(identity: &Identity) -> Result<String, ApiError> {
    identity.require_scope(&Scope::USERS_READ)?;
    Ok(identity.require_workspace()?.to_owned())
}

fn administrator(identity: &Identity) -> Result<String, ApiError> {
    identity.require_scope(&Scope::USERS_ADMIN)?;
    Ok(identity.require_workspace()?.to_owned())
}

/// Admin failures decided inside a transaction.
#[derive(Debug)]
enum Refusal {
    NotFound(&'static str),
    Invalid(&'static str, String),
    Conflict(String),
    Forbidden(String),
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

impl From<diesel::result::Error> for Refusal {
    fn from(e: diesel::result::Error) -> Self {
        Refusal::Store(e.into())
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound(what) => ApiError::not_found(what),
            Refusal::Invalid(field, message) => {
                ApiError::validation(vec![FieldError::new(field, message)])
            }
            Refusal::Conflict(message) => ApiError::conflict(message),
            Refusal::Forbidden(message) => ApiError::forbidden(message),
            Refusal::Store(e) => e.into(),
        }
    }
}

/// Whether the caller may hand out `granted`.
fn may_grant(
    conn: &mut DbConnection,
    caller: &Identity,
    workspace: &str,
    granted: &Granted,
) -> Result<(), Refusal> {
    if !granted.scopes().is_subset(&caller.scopes) {
        return Err(Refusal::Forbidden(
            "you cannot grant scopes you do not hold".into(),
        ));
    }
    if granted.is_owner() {
        let caller_is_owner = caller.principal_type == PrincipalType::User
            && accounts::role_in(conn, &caller.principal_id, workspace)?
                .is_some_and(|g| g.is_owner());
        if !caller_is_owner {
            return Err(Refusal::Forbidden("only an owner can make owners".into()));
        }
    }
    Ok(())
}

fn active_owners(conn: &mut DbConnection, workspace: &str) -> Result<i64, StoreError> {
    memberships::table
        .filter(memberships::workspace_id.eq(workspace))
        .filter(memberships::role.eq(Role::Owner.as_str()))
        .filter(memberships::status.eq("active"))
        .count()
        .get_result(conn)
        .map_err(StoreError::from)
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    user_id: String,
    email: String,
    name: String,
    role: String,
    role_name: String,
    status: String,
    joined_at: String,
}

fn member(
    conn: &mut DbConnection,
    workspace: &str,
    user_id: &str,
) -> Result<Option<MemberView>, StoreError> {
    let row = memberships::table
        .inner_join(users::table)
        .filter(memberships::workspace_id.eq(workspace))
        .filter(memberships::user_id.eq(user_id))
        .select((
            users::id,
            users::email,
            users::name,
            memberships::role,
            memberships::status,
            memberships::created_at,
        ))
        .first::<(String, String, String, String, String, NaiveDateTime)>(conn)
        .optional()?;
    row.map(|r| view(conn, workspace, r)).transpose()
}

fn view(
    conn: &mut DbConnection,
    workspace: &str,
    (user_id, email, name, role, status, joined): (
        String,
        String,
        String,
        String,
        String,
        NaiveDateTime,
    ),
) -> Result<MemberView, StoreError> {
    let role_name = accounts::resolve_role(conn, workspace, &role)?
        .map_or_else(|| role.clone(), |g| g.role_name);
    Ok(MemberView {
        user_id,
        email,
        name,
        role,
        role_name,
        status,
        joined_at: service_kit::time::format_rfc3339(joined.and_utc()),
    })
}

pub async fn list_users(
    identity: Identity,
    query: Query<OffsetQuery>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Vec<MemberView>>, ApiError> {
    let workspace = reader(&identity)?;
    let page = query.validate()?;
    let (rows, total) = state
        .db
        .run(move |conn| {
            let total: i64 = memberships::table
                .filter(memberships::workspace_id.eq(&workspace))
                .count()
                .get_result(conn)?;
            let rows = memberships::table
                .inner_join(users::table)
                .filter(memberships::workspace_id.eq(&workspace))
                .order((memberships::created_at.asc(), users::id.asc()))
                .select((
                    users::id,
                    users::email,
                    users::name,
                    memberships::role,
                    memberships::status,
                    memberships::created_at,
                ))
                .limit(i64::from(page.limit))
                .offset(page.offset())
                .load::<(String, String, String, String, String, NaiveDateTime)>(conn)?;
            let views = rows
                .into_iter()
                .map(|r| view(conn, &workspace, r))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>((views, total))
        })
        .await?;
    Ok(ApiResponse::ok(rows).meta(page.meta(total as u64)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    email: String,
    role: String,
}

/// Adds a person (by email; their account is created if needed) with a role.
pub async fn invite(
    identity: Identity,
    body: Json<Invite>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<MemberView>, ApiError> {
    let workspace = administrator(&identity)?;
    let Invite { email, role } = body.into_inner();
    let email = normalize_email(&email).ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "email",
            "must be a valid email address",
        )])
    })?;
    let added = state
        .db
        .transaction(move |conn| {
            let granted = accounts::resolve_role(conn, &workspace, &role)?
                .ok_or_else(|| Refusal::Invalid("role", "no such role in this workspace".into()))?;
            may_grant(conn, &identity, &workspace, &granted)?;
            let (user, _) = accounts::find_or_create_user(conn, &email)?;
            if member(conn, &workspace, &user.id)?.is_some() {
                return Err(Refusal::Conflict("already a member".into()));
            }
            let now = Utc::now().naive_utc();
            diesel::insert_into(memberships::table)
                .values((
                    memberships::workspace_id.eq(&workspace),
                    memberships::user_id.eq(&user.id),
                    memberships::role.eq(&granted.role),
                    memberships::status.eq("active"),
                    memberships::created_at.eq(now),
                    memberships::updated_at.eq(now),
                ))
                .execute(conn)?;
            member(conn, &workspace, &user.id)?.ok_or(Refusal::NotFound("member"))
        })
        .await?;
    Ok(ApiResponse::created(added))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberChange {
    role: Option<String>,
    status: Option<String>,
}

pub async fn update_user(
    identity: Identity,
    path: web::Path<String>,
    body: Json<MemberChange>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<MemberView>, ApiError> {
    let workspace = administrator(&identity)?;
    let user_id = path.into_inner();
    let MemberChange { role, status } = body.into_inner();
    if let Some(s) = &status
        && !matches!(s.as_str(), "active" | "deactivated")
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "status",
            "must be active or deactivated",
        )]));
    }
    let (ws, uid) = (workspace.clone(), user_id.clone());
    let updated = state
        .db
        .transaction(move |conn| {
            let current = member(conn, &ws, &uid)?.ok_or(Refusal::NotFound("member"))?;
            let new_role = match &role {
                Some(r) => {
                    let granted = accounts::resolve_role(conn, &ws, r)?.ok_or_else(|| {
                        Refusal::Invalid("role", "no such role in this workspace".into())
                    })?;
                    may_grant(conn, &identity, &ws, &granted)?;
                    granted.role
                }
                None => current.role.clone(),
            };
            let new_status = status.unwrap_or(current.status.clone());
            let stays_owner = new_role == Role::Owner.as_str() && new_status == "active";
            if current.role == Role::Owner.as_str() && current.status == "active" && !stays_owner {
                if !(identity.principal_type == PrincipalType::User
                    && accounts::role_in(conn, &identity.principal_id, &ws)?
                        .is_some_and(|g| g.is_owner()))
                {
                    return Err(Refusal::Forbidden(
                        "only an owner can change an owner".into(),
                    ));
                }
                if active_owners(conn, &ws)? <= 1 {
                    return Err(Refusal::Conflict(
                        "a workspace keeps at least one owner".into(),
                    ));
                }
            }
            diesel::update(
                memberships::table
                    .filter(memberships::workspace_id.eq(&ws))
                    .filter(memberships::user_id.eq(&uid)),
            )
            .set((
                memberships::role.eq(&new_role),
                memberships::status.eq(&new_status),
                memberships::updated_at.eq(Utc::now().naive_utc()),
            ))
            .execute(conn)?;
            member(conn, &ws, &uid)?.ok_or(Refusal::NotFound("member"))
        })
        .await?;
    // Whatever changed, tokens issued before it no longer speak for the member.
    state
        .publish_revocation(Revocation::Membership {
            workspace_id: workspace,
            user_id,
        })
        .await;
    Ok(ApiResponse::ok(updated))
}

pub async fn remove_user(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace = administrator(&identity)?;
    let user_id = path.into_inner();
    let (ws, uid) = (workspace.clone(), user_id.clone());
    state
        .db
        .transaction(move |conn| {
            let current = member(conn, &ws, &uid)?.ok_or(Refusal::NotFound("member"))?;
            if current.role == Role::Owner.as_str() && current.status == "active" {
                if !(identity.principal_type == PrincipalType::User
                    && accounts::role_in(conn, &identity.principal_id, &ws)?
                        .is_some_and(|g| g.is_owner()))
                {
                    return Err(Refusal::Forbidden(
                        "only an owner can remove an owner".into(),
                    ));
                }
                if active_owners(conn, &ws)? <= 1 {
                    return Err(Refusal::Conflict(
                        "a workspace keeps at least one owner".into(),
                    ));
                }
            }
            diesel::delete(
                memberships::table
                    .filter(memberships::workspace_id.eq(&ws))
                    .filter(memberships::user_id.eq(&uid)),
            )
            .execute(conn)?;
            Ok::<_, Refusal>(())
        })
        .await?;
    state
        .publish_revocation(Revocation::Membership {
            workspace_id: workspace,
            user_id,
        })
        .await;
    Ok(ApiResponse::ok(()).message("member removed"))
}

#[derive(Debug, Serialize)]
pub struct RoleView {
    id: String,
    name: String,
    scopes: ScopeSet,
    built_in: bool,
}

pub async fn list_roles(
    identity: Identity,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Vec<RoleView>>, ApiError> {
    let workspace = reader(&identity)?;
    let mut views: Vec<RoleView> = [Role::Owner, Role::Admin, Role::Member, Role::Viewer]
        .into_iter()
        .map(|r| RoleView {
            id: r.as_str().into(),
            name: r.as_str().into(),
            scopes: r.scopes(),
            built_in: true,
        })
        .collect();
    let custom = state
        .db
        .run(move |conn| {
            roles::table
                .filter(roles::workspace_id.eq(&workspace))
                .order((roles::created_at.asc(), roles::id.asc()))
                .select((roles::id, roles::name, roles::scopes))
                .load::<(String, String, String)>(conn)
                .map_err(StoreError::from)
        })
        .await?;
    views.extend(custom.into_iter().map(|(id, name, scopes)| RoleView {
        id,
        name,
        scopes: ScopeSet::parse(&scopes).unwrap_or_default(),
        built_in: false,
    }));
    Ok(ApiResponse::ok(views))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    name: Option<String>,
    scopes: Option<ScopeSet>,
}

fn check_role_input(
    identity: &Identity,
    name: Option<&str>,
    scopes: Option<&ScopeSet>,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if let Some(name) = name {
        if name.is_empty() || name.chars().count() > MAX_NAME {
            errors.push(FieldError::new(
                "name",
                format!("must be 1 to {MAX_NAME} characters"),
            ));
        } else if Role::parse(&name.to_lowercase()).is_some() {
            errors.push(FieldError::new("name", "is the name of a built-in role"));
        }
    }
    if let Some(scopes) = scopes
        && !scopes.is_subset(&identity.scopes)
    {
        errors.push(FieldError::new(
            "scopes",
            "may only include scopes you hold",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

pub async fn create_role(
    identity: Identity,
    body: Json<RoleInput>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<RoleView>, ApiError> {
    let workspace = administrator(&identity)?;
    let RoleInput { name, scopes } = body.into_inner();
    let name = name.map(|n| n.trim().to_owned()).unwrap_or_default();
    let scopes = scopes.unwrap_or_default();
    check_role_input(&identity, Some(&name), Some(&scopes))?;
    let id = ids::new_id(prefix::ROLE);
    let now = Utc::now().naive_utc();
    let (row_id, row_name, row_scopes) = (id.clone(), name.clone(), scopes.to_string());
    state
        .db
        .run(move |conn| {
            diesel::insert_into(roles::table)
                .values((
                    roles::id.eq(&row_id),
                    roles::workspace_id.eq(&workspace),
                    roles::name.eq(&row_name),
                    roles::scopes.eq(&row_scopes),
                    roles::created_at.eq(now),
                    roles::updated_at.eq(now),
                ))
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
        .map_err(|e| match e {
            StoreError::UniqueViolation { .. } => {
                ApiError::conflict("a role with this name exists")
                    .with_field("name", "already in use")
            }
            other => other.into(),
        })?;
    Ok(ApiResponse::created(RoleView {
        id,
        name,
        scopes,
        built_in: false,
    }))
}

fn built_in_refusal(id: &str) -> Option<ApiError> {
    Role::parse(id).map(|_| ApiError::conflict("built-in roles cannot be changed"))
}

pub async fn update_role(
    identity: Identity,
    path: web::Path<String>,
    body: Json<RoleInput>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<RoleView>, ApiError> {
    let workspace = administrator(&identity)?;
    let id = path.into_inner();
    if let Some(refusal) = built_in_refusal(&id) {
        return Err(refusal);
    }
    let RoleInput { name, scopes } = body.into_inner();
    let name = name.map(|n| n.trim().to_owned());
    check_role_input(&identity, name.as_deref(), scopes.as_ref())?;
    let updated = state
        .db
        .transaction(move |conn| {
            let (current_name, current_scopes) = roles::table
                .filter(roles::id.eq(&id))
                .filter(roles::workspace_id.eq(&workspace))
                .select((roles::name, roles::scopes))
                .first::<(String, String)>(conn)
                .optional()?
                .ok_or(Refusal::NotFound("role"))?;
            let name = name.unwrap_or(current_name);
            let scopes =
                scopes.unwrap_or_else(|| ScopeSet::parse(&current_scopes).unwrap_or_default());
            diesel::update(roles::table.find(&id))
                .set((
                    roles::name.eq(&name),
                    roles::scopes.eq(scopes.to_string()),
                    roles::updated_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn)?;
            Ok::<_, Refusal>(RoleView {
                id,
                name,
                scopes,
                built_in: false,
            })
        })
        .await?;
    Ok(ApiResponse::ok(updated))
}

pub async fn delete_role(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace = administrator(&identity)?;
    let id = path.into_inner();
    if let Some(refusal) = built_in_refusal(&id) {
        return Err(refusal);
    }
    state
        .db
        .transaction(move |conn| {
            let in_use: i64 = memberships::table
                .filter(memberships::workspace_id.eq(&workspace))
                .filter(memberships::role.eq(&id))
                .count()
                .get_result(conn)?;
            if in_use > 0 {
                return Err(Refusal::Conflict(format!(
                    "the role is held by {in_use} member(s)"
                )));
            }
            let deleted = diesel::delete(
                roles::table
                    .filter(roles::id.eq(&id))
                    .filter(roles::workspace_id.eq(&workspace)),
            )
            .execute(conn)?;
            if deleted == 0 {
                return Err(Refusal::NotFound("role"));
            }
            Ok(())
        })
        .await?;
    Ok(ApiResponse::ok(()).message("role deleted"))
}
