//! Administration of a workspace: its members (`/v1/auth/admin/users`) and its
//! custom roles (`/v1/auth/admin/roles`).
//!
//! Rules: reading needs `users:read`, changing needs `users:admin`; a role can
//! only be granted by someone holding all its scopes, and `owner` only by an
//! owner; the last active owner can be neither demoted, deactivated nor removed;
//! built-in roles cannot be changed. Membership changes are published so that
//! gateways stop honouring the member's earlier tokens at once, and recorded
//! as `member.added` / `member.removed` where a membership becomes or stops
//! being active (see [`crate::accounts`]).

use crate::AuthState;
use crate::accounts::{self, Granted, Member, MemberEvent, Role, normalize_email};
use crate::lists::{self, Backend, sorted};
use crate::openapi::{
    Envelope, ErrorEnvelope, ListEnvelope, ListParams, NoData, Scopes, ScopesInput,
};
use crate::schema::{memberships, roles, users};
use actix_web::web;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::revocation::Revocation;
use identity::scopes::Catalog;
use identity::{Identity, PrincipalType, Scope, ScopeSet};
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::ListQuery;
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::{DbConnection, StoreError};
use utoipa::ToSchema;

const MAX_NAME: usize = 100;
/// The fields `GET /v1/auth/admin/users` sorts by (`created_at` and
/// `updated_at` are the membership's).
pub const MEMBER_SORT_FIELDS: &[&str] = &["created_at", "updated_at", "email", "name"];
/// The fields `GET /v1/auth/admin/roles` sorts custom roles by.
pub const ROLE_SORT_FIELDS: &[&str] = &["created_at", "updated_at", "name"];

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
    catalog: &Catalog,
    caller: &Identity,
    workspace: &str,
    granted: &Granted,
) -> Result<(), Refusal> {
    if !granted.scopes(catalog).is_subset(&caller.scopes) {
        return Err(Refusal::Forbidden(
            "you cannot grant scopes you do not hold".into(),
        ));
    }
    if granted.is_owner() && !is_owner(conn, caller, workspace)? {
        return Err(Refusal::Forbidden("only an owner can make owners".into()));
    }
    Ok(())
}

/// Whether the caller is a person who owns the workspace.
fn is_owner(
    conn: &mut DbConnection,
    caller: &Identity,
    workspace: &str,
) -> Result<bool, StoreError> {
    Ok(caller.principal_type == PrincipalType::User
        && accounts::role_in(conn, &caller.principal_id, workspace)?.is_some_and(|g| g.is_owner()))
}

/// An active owner is about to stop being one (`action` says how): only an owner
/// may do that, and never to the last one.
fn owner_may_go(
    conn: &mut DbConnection,
    caller: &Identity,
    workspace: &str,
    action: &str,
) -> Result<(), Refusal> {
    if !is_owner(conn, caller, workspace)? {
        return Err(Refusal::Forbidden(format!(
            "only an owner can {action} an owner"
        )));
    }
    if active_owners(conn, workspace)? <= 1 {
        return Err(Refusal::Conflict(
            "a workspace keeps at least one owner".into(),
        ));
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

/// A membership's status, as stored and as `PATCH` accepts it.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // described, never built: statuses are stored as text
enum MemberStatus {
    Active,
    Deactivated,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// `usr_…`
    user_id: String,
    #[schema(format = Email)]
    email: String,
    name: String,
    /// As stored: a built-in role (`owner`, `admin`, `member`, `viewer`) or a
    /// custom role's id (`rol_…`).
    role: String,
    /// What a person reads: the built-in role, or the custom role's name.
    role_name: String,
    #[schema(value_type = MemberStatus)]
    status: String,
    /// When the membership began (what `sort=created_at` orders by).
    #[schema(format = DateTime)]
    joined_at: String,
    /// When the membership's role or status last changed.
    #[schema(format = DateTime)]
    updated_at: String,
}

impl MemberView {
    /// Records that this membership of `workspace` began or ended.
    fn record(
        &self,
        conn: &mut DbConnection,
        event: MemberEvent,
        workspace: &str,
        request_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let member = Member {
            workspace_id: workspace,
            user_id: &self.user_id,
            email: &self.email,
            role: &self.role,
        };
        accounts::record_member_event(conn, event, &member, request_id)
    }

    fn is_active(&self) -> bool {
        self.status == "active"
    }
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
            memberships::updated_at,
        ))
        .first::<MemberRow>(conn)
        .optional()?;
    row.map(|r| view(conn, workspace, r)).transpose()
}

