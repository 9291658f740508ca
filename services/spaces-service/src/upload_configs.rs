//! Upload configs: what a space accepts for upload. `GET|POST
//! /api/v1/upload-configs`, `GET|PUT|DELETE /api/v1/upload-configs/{id}`.
//! Every space has one active config (`active_upload_config_id`), which
//! cannot be deleted while active.

use crate::access::{self, Reach};
use crate::openapi::{CursorParams, Envelope, ErrorEnvelope, ListEnvelope, NoData};
use crate::schema::{spaces, upload_configs};
use crate::spaces::{check_name, name_key};
use crate::{Backend, Fail, SpacesState, cursor_time, now, rfc3339};
use actix_web::web;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use identity::Identity;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::pagination::{CursorPosition, CursorQuery};
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::{DbConnection, StoreError};
use utoipa::ToSchema;

/// The config every new space starts with, active.
pub const STARTER: &str = "starter";
/// 5 GiB.
pub const MAX_FILE_SIZE: u64 = 5 * 1024 * 1024 * 1024;
const MAX_FORMATS: usize = 50;
const MAX_FORMAT_LEN: usize = 16;

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = upload_configs)]
pub(crate) struct ConfigRow {
    id: String,
    space_id: String,
    workspace_id: String,
    name: String,
    config: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// What uploads a config accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadSettings {
    /// Largest accepted file, in bytes: 1 to 5 GiB.
    #[schema(minimum = 1, maximum = 5368709120_u64)]
    pub max_file_size: u64,
    /// File formats accepted, as lowercase extensions (`jpg`, `png`, `mp4`, …):
    /// 1 to 50 of them, each 1 to 16 letters or digits.
    pub allowed_formats: Vec<String>,
    /// Uploads signed by the platform (the client got a signature from a
    /// server holding a key) are accepted.
    pub signed_uploads: bool,
    /// Uploads without a signature (straight from browsers) are accepted.
    pub unsigned_uploads: bool,
}

impl UploadSettings {
    /// The `starter` config: images up to 10 MiB, signed uploads only.
    pub fn starter() -> UploadSettings {
        UploadSettings {
            max_file_size: 10 * 1024 * 1024,
            allowed_formats: ["jpg", "jpeg", "png", "gif", "webp"]
                .map(String::from)
                .to_vec(),
            signed_uploads: true,
            unsigned_uploads: false,
        }
    }

    fn stored(text: &str) -> UploadSettings {
        serde_json::from_str(text).unwrap_or_else(|_| UploadSettings::starter())
    }

    pub(crate) fn to_stored(&self) -> String {
        serde_json::to_string(self).expect("settings serialize")
    }

    /// Applies `patch`, then checks the whole.
    fn patched(mut self, patch: UploadSettingsPatch, errors: &mut Vec<FieldError>) -> Self {
        if let Some(size) = patch.max_file_size {
            if (1..=MAX_FILE_SIZE).contains(&size) {
                self.max_file_size = size;
            } else {
                errors.push(FieldError::new(
                    "config.max_file_size",
                    format!("must be between 1 and {MAX_FILE_SIZE} bytes"),
                ));
            }
        }
        if let Some(formats) = patch.allowed_formats {
            let mut normalized: Vec<String> = Vec::new();
            for (i, format) in formats.iter().enumerate() {
                let format = format.trim().trim_start_matches('.').to_ascii_lowercase();
                if format.is_empty()
                    || format.len() > MAX_FORMAT_LEN
                    || !format.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    errors.push(FieldError::new(
                        format!("config.allowed_formats[{i}]"),
                        format!(
                            "must be a file extension of 1 to {MAX_FORMAT_LEN} letters or digits"
                        ),
                    ));
                } else if !normalized.contains(&format) {
                    normalized.push(format);
                }
            }
            if formats.is_empty() || formats.len() > MAX_FORMATS {
                errors.push(FieldError::new(
                    "config.allowed_formats",
                    format!("must list 1 to {MAX_FORMATS} formats"),
                ));
            }
            self.allowed_formats = normalized;
        }
        if let Some(v) = patch.signed_uploads {
            self.signed_uploads = v;
        }
        if let Some(v) = patch.unsigned_uploads {
            self.unsigned_uploads = v;
        }
        if !self.signed_uploads && !self.unsigned_uploads {
            errors.push(FieldError::new(
                "config",
                "signed_uploads or unsigned_uploads must be true",
            ));
        }
        self
    }
}

