//! Space API keys: `POST|GET /api/v1/spaces/{id}/api-keys`,
//! `DELETE /api/v1/spaces/{id}/api-keys/{key_id}`, and
//! `POST /internal/space-keys/introspect` for the gateway.
//!
//! A key (`sk_…`, ≈190 random bits and a checksum) is shown once; only a keyed
//! hash is stored, and looked up by. Introspections are answered from memory
//! once a key has been read (revocations evict it at once, on the cache bus),
//! and `last_used_at` is written at most once a minute per key.
//!
//! Clients know a key by Tuzzle's integer id (`number`); introspection,
//! revocations and the identities the gateway signs name it by its internal
//! `spk_…` id. A key is of type `space` (its own space) or `account` (every
//! space of the workspace; it may create spaces and mint space keys). Both are
//! minted for a space, and deleted with it.

use crate::access::{self, Caller};
use crate::openapi::{CursorParams, Envelope, ErrorEnvelope, ListEnvelope, NoData};
use crate::schema::space_api_keys;
use crate::spaces::{check_name, find};
use crate::{Backend, Fail, SpacesState, now, page_end, page_start, rfc3339};
use actix_web::web;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use identity::credentials::{display_prefix, is_space_key, new_space_key};
use identity::revocation::{self, Revocation};
use identity::{Identity, PrincipalType, Scope};
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::CursorQuery;
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use store::StoreError;
use utoipa::ToSchema;

/// `last_used_at` is written at most this often per key.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);
/// Keys remembered per replica; beyond it the memory starts afresh.
const CACHE_CAPACITY: usize = 100_000;

service_kit::words! {
    /// What a space API key reaches.
    KeyType {
        /// Its own space.
        Space = "space",
        /// Every space of its workspace; it may create spaces and mint space keys.
        Account = "account",
    }
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = space_api_keys)]
struct StoredKey {
    id: String,
    number: i64,
    kind: String,
    space_id: String,
    workspace_id: String,
    name: String,
    prefix: String,
    created_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    last_used_at: Option<NaiveDateTime>,
}

impl StoredKey {
    fn kind(&self) -> KeyType {
        KeyType::parse(&self.kind).unwrap_or(KeyType::Space)
    }
}

/// A key as minted (`number` is the database's).
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = space_api_keys)]
struct NewKeyRow {
    id: String,
    kind: String,
    space_id: String,
    workspace_id: String,
    name: String,
    key_hash: String,
    prefix: String,
    created_by: String,
    created_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
}

/// What introspection, and a request made with a key, need of it.
#[derive(Debug, Clone)]
struct KnownKey {
    id: String,
    kind: KeyType,
    space_id: String,
    workspace_id: String,
    expires_at: Option<NaiveDateTime>,
}

impl From<StoredKey> for KnownKey {
    fn from(k: StoredKey) -> KnownKey {
        KnownKey {
            kind: k.kind(),
            id: k.id,
            space_id: k.space_id,
            workspace_id: k.workspace_id,
            expires_at: k.expires_at,
        }
    }
}

