//! Upload configs: what a space accepts for upload, in Tuzzle's shape.
//! `GET|POST /api/v1/upload-configs`, `GET /api/v1/upload-configs/all`,
//! `GET|PUT|DELETE /api/v1/upload-configs/{id}`. Every space has one active
//! config (`active_upload_config_id`), which cannot be deleted while active.
//!
//! A config is `{name, description, space_id, is_signed, allow_unsigned,
//! delivery_type, config: {storage, validation, transformations, metadata,
//! notifications}, unsigned_restrictions}`. The top-level fields have columns;
//! `config` and `unsigned_restrictions` are stored as JSON, and what a stored
//! document leaves out reads as its default.

mod document;

pub(crate) use document::{
    DeliveryType, Fields, Quality, UnsignedRestrictions, UploadFormat, UploadSettings,
};

use crate::access::{self, Reach};
use crate::openapi::{CursorParams, Envelope, ErrorEnvelope, ListEnvelope, NoData};
use crate::schema::{spaces, upload_configs};
use crate::spaces::{SpaceListQuery, check_name, name_key, name_taken_error, nullable};
use crate::{Backend, Fail, SpacesState, now, page_end, page_start, rfc3339};
use actix_web::web;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use document::{Patch, Rules, UnsignedRestrictionsInput, UploadSettingsPatch};
use identity::Identity;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::{CursorPage, CursorQuery};
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::{DbConnection, StoreError};
use utoipa::ToSchema;

