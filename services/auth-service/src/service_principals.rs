//! Service principals: machine clients of a workspace that exchange a client id
//! and secret for access tokens (OAuth2 client credentials).
//!
//! `POST|GET /v1/auth/service-principals`, `DELETE /v1/auth/service-principals/{id}`,
//! `POST /v1/auth/service-principals/{id}/rotate-secret`.

use crate::AuthState;
use crate::lists::{self, Backend, sorted};
use crate::openapi::{
    Envelope, ErrorEnvelope, ListEnvelope, ListParams, NoData, Scopes, ScopesInput,
};
use crate::schema::service_principals;
use crate::secrets::{hashes_match, random_credential};
use crate::verified_clients::VerifiedClient;
use actix_web::http::StatusCode;
use actix_web::web;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::revocation::Revocation;
use identity::{Identity, Scope, ScopeSet};
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::ListQuery;
use service_kit::time::rfc3339;
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use std::sync::Arc;
use store::StoreError;
use utoipa::ToSchema;

const SECRET_PREFIX: &str = "sps_";
const MAX_NAME: usize = 100;
/// The fields `GET /v1/auth/service-principals` sorts by.
pub const SORT_FIELDS: &[&str] = &["created_at", "name", "secret_rotated_at"];

#[derive(Queryable, Insertable, Debug, Clone)]
#[diesel(table_name = service_principals)]
pub struct Principal {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub secret_hash: String,
    pub scopes: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub secret_rotated_at: NaiveDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalView {
    /// `spn_…`; its id, and the OAuth `client_id`.
    client_id: String,
    name: String,
    workspace_id: String,
    /// What its tokens may hold at most.
    #[schema(value_type = Scopes)]
    scopes: ScopeSet,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<Utc>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    secret_rotated_at: chrono::DateTime<Utc>,
    /// Only in the answer that created or rotated it (`sps_…`). Only its hash
    /// is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

impl PrincipalView {
    fn of(p: Principal, client_secret: Option<String>) -> PrincipalView {
        PrincipalView {
            client_id: p.id,
            name: p.name,
            workspace_id: p.workspace_id,
            scopes: ScopeSet::parse(&p.scopes).unwrap_or_default(),
            created_at: p.created_at.and_utc(),
            secret_rotated_at: p.secret_rotated_at.and_utc(),
            client_secret,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipal {
    /// 1 to 100 characters (trimmed); unique in the workspace.
    name: String,
    /// At least one, and only scopes the caller holds.
    #[schema(value_type = ScopesInput)]
    scopes: ScopeSet,
}

/// The workspace and identity of an administrator of keys.
fn keys_admin(identity: &Identity) -> Result<String, ApiError> {
    identity.require_scope(&Scope::KEYS_ADMIN)?;
    Ok(identity.require_workspace()?.to_owned())
}

/// Create a service principal
///
/// A machine client of the workspace; it exchanges its `client_id` and
/// `client_secret` for access tokens at `POST /v1/auth/token`. The secret is
/// shown once, in this answer. Needs `keys:admin`.
#[utoipa::path(
    post,
    path = "/v1/auth/service-principals",
    operation_id = "create_service_principal",
    tag = "service-principals",
    request_body = NewPrincipal,
    security(("bearer_token" = ["keys:admin"]), ("api_key" = ["keys:admin"]), ("org_api_key" = ["keys:admin"])),
    responses(
        (status = 201, description = "The new principal, with `client_secret`.", body = Envelope<PrincipalView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `keys:admin`, no workspace selected, or a key bound to an organization.", body = ErrorEnvelope),
        (status = 409, description = "A principal with this name exists (`errors[].field` = `name`).", body = ErrorEnvelope),
        (status = 422, description = "A bad `name`, no scopes, scopes the deployment does not grant or scopes the caller lacks.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: Json<NewPrincipal>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<PrincipalView>, ApiError> {
    let workspace_id = keys_admin(&identity)?;
    let NewPrincipal { name, scopes } = body.into_inner();
    let name = name.trim().to_owned();
    let mut errors = Vec::new();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        errors.push(FieldError::new(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    let unknown = state.scopes.unknown(&scopes);
    if scopes.is_empty() {
        errors.push(FieldError::new("scopes", "at least one scope is needed"));
    } else if !unknown.is_empty() {
        errors.push(FieldError::new(
            "scopes",
            format!("not granted by this deployment: {unknown}"),
        ));
    } else if !scopes.is_subset(&identity.scopes) {
        // A principal never holds a scope its creator lacks.
        errors.push(FieldError::new(
            "scopes",
            format!(
                "may only include scopes you hold (not {})",
                scopes.difference(&identity.scopes)
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    // A principal's tokens reach the whole workspace: a key bound to one
    // organization cannot make one.
    if crate::api_keys::caller_binding(&state, &identity)
        .await?
        .is_some()
    {
        return Err(ApiError::forbidden(
            "a key bound to an organization cannot create service principals",
        ));
    }
    let secret = random_credential(SECRET_PREFIX);
    let now = Utc::now().naive_utc();
    let principal = Principal {
        id: ids::new_id(prefix::SERVICE_PRINCIPAL),
        workspace_id,
        name,
        secret_hash: state.secrets.credential_hash(&secret),
        scopes: scopes.to_string(),
        created_by: identity.principal_id.clone(),
        created_at: now,
        secret_rotated_at: now,
    };
    let row = principal.clone();
    state
        .db
        .run(move |conn| {
            diesel::insert_into(service_principals::table)
                .values(&row)
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await
        .map_err(|e| match e {
            StoreError::UniqueViolation { .. } => {
                ApiError::conflict("a service principal with this name exists")
                    .with_field("name", "already in use")
            }
            other => other.into(),
        })?;
    Ok(ApiResponse::created(PrincipalView::of(
        principal,
        Some(secret),
    )))
}

/// List the workspace's service principals
///
/// Without secrets. Needs `keys:admin`.
#[utoipa::path(
    get,
    path = "/v1/auth/service-principals",
    operation_id = "list_service_principals",
    tag = "service-principals",
    params(ListParams),
    security(("bearer_token" = ["keys:admin"]), ("api_key" = ["keys:admin"]), ("org_api_key" = ["keys:admin"])),
    responses(
        (status = 200, description = "A page of principals.", body = ListEnvelope<Vec<PrincipalView>>),
        (status = 400, description = "A bad `page_size`, `page`, `cursor` or `sort`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `keys:admin`, or no workspace selected.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<ListQuery>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Vec<PrincipalView>>, ApiError> {
    let workspace_id = keys_admin(&identity)?;
    let request = query.validate(SORT_FIELDS)?;
    let (limit, offset) = lists::bounds(&request);
    let (rows, total) = state
        .db
        .run(move |conn| {
            let in_workspace = || {
                service_principals::table
                    .filter(service_principals::workspace_id.eq(workspace_id.clone()))
                    .into_boxed::<Backend>()
            };
            let total: i64 = in_workspace().count().get_result(conn)?;
            let rows = sorted!(in_workspace(), request.sort, service_principals::id, {
                "created_at" => service_principals::created_at,
                "name" => service_principals::name,
                "secret_rotated_at" => service_principals::secret_rotated_at,
            })
            .limit(limit)
            .offset(offset)
            .load::<Principal>(conn)?;
            Ok::<_, StoreError>((rows, total))
        })
        .await?;
    let views = rows
        .into_iter()
        .map(|p| PrincipalView::of(p, None))
        .collect();
    Ok(ApiResponse::ok(views).window(request.window(total.unsigned_abs())))
}

/// Loads a principal of the caller's workspace; another workspace's id is 404.
fn find(
    conn: &mut store::DbConnection,
    workspace_id: &str,
    id: &str,
) -> Result<Principal, StoreError> {
    service_principals::table
        .filter(service_principals::id.eq(id))
        .filter(service_principals::workspace_id.eq(workspace_id))
        .first::<Principal>(conn)
        .map_err(StoreError::from)
}

fn not_found() -> ApiError {
    ApiError::not_found("service principal")
}

/// Delete a service principal
///
/// Its access tokens stop working at every gateway within a second. Needs
/// `keys:admin`.
#[utoipa::path(
    delete,
    path = "/v1/auth/service-principals/{id}",
    operation_id = "delete_service_principal",
    tag = "service-principals",
    params(("id" = String, Path, description = "The principal (`spn_…`).")),
    security(("bearer_token" = ["keys:admin"]), ("api_key" = ["keys:admin"]), ("org_api_key" = ["keys:admin"])),
    responses(
        (status = 200, description = "Deleted (message `service principal deleted`).", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `keys:admin`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such principal in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace_id = keys_admin(&identity)?;
    let id = path.into_inner();
    if !ids::is_valid(prefix::SERVICE_PRINCIPAL, &id) {
        return Err(not_found());
    }
    let target = id.clone();
    let deleted = state
        .db
        .run(move |conn| {
            diesel::delete(
                service_principals::table
                    .filter(service_principals::id.eq(&target))
                    .filter(service_principals::workspace_id.eq(&workspace_id)),
            )
            .execute(conn)
            .map_err(StoreError::from)
        })
        .await?;
    if deleted == 0 {
        return Err(not_found());
    }
    state.revoke_client_secrets(&id).await;
    // Its live access tokens carry its id as their session.
    state.publish_revocation(Revocation::Session { id }).await;
    Ok(ApiResponse::with_status(StatusCode::OK, ()).message("service principal deleted"))
}

/// Rotate a service principal's secret
///
/// The old secret stops working at once; tokens already issued stay valid
/// until they expire. Needs `keys:admin`.
#[utoipa::path(
    post,
    path = "/v1/auth/service-principals/{id}/rotate-secret",
    operation_id = "rotate_service_principal_secret",
    tag = "service-principals",
    params(("id" = String, Path, description = "The principal (`spn_…`).")),
    security(("bearer_token" = ["keys:admin"]), ("api_key" = ["keys:admin"]), ("org_api_key" = ["keys:admin"])),
    responses(
        (status = 200, description = "The principal, with its new `client_secret`.", body = Envelope<PrincipalView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `keys:admin`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such principal in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn rotate_secret(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<PrincipalView>, ApiError> {
    let workspace_id = keys_admin(&identity)?;
    let id = path.into_inner();
    if !ids::is_valid(prefix::SERVICE_PRINCIPAL, &id) {
        return Err(not_found());
    }
    let secret = random_credential(SECRET_PREFIX);
    let secret_hash = state.secrets.credential_hash(&secret);
    let principal = state
        .db
        .transaction(move |conn| {
            let now = Utc::now().naive_utc();
            let mut principal = find(conn, &workspace_id, &id)?;
            diesel::update(service_principals::table.find(&principal.id))
                .set((
                    service_principals::secret_hash.eq(&secret_hash),
                    service_principals::secret_rotated_at.eq(now),
                ))
                .execute(conn)?;
            principal.secret_rotated_at = now;
            Ok::<_, StoreError>(principal)
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => not_found(),
            other => other.into(),
        })?;
    // The old secret stops working on every replica, remembered or not.
    state.revoke_client_secrets(&principal.id).await;
    Ok(ApiResponse::ok(PrincipalView::of(principal, Some(secret))))
}

/// Checks a client id and secret; `None` for an unknown client or a wrong
/// secret alike (the caller answers `invalid_client` either way). A pair that
/// verified is remembered for `tokens.client_cache_ttl_secs` and then answered
/// without reading the database ([`crate::verified_clients`]); a wrong secret
/// is always checked against the database.
pub async fn authenticate(
    state: &AuthState,
    client_id: &str,
    client_secret: &str,
) -> Result<Option<Arc<VerifiedClient>>, StoreError> {
    if !ids::is_valid(prefix::SERVICE_PRINCIPAL, client_id)
        || !client_secret.starts_with(SECRET_PREFIX)
    {
        return Ok(None);
    }
    let memory = &state.clients;
    let tag = memory
        .is_on()
        .then(|| state.secrets.verified_client_tag(client_id, client_secret));
    if let Some(client) = tag.as_ref().and_then(|tag| memory.recall(tag)) {
        return Ok(Some(client));
    }
    let ticket = memory.ticket();
    let presented = state.secrets.credential_hash(client_secret);
    let id = client_id.to_owned();
    let principal = state
        .db
        .run(move |conn| {
            service_principals::table
                .find(&id)
                .first::<Principal>(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await?;
    let Some(principal) = principal.filter(|p| hashes_match(&p.secret_hash, &presented)) else {
        return Ok(None);
    };
    let client = Arc::new(VerifiedClient {
        // Scopes the deployment stopped granting are not honoured.
        scopes: ScopeSet::parse(&principal.scopes)
            .unwrap_or_default()
            .intersection(&state.scopes.all()),
        id: principal.id,
        workspace_id: principal.workspace_id,
    });
    if let Some(tag) = tag {
        memory.remember(ticket, tag, client.clone());
    }
    Ok(Some(client))
}