/// Keys this replica has read, by hash and by id, for a bounded time; and
/// when it last recorded each key's use.
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, (KnownKey, Instant)>>,
    by_id: RwLock<HashMap<String, (KnownKey, Instant)>>,
    used: Mutex<HashMap<String, Instant>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
            by_id: RwLock::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str) -> Option<KnownKey> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, read)| read.elapsed() < self.ttl)
            .map(|(key, _)| key.clone())
    }

    fn put(&self, hash: String, key: KnownKey) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(hash, (key, Instant::now()));
    }

    fn get_by_id(&self, id: &str) -> Option<KnownKey> {
        let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        by_id
            .get(id)
            .filter(|(_, read)| read.elapsed() < self.ttl)
            .map(|(key, _)| key.clone())
    }

    fn put_by_id(&self, key: KnownKey) {
        let mut by_id = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        if by_id.len() >= CACHE_CAPACITY {
            by_id.clear();
        }
        by_id.insert(key.id.clone(), (key, Instant::now()));
    }

    /// Forgets the key with id `id`.
    pub fn evict(&self, id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (key, _)| key.id != id);
        drop(entries);
        let mut by_id = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        by_id.remove(id);
    }

    /// Whether this replica should record a use of key `id` now (at most once
    /// per granularity; the shared cache then decides across replicas).
    fn due_for_use_record(&self, id: &str) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match used.get(id) {
            Some(at) if now.duration_since(*at) < LAST_USED_GRANULARITY => false,
            _ => {
                if used.len() >= CACHE_CAPACITY {
                    used.retain(|_, at| now.duration_since(*at) < LAST_USED_GRANULARITY);
                }
                used.insert(id.to_owned(), now);
                true
            }
        }
    }

    /// Evicts keys as revocations arrive on the cache bus, for as long as the
    /// service runs. Revocations published by other replicas reach this one too.
    pub async fn listen(self: Arc<Self>, cache: &cache::Cache) -> anyhow::Result<()> {
        let mut subscription = cache.subscribe(revocation::CHANNEL).await?;
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                if let Some(Revocation::SpaceKey { id }) = Revocation::from_bytes(&message) {
                    self.evict(&id);
                }
            }
        });
        Ok(())
    }
}

