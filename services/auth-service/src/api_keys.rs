//! Workspace API keys: `POST|GET /v1/auth/api-key`, `DELETE /v1/auth/api-key/{id}`,
//! and `POST /internal/api-keys/introspect` for the gateway.

use crate::AuthState;
use crate::openapi::{
    Envelope, ErrorEnvelope, ListEnvelope, NoData, PageParams, Scopes, ScopesInput,
};
use crate::schema::api_keys;
use actix_web::web;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::credentials::{display_prefix, new_workspace_key, parse_workspace_key};
use identity::revocation::Revocation;
use identity::{Identity, PrincipalType, Scope, ScopeSet};
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::OffsetQuery;
use service_kit::time::rfc3339;
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use std::time::Duration;
use store::StoreError;
use utoipa::ToSchema;

const MAX_NAME: usize = 100;
/// `last_used_at` is written at most this often per key.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

#[derive(Queryable, Insertable, Debug, Clone)]
#[diesel(table_name = api_keys)]
struct StoredKey {
    id: String,
    workspace_id: String,
    name: String,
    key_hash: String,
    prefix: String,
    scopes: String,
    created_by: String,
    created_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    last_used_at: Option<NaiveDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// `apk_…`
    id: String,
    name: String,
    /// The key's visible beginning, to recognise it by.
    prefix: String,
    workspace_id: String,
    #[schema(value_type = Scopes)]
    scopes: ScopeSet,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// Never, when null.
    #[schema(format = DateTime, required = true)]
    expires_at: Option<String>,
    /// To the minute; null until first used.
    #[schema(format = DateTime, required = true)]
    last_used_at: Option<String>,
    /// The key itself, `key_<shard>.<LOC>.<WORKSPACE>.<secret>`: only in the
    /// answer that created it. Only its hash is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    api_key: Option<String>,
}

fn time(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(|t| service_kit::time::format_rfc3339(t.and_utc()))
}

impl KeyView {
    fn of(k: StoredKey, api_key: Option<String>) -> KeyView {
        KeyView {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            workspace_id: k.workspace_id,
            scopes: ScopeSet::parse(&k.scopes).unwrap_or_default(),
            created_at: k.created_at.and_utc(),
            expires_at: time(k.expires_at),
            last_used_at: time(k.last_used_at),
            api_key,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// 1 to 100 characters (trimmed).
    name: String,
    /// Only scopes the caller holds; default: all of the caller's.
    #[schema(value_type = Option<ScopesInput>)]
    scopes: Option<ScopeSet>,
    /// RFC 3339 with an offset, in the future; default: never expires.
    #[serde(default, with = "optional_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<DateTime<Utc>>,
}

mod optional_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|raw| {
                DateTime::parse_from_rfc3339(&raw)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        serde::de::Error::custom("must be an RFC 3339 time with an offset")
                    })
            })
            .transpose()
    }
}

fn keys_admin(identity: &Identity) -> Result<String, ApiError> {
    identity.require_scope(&Scope::KEYS_ADMIN)?;
    Ok(identity.require_workspace()?.to_owned())
}