/// The config every new space starts with, active.
pub const STARTER: &str = "starter";
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = upload_configs)]
pub(crate) struct ConfigRow {
    id: String,
    space_id: String,
    workspace_id: String,
    name: String,
    name_key: String,
    description: Option<String>,
    is_signed: bool,
    allow_unsigned: bool,
    delivery_type: String,
    config: String,
    unsigned_restrictions: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl ConfigRow {
    fn new(space_id: String, workspace_id: String, name: String, fields: &Fields) -> ConfigRow {
        let at = now();
        let mut row = ConfigRow {
            id: ids::new_id(prefix::UPLOAD_CONFIG),
            space_id,
            workspace_id,
            name_key: name_key(&name),
            name,
            description: None,
            is_signed: false,
            allow_unsigned: false,
            delivery_type: String::new(),
            config: String::new(),
            unsigned_restrictions: None,
            created_at: at,
            updated_at: at,
        };
        row.set(fields);
        row
    }

    /// The `starter` config of a new space.
    pub(crate) fn starter(space_id: String, workspace_id: String) -> ConfigRow {
        ConfigRow::new(space_id, workspace_id, STARTER.into(), &Fields::starter())
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn space_id(&self) -> &str {
        &self.space_id
    }

    /// What the service wrote always reads back; a document it did not write
    /// reads as the defaults of what it leaves out.
    pub(crate) fn fields(&self) -> Fields {
        Fields {
            description: self.description.clone(),
            is_signed: self.is_signed,
            allow_unsigned: self.allow_unsigned,
            delivery_type: DeliveryType::parse(&self.delivery_type).unwrap_or(DeliveryType::Upload),
            config: serde_json::from_str(&self.config).unwrap_or_default(),
            unsigned_restrictions: self
                .unsigned_restrictions
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
        }
    }

    fn set(&mut self, fields: &Fields) {
        self.description = fields.description.clone();
        self.is_signed = fields.is_signed;
        self.allow_unsigned = fields.allow_unsigned;
        self.delivery_type = fields.delivery_type.as_str().into();
        self.config = serde_json::to_string(&fields.config).expect("settings serialize");
        self.unsigned_restrictions = fields
            .unsigned_restrictions
            .as_ref()
            .map(|r| serde_json::to_string(r).expect("restrictions serialize"));
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadConfigView {
    /// `upc_…`
    id: String,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    /// `spc_…`
    space_id: String,
    /// Uploads are signed: made with a credential or a signed URL.
    is_signed: bool,
    /// Unsigned uploads (no credential) are accepted, within
    /// `unsigned_restrictions`.
    allow_unsigned: bool,
    delivery_type: DeliveryType,
    /// Present whenever `allow_unsigned` is.
    #[schema(required = true)]
    unsigned_restrictions: Option<UnsignedRestrictions>,
    /// Only in answers about one config: lists leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    config: Option<UploadSettings>,
    /// The space's active config.
    is_active: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// How much of a config an answer shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// One config: with `config`.
    Full,
    /// A list: without.
    Summary,
}

fn view(row: ConfigRow, active: bool, detail: Detail) -> UploadConfigView {
    let fields = row.fields();
    UploadConfigView {
        id: row.id,
        name: row.name,
        description: fields.description,
        space_id: row.space_id,
        is_signed: fields.is_signed,
        allow_unsigned: fields.allow_unsigned,
        delivery_type: fields.delivery_type,
        unsigned_restrictions: fields.unsigned_restrictions,
        config: (detail == Detail::Full).then_some(fields.config),
        is_active: active,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

/// The config of the space `space_id` named by `id_or_name` (its id, or its
/// name regardless of case).
pub(crate) fn of_space(
    conn: &mut DbConnection,
    space_id: &str,
    id_or_name: &str,
) -> Result<Option<ConfigRow>, StoreError> {
    let query = upload_configs::table
        .filter(upload_configs::space_id.eq(space_id.to_owned()))
        .into_boxed::<Backend>();
    let query = if ids::is_valid(prefix::UPLOAD_CONFIG, id_or_name) {
        query.filter(upload_configs::id.eq(id_or_name.to_owned()))
    } else {
        query.filter(upload_configs::name_key.eq(name_key(id_or_name.trim())))
    };
    Ok(query
        .select(ConfigRow::as_select())
        .first(conn)
        .optional()?)
}

/// The config `id`, whatever reaches it (for uploads authorised by a
/// signed URL).
pub(crate) fn by_id(conn: &mut DbConnection, id: &str) -> Result<Option<ConfigRow>, StoreError> {
    if !ids::is_valid(prefix::UPLOAD_CONFIG, id) {
        return Ok(None);
    }
    Ok(upload_configs::table
        .find(id)
        .select(ConfigRow::as_select())
        .first(conn)
        .optional()?)
}

/// The config `id` within `reach`; 404 otherwise.
pub(crate) fn find_within(
    conn: &mut DbConnection,
    reach: &Reach,
    id: &str,
) -> Result<ConfigRow, Fail> {
    find(conn, reach, id)
}

/// The active config of the space `space_id`.
fn active_of(conn: &mut DbConnection, space_id: &str) -> Result<Option<String>, StoreError> {
    Ok(spaces::table
        .find(space_id)
        .select(spaces::active_upload_config_id)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// The config `id` if its space is within `reach`; 404 otherwise.
fn find(conn: &mut DbConnection, reach: &Reach, id: &str) -> Result<ConfigRow, Fail> {
    let missing = || Fail::Api(ApiError::not_found("upload config"));
    if !ids::is_valid(prefix::UPLOAD_CONFIG, id) {
        return Err(missing());
    }
    let mut query = upload_configs::table
        .filter(upload_configs::id.eq(id.to_owned()))
        .into_boxed::<Backend>();
    if let Some(workspace) = reach.workspace() {
        query = query.filter(upload_configs::workspace_id.eq(workspace.to_owned()));
    }
    if let Some(space) = reach.space() {
        query = query.filter(upload_configs::space_id.eq(space.to_owned()));
    }
    query
        .select(ConfigRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(missing)
}

fn name_taken(
    conn: &mut DbConnection,
    space_id: &str,
    key: &str,
    except: Option<&str>,
) -> Result<bool, StoreError> {
    let mut query = upload_configs::table
        .filter(upload_configs::space_id.eq(space_id.to_owned()))
        .filter(upload_configs::name_key.eq(key.to_owned()))
        .into_boxed::<Backend>();
    if let Some(id) = except {
        query = query.filter(upload_configs::id.ne(id.to_owned()));
    }
    Ok(query.count().get_result::<i64>(conn)? > 0)
}

/// `?space_id=` of the config list, beside the paging parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `SpaceListQuery` reads it
pub(crate) struct SpaceFilter {
    /// Only this space's configs (`spc_…`); default: every space within reach.
    space_id: Option<String>,
}

/// A page of the configs within `reach` (of `space_id` only, if named),
/// oldest first, without their `config`.
async fn list_page(
    state: &SpacesState,
    reach: Reach,
    space_id: Option<String>,
    page: CursorPage,
) -> Result<ApiResponse<Vec<UploadConfigView>>, ApiError> {
    let after = page_start(&page)?;
    let limit = page.limit;
    let (mut rows, actives) = state
        .db
        .run(move |conn| {
            let space = match space_id.filter(|s| !s.is_empty()) {
                Some(id) => Some(crate::spaces::find(conn, &reach, &id)?.id),
                None => None,
            };
            let mut query = upload_configs::table.into_boxed::<Backend>();
            if let Some(workspace) = reach.workspace() {
                query = query.filter(upload_configs::workspace_id.eq(workspace.to_owned()));
            }
            if let Some(space) = reach.space().map(str::to_owned).or(space) {
                query = query.filter(upload_configs::space_id.eq(space));
            }
            if let Some((at, id)) = after {
                query = query.filter(upload_configs::created_at.ge(at)).filter(
                    upload_configs::created_at
                        .gt(at)
                        .or(upload_configs::created_at
                            .eq(at)
                            .and(upload_configs::id.gt(id))),
                );
            }
            let rows: Vec<ConfigRow> = query
                .order((upload_configs::created_at.asc(), upload_configs::id.asc()))
                .limit(i64::from(limit) + 1)
                .select(ConfigRow::as_select())
                .load(conn)?;
            let mut space_ids: Vec<&str> = rows.iter().map(|r| r.space_id.as_str()).collect();
            space_ids.sort_unstable();
            space_ids.dedup();
            let actives: Vec<Option<String>> = spaces::table
                .filter(spaces::id.eq_any(space_ids))
                .select(spaces::active_upload_config_id)
                .load(conn)?;
            Ok::<_, Fail>((rows, actives))
        })
        .await
        .map_err(ApiError::from)?;
    let (has_more, last) = page_end(&mut rows, limit, |r| (r.created_at, &r.id));
    let views = rows
        .into_iter()
        .map(|row| {
            let active = actives.iter().flatten().any(|a| *a == row.id);
            view(row, active, Detail::Summary)
        })
        .collect();
    Ok(ApiResponse::ok(views).meta(page.meta(&state.cursors, has_more, last.as_ref())))
}

/// List upload configs
///
/// Oldest first, of one space or of every space within reach; without their
/// `config` (read one config for it). Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/upload-configs",
    operation_id = "list_upload_configs",
    tag = "upload-configs",
    params(SpaceFilter, CursorParams),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "A page of configs, without `config`.", body = ListEnvelope<Vec<UploadConfigView>>),
        (status = 400, description = "A bad `cursor` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "`space_id` names no space within reach.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<SpaceListQuery>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Vec<UploadConfigView>>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let (space_id, page) = query.into_inner().page(&state.cursors)?;
    list_page(&state, reach, space_id, page).await
}

/// List every upload config
///
/// Of every space the credential reaches, oldest first, without their
/// `config`. Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/upload-configs/all",
    operation_id = "list_all_upload_configs",
    tag = "upload-configs",
    params(CursorParams),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "A page of configs, without `config`.", body = ListEnvelope<Vec<UploadConfigView>>),
        (status = 400, description = "A bad `cursor` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
    )
)]
pub async fn list_all(
    identity: Identity,
    query: Query<CursorQuery>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Vec<UploadConfigView>>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let page = state.cursors.validate(&query)?;
    list_page(&state, reach, None, page).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUploadConfig {
    /// Required: the space (`spc_…`).
    #[schema(value_type = String, required = true)]
    space_id: Option<String>,
    /// Required: 1 to 100 characters (trimmed), unique within the space
    /// regardless of case.
    #[schema(value_type = String, required = true)]
    name: Option<String>,
    /// At most 1000 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    description: Option<Option<String>>,
    /// Default `false`.
    is_signed: Option<bool>,
    /// Default `false`; `true` needs `unsigned_restrictions`.
    allow_unsigned: Option<bool>,
    /// Default `upload`.
    delivery_type: Option<DeliveryType>,
    /// Sections and fields left out take their defaults.
    config: Option<UploadSettingsPatch>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<UnsignedRestrictionsInput>, nullable)]
    unsigned_restrictions: Option<Option<UnsignedRestrictionsInput>>,
}

/// Create an upload config
///
/// For a space within reach; it is not active until the space names it in
/// `active_upload_config_id`. Fields left out take Tuzzle's defaults (any safe
/// format up to 50 MB, delivered publicly). Needs `spaces:write`.
#[utoipa::path(
    post,
    path = "/api/v1/upload-configs",
    operation_id = "create_upload_config",
    tag = "upload-configs",
    request_body = NewUploadConfig,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 201, description = "The new config.", body = Envelope<UploadConfigView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "`space_id` names no space within reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, or a name the space's configs have already taken; `errors` names each.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: Json<NewUploadConfig>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<UploadConfigView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let body = body.into_inner();
    let mut errors = Vec::new();
    let space_id = body.space_id.filter(|s| !s.trim().is_empty());
    if space_id.is_none() {
        errors.push(FieldError::new("space_id", "field is required"));
    }
    let name = match body.name {
        Some(name) => check_name(&name, "name", &mut errors),
        None => {
            errors.push(FieldError::new("name", "field is required"));
            String::new()
        }
    };
    let patch = Patch {
        description: body.description,
        is_signed: body.is_signed,
        allow_unsigned: body.allow_unsigned,
        delivery_type: body.delivery_type,
        config: body.config,
        unsigned_restrictions: body.unsigned_restrictions,
    };
    let rules = Rules {
        allow_private_webhooks: state.allow_private_webhooks,
    };
    let fields = Fields::default().patched(patch, rules, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let space_id = space_id.unwrap_or_default();
    let row = state
        .db
        .transaction(move |conn| {
            let space = crate::spaces::find(conn, &reach, space_id.trim())?;
            if name_taken(conn, &space.id, &name_key(&name), None)? {
                return Err(Fail::Api(name_taken_error()));
            }
            let row = ConfigRow::new(space.id, space.workspace_id, name, &fields);
            diesel::insert_into(upload_configs::table)
                .values(&row)
                .execute(conn)?;
            Ok::<_, Fail>(row)
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::created(view(row, false, Detail::Full)))
}

/// Get an upload config
///
/// With its `config`. Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/upload-configs/{id}",
    operation_id = "get_upload_config",
    tag = "upload-configs",
    params(("id" = String, Path, description = "The config's id (`upc_…`).")),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The config.", body = Envelope<UploadConfigView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such config within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<UploadConfigView>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let id = path.into_inner();
    let (row, active) = state
        .db
        .run(move |conn| {
            let row = find(conn, &reach, &id)?;
            let active = active_of(conn, &row.space_id)?;
            Ok::<_, Fail>((row, active))
        })
        .await
        .map_err(ApiError::from)?;
    let active = active.as_deref() == Some(row.id.as_str());
    Ok(ApiResponse::ok(view(row, active, Detail::Full)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UploadConfigUpdate {
    /// 1 to 100 characters (trimmed), unique within the space regardless of case.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false)]
    name: Option<Option<String>>,
    /// At most 1000 characters; null clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    description: Option<Option<String>>,
    is_signed: Option<bool>,
    /// `true` needs `unsigned_restrictions`.
    allow_unsigned: Option<bool>,
    delivery_type: Option<DeliveryType>,
    /// The sections and fields to change; the others keep their value.
    config: Option<UploadSettingsPatch>,
    /// Replaces the restrictions; null clears them (while `allow_unsigned`
    /// is false).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<UnsignedRestrictionsInput>, nullable)]
    unsigned_restrictions: Option<Option<UnsignedRestrictionsInput>>,
}

/// Update an upload config
///
/// Changes the fields named; the others keep their value. Needs `spaces:write`.
#[utoipa::path(
    put,
    path = "/api/v1/upload-configs/{id}",
    operation_id = "update_upload_config",
    tag = "upload-configs",
    params(("id" = String, Path, description = "The config's id (`upc_…`).")),
    request_body = UploadConfigUpdate,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The config as updated.", body = Envelope<UploadConfigView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such config within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, or a name another of the space's configs has taken; `errors` names each.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Identity,
    path: web::Path<String>,
    body: Json<UploadConfigUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<UploadConfigView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let id = path.into_inner();
    let body = body.into_inner();
    let mut errors = Vec::new();
    let name = match body.name {
        None => None,
        Some(None) => {
            errors.push(FieldError::new("name", "field is required"));
            None
        }
        Some(Some(name)) => Some(check_name(&name, "name", &mut errors)),
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let patch = Patch {
        description: body.description,
        is_signed: body.is_signed,
        allow_unsigned: body.allow_unsigned,
        delivery_type: body.delivery_type,
        config: body.config,
        unsigned_restrictions: body.unsigned_restrictions,
    };
    let rules = Rules {
        allow_private_webhooks: state.allow_private_webhooks,
    };
    let (row, active) = state
        .db
        .transaction(move |conn| {
            let mut row = find(conn, &reach, &id)?;
            let mut errors = Vec::new();
            let fields = row.fields().patched(patch, rules, &mut errors);
            if !errors.is_empty() {
                return Err(Fail::Api(ApiError::validation(errors)));
            }
            if let Some(name) = name {
                if name_taken(conn, &row.space_id, &name_key(&name), Some(&row.id))? {
                    return Err(Fail::Api(name_taken_error()));
                }
                row.name_key = name_key(&name);
                row.name = name;
            }
            row.set(&fields);
            row.updated_at = now();
            diesel::update(upload_configs::table.find(&row.id))
                .set((
                    upload_configs::name.eq(&row.name),
                    upload_configs::name_key.eq(&row.name_key),
                    upload_configs::description.eq(&row.description),
                    upload_configs::is_signed.eq(row.is_signed),
                    upload_configs::allow_unsigned.eq(row.allow_unsigned),
                    upload_configs::delivery_type.eq(&row.delivery_type),
                    upload_configs::config.eq(&row.config),
                    upload_configs::unsigned_restrictions.eq(&row.unsigned_restrictions),
                    upload_configs::updated_at.eq(row.updated_at),
                ))
                .execute(conn)?;
            let active = active_of(conn, &row.space_id)?;
            Ok::<_, Fail>((row, active))
        })
        .await
        .map_err(ApiError::from)?;
    let active = active.as_deref() == Some(row.id.as_str());
    Ok(ApiResponse::ok(view(row, active, Detail::Full)))
}

/// Delete an upload config
///
/// Not the space's active config (409): make another one active first. Needs
/// `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/upload-configs/{id}",
    operation_id = "delete_upload_config",
    tag = "upload-configs",
    params(("id" = String, Path, description = "The config's id (`upc_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "Deleted; `data` is null.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such config within the credential's reach.", body = ErrorEnvelope),
        (status = 409, description = "It is the space's active config.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<()>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let id = path.into_inner();
    state
        .db
        .transaction(move |conn| {
            let row = find(conn, &reach, &id)?;
            if active_of(conn, &row.space_id)?.as_deref() == Some(row.id.as_str()) {
                return Err(Fail::Api(ApiError::conflict(
                    "the active upload config cannot be deleted; make another one active first",
                )));
            }
            diesel::delete(upload_configs::table.find(&row.id)).execute(conn)?;
            Ok::<_, Fail>(())
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(()).message("upload config deleted"))
}

#[cfg(test)]
mod tests {
    use super::document::{Storage, Transformations};
    use super::*;

    #[test]
    fn stored_documents_read_back_and_gaps_read_as_defaults() {
        let mut row = ConfigRow::starter("spc_1".into(), "wrk_1".into());
        assert_eq!(row.fields(), Fields::starter());
        // What the migration writes: the validation section only.
        row.config = r#"{"validation":{"max_file_size":7,"allowed_formats":"mp4,mov"}}"#.into();
        let fields = row.fields();
        assert_eq!(fields.config.validation.max_file_size, 7);
        assert_eq!(
            fields.config.validation.allowed_formats.as_deref(),
            Some("mp4,mov")
        );
        assert_eq!(fields.config.storage, Storage::default());
        assert_eq!(fields.config.transformations, Transformations::default());
        row.config = "not json".into();
        assert_eq!(row.fields().config, UploadSettings::default());
    }
}