/// A space key as lists show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceKeyView {
    /// The key's id: an integer, as Tuzzle's.
    id: i64,
    name: String,
    #[serde(rename = "type")]
    kind: KeyType,
    /// `spc_…`
    space_id: String,
    /// The key's visible beginning, to recognise it by.
    prefix: String,
    /// Not expired.
    is_active: bool,
    /// Never, when null.
    #[schema(format = DateTime, required = true)]
    expires_at: Option<String>,
    /// To the minute; null until first used.
    #[schema(format = DateTime, required = true)]
    last_used_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new space key, with the key itself: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewSpaceKeyView {
    /// The key's id: an integer, as Tuzzle's.
    id: i64,
    name: String,
    /// `sk_…`: only in this answer; only its hash is kept.
    key: String,
    #[serde(rename = "type")]
    kind: KeyType,
    /// `spc_…`: the space it was minted for (an account key reaches the
    /// workspace's other spaces too).
    space_id: String,
    is_active: bool,
    /// Null: not used yet.
    #[schema(format = DateTime, required = true)]
    last_used_at: Option<String>,
    /// Never, when null.
    #[schema(format = DateTime, required = true)]
    expires_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

fn is_active(expires_at: Option<NaiveDateTime>) -> bool {
    expires_at.is_none_or(|t| t > Utc::now().naive_utc())
}

impl From<StoredKey> for SpaceKeyView {
    fn from(k: StoredKey) -> SpaceKeyView {
        SpaceKeyView {
            is_active: is_active(k.expires_at),
            kind: k.kind(),
            id: k.number,
            name: k.name,
            space_id: k.space_id,
            prefix: k.prefix,
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            created_at: rfc3339(k.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewSpaceKey {
    /// Required: 1 to 100 characters (trimmed).
    #[schema(value_type = String, required = true)]
    name: Option<String>,
    /// `space` (default): this space only. `account`: every space of the
    /// workspace, and it may create spaces and mint space keys; only a
    /// workspace admin (`keys:admin`) may mint one.
    #[serde(rename = "type")]
    kind: Option<KeyType>,
    /// RFC 3339 with an offset, in the future; default: never expires.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<String>,
}

/// Account keys are a workspace admin's to mint and revoke.
fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only a workspace admin (keys:admin) may manage account API keys",
        ))
    }
}

/// Whether `caller` may mint a key of type `kind`: a space key mints none, an
/// account key space keys only, and account keys are a workspace admin's. A
/// key minting keys as broad as itself would outlive its own revocation.
fn may_mint(caller: &Caller, kind: KeyType) -> Result<(), ApiError> {
    match (caller.key, kind) {
        (Some(KeyType::Space), _) => Err(ApiError::forbidden(
            "a space API key cannot create API keys",
        )),
        (_, KeyType::Account) => admin_only(caller),
        (_, KeyType::Space) => Ok(()),
    }
}

/// Whether `caller` may revoke a key of type `kind`: space keys, whoever
/// reaches their space (a space key itself included); account keys, a
/// workspace admin.
fn may_revoke(caller: &Caller, kind: KeyType) -> Result<(), ApiError> {
    match kind {
        KeyType::Account => admin_only(caller),
        KeyType::Space => Ok(()),
    }
}

/// Create a space API key
///
/// The key is shown once, in this answer. A `space` key reads and manages
/// this space only; an `account` key every space of the workspace (minted by a
/// workspace admin only). Needs `spaces:write` and a workspace credential or
/// an account key: a space key cannot mint keys, an account key only space
/// keys.
#[utoipa::path(
    post,
    path = "/api/v1/spaces/{id}/api-keys",
    operation_id = "create_space_api_key",
    tag = "space-api-keys",
    params(("id" = String, Path, description = "The space's id (`spc_…`).")),
    request_body = NewSpaceKey,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 201, description = "The new key, with `key`.", body = Envelope<NewSpaceKeyView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, with a space key, no workspace selected, or an account key asked for without being a workspace admin.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad `name` or `type`, or `expires_at` not an RFC 3339 time in the future.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    path: web::Path<String>,
    body: Json<NewSpaceKey>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<NewSpaceKeyView>, ApiError> {
    let caller = access::caller(&state, &identity, &Scope::SPACES_WRITE).await?;
    let space_id = path.into_inner();
    let NewSpaceKey {
        name,
        kind,
        expires_at,
    } = body.into_inner();
    let kind = kind.unwrap_or(KeyType::Space);
    let mut errors = Vec::new();
    let name = match name {
        Some(name) => check_name(&name, "name", &mut errors),
        None => {
            errors.push(FieldError::new("name", "field is required"));
            String::new()
        }
    };
    let expires_at = match expires_at.map(|raw| DateTime::parse_from_rfc3339(raw.trim())) {
        None => None,
        Some(Ok(t)) if t.with_timezone(&Utc) > Utc::now() => {
            Some(t.with_timezone(&Utc).naive_utc())
        }
        Some(Ok(_)) => {
            errors.push(FieldError::new("expires_at", "must be in the future"));
            None
        }
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "expires_at",
                "must be an RFC 3339 time with an offset",
            ));
            None
        }
    };
    let key = new_space_key();
    let row = NewKeyRow {
        id: ids::new_id(prefix::SPACE_API_KEY),
        kind: kind.as_str().into(),
        space_id: String::new(),
        workspace_id: String::new(),
        name,
        key_hash: state.secrets.credential_hash(&key),
        prefix: display_prefix(&key),
        created_by: identity.principal_id.clone(),
        created_at: now(),
        // Timestamps are kept to the millisecond, like every other one.
        expires_at: expires_at
            .and_then(|t| DateTime::from_timestamp_millis(t.and_utc().timestamp_millis()))
            .map(|t| t.naive_utc()),
    };
    let stored = state
        .db
        .transaction(move |conn| {
            let space = find(conn, &caller.reach, &space_id)?;
            may_mint(&caller, kind)?;
            if !errors.is_empty() {
                return Err(Fail::Api(ApiError::validation(errors)));
            }
            let row = NewKeyRow {
                space_id: space.id,
                workspace_id: space.workspace_id,
                ..row
            };
            diesel::insert_into(space_api_keys::table)
                .values(&row)
                .execute(conn)?;
            let stored: StoredKey = space_api_keys::table
                .find(&row.id)
                .select(StoredKey::as_select())
                .first(conn)?;
            Ok::<_, Fail>(stored)
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::created(NewSpaceKeyView {
        is_active: true,
        kind: stored.kind(),
        id: stored.number,
        name: stored.name,
        key,
        space_id: stored.space_id,
        last_used_at: None,
        expires_at: stored.expires_at.map(rfc3339),
        created_at: rfc3339(stored.created_at),
    }))
}

