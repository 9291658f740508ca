//! Files: `GET|PUT /api/v1/files`, `GET /api/v1/files/by-ref`,
//! `GET|DELETE /api/v1/files/{id}`, `POST /api/v1/files/{id}/signed-url`,
//! `POST /api/v1/files/urls`, `PUT|DELETE /api/v1/files/{id}/access-control`.
//!
//! A file's bytes live under `object_key` (`{handle}/{id}`), fixed for its
//! life; its public address is `storage_path` (`{handle}/{name}`), which a
//! rename changes without moving any bytes. Deleting a file deletes its
//! object and its variants.

use crate::access::{self, Reach};
use crate::access_control::{self, EffectiveAccess};
use crate::delivery::{self, Delivery};
use crate::openapi::{Envelope, ErrorEnvelope, ListEnvelope, NoData};
use crate::schema::{files, folders};
use crate::settings::AccessControlUpdate;
use crate::spaces::{self, SpaceListQuery, SpaceRow, nullable};
use crate::upload_configs::DeliveryType;
use crate::{
    Backend, Fail, SpacesState, now, page_end, page_start, plain_text, rfc3339, unix_rfc3339,
};
use actix_web::web;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use identity::Identity;
use serde::{Deserialize, Serialize};
use service_kit::ids::{self, prefix};
use service_kit::{ApiError, ApiResponse, FieldError, Json, Query};
use store::{DbConnection, StoreError};
use utoipa::ToSchema;