/// Fields of [`UploadSettings`]; absent ones keep their value (on creation:
/// the `starter` values).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadSettingsPatch {
    #[schema(minimum = 1, maximum = 5368709120_u64)]
    max_file_size: Option<u64>,
    allowed_formats: Option<Vec<String>>,
    signed_uploads: Option<bool>,
    unsigned_uploads: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadConfigView {
    /// `upc_…`
    id: String,
    /// `spc_…`
    space_id: String,
    name: String,
    config: UploadSettings,
    /// The space's active config.
    is_active: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

fn view(row: ConfigRow, active: Option<&str>) -> UploadConfigView {
    UploadConfigView {
        is_active: active == Some(row.id.as_str()),
        config: UploadSettings::stored(&row.config),
        id: row.id,
        space_id: row.space_id,
        name: row.name,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
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

fn name_conflict() -> Fail {
    Fail::Api(ApiError::conflict(
        "an upload config with this name already exists in the space",
    ))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    space_id: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// `?space_id=` of the config list, beside the paging parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `ListQuery` reads it
pub(crate) struct SpaceFilter {
    /// Only this space's configs (`spc_…`); default: every space within reach.
    space_id: Option<String>,
}

/// List upload configs
///
/// Oldest first, of one space or of every space within reach. Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/upload-configs",
    operation_id = "list_upload_configs",
    tag = "upload-configs",
    params(SpaceFilter, CursorParams),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "A page of configs; `meta` is `{limit, next_cursor, has_more}`.", body = ListEnvelope<Vec<UploadConfigView>>),
        (status = 400, description = "A bad `cursor` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "`space_id` names no space within reach.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<ListQuery>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Vec<UploadConfigView>>, ApiError> {
    let reach = access::readable(&identity)?;
    let ListQuery {
        space_id,
        cursor,
        limit,
    } = query.into_inner();
    let page = state.cursors.validate(&CursorQuery { cursor, limit })?;
    let after = match &page.after {
        Some(p) => Some((cursor_time(p.created_at_ms)?, p.id.clone())),
        None => None,
    };
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
            space_ids.dedup();
            let actives: Vec<Option<String>> = spaces::table
                .filter(spaces::id.eq_any(space_ids))
                .select(spaces::active_upload_config_id)
                .load(conn)?;
            Ok::<_, Fail>((rows, actives))
        })
        .await
        .map_err(ApiError::from)?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let last = rows.last().map(|r| CursorPosition {
        created_at_ms: r.created_at.and_utc().timestamp_millis(),
        id: r.id.clone(),
    });
    let views = rows
        .into_iter()
        .map(|row| {
            let active = actives.iter().flatten().any(|a| *a == row.id);
            let id = row.id.clone();
            view(row, active.then_some(id.as_str()))
        })
        .collect();
    Ok(ApiResponse::ok(views).meta(page.meta(&state.cursors, has_more, last.as_ref())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUploadConfig {
    /// The space (`spc_…`).
    space_id: String,
    /// 1 to 100 characters (trimmed), unique within the space regardless of case.
    name: String,
    /// Absent fields take the `starter` values.
    #[serde(default)]
    config: UploadSettingsPatch,
}

/// Create an upload config
///
/// For a space within reach; it is not active until the space names it in
/// `active_upload_config_id`. Needs `spaces:write`.
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
        (status = 409, description = "The space has a config of that name.", body = ErrorEnvelope),
        (status = 422, description = "A bad field; `errors` names each.", body = ErrorEnvelope),
    )
)]
pub async fn create(
    identity: Identity,
    body: Json<NewUploadConfig>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<UploadConfigView>, ApiError> {
    let reach = access::writable(&identity)?;
    let NewUploadConfig {
        space_id,
        name,
        config,
    } = body.into_inner();
    let mut errors = Vec::new();
    let name = check_name(&name, "name", &mut errors);
    let settings = UploadSettings::starter().patched(config, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let row = state
        .db
        .transaction(move |conn| {
            let space = crate::spaces::find(conn, &reach, &space_id)?;
            let key = name_key(&name);
            if name_taken(conn, &space.id, &key, None)? {
                return Err(name_conflict());
            }
            let at = now();
            let row = ConfigRow {
                id: ids::new_id(prefix::UPLOAD_CONFIG),
                space_id: space.id,
                workspace_id: space.workspace_id,
                name,
                config: settings.to_stored(),
                created_at: at,
                updated_at: at,
            };
            diesel::insert_into(upload_configs::table)
                .values((
                    upload_configs::id.eq(&row.id),
                    upload_configs::space_id.eq(&row.space_id),
                    upload_configs::workspace_id.eq(&row.workspace_id),
                    upload_configs::name.eq(&row.name),
                    upload_configs::name_key.eq(&key),
                    upload_configs::config.eq(&row.config),
                    upload_configs::created_at.eq(at),
                    upload_configs::updated_at.eq(at),
                ))
                .execute(conn)?;
            Ok::<_, Fail>(row)
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::created(view(row, None)))
}

/// Get an upload config
///
/// Needs `spaces:read`.
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
    let reach = access::readable(&identity)?;
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
    Ok(ApiResponse::ok(view(row, active.as_deref())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadConfigUpdate {
    /// 1 to 100 characters (trimmed), unique within the space regardless of case.
    name: Option<String>,
    /// The fields to change; the others keep their value.
    config: Option<UploadSettingsPatch>,
}

/// Update an upload config
///
/// Changes the fields named. Needs `spaces:write`.
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
        (status = 409, description = "The space has another config of that name.", body = ErrorEnvelope),
        (status = 422, description = "A bad field; `errors` names each.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Identity,
    path: web::Path<String>,
    body: Json<UploadConfigUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<UploadConfigView>, ApiError> {
    let reach = access::writable(&identity)?;
    let id = path.into_inner();
    let UploadConfigUpdate { name, config } = body.into_inner();
    let mut errors = Vec::new();
    let name = name.map(|n| check_name(&n, "name", &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (row, active) = state
        .db
        .transaction(move |conn| {
            let mut row = find(conn, &reach, &id)?;
            let mut errors = Vec::new();
            let settings = UploadSettings::stored(&row.config)
                .patched(config.unwrap_or_default(), &mut errors);
            if !errors.is_empty() {
                return Err(Fail::Api(ApiError::validation(errors)));
            }
            if let Some(name) = name {
                if name_taken(conn, &row.space_id, &name_key(&name), Some(&row.id))? {
                    return Err(name_conflict());
                }
                row.name = name;
            }
            row.config = settings.to_stored();
            row.updated_at = now();
            diesel::update(upload_configs::table.find(&row.id))
                .set((
                    upload_configs::name.eq(&row.name),
                    upload_configs::name_key.eq(name_key(&row.name)),
                    upload_configs::config.eq(&row.config),
                    upload_configs::updated_at.eq(row.updated_at),
                ))
                .execute(conn)?;
            let active = active_of(conn, &row.space_id)?;
            Ok::<_, Fail>((row, active))
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(view(row, active.as_deref())))
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
        (status = 200, description = "Deleted (message `upload config deleted`).", body = Envelope<NoData>),
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
    let reach = access::writable(&identity)?;
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