/// List a space's API keys
///
/// Oldest first, without the keys themselves. Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/spaces/{id}/api-keys",
    operation_id = "list_space_api_keys",
    tag = "space-api-keys",
    params(("id" = String, Path, description = "The space's id (`spc_…`)."), CursorParams),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "A page of keys; `next_cursor` leads to the next one.", body = ListEnvelope<Vec<SpaceKeyView>>),
        (status = 400, description = "A bad `cursor` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    path: web::Path<String>,
    query: Query<CursorQuery>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Vec<SpaceKeyView>>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let space_id = path.into_inner();
    let page = state.cursors.validate(&query)?;
    let after = page_start(&page)?;
    let limit = page.limit;
    let mut rows = state
        .db
        .run(move |conn| {
            let space = find(conn, &reach, &space_id)?;
            let mut query = space_api_keys::table
                .filter(space_api_keys::space_id.eq(space.id))
                .filter(space_api_keys::workspace_id.eq(space.workspace_id))
                .into_boxed::<Backend>();
            if let Some((at, id)) = after {
                query = query.filter(space_api_keys::created_at.ge(at)).filter(
                    space_api_keys::created_at
                        .gt(at)
                        .or(space_api_keys::created_at
                            .eq(at)
                            .and(space_api_keys::id.gt(id))),
                );
            }
            let rows: Vec<StoredKey> = query
                .order((space_api_keys::created_at.asc(), space_api_keys::id.asc()))
                .limit(i64::from(limit) + 1)
                .select(StoredKey::as_select())
                .load(conn)?;
            Ok::<_, Fail>(rows)
        })
        .await
        .map_err(ApiError::from)?;
    let (has_more, last) = page_end(&mut rows, limit, |r| (r.created_at, &r.id));
    Ok(
        ApiResponse::ok(rows.into_iter().map(SpaceKeyView::from).collect()).meta(page.meta(
            &state.cursors,
            has_more,
            last.as_ref(),
        )),
    )
}

/// Revoke a space API key
///
/// It stops working at every gateway within a second. A space key may revoke
/// its space's space keys, itself included; account keys are revoked by
/// whoever may mint them (a workspace admin). Needs `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/spaces/{id}/api-keys/{key_id}",
    operation_id = "delete_space_api_key",
    tag = "space-api-keys",
    params(
        ("id" = String, Path, description = "The space's id (`spc_…`)."),
        ("key_id" = i64, Path, description = "The key's id (an integer)."),
    ),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "Revoked; `data` is null.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, no workspace selected, or an account key without being a workspace admin.", body = ErrorEnvelope),
        (status = 404, description = "No such space within reach, or no such key in it.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<(String, String)>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<()>, ApiError> {
    let caller = access::caller(&state, &identity, &Scope::SPACES_WRITE).await?;
    let (space_id, key_id) = path.into_inner();
    let number = key_id.parse::<i64>().ok().filter(|n| *n > 0);
    let revoked = state
        .db
        .transaction(move |conn| {
            let space = find(conn, &caller.reach, &space_id)?;
            let missing = || Fail::Api(ApiError::not_found("API key"));
            let number = number.ok_or_else(missing)?;
            let target = space_api_keys::table
                .filter(space_api_keys::number.eq(number))
                .filter(space_api_keys::space_id.eq(&space.id))
                .filter(space_api_keys::workspace_id.eq(&space.workspace_id))
                .select(StoredKey::as_select())
                .first(conn)
                .optional()?
                .ok_or_else(missing)?;
            may_revoke(&caller, target.kind())?;
            diesel::delete(space_api_keys::table.find(&target.id)).execute(conn)?;
            Ok::<_, Fail>(target.id)
        })
        .await
        .map_err(ApiError::from)?;
    state.revoke_space_keys(vec![revoked]).await;
    Ok(ApiResponse::ok(()).message("API key revoked"))
}