/// A membership as lists read it: the person (id, email, name), role, status,
/// and when the membership began and last changed.
type MemberRow = (
    String,
    String,
    String,
    String,
    String,
    NaiveDateTime,
    NaiveDateTime,
);

fn view(
    conn: &mut DbConnection,
    workspace: &str,
    (user_id, email, name, role, status, joined, updated): MemberRow,
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
        updated_at: service_kit::time::format_rfc3339(updated.and_utc()),
    })
}

/// List the workspace's members
///
/// Needs `users:read`.
#[utoipa::path(
    get,
    path = "/v1/auth/admin/users",
    operation_id = "list_members",
    tag = "admin",
    params(ListParams),
    security(("bearer_token" = ["users:read"]), ("api_key" = ["users:read"]), ("org_api_key" = ["users:read"])),
    responses(
        (status = 200, description = "A page of members.", body = ListEnvelope<Vec<MemberView>>),
        (status = 400, description = "A bad `page_size`, `page`, `cursor` or `sort`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `users:read`, or no workspace selected.", body = ErrorEnvelope),
    )
)]
pub async fn list_users(
    identity: Identity,
    query: Query<ListQuery>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Vec<MemberView>>, ApiError> {
    let workspace = reader(&identity)?;
    let request = query.validate(MEMBER_SORT_FIELDS)?;
    let (limit, offset) = lists::bounds(&request);
    let (rows, total) = state
        .db
        .run(move |conn| {
            let total: i64 = memberships::table
                .filter(memberships::workspace_id.eq(&workspace))
                .count()
                .get_result(conn)?;
            let members = memberships::table
                .inner_join(users::table)
                .filter(memberships::workspace_id.eq(workspace.clone()))
                .into_boxed::<Backend>();
            let rows = sorted!(members, request.sort, users::id, {
                "created_at" => memberships::created_at,
                "updated_at" => memberships::updated_at,
                "email" => users::email,
                "name" => users::name,
            })
            .select((
                users::id,
                users::email,
                users::name,
                memberships::role,
                memberships::status,
                memberships::created_at,
                memberships::updated_at,
            ))
            .limit(limit)
            .offset(offset)
            .load::<MemberRow>(conn)?;
            let views = rows
                .into_iter()
                .map(|r| view(conn, &workspace, r))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>((views, total))
        })
        .await?;
    Ok(ApiResponse::ok(rows).window(request.window(total.unsigned_abs())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    #[schema(format = Email)]
    email: String,
    /// A built-in role (`owner`, `admin`, `member`, `viewer`) or a custom
    /// role's id (`rol_…`) of this workspace.
    role: String,
}

/// Add a member
///
/// Adds a person by email (their account is created if needed) with a role.
/// Needs `users:admin`, every scope of the role, and for `owner` to be an
/// owner.
#[utoipa::path(
    post,
    path = "/v1/auth/admin/users",
    operation_id = "invite_member",
    tag = "admin",
    request_body = Invite,
    security(("bearer_token" = ["users:admin"]), ("api_key" = ["users:admin"]), ("org_api_key" = ["users:admin"])),
    responses(
        (status = 201, description = "The new member.", body = Envelope<MemberView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `users:admin`, no workspace selected, a role with scopes the caller lacks, or `owner` granted by a non-owner.", body = ErrorEnvelope),
        (status = 409, description = "Already a member.", body = ErrorEnvelope),
        (status = 422, description = "A bad `email`, or no such role in this workspace.", body = ErrorEnvelope),
    )
)]
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
    let catalog = state.scopes.clone();
    let request_id = service_kit::request_id::current();
    let added = state
        .db
        .transaction(move |conn| {
            let request_id = request_id.as_deref();
            let granted = accounts::resolve_role(conn, &workspace, &role)?
                .ok_or_else(|| Refusal::Invalid("role", "no such role in this workspace".into()))?;
            may_grant(conn, &catalog, &identity, &workspace, &granted)?;
            let (user, _) = accounts::find_or_create_user(conn, &email, request_id)?;
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
            let added = member(conn, &workspace, &user.id)?.ok_or(Refusal::NotFound("member"))?;
            added.record(conn, MemberEvent::Added, &workspace, request_id)?;
            Ok(added)
        })
        .await?;
    state.events.nudge();
    Ok(ApiResponse::created(added))
}

/// What a `PATCH` of a member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    /// The same role and status: nothing was written.
    Nothing,
    /// The role changed; the member stayed active, or inactive.
    Role,
    /// The member became active or stopped being so (an event was recorded).
    Membership,
}

