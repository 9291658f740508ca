//! Workspace API keys: `POST|GET /v1/auth/api-key`, `DELETE /v1/auth/api-key/{id}`,
//! and `POST /internal/api-keys/introspect` for the gateway.
//!
//! Any member may create keys, bounded by their own scopes (a key never holds a
//! scope its creator lacks); members see and revoke the keys they created,
//! holders of `keys:admin` every key of the workspace. A key may be bound to one
//! SpaceOS organization (`organization_id`): the gateway and booking-service
//! then let it reach that organization only, so a bound key never mints a key
//! reaching further.

use crate::AuthState;
use crate::lists::{self, Backend, sorted};
use crate::openapi::{
    Envelope, ErrorEnvelope, ListEnvelope, ListParams, NoData, Scopes, ScopesInput,
};
use crate::schema::api_keys;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use identity::credentials::{display_prefix, new_workspace_key, parse_workspace_key};
use identity::revocation::Revocation;
use identity::{Identity, PrincipalType, Scope, ScopeSet};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::ListQuery;
use service_kit::time::rfc3339;
use service_kit::{ApiError, ApiResponse, AppSpec, ErrorCode, FieldError, Json, Query};
use std::time::Duration;
use store::StoreError;
use utoipa::ToSchema;

const MAX_NAME: usize = 100;
/// The name of a key created without one (gospace's `POST /v1/auth/api-key`
/// with no body).
pub const DEFAULT_NAME: &str = "API key";
/// `last_used_at` is written at most this often per key.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);
/// The fields `GET /v1/auth/api-key` sorts by.
pub const SORT_FIELDS: &[&str] = &["created_at", "name"];
/// `org_` and up to this many letters, digits, `_` or `-`.
const MAX_ORGANIZATION_ID: usize = 64;

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
    organization_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// `apk_…`
    id: String,
    name: String,
    /// The key's visible beginning, to recognise it by.
    prefix: String,
    workspace_id: String,
    /// The SpaceOS organization (`org_…`) the key is bound to: it reaches that
    /// organization only. Null for a key of the whole workspace.
    #[schema(required = true)]
    organization_id: Option<String>,
    #[schema(value_type = Scopes)]
    scopes: ScopeSet,
    /// Who created it: a person (`usr_…`), or a key (`apk_…`) or service
    /// principal (`spn_…`) of the workspace.
    created_by: String,
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
            organization_id: k.organization_id,
            scopes: ScopeSet::parse(&k.scopes).unwrap_or_default(),
            created_by: k.created_by,
            created_at: k.created_at.and_utc(),
            expires_at: time(k.expires_at),
            last_used_at: time(k.last_used_at),
            api_key,
        }
    }
}

/// Every field may be left out, and the body too.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// 1 to 100 characters (trimmed); default `API key`.
    #[schema(nullable = false)]
    name: Option<String>,
    /// Only scopes the caller holds; default: all of the caller's.
    #[schema(value_type = Option<ScopesInput>)]
    scopes: Option<ScopeSet>,
    /// RFC 3339 with an offset, in the future; default: never expires.
    #[serde(default, with = "optional_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<DateTime<Utc>>,
    /// Binds the key to one SpaceOS organization of the workspace (`org_…`):
    /// it then reaches that organization only. A key that is itself bound
    /// creates keys bound to the same organization (the default), never others.
    #[schema(nullable = false, pattern = r"^org_[A-Za-z0-9_-]{1,64}$")]
    organization_id: Option<String>,
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

/// A JSON body that may be absent: an empty body (with or without a
/// `Content-Type`) is `None`; anything else is read as [`Json`] reads it.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppSpec>>()
            .map_or(256 * 1024, |spec| spec.json_limit);
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::bad_request(format!("could not read request body: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("request body is larger than {limit} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            if body.is_empty() {
                return Ok(OptionalJson(None));
            }
            let mut replay = Payload::from(body.freeze());
            Json::<T>::from_request(&req, &mut replay)
                .await
                .map(|json| OptionalJson(Some(json.into_inner())))
        })
    }
}