/// The kind of the `sk_` key a request was made with, checked against what
/// the gateway said of it: 401 when the key is gone (revoked, or deleted with
/// its space) or expired.
pub(crate) async fn kind_of(state: &SpacesState, identity: &Identity) -> Result<KeyType, ApiError> {
    let id = identity.principal_id.clone();
    let known = match state.keys.get_by_id(&id) {
        Some(known) => Some(known),
        None => {
            let found = state
                .db
                .run(move |conn| {
                    space_api_keys::table
                        .find(&id)
                        .select(StoredKey::as_select())
                        .first(conn)
                        .optional()
                        .map_err(StoreError::from)
                })
                .await?
                .map(KnownKey::from);
            if let Some(known) = &found {
                state.keys.put_by_id(known.clone());
            }
            found
        }
    };
    match known {
        Some(key)
            if is_active(key.expires_at)
                && identity.workspace_id.as_deref() == Some(key.workspace_id.as_str())
                && identity.space_id.as_deref() == Some(key.space_id.as_str()) =>
        {
            Ok(key.kind)
        }
        _ => Err(ApiError::unauthorized("the API key is no longer valid")),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Introspect {
    /// A space API key as a client presented it.
    key: String,
}

/// What the gateway learns about a space key. Only `active` when it is not.
#[derive(Debug, Serialize, ToSchema)]
pub struct Introspection {
    /// Known, and not expired.
    active: bool,
    /// `spk_…`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key_id: Option<String>,
    /// `spc_…`: the one space the key reaches.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    space_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    workspace_id: Option<String>,
    /// Present in active answers; null for a key that never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Option<String>>,
}

impl Introspection {
    fn inactive() -> Introspection {
        Introspection {
            active: false,
            key_id: None,
            space_id: None,
            workspace_id: None,
            expires_at: None,
        }
    }
}

/// Introspect a space API key (internal)
///
/// For the gateway only, with its own identity token; to anyone else the
/// route does not exist (404). The gateway never proxies `/internal/*`.
/// Malformed keys (bad shape or checksum) are answered without a look-up.
/// Records the key's use (`last_used_at`, to the minute).
#[utoipa::path(
    post,
    path = "/internal/space-keys/introspect",
    operation_id = "introspect_space_api_key",
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
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Introspection>, ApiError> {
    if identity.principal_type != PrincipalType::Gateway {
        return Err(ApiError::not_found("route"));
    }
    let key = body.into_inner().key;
    if !is_space_key(&key) {
        return Ok(ApiResponse::ok(Introspection::inactive()));
    }
    let hash = state.secrets.credential_hash(&key);
    let known = match state.keys.get(&hash) {
        Some(known) => Some(known),
        None => {
            let lookup = hash.clone();
            let found = state
                .db
                .run(move |conn| {
                    space_api_keys::table
                        .filter(space_api_keys::key_hash.eq(&lookup))
                        .select(StoredKey::as_select())
                        .first(conn)
                        .optional()
                        .map_err(StoreError::from)
                })
                .await?
                .map(KnownKey::from);
            if let Some(known) = &found {
                state.keys.put(hash, known.clone());
            }
            found
        }
    };
    let Some(known) = known.filter(|k| is_active(k.expires_at)) else {
        return Ok(ApiResponse::ok(Introspection::inactive()));
    };
    record_use(&state, &known.id);
    Ok(ApiResponse::ok(Introspection {
        active: true,
        expires_at: Some(known.expires_at.map(rfc3339)),
        key_id: Some(known.id),
        space_id: Some(known.space_id),
        workspace_id: Some(known.workspace_id),
    }))
}

/// Keeps `last_used_at` current to the minute without a write per request:
/// one marker per key and minute in the shared cache picks the one replica
/// that writes, in the background.
fn record_use(state: &web::Data<SpacesState>, id: &str) {
    if !state.keys.due_for_use_record(id) {
        return;
    }
    let state = state.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        let marker = format!("spacekey:used:{id}");
        match state
            .cache
            .set_if_absent(&marker, b"1", Some(LAST_USED_GRANULARITY))
            .await
        {
            Ok(true) => {
                let written = state
                    .db
                    .run(move |conn| {
                        diesel::update(space_api_keys::table.find(&id))
                            .set(space_api_keys::last_used_at.eq(now()))
                            .execute(conn)
                            .map_err(StoreError::from)
                    })
                    .await;
                if let Err(e) = written {
                    tracing::warn!(error = %e, "could not record a space key's use");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not record a space key's use"),
        }
    });
}