/// Either or both; an absent field stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberChange {
    /// A built-in role or a custom role's id (`rol_…`) of this workspace.
    role: Option<String>,
    #[schema(value_type = Option<MemberStatus>)]
    status: Option<String>,
}

/// Change a member's role or status
///
/// Needs `users:admin` and every scope of a new role; only owners make or
/// change owners, and the last active owner stays. The member's earlier
/// tokens for this workspace stop working at once.
#[utoipa::path(
    patch,
    path = "/v1/auth/admin/users/{user_id}",
    operation_id = "update_member",
    tag = "admin",
    params(("user_id" = String, Path, description = "The member (`usr_…`).")),
    request_body = MemberChange,
    security(("bearer_token" = ["users:admin"]), ("api_key" = ["users:admin"]), ("org_api_key" = ["users:admin"])),
    responses(
        (status = 200, description = "The member as changed.", body = Envelope<MemberView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `users:admin`, no workspace selected, a role with scopes the caller lacks, or an owner change by a non-owner.", body = ErrorEnvelope),
        (status = 404, description = "Not a member of this workspace.", body = ErrorEnvelope),
        (status = 409, description = "It would leave the workspace without an active owner.", body = ErrorEnvelope),
        (status = 422, description = "A bad `status`, or no such role in this workspace.", body = ErrorEnvelope),
    )
)]
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
    let catalog = state.scopes.clone();
    let request_id = service_kit::request_id::current();
    let updated = state
        .db
        .transaction(move |conn| {
            let current = member(conn, &ws, &uid)?.ok_or(Refusal::NotFound("member"))?;
            let new_role = match &role {
                Some(r) => {
                    let granted = accounts::resolve_role(conn, &ws, r)?.ok_or_else(|| {
                        Refusal::Invalid("role", "no such role in this workspace".into())
                    })?;
                    may_grant(conn, &catalog, &identity, &ws, &granted)?;
                    granted.role
                }
                None => current.role.clone(),
            };
            let new_status = status.unwrap_or(current.status.clone());
            if new_role == current.role && new_status == current.status {
                return Ok::<_, Refusal>((current, Changed::Nothing));
            }
            let stays_owner = new_role == Role::Owner.as_str() && new_status == "active";
            if current.role == Role::Owner.as_str() && current.status == "active" && !stays_owner {
                owner_may_go(conn, &identity, &ws, "change")?;
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
            let updated = member(conn, &ws, &uid)?.ok_or(Refusal::NotFound("member"))?;
            // Deactivated, the member has left (with the role they had);
            // active again, they are back (with the role they have now).
            let moved = match (current.is_active(), updated.is_active()) {
                (true, false) => Some((&current, MemberEvent::Removed)),
                (false, true) => Some((&updated, MemberEvent::Added)),
                _ => None,
            };
            let changed = match moved {
                Some((view, event)) => {
                    view.record(conn, event, &ws, request_id.as_deref())?;
                    Changed::Membership
                }
                None => Changed::Role,
            };
            Ok((updated, changed))
        })
        .await?;
    let (updated, changed) = updated;
    if changed == Changed::Membership {
        state.events.nudge();
    }
    // Whatever changed, tokens issued before it no longer speak for the member;
    // a change to nothing (same role, same status) leaves them be.
    if changed != Changed::Nothing {
        state
            .publish_revocation(Revocation::Membership {
                workspace_id: workspace,
                user_id,
            })
            .await;
    }
    Ok(ApiResponse::ok(updated))
}