/// The caller's workspace; people, keys and service principals of a workspace
/// may hold keys, space keys (one space only) may not mint workspace keys.
fn key_holder(identity: &Identity) -> Result<String, ApiError> {
    let workspace = identity.require_workspace()?.to_owned();
    if identity.principal_type == PrincipalType::SpaceKey || identity.space_id.is_some() {
        return Err(ApiError::forbidden(
            "a space API key cannot manage workspace API keys",
        ));
    }
    Ok(workspace)
}

/// Whose keys the caller manages: every key of the workspace with
/// `keys:admin`, else the ones they created.
fn managed_by(identity: &Identity) -> Option<String> {
    (!identity.scopes.contains(&Scope::KEYS_ADMIN)).then(|| identity.principal_id.clone())
}

/// The organization a workspace API key calling is bound to, if it is one. A
/// key revoked since the gateway let its request through binds nothing: it is
/// refused.
pub(crate) async fn caller_binding(
    state: &AuthState,
    identity: &Identity,
) -> Result<Option<String>, ApiError> {
    if identity.principal_type != PrincipalType::ApiKey {
        return Ok(None);
    }
    let id = identity.principal_id.clone();
    let found = state
        .db
        .run(move |conn| {
            api_keys::table
                .find(&id)
                .select(api_keys::organization_id)
                .first::<Option<String>>(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await?;
    found.ok_or_else(|| ApiError::unauthorized("the API key has been revoked"))
}

fn valid_organization_id(id: &str) -> bool {
    id.strip_prefix("org_").is_some_and(|rest| {
        (1..=MAX_ORGANIZATION_ID).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// Create a workspace API key
///
/// The key is shown once, in this answer. Any member of the workspace may
/// create keys, holding at most the creator's own scopes; the body may be left
/// out (a key named `API key` with all of them).
#[utoipa::path(
    post,
    path = "/v1/auth/api-key",
    operation_id = "create_api_key",
    tag = "api-keys",
    request_body(content = Option<NewKey>, description = "Optional: an empty body (with or without `Content-Type: application/json`) takes every default."),
    security(("bearer_token" = []), ("api_key" = []), ("org_api_key" = [])),
    responses(
        (status = 201, description = "The new key, with `api_key`.", body = Envelope<KeyView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "No workspace selected, a space API key, or a key bound to an organization asking for another organization or none.", body = ErrorEnvelope),
        (status = 422, description = "A bad `name` or `organization_id`, no scopes, scopes the caller lacks or the deployment does not grant, or `expires_at` not in the future.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: OptionalJson<NewKey>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<KeyView>, ApiError> {
    let workspace_id = key_holder(&identity)?;
    let NewKey {
        name,
        scopes,
        expires_at,
        organization_id,
    } = body.0.unwrap_or_default();
    let name = name.map_or_else(|| DEFAULT_NAME.to_owned(), |n| n.trim().to_owned());
    // By default a key may do what its creator may; never more.
    let scopes = scopes.unwrap_or_else(|| state.scopes.all().intersection(&identity.scopes));
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
        errors.push(FieldError::new(
            "scopes",
            format!(
                "may only include scopes you hold (not {})",
                scopes.difference(&identity.scopes)
            ),
        ));
    }
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if organization_id
        .as_deref()
        .is_some_and(|id| !valid_organization_id(id))
    {
        errors.push(FieldError::new(
            "organization_id",
            "must be an organization id (org_…)",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    // A bound key reaches one organization: what it creates reaches no further.
    let organization_id = match (caller_binding(&state, &identity).await?, organization_id) {
        (None, requested) => requested,
        (Some(bound), None) => Some(bound),
        (Some(bound), Some(requested)) if bound == requested => Some(bound),
        (Some(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "a key bound to an organization creates keys for that organization only",
            ));
        }
    };
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
        organization_id,
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

/// List API keys
///
/// Without the keys themselves. With `keys:admin`, every key of the workspace;
/// without, the keys the caller created.
#[utoipa::path(
    get,
    path = "/v1/auth/api-key",
    operation_id = "list_api_keys",
    tag = "api-keys",
    params(ListParams),
    security(("bearer_token" = []), ("api_key" = []), ("org_api_key" = [])),
    responses(
        (status = 200, description = "A page of keys.", body = ListEnvelope<Vec<KeyView>>),
        (status = 400, description = "A bad `page_size`, `page`, `cursor` or `sort`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "No workspace selected, or a space API key.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<ListQuery>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<Vec<KeyView>>, ApiError> {
    let workspace_id = key_holder(&identity)?;
    let request = query.validate(SORT_FIELDS)?;
    let creator = managed_by(&identity);
    let (limit, offset) = lists::bounds(&request);
    let (rows, total) = state
        .db
        .run(move |conn| {
            let visible = || {
                let mut q = api_keys::table
                    .filter(api_keys::workspace_id.eq(workspace_id.clone()))
                    .into_boxed::<Backend>();
                if let Some(creator) = &creator {
                    q = q.filter(api_keys::created_by.eq(creator.clone()));
                }
                q
            };
            let total: i64 = visible().count().get_result(conn)?;
            let rows = sorted!(visible(), request.sort, api_keys::id, {
                "created_at" => api_keys::created_at,
                "name" => api_keys::name,
            })
            .limit(limit)
            .offset(offset)
            .load::<StoredKey>(conn)?;
            Ok::<_, StoreError>((rows, total))
        })
        .await?;
    let views = rows.into_iter().map(|k| KeyView::of(k, None)).collect();
    Ok(ApiResponse::ok(views).window(request.window(total.unsigned_abs())))
}

/// Revoke an API key
///
/// It stops working at every gateway within a second. With `keys:admin`, any
/// key of the workspace; without, a key the caller created.
#[utoipa::path(
    delete,
    path = "/v1/auth/api-key/{id}",
    operation_id = "delete_api_key",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id (`apk_…`).")),
    security(("bearer_token" = []), ("api_key" = []), ("org_api_key" = [])),
    responses(
        (status = 200, description = "Revoked (message `API key revoked`).", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "No workspace selected, or a space API key.", body = ErrorEnvelope),
        (status = 404, description = "No such key in this workspace, or (without `keys:admin`) not one the caller created.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<AuthState>,
) -> Result<ApiResponse<()>, ApiError> {
    let workspace_id = key_holder(&identity)?;
    let creator = managed_by(&identity);
    let id = path.into_inner();
    if !ids::is_valid(prefix::WORKSPACE_API_KEY, &id) {
        return Err(ApiError::not_found("API key"));
    }
    let target = id.clone();
    let deleted = state
        .db
        .run(move |conn| {
            let mut doomed = api_keys::table
                .filter(api_keys::id.eq(target))
                .filter(api_keys::workspace_id.eq(workspace_id))
                .into_boxed::<Backend>();
            if let Some(creator) = creator {
                doomed = doomed.filter(api_keys::created_by.eq(creator));
            }
            let found = doomed
                .select(api_keys::id)
                .first::<String>(conn)
                .optional()?;
            match found {
                Some(id) => diesel::delete(api_keys::table.find(id))
                    .execute(conn)
                    .map_err(StoreError::from),
                None => Ok(0),
            }
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
    /// The SpaceOS organization (`org_…`) the key is bound to; absent for a
    /// key of the whole workspace. The gateway lets a bound key reach that
    /// organization only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    organization_id: Option<String>,
}

impl Introspection {
    fn inactive() -> Introspection {
        Introspection {
            active: false,
            key_id: None,
            workspace_id: None,
            scopes: None,
            expires_at: None,
            organization_id: None,
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
        // Scopes the deployment stopped granting (an extra scope taken out of
        // the configuration) are not honoured.
        scopes: Some(
            ScopeSet::parse(&stored.scopes)
                .unwrap_or_default()
                .intersection(&state.scopes.all()),
        ),
        expires_at: time(stored.expires_at),
        organization_id: stored.organization_id,
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