/// The longest name, original name, MIME type and reference.
pub const MAX_TEXT: usize = 255;
/// `POST /files/urls` takes at most this many ids.
const MAX_URLS: usize = 100;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = files)]
pub struct FileRow {
    pub id: String,
    pub workspace_id: String,
    pub space_id: String,
    pub folder_id: Option<String>,
    pub upload_config_id: Option<String>,
    pub status: String,
    pub name: String,
    pub original_name: String,
    pub mime_type: String,
    pub extension: Option<String>,
    pub size: i64,
    pub object_key: String,
    pub storage_path: String,
    pub sha256: Option<String>,
    pub reference: Option<String>,
    pub access_type: String,
    pub resource_type: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub blur_hash: Option<String>,
    pub access_control: Option<String>,
    pub expires_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

service_kit::words! {
    /// Whether a file can be served.
    FileStatus {
        /// Stored and served.
        Active = "active",
        /// Announced by a presign, not yet confirmed.
        Pending = "pending",
    }
}

service_kit::words! {
    /// What kind of content a file is (told from its bytes).
    ResourceType {
        Image = "image",
        Video = "video",
        Audio = "audio",
        Text = "text",
        Document = "document",
        Archive = "archive",
        Other = "other",
    }
}

/// What the stored bytes are, as far as images go.
#[derive(Debug, Serialize, ToSchema)]
pub struct StorageMeta {
    /// Pixels, as displayed; null for other content (or an image whose
    /// header could not be read).
    #[schema(required = true)]
    width: Option<i32>,
    #[schema(required = true)]
    height: Option<i32>,
    /// A placeholder of the image (4 × 3 components); null for other content.
    #[schema(required = true)]
    blur_hash: Option<String>,
    /// Tuzzle's list of detected faces: always empty (faces are not detected).
    #[schema(value_type = Vec<Object>)]
    face_detections: Vec<serde_json::Value>,
}

/// A file.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    /// `fil_…`
    id: String,
    /// Its name within the space (generated, `image-01HQ…`, unless its upload
    /// config keeps original names).
    name: String,
    /// The name it was uploaded with.
    original_name: String,
    /// Told from its bytes (a PNG named `.jpg` is `image/png`).
    mime_type: String,
    /// Bytes.
    size: i64,
    /// `{handle}/{name}`: its address under the CDN.
    storage_path: String,
    /// Where its bytes are in the object store (`{handle}/{id}`).
    object_key: String,
    /// Who may read it, from its upload config's `delivery_type`.
    #[serde(rename = "type")]
    access_type: DeliveryType,
    resource_type: ResourceType,
    status: FileStatus,
    /// Without the dot (`jpg`); null when it has none.
    #[schema(required = true)]
    extension: Option<String>,
    /// Its public identifier: its name.
    public_id: String,
    /// The client's own reference, unique within the space.
    #[serde(rename = "ref")]
    #[schema(required = true)]
    reference: Option<String>,
    /// `spc_…`
    space_id: String,
    /// `fld_…`; null at the space's root.
    #[schema(required = true)]
    folder_id: Option<String>,
    /// The folder's path (`photos/vacation/`); null at the space's root.
    #[schema(required = true)]
    folder_path: Option<String>,
    /// Where it is served: `{cdn_url}/{storage_path}`. Files that are not
    /// public need a signed URL (`POST /files/{id}/signed-url`).
    url: String,
    storage_meta: StorageMeta,
    /// In force for the file: its own, else its folders', else its space's.
    access_control: EffectiveAccess,
    /// SHA-256 of the stored bytes, lowercase hex; null while pending.
    #[schema(required = true)]
    hash: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A file row with what its view needs.
pub(crate) fn view(
    conn: &mut DbConnection,
    delivery: &Delivery,
    space: &SpaceRow,
    row: FileRow,
) -> Result<FileView, StoreError> {
    let folder_path: Option<String> = match &row.folder_id {
        Some(folder) => folders::table
            .find(folder)
            .select(folders::path)
            .first(conn)
            .optional()?,
        None => None,
    };
    let access = delivery::effective_access(conn, &row, space)?;
    Ok(FileView {
        url: delivery.url(&row.storage_path),
        access_type: DeliveryType::parse(&row.access_type).unwrap_or(DeliveryType::Private),
        resource_type: ResourceType::parse(&row.resource_type).unwrap_or(ResourceType::Other),
        status: FileStatus::parse(&row.status).unwrap_or(FileStatus::Pending),
        storage_meta: StorageMeta {
            width: row.width,
            height: row.height,
            blur_hash: row.blur_hash,
            face_detections: Vec::new(),
        },
        access_control: access,
        public_id: row.name.clone(),
        id: row.id,
        name: row.name,
        original_name: row.original_name,
        mime_type: row.mime_type,
        size: row.size,
        storage_path: row.storage_path,
        object_key: row.object_key,
        extension: row.extension,
        reference: row.reference,
        space_id: row.space_id,
        folder_id: row.folder_id,
        folder_path,
        hash: row.sha256,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

/// The file `id` and its space, if the space exists and is within `reach`;
/// 404 otherwise.
pub(crate) fn find(
    conn: &mut DbConnection,
    reach: &Reach,
    id: &str,
) -> Result<(FileRow, SpaceRow), Fail> {
    let missing = || Fail::Api(ApiError::not_found("file"));
    if !ids::is_valid(prefix::FILE, id) {
        return Err(missing());
    }
    let mut query = files::table
        .filter(files::id.eq(id.to_owned()))
        .into_boxed::<Backend>();
    if let Some(workspace) = reach.workspace() {
        query = query.filter(files::workspace_id.eq(workspace.to_owned()));
    }
    if let Some(space) = reach.space() {
        query = query.filter(files::space_id.eq(space.to_owned()));
    }
    let row = query
        .select(FileRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(missing)?;
    let space = spaces::holding(conn, reach, &row.space_id, missing)?;
    Ok((row, space))
}

/// Whether `storage_path` is free, but for the file `except`.
pub(crate) fn path_taken(
    conn: &mut DbConnection,
    storage_path: &str,
    except: Option<&str>,
) -> Result<bool, StoreError> {
    let mut query = files::table
        .filter(files::storage_path.eq(storage_path.to_owned()))
        .into_boxed::<Backend>();
    if let Some(id) = except {
        query = query.filter(files::id.ne(id.to_owned()));
    }
    Ok(query.count().get_result::<i64>(conn)? > 0)
}

pub(crate) fn reference_taken(
    conn: &mut DbConnection,
    space_id: &str,
    reference: &str,
    except: Option<&str>,
) -> Result<bool, StoreError> {
    let mut query = files::table
        .filter(files::space_id.eq(space_id.to_owned()))
        .filter(files::reference.eq(reference.to_owned()))
        .into_boxed::<Backend>();
    if let Some(id) = except {
        query = query.filter(files::id.ne(id.to_owned()));
    }
    Ok(query.count().get_result::<i64>(conn)? > 0)
}

/// A reference as stored: 1 to 255 characters without control characters.
pub(crate) fn check_reference(raw: &str, field: &str, errors: &mut Vec<FieldError>) -> String {
    let reference = raw.trim().to_owned();
    if reference.is_empty()
        || reference.chars().count() > MAX_TEXT
        || !plain_text(&reference, false)
    {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {MAX_TEXT} characters, without control characters"),
        ));
    }
    reference
}

/// What a taken unique value means to a client.
pub(crate) fn file_fail(fail: Fail) -> ApiError {
    match fail {
        Fail::Store(e) if e.constraint() == Some("files_storage_path_unique") => {
            ApiError::validation(vec![FieldError::new("name", "has already been taken.")])
        }
        Fail::Store(e) if e.constraint() == Some("files_reference_unique") => {
            ApiError::validation(vec![FieldError::new("ref", "has already been taken.")])
        }
        other => other.into(),
    }
}

/// Deletes a file's object and variants; failures are logged (the row is
/// gone; the space's purge removes whatever is left under its prefix).
pub(crate) async fn delete_bytes(state: &SpacesState, handle: &str, row: &FileRow) {
    if let Err(e) = state.storage.delete(&row.object_key).await {
        tracing::error!(error = %e, file = %row.id, "could not delete a file's object");
    }
    let variants = format!("{}/{}", delivery::variants_prefix(handle), row.id);
    if let Err(e) = state.storage.delete_prefix(&variants).await {
        tracing::error!(error = %e, file = %row.id, "could not delete a file's variants");
    }
}

/// `?space_id=` of the file list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `SpaceListQuery` reads it
pub(crate) struct SpaceParam {
    /// Required: the space (`spc_…`).
    space_id: String,
}

/// `?limit=&cursor=` of the file list (Tuzzle's parameters).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `SpaceListQuery` reads it
pub(crate) struct PageParams {
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn required(field: &str) -> ApiError {
    ApiError::validation(vec![FieldError::new(field, "field is required")])
}

/// List files
///
/// A space's files (pending ones included), oldest first. Needs
/// `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/files",
    operation_id = "list_files",
    tag = "files",
    params(SpaceParam, PageParams),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "A page of files.", body = ListEnvelope<Vec<FileView>>),
        (status = 400, description = "A bad `cursor` or `limit`.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "`space_id` names no space within reach.", body = ErrorEnvelope),
        (status = 422, description = "No `space_id`.", body = ErrorEnvelope),
    )
)]
pub async fn list(
    identity: Identity,
    query: Query<SpaceListQuery>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Vec<FileView>>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let (space_id, page) = query.into_inner().space_page(&state.cursors)?;
    let after = page_start(&page)?;
    let limit = page.limit;
    let delivery = state.delivery.clone();
    let (views, has_more, last) = state
        .db
        .run(move |conn| {
            let space = spaces::find(conn, &reach, &space_id)?;
            let mut query = files::table
                .filter(files::space_id.eq(space.id.clone()))
                .into_boxed::<Backend>();
            if let Some((at, id)) = after {
                query = query.filter(files::created_at.ge(at)).filter(
                    files::created_at
                        .gt(at)
                        .or(files::created_at.eq(at).and(files::id.gt(id))),
                );
            }
            let mut rows: Vec<FileRow> = query
                .order((files::created_at.asc(), files::id.asc()))
                .limit(i64::from(limit) + 1)
                .select(FileRow::as_select())
                .load(conn)?;
            let (has_more, last) = page_end(&mut rows, limit, |r| (r.created_at, &r.id));
            let views = rows
                .into_iter()
                .map(|row| view(conn, &delivery, &space, row))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, Fail>((views, has_more, last))
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(views).meta(page.meta(&state.cursors, has_more, last.as_ref())))
}

/// Get a file
///
/// With `storage_meta` and its delivery `url`. Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/files/{id}",
    operation_id = "get_file",
    tag = "files",
    params(("id" = String, Path, description = "The file's id (`fil_…`).")),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The file.", body = Envelope<FileView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such file within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn get(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FileView>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let id = path.into_inner();
    let delivery = state.delivery.clone();
    let view = state
        .db
        .run(move |conn| {
            let (row, space) = find(conn, &reach, &id)?;
            Ok::<_, Fail>(view(conn, &delivery, &space, row)?)
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(view))
}

#[derive(Debug, Deserialize)]
pub struct ByRefQuery {
    space_id: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// `?space_id=&ref=` of the look-up by reference.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, never built: `ByRefQuery` reads it
pub(crate) struct ByRefParams {
    /// Required: the space (`spc_…`).
    space_id: String,
    /// Required: the reference given at upload (`ref`).
    #[param(rename = "ref")]
    reference: String,
}

/// Get a file by reference
///
/// The file of the space whose `ref` is the one given. Needs `spaces:read`.
#[utoipa::path(
    get,
    path = "/api/v1/files/by-ref",
    operation_id = "get_file_by_ref",
    tag = "files",
    params(ByRefParams),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The file.", body = Envelope<FileView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within reach, or no file with that reference.", body = ErrorEnvelope),
        (status = 422, description = "No `space_id` or `ref`.", body = ErrorEnvelope),
    )
)]
pub async fn by_ref(
    identity: Identity,
    query: Query<ByRefQuery>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FileView>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let ByRefQuery {
        space_id,
        reference,
    } = query.into_inner();
    let mut errors = Vec::new();
    let space_id = space_id.filter(|s| !s.is_empty());
    let reference = reference.filter(|s| !s.is_empty());
    if space_id.is_none() {
        errors.push(FieldError::new("space_id", "field is required"));
    }
    if reference.is_none() {
        errors.push(FieldError::new("ref", "field is required"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (space_id, reference) = (space_id.unwrap_or_default(), reference.unwrap_or_default());
    let delivery = state.delivery.clone();
    let view = state
        .db
        .run(move |conn| {
            let space = spaces::find(conn, &reach, &space_id)?;
            let row = files::table
                .filter(files::space_id.eq(&space.id))
                .filter(files::reference.eq(&reference))
                .select(FileRow::as_select())
                .first(conn)
                .optional()?
                .ok_or_else(|| Fail::Api(ApiError::not_found("file")))?;
            Ok::<_, Fail>(view(conn, &delivery, &space, row)?)
        })
        .await
        .map_err(ApiError::from)?;
    Ok(ApiResponse::ok(view))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FileUpdate {
    /// Required: the file (`fil_…`).
    #[schema(value_type = String, required = true)]
    id: Option<String>,
    /// A new name within the space (at most 255 bytes, a safe file name);
    /// its `storage_path` and URL follow. The bytes do not move.
    name: Option<String>,
    /// A new display name (at most 255 characters).
    original_name: Option<String>,
    /// A new MIME type (`type/subtype`, at most 255 characters).
    mime_type: Option<String>,
    /// The stored size; accepted only unchanged (it is a fact of the bytes).
    size: Option<i64>,
    /// `{handle}/{name}`; accepted only as the result of `name`.
    storage_path: Option<String>,
    /// The space's handle; files do not move between spaces.
    space: Option<String>,
    /// A folder of the space (`fld_…`); null: the space's root.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    folder_id: Option<Option<String>>,
    /// A folder path of the space (`photos/vacation/`), when `folder_id` is
    /// absent; created in a `dynamic` space; null or empty: the root.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    folder_path: Option<Option<String>>,
    /// A new reference, unique within the space; null clears it.
    #[serde(default, rename = "ref", deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable, rename = "ref")]
    reference: Option<Option<String>>,
}

/// Update a file
///
/// Renames it, moves it to another folder, or changes its labels. Unknown
/// fields are ignored; fields that describe the stored bytes (`size`,
/// `storage_path`, `space`) are accepted only when they agree with them.
/// Needs `spaces:write`.
#[utoipa::path(
    put,
    path = "/api/v1/files",
    operation_id = "update_file",
    tag = "files",
    request_body = FileUpdate,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The file as updated.", body = Envelope<FileView>),
        (status = 400, description = "A folder path that climbs out of the space.", body = ErrorEnvelope),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such file within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad field, a name or reference already taken, or a folder the space does not have.", body = ErrorEnvelope),
    )
)]
pub async fn update(
    identity: Identity,
    body: Json<FileUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FileView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let update = body.into_inner();
    let mut errors = Vec::new();
    let Some(id) = update.id.clone().filter(|s| !s.is_empty()) else {
        return Err(required("id"));
    };
    let name = match &update.name {
        Some(raw) => match crate::uploads::names::file_name(raw) {
            Ok(name) => Some(name),
            Err(e) if e.status.as_u16() == 400 => return Err(e),
            Err(_) => {
                errors.push(FieldError::new(
                    "name",
                    format!("must be a safe file name of at most {MAX_TEXT} bytes"),
                ));
                None
            }
        },
        None => None,
    };
    let original_name = update.original_name.as_deref().map(|raw| {
        let text = raw.trim().to_owned();
        if text.is_empty() || text.chars().count() > MAX_TEXT || !plain_text(&text, false) {
            errors.push(FieldError::new(
                "original_name",
                format!("must be 1 to {MAX_TEXT} characters, without control characters"),
            ));
        }
        text
    });
    let mime_type = update.mime_type.as_deref().map(|raw| {
        let mime = raw.trim().to_ascii_lowercase();
        if !crate::uploads::names::is_mime(&mime) {
            errors.push(FieldError::new(
                "mime_type",
                "must be a MIME type such as image/jpeg",
            ));
        }
        mime
    });
    let reference = update
        .reference
        .map(|r| r.map(|r| check_reference(&r, "ref", &mut errors)));
    let folder_path = match update.folder_path {
        Some(Some(raw)) if !raw.trim().is_empty() => Some(Some(
            crate::uploads::names::folder_path(&raw, "folder_path")?,
        )),
        Some(_) => Some(None),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (size, storage_path, space_handle, folder_id) = (
        update.size,
        update.storage_path,
        update.space,
        update.folder_id,
    );
    let delivery = state.delivery.clone();
    let view = state
        .db
        .transaction(move |conn| {
            let (mut row, space) = find(conn, &reach, &id)?;
            let mut errors = Vec::new();
            if size.is_some_and(|s| s != row.size) {
                errors.push(FieldError::new(
                    "size",
                    "must be the stored file's size: it describes the bytes",
                ));
            }
            if space_handle.as_ref().is_some_and(|h| *h != space.handle) {
                errors.push(FieldError::new(
                    "space",
                    "must be the file's space: files do not move between spaces",
                ));
            }
            if let Some(name) = name {
                row.name = name;
                row.storage_path = format!("{}/{}", space.handle, row.name);
            }
            if storage_path
                .as_ref()
                .is_some_and(|p| *p != row.storage_path)
            {
                errors.push(FieldError::new(
                    "storage_path",
                    "must be {handle}/{name}: change name instead",
                ));
            }
            if !errors.is_empty() {
                return Err(Fail::Api(ApiError::validation(errors)));
            }
            if path_taken(conn, &row.storage_path, Some(&row.id))? {
                return Err(Fail::Api(ApiError::validation(vec![FieldError::new(
                    "name",
                    "has already been taken.",
                )])));
            }
            if let Some(Some(reference)) = &reference
                && reference_taken(conn, &space.id, reference, Some(&row.id))?
            {
                return Err(Fail::Api(ApiError::validation(vec![FieldError::new(
                    "ref",
                    "has already been taken.",
                )])));
            }
            match (folder_id, folder_path) {
                (Some(Some(folder)), _) => {
                    let folder =
                        crate::folders::find_in(conn, &reach, &space, &folder, "folder_id")?;
                    row.folder_id = Some(folder.id);
                }
                (Some(None), _) | (None, Some(None)) => row.folder_id = None,
                (None, Some(Some(path))) => {
                    row.folder_id = Some(
                        crate::uploads::folder_for_path(conn, &space, &path, "folder_path")?.id,
                    );
                }
                (None, None) => {}
            }
            if let Some(text) = original_name {
                row.original_name = text;
            }
            if let Some(mime) = mime_type {
                row.mime_type = mime;
            }
            if let Some(reference) = reference {
                row.reference = reference;
            }
            row.updated_at = now();
            diesel::update(files::table.find(&row.id))
                .set((
                    files::name.eq(&row.name),
                    files::storage_path.eq(&row.storage_path),
                    files::original_name.eq(&row.original_name),
                    files::mime_type.eq(&row.mime_type),
                    files::folder_id.eq(&row.folder_id),
                    files::reference.eq(&row.reference),
                    files::updated_at.eq(row.updated_at),
                ))
                .execute(conn)?;
            Ok::<_, Fail>(view(conn, &delivery, &space, row)?)
        })
        .await
        .map_err(file_fail)?;
    state.space_content_changed(&view.space_id).await;
    Ok(ApiResponse::ok(view))
}

/// Delete a file
///
/// With its stored bytes and variants. Needs `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/files/{id}",
    operation_id = "delete_file",
    tag = "files",
    params(("id" = String, Path, description = "The file's id (`fil_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "Deleted; `data` is null.", body = Envelope<NoData>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such file within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<()>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let id = path.into_inner();
    let (row, space) = state
        .db
        .transaction(move |conn| {
            let (row, space) = find(conn, &reach, &id)?;
            diesel::delete(files::table.find(&row.id)).execute(conn)?;
            Ok::<_, Fail>((row, space))
        })
        .await
        .map_err(ApiError::from)?;
    state.space_content_changed(&space.id).await;
    delete_bytes(&state, &space.handle, &row).await;
    Ok(ApiResponse::ok(()).message("file deleted"))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SignedUrlRequest {
    /// Seconds the URL is valid: 1 to `delivery.signed_url_max_ttl_secs`
    /// (7 days by default); default 3600.
    #[schema(minimum = 1)]
    expires_in: Option<u64>,
    /// Transformations the URL serves (`w`, `h`, `r`, `g`, `f`, `q`, as on
    /// the CDN); the signature covers them, so they cannot be changed later.
    #[schema(value_type = Option<Object>)]
    transformations: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// A signed delivery URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedUrlView {
    /// `{cdn_url}/{storage_path}?…&expires=…&signature=…`
    url: String,
    /// Unix seconds.
    expires: i64,
    #[schema(format = DateTime)]
    expires_at: String,
}

/// The transformation parameters a signed URL may carry, checked as the
/// CDN checks them.
fn transformation_params(
    raw: Option<std::collections::BTreeMap<String, serde_json::Value>>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut params = Vec::new();
    let mut errors = Vec::new();
    for (name, value) in raw.unwrap_or_default() {
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                errors.push(FieldError::new(
                    format!("transformations.{name}"),
                    "must be a string or a number",
                ));
                continue;
            }
        };
        if !["w", "h", "r", "g", "f", "q"].contains(&name.as_str()) {
            errors.push(FieldError::new(
                format!("transformations.{name}"),
                "is not a transformation (w, h, r, g, f, q)",
            ));
            continue;
        }
        params.push((name, text));
    }
    if let Err(invalid) = media::Transform::parse(params.iter().map(|(k, v)| (k, v))) {
        for (name, message) in invalid.details() {
            errors.push(FieldError::new(
                format!("transformations.{name}"),
                message.clone(),
            ));
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Get a signed URL
///
/// A delivery URL with `expires` and `signature` (HMAC-SHA256), for files
/// that are not public: valid for `expires_in` seconds (default 1 hour),
/// with the transformations named. Needs `spaces:read`.
#[utoipa::path(
    post,
    path = "/api/v1/files/{id}/signed-url",
    operation_id = "sign_file_url",
    tag = "files",
    params(("id" = String, Path, description = "The file's id (`fil_…`).")),
    request_body(content = Option<SignedUrlRequest>, description = "Optional."),
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The signed URL.", body = Envelope<SignedUrlView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such file within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad `expires_in` or transformation.", body = ErrorEnvelope),
    )
)]
pub async fn signed_url(
    identity: Identity,
    req: actix_web::HttpRequest,
    path: web::Path<String>,
    body: Result<Json<Option<SignedUrlRequest>>, ApiError>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SignedUrlView>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let request = match body {
        Ok(body) => body.into_inner().unwrap_or_default(),
        Err(_) if crate::spaces::bodiless(&req) => SignedUrlRequest::default(),
        Err(e) => return Err(e),
    };
    if let Some(ttl) = request.expires_in
        && !(1..=state.delivery.max_ttl()).contains(&ttl)
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "expires_in",
            format!("must be between 1 and {}", state.delivery.max_ttl()),
        )]));
    }
    let params = transformation_params(request.transformations)?;
    let id = path.into_inner();
    let (row, _) = state
        .db
        .run(move |conn| find(conn, &reach, &id))
        .await
        .map_err(ApiError::from)?;
    let signed = state
        .delivery
        .signed_url(&row.storage_path, &params, request.expires_in);
    Ok(ApiResponse::ok(SignedUrlView {
        url: signed.url,
        expires: signed.expires,
        expires_at: unix_rfc3339(signed.expires).unwrap_or_default(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UrlsRequest {
    /// Required: 1 to 100 file ids (`fil_…`).
    #[schema(value_type = Vec<String>, required = true)]
    file_ids: Option<Vec<String>>,
}

/// A file's delivery URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileUrl {
    /// `fil_…`
    id: String,
    /// Public files: their URL; others: a signed URL (valid for the default
    /// lifetime).
    url: String,
    /// Whether `url` is signed.
    signed: bool,
    /// When a signed URL expires; null for public ones.
    #[schema(required = true, format = DateTime)]
    expires_at: Option<String>,
}

/// Get delivery URLs
///
/// For each id of a file within reach, in the order given (ids of files
/// out of reach are left out): public files' URLs, signed URLs for the
/// others. Needs `spaces:read`.
#[utoipa::path(
    post,
    path = "/api/v1/files/urls",
    operation_id = "file_urls",
    tag = "files",
    request_body = UrlsRequest,
    security(("bearer_token" = ["spaces:read"]), ("api_key" = ["spaces:read"])),
    responses(
        (status = 200, description = "The URLs.", body = Envelope<Vec<FileUrl>>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:read`, or no workspace selected.", body = ErrorEnvelope),
        (status = 422, description = "No `file_ids`, or more than 100.", body = ErrorEnvelope),
    )
)]
pub async fn urls(
    identity: Identity,
    body: Json<UrlsRequest>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<Vec<FileUrl>>, ApiError> {
    let reach = access::readable(&state, &identity).await?;
    let ids = match body.into_inner().file_ids {
        Some(ids) if !ids.is_empty() && ids.len() <= MAX_URLS => ids,
        Some(ids) if !ids.is_empty() => {
            return Err(ApiError::validation(vec![FieldError::new(
                "file_ids",
                format!("must list at most {MAX_URLS} ids"),
            )]));
        }
        _ => return Err(required("file_ids")),
    };
    let found = state
        .db
        .run(move |conn| {
            let mut found = Vec::new();
            for id in ids {
                match find(conn, &reach, &id) {
                    Ok((row, space)) => {
                        let access = delivery::effective_access(conn, &row, &space)?;
                        let public = DeliveryType::parse(&row.access_type)
                            == Some(DeliveryType::Upload)
                            && access.is_public();
                        found.push((row, public));
                    }
                    Err(Fail::Api(_)) => {}
                    Err(other) => return Err(other),
                }
            }
            Ok::<_, Fail>(found)
        })
        .await
        .map_err(ApiError::from)?;
    let urls = found
        .into_iter()
        .map(|(row, public)| {
            if public {
                FileUrl {
                    url: state.delivery.url(&row.storage_path),
                    id: row.id,
                    signed: false,
                    expires_at: None,
                }
            } else {
                let signed = state.delivery.signed_url(&row.storage_path, &[], None);
                FileUrl {
                    url: signed.url,
                    id: row.id,
                    signed: true,
                    expires_at: unix_rfc3339(signed.expires),
                }
            }
        })
        .collect();
    Ok(ApiResponse::ok(urls))
}

/// Sets (`Some`) or clears (`None`) a file's own access control.
async fn change_access(
    identity: Identity,
    id: String,
    state: web::Data<SpacesState>,
    update: Option<AccessControlUpdate>,
) -> Result<ApiResponse<FileView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let delivery = state.delivery.clone();
    let view = state
        .db
        .transaction(move |conn| {
            let (mut row, space) = find(conn, &reach, &id)?;
            row.access_control =
                access_control::changed(row.access_control.as_deref(), update, || {
                    let mut inheriting = row.clone();
                    inheriting.access_control = None;
                    delivery::effective_access(conn, &inheriting, &space)
                })?;
            row.updated_at = now();
            diesel::update(files::table.find(&row.id))
                .set((
                    files::access_control.eq(&row.access_control),
                    files::updated_at.eq(row.updated_at),
                ))
                .execute(conn)?;
            Ok::<_, Fail>(view(conn, &delivery, &space, row)?)
        })
        .await
        .map_err(ApiError::from)?;
    state.space_content_changed(&view.space_id).await;
    Ok(ApiResponse::ok(view))
}

/// Set a file's access control
///
/// The file's own setting: starts from what it inherits (or its own
/// setting) and changes the fields named. Needs `spaces:write`.
#[utoipa::path(
    put,
    path = "/api/v1/files/{id}/access-control",
    operation_id = "set_file_access_control",
    tag = "files",
    params(("id" = String, Path, description = "The file's id (`fil_…`).")),
    request_body = AccessControlUpdate,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The file as updated.", body = Envelope<FileView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such file within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A mistyped field.", body = ErrorEnvelope),
    )
)]
pub async fn set_access_control(
    identity: Identity,
    path: web::Path<String>,
    body: Json<AccessControlUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FileView>, ApiError> {
    change_access(identity, path.into_inner(), state, Some(body.into_inner())).await
}

/// Reset a file's access control
///
/// The file inherits again (from its folders, or its space). Needs
/// `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/files/{id}/access-control",
    operation_id = "reset_file_access_control",
    tag = "files",
    params(("id" = String, Path, description = "The file's id (`fil_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The file as reset.", body = Envelope<FileView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such file within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn reset_access_control(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<FileView>, ApiError> {
    change_access(identity, path.into_inner(), state, None).await
}