/// Remove a member
///
/// Needs `users:admin`; only owners remove owners, and the last active owner
/// stays. The member's earlier tokens for this workspace stop working at once.
#[utoipa::path(
    delete,
    path = "/v1/auth/admin/users/{user_id}",
    operation_id = "remove_member",
    tag = "admin",
    params(("user_id" = String, Path, description = "The member (`usr_…`).")),
    security(("bearer_token" = ["users:admin"]), ("api_key" = ["users:admin"]), ("org_api_key" = ["users:admin"])),
    responses(
        (status = 200, description = "Removed (message `member removed`).", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `users:admin`, no workspace selected, or an owner removed by a non-owner.", body = ErrorEnvelope),
        (status = 404, description = "Not a member of this workspace.", body = ErrorEnvelope),
        (status = 409, description = "It would leave the workspace without an active owner.", body = ErrorEnvelope),
    )
)]
pub async fn remove_user(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace = administrator(&identity)?;
    let user_id = path.into_inner();
    let (ws, uid) = (workspace.clone(), user_id.clone());
    let request_id = service_kit::request_id::current();
    let was_active = state
        .db
        .transaction(move |conn| {
            let current = member(conn, &ws, &uid)?.ok_or(Refusal::NotFound("member"))?;
            if current.role == Role::Owner.as_str() && current.is_active() {
                owner_may_go(conn, &identity, &ws, "remove")?;
            }
            diesel::delete(
                memberships::table
                    .filter(memberships::workspace_id.eq(&ws))
                    .filter(memberships::user_id.eq(&uid)),
            )
            .execute(conn)?;
            // A deactivated member left when they were deactivated.
            if current.is_active() {
                current.record(conn, MemberEvent::Removed, &ws, request_id.as_deref())?;
            }
            Ok::<_, Refusal>(current.is_active())
        })
        .await?;
    if was_active {
        state.events.nudge();
    }
    state
        .publish_revocation(Revocation::Membership {
            workspace_id: workspace,
            user_id,
        })
        .await;
    Ok(ApiResponse::ok(()).message("member removed"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    /// A built-in role's name, or a custom role's id (`rol_…`).
    id: String,
    name: String,
    #[schema(value_type = Scopes)]
    scopes: ScopeSet,
    /// `owner`, `admin`, `member` and `viewer` are built in and cannot change.
    built_in: bool,
    /// Null for a built-in role.
    #[schema(format = DateTime, required = true)]
    created_at: Option<String>,
    /// Null for a built-in role.
    #[schema(format = DateTime, required = true)]
    updated_at: Option<String>,
}

#[derive(Queryable, Debug)]
struct StoredRole {
    id: String,
    name: String,
    scopes: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl RoleView {
    fn built_in(role: Role, catalog: &Catalog) -> RoleView {
        RoleView {
            id: role.as_str().into(),
            name: role.as_str().into(),
            scopes: role.scopes(catalog),
            built_in: true,
            created_at: None,
            updated_at: None,
        }
    }

    fn custom(role: StoredRole) -> RoleView {
        let time = |t: NaiveDateTime| Some(service_kit::time::format_rfc3339(t.and_utc()));
        RoleView {
            id: role.id,
            name: role.name,
            scopes: ScopeSet::parse(&role.scopes).unwrap_or_default(),
            built_in: false,
            created_at: time(role.created_at),
            updated_at: time(role.updated_at),
        }
    }
}

/// The columns of [`StoredRole`].
type RoleColumns = (
    roles::id,
    roles::name,
    roles::scopes,
    roles::created_at,
    roles::updated_at,
);

const ROLE_COLUMNS: RoleColumns = (
    roles::id,
    roles::name,
    roles::scopes,
    roles::created_at,
    roles::updated_at,
);

/// List the workspace's roles
///
/// The four built-in roles (`owner`, `admin`, `member`, `viewer`, which have
/// no creation time) come first, then the workspace's custom roles in `sort`
/// order. Needs `users:read`.
#[utoipa::path(
    get,
    path = "/v1/auth/admin/roles",
    operation_id = "list_roles",
    tag = "admin",
    params(ListParams),
    security(("bearer_token" = ["users:read"]), ("api_key" = ["users:read"]), ("org_api_key" = ["users:read"])),
    responses(
        (status = 200, description = "A page of roles.", body = ListEnvelope<Vec<RoleView>>),
        (status = 400, description = "A bad `page_size`, `page`, `cursor` or `sort`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `users:read`, or no workspace selected.", body = ErrorEnvelope),
    )
)]
pub async fn list_roles(
    identity: Identity,
    query: Query<ListQuery>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Vec<RoleView>>, ApiError> {
    let workspace = reader(&identity)?;
    let request = query.validate(ROLE_SORT_FIELDS)?;
    // The window over [built-in roles…, custom roles…]: the built-in ones it
    // covers, then the custom ones from where they start.
    let built_ins = Role::ALL.len() as u64;
    let start = request.offset;
    let end = start + u64::from(request.limit);
    let mut views: Vec<RoleView> = Role::ALL
        .into_iter()
        .skip(start.min(built_ins) as usize)
        .take((end.min(built_ins) - start.min(built_ins)) as usize)
        .map(|r| RoleView::built_in(r, &state.scopes))
        .collect();
    let custom_limit = i64::from(request.limit) - views.len() as i64;
    let custom_offset = i64::try_from(start.saturating_sub(built_ins)).unwrap_or(i64::MAX);
    let (custom, count) = state
        .db
        .run(move |conn| {
            let count: i64 = roles::table
                .filter(roles::workspace_id.eq(&workspace))
                .count()
                .get_result(conn)?;
            let custom = if custom_limit > 0 {
                let in_workspace = roles::table
                    .filter(roles::workspace_id.eq(workspace.clone()))
                    .into_boxed::<Backend>();
                sorted!(in_workspace, request.sort, roles::id, {
                    "created_at" => roles::created_at,
                    "updated_at" => roles::updated_at,
                    "name" => roles::name,
                })
                .select(ROLE_COLUMNS)
                .limit(custom_limit)
                .offset(custom_offset)
                .load::<StoredRole>(conn)?
            } else {
                Vec::new()
            };
            Ok::<_, StoreError>((custom, count))
        })
        .await?;
    views.extend(custom.into_iter().map(RoleView::custom));
    let total = built_ins + count.unsigned_abs();
    Ok(ApiResponse::ok(views).window(request.window(total)))
}

/// Creating needs `name` (a missing one is refused as empty); a change may
/// leave either out to keep it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    /// 1 to 100 characters (trimmed), not a built-in role's name; unique in
    /// the workspace.
    name: Option<String>,
    /// Only scopes the caller holds; default (creating): none.
    #[schema(value_type = Option<ScopesInput>)]
    scopes: Option<ScopeSet>,
}

fn check_role_input(
    catalog: &Catalog,
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
    if let Some(scopes) = scopes {
        let unknown = catalog.unknown(scopes);
        if !unknown.is_empty() {
            errors.push(FieldError::new(
                "scopes",
                format!("not granted by this deployment: {unknown}"),
            ));
        } else if !scopes.is_subset(&identity.scopes) {
            errors.push(FieldError::new(
                "scopes",
                format!(
                    "may only include scopes you hold (not {})",
                    scopes.difference(&identity.scopes)
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Create a custom role
///
/// Needs `users:admin`.
#[utoipa::path(
    post,
    path = "/v1/auth/admin/roles",
    operation_id = "create_role",
    tag = "admin",
    request_body = RoleInput,
    security(("bearer_token" = ["users:admin"]), ("api_key" = ["users:admin"]), ("org_api_key" = ["users:admin"])),
    responses(
        (status = 201, description = "The new role.", body = Envelope<RoleView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `users:admin`, or no workspace selected.", body = ErrorEnvelope),
        (status = 409, description = "A role with this name exists (`errors[].field` = `name`).", body = ErrorEnvelope),
        (status = 422, description = "A bad `name`, scopes the deployment does not grant, or scopes the caller lacks.", body = ErrorEnvelope),
    )
)]
pub async fn create_role(
    identity: Identity,
    body: Json<RoleInput>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<RoleView>, ApiError> {
    let workspace = administrator(&identity)?;
    let RoleInput { name, scopes } = body.into_inner();
    let name = name.map(|n| n.trim().to_owned()).unwrap_or_default();
    let scopes = scopes.unwrap_or_default();
    check_role_input(&state.scopes, &identity, Some(&name), Some(&scopes))?;
    let id = ids::new_id(prefix::ROLE);
    let now = Utc::now().naive_utc();
    let (row_id, row_name, row_scopes) = (id.clone(), name.clone(), scopes.to_string());
    let row_scopes_view = row_scopes.clone();
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
    Ok(ApiResponse::created(RoleView::custom(StoredRole {
        id,
        name,
        scopes: row_scopes_view,
        created_at: now,
        updated_at: now,
    })))
}

fn built_in_refusal(id: &str) -> Option<ApiError> {
    Role::parse(id).map(|_| ApiError::conflict("built-in roles cannot be changed"))
}

/// Change a custom role
///
/// Needs `users:admin`.
#[utoipa::path(
    patch,
    path = "/v1/auth/admin/roles/{id}",
    operation_id = "update_role",
    tag = "admin",
    params(("id" = String, Path, description = "The custom role (`rol_…`).")),
    request_body = RoleInput,
    security(("bearer_token" = ["users:admin"]), ("api_key" = ["users:admin"]), ("org_api_key" = ["users:admin"])),
    responses(
        (status = 200, description = "The role as changed.", body = Envelope<RoleView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `users:admin`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such custom role in this workspace.", body = ErrorEnvelope),
        (status = 409, description = "A built-in role, or the name is taken.", body = ErrorEnvelope),
        (status = 422, description = "A bad `name`, scopes the deployment does not grant, or scopes the caller lacks.", body = ErrorEnvelope),
    )
)]
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
    check_role_input(&state.scopes, &identity, name.as_deref(), scopes.as_ref())?;
    let updated = state
        .db
        .transaction(move |conn| {
            let current = roles::table
                .filter(roles::id.eq(&id))
                .filter(roles::workspace_id.eq(&workspace))
                .select(ROLE_COLUMNS)
                .first::<StoredRole>(conn)
                .optional()?
                .ok_or(Refusal::NotFound("role"))?;
            let changed = StoredRole {
                name: name.unwrap_or(current.name),
                scopes: scopes.map_or(current.scopes, |s| s.to_string()),
                updated_at: Utc::now().naive_utc(),
                ..current
            };
            diesel::update(roles::table.find(&id))
                .set((
                    roles::name.eq(&changed.name),
                    roles::scopes.eq(&changed.scopes),
                    roles::updated_at.eq(changed.updated_at),
                ))
                .execute(conn)?;
            Ok::<_, Refusal>(RoleView::custom(changed))
        })
        .await?;
    Ok(ApiResponse::ok(updated))
}

/// Delete a custom role
///
/// Needs `users:admin`; a role still held by a member cannot go.
#[utoipa::path(
    delete,
    path = "/v1/auth/admin/roles/{id}",
    operation_id = "delete_role",
    tag = "admin",
    params(("id" = String, Path, description = "The custom role (`rol_…`).")),
    security(("bearer_token" = ["users:admin"]), ("api_key" = ["users:admin"]), ("org_api_key" = ["users:admin"])),
    responses(
        (status = 200, description = "Deleted (message `role deleted`).", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `users:admin`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such custom role in this workspace.", body = ErrorEnvelope),
        (status = 409, description = "A built-in role, or held by members.", body = ErrorEnvelope),
    )
)]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembershipQuestion {
    user_id: String,
    workspace_id: String,
}

/// Whether a person belongs to a workspace, and what their role grants there.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MembershipAnswer {
    member: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    scopes: Option<ScopeSet>,
}

/// Look up a membership (internal)
///
/// For the gateway only, with its own identity token; to anyone else the route
/// does not exist (404). Answers `{member: false}` for an inactive or missing
/// membership, and for ids that do not exist.
#[utoipa::path(
    post,
    path = "/internal/memberships/lookup",
    operation_id = "lookup_membership",
    tag = "internal",
    request_body = MembershipQuestion,
    security(("gateway_identity" = [])),
    extensions(("x-internal" = json!(true))),
    responses(
        (status = 200, description = "The membership, or `{member: false}`.", body = crate::openapi::Envelope<MembershipAnswer>),
        (status = 401, description = "No valid identity token: the request did not come from the gateway.", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "The caller is not the gateway.", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "The database is unreachable.", body = crate::openapi::ErrorEnvelope),
    )
)]
pub async fn lookup_membership(
    identity: Identity,
    body: Json<MembershipQuestion>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<MembershipAnswer>, ApiError> {
    crate::api_keys::require_gateway(&identity)?;
    let MembershipQuestion {
        user_id,
        workspace_id,
    } = body.into_inner();
    let granted = state
        .db
        .run(move |conn| accounts::role_in(conn, &user_id, &workspace_id))
        .await?;
    Ok(ApiResponse::ok(match granted {
        Some(granted) => MembershipAnswer {
            member: true,
            role: Some(granted.role.clone()),
            scopes: Some(granted.scopes(&state.scopes)),
        },
        None => MembershipAnswer {
            member: false,
            role: None,
            scopes: None,
        },
    }))
}