/// Create a workspace API key
///
/// The key is shown once, in this answer. Needs `keys:admin`.
#[utoipa::path(
    post,
    path = "/v1/auth/api-key",
    operation_id = "create_api_key",
    tag = "api-keys",
    request_body = NewKey,
    security(("bearer_token" = ["keys:admin"]), ("api_key" = ["keys:admin"]), ("org_api_key" = ["keys:admin"])),
    responses(
        (status = 201, description = "The new key, with `api_key`.", body = Envelope<KeyView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `keys:admin`, or no workspace selected.", body = ErrorEnvelope),
        (status = 422, description = "A bad `name`, no scopes, unknown scopes or scopes the caller lacks, or `expires_at` not in the future.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: Json<NewKey>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<KeyView>, ApiError> {
    let workspace_id = keys_admin(&identity)?;
    let NewKey {
        name,
        scopes,
        expires_at,
    } = body.into_inner();
    let name = name.trim().to_owned();
    // By default a key may do what its creator may; never more.
    let scopes = scopes.unwrap_or_else(|| identity.scopes.clone());
    let mut errors = Vec::new();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        errors.push(FieldError::new(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if scopes.is_empty() {
        errors.push(FieldError::new("scopes", "at least one scope is needed"));
    } else if !scopes.is_subset(&identity.scopes) {
        errors.push(FieldError::new(
            "scopes",
            "may only include scopes you hold",
        ));
    }
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let key = new_workspace_key(
        &state.api_keys.shard,
        &state.api_keys.location,
        &workspace_id,
    );
    let stored = StoredKey {
        id: ids::new_id(prefix::WORKSPACE_API_KEY),
        workspace_id,
        name,
        key_hash: state.secrets.credential_hash(&key),
        prefix: display_prefix(&key),
        scopes: scopes.to_string(),
        created_by: identity.principal_id.clone(),
        created_at: Utc::now().naive_utc(),
        expires_at: expires_at.map(|t| t.naive_utc()),
        last_used_at: None,
    };
    let row = stored.clone();
    state
        .db
        .run(move |conn| {
            diesel::insert_into(api_keys::table)
                .values(&row)
                .execute(conn)
                .map_err(StoreError::from)
        })
        .await?;
    Ok(ApiResponse::created(KeyView::of(stored, Some(key))))
}

/// List the workspace's API keys
///
/// Oldest first, without the keys themselves. Needs `keys:admin`.
#[utoipa::path(
    get,
    path = "/v1/auth/api-key",
    operation_id = "list_api_keys",
    tag = "api-keys",
    params(PageParams),
    security(("bearer_token" = ["keys:admin"]), ("api_key" = ["keys:admin"]), ("org_api_key" = ["keys:admin"])),
    responses(
        (status = 200, description = "A page of keys; `meta` is `{page, limit, total}`.", body = ListEnvelope<Vec<KeyView>>),
        (status = 400, description = "A bad `page` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `keys:admin`, or no workspace selected.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<OffsetQuery>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Vec<KeyView>>, ApiError> {
    let workspace_id = keys_admin(&identity)?;
    let page = query.validate()?;
    let (rows, total) = state
        .db
        .run(move |conn| {
            let in_workspace = api_keys::table.filter(api_keys::workspace_id.eq(&workspace_id));
            let total: i64 = in_workspace.count().get_result(conn)?;
            let rows = in_workspace
                .order((api_keys::created_at.asc(), api_keys::id.asc()))
                .limit(i64::from(page.limit))
                .offset(page.offset())
                .load::<StoredKey>(conn)?;
            Ok::<_, StoreError>((rows, total))
        })
        .await?;
    Ok(
        ApiResponse::ok(rows.into_iter().map(|k| KeyView::of(k, None)).collect())
            .meta(page.meta(total as u64)),
    )
}

/// Revoke a workspace API key
///
/// It stops working at every gateway within a second. Needs `keys:admin`.
#[utoipa::path(
    delete,
    path = "/v1/auth/api-key/{id}",
    operation_id = "delete_api_key",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id (`apk_…`).")),
    security(("bearer_token" = ["keys:admin"]), ("api_key" = ["keys:admin"]), ("org_api_key" = ["keys:admin"])),
    responses(
        (status = 200, description = "Revoked (message `API key revoked`).", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `keys:admin`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such key in this workspace.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace_id = keys_admin(&identity)?;
    let id = path.into_inner();
    if !ids::is_valid(prefix::WORKSPACE_API_KEY, &id) {
        return Err(ApiError::not_found("API key"));
    }
    let target = id.clone();
    let deleted = state
        .db
        .run(move |conn| {
            diesel::delete(
                api_keys::table
                    .filter(api_keys::id.eq(&target))
                    .filter(api_keys::workspace_id.eq(&workspace_id)),
            )
            .execute(conn)
            .map_err(StoreError::from)
        })
        .await?;
    if deleted == 0 {
        return Err(ApiError::not_found("API key"));
    }
    state.publish_revocation(Revocation::ApiKey { id }).await;
    Ok(ApiResponse::ok(()).message("API key revoked"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Introspect {
    /// A workspace API key as a client presented it.
    key: String,
}

/// What the gateway learns about a key. Only `active` when it is not.
#[derive(Debug, Serialize, ToSchema)]
pub struct Introspection {
    /// Known, and not expired.
    active: bool,
    /// `apk_…`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    workspace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Scopes>, nullable = false)]
    scopes: Option<ScopeSet>,
    /// Absent for a key that never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    expires_at: Option<String>,
}

impl Introspection {
    fn inactive() -> Introspection {
        Introspection {
            active: false,
            key_id: None,
            workspace_id: None,
            scopes: None,
            expires_at: None,
        }
    }
}

/// Only the gateway may ask; to anyone else the route does not exist.
pub fn require_gateway(identity: &Identity) -> Result<(), ApiError> {
    if identity.principal_type == PrincipalType::Gateway {
        Ok(())
    } else {
        Err(ApiError::not_found("route"))
    }
}

/// Introspect a workspace API key (internal)
///
/// For the gateway only, with its own identity token; to anyone else the
/// route does not exist (404). The gateway never proxies `/internal/*`.
/// Records the key's use (`last_used_at`, to the minute).
#[utoipa::path(
    post,
    path = "/internal/api-keys/introspect",
    operation_id = "introspect_api_key",
    tag = "internal",
    request_body = Introspect,
    security(("gateway_identity" = [])),
    extensions(("x-internal" = json!(true))),
    responses(
        (status = 200, description = "The key's state; `{active: false}` for a malformed, unknown or expired key.", body = Envelope<Introspection>),
        (status = 401, description = "No valid identity token: the request did not come from the gateway.", body = ErrorEnvelope),
        (status = 404, description = "The caller is not the gateway.", body = ErrorEnvelope),
        (status = 503, description = "The database is unreachable.", body = ErrorEnvelope),
    )
)]
pub async fn introspect(
    identity: Identity,
    body: Json<Introspect>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Introspection>, ApiError> {
    require_gateway(&identity)?;
    let key = body.into_inner().key;
    if parse_workspace_key(&key).is_none() {
        return Ok(ApiResponse::ok(Introspection::inactive()));
    }
    let key_hash = state.secrets.credential_hash(&key);
    let found = state
        .db
        .run(move |conn| {
            api_keys::table
                .filter(api_keys::key_hash.eq(&key_hash))
                .first::<StoredKey>(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await?;
    let now = Utc::now().naive_utc();
    let Some(stored) = found.filter(|k| k.expires_at.is_none_or(|t| t > now)) else {
        return Ok(ApiResponse::ok(Introspection::inactive()));
    };
    touch(&state, &stored.id).await;
    Ok(ApiResponse::ok(Introspection {
        active: true,
        key_id: Some(stored.id),
        workspace_id: Some(stored.workspace_id),
        scopes: Some(ScopeSet::parse(&stored.scopes).unwrap_or_default()),
        expires_at: time(stored.expires_at),
    }))
}

/// Keeps `last_used_at` current to the minute without a write per request.
async fn touch(state: &AuthState, id: &str) {
    let marker = format!("apikey:used:{id}");
    match state
        .cache
        .set_if_absent(&marker, b"1", Some(LAST_USED_GRANULARITY))
        .await
    {
        Ok(true) => {
            let id = id.to_owned();
            let written = state
                .db
                .run(move |conn| {
                    diesel::update(api_keys::table.find(&id))
                        .set(api_keys::last_used_at.eq(Utc::now().naive_utc()))
                        .execute(conn)
                        .map_err(StoreError::from)
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record API key use");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not record API key use"),
    }
}
